"""``tiny-node model ...``: the factory's commands.

``build``, ``tracker-bound`` and ``evaluate`` need torch (``pip install -e '.[train]'``);
``operating-point``, ``tracker-bench``, ``foot-points`` and ``format-bench`` run the simulator and onnxruntime
only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from tiny_node.argtypes import at_least
from tiny_node.model.bundle import BundleError, load_bundle

#: The largest --seed: the steps seed torch with ``seed * 100 + k``, which must fit a signed 64-bit
#: integer (a seed of 10**20 ended in a traceback, leaving a build folder only it could resume).
MAX_SEED = 2**31 - 1

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "data" / "default_model"
#: the recipe ``model build`` builds without --config: the shipped model's
DEFAULT_RECIPE = "tracked-det12"

#: ``model build --help``'s line for each recipe of ``config.CONFIGS`` (a test checks every recipe
#: has one). Why here: the recipes' own notes are comments in config.py, which --help cannot read.
RECIPES = {
    "default": "the single-frame model shipped before the tracked ones",
    "two-frame": "default with an earlier frame (~55 min), measured, not shipped",
    "crossing": "default + training shards of crossings sampled around the conflict",
    "crossing-lookalike": "crossing + shards of benign look-alikes of a crossing",
    "tracked": "VRU detector + tracked-VRU tokens in the prompt: the model shipped before the look-alike recipes",
    "tracked-seen": "tracked, labelled with what the camera can see (measured, not shipped: docs/MODEL_HISTORY.md)",
    "tracked-unoccluded": "tracked, labels leaving out only people behind a nearer actor (measured, not shipped)",
    "tracked-lookalike": "tracked + look-alike shards",
    "tracked-lookalike-dropout": "tracked-lookalike + image dropout",
    "tracked-lookalike-carried": "image dropout on label-carrying rows only, the shipped detector whatever --seed",
    "tracked-cleared": "tracked-lookalike-carried + cleared-crossing shards (language-model seed 6): the model "
                       "shipped before tracked-det-all",
    "tracked-kerb": "tracked-cleared + intent labels and kerb-stop shards",
    "tracked-runtime": "tracked-cleared trained on the runtime's own tracks",
    "tracked-det-all": "tracked-cleared with the VRU detector trained on every training shard: the model shipped "
                       "before tracked-det12",
    "tracked-closing": "tracked-det-all + each track's closing speed in the prompt (measured, not shipped)",
    "tracked-dropout6": "tracked-det-all with twice the image dropout (measured, not shipped)",
    "tracked-det-lean": "tracked-det-all with the lean VRU detector (4 MFLOPs), measured, not shipped",
    "tracked-det12": "the shipped model (~33 min on its 2 threads): tracked-det-all with the VRU detector trained "
                     "12 epochs",
    "tiny": "CI-sized chain (~20 s)",
}


def json_out_error(path: Path | None) -> str | None:
    """Why ``--json path`` cannot be written (a directory, a missing or unwritable folder); None if it can.

    Why up front: the write came after the whole run, and a directory ended it in an
    IsADirectoryError traceback with the figures lost.
    """
    if path is None:
        return None
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        return f"--json {path}: a directory; name a file to write the figures to"
    if not parent.is_dir():
        return f"--json {path}: no folder {parent} to write it in"
    if (path.exists() and not os.access(path, os.W_OK)) or not os.access(parent, os.W_OK | os.X_OK):
        return f"--json {path}: not writable"
    return None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``model`` subcommands."""
    from tiny_node.factory.config import CONFIGS, STEPS  # plain dataclasses: no torch needed for --help

    sub = p.add_subparsers(dest="model_cmd", required=True)
    b = sub.add_parser("build", help="rebuild the default model end to end: simulator data, teacher, "
                       "distilled student, pruning, INT8, export, evaluation (resumable)")
    b.add_argument("--config", choices=tuple(CONFIGS), default=DEFAULT_RECIPE,
                   help="; ".join(f"{name}{' (default)' if name == DEFAULT_RECIPE else ''}: {RECIPES[name]}"
                                  for name in CONFIGS))
    b.add_argument("--out", default=None, help="build folder (default out/model-<config>); a rerun resumes it")
    b.add_argument("--threads", type=at_least(1), default=None,
                   help="torch threads (default: the recipe's, 2 for the tracked recipes, 1 for the others); the "
                   "trained weights depend on it, so the shipped bundle is rebuilt bit for bit only with the default; "
                   "a resume keeps the count its build started with")
    b.add_argument("--seed", type=at_least(0, MAX_SEED), default=None,
                   help="the recipe with another seed (default: the recipe's); a recipe with its own "
                   f"detector_seed ({', '.join(n for n, c in CONFIGS.items() if c.detector_seed is not None)}) "
                   "keeps its detector and varies the language model only; "
                   "default --out gets a -s<SEED> suffix")
    b.add_argument("--until", choices=STEPS, help="stop after this step")
    b.add_argument("--install", action="store_true",
                   help=f"verify the final bundle's SHA-256s and swap it into {DEFAULT_MODEL_DIR} (the model "
                        "the package ships) by renames, so it is never missing or half copied")
    from tiny_node.factory import operating_point

    o = sub.add_parser("operating-point", help="choose a bundle's threshold in the closed loop on the tune "
                       "suite (look-alike drives kept apart from the scored suite); no torch needed")
    operating_point.add_arguments(o)
    t = sub.add_parser("tracker-bound", help="measure what a tracked VRU input (position, lateral velocity "
                       "with a tracker's errors) would add to the brake decision, on a build's data")
    _tracker_bound_arguments(t)
    from tiny_node.factory import tracker_bench

    tb = sub.add_parser("tracker-bench", help="the runtime's VRU tracker on rendered drives, shipped vs first: "
                        "decision and track-stage latency, lateral-velocity error; no torch needed")
    tracker_bench.add_arguments(tb)
    from tiny_node.factory import foot_points

    fp = sub.add_parser("foot-points", help="where a bundle's VRU detector puts the foot points of cyclists, "
                        "adults and children rendered at 6-34 m, day and night: row and range error; no torch needed")
    foot_points.add_arguments(fp)
    from tiny_node.factory import end_to_end, format_bench

    ev = sub.add_parser("evaluate", help="a bundle on a build's test / held-out frames, with degraded "
                        "ground-truth tracks and end to end with its own detector + tracker (needs '.[train]')")
    end_to_end.add_arguments(ev)

    fb = sub.add_parser("format-bench", help="language-model and VRU-detector time of a build's bundle formats "
                        "(FP32, INT8 static / dynamic / mixed; the teacher FP32 / INT8), interleaved on the same "
                        "frames; no torch needed")
    format_bench.add_arguments(fb)


def _tracker_bound_arguments(p: argparse.ArgumentParser) -> None:
    """``tiny-node model tracker-bound`` options."""
    from tiny_node.factory.config import DEFAULT
    from tiny_node.factory.tracks import BOUND_INPUTS

    p.add_argument("data", type=Path, help="a build's data folder (train/val/test/heldout shards), "
                   "e.g. out/model-default/data")
    p.add_argument("--inputs", choices=BOUND_INPUTS, nargs="+", default=list(BOUND_INPUTS), help="probes to train")
    p.add_argument("--vy-noise", type=float, default=0.3, help="tracker lateral-velocity error, m/s (1 sigma)")
    p.add_argument("--miss", type=float, default=0.1, help="chance a VRU is not tracked in a frame")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--episodes", type=int, default=DEFAULT.episodes_per_shard,
                   help="drives per shard of the build (to re-run shards made without vru_tracks)")
    p.add_argument("--frames", type=int, default=DEFAULT.frames_per_episode, help="frames per drive of the build")
    p.add_argument("--threads", type=at_least(1), default=1, help="torch threads")


def run(args: argparse.Namespace) -> int:
    """Dispatch ``tiny-node model <cmd>``; a missing torch is a one-line error."""
    if args.model_cmd == "operating-point":
        from tiny_node.factory import operating_point

        return operating_point.command(args)
    if args.model_cmd == "tracker-bench":
        from tiny_node.factory import tracker_bench

        return tracker_bench.command(args)
    if args.model_cmd == "foot-points":
        from tiny_node.factory import foot_points

        return foot_points.command(args)
    if args.model_cmd == "format-bench":
        from tiny_node.factory import format_bench

        return format_bench.command(args)
    try:
        from tiny_node.factory.build import BuildError, build
        from tiny_node.factory.config import CONFIGS
        from tiny_node.factory.tracker_bound import command as tracker_bound
    except ImportError as exc:
        print(f"tiny-node model: the factory needs the 'train' extra (pip install -e '.[train]'): {exc}",
              file=sys.stderr)
        return 2
    if args.model_cmd == "tracker-bound":
        return tracker_bound(args)
    if args.model_cmd == "evaluate":
        from tiny_node.factory import end_to_end

        return end_to_end.command(args)
    if args.model_cmd != "build":
        raise ValueError(f"unknown model command {args.model_cmd!r}")
    cfg = CONFIGS[args.config]
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    out = Path(args.out or f"out/model-{args.config}" + (f"-s{args.seed}" if args.seed is not None else ""))
    if args.install and args.config == "tiny":  # one flag made the package's model one that never brakes (review)
        print("tiny-node model build: --install --config tiny: the CI chain's configuration (tiny data, its model "
              "never brakes) is not installed as the package's model; use its bundle with --model DIR",
              file=sys.stderr)
        return 2
    if args.install and args.until not in (None, "bundle"):
        print(f"tiny-node model build: --install needs the bundle step; --until {args.until} stops before it",
              file=sys.stderr)
        return 2
    try:
        final = build(cfg, out, until=args.until, threads=args.threads)
    except BuildError as exc:
        print(f"tiny-node model build: {exc}", file=sys.stderr)
        return 2
    if args.until not in (None, "bundle"):
        return 0
    print(f"bundle: {final}\nmetrics: {out / 'metrics.json'}\ntable: {out / 'table.md'}")
    if args.install:
        try:
            install(final, DEFAULT_MODEL_DIR)
        except (BundleError, OSError) as exc:
            print(f"tiny-node model build --install: {exc} (the package's model is left as it was)", file=sys.stderr)
            return 2
        print(f"installed: {DEFAULT_MODEL_DIR}")
    return 0


def install(bundle: Path, dest: Path) -> None:
    """Put ``bundle`` at ``dest`` (the package's model): verified first, swapped in by renames.

    Why: the shipped model must never be left missing or half copied, nor replaced by a
    bundle whose files no longer match their SHA-256s (a build folder edited since its
    bundle step).
    """
    staging, old = dest.with_name(dest.name + ".installing"), dest.with_name(dest.name + ".old")
    if not dest.exists() and old.exists():
        # An install killed between its two renames left the last good model here: put it back
        # before anything else, so that neither a refused bundle nor the next step deletes it.
        old.rename(dest)
    load_bundle(bundle)  # every file's SHA-256 against its manifest
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(bundle, staging)
    load_bundle(staging)  # the copy too
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists() and _exchange(staging, dest):  # one step: no instant without a model (review)
        shutil.rmtree(staging, ignore_errors=True)  # the model it replaced
        return
    if dest.exists():  # no atomic exchange here: the next install puts .old back if killed in between
        dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported.

    Why: with two renames there was an instant with no model at ``b``: a kill there left none
    for a node started with ``model_bundle: default`` until the next install (review).
    """
    import ctypes
    import errno

    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:  # glibc before 2.28
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # the kernel or file system cannot
        return False
    raise OSError(err, os.strerror(err), str(b))
