"""Actor silhouettes: recognisable shapes that scale with distance and follow the light.

Cars as lit 3-D boxes with cabin, glass, wheels and lamps; pedestrians and cyclists as posed
figures; gantries, obstacles, markings, lamp posts.

Cars and fixed structures are real 3-D boxes (visible faces only, so a car seen obliquely
shows its side, a turning car turns); people and bicycles are upright figures drawn at their
projected position and scale, in side view when crossing and front / back view when walking
along, with the gait from the actor's phase.  Each surface is shaded for light and haze at its
distance (``lighting``), so at night an unlit pedestrian is dark.  The caller draws far to near.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from tiny_node.sim.lighting import RGB, Look, illumination_at, shade
from tiny_node.sim.projection import SCALE, SHIFT, Point, View
from tiny_node.sim.road import (
    LEFT_KERB_Y,
    RIGHT_KERB_Y,
    STREET_LIGHT_HEIGHT_M,
    STREET_LIGHT_LAMP_Y,
    STREET_LIGHT_POLE_Y,
)
from tiny_node.sim.world import ActorState

GLASS: RGB = (38, 48, 62)
TYRE: RGB = (22, 22, 24)
CHASSIS: RGB = (28, 28, 30)
TAIL: RGB = (200, 20, 20)
TAIL_LIT: RGB = (255, 60, 50)
HEAD: RGB = (215, 215, 200)
HEAD_LIT: RGB = (255, 252, 235)
SKIN: RGB = (196, 150, 120)
HAIR: RGB = (45, 32, 25)
TROUSERS: RGB = (40, 52, 95)
METAL: RGB = (120, 124, 130)
LAMP_LIT: RGB = (255, 244, 210)

# Box faces in local unit coordinates (x along heading, y left, z up), with outward normals
# and a fixed directional-light factor so faces read as 3-D.
_FACES: dict[str, tuple[tuple[tuple[float, float, float], ...], tuple[float, float, float], float]] = {
    "rear": (((-1, -1, 0), (-1, 1, 0), (-1, 1, 1), (-1, -1, 1)), (-1, 0, 0), 0.92),
    "front": (((1, -1, 0), (1, 1, 0), (1, 1, 1), (1, -1, 1)), (1, 0, 0), 0.92),
    "right": (((-1, -1, 0), (1, -1, 0), (1, -1, 1), (-1, -1, 1)), (0, -1, 0), 0.78),
    "left": (((-1, 1, 0), (1, 1, 0), (1, 1, 1), (-1, 1, 1)), (0, 1, 0), 0.78),
    "top": (((-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)), (0, 0, 1), 1.08),
}


def _inset(pts: list[Point], k_side: float, k_up: float, dz: float) -> list[Point]:
    """A face shrunk towards its centre (``k_side`` across, ``k_up`` in height), shifted by ``dz``."""
    n = len(pts)
    mx, my, mz = (sum(p[i] for p in pts) / n for i in range(3))
    return [(mx + (x - mx) * k_side, my + (y - my) * k_side, mz + (z - mz) * k_up + dz) for x, y, z in pts]


def _scaled(c: RGB, k: float) -> RGB:
    return (min(255, int(c[0] * k)), min(255, int(c[1] * k)), min(255, int(c[2] * k)))


class Painter:
    """Draws into one frame; knows the camera, the light and where the ego is."""

    def __init__(self, img: np.ndarray, view: View, look: Look, ego_front: float) -> None:
        self.img = img
        self.view = view
        self.look = look
        self.ego_front = ego_front
        self.cam: Point = (ego_front - view.setback, 0.0, view.mount_height)

    # -- colour --------------------------------------------------------------------------------

    def colour(self, rgb: RGB, x: float, y: float, *, emissive: bool = False, light: float | None = None) -> RGB:
        """``rgb`` lit at road point (x, y) and hazed by its distance from the camera."""
        if light is None:
            light = illumination_at(self.look, x - self.ego_front, y, x)
        return shade(self.look, rgb, light, math.hypot(x - self.cam[0], y), emissive)

    # -- primitives ----------------------------------------------------------------------------

    def fill(self, pts: Sequence[Point], rgb: RGB) -> None:
        """A convex polygon given in road-frame points."""
        cx, cy, cz = self.cam
        poly = self.view.polygon([(x - cx, y - cy, z - cz) for x, y, z in pts])
        if poly is not None:
            cv2.fillConvexPoly(self.img, poly, rgb, cv2.LINE_8, SHIFT)

    def project(self, p: tuple[float, float, float]) -> tuple[float, float, float] | None:
        """Road-frame point -> (u, v, depth) or None."""
        return self.view.point((p[0] - self.cam[0], p[1] - self.cam[1], p[2] - self.cam[2]))

    def box(self, x: float, y: float, heading: float, *, size: tuple[float, float], z: tuple[float, float],
            rgb: RGB, light: float | None = None, faces: tuple[str, ...] | None = None) -> dict[str, list[Point]]:
        """A lit box; returns the visible faces' corners (road frame) by face name."""
        c, s = math.cos(heading), math.sin(heading)
        hl, hw = size[0] / 2.0, size[1] / 2.0
        z0, z1 = z
        if light is None:
            light = illumination_at(self.look, x - self.ego_front, y, x)
        dist = math.hypot(x - self.cam[0], y)
        visible: dict[str, list[Point]] = {}
        for name, (corners, normal, k) in _FACES.items():
            if faces is not None and name not in faces:
                continue
            nx, ny = normal[0] * c - normal[1] * s, normal[0] * s + normal[1] * c
            fx = x + (normal[0] * hl) * c - (normal[1] * hw) * s
            fy = y + (normal[0] * hl) * s + (normal[1] * hw) * c
            fz = z1 if normal[2] > 0 else 0.5 * (z0 + z1)
            if nx * (self.cam[0] - fx) + ny * (self.cam[1] - fy) + normal[2] * (self.cam[2] - fz) <= 0.0:
                continue
            pts = [(x + lx * hl * c - ly * hw * s, y + lx * hl * s + ly * hw * c, z0 + lz * (z1 - z0))
                   for lx, ly, lz in corners]
            self.fill(pts, shade(self.look, rgb, light * k, dist))  # face light before haze
            visible[name] = pts
        return visible

    def local(self, a: ActorState, lx: float, ly: float, lz: float) -> tuple[float, float, float]:
        """A point in the actor's frame (x along heading, y left) -> road frame."""
        c, s = math.cos(a.heading), math.sin(a.heading)
        return a.x + lx * c - ly * s, a.y + lx * s + ly * c, lz

    def quad(self, a: ActorState, pts: list[tuple[float, float, float]], rgb: RGB) -> None:
        """A polygon given in the actor's frame, already coloured."""
        self.fill([self.local(a, *p) for p in pts], rgb)

    def glow(self, p: tuple[float, float, float], radius_m: float, rgb: RGB) -> None:
        """A round self-luminous spot (lamp) with a faint halo at night."""
        q = self.project(p)
        if q is None:
            return
        u, v, depth = q
        r = max(1.0, self.view.fy * radius_m / depth)
        centre = (int(u * SCALE), int(v * SCALE))
        if self.look.night:
            cv2.circle(self.img, centre, int(2.5 * r * SCALE), _scaled(rgb, 0.45), -1, cv2.LINE_8, SHIFT)
        cv2.circle(self.img, centre, int(r * SCALE), rgb, -1, cv2.LINE_8, SHIFT)


# ---------------------------------------------------------------------------------------------
# Vehicles and structures


def draw_car(p: Painter, a: ActorState) -> None:
    """Body, cabin with glass, wheels on the visible side, tail / head lamps."""
    ln, wd, ht = a.length, a.width, a.height
    body = a.colour or (150, 30, 35)
    light = illumination_at(p.look, a.x - p.ego_front, a.y, a.x)
    belt = 0.62 * ht
    p.box(a.x, a.y, a.heading, size=(0.9 * ln, 0.94 * wd), z=(0.0, 0.3), rgb=CHASSIS, light=light)
    faces = p.box(a.x, a.y, a.heading, size=(ln, wd), z=(0.28, belt), rgb=body, light=light)
    # Cabin a bit behind the middle; glass inset on its upright faces.
    cx, cy = p.local(a, -0.06 * ln, 0.0, 0.0)[:2]
    cab = p.box(cx, cy, a.heading, size=(0.5 * ln, 0.86 * wd), z=(belt, ht), rgb=body, light=light)
    glass = p.colour(GLASS, a.x, a.y, light=max(light, 0.6))
    for name, pts in cab.items():
        if name != "top":
            p.fill(_inset(pts, 0.84, 0.78, -0.03 * (ht - belt)), glass)
    # Wheels on the side facing the camera.
    for side in ("left", "right"):
        if side in faces:
            ly = (0.5 if side == "left" else -0.5) * wd
            for lx in (-0.32 * ln, 0.32 * ln):
                _wheel(p, a, lx, ly, 0.31)
    # Lamps: rear (tail) and front (head); glowing when the lights are on.
    tz0, tz1 = 0.50 * ht, 0.58 * ht
    for name, lx, lit, dim in (("rear", -0.5 * ln - 0.01, TAIL_LIT, TAIL), ("front", 0.5 * ln + 0.01, HEAD_LIT, HEAD)):
        if name not in faces:
            continue
        for sgn in (-1.0, 1.0):
            y0, y1 = sgn * (0.5 * wd - 0.06), sgn * (0.5 * wd - 0.34)
            if a.lights_on:
                lamp_x, lamp_y, _ = p.local(a, lx, 0.5 * (y0 + y1), 0.0)
                p.glow((lamp_x, lamp_y, 0.5 * (tz0 + tz1)), 0.09, lit)
            else:
                p.quad(a, [(lx, y0, tz0), (lx, y1, tz0), (lx, y1, tz1), (lx, y0, tz1)],
                       p.colour(dim, a.x, a.y, light=light))
        if name == "rear":  # number plate, lit at night when the lights are on
            plate = p.colour((225, 225, 215), a.x, a.y, light=max(light, 0.3) if a.lights_on else light)
            p.quad(a, [(lx, -0.26, 0.33), (lx, 0.26, 0.33), (lx, 0.26, 0.44), (lx, -0.26, 0.44)], plate)


def _wheel(p: Painter, a: ActorState, lx: float, ly: float, r: float) -> None:
    centre = p.project(p.local(a, lx, ly, r))
    fore = p.project(p.local(a, lx + r, ly, r))
    if centre is None or fore is None:
        return
    u, v, depth = centre
    ry = p.view.fy * r / depth
    rx = math.hypot(fore[0] - u, fore[1] - v)
    if ry < 0.8:
        return
    tyre = p.colour(TYRE, a.x, a.y)
    rim = p.colour(METAL, a.x, a.y)
    c = (int(u * SCALE), int(v * SCALE))
    cv2.ellipse(p.img, c, (int(max(rx, 0.5) * SCALE), int(ry * SCALE)), 0, 0, 360, tyre, -1, cv2.LINE_8, SHIFT)
    cv2.ellipse(p.img, c, (int(max(rx, 0.5) * 0.55 * SCALE), int(ry * 0.55 * SCALE)), 0, 0, 360, rim, -1,
                cv2.LINE_8, SHIFT)


def draw_static(p: Painter, a: ActorState) -> None:
    """A crate / barrel obstacle: orange with a reflective white band."""
    rgb = a.colour or (230, 110, 20)
    p.box(a.x, a.y, a.heading, size=(a.length, a.width), z=(a.z, a.z + a.height), rgb=rgb)
    band = (a.z + 0.55 * a.height, a.z + 0.7 * a.height)
    light = illumination_at(p.look, a.x - p.ego_front, a.y, a.x)
    p.box(a.x, a.y, a.heading, size=(a.length + 0.02, a.width + 0.02), z=band, rgb=(240, 240, 240),
          light=min(1.4, light * (2.5 if p.look.night else 1.0)), faces=("rear", "front", "left", "right"))


def draw_gantry(p: Painter, a: ActorState) -> None:
    """Sign bridge: two posts beyond the kerbs, a truss, and sign panels over the lanes."""
    z0, z1 = a.z, a.z + a.height
    for py in (RIGHT_KERB_Y - 1.0, LEFT_KERB_Y + 1.0):
        p.box(a.x, py, 0.0, size=(0.35, 0.35), z=(0.0, z1 + 0.3), rgb=METAL)
    p.box(a.x + 0.3, a.y, 0.0, size=(0.4, a.width), z=(z1, z1 + 0.4), rgb=METAL)
    panel = a.colour or (20, 90, 160)
    for cy in (0.0, 3.5):
        faces = p.box(a.x, cy, 0.0, size=(0.12, 3.2), z=(z0, z1), rgb=panel)
        rear = faces.get("rear")
        if rear is not None:  # white lettering band
            p.fill(_inset(rear, 0.7, 0.25, 0.0),
                   p.colour((235, 235, 235), a.x, cy, light=1.0 if not p.look.night else 0.35))


def draw_marking(p: Painter, a: ActorState) -> None:
    """Flat paint: zebra bands across the footprint (width along y), 0.5 m wide, 0.5 m apart."""
    rgb = p.colour(a.colour or (235, 235, 230), a.x, a.y)
    x0, x1 = a.x - a.length / 2, a.x + a.length / 2
    n = max(1, int(a.width // 1.0))
    y_start = a.y - a.width / 2
    for i in range(n):
        ya, yb = y_start + i * 1.0 + 0.25, y_start + i * 1.0 + 0.75
        p.fill([(x0, ya, 0.005), (x1, ya, 0.005), (x1, yb, 0.005), (x0, yb, 0.005)], rgb)


def draw_manhole(p: Painter, a: ActorState) -> None:
    """A round cover with a lighter rim, flush with the road."""
    for r, rgb in ((a.length / 2 + 0.06, (120, 120, 118)), (a.length / 2, a.colour or (55, 55, 58))):
        pts = [(a.x + r * math.cos(k * math.pi / 8), a.y + r * math.sin(k * math.pi / 8), 0.005) for k in range(16)]
        p.fill(pts, p.colour(rgb, a.x, a.y))


def draw_lamp_post(p: Painter, x: float) -> None:
    """A street light at road x: pole, arm over the strip, lamp head (bright at night)."""
    dim = 0.3 if p.look.night else None  # the pole is lit by its own lamp's spill at night
    top = STREET_LIGHT_HEIGHT_M
    p.box(x, STREET_LIGHT_POLE_Y, 0.0, size=(0.16, 0.16), z=(0.0, top), rgb=METAL, light=dim)
    arm_y = 0.5 * (STREET_LIGHT_POLE_Y + STREET_LIGHT_LAMP_Y)
    p.box(x, arm_y, 0.0, size=(0.1, STREET_LIGHT_LAMP_Y - STREET_LIGHT_POLE_Y + 0.2), z=(top - 0.1, top),
          rgb=METAL, light=dim)
    if p.look.night:
        p.glow((x, STREET_LIGHT_LAMP_Y, top - 0.15), 0.22, LAMP_LIT)
    else:
        p.box(x, STREET_LIGHT_LAMP_Y, 0.0, size=(0.5, 0.3), z=(top - 0.25, top), rgb=(90, 90, 95))


# ---------------------------------------------------------------------------------------------
# People and bicycles (upright figures)


class _Figure:
    """An upright figure's 2-D frame: metres right / up from its foot point, to pixels."""

    def __init__(self, p: Painter, a: ActorState) -> None:
        self.ok = False
        base = p.project((a.x, a.y, 0.0))
        if base is None:
            return
        self.u, self.v, depth = base
        self.s = p.view.fy / depth  # pixels per metre (vertical)
        self.sx = p.view.fx / depth
        view_dir = math.atan2(a.y, a.x - p.cam[0])
        rel = a.heading - view_dir
        self.side = abs(math.sin(rel))  # 1 = seen from the side (crossing), 0 = front / back
        # Moving left in the road frame moves left in the image (u decreases).
        self.facing = -1.0 if math.sin(rel) > 0 else 1.0
        self.towards = math.cos(rel) < 0  # walking towards the camera: we see the front
        self.ok = self.s * a.height >= 2.0

    def pt(self, x: float, z: float) -> tuple[int, int]:
        return int((self.u + x * self.sx) * SCALE), int((self.v - z * self.s) * SCALE)

    def line(self, img: np.ndarray, a: tuple[float, float], b: tuple[float, float], width_m: float, rgb: RGB) -> None:
        t = max(1, round(width_m * self.s))
        cv2.line(img, self.pt(*a), self.pt(*b), rgb, t, cv2.LINE_8, SHIFT)

    def disc(self, img: np.ndarray, c: tuple[float, float], r_m: float, rgb: RGB) -> None:
        cv2.circle(img, self.pt(*c), int(max(0.6, r_m * self.s) * SCALE), rgb, -1, cv2.LINE_8, SHIFT)

    def ellipse(self, img: np.ndarray, c: tuple[float, float], radii_m: tuple[float, float], rgb: RGB,
                thickness_m: float = -1.0) -> None:
        rx_m, ry_m = radii_m
        axes = (int(max(0.5, rx_m * self.sx) * SCALE), int(max(0.5, ry_m * self.s) * SCALE))
        t = -1 if thickness_m < 0 else max(1, round(thickness_m * self.s))
        cv2.ellipse(img, self.pt(*c), axes, 0, 0, 360, rgb, t, cv2.LINE_8, SHIFT)


def draw_pedestrian(p: Painter, a: ActorState) -> None:
    """Adult or child: legs and arms swinging with the gait phase, torso, head.

    Proportions from the dummy heights (adult 1.8 m, child 1.154 m; reference); a child has a
    relatively larger head and shorter legs.
    """
    f = _Figure(p, a)
    if not f.ok:
        return
    ht = a.height
    child = a.kind == "child"
    head_r = (0.085 if child else 0.065) * ht
    hip = (0.47 if child else 0.53) * ht
    shoulder = ht - 2.2 * head_r - 0.02 * ht
    swing = math.sin(2.0 * math.pi * a.phase) if a.phase > 0 else 0.0
    stride = 0.22 * ht * f.side * swing
    spread = 0.05 * ht * (1.0 - f.side)
    top = p.colour(a.colour or (35, 35, 40), a.x, a.y)
    legs = p.colour(TROUSERS, a.x, a.y)
    skin = p.colour(SKIN, a.x, a.y)
    hair = p.colour(HAIR, a.x, a.y)
    limb = 0.075 * ht if not child else 0.085 * ht
    # Far leg and arm first (darker), then torso, then near leg and arm; arms swing against
    # the legs.  ``ahead`` is the image direction the figure walks in.
    ahead = stride * f.facing
    arm = 0.14 * ht * f.side * swing * f.facing
    far_legs = p.colour(_scaled(TROUSERS, 0.75), a.x, a.y)
    far_arm = p.colour(_scaled(a.colour or (35, 35, 40), 0.75), a.x, a.y)
    f.line(p.img, (-spread, hip), (-spread + ahead, 0.02 * ht), limb, far_legs)
    f.line(p.img, (0.0, shoulder - 0.02 * ht), (-arm, hip - 0.02 * ht), 0.6 * limb, far_arm)
    torso_w = (0.11 + 0.09 * (1.0 - f.side)) * ht
    f.ellipse(p.img, (0.0, 0.5 * (hip + shoulder)), (torso_w / 2, 0.56 * (shoulder - hip)), top)
    f.line(p.img, (spread, hip), (spread - ahead, 0.02 * ht), limb, legs)
    f.line(p.img, (0.0, shoulder - 0.02 * ht), (arm, hip - 0.02 * ht), 0.6 * limb, top)
    f.disc(p.img, (0.0, shoulder + 0.2 * head_r), 0.45 * head_r, skin)  # neck
    head_z = ht - head_r
    f.disc(p.img, (0.0, head_z), head_r, skin if f.towards or f.side > 0.5 else hair)
    f.ellipse(p.img, (0.0, head_z + 0.45 * head_r), (0.95 * head_r, 0.6 * head_r), hair)


def draw_cyclist(p: Painter, a: ActorState) -> None:
    """Bicycle (wheels, frame) with a rider pedalling; side view crossing, rear view along."""
    f = _Figure(p, a)
    if not f.ok:
        return
    r = 0.35  # 28" wheel
    base = 0.55 * f.side * f.facing  # half wheelbase as seen (m, image-right positive)
    tyre = p.colour(TYRE, a.x, a.y)
    frame = p.colour((200, 200, 210), a.x, a.y)
    top = p.colour(a.colour or (30, 30, 36), a.x, a.y)
    skin = p.colour(SKIN, a.x, a.y)
    rim_w = 0.05
    for wx in (-base, base):
        f.ellipse(p.img, (wx, r), (max(0.03, r * f.side), r), tyre, rim_w)
    seat = (-0.15 * f.side * f.facing, 0.95)
    bar = (0.45 * f.side * f.facing, 1.05)
    crank = (0.0, 0.32)
    tubes = (((-base, r), crank), (crank, seat), (seat, bar), (crank, bar), ((base, r), bar), ((-base, r), seat))
    for a_, b_ in tubes:
        f.line(p.img, a_, b_, 0.035, frame)
    ang = 2.0 * math.pi * a.phase
    for sgn, far in ((1.0, 0.75), (-1.0, 1.0)):
        legs = p.colour(_scaled(TROUSERS, far), a.x, a.y)
        pedal = (crank[0] + sgn * 0.17 * math.cos(ang) * f.side * f.facing + sgn * 0.1 * (1 - f.side),
                 crank[1] + sgn * 0.17 * math.sin(ang))
        knee = (0.5 * (seat[0] + pedal[0]) + 0.18 * f.side * f.facing, 0.5 * (seat[1] + pedal[1]) + 0.12)
        f.line(p.img, seat, knee, 0.12, legs)
        f.line(p.img, knee, pedal, 0.1, legs)
    shoulder = (0.2 * f.side * f.facing, 1.5)
    f.line(p.img, seat, shoulder, 0.3 if f.side < 0.5 else 0.22, top)
    f.line(p.img, shoulder, bar, 0.08, top)
    f.disc(p.img, (shoulder[0] + 0.05 * f.side * f.facing, 1.67), 0.11, skin)
    f.ellipse(p.img, (shoulder[0] + 0.05 * f.side * f.facing, 1.72), (0.12, 0.07), (230, 200, 30))  # helmet


def draw_actor(p: Painter, a: ActorState) -> None:
    """Dispatch on the kind."""
    if a.kind in ("car", "parked_car"):
        draw_car(p, a)
    elif a.kind in ("adult", "child"):
        draw_pedestrian(p, a)
    elif a.kind == "cyclist":
        draw_cyclist(p, a)
    elif a.kind == "gantry":
        draw_gantry(p, a)
    elif a.kind == "road_marking":
        draw_marking(p, a)
    elif a.kind == "manhole":
        draw_manhole(p, a)
    else:
        draw_static(p, a)
