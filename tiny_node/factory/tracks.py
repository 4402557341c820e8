"""VRU tracks: what a camera tracker would report about the people and cyclists ahead.

Why: the brake labels are constant-velocity conflicts (``scenes.conflict_time``), so whether a
person beside the lane needs a brake depends on their lateral velocity, which one frame does
not show and which every model built so far failed to learn from pixels (docs/MODEL_HISTORY.md).
A tracker that follows each person over a few frames measures it. These records are the
privileged version of such a tracker's output, from the simulator's ground truth, so the
value of a tracked input can be measured (``tracker_bound``) before a tracker is built, and
so a future detector has its training targets.

One record per VRU: ``present, dx, y, vy, vx_rel`` (metres, m/s, road frame): ``dx`` from the
ego's front bumper to the actor's near edge, ``y`` its centre's lateral offset (left +),
``vy`` its lateral velocity, ``vx_rel`` its longitudinal velocity relative to the ego. The
``TRACKS`` VRUs nearest the ego's path laterally are kept, nearest first; empty slots are 0.
The runtime's tracker measures ``dx`` to the foot point (the footprint's centre), up to half
an actor's length further than the near edge: well inside the 2 m range bins of the prompt.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np
from numpy.typing import NDArray

from tiny_node.model.tracker import RECORD_FIELDS
from tiny_node.sim.kinds import VRU_KINDS
from tiny_node.sim.projection import View
from tiny_node.sim.world import ActorState, World

#: one record per VRU, the same layout as the runtime tracker's records (what a detector + tracker
#: would report; ``degrade`` turns these into such reports)
TRACK_FIELDS = RECORD_FIELDS
TRACKS = 2
#: the probes ``tracker_bound`` trains (here so the CLI lists them without importing torch)
BOUND_INPUTS = ("image", "image+tracks", "tracks")
#: VRUs per frame whose image points a shard keeps (a detector's targets)
MAX_POINTS = 8
POINT_FIELDS = ("u", "v", "visible")
#: what a forward camera tracker covers: ahead of the bumper, up to this far, this far aside
MAX_DX_M = 60.0
MAX_ABS_Y_M = 9.0


def vru_tracks(world: World) -> NDArray[np.float32]:
    """``[TRACKS, len(TRACK_FIELDS)]`` ground-truth records of the VRUs ahead (see module doc)."""
    front = world.ego.position
    rows: list[tuple[float, float, float, float]] = []
    for a in world.actors():
        if a.kind not in VRU_KINDS:
            continue
        dx = a.extent()[0] - front
        if 0.0 < dx < MAX_DX_M and abs(a.y) < MAX_ABS_Y_M:
            rows.append((dx, a.y, a.vy, a.vx - world.ego.speed))
    rows.sort(key=lambda r: abs(r[1]))
    out = np.zeros((TRACKS, len(TRACK_FIELDS)), np.float32)
    for k, r in enumerate(rows[:TRACKS]):
        out[k] = (1.0, *r)
    return out


def degrade(tracks: NDArray[np.float32], rng: np.random.Generator, *, vy_noise: float,
            miss: float) -> NDArray[np.float32]:
    """Ground-truth tracks ``[N, TRACKS, 5]`` with a tracker's errors.

    A track is lost with probability ``miss`` (all fields 0); range is off by 5 %, lateral
    position by 0.05 m + 1 % of the range, lateral velocity by ``vy_noise`` (m/s, the figure
    that decides), longitudinal velocity by 0.5 m/s (all Gaussian, 1 sigma).
    """
    t = np.array(tracks, np.float32, copy=True)
    shape = t.shape[:2]
    present = t[..., 0] * (rng.random(shape) >= miss)
    dx = t[..., 1].copy()
    t[..., 1] = dx * (1.0 + rng.normal(0.0, 0.05, shape))
    t[..., 2] += rng.normal(0.0, 1.0, shape) * (0.05 + 0.01 * dx)
    t[..., 3] += rng.normal(0.0, vy_noise, shape)
    t[..., 4] += rng.normal(0.0, 0.5, shape)
    t[..., 1:] *= present[..., None]
    t[..., 0] = present
    return t


def vru_points(world: World, view: View, roi: tuple[int, int, int, int]) -> NDArray[np.float32]:
    """``[MAX_POINTS, 3]``: ``u, v, visible`` of each VRU's foot point in the image of ``view``.

    The foot point is the centre of its footprint on the road; nearest the camera first;
    empty slots are 0.

    ``visible`` is 1 when the foot point is inside ``roi`` (rows r0:r1, columns c0:c1 of that
    image: what the detector sees) and the point halfway up the actor is not behind a nearer
    upright actor (the renderer draws far to near, so a child behind a parked car is hidden);
    such hidden people keep their points with ``visible`` 0 (a detector must not be taught to
    see them).
    """
    rows = sorted((v.dist, v.foot[0], v.foot[1], float(_inside(v.foot, roi) and not v.behind))
                  for v in _sightings(world, view))
    out = np.zeros((MAX_POINTS, len(POINT_FIELDS)), np.float32)
    for k, r in enumerate(rows[:MAX_POINTS]):
        out[k] = r[1:]
    return out


def hidden_vrus(world: World, view: View, roi: tuple[int, int, int, int], *, window: bool = True) -> frozenset[str]:
    """Names of the VRUs the model's image window ``roi`` does not show.

    Hidden: behind a nearer upright actor (as in ``vru_points``), or, with ``window``, with the
    point halfway up outside ``roi`` (beside the view, or behind the camera). The foot point is
    not the test here: a person close ahead has feet below the window but a body inside it.
    ``window=False`` hides only the occluded: a crossing person still beside the view counts.
    """
    if not window:
        return frozenset(v.actor.name for v in _sightings(world, view) if v.behind)
    seen = {v.actor.name for v in _sightings(world, view) if _inside(v.mid, roi) and not v.behind}
    return frozenset(a.name for a in world.actors() if a.kind in VRU_KINDS and a.name not in seen)


def _inside(p: tuple[float, float], roi: tuple[int, int, int, int]) -> bool:
    r0, r1, c0, c1 = roi
    return c0 <= p[0] < c1 and r0 <= p[1] < r1


class _Sighting(NamedTuple):
    """One VRU in front of the camera, as the image shows it (or not)."""

    actor: ActorState
    dist: float  # from the camera, m
    foot: tuple[float, float]  # image point of the centre of its footprint
    mid: tuple[float, float]  # image point halfway up
    behind: bool  # the mid point is behind a nearer upright actor


def _sightings(world: World, view: View) -> list[_Sighting]:
    """Every VRU in front of the camera (the renderer draws far to near, so ``behind`` hides)."""
    cam_x = world.ego.position - view.setback
    upright = [a for a in world.actors() if a.height > 0.05]
    hulls = [(math.hypot(a.x - cam_x, a.y), a, _hull(a, view, cam_x)) for a in upright]
    out = []
    for a in upright:
        if a.kind not in VRU_KINDS:
            continue
        foot = view.point((a.x - cam_x, a.y, -view.mount_height))
        mid = view.point((a.x - cam_x, a.y, a.z + 0.5 * a.height - view.mount_height))
        if foot is None or mid is None:
            continue
        dist = math.hypot(a.x - cam_x, a.y)
        behind = any(d < dist and h is not None and cv2.pointPolygonTest(h, (mid[0], mid[1]), False) > 0
                     for d, b, h in hulls if b is not a)
        out.append(_Sighting(a, dist, (foot[0], foot[1]), (mid[0], mid[1]), behind))
    return out


def _hull(a: ActorState, view: View, cam_x: float) -> NDArray[np.float32] | None:
    """Image outline (convex hull) of an actor's box, or None when not in front of the camera."""
    pts = []
    for x, y in a.corners():
        for z in (a.z, a.z + a.height):
            p = view.point((x - cam_x, y, z - view.mount_height))
            if p is not None:
                pts.append((p[0], p[1]))
    if len(pts) < 3:
        return None
    return np.asarray(cv2.convexHull(np.asarray(pts, np.float32)), np.float32)
