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
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise FrameError(f"compressed image ({fmt}, {len(data)} bytes) could not be decoded")
    h, w = img.shape[:2]
    if w > max_width or h > max_height:
        raise FrameError(f"image size {w}x{h} larger than {max_width}x{max_height}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


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
