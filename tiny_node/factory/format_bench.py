"""``tiny-node model format-bench BUILD``: graph time of a build's bundle formats, interleaved.

Why: whether INT8 is faster than FP32 is the difference of two sub-millisecond times, and the
build's table measures each bundle in its own run, minutes apart on a shared machine. Here
every bundle decides the same rendered frame in turn (round robin, one thread), so machine
noise falls on all alike, and each part is timed apart: the language model's stages (vision
encoder, embedding, decoder prefill), the VRU detector graph (FP32 in every bundle the build
makes; a bundle with another one shows it), and the detector + tracker (``track``). No torch needed.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from tiny_node.model.bundle import BundleError, existing_bundle_dir, load_bundle

#: FP32 first: the student's formats are compared to the pruned FP32 bundle, the teacher's INT8 to the teacher
FORMATS = ("pruned", "int8", "int8_dynamic", "int8_mixed", "teacher", "teacher_int8")
LM_STAGES = ("vision", "embed", "prefill")


def measure(bundles: dict[str, Path], rounds: int) -> dict[str, dict[str, float]]:
    """p50 / p99 (ms) of the language-model stages, the VRU detector graph and ``track``, per bundle.

    ``model``: language model + detector, every graph a decision runs (the tracker's numpy is not a graph).
    """
    from tiny_node.factory.tracker_bench import FPS, render_drives
    from tiny_node.model.vlm import VlmRuntime

    drives = render_drives()
    frames = [(img, v) for d in drives for img, v in zip(d.frames, d.ego_speed, strict=True)]
    runtimes = {name: VlmRuntime(load_bundle(path), threads=1) for name, path in bundles.items()}
    for rt in runtimes.values():
        rt.warm_up(20)
    times: dict[str, dict[str, list[float]]] = {name: {"lm": [], "detector": [], "track": []} for name in bundles}
    for k in range(rounds):
        img, v = frames[k % len(frames)]
        feats = {"ego_speed": v, "range": math.nan, "range_rate": 0.0, "range_valid": 0.0}
        for name, rt in runtimes.items():
            rt.decide(img, feats, "", time_s=k / FPS)
            t = times[name]
            t["lm"].append(sum(rt.last_ms[s] for s in LM_STAGES))
            t["detector"].append(rt.last_ms["detector"])
            t["track"].append(rt.last_ms["track"])
    out: dict[str, dict[str, float]] = {}
    for name, t in times.items():
        series = {**t, "model": np.add(t["lm"], t["detector"])}  # per decision, before the percentiles
        out[name] = {f"{key}_{q}": float(np.percentile(x, int(q[1:]))) for key, x in series.items()
                     for q in ("p50", "p99")}
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``tiny-node model format-bench``."""
    p.add_argument("build", type=Path, help="a build folder with bundles/<format> (e.g. out/model-tracked)")
    p.add_argument("--rounds", type=int, default=1000, help="decisions per bundle (default 1000)")


def command(args: argparse.Namespace) -> int:
    """Print each format's graph times and its speed-up over the FP32 bundle of the same model."""
    bundles: dict[str, Path] = {}
    try:
        for name in FORMATS:
            if (args.build / "bundles" / name).is_dir():
                bundles[name] = existing_bundle_dir(str(args.build / "bundles" / name))
        if "pruned" not in bundles or len(bundles) < 2:
            raise BundleError(f"{args.build / 'bundles'}: needs the pruned FP32 bundle and at least one INT8 "
                              f"bundle ({', '.join(FORMATS)}), found {sorted(bundles) or 'none'}")
    except BundleError as exc:
        print(f"tiny-node model format-bench: {exc}", file=sys.stderr)
        return 2
    if args.rounds < 10:
        print(f"tiny-node model format-bench: --rounds {args.rounds}: at least 10", file=sys.stderr)
        return 2
    res = measure(bundles, args.rounds)
    print(f"{args.build}: {args.rounds} decisions per bundle, interleaved, one thread; p50 / p99 ms "
          "(speed against the FP32 bundle of the same model: pruned, or the teacher)")
    for name, r in res.items():
        base = res["teacher"] if name.startswith("teacher") and "teacher" in res else res["pruned"]
        print(f"  {name:13s} language model {r['lm_p50']:.3f} / {r['lm_p99']:.3f} ({base['lm_p50'] / r['lm_p50']:.2f}x)"
              f"  VRU detector {r['detector_p50']:.3f} / {r['detector_p99']:.3f} "
              f"({base['detector_p50'] / r['detector_p50']:.2f}x)"
              f"  both {r['model_p50']:.3f} / {r['model_p99']:.3f} ({base['model_p50'] / r['model_p50']:.2f}x)"
              f"  detector + tracker {r['track_p50']:.3f}")
    return 0
