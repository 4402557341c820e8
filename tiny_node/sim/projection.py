"""Pinhole projection of road-frame points into the image, with near-plane clipping.

The camera sits ``setback`` m behind the ego's front bumper at ``mount_height`` m, looking
along the road, pitched down by ``pitch``.  Image axes: u right, v down.  Focal lengths may
differ per axis so a small render is exactly the full frame resized (what a model's
preprocessing does).  Polygons are clipped at ``NEAR_M`` in front of the camera so a parked car
half beside the ego still draws correctly.  Coordinates go to OpenCV in fixed point
(``SHIFT`` fractional bits) so slow, distant objects move smoothly instead of in pixel steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NEAR_M = 0.3
SHIFT = 4
SCALE = float(1 << SHIFT)

Point = tuple[float, float, float]


@dataclass(frozen=True)
class View:
    """Intrinsics at an output size plus the camera's pose relative to the ego."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    mount_height: float
    pitch: float  # rad, positive = looking down
    setback: float

    @property
    def horizon_v(self) -> float:
        """Image row of the horizon (points at infinity on the road)."""
        return self.cy - self.fy * math.tan(self.pitch)

    def polygon(self, rel: Sequence[Point]) -> np.ndarray | None:
        """A convex polygon (offsets from the camera) -> fixed-point pixels, clipped; None if unseen.

        Plain Python: for a handful of vertices it is several times faster than numpy.
        """
        c, s = math.cos(self.pitch), math.sin(self.pitch)
        cam = [(-y, -x * s - z * c, x * c - z * s) for x, y, z in rel]
        depths = [p[2] for p in cam]
        if min(depths) < NEAR_M:
            if max(depths) < NEAR_M:
                return None
            cam = _clip_near(cam)
            if len(cam) < 3:
                return None
        fx, fy, cx, cy = self.fx, self.fy, self.cx, self.cy
        us = [cx + fx * p[0] / p[2] for p in cam]
        vs = [cy + fy * p[1] / p[2] for p in cam]
        if max(us) < 0 or min(us) >= self.width or max(vs) < 0 or min(vs) >= self.height:
            return None
        lim = 4e4
        return np.array([[round(max(-lim, min(lim, u)) * SCALE), round(max(-lim, min(lim, v)) * SCALE)]
                         for u, v in zip(us, vs, strict=True)], np.int32)

    def point(self, rel: tuple[float, float, float]) -> tuple[float, float, float] | None:
        """One offset -> (u, v, depth), or None behind the near plane."""
        c, s = math.cos(self.pitch), math.sin(self.pitch)
        depth = rel[0] * c - rel[2] * s
        if depth < NEAR_M:
            return None
        down = -rel[0] * s - rel[2] * c
        return self.cx - self.fx * rel[1] / depth, self.cy + self.fy * down / depth, depth


def _clip_near(cam: list[Point]) -> list[Point]:
    """Sutherland-Hodgman clip of a polygon (camera coordinates) against depth >= NEAR_M."""
    out: list[Point] = []
    n = len(cam)
    for i in range(n):
        a, b = cam[i], cam[(i + 1) % n]
        a_in, b_in = a[2] >= NEAR_M, b[2] >= NEAR_M
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (NEAR_M - a[2]) / (b[2] - a[2])
            out.append((a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), NEAR_M))
    return out
