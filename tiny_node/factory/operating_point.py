"""A model's operating point chosen in the closed loop, on drives kept apart from the scored suite.

Why: the build's threshold rule counts false brakes on benign *frames* of validation data.
That missed look-alikes: a model with 0.10 % frame-level false brakes braked falsely in 5 of
the 23 benign drives of the scored suite (docs/MODEL_HISTORY.md, *Closed-loop operating
point*). A false brake in a drive costs a whole activation (the node holds every brake for
``brake_hold_s``), so the threshold must clear the model's highest P(brake) over whole
look-alike drives, not a frame rate.

How (``tiny-node model operating-point BUNDLE``):

1. Run the tune suite's look-alike drives (``tiny_node.sim.suite.tune_lookalike_suite``: people
   walking up to the kerb and stopping, waiting between parked cars, crossing far ahead) in
   *shadow* arbitration: the rules drive, the model runs on every frame and its P(brake) is
   recorded. The rules never brake in them, so until a model brake every frame is what it
   would be at any threshold: a drive stays clean at threshold ``t`` exactly when its peak
   P(brake) is below ``t``.
2. The closed-loop threshold is the peak over those drives plus ``margin``, rounded up to the
   next 0.01; the operating point is the higher of it and the bundle's own (val) threshold.
3. The tune suite (its crossings and look-alikes) is run at that point, model + rules vs rules
   only, so the cost of the point in saves is printed beside it.

A bundle with a track conflict brake (``vlm.tracking.conflict``) brakes whatever its threshold
when a track's conflict comes within ``brake_within_s``: each look-alike drive's earliest
conflict is recorded too, and a drive it would brake in is a false activation no threshold
clears (printed, and nothing is written).

The scored suite (``--suite all``) is not used here unless asked: it stays a test.
``--with-benign`` adds its benign drives (``sim.suite.benign_suite``: 27 since 2026-12-06, 23
before) to step 1 (their peaks must be cleared too). Why
offer it: a threshold for a product should clear every benign drive one knows of; the price
is that those drives then calibrate the threshold and no longer test its false activations
(the scored suite's Euro NCAP part still does). Say so wherever its figures are quoted.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tiny_node.argtypes import at_least
from tiny_node.config import make_config
from tiny_node.lockstep import late_budget_warning
from tiny_node.model.bundle import (
    MANIFEST,
    BundleError,
    existing_bundle_dir,
    load_bundle,
    set_threshold,
    write_atomic,
)
from tiny_node.sim.runner import SuiteResult, print_result, run_suite
from tiny_node.sim.suite import benign_suite, tune_lookalike_suite, tune_suite
from tiny_node.writable import folder_problem, write_problem

MARGIN = 0.02
STEP = 0.01
AT_DIR = "bundle"  # under the output folder: the copy of the bundle at the operating point
#: what a run writes in its --out (``choose``, ``run_at``, ``_measure``; ``written/``: runs before 2026-11-24)
PRODUCTS = ("lookalikes_shadow", "tune", AT_DIR, "operating_point.json", "written")


@dataclass(frozen=True)
class OperatingPoint:
    """What the tune suite says about a bundle's threshold."""

    val_threshold: float  # the bundle's threshold as built (chosen on val frames)
    peaks: dict[str, float]  # look-alike drive -> its highest P(brake) in shadow mode
    margin: float
    #: look-alike drive -> the earliest track conflict the model reported, s (inf: none)
    conflicts: dict[str, float] = field(default_factory=dict)
    conflict_within_s: float | None = None  # the bundle's conflict brake (None: it has none)

    @property
    def closed_loop_threshold(self) -> float:
        """Smallest 0.01 step at or above the highest look-alike peak + margin (at most 1.0)."""
        top = max(self.peaks.values(), default=0.0) + self.margin
        return min(1.0, math.ceil(round(top / STEP, 6)) * STEP)

    @property
    def threshold(self) -> float:
        """The operating point: the val threshold, raised to the closed-loop one if that is higher."""
        return round(max(self.val_threshold, self.closed_loop_threshold), 4)

    @property
    def false_activations_at_val_threshold(self) -> list[str]:
        """Look-alike drives the bundle would falsely brake in at its val threshold."""
        return sorted(set(self.conflict_activations) | {n for n, p in self.peaks.items() if p >= self.val_threshold})

    @property
    def conflict_activations(self) -> list[str]:
        """Look-alike drives the bundle's conflict brake fires in: false activations at every threshold."""
        within = self.conflict_within_s
        return [] if within is None else sorted(n for n, t in self.conflicts.items() if t < within)


def bundle_threshold(bundle: Path) -> float:
    """The threshold in a bundle's manifest (the bundle is checked first)."""
    return float(load_bundle(bundle).decision.threshold)


def lookalike_peaks(bundle: Path, out_dir: Path, *, workers: int = 2, progress: bool = True,
                    with_benign: bool = False) -> tuple[dict[str, float], dict[str, float]]:
    """Each look-alike drive's highest model P(brake) and earliest track conflict (step 1).

    The model runs in shadow arbitration. ``with_benign``: the scored suite's benign drives too
    (module docstring).
    """
    drives = tune_lookalike_suite() + (benign_suite() if with_benign else [])
    result = run_suite(drives, make_config({"arbitration": "shadow"}), bundle=bundle,
                       out_dir=out_dir, workers=workers, modes=("model",), plots="none", progress=progress)
    if result.errors:
        raise RuntimeError(f"{len(result.errors)} look-alike run(s) failed, first: "
                           f"{result.errors[0]['name']}: {result.errors[0]['error']}")
    peaks: dict[str, float] = {}
    conflicts: dict[str, float] = {}
    for run in result.runs:
        if run["false_activation"]:  # the rules braked: a look-alike that is not one for the rules
            raise RuntimeError(f"{run['name']}: the rules braked in a look-alike drive; fix the suite")
        peaks[run["name"]], conflicts[run["name"]] = shadow_peaks(out_dir / "timelines" / f"{run['name']}__model.csv")
    return peaks, conflicts


def shadow_peaks(timeline: Path) -> tuple[float, float]:
    """Highest ``model_p_brake`` and earliest ``model_conflict_s`` of a run's timeline.

    ``model_conflict_s`` is already the conflict the model did not veto (the runtime applies
    ``min_p_brake`` to the tracks it showed the model only: ``ConflictSpec.vetoes``), so it is
    read as it is: one not re-judged here cannot disagree with the node. A conflict beyond the
    brake's window still shows how near a drive came. Every frame must have a
    P(brake): a frame without one could have been the peak.
    """
    with timeline.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [r["t_s"] for r in rows if not r.get("model_p_brake")]
    if missing or not rows:
        raise RuntimeError(f"{timeline}: no model P(brake) at t = {missing[:3]} s (model late or absent); "
                           "the peak would be a guess")
    lacking = [c for c in ("model_conflict_s", "model_conflict_brake") if c not in rows[0]]
    if lacking:
        raise RuntimeError(f"{timeline}: no {' or '.join(lacking)} column (written by an older tiny-node); "
                           "run it again into a fresh --out")
    conflict = min((float(r["model_conflict_s"]) for r in rows if r["model_conflict_s"]), default=math.inf)
    return max(float(r["model_p_brake"]) for r in rows), conflict


def bundle_at(bundle: Path, threshold: float, dest: Path) -> Path:
    """A copy of ``bundle`` whose manifest says ``threshold`` (the original is left untouched)."""
    check_copy_dest(bundle, dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(bundle, dest)
    set_threshold(dest, threshold)
    return dest


def check_copy_dest(bundle: Path, dest: Path) -> None:
    """Refuse a ``dest`` for the copy that is, holds or lies in ``bundle``, or holds another bundle.

    Why: the copy replaces ``dest``; with ``--out`` a build folder, ``dest`` was the build's own
    bundle (deleted, then the copy failed), or another bundle silently replaced. A folder with
    an earlier copy of this bundle (the same files) may be replaced.
    """
    a, d = bundle.resolve(), dest.resolve()
    if a == d or a in d.parents or d in a.parents:
        raise BundleError(f"{dest}: the operating point's copy would overlap the bundle {bundle}; choose another --out")
    if not dest.exists():
        return
    try:
        mine = {k: (e.sha256, *(d.sha256 for d in e.data)) for k, e in load_bundle(bundle).files.items()}
        theirs = {k: (e.sha256, *(d.sha256 for d in e.data)) for k, e in load_bundle(dest).files.items()}
    except BundleError as exc:
        raise BundleError(f"{dest} exists and is not a copy of {bundle} ({exc}); choose another --out") from exc
    if mine != theirs:
        raise BundleError(f"{dest} holds another bundle than {bundle} (other files); choose another --out")


def check_out(out: Path) -> None:
    """A BundleError if ``out`` holds what no operating-point run made: the run writes over those names.

    Why: a folder given as --out was used as it was (a user's ``tune/`` replaced, as ``model build``
    deleted a user's ``bundle/``; review 2026-12-07). A folder of an earlier run is reused.
    """
    existing = next((p for p in (out, *out.parents) if p.exists()), None)  # itself, or where it would go
    if existing is not None and not existing.is_dir():
        raise BundleError(f"--out {out}: {existing} is a file, not a folder")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in PRODUCTS) if out.is_dir() else []
    if foreign:
        raise BundleError(f"--out {out} holds files no operating-point run made ({', '.join(foreign[:5])}): the run "
                          "writes operating_point.json, tune/ and lookalikes_shadow/ there; choose a new or empty "
                          "--out, or move those files away")


def choose(bundle: Path, out_dir: Path, *, margin: float = MARGIN, workers: int = 2,
           progress: bool = True, with_benign: bool = False) -> OperatingPoint:
    """Steps 1-2: the operating point of ``bundle`` (nothing is written into it)."""
    b = load_bundle(bundle)
    tracking = b.vlm.tracking if b.vlm is not None else None
    conflict = tracking.conflict if tracking is not None else None
    peaks, conflicts = lookalike_peaks(bundle, out_dir / "lookalikes_shadow", workers=workers, progress=progress,
                                       with_benign=with_benign)
    return OperatingPoint(float(b.decision.threshold), peaks, margin, conflicts,
                          conflict.brake_within_s if conflict else None)


def run_at(bundle: Path, threshold: float, out_dir: Path, *, workers: int = 2, progress: bool = True) -> SuiteResult:
    """Step 3: the tune suite at ``threshold``, model + rules vs rules only."""
    at = bundle_at(bundle, threshold, out_dir / AT_DIR)
    return run_suite(tune_suite(), make_config(), bundle=at, out_dir=out_dir / "tune", workers=workers,
                     plots="none", progress=progress)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``tiny-node model operating-point``."""
    p.add_argument("bundle", help="model bundle directory ('default' = the shipped model)")
    p.add_argument("--out", default=None, help="output folder (default out/operating-point-<bundle dir name>; "
                   "a build's bundle is named after its build folder: out/model-tiny/bundle -> "
                   "out/operating-point-model-tiny, out/model-tiny/bundles/int8 -> "
                   "out/operating-point-model-tiny-int8)")
    p.add_argument("--margin", type=float, default=MARGIN,
                   help=f"added to the highest look-alike P(brake) (default {MARGIN})")
    p.add_argument("--workers", type=at_least(1), default=2, help="parallel simulator processes")
    p.add_argument("--write", action="store_true",
                   help="write the chosen threshold into the bundle's manifest (refused when the bundle's track "
                   "conflict brake fires in a look-alike drive: no threshold clears that)")
    p.add_argument("--with-benign", action="store_true",
                   help=f"clear the scored suite's {len(benign_suite())} benign drives too (they then calibrate "
                   "the threshold and no longer test its false activations)")


def default_out(bundle: Path) -> Path:
    """``out/operating-point-<name>``: the bundle dir's name, or its build folder's for a build's bundle.

    Why: every factory bundle dir is named ``bundle`` (``bundles/<format>`` for the others), so
    the second build's bundle was refused: its default folder held the first one's copy.
    """
    path = bundle.resolve()
    if path.name == AT_DIR and path.parent.name:  # <build>/bundle
        name = path.parent.name
    elif path.parent.name == "bundles" and path.parent.parent.name:  # <build>/bundles/int8
        name = f"{path.parent.parent.name}-{path.name}"
    else:
        name = path.name
    return Path("out") / f"operating-point-{name}"


def command(args: argparse.Namespace) -> int:
    """``tiny-node model operating-point``: print (and optionally write) the closed-loop threshold.

    A bundle that does not load (a file changed, a manifest key wrong) or is always late in lockstep,
    and an --out (or with --write the bundle's folder) that cannot be written in, are one line and
    status 2, as in ``model evaluate``: checked before any drive runs, and the bundle again wherever
    it is read. A run that fails (a drive's error, a frame without P(brake)) is one line, status 1.
    """
    try:
        bundle = existing_bundle_dir(args.bundle)
    except BundleError as exc:
        print(f"tiny-node model operating-point: {exc}", file=sys.stderr)
        return 2
    if not 0.0 <= args.margin < 1.0:
        print(f"tiny-node model operating-point: --margin {args.margin}: must be in [0, 1)", file=sys.stderr)
        return 2
    try:
        check_in_time(bundle, args.with_benign)
        out = Path(args.out) if args.out else default_out(bundle)
        check_out(out)
        check_copy_dest(bundle, out / AT_DIR)  # before the drives run: the copy must not take the place of a bundle
        check_writable(out, bundle if args.write else None)
        return _measure(args, bundle, out)
    except BundleError as exc:
        print(f"tiny-node model operating-point: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # what the checks cannot foresee (a full disk): one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"tiny-node model operating-point: cannot write {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a drive that failed, a frame without P(brake), a worker that died
        print(f"tiny-node model operating-point: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


def check_in_time(bundle: Path, with_benign: bool = False) -> None:
    """A BundleError unless ``bundle`` loads and its latency budget gives every look-alike frame a P(brake).

    Why up front: a bundle always late in lockstep (make-test-bundles' ``slow``) has no P(brake)
    on any frame, so no peak to choose from; the look-alike drives ran for minutes, then stopped
    at the first timeline (``shadow_peaks``). So did one in time but not under the camera's frame
    period (34-45 ms at 30 Hz): the lockstep model answers one frame at a time, and a frame that
    comes while it is busy goes without (review).
    """
    budget = load_bundle(bundle).latency_budget_ms
    late = late_budget_warning(budget, "its latency_budget_ms", make_config())
    if late:
        raise BundleError(f"{bundle}: {late}, so no P(brake) to choose a threshold from")
    period_ms = min(1e3 / d.camera_hz for d in tune_lookalike_suite() + (benign_suite() if with_benign else []))
    if budget >= period_ms:
        raise BundleError(f"{bundle}: the model's latency budget {budget:g} ms (its latency_budget_ms) is not under "
                          f"the look-alike drives' camera frame period {period_ms:.1f} ms: in lockstep the model "
                          "answers one frame at a time, so the frames that come while it is busy go without the "
                          "P(brake) a threshold is chosen from")


def check_writable(out: Path, bundle: Path | None) -> None:
    """A BundleError if ``out`` cannot be made or written in, or ``bundle`` (``--write``) cannot be written in.

    Why before the drives: a read-only --out ended in a traceback from the first drive's folder,
    and a read-only bundle with --write in one after every drive had run.
    """
    if bundle is not None and (why := write_problem(bundle)):  # first: a refusal makes no --out
        raise BundleError(f"--write: cannot write in the bundle's folder {bundle}: {why} (leave --write out to "
                          "only print the threshold)")
    if problem := folder_problem(out):
        raise BundleError(f"--out {out}: cannot {problem[0]} it: {problem[1]}")


def _measure(args: argparse.Namespace, bundle: Path, out: Path) -> int:
    """Steps 1-3 of ``command`` on a checked ``bundle``, the results into ``out``."""
    point = choose(bundle, out, margin=args.margin, workers=args.workers, with_benign=args.with_benign)
    print("look-alike drive                                  peak P(brake)  earliest track conflict")
    for name, p in sorted(point.peaks.items(), key=lambda kv: -kv[1]):
        t = point.conflicts.get(name, math.inf)
        print(f"  {name:48s} {p:.3f}          {'-' if math.isinf(t) else f'{t:.2f} s'}")
    fa = point.false_activations_at_val_threshold
    print(f"val threshold {point.val_threshold:.2f}; false activations there: {len(fa)}/{len(point.peaks)} {fa}")
    print(f"closed-loop threshold {point.closed_loop_threshold:.2f} (peak + {point.margin:.2f}); "
          f"operating point {point.threshold:.2f}")
    if point.conflict_within_s is not None:
        ca = point.conflict_activations
        print(f"track conflict brake (within {point.conflict_within_s:.2f} s) fires in {len(ca)}/{len(point.peaks)} "
              f"look-alike drive(s) {ca}" + (": false activations at every threshold" if ca else ""))
    result = run_at(bundle, point.threshold, out, workers=args.workers)
    print_result(result)
    (out / "operating_point.json").write_text(json.dumps(
        {"bundle": str(bundle), "val_threshold": point.val_threshold, "margin": point.margin,
         "with_benign": args.with_benign,
         "closed_loop_threshold": point.closed_loop_threshold, "threshold": point.threshold,
         "peaks": point.peaks, "false_activations_at_val_threshold": point.false_activations_at_val_threshold,
         "conflict_within_s": point.conflict_within_s,
         "earliest_conflicts": {n: (None if math.isinf(t) else t) for n, t in point.conflicts.items()},
         "conflict_activations": point.conflict_activations},
        indent=2) + "\n", encoding="utf-8")
    if args.write and point.conflict_activations:
        print(f"nothing written to {bundle / MANIFEST}: its track conflict brake fires in "
              f"{point.conflict_activations}, which no threshold clears (vlm.tracking.conflict.brake_within_s)",
              file=sys.stderr)
        return 1
    if args.write:  # the manifest of the copy run_at validated and ran, so the original is never left broken
        write_atomic(bundle / MANIFEST, (out / AT_DIR / MANIFEST).read_text(encoding="utf-8"))
        print(f"threshold {point.threshold:.2f} written to {bundle / MANIFEST}")
    return 0
