"""``tiny-node model tracker-bench``: the runtime's VRU tracker on rendered drives, shipped vs first.

Why a command: the tracker is runtime code the language model trusts for lateral velocity, and
the figures that chose it (docs/MODEL_HISTORY.md, *IMM tracker*) should be re-measurable on any
machine. Each drive (Euro NCAP crossings at 60 km/h and a pedestrian stopping at the kerb) is
rendered once; then for each tracker the bundle decides every 30 Hz frame as in the node
(``VlmRuntime.decide`` with the frame's stamp and the ego's speed). Printed per tracker: the
decision time and its ``track`` stage (p50 / p99, ms), and per drive the tracked lateral
velocity of the VRU against the simulator's truth (mean error and rms, 6-35 m ahead, where the
nearest confirmed track is within 1 m of the person). No torch needed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiny_node.model.bundle import BundleError, existing_bundle_dir, load_bundle
from tiny_node.model.tracker import MotionModel, TrackerConfig, VruTracker

#: the tracker shipped first: one constant-velocity filter, the person's speed along the road free,
#: and a detection's range error its pixel error alone (no footprint term)
FIRST_TRACKER = TrackerConfig(models=(MotionModel("cv", 4.0, accel_x=3.0, vx_sigma=2.0),), footprint_sigma_m=0.0)
TRACKERS = {"shipped (IMM + ego motion)": TrackerConfig(), "first (one filter)": FIRST_TRACKER}
FPS = 30.0


@dataclass
class Drive:
    """One rendered drive: frames, ego speeds, and the first VRU's truth per frame."""

    name: str
    frames: list[NDArray[np.uint8]] = field(default_factory=list)
    ego_speed: list[float] = field(default_factory=list)
    truth: list[tuple[float, float, float] | None] = field(default_factory=list)  # dx, y, vy


def render_drives() -> list[Drive]:
    """The drives, rendered once (the ego does not brake: every tracker sees the same frames)."""
    from tiny_node.sim.camera import CameraModel, CameraRenderer
    from tiny_node.sim.kinds import VRU_KINDS
    from tiny_node.sim.suite import benign_suite, cbna, cpfa, cpna
    from tiny_node.sim.world import World

    kerb = next(b for b in benign_suite() if b.name == "benign_ped_stops_at_kerb")
    scenarios = [cpna(60, 25), cpfa(60), cbna(60), kerb]
    renderer = CameraRenderer(CameraModel())
    drives = []
    for sc in scenarios:
        world, rng, d = World(sc), np.random.default_rng(0), Drive(sc.name)
        for _ in range(int(sc.duration_s * FPS)):
            d.frames.append(renderer.render(world, sc.environment, rng))
            d.ego_speed.append(world.ego.speed)
            vru = next((a for a in world.actors() if a.kind in VRU_KINDS), None)
            d.truth.append(None if vru is None else (vru.x - world.ego.position, vru.y, vru.vy))
            world.step(1.0 / FPS, False)
            if world.collided:
                break
        drives.append(d)
    return drives


def run_tracker(bundle: Any, drives: list[Drive], config: TrackerConfig) -> dict[str, Any]:
    """Decide every frame of every drive with ``config`` as the runtime's tracker."""
    from tiny_node.model.vlm import VlmRuntime

    rt = VlmRuntime(bundle, threads=1)
    assert rt.tracking is not None, "checked by command(): the bundle has vlm.tracking"
    # the bundle's own detection score and rear axle, as the runtime's tracker takes them (a bundle's
    # min_score 0.3 was benchmarked at the default 0.5: review)
    spec = rt.tracking.spec
    config = replace(config, min_score=spec.min_score, rear_axle_m=spec.rear_axle_m)
    rt.tracking.tracker = VruTracker(config, window_near_m=rt.tracking.window_near_m())
    rt.warm_up(5)
    total: list[float] = []
    track: list[float] = []
    errors: dict[str, list[float]] = {}
    for d in drives:
        rt.reset_history()
        err = errors.setdefault(d.name, [])
        for k, (img, v, truth) in enumerate(zip(d.frames, d.ego_speed, d.truth, strict=True)):
            feats = {"ego_speed": v, "range": math.nan, "range_rate": 0.0, "range_valid": 0.0}
            t0 = time.perf_counter()
            rt.decide(img, feats, "", time_s=k / FPS)
            total.append((time.perf_counter() - t0) * 1e3)
            track.append(rt.last_ms["track"])
            if truth is None or not 6.0 < truth[0] < 35.0:
                continue
            near = min(rt.tracking.tracker.confirmed(), key=lambda t: (t.dx - truth[0]) ** 2 + (t.y - truth[1]) ** 2,
                       default=None)
            if near is not None and abs(near.y - truth[1]) < 1.0:
                err.append(near.vy - truth[2])
    return {"decide_ms": (float(np.percentile(total, 50)), float(np.percentile(total, 99))),
            "track_ms": (float(np.percentile(track, 50)), float(np.percentile(track, 99))),
            "vy_error": {n: (len(e), float(np.mean(e)) if e else math.nan,
                             float(np.sqrt(np.mean(np.square(e)))) if e else math.nan) for n, e in errors.items()}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``tiny-node model tracker-bench``."""
    p.add_argument("bundle", nargs="?", default="default", help="a bundle with vlm.tracking (default: the shipped one)")


def command(args: argparse.Namespace) -> int:
    """Print decision / track-stage latency and lateral-velocity error per tracker."""
    try:
        path = existing_bundle_dir(args.bundle)
        bundle = load_bundle(path)
        if bundle.vlm is None or bundle.vlm.tracking is None:
            raise BundleError(f"{path}: no vlm.tracking section: the bundle tracks nothing")
    except BundleError as exc:
        print(f"tiny-node model tracker-bench: {exc}", file=sys.stderr)
        return 2
    drives = render_drives()
    print(f"bundle {path}; {sum(len(d.frames) for d in drives)} frames in {len(drives)} drives; one thread")
    for name, cfg in TRACKERS.items():
        r = run_tracker(bundle, drives, cfg)
        print(f"{name}: decide p50 {r['decide_ms'][0]:.2f} p99 {r['decide_ms'][1]:.2f} ms; "
              f"track stage p50 {r['track_ms'][0]:.2f} p99 {r['track_ms'][1]:.2f} ms")
        for drive, (n, mean, rms) in r["vy_error"].items():
            print(f"  {drive:32s} lateral velocity: {n:3d} frames tracked, error mean {mean:+.2f} rms {rms:.2f} m/s")
    return 0
