"""The forward camera: what it would see of the world, through a pinhole, in this weather.

A frame is the cached background (road, kerbs, sidewalks, sky; ``backdrop``), then what moves:
centre-line dashes, lamp posts, and the actors drawn far to near so nearer ones hide farther
ones (a child behind a parked car is not drawn over it), then rain / glare, motion blur and
sensor noise (``effects``).  Light and haze follow ``lighting``.  Per-frame work is a copy,
a few dozen OpenCV fills and a few saturating adds: 0.4-2 ms for 640x480 with a few actors on
the 2-core target (printed by ``test/test_sim_render.py``), so the closed loop renders 30
frames per simulated second far faster than real time.  The first frame of an environment
builds its cache (0.3-1 s).  ``render_small`` draws the same view at a model's input size
(equal to the full frame resized); it is not much cheaper, since the cost is per drawn shape,
not per pixel.  All randomness (noise window, rain layer) comes from the Generator passed in,
so the same seed gives the same frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from tiny_node.camera import Pinhole
from tiny_node.sim.backdrop import Backdrop, centre_dashes
from tiny_node.sim.effects import NoiseBank, RainLayers, glare_layer
from tiny_node.sim.effects import motion_blur as blur_motion
from tiny_node.sim.lighting import Look, look_for
from tiny_node.sim.projection import View
from tiny_node.sim.road import CENTRE_LINE_Y, LINE_WIDTH_M, STREET_LIGHT_SPACING_M
from tiny_node.sim.scenario import Environment
from tiny_node.sim.silhouettes import Painter, draw_actor, draw_lamp_post
from tiny_node.sim.world import ActorState, World

FAR_M = 150.0  # nothing is drawn beyond this distance (it would be < 1 px)


@dataclass(frozen=True)
class CameraModel(Pinhole):
    """Pinhole camera behind the windscreen at its own resolution (``tiny_node.camera``)."""

    width: int = 640
    height: int = 480

    def view(self, size: tuple[int, int] | None = None) -> View:
        """The projection at the model's resolution, or this view resized to ``size`` (W, H)."""
        w, h = size if size is not None else (self.width, self.height)
        sx, sy = w / self.width, h / self.height
        return View(width=w, height=h, fx=self.fx * sx, fy=self.fx * sy, cx=self.width / 2.0 * sx,
                    cy=self.height / 2.0 * sy, mount_height=self.mount_height_m,
                    pitch=math.radians(self.pitch_deg), setback=self.setback_m)


class _Look:
    """Everything cached for one environment at one output size."""

    def __init__(self, view: View, env: Environment) -> None:
        self.look: Look = look_for(env)
        self.backdrop = Backdrop(view, self.look)
        self.noise = NoiseBank(view.height, view.width, self.look.noise)
        self.rain = RainLayers(view, self.look) if env.weather == "rain" else None
        self.glare = glare_layer(view, self.look) if env.glare else None


class CameraRenderer:
    """Renders RGB frames of a :class:`World`; caches per environment (and per small size)."""

    def __init__(self, model: CameraModel = CameraModel(), size: tuple[int, int] | None = None) -> None:
        self.model = model
        self.view = model.view(size)
        self._looks: dict[Environment, _Look] = {}
        self._small: dict[tuple[int, int], CameraRenderer] = {}

    def _cached(self, env: Environment) -> _Look:
        c = self._looks.get(env)
        if c is None:
            if len(self._looks) >= 12:  # bound the memory (a few MB each; night + street lights ~40 MB)
                self._looks.pop(next(iter(self._looks)))
            c = _Look(self.view, env)
            self._looks[env] = c
        return c

    def render(self, world: World, env: Environment, rng: np.random.Generator, motion_blur: bool = True) -> np.ndarray:
        """One frame (HxWx3 uint8 RGB) of ``world`` now, under ``env``."""
        return self.render_state(world.ego.position, world.ego.speed, world.actors(), env, rng,
                                 motion_blur_on=motion_blur)

    def render_small(self, world: World, env: Environment, rng: np.random.Generator,
                     size: tuple[int, int] = (224, 168), motion_blur: bool = True) -> np.ndarray:
        """The same view drawn at ``size`` (W, H): equals the full frame resized, much cheaper."""
        r = self._small.get(size)
        if r is None:
            r = CameraRenderer(self.model, size)
            self._small[size] = r
        return r.render(world, env, rng, motion_blur=motion_blur)

    def render_state(self, ego_front: float, ego_speed: float, actors: list[ActorState], env: Environment,
                     rng: np.random.Generator, *, motion_blur_on: bool = True) -> np.ndarray:
        """Render from explicit state (replay tools, tests) rather than a :class:`World`."""
        cache = self._cached(env)
        look, view = cache.look, self.view
        cam_x = ego_front - view.setback
        img: np.ndarray = cache.backdrop.image(cam_x).copy()
        p = Painter(img, view, look, ego_front)

        # Centre-line dashes (retroreflective: lit like the road at their distance).
        for x0, x1 in centre_dashes(cam_x, FAR_M):
            xm = 0.5 * (x0 + x1)
            col = p.colour(look.line, xm, CENTRE_LINE_Y)
            y0, y1 = CENTRE_LINE_Y - LINE_WIDTH_M / 2, CENTRE_LINE_Y + LINE_WIDTH_M / 2
            p.fill([(x0, y0, 0.0), (x1, y0, 0.0), (x1, y1, 0.0), (x0, y1, 0.0)], col)

        # Flat things first (anything upright hides them), then far to near.
        flat = [a for a in actors if a.height <= 0.05]
        upright = [a for a in actors if a.height > 0.05]
        for a in sorted(flat, key=lambda a: -(a.x - cam_x)):
            if -10.0 < a.x - cam_x < FAR_M:
                draw_actor(p, a)
        items: list[tuple[float, ActorState | float]] = [
            (math.hypot(a.x - cam_x, a.y), a) for a in upright if -10.0 < a.x - cam_x < FAR_M
        ]
        if env.street_lights:
            first = math.floor(cam_x / STREET_LIGHT_SPACING_M) * STREET_LIGHT_SPACING_M
            x = first
            while x < cam_x + FAR_M:
                if x > cam_x:
                    items.append((math.hypot(x - cam_x, 4.0), x))
                x += STREET_LIGHT_SPACING_M
        items.sort(key=lambda it: -it[0])
        for _, it in items:
            if isinstance(it, ActorState):
                draw_actor(p, it)
            else:
                draw_lamp_post(p, it)

        if cache.rain is not None:
            cache.rain.apply(img, rng)
        if cache.glare is not None:
            cv2.add(img, cache.glare, dst=img)
        if motion_blur_on:
            blur_motion(img, view, ego_speed, look.exposure_s)
        cache.noise.apply(img, rng)
        return img
