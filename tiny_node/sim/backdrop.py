"""The static part of every frame, rendered once per environment and view and then copied.

Each pixel's ray is cast onto the road plane: asphalt, solid edge lines, kerbs, sidewalks and
verges by lateral position, lit and hazed per pixel (``lighting``); above the horizon a sky
gradient and a distant tree line.  Because the camera moves only along the road, this image is
the same in every frame; only the dashed centre line, lamp posts and actors move, and they are
drawn per frame.  At night with street lights the light pools move too, so the background is
baked per position modulo the lamp spacing (``PHASE_STEP_M`` steps, made on first use).
Supersampled 2x for clean thin lines.
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np

from tiny_node.sim.lighting import Look, illumination, street_light, transmission
from tiny_node.sim.projection import View
from tiny_node.sim.road import (
    DASH_LENGTH_M,
    DASH_PERIOD_M,
    KERB_WIDTH_M,
    LEFT_EDGE_Y,
    LEFT_KERB_Y,
    LINE_WIDTH_M,
    RIGHT_EDGE_Y,
    RIGHT_KERB_Y,
    SIDEWALK_WIDTH_M,
    STREET_LIGHT_SPACING_M,
)

PHASE_STEP_M = 1.0
_SUPERSAMPLE = 2


def _ground_rays(view: View, ss: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (supersampled) pixel: ground hit forward X, lateral Y, ray length, and hit mask."""
    h, w = view.height * ss, view.width * ss
    u = (np.arange(w, dtype=np.float64) + 0.5) / ss - 0.5
    v = (np.arange(h, dtype=np.float64) + 0.5) / ss - 0.5
    uu, vv = np.meshgrid((u - view.cx) / view.fx, (v - view.cy) / view.fy)
    c, s = math.cos(view.pitch), math.sin(view.pitch)
    # Ray = forward + uu * right + vv * down, in (x forward, y left, z up).
    dx = c - vv * s
    dy = -uu
    dz = -s - vv * c
    hit = dz < -1e-4
    t = np.where(hit, view.mount_height / np.where(hit, -dz, 1.0), 1e9)
    gx, gy = t * dx, t * dy
    length = t * np.sqrt(dx * dx + dy * dy + dz * dz)
    hit &= gx < 3000.0
    return gx, gy, length, hit


def _albedo(look: Look, gy: np.ndarray) -> np.ndarray:
    """Ground colour by lateral position ``gy`` (HxWx3 float)."""
    col = np.empty((*gy.shape, 3), np.float32)
    col[...] = look.grass
    road = (gy > RIGHT_KERB_Y) & (gy < LEFT_KERB_Y)
    col[road] = look.asphalt
    for y_side, sgn in ((RIGHT_KERB_Y, -1.0), (LEFT_KERB_Y, 1.0)):
        walk = (sgn * (gy - y_side) >= 0) & (sgn * (gy - y_side) <= SIDEWALK_WIDTH_M)
        col[walk] = look.sidewalk
        col[np.abs(gy - y_side) <= KERB_WIDTH_M / 2] = look.kerb
    for y_line in (RIGHT_EDGE_Y, LEFT_EDGE_Y):
        col[np.abs(gy - y_line) <= LINE_WIDTH_M / 2] = look.line
    return col


def _tree_line(look: Look, view: View, ss: int) -> tuple[np.ndarray, np.ndarray]:
    """Height in rows of a distant tree line per column (fixed pattern), and its colour."""
    w = view.width * ss
    g = np.random.default_rng(12345)  # fixed: scenery, not noise
    knots = g.uniform(0.3, 1.0, size=w // (24 * ss) + 3)
    prof = np.interp(np.arange(w) / (24 * ss), np.arange(knots.size), knots)
    prof += 0.25 * np.sin(np.arange(w) * 0.9 / ss) * g.uniform(0.2, 1.0, size=w)
    rows = np.clip(prof, 0.0, None) * 0.025 * view.height * ss
    colour = np.array(look.trees, np.float32)
    t = float(transmission(look, np.array([600.0]))[0])
    colour = colour * (0.15 if look.night else 1.0) * t + np.array(look.fog, np.float32) * (1.0 - t)
    return rows, colour


class Backdrop:
    """Background images of one view and look; per lamp-spacing phase when pools move.

    What does not depend on the camera's position is made once (supersampled then averaged:
    sky and tree line, ground coverage and colour per pixel, haze); an image for a position is
    then that colour times the light at each pixel's ground point, a few ms.
    """

    def __init__(self, view: View, look: Look) -> None:
        self.view = view
        self.look = look
        self.moving_pools = look.night and look.street_lights
        self._images: dict[int, np.ndarray] = {}
        ss = _SUPERSAMPLE
        size = (view.width, view.height)
        _, gy, _, hit = _ground_rays(view, ss)
        h = gy.shape[0]
        # Sky: gradient from the horizon up, with the distant tree line.
        rows = np.arange(h, dtype=np.float32)[:, None, None]
        hv = view.horizon_v * ss
        k = np.clip((hv - rows) / max(hv, 1.0), 0.0, 1.0)
        sky = np.array(look.sky_horizon, np.float32) * (1.0 - k) + np.array(look.sky_top, np.float32) * k
        sky = np.broadcast_to(sky, (*gy.shape, 3)).copy()
        trees, tree_c = _tree_line(look, view, ss)
        above = hv - rows[:, :, 0]
        sky[(above >= 0) & (above <= trees[None, :])] = tree_c
        cover = hit.astype(np.float32)
        albedo = _albedo(look, np.where(hit, gy, 0.0)) * cover[..., None]
        self._sky = cv2.resize(sky * (1.0 - cover[..., None]), size, interpolation=cv2.INTER_AREA)
        self._albedo = cv2.resize(albedo, size, interpolation=cv2.INTER_AREA)  # premultiplied by cover
        self._cover = cv2.resize(cover, size, interpolation=cv2.INTER_AREA)[..., None]
        # Light and haze at pixel centres (smooth, so no supersampling needed).
        gx1, gy1, len1, hit1 = _ground_rays(view, 1)
        near = hit1 & (gx1 < 400.0)  # farther, haze and falloff leave nothing to light
        self._gx = np.where(near, gx1, 400.0).astype(np.float32)
        self._gy = np.where(near, gy1, 0.0).astype(np.float32)
        self._t = transmission(look, np.where(hit1, len1, 1e6)).astype(np.float32)[..., None]
        self._fog = np.array(look.fog, np.float32)
        # Light without the moving street-light pools (those are added per position).
        base = replace(look, street_lights=False)
        self._light = illumination(base, self._gx - view.setback, self._gy, self._gx).astype(np.float32)
        self._pool_rows = np.nonzero(near.any(axis=1))[0]

    def _bake(self, camera_x: float) -> np.ndarray:
        """The background (HxWx3 uint8 RGB) with the camera at road x ``camera_x``."""
        light = self._light
        if self.moving_pools:
            light = light.copy()
            r = self._pool_rows
            pools = street_light(self._gx[r] + np.float32(camera_x), self._gy[r])
            light[r] = np.minimum(light[r] + pools, 1.4)
        ground = self._albedo * light[..., None]
        ground = ground * self._t + self._fog * self._cover * (1.0 - self._t)
        return np.asarray(np.clip(self._sky + ground + 0.5, 0, 255), np.uint8)

    def image(self, camera_x: float) -> np.ndarray:
        """The background for the camera at road x ``camera_x`` (do not modify it)."""
        if not self.moving_pools:
            key = 0
        else:
            n = round(STREET_LIGHT_SPACING_M / PHASE_STEP_M)
            key = round(camera_x / PHASE_STEP_M) % n
        img = self._images.get(key)
        if img is None:
            img = self._bake(key * PHASE_STEP_M)
            self._images[key] = img
            if not self.moving_pools:  # one image is all there will be: drop the layers (~15 MB)
                del self._sky, self._albedo, self._cover, self._gx, self._gy, self._t, self._light
        return img


def centre_dashes(camera_x: float, far_m: float) -> list[tuple[float, float]]:
    """(x0, x1) road-frame spans of the centre-line dashes between the camera and ``far_m``."""
    first = math.floor(camera_x / DASH_PERIOD_M) * DASH_PERIOD_M
    out = []
    x = first
    while x < camera_x + far_m:
        x1 = x + DASH_LENGTH_M
        if x1 > camera_x + 0.3:
            out.append((max(x, camera_x + 0.3), x1))
        x += DASH_PERIOD_M
    return out
