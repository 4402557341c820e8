"""Camera frames to RGB: compressed images are sized from their header before they are decoded."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tiny_node.frames import FrameError, compressed_size, decode_compressed

RGB = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)


def _encoded(ext: str, img: np.ndarray = RGB, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params or [])
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(("fmt", "data"), [
    ("png", _encoded(".png")),
    ("jpeg", _encoded(".jpg")),
    ("rgb8; jpeg compressed bgr8", _encoded(".jpg", params=[cv2.IMWRITE_JPEG_PROGRESSIVE, 1])),
])
def test_png_and_jpeg_are_sized_from_their_header_and_decoded(fmt: str, data: bytes) -> None:
    assert compressed_size(data) == (64, 48)
    out = decode_compressed(fmt, data)
    assert out.shape == (48, 64, 3)
    if fmt == "png":  # lossless: the very pixels, in RGB order
        assert np.array_equal(out, RGB)


def test_a_small_file_of_a_huge_image_is_refused_before_it_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = _encoded(".png", np.zeros((3000, 4000, 3), np.uint8))
    assert len(bomb) < 100_000 and compressed_size(bomb) == (4000, 3000)

    def no_decode(*_: object) -> None:
        raise AssertionError("decoded before its size was checked")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    with pytest.raises(FrameError, match=r"image size 4000x3000 outside 1x1..1920x1080"):
        decode_compressed("png", bomb, max_width=1920, max_height=1080)


def test_bytes_without_an_image_header_are_a_frame_error_naming_the_format() -> None:
    with pytest.raises(FrameError, match=r"compressed image \(jpeg, 10 bytes\) could not be decoded"):
        decode_compressed("jpeg", b"not a jpeg")
    truncated = _encoded(".jpg")[:300]  # the header survives, the scan does not
    with pytest.raises(FrameError, match="could not be decoded"):
        decode_compressed("jpeg", truncated)
