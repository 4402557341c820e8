"""How light and weather colour the scene: palette, illumination and atmospheric haze.

One model serves the pre-rendered background (per pixel) and the actors (per face), so a
pedestrian at night is as dark as the road it stands on unless the headlights or a street
light reach it.  Illumination: day ~1; night = ambient + low-beam headlights (asymmetric cone,
longer on the nearside, falling off with distance) + street-light pools.  Haze (Koschmieder):
transmission ``exp(-3.912 d / V)`` for a meteorological visibility ``V`` (fog 80 m, rain 400 m
as contrast loss, clear 5 km), blending towards the fog / sky colour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tiny_node.sim.road import STREET_LIGHT_HEIGHT_M, STREET_LIGHT_LAMP_Y, STREET_LIGHT_SPACING_M
from tiny_node.sim.scenario import Environment

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Look:
    """Palette and optics for one environment."""

    night: bool
    street_lights: bool
    sky_top: RGB
    sky_horizon: RGB
    asphalt: RGB
    sidewalk: RGB
    kerb: RGB
    grass: RGB
    line: RGB
    trees: RGB
    fog: RGB
    visibility_m: float
    daylight: float  # illumination factor by day
    ambient: float  # illumination factor at night without lights
    exposure_s: float  # for motion blur: longer at night
    noise: int  # sensor noise amplitude (grey levels), higher with night gain


def look_for(env: Environment) -> Look:
    """The palette of an environment (colours are RGB as seen under full daylight)."""
    night = env.light == "night"
    rain, fog = env.weather == "rain", env.weather == "fog"
    if night:
        sky_top, sky_h = (6, 8, 18), (18, 20, 34)
        fog_c: RGB = (26, 27, 30)
    elif rain:
        sky_top, sky_h = (120, 124, 130), (165, 168, 172)
        fog_c = (150, 153, 157)
    elif fog:
        sky_top, sky_h = (196, 198, 201), (205, 207, 209)
        fog_c = (200, 202, 205)
    else:
        sky_top, sky_h = (92, 140, 205), (190, 210, 230)
        fog_c = (200, 212, 228)
    asphalt = (62, 62, 66) if rain else (88, 88, 92)  # wet asphalt is darker
    return Look(
        night=night,
        street_lights=env.street_lights,
        sky_top=sky_top,
        sky_horizon=sky_h,
        asphalt=asphalt,
        sidewalk=(150, 148, 142),
        kerb=(190, 188, 182),
        grass=(70, 105, 55),
        line=(235, 235, 230),
        trees=(45, 70, 45),
        fog=fog_c,
        visibility_m=80.0 if fog else (400.0 if rain else 5000.0),
        daylight=0.75 if rain else (0.9 if fog else 1.0),
        ambient=0.07 if not env.street_lights else 0.12,
        exposure_s=1 / 30 if night else 1 / 250,
        noise=10 if night else 4,
    )


def headlight(ahead: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Low-beam illumination of a point ``ahead`` m in front of the ego's bumper, ``y`` lateral.

    An asymmetric cone (wider and longer to the nearside, right), bright up to ~20 m and
    fading out by ~70 m; nothing right in front of the bumper (the beam starts lower down).
    """
    a = np.maximum(ahead, 0.1)
    ang = np.degrees(np.arctan2(y, a)) + 1.5
    sigma = np.where(ang < 0.0, 16.0, 10.0)
    cone = np.exp(-0.5 * (ang / sigma) ** 2)
    reach = np.where(ang < 0.0, 75.0, 50.0)
    fall = np.clip(18.0 / a, 0.0, 1.0) ** 1.2 * np.clip((reach - a) / 25.0, 0.0, 1.0)
    near = np.clip((a - 1.0) / 3.0, 0.0, 1.0)
    out: np.ndarray = 1.25 * cone * fall * near
    return out


def street_light(x_abs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pools of light under street lamps every STREET_LIGHT_SPACING_M along the right kerb."""
    s = STREET_LIGHT_SPACING_M
    dx = np.mod(x_abs + s / 2.0, s) - s / 2.0
    r2 = dx * dx + (y - STREET_LIGHT_LAMP_Y) ** 2
    sig2 = (0.9 * STREET_LIGHT_HEIGHT_M) ** 2
    out: np.ndarray = 0.75 * np.exp(-0.5 * r2 / sig2)
    return out


def illumination(look: Look, ahead: np.ndarray, y: np.ndarray, x_abs: np.ndarray) -> np.ndarray:
    """Illumination factor (1 = full daylight) at ground points, vectorised."""
    if not look.night:
        return np.full(np.shape(ahead), look.daylight)
    light = look.ambient + headlight(ahead, y)
    if look.street_lights:
        light = light + street_light(x_abs, y)
    out: np.ndarray = np.minimum(light, 1.4)
    return out


def illumination_at(look: Look, ahead: float, y: float, x_abs: float) -> float:
    """Scalar :func:`illumination` (actors, markings), in plain Python for speed: same formula."""
    if not look.night:
        return look.daylight
    a = max(ahead, 0.1)
    ang = math.degrees(math.atan2(y, a)) + 1.5
    sigma, reach = (16.0, 75.0) if ang < 0.0 else (10.0, 50.0)
    cone = math.exp(-0.5 * (ang / sigma) ** 2)
    fall = math.pow(min(1.0, 18.0 / a), 1.2) * min(1.0, max(0.0, (reach - a) / 25.0))
    near = min(1.0, max(0.0, (a - 1.0) / 3.0))
    light = look.ambient + 1.25 * cone * fall * near
    if look.street_lights:
        s = STREET_LIGHT_SPACING_M
        dx = (x_abs + s / 2.0) % s - s / 2.0
        r2 = dx * dx + (y - STREET_LIGHT_LAMP_Y) ** 2
        light += 0.75 * math.exp(-0.5 * r2 / (0.9 * STREET_LIGHT_HEIGHT_M) ** 2)
    return min(light, 1.4)


def transmission(look: Look, dist: np.ndarray) -> np.ndarray:
    """Fraction of an object's light that reaches the camera through the haze."""
    out: np.ndarray = np.exp(-3.912 * np.maximum(dist, 0.0) / look.visibility_m)
    return out


def shade(look: Look, colour: RGB, light: float, dist: float, emissive: bool = False) -> RGB:
    """A surface colour as seen: lit (or self-luminous) and hazed at distance ``dist``."""
    t = math.exp(-3.912 * max(dist, 0.0) / look.visibility_m)
    k = 1.0 if emissive else light
    return (
        int(min(255.0, colour[0] * k * t + look.fog[0] * (1.0 - t))),
        int(min(255.0, colour[1] * k * t + look.fog[1] * (1.0 - t))),
        int(min(255.0, colour[2] * k * t + look.fog[2] * (1.0 - t))),
    )
