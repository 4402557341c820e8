"""``tiny-node model format-bench BUILD``: language-model time of a build's bundle formats, interleaved.

Why: whether INT8 is faster than FP32 is the difference of two sub-millisecond times, and the
build's table measures each bundle in its own run, minutes apart on a shared machine, with the
FP32 VRU detector (the same in every format) inside its *model* time. Here every bundle decides
the same rendered frame in turn (round robin, one thread), so machine noise falls on all
alike, and the language model's own stages (vision encoder, embedding, decoder prefill) are
timed apart from the detector and tracker (``track``). No torch needed.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from tiny_node.model.bundle import BundleError, existing_bundle_dir, load_bundle

FORMATS = ("pruned", "int8", "int8_dynamic", "int8_mixed")  # FP32 first: the others are compared to it
LM_STAGES = ("vision", "embed", "prefill")


def measure(bundles: dict[str, Path], rounds: int) -> dict[str, dict[str, float]]:
    """p50 / p99 (ms) of the language-model stages and of ``track``, per bundle."""
    from tiny_node.factory.tracker_bench import FPS, render_drives
    from tiny_node.model.vlm import VlmRuntime

    drives = render_drives()
    frames = [(img, v) for d in drives for img, v in zip(d.frames, d.ego_speed, strict=True)]
    runtimes = {name: VlmRuntime(load_bundle(path), threads=1) for name, path in bundles.items()}
    for rt in runtimes.values():
        rt.warm_up(20)
    lm: dict[str, list[float]] = {name: [] for name in bundles}
    track: dict[str, list[float]] = {name: [] for name in bundles}
    for k in range(rounds):
        img, v = frames[k % len(frames)]
        feats = {"ego_speed": v, "range": math.nan, "range_rate": 0.0, "range_valid": 0.0}
        for name, rt in runtimes.items():
            rt.decide(img, feats, "", time_s=k / FPS)
            lm[name].append(sum(rt.last_ms[s] for s in LM_STAGES))
            track[name].append(rt.last_ms.get("track", 0.0))
    return {name: {"lm_p50": float(np.percentile(lm[name], 50)), "lm_p99": float(np.percentile(lm[name], 99)),
                   "track_p50": float(np.percentile(track[name], 50))} for name in bundles}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``tiny-node model format-bench``."""
    p.add_argument("build", type=Path, help="a build folder with bundles/<format> (e.g. out/model-tracked)")
    p.add_argument("--rounds", type=int, default=1000, help="decisions per bundle (default 1000)")


def command(args: argparse.Namespace) -> int:
    """Print each format's language-model time and its speed-up over the pruned FP32 bundle."""
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
    base = res["pruned"]["lm_p50"]
    print(f"{args.build}: {args.rounds} decisions per bundle, interleaved, one thread")
    for name, r in res.items():
        print(f"  {name:13s} language model p50 {r['lm_p50']:.3f} p99 {r['lm_p99']:.3f} ms "
              f"({base / r['lm_p50']:.2f}x the pruned FP32 speed); detector + tracker p50 {r['track_p50']:.3f} ms")
    return 0
