"""``tiny-node model foot-points``: where a bundle's VRU detector puts the feet of the people it sees.

Why a command: a foot point that drifts with range is a velocity the tracker reads and the
model brakes on. An overtaken cyclist whose point sat too high far away and too low close in
seemed to turn into the lane (docs/MODEL_HISTORY.md, *A detector that sees all the training
data*). End-to-end false brakes show the symptom; this shows the cause, per actor and range.

Each case (a cyclist from behind in the bike lane, a cyclist side on, an adult and a child
crossing) is rendered at each range, by day and by night, in a few draws: each draw moves the
actor along its path for a moment (pedalling or walking phase) and renders with its own noise,
and the actor's start is set back so that it is at the nominal range when rendered. The
bundle's detector runs as in the node (``ImagePreprocessor``, the graph, ``detect.peaks`` at
the manifest's ``min_score``); the peak nearest the true foot point (within ``MATCH_PX``) is
its detection. Reported: the mean row error in pixels of the 320x240 frame (negative: too high
in the image, so too far), the share of draws that found it, and the mean range error in
metres through the manifest's camera. No torch needed.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tiny_node.model.bundle import Bundle, BundleError, existing_bundle_dir, load_bundle
from tiny_node.strict_json import write_figures

if TYPE_CHECKING:
    from tiny_node.model.preprocess import ImagePreprocessor
    from tiny_node.model.tracking import Tracking
    from tiny_node.sim.camera import CameraModel

MATCH_PX = 10.0  # a peak this near the true foot point is its detection
RANGES_M = (6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 24.0, 28.0, 34.0)
LIGHTS = ("day", "night")
STEPS_PER_DRAW = 3  # frames at 30 Hz the actor moves on per draw (its gait phase changes)


@dataclass(frozen=True)
class Case:
    """An actor ahead of a standing ego: kind, heading (0 along the road, 90 crossing left), lateral offset, speed."""

    name: str
    kind: str
    heading_deg: float
    y_m: float
    speed_kmh: float


CASES = (Case("cyclist from behind, bike lane", "cyclist", 0.0, -2.75, 15.0),
         Case("cyclist side on, crossing", "cyclist", 90.0, -2.0, 15.0),
         Case("adult crossing", "adult", 90.0, -2.0, 5.0),
         Case("child crossing", "child", 90.0, -2.0, 5.0))


def measure(bundle: Bundle, *, cases: tuple[Case, ...] = CASES, ranges: tuple[float, ...] = RANGES_M,
            lights: tuple[str, ...] = LIGHTS, draws: int = 6) -> list[dict[str, Any]]:
    """One row per (light, case, range): ``dv_px`` mean row error, ``found`` share, ``dx_m`` range error.

    Draws that find nothing near the foot point count against ``found`` only (NaN means: never found).
    """
    from tiny_node.model.preprocess import whole_frame
    from tiny_node.model.tracking import Tracking
    from tiny_node.sim.camera import CameraModel

    spec = bundle.vlm.tracking if bundle.vlm is not None else None
    if spec is None:
        raise BundleError(f"{bundle.root}: no vlm.tracking section: the bundle has no VRU detector to measure")
    tracking = Tracking.of_bundle(bundle, spec, 1)  # checks the graph and inputs.image.roi
    assert bundle.image.roi is not None  # Tracking refuses a bundle without one
    scene = _Scene(tracking, whole_frame(bundle.image), bundle.image.name, bundle.image.roi,
                   CameraModel(**asdict(spec.camera.mount())))  # the scene as the manifest's camera sees it
    rows = []
    for light in lights:
        for case in cases:
            for rng_m in ranges:
                found = [e for e in (scene.error(case, rng_m, light, k) for k in range(draws)) if e is not None]
                dx = [m for _, m in found if math.isfinite(m)]
                rows.append({"light": light, "case": case.name, "range_m": rng_m, "draws": draws,
                             "found": len(found) / draws,
                             "dv_px": float(np.mean([px for px, _ in found])) if found else math.nan,
                             "dx_m": float(np.mean(dx)) if dx else math.nan})
    return rows


class _Scene:
    """One actor ahead of a standing ego, rendered and detected as the node would."""

    def __init__(self, tracking: Tracking, prep: ImagePreprocessor, input_name: str,
                 roi: tuple[int, int, int, int], model: CameraModel) -> None:
        from tiny_node.sim.camera import CameraRenderer

        self.tracking, self.prep, self.input_name, self.roi = tracking, prep, input_name, roi
        self.renderer = CameraRenderer(model)
        self.view = model.view(tracking.size)

    def error(self, case: Case, range_m: float, light: str, draw: int) -> tuple[float, float] | None:
        """(row error px, range error m or NaN) of the detection nearest the true foot point; None: not found."""
        from tiny_node.factory.tracks import vru_points
        from tiny_node.sim.scenario import ActorSpec, Environment, Scenario, Trajectory
        from tiny_node.sim.world import World

        dt = 1.0 / 30.0
        travel = case.speed_kmh / 3.6 * draw * STEPS_PER_DRAW * dt  # set back so it is at range_m when seen
        h = math.radians(case.heading_deg)
        start = Trajectory(range_m - travel * math.cos(h), case.y_m - travel * math.sin(h),
                           case.heading_deg, case.speed_kmh)
        sc = Scenario("foot-points", 0.0, (ActorSpec(case.kind, start, name="a"),), Environment(light=light),
                      seed=draw)
        world = World(sc)
        for _ in range(draw * STEPS_PER_DRAW):
            world.step(dt, False)
        u, v, visible = (float(x) for x in vru_points(world, self.view, self.roi)[0])
        if not visible:
            return None
        frame = self.renderer.render(world, sc.environment, np.random.default_rng(draw))
        near = [p for p in self.tracking.points({self.input_name: self.prep(frame)})
                if math.hypot(p[0] - u, p[1] - v) <= MATCH_PX]
        if not near:
            return None
        pu, pv, _ = min(near, key=lambda p: math.hypot(p[0] - u, p[1] - v))
        seen, true = self.tracking.camera.ground(pu, pv), self.tracking.camera.ground(u, v)
        return pv - v, (seen[0] - true[0]) if seen is not None and true is not None else math.nan


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``tiny-node model foot-points``."""
    p.add_argument("bundle", nargs="?", default="default", help="a bundle with vlm.tracking (default: the shipped one)")
    p.add_argument("--draws", type=int, default=6, help="renders per actor, range and light (default 6)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")


def command(args: argparse.Namespace) -> int:
    """Print the foot-point row error per case and range, day and night."""
    from tiny_node.factory.cli import json_out_error

    try:
        if args.draws < 1:
            raise BundleError(f"--draws {args.draws}: must be at least 1")
        if (why := json_out_error(args.json)) is not None:
            raise BundleError(why)
        path = existing_bundle_dir(args.bundle)
        rows = measure(load_bundle(path), draws=args.draws)
    except BundleError as exc:
        print(f"tiny-node model foot-points: {exc}", file=sys.stderr)
        return 2
    print(f"bundle {path}: foot-point row error, px of the 320x240 frame (negative: too high = too far); "
          f"share of {args.draws} draws found; range error m")
    print(f"{'':40s}" + "".join(f"{r:>16.0f} m" for r in RANGES_M))
    for light in LIGHTS:
        for case in CASES:
            cells = [r for r in rows if r["light"] == light and r["case"] == case.name]
            print(f"{light + ', ' + case.name:40s}" + "".join(
                f"{c['dv_px']:+6.1f} {c['found']:4.0%} {c['dx_m']:+5.1f}" for c in cells))
    if args.json is not None:
        return write_figures(args.json, rows, "model foot-points", "rows")
    return 0
