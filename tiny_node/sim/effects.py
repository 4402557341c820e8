"""Image-space effects applied after the scene is drawn: rain, glare, motion blur, sensor noise.

Everything expensive is made once per view (fixed-seed patterns) and only *chosen and placed*
per frame with the caller's Generator, so a frame costs a few saturating adds and stays
reproducible.  Rain: streak layers with drops on the glass.  Glare: a low sun's bloom with a
veil over the whole frame (contrast loss) and lens ghosts by day, oncoming-headlight bloom at
night.  Motion blur: vertical smear of the road below the horizon, growing towards the bottom
of the frame where the road moves fastest, with length ``speed * exposure`` as seen.  Noise:
zero-mean, stronger at night (gain).
"""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np

from tiny_node.sim.lighting import Look
from tiny_node.sim.projection import View

_PAD = 32
_LAYERS = 4
_BLUR_BANDS = 6


class NoiseBank:
    """Pre-drawn uniform noise; a frame adds one window and subtracts another (zero mean)."""

    def __init__(self, height: int, width: int, amplitude: int) -> None:
        g = np.random.default_rng(2024)  # fixed bank; the per-frame choice is the caller's rng
        self.amplitude = amplitude
        self.bank = g.integers(0, max(1, amplitude) + 1, size=(height + _PAD, width + _PAD, 3), dtype=np.uint8)
        self.h, self.w = height, width

    def apply(self, img: np.ndarray, rng: np.random.Generator) -> None:
        """Add noise to ``img`` in place."""
        if self.amplitude <= 0:
            return
        oy, ox, py, px = rng.integers(0, _PAD, size=4).tolist()
        cv2.add(img, self.bank[oy:oy + self.h, ox:ox + self.w], dst=img)
        cv2.subtract(img, self.bank[py:py + self.h, px:px + self.w], dst=img)


class RainLayers:
    """Streaks of falling rain and drops on the windscreen, a few fixed layers to choose from."""

    def __init__(self, view: View, look: Look) -> None:
        g = np.random.default_rng(77)
        h, w = view.height, view.width
        k = 0.5 if look.night else 1.0
        self.layers: list[np.ndarray] = []
        for _ in range(_LAYERS):
            layer = np.zeros((h, w, 3), np.uint8)
            n = int(0.0016 * h * w)
            xs = g.integers(0, w, n)
            ys = g.integers(0, h, n)
            lens = g.integers(max(2, h // 40), max(3, h // 12), n)
            vals = g.integers(25, 70, n)
            for x, y, ln, val in zip(xs, ys, lens, vals, strict=True):
                c = int(val * k)
                cv2.line(layer, (int(x), int(y)), (int(x + ln * 0.15), int(y + ln)), (c, c, c), 1)
            for _ in range(int(0.00004 * h * w) + 2):  # drops on the glass
                cx, cy = int(g.integers(0, w)), int(g.integers(0, h))
                r = int(g.integers(max(2, h // 120), max(3, h // 40)))
                c = int(35 * k)
                cv2.circle(layer, (cx, cy), r, (c, c, c + 5), -1)
            self.layers.append(cv2.GaussianBlur(layer, (3, 3), 0))

    def apply(self, img: np.ndarray, rng: np.random.Generator) -> None:
        """Add one of the layers (chosen by ``rng``) in place."""
        cv2.add(img, self.layers[int(rng.integers(0, len(self.layers)))], dst=img)


def glare_layer(view: View, look: Look) -> np.ndarray:
    """Additive bloom: a low sun ahead (day) or oncoming headlights far ahead (night)."""
    h, w = view.height, view.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    hv = view.horizon_v
    if look.night:
        # Oncoming lamps ~60 m ahead in the left lane, at lamp height.
        u0 = view.cx - view.fx * 3.5 / 60.0
        v0 = hv + view.fy * (view.mount_height - 0.65) / 60.0
        r = np.hypot((xx - u0) / w, (yy - v0) / w)
        bloom = 255.0 * np.exp(-((r / 0.025) ** 2)) + 90.0 * np.exp(-r / 0.09) + 14.0
        streak = 70.0 * np.exp(-(((yy - v0) / (0.006 * h)) ** 2)) * np.exp(-np.abs(xx - u0) / (0.25 * w))
        total = bloom + streak
        col = np.array([1.0, 0.97, 0.85], np.float32)
    else:
        u0, v0 = view.cx + 0.12 * w, hv - 0.07 * h
        r = np.hypot((xx - u0) / w, (yy - v0) / w)
        bloom = 255.0 * np.exp(-((r / 0.05) ** 2)) + 120.0 * np.exp(-r / 0.18)
        veil = 45.0  # veiling glare over the whole frame: contrast loss
        ghosts = np.zeros_like(bloom)
        for frac, rad, val in ((0.6, 0.02, 40.0), (1.3, 0.035, 30.0), (1.8, 0.06, 22.0)):
            gx, gy = u0 + (view.cx - u0) * frac * 2, v0 + (view.cy - v0) * frac * 2
            ghosts += val * (np.hypot((xx - gx) / w, (yy - gy) / w) < rad)
        total = bloom + veil + ghosts
        col = np.array([1.0, 0.96, 0.82], np.float32)
    out = np.clip(total[..., None] * col, 0, 255)
    return np.asarray(out, np.uint8)


def motion_blur(img: np.ndarray, view: View, speed_mps: float, exposure_s: float) -> None:
    """Smear the road vertically in place, by the image motion during the exposure.

    A road point at image row r below the horizon moves ``(r - hv)^2 v t / (f h)`` pixels in an
    exposure ``t`` at speed ``v``; the frame is blurred in bands by that amount.
    """
    hv = view.horizon_v
    h = view.height
    if speed_mps <= 0.1 or hv >= h - 3:
        return
    top = max(0, math.ceil(hv))
    edges = np.linspace(top, h, _BLUR_BANDS + 1).astype(int).tolist()
    for r0, r1 in itertools.pairwise(edges):
        if r1 - r0 < 3:
            continue
        rc = 0.5 * (r0 + r1) - hv
        k = round(rc * rc * speed_mps * exposure_s / (view.fy * view.mount_height))
        k = min(k, max(1, (r1 - r0) // 2), 41)
        if k >= 2:
            # Blur with k rows of context on either side so band edges leave no seam.
            lo, hi = max(top, r0 - k), min(h, r1 + k)
            img[r0:r1] = cv2.blur(img[lo:hi], (1, k), borderType=cv2.BORDER_REPLICATE)[r0 - lo:r1 - lo]
