"""Raw camera encodings that cameras record (YUV 4:2:2, Bayer, OpenCV types, 16 bits) decode to the right colours.

Every fixture is built by hand from the layout the ROS encoding names (never with the
conversion under test), so a swapped Bayer pattern, U/V or byte order shows as a wrong colour.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tiny_node.frames import FrameError, decode_compressed, decode_raw

# BT.601 video range (what V4L2 cameras send and OpenCV / cv_bridge convert): Y, U (Cb), V (Cr)
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
YUV601 = {RED: (81, 90, 240), GREEN: (145, 54, 34), BLUE: (41, 240, 110)}


def _yuv422(colours: list[tuple[int, int, int]], rows: int, order: str, pad: int = 0) -> tuple[int, int, bytes]:
    """A packed 4:2:2 image, one pixel pair per colour: (width, step, data); padding bytes are 0xFF."""
    row = bytearray()
    for c in colours:
        y, u, v = YUV601[c]
        row += bytes([u, y, v, y]) if order == "uyvy" else bytes([y, u, y, v])
    row += b"\xff" * pad
    return 2 * len(colours), len(row), bytes(row) * rows


@pytest.mark.parametrize(("encoding", "order"), [
    ("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv"), ("yuyv", "yuyv"),
])
@pytest.mark.parametrize("pad", [0, 6])
def test_yuv422_gives_each_pixel_pair_its_colour(encoding: str, order: str, pad: int) -> None:
    colours = [RED, GREEN, BLUE]
    width, step, data = _yuv422(colours, rows=2, order=order, pad=pad)
    out = decode_raw(encoding, width, 2, step, data)
    assert out.shape == (2, 6, 3) and out.dtype == np.uint8
    want = np.repeat(np.array(colours, np.int16), 2, axis=0)  # each colour on a pair of pixels
    assert np.abs(out.astype(np.int16) - want).max() <= 3, out[0]


def _mosaic(pattern: str, rgb: tuple[int, int, int], h: int = 8, w: int = 10) -> np.ndarray:
    """A Bayer mosaic of a uniform colour: ``pattern`` names the 2x2 block at (0, 0), row by row."""
    value = dict(zip("rgb", rgb, strict=True))
    out = np.zeros((h, w), np.uint16)
    for dy in range(2):
        for dx in range(2):
            out[dy::2, dx::2] = value[pattern[2 * dy + dx]]
    return out


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer8_demosaics_to_the_colour_of_the_mosaic(pattern: str) -> None:
    colour = (200, 100, 30)  # three different values: any swap of R, G, B shows
    mosaic = _mosaic(pattern, colour).astype(np.uint8)
    h, w = mosaic.shape
    padded = np.full((h, w + 3), 0xFF, np.uint8)  # row padding must not leak into the image
    padded[:, :w] = mosaic
    out = decode_raw(f"bayer_{pattern}8", w, h, w + 3, padded.tobytes())
    assert out.shape == (h, w, 3)
    assert (out[1:-1, 1:-1] == colour).all(), out[2, 2]  # the border is interpolated, the inside exact


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("big_endian", [False, True])
def test_bayer16_keeps_the_high_byte_in_either_byte_order(pattern: str, big_endian: bool) -> None:
    colour = (200, 100, 30)
    mosaic = _mosaic(pattern, tuple(c * 256 + 0x7F for c in colour))  # low bytes must not count
    h, w = mosaic.shape
    data = mosaic.astype(">u2" if big_endian else "<u2").tobytes()
    out = decode_raw(f"bayer_{pattern}16", w, h, 2 * w, data, is_bigendian=big_endian)
    assert (out[1:-1, 1:-1] == colour).all(), out[2, 2]


def test_opencv_types_read_as_cv_bridge_reads_them() -> None:
    bgr = np.array([[[30, 100, 200], [1, 2, 3]]], np.uint8)  # 1x2, B G R
    assert decode_raw("8UC3", 2, 1, 6, bgr.tobytes()).tolist() == [[[200, 100, 30], [3, 2, 1]]]
    bgra = np.array([[[30, 100, 200, 9]]], np.uint8)
    assert decode_raw("8UC4", 1, 1, 4, bgra.tobytes()).tolist() == [[[200, 100, 30]]]
    grey = np.array([[7, 250]], np.uint8)
    assert decode_raw("8UC1", 2, 1, 2, grey.tobytes()).tolist() == [[[7, 7, 7], [250, 250, 250]]]


@pytest.mark.parametrize("big_endian", [False, True])
def test_sixteen_bit_mono_and_colour(big_endian: bool) -> None:
    dtype = ">u2" if big_endian else "<u2"
    mono = np.array([[0x1234, 0xFF01]], dtype)
    out = decode_raw("mono16", 2, 1, 4, mono.tobytes(), is_bigendian=big_endian)
    assert out.tolist() == [[[0x12] * 3, [0xFF] * 3]]
    rgb = np.array([[[200 * 256, 100 * 256 + 255, 30 * 256 + 1]]], dtype)
    out = decode_raw("rgb16", 1, 1, 6, rgb.tobytes(), is_bigendian=big_endian)
    assert out.tolist() == [[[200, 100, 30]]]
    out = decode_raw("bgr16", 1, 1, 6, rgb.tobytes(), is_bigendian=big_endian)
    assert out.tolist() == [[[30, 100, 200]]]


def test_layout_errors_name_the_encoding() -> None:
    width, step, data = _yuv422([RED, BLUE], rows=2, order="uyvy")
    with pytest.raises(FrameError, match=r"image width 3 is odd: yuv422 \(YUV 4:2:2\) holds pixels in pairs"):
        decode_raw("yuv422", 3, 2, step, data)
    with pytest.raises(FrameError, match=r"image step 4 < width\*bytes per pixel 8 for yuv422_yuy2 4x2"):
        decode_raw("yuv422_yuy2", width, 2, 4, data)
    with pytest.raises(FrameError, match=r"image data truncated: 8 bytes < step\*height 16 \(4x2 uyvy\)"):
        decode_raw("uyvy", width, 2, step, data[:8])
    with pytest.raises(FrameError, match=r"image step 10 < width\*bytes per pixel 20 for bayer_rggb16 10x8"):
        decode_raw("bayer_rggb16", 10, 8, 10, bytes(160))
    with pytest.raises(FrameError, match=r"image encoding 'nv12' not supported \(supported: .*yuv422, "):
        decode_raw("nv12", 4, 2, 4, bytes(12))


def test_a_yuv422_bag_replays_with_every_frame_seen(tmp_path) -> None:
    """The replay's decoder (the node's too) reads the recorded encoding: no frame is a bad frame."""
    from rosbags.rosbag2 import Writer

    from tiny_node.bag import msgs as bm
    from tiny_node.bag import replay
    from tiny_node.config import make_config

    image = bm.TYPESTORE.types[bm.IMAGE]
    width, step, data = _yuv422([RED, GREEN, BLUE, RED], rows=6, order="uyvy")
    t0 = 1_750_000_000 * 10**9
    with Writer(tmp_path / "bag", version=9) as writer:
        cam = writer.add_connection("/camera/image_raw", bm.IMAGE, typestore=bm.TYPESTORE)
        rng = writer.add_connection("/range", bm.RANGE, typestore=bm.TYPESTORE)
        for i in range(10):
            ns = t0 + i * 33_333_333
            writer.write(rng, ns, bm.serialize(bm.range_msg(ns, 50.0, 0.2, 150.0)))
            msg = image(header=bm.header(ns, "camera"), height=6, width=width, encoding="yuv422", is_bigendian=0,
                        step=step, data=np.frombuffer(data, np.uint8))
            writer.write(cam, ns + 1_000_000, bm.serialize(msg))
    result = replay(tmp_path / "bag", out_dir=tmp_path / "out", cfg=make_config(), bundle=None, plot=False)
    assert result.summary["frames"] == 10
    assert result.summary["bad_frames"] == []


def test_a_recorded_big_endian_16_bit_frame_is_read_by_its_high_byte() -> None:
    """Replay and the HIL's bag stream pass the message's ``is_bigendian`` to the decoder, as the node does."""
    from rosbags.typesys import Stores, get_typestore

    from tiny_node.bag.msgs import camera_rgb

    image = get_typestore(Stores.ROS2_HUMBLE).types["sensor_msgs/msg/Image"]
    header = get_typestore(Stores.ROS2_HUMBLE).types["std_msgs/msg/Header"]
    stamp = get_typestore(Stores.ROS2_HUMBLE).types["builtin_interfaces/msg/Time"]
    px = np.array([[0x1234, 0xCDAB]], ">u2")
    msg = image(header=header(stamp=stamp(sec=0, nanosec=0), frame_id="camera"), height=1, width=2,
                encoding="mono16", is_bigendian=1, step=4, data=np.frombuffer(px.tobytes(), np.uint8))
    assert camera_rgb(msg, "sensor_msgs/msg/Image")[0, :, 0].tolist() == [0x12, 0xCD]


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)  # what compressed_image_transport does with the buffer
    assert ok
    return buf.tobytes()


def test_image_transport_pngs_of_other_buffers_read_as_their_encoding() -> None:
    """image_transport's PNG converts colour images to bgr8 / bgr16 and compresses any other buffer as
    it is, naming it before the ';'. A Bayer camera's PNG was decoded as a grey checkerboard, and
    the model asked about it; a depth map was decided by the model as a camera image."""
    colour = (200, 100, 30)
    mosaic = _mosaic("rggb", colour).astype(np.uint8)
    out = decode_compressed("bayer_rggb8; png compressed ", _png(mosaic))
    assert (out[1:-1, 1:-1] == colour).all(), out[2, 2]
    mono16 = np.full((8, 10), 0x7F40, np.uint16)
    assert (decode_compressed("mono16; png compressed ", _png(mono16)) == 0x7F).all()  # the high byte
    bgr16 = np.zeros((8, 10, 3), np.uint16)
    bgr16[:, :, 0] = 0x1E00  # blue
    bgr16[:, :, 2] = 0xC800  # red
    assert (decode_compressed("rgb16; png compressed bgr16", _png(bgr16)) == (0xC8, 0, 0x1E)).all()
    bgr8 = np.zeros((8, 10, 3), np.uint8)
    bgr8[:, :, 2] = 255
    assert (decode_compressed("rgb8; png compressed bgr8", _png(bgr8)) == RED).all()
    assert (decode_compressed("png", _png(bgr8)) == RED).all()  # a bare 'png': OpenCV's channel order
    # a colour buffer with no 'compressed bgr' was compressed as handed in: image_transport's
    # subscriber reads it as RGB, whatever the encoding before the ';' (rviz shows it so)
    for fmt in ("rgb8; png compressed ", "bgr8; png compressed ", "rgb8; PNG"):
        assert (decode_compressed(fmt, _png(bgr8)) == (0, 0, 255)).all(), fmt
    assert (decode_compressed("rgb8; PNG Compressed BGR8", _png(bgr8)) == RED).all()


@pytest.mark.parametrize(("fmt", "img", "match"), [
    ("16UC1; png compressed ", np.full((8, 10), 1500, np.uint16), r"image encoding '16UC1' not supported"),
    ("32FC1; png compressed ", np.zeros((8, 10), np.uint8), r"image encoding '32FC1' not supported"),
    ("mono8; png compressed ", np.zeros((8, 10, 3), np.uint8),
     r"its PNG holds 3 channel\(s\) of 8 bits, mono8 has 1 of 8"),
    ("16UC1; compressedDepth png", np.zeros((8, 10), np.uint16), r"compressedDepth carries a depth image"),
])
def test_a_png_of_a_depth_image_or_of_another_layout_than_its_format_is_refused(
        fmt: str, img: np.ndarray, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        decode_compressed(fmt, _png(img))


@pytest.mark.parametrize("source", ["bayer_rggb8", "16UC1", "mono16"])
def test_a_jpeg_of_anything_but_an_8_bit_colour_or_mono_image_is_refused_by_name(source: str) -> None:
    """A Bayer mosaic in a JPEG decoded to a grey checkerboard, a depth map to white (review)."""
    ok, jpeg = cv2.imencode(".jpg", _mosaic("rggb", (200, 100, 30)).astype(np.uint8))
    assert ok
    with pytest.raises(FrameError, match=rf"a JPEG of '{source}' not supported"):
        decode_compressed(f"{source}; jpeg compressed ", jpeg.tobytes())
    assert decode_compressed("mono8; jpeg compressed mono8", jpeg.tobytes()).shape == (8, 10, 3)
