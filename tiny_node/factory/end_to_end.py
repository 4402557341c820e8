"""``tiny-node model evaluate BUNDLE BUILD``: a bundle's figures on a build's frames, end to end.

Why: a build's own table measures the models it made, with the language model reading
ground-truth tracks degraded at random (``tracks.degrade``) and, since the ``tracks`` step, also
end to end. This command puts any bundle (the shipped one, another build's) on the same test
and held-out frames both ways: with those degraded tracks, and with what its own VRU detector
and the runtime's tracker report over 30 Hz re-runs of the drives (``runtime_tracks``, cached in
the build folder per detector and tracker). Printed per split: accuracy, urgent recall (and
where the image shows the hazard), recall on frames entering the lane, benign false brakes.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from tiny_node.argtypes import at_least
from tiny_node.model.bundle import BundleError, existing_bundle_dir, load_bundle
from tiny_node.strict_json import write_figures

SPLITS = ("test", "heldout")
SHOWN = (("accuracy", "accuracy"), ("recall_ttc_lt_1_5", "urgent recall"), ("recall_ttc_lt_1_5_in_view", "in view"),
         ("recall_entering", "entering"), ("false_brake_rate_benign", "benign false brakes"))


def measure(bundle_dir: Path, build_dir: Path, threshold: float | None = None, *,
            workers: int = 1) -> dict[str, Any]:
    """Figures of the bundle at ``threshold`` (default: its own) per split and track source."""
    from tiny_node.factory import evaluate, runtime_tracks
    from tiny_node.factory.build import Build, read_state
    from tiny_node.factory.config import FactoryConfig

    state = read_state(build_dir / "steps.json")
    if "data" not in state.get("done", {}):
        raise BundleError(f"{build_dir}: its data step has not finished (no shards to measure on)")
    try:
        cfg = FactoryConfig.from_dict(state["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{build_dir / 'steps.json'}: config: not a FactoryConfig "
                          f"({type(exc).__name__}: {exc})") from exc
    # warnings (a build made by other code: its cached tracks may be stale) go to stderr
    build = Build(cfg, build_dir, log=lambda text: print(text, file=sys.stderr))
    bundle = load_bundle(bundle_dir)
    thr = bundle.decision.threshold if threshold is None else threshold
    tracking = bundle.vlm.tracking if bundle.vlm is not None else None
    if not cfg.tracks or tracking is None:
        raise BundleError(f"{bundle_dir} with {build_dir}: both must track VRUs (vlm.tracking, config tracks > 0)")
    source = runtime_tracks.TrackSource(bundle.file(tracking.detector).path, bundle.image, tracking, bundle=bundle_dir)
    out: dict[str, Any] = {"bundle": str(bundle_dir), "build": str(build_dir), "threshold": thr,
                           "track_source": source.digest()}
    for split in SPLITS:
        paths = build._shard_paths(split)
        made = runtime_tracks.build_tracks(paths, runtime_tracks.tracks_dir(build_dir, source), cfg.episodes_per_shard,
                                           cfg.frames_per_episode, source, workers=workers,
                                           desc=f"runtime tracks {split}")
        data = build.split(split)
        # every recorded track: the prompt shows the first tracking.tracks, the conflict test reads all
        rt = {**data, "track_input": runtime_tracks.load_tracks(made)}
        out[split] = {
            "degraded": evaluate.metrics(evaluate.decision_scores(bundle_dir, data, f"{split} degraded"), thr, data),
            "end_to_end": evaluate.metrics(evaluate.decision_scores(bundle_dir, rt, f"{split} end to end"), thr, rt),
            "tracks": runtime_tracks.agreement(rt["track_input"][:, :tracking.tracks],
                                               data["vru_tracks"][:, :tracking.tracks]),
        }
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``tiny-node model evaluate``."""
    p.add_argument("bundle", help="a bundle directory, or 'default' (the shipped one)")
    p.add_argument("build", type=Path, help="a build folder whose shards to measure on "
                   "(e.g. out/model-tracked-det-all)")
    p.add_argument("--threshold", type=float, default=None, help="P(brake) threshold (default: the bundle's)")
    p.add_argument("--workers", type=at_least(1), default=1, help="processes making runtime tracks (default 1)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")


def command(args: argparse.Namespace) -> int:
    """Print the bundle's figures with degraded and with its own runtime tracks."""
    from tiny_node.factory.build import BuildError
    from tiny_node.factory.cli import json_out_error

    try:
        path = existing_bundle_dir(args.bundle)
        if not (args.build / "steps.json").is_file():
            raise BundleError(f"{args.build}: no steps.json: not a build folder of tiny-node model build")
        if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
            raise BundleError(f"--threshold {args.threshold}: a probability in [0, 1]")
        if (why := json_out_error(args.json)) is not None:
            raise BundleError(why)
        res = measure(path, args.build, args.threshold, workers=args.workers)
    except (BundleError, BuildError, ValueError) as exc:
        print(f"tiny-node model evaluate: {exc}", file=sys.stderr)
        return 2
    print(f"{path} on {args.build}'s frames at threshold {res['threshold']:.2f}")
    for split in SPLITS:
        r = res[split]
        t = r["tracks"]
        print(f"  {split}: runtime tracks cover {100 * t['coverage']:.1f} % of the VRUs within 40 m, "
              f"lateral-velocity error {t['vy_error_mean']:+.2f} mean, {t['vy_error_rms']:.2f} rms m/s")
        for source in ("degraded", "end_to_end"):
            m = r[source]
            figures = ", ".join(f"{label} {100 * m[key]:.2f} %" for key, label in SHOWN
                                if key in m and math.isfinite(m[key]))  # held-out has no benign frames
            print(f"    {source.replace('_', ' '):11s} {figures}")
    if args.json is not None:
        return write_figures(args.json, res, "model evaluate", "figures")
    return 0
