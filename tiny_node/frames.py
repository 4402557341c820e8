"""Camera frames to RGB arrays, without cv_bridge, and with a clear reason when that fails.

A bad frame must never cost a decision: the caller gets :class:`FrameError` with a message
naming the field that is wrong, and the rule path still decides that frame.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import cv2
import numpy as np


class _Raw(NamedTuple):
    """How one ``sensor_msgs/Image`` encoding is laid out and turned into RGB."""

    channels: int  # values per pixel in the buffer (2 for 4:2:2: Y and U or V)
    depth: int  # bytes per value: 1, or 2 (16 bits, scaled to 8 by their high byte)
    conversion: int | None  # OpenCV conversion to RGB (after the scaling), None: RGB already
    pairs: bool = False  # 4:2:2: two pixels share one U and V, so the width must be even


# ROS names (sensor_msgs/image_encodings.hpp) -> layout; node and replay read frames only here.
# OpenCV's Bayer codes are named after the 2x2 block one pixel in (row 1, column 1): the ROS
# pattern names the block at (0, 0), so bayer_rggb8 is OpenCV's BayerBG (as cv_bridge maps it;
# test_frames_encodings pins each with a mosaic of known colours).  OpenCV 4.8+ also has
# BayerRGGB-style aliases; the older names are used, which every OpenCV has.
# YUV 4:2:2 is BT.601 video range, as OpenCV (and so cv_bridge) converts it.
_BAYER = {"rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB,
          "gbrg": cv2.COLOR_BayerGR2RGB, "grbg": cv2.COLOR_BayerGB2RGB}
_RAW: dict[str, _Raw] = {
    "rgb8": _Raw(3, 1, None),
    "bgr8": _Raw(3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": _Raw(4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": _Raw(4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": _Raw(1, 1, cv2.COLOR_GRAY2RGB),
    # OpenCV matrix types, read as cv_bridge reads them (OpenCV's channel order is BGR)
    "8UC1": _Raw(1, 1, cv2.COLOR_GRAY2RGB),
    "8UC3": _Raw(3, 1, cv2.COLOR_BGR2RGB),
    "8UC4": _Raw(4, 1, cv2.COLOR_BGRA2RGB),
    # packed YUV 4:2:2 (usb_cam, v4l2_camera); 'yuv422' / 'yuv422_yuy2' are the older names
    "uyvy": _Raw(2, 1, cv2.COLOR_YUV2RGB_UYVY, pairs=True),
    "yuv422": _Raw(2, 1, cv2.COLOR_YUV2RGB_UYVY, pairs=True),
    "yuyv": _Raw(2, 1, cv2.COLOR_YUV2RGB_YUY2, pairs=True),
    "yuv422_yuy2": _Raw(2, 1, cv2.COLOR_YUV2RGB_YUY2, pairs=True),
    **{f"bayer_{pattern}8": _Raw(1, 1, code) for pattern, code in _BAYER.items()},
    # 16 bits: machine-vision and GMSL cameras; the high byte is kept (as for a 16-bit sensor)
    "rgb16": _Raw(3, 2, None),
    "bgr16": _Raw(3, 2, cv2.COLOR_BGR2RGB),
    "rgba16": _Raw(4, 2, cv2.COLOR_RGBA2RGB),
    "bgra16": _Raw(4, 2, cv2.COLOR_BGRA2RGB),
    "mono16": _Raw(1, 2, cv2.COLOR_GRAY2RGB),
    **{f"bayer_{pattern}16": _Raw(1, 2, code) for pattern, code in _BAYER.items()},
}
RAW_ENCODINGS = tuple(_RAW)


class FrameError(ValueError):
    """A frame that cannot be used; the message says which field and why."""


def _check_size(width: int, height: int, max_width: int, max_height: int) -> None:
    """Refuse a frame size beyond the node's limits (they size the worker's shared memory)."""
    if not (0 < width <= max_width and 0 < height <= max_height):
        raise FrameError(f"image size {width}x{height} outside 1x1..{max_width}x{max_height} "
                         "(parameters max_frame_width, max_frame_height)")


def decode_raw(
    encoding: str, width: int, height: int, step: int, data: bytes | bytearray | memoryview,
    *, max_width: int = 4096, max_height: int = 4096, is_bigendian: bool = False,
) -> np.ndarray:
    """Return an HxWx3 uint8 RGB array from the fields of a sensor_msgs/Image.

    ``is_bigendian`` (the message's field) matters only for the 16-bit encodings.
    """
    spec = _RAW.get(encoding)
    if spec is None:
        raise FrameError(f"image encoding '{encoding}' not supported (supported: {', '.join(_RAW)})")
    _check_size(width, height, max_width, max_height)
    if spec.pairs and width % 2:
        raise FrameError(f"image width {width} is odd: {encoding} (YUV 4:2:2) holds pixels in pairs")
    row = width * spec.channels * spec.depth
    if step < row:
        raise FrameError(f"image step {step} < width*bytes per pixel {row} for {encoding} {width}x{height}")
    if len(data) < step * height:
        raise FrameError(
            f"image data truncated: {len(data)} bytes < step*height {step * height} ({width}x{height} {encoding})"
        )
    buf = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)
    img = buf[:, :row]
    if spec.depth == 2:  # the high byte of each value: big-endian first, little-endian second
        img = img[:, 0::2] if is_bigendian else img[:, 1::2]
    img = img.reshape(height, width, spec.channels)
    if spec.conversion is None:
        return np.ascontiguousarray(img)
    if spec.channels == 1:
        img = img[:, :, 0]  # OpenCV's Bayer conversions want a 2-D array
    return cv2.cvtColor(np.ascontiguousarray(img), spec.conversion)


def decode_compressed(fmt: str, data: bytes | bytearray | memoryview,
                      *, max_width: int = 4096, max_height: int = 4096) -> np.ndarray:
    """Return an RGB array from a sensor_msgs/CompressedImage (jpeg or png).

    Whether the data is a JPEG or a PNG is read from its bytes; what its pixels are, from ``fmt``
    as image_transport writes it (``<encoding>; png compressed [<target>]``) and its subscriber
    reads it (:func:`_pixel_encoding`). image_transport converts colour images to ``bgr8`` /
    ``bgr16`` but compresses any other buffer as it is, so a depth map (``16UC1``) or a Bayer
    mosaic arrives as a PNG or a JPEG too: a PNG is read (or refused) as the raw path reads that
    encoding, a JPEG of anything but an 8-bit colour or mono image is refused by name.
    """
    kind = fmt.lower()
    if "compresseddepth" in kind:
        raise FrameError(f"compressed format '{fmt}' not supported: compressedDepth carries a depth image, "
                         "not a camera's")
    if not any(k in kind for k in ("jpeg", "jpg", "png")):
        raise FrameError(f"compressed format '{fmt}' not supported (jpeg, png)")
    if len(data) == 0:
        raise FrameError("compressed image has no data")
    # The size from the header, before decoding: a small PNG of a huge image would otherwise
    # cost seconds and gigabytes in the node's executor thread before it could be refused.
    size = compressed_size(bytes(data))
    if size is None:
        raise FrameError(f"compressed image ({fmt}, {len(data)} bytes) could not be decoded: no PNG or JPEG "
                         "header with its size")
    w, h = size
    _check_size(w, h, max_width, max_height)
    if bytes(data[:2]) == b"\xff\xd8":
        source = fmt.partition(";")[0].strip() if ";" in fmt else "bgr8"
        if source not in _JPEG_SOURCES:  # a Bayer mosaic decodes to a grey checkerboard, depth saturates
            raise FrameError(f"compressed image ({fmt}): a JPEG of '{source}' not supported (an 8-bit colour or "
                             f"mono image: {', '.join(_JPEG_SOURCES)})")
        rgb = _decode_jpeg(fmt, data)
    else:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise FrameError(f"compressed image ({fmt}, {len(data)} bytes) could not be decoded")
        rgb = _png_to_rgb(fmt, img)
    if rgb.shape[:2] != (h, w):
        raise FrameError(f"compressed image decoded to {rgb.shape[1]}x{rgb.shape[0]}, its header says {w}x{h}")
    return rgb


#: image_transport's colour encodings (sensor_msgs::image_encodings::isColor): converted before compressing
_COLOUR = ("rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16", "bgra16")
#: what may be in a JPEG: image_transport compresses only 8-bit colour and mono images that way
_JPEG_SOURCES = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "8UC3", "8UC4")


def _pixel_encoding(fmt: str, channels: int, bits: int) -> str:
    """The ROS encoding of a decoded PNG's pixels (OpenCV's order), as image_transport's subscriber reads ``fmt``.

    No ``;`` (an older publisher): the image's own channels, in OpenCV's order. A colour
    encoding: BGR if the format says ``compressed bgr`` (what the publisher converted it to),
    else RGB, as handed in. Any other: the buffer as it was, in that encoding.
    """
    source, sep, rest = fmt.partition(";")
    if not sep:
        return {1: "mono", 3: "bgr", 4: "bgra"}.get(channels, "?") + str(bits)
    if source.strip() in _COLOUR:
        order = "bgr" if "compressed bgr" in rest.lower() else "rgb"
        return order + ("a" if channels == 4 else "") + str(bits)
    return source.strip()


def _png_to_rgb(fmt: str, img: np.ndarray) -> np.ndarray:
    """A decoded PNG (OpenCV's channel order, 8 or 16 bits) as RGB, its pixels those ``fmt`` names."""
    channels = 1 if img.ndim == 2 else img.shape[2]
    encoding = _pixel_encoding(fmt, channels, 8 * img.dtype.itemsize)
    spec = _RAW.get(encoding)
    if spec is None:
        raise FrameError(f"compressed image ({fmt}): image encoding '{encoding}' not supported "
                         f"(supported: {', '.join(_RAW)})")
    if (channels, img.dtype.itemsize) != (spec.channels, spec.depth):
        raise FrameError(f"compressed image ({fmt}): its PNG holds {channels} channel(s) of "
                         f"{8 * img.dtype.itemsize} bits, {encoding} has {spec.channels} of {8 * spec.depth}")
    h, w = img.shape[:2]
    img = np.ascontiguousarray(img)
    return decode_raw(encoding, w, h, img.strides[0], img.reshape(-1).view(np.uint8).data, max_width=w, max_height=h,
                      is_bigendian=sys.byteorder == "big")


def _decode_jpeg(fmt: str, data: bytes | bytearray | memoryview) -> np.ndarray:
    """A JPEG as RGB, refused when libjpeg-turbo finds its data corrupt.

    Why strict, and not OpenCV: cv2.imdecode returns whatever libjpeg made of corrupt entropy-coded
    data (a valid header, 200 garbled bytes: two thirds of the rows garbage), warning on stderr
    only, and the model was asked about it with P(go) 1.00. simplejpeg (libjpeg-turbo) raises on
    the same warnings; a garbling that still decodes validly cannot be told by any decoder.
    """
    import simplejpeg  # type: ignore[import-untyped]

    try:
        return np.asarray(simplejpeg.decode_jpeg(bytes(data), colorspace="RGB", strict=True))
    except ValueError as exc:
        raise FrameError(f"compressed image ({fmt}, {len(data)} bytes) could not be decoded: corrupt JPEG "
                         f"data ({exc})") from None


_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def compressed_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's start-of-frame segment; None if not found."""
    if head.startswith(_PNG) and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if not head.startswith(b"\xff\xd8"):
        return None
    i = 2
    while i + 4 <= len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length
            i += 2
            continue
        length = int.from_bytes(head[i + 2:i + 4], "big")
        if marker in _SOF:
            if i + 9 > len(head):
                return None
            return int.from_bytes(head[i + 7:i + 9], "big"), int.from_bytes(head[i + 5:i + 7], "big")
        if marker == 0xDA or length < 2:  # scan data before any frame header: not a JPEG we can size
            return None
        i += 2 + length
    return None


def encode_raw(rgb: np.ndarray, encoding: str = "rgb8") -> tuple[int, int, int, bytes]:
    """Inverse of :func:`decode_raw` for publishers (simulator, demo): (width, height, step, data)."""
    if encoding == "rgb8":
        out = rgb
    elif encoding == "bgr8":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding == "mono8":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    else:
        raise FrameError(f"cannot encode to '{encoding}'")
    out = np.ascontiguousarray(out)
    h, w = out.shape[:2]
    return w, h, out.strides[0], out.tobytes()
