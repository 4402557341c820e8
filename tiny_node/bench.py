"""``tiny-node bench`` / ``make bench``: decision latency and deadline keeping over real DDS.

Each case starts the node in its own process, streams 640x480 rgb8 frames at 30 Hz (plus
range 20 Hz, odometry/IMU 50 Hz) from this process and reads the decisions back:

* latency: frame receipt in the node -> decision (the node's ``latency_ms``),
* lateness: decision time - deadline (negative = early; > 0 would be a broken promise),
* end-to-end: frame publish here -> decision received here (includes DDS both ways),
* decisions / frames and duplicates.

Cases: ``fast`` (generated fast ONNX model), ``slow`` (a model slower than the deadline:
every frame must be decided by the fallback, on time), ``rules`` (no model), each optionally
``+stress`` (``stress-ng --cpu 2`` loading both cores).  Results go to ``out/bench`` as JSON
and a Markdown table to paste into docs/BENCHMARKS.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tiny_node.dds import isolated_ros_env
from tiny_node.strict_json import finite_or_none as json_safe
from tiny_node.tools.drive import latency_summary, run_drive
from tiny_node.tools.feeder import Feeder
from tiny_node.tools.nodeproc import NodeProcess

COLUMNS = ("frames", "decisions", "duplicates", "after_deadline", "model_share",
           "latency_p50_ms", "latency_p99_ms", "latency_max_ms",
           "lateness_p99_ms", "lateness_max_ms", "e2e_p50_ms", "e2e_p99_ms")
DEFAULT_CASES = ("fast", "slow", "fast+stress", "slow+stress")


class NodeDidNotStartError(RuntimeError):
    """A case's node never came up: that case fails, the others are still measured."""


def machine() -> str:
    """CPU model and core count, for the record."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}"


def run_case(case: str, bundles: dict[str, Path], frames: int, out_dir: Path) -> dict[str, Any]:
    """One benchmark case; returns its summary."""
    model, _, stress = case.partition("+")
    params: dict[str, object] = {}
    if model in ("fast", "slow"):
        params["model_bundle"] = str(bundles[model])
    env = isolated_ros_env()
    os.environ.update(env)
    node = NodeProcess(env, params=params, log_path=out_dir / f"node-{case}.log").start()
    feeder: Feeder | None = None
    load: subprocess.Popen[bytes] | None = None
    try:  # from here on the node is stopped whatever happens (it runs in its own session)
        feeder = Feeder()
        if not feeder.wait_for_node(60.0, alive=node.alive):
            raise NodeDidNotStartError(f"bench {case}: node did not come up:\n{node.output()}")
        if stress:
            load = subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", f"{frames / 30 + 30:.0f}s"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = run_drive(feeder, duration_s=frames / 30.0, closed_loop=False, periodic=True,
                           drain_s=1.0)
    finally:
        if load is not None:  # first, at once: a second signal during the node's stop (up to 10 s)
            load.kill()       # left stress-ng loading both cores for its whole timeout (review)
        try:
            node.stop()  # before the feeder: a second Ctrl-C during the rest must not leave it running
        finally:
            if load is not None:
                load.wait()
            if feeder is not None:
                feeder.close()
    # the frames themselves, so the summary's percentiles can be recomputed from its output
    (out_dir / f"frames-{case}.json").write_text(json.dumps(json_safe(result.rows), indent=1, allow_nan=False))
    summary = latency_summary(result.rows)
    summary["case"] = case
    return summary


def markdown(results: list[dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    head = "| case | " + " | ".join(COLUMNS) + " |"
    sep = "|---" * (len(COLUMNS) + 1) + "|"
    rows = []
    for r in results:
        cells = [f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in COLUMNS]
        rows.append(f"| {r['case']} | " + " | ".join(cells) + " |")
    return "\n".join([head, sep, *rows])


def run_bench(out_dir: Path, frames: int = 600, cases: list[str] | None = None) -> int:
    """Run the cases, print and write the figures; exit 1 if a frame went undecided or twice decided.

    Late decisions are figures, not a failure of the run: a few milliseconds of deadline-thread
    wake-up beyond the publish guard under load is what this measures (docs/BENCHMARKS.md);
    each case with any is named with its worst lateness.
    """
    from tiny_node.model.testmodels import write_test_bundles

    # Checked before any case runs: a missing stress-ng found at the first +stress case threw
    # away the cases already measured. The default set then goes without its load cases (as
    # `make bench` says); asked for by name, they are refused.
    if shutil.which("stress-ng") is None:
        if cases:
            if any("+stress" in c for c in cases):
                print("tiny-node bench: error: stress-ng not found (needed by the +stress cases): "
                      "apt-get install -y stress-ng", file=sys.stderr)
                return 2
        else:
            cases = [c for c in DEFAULT_CASES if "+stress" not in c]
            print("bench: stress-ng not found: running without the +stress cases "
                  "(apt-get install -y stress-ng)", flush=True)
    cases = cases or list(DEFAULT_CASES)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    broken: list[str] = []  # cases whose node did not come up: failed, and the others still measured
    with tempfile.TemporaryDirectory(prefix="tiny_node_bench_") as tmp:
        bundles = write_test_bundles(Path(tmp))
        for case in cases:
            print(f"bench: {case} ({frames} frames at 30 Hz) ...", flush=True)
            try:
                results.append(run_case(case, bundles, frames, out_dir))
            except NodeDidNotStartError as exc:
                print(exc, flush=True)
                broken.append(f"bench: FAIL {case}: the node did not come up (log: {out_dir}/node-{case}.log)")
                continue
            except KeyboardInterrupt:
                # Ctrl-C or SIGTERM (the CLI turns it into this): the cases measured so far are
                # minutes of work; written before the CLI stops, marked as an interrupted run
                write_report(out_dir, results, interrupted_at=case)
                raise
            print("  " + ", ".join(f"{k}={results[-1][k]:.2f}" if isinstance(results[-1][k], float)
                                   else f"{k}={results[-1][k]}" for k in COLUMNS), flush=True)
    write_report(out_dir, results)
    notes, failures = verdict(results)
    for line in notes + failures + broken:
        print(line)
    return 1 if failures or broken else 0


def write_report(out_dir: Path, results: list[dict[str, Any]], interrupted_at: str | None = None) -> None:
    """Print the table and write ``bench.md`` / ``bench.json``; ``interrupted_at``: the case a stop cut short."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cut = "" if interrupted_at is None else f" Interrupted during case {interrupted_at}: the cases before it only."
    report = f"Measured {stamp} on {machine()}.{cut}\n\n{markdown(results)}\n"
    print("\n" + report, flush=True)
    (out_dir / "bench.json").write_text(json.dumps({"date": stamp, "machine": machine(),
                                                    "interrupted_at": interrupted_at, "results": json_safe(results)},
                                                   indent=1, allow_nan=False))
    (out_dir / "bench.md").write_text(report)


def verdict(results: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(notes on late decisions, failures: frames not decided exactly once), one line each."""
    notes = [f"bench: {r['case']}: {r['after_deadline']} of {r['frames']} decisions after their deadline, "
             f"the latest {r['lateness_max_ms']:.1f} ms after it" for r in results if r["after_deadline"]]
    failures = [f"bench: FAIL {r['case']}: {r['frames']} frames, {r['decisions']} decisions, {r['duplicates']} "
                "duplicates (every frame must be decided exactly once)"
                for r in results if r["decisions"] != r["frames"] or r["duplicates"]]
    return notes, failures
