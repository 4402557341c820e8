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


def test_a_jpeg_with_corrupt_data_is_refused_and_its_colours_match_opencvs() -> None:
    """A valid header and 200 garbled bytes: OpenCV decoded two thirds of the rows to garbage and the
    model was asked about it (P(go) 1.00; inputs review). libjpeg-turbo, strict, refuses it."""
    smooth = cv2.GaussianBlur((np.random.default_rng(1).random((480, 640, 3)) * 255).astype(np.uint8), (15, 15), 5)
    good = _encoded(".jpg", smooth)
    ref = cv2.cvtColor(cv2.imdecode(np.frombuffer(good, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.abs(decode_compressed("jpeg", good).astype(int) - ref).max() <= 2  # RGB order, as OpenCV's
    bad = bytearray(good)
    start = bad.find(b"\xff\xda") + 200
    bad[start:start + 200] = np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes()
    assert cv2.imdecode(np.frombuffer(bytes(bad), np.uint8), cv2.IMREAD_COLOR) is not None  # OpenCV takes it
    with pytest.raises(FrameError, match=r"could not be decoded: corrupt JPEG data"):
        decode_compressed("jpeg", bytes(bad))


def test_a_grayscale_jpeg_and_a_png_labelled_jpeg_decode_to_rgb() -> None:
    gray = cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY)
    ok, buf = cv2.imencode(".jpg", gray)
    assert ok
    out = decode_compressed("jpeg", buf.tobytes())
    assert out.shape == (48, 64, 3) and np.array_equal(out[:, :, 0], out[:, :, 2])
    assert np.array_equal(decode_compressed("jpeg", _encoded(".png")), RGB)  # sniffed, not taken from the label
