"""Camera frames to RGB arrays, without cv_bridge, and with a clear reason when that fails.

A bad frame must never cost a decision: the caller gets :class:`FrameError` with a message
naming the field that is wrong, and the rule path still decides that frame.
"""

from __future__ import annotations

import cv2
import numpy as np

# encoding -> (channels, dtype, conversion to RGB or None)
_RAW: dict[str, tuple[int, type, int | None]] = {
    "rgb8": (3, np.uint8, None),
    "bgr8": (3, np.uint8, cv2.COLOR_BGR2RGB),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, np.uint8, cv2.COLOR_BGRA2RGB),
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2RGB),
}
RAW_ENCODINGS = tuple(_RAW)


class FrameError(ValueError):
    """A frame that cannot be used; the message says which field and why."""


def decode_raw(
    encoding: str, width: int, height: int, step: int, data: bytes | bytearray | memoryview,
    *, max_width: int = 4096, max_height: int = 4096,
) -> np.ndarray:
    """Return an HxWx3 uint8 RGB array from the fields of a sensor_msgs/Image."""
    spec = _RAW.get(encoding)
    if spec is None:
        raise FrameError(f"image encoding '{encoding}' not supported (supported: {', '.join(_RAW)})")
    channels, dtype, conversion = spec
    if not (0 < width <= max_width and 0 < height <= max_height):
        raise FrameError(f"image size {width}x{height} outside 1x1..{max_width}x{max_height}")
    row = width * channels * np.dtype(dtype).itemsize
    if step < row:
        raise FrameError(f"image step {step} < width*channels {row} for {encoding} {width}x{height}")
    if len(data) < step * height:
        raise FrameError(
            f"image data truncated: {len(data)} bytes < step*height {step * height} ({width}x{height} {encoding})"
        )
    buf = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)
    img = buf[:, :row].reshape(height, width, channels)
    if conversion is None:
        return np.ascontiguousarray(img)
    return cv2.cvtColor(img, conversion)


def decode_compressed(fmt: str, data: bytes | bytearray | memoryview,
                      *, max_width: int = 4096, max_height: int = 4096) -> np.ndarray:
    """Return an RGB array from a sensor_msgs/CompressedImage (jpeg or png)."""
    kind = fmt.lower()
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
    if not (0 < w <= max_width and 0 < h <= max_height):
        raise FrameError(f"image size {w}x{h} outside 1x1..{max_width}x{max_height}")
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise FrameError(f"compressed image ({fmt}, {len(data)} bytes) could not be decoded")
    if img.shape[:2] != (h, w):
        raise FrameError(f"compressed image decoded to {img.shape[1]}x{img.shape[0]}, its header says {w}x{h}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


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
