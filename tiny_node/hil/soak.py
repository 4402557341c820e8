"""Soak: one node run of ``duration_s`` at 30 Hz with the faults cycling, for leaks and drift.

Reports what a long run can show and a short one cannot: memory growth of the node and its
model worker (RSS from /proc, sampled every second; the worker is restarted by some faults,
so its figure is per worker lifetime), latency drift (p50 / p99 per minute, node clock and
end-to-end), and decisions == frames over the whole run.  Every fault instance is also
checked as in a normal run.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tiny_node.hil.faults import FAULTS, Fault, schedule
from tiny_node.hil.harness import HarnessConfig, Interrupted, global_failures, not_run, run_group
from tiny_node.hil.record import CheckResult, RunRecord, summarise_latency
from tiny_node.hil.report import (
    EXIT_NOTHING_INJECTED,
    dump_json,
    exit_status,
    plot_histogram,
    plot_timeline,
    skipped_summary,
    verdict,
    write_frames_csv,
)
from tiny_node.stopping import stops_held

#: Faults cycled in a soak: those of the ``main`` node run.
SOAK_FAULTS = [n for n in FAULTS if n not in ("clock_jump", "corrupt_frames_compressed", "bundle_corrupt")]


#: Fault-free seconds at a soak's start (its own, whatever ``--lead-in``), and at least at its end.
SOAK_LEAD_IN_S = 10.0
SOAK_END_S = 5.0


def soak_plan(duration_s: float, names: list[str] | None = None, lead_in_s: float = SOAK_LEAD_IN_S) -> list[Fault]:
    """Fault instances cycling through ``names`` until ``duration_s`` is filled (whole cycles only)."""
    names = names or SOAK_FAULTS
    faults: list[Fault] = []
    cycle = 0
    while True:
        batch = [FAULTS[n]() for n in names]
        for f in batch:
            f.name = f"{f.name}#{cycle}"
        if schedule([*faults, *batch], lead_in_s=lead_in_s) > duration_s - SOAK_END_S:
            break
        faults += batch
        cycle += 1
        if not batch:
            break
    schedule(faults, lead_in_s=lead_in_s)
    return faults


def soak_min_s(names: list[str] | None = None) -> int:
    """The shortest soak that holds one cycle of ``names``: lead-in, each window and recovery, the end.

    Why: a shorter one planned no fault, injected nothing, passed with status 0, and streamed
    longer than asked (``--soak 12 --faults camera_dropout``: 22 s, no fault).
    """
    return math.ceil(schedule([FAULTS[n]() for n in names or SOAK_FAULTS], lead_in_s=SOAK_LEAD_IN_S)
                     + SOAK_END_S - 1e-9)


def per_minute(rec: RunRecord) -> list[dict[str, Any]]:
    """Latency percentiles and counts per minute of run time."""
    buckets: dict[int, list[Any]] = defaultdict(list)
    for r in rec.results():
        buckets[int(r.frame.t // 60)].append(r)
    out = []
    for m in sorted(buckets):
        s = summarise_latency(buckets[m])
        out.append({"minute": m, **{k: s[k] for k in ("frames", "decisions", "duplicates", "after_deadline_node",
                                                      "latency_p50_ms", "latency_p99_ms", "e2e_p50_ms", "e2e_p99_ms")}})
    return out


def memory_growth(rec: RunRecord, warmup_s: float = 30.0, worker_settle_s: float = 10.0) -> dict[str, Any]:
    """Node RSS after warm-up (start, end, max, least-squares slope); the worker per lifetime.

    The worker is restarted by the kill / stop faults, so its figures are per lifetime,
    leaving out each lifetime's first ``worker_settle_s`` (loading onnxruntime and the
    model grows it from ~20 to ~90 MiB): the settled RSS of the first and the last lifetime
    (growth across restarts) and the slope within the longest one.
    """
    samples = [s for s in rec.resources if s["t"] >= warmup_s] or rec.resources
    out: dict[str, Any] = {"samples": len(rec.resources), "warmup_s": warmup_s}
    node = np.array([(s["t"], s["node_rss_kib"]) for s in samples if math.isfinite(s["node_rss_kib"])])
    if len(node) >= 2:
        slope = float(np.polyfit(node[:, 0], node[:, 1], 1)[0]) * 60.0
        out.update(node_rss_start_mib=node[0, 1] / 1024, node_rss_end_mib=node[-1, 1] / 1024,
                   node_rss_max_mib=float(node[:, 1].max()) / 1024, node_rss_slope_kib_per_min=slope)
    lifetimes: dict[float, list[tuple[float, float]]] = defaultdict(list)
    for s in rec.resources:
        if math.isfinite(s["worker_pid"]) and math.isfinite(s["worker_rss_kib"]):
            lifetimes[s["worker_pid"]].append((s["t"], s["worker_rss_kib"]))
    settled = [[(t, r) for t, r in life if t - life[0][0] >= worker_settle_s] for life in lifetimes.values()]
    settled = [life for life in settled if life]
    out["worker_lifetimes"] = len(lifetimes)
    if settled:
        out.update(worker_rss_first_life_mib=float(np.median([r for _, r in settled[0]])) / 1024,
                   worker_rss_last_life_mib=float(np.median([r for _, r in settled[-1]])) / 1024,
                   worker_rss_max_mib=max(r for life in settled for _, r in life) / 1024)
        longest = np.array(max(settled, key=len))
        if len(longest) >= 2:
            out.update(worker_longest_settled_s=float(longest[-1, 0] - longest[0, 0]),
                       worker_rss_slope_kib_per_min=float(np.polyfit(longest[:, 0], longest[:, 1], 1)[0]) * 60.0)
    return out


def clean_per_minute(rec: RunRecord) -> list[dict[str, Any]]:
    """Like :func:`per_minute`, over frames outside every fault window and its recovery (drift)."""
    windows = list(rec.windows.values())
    clean = [r for r in rec.results()
             if r.frame.t >= rec.warmup_s and not any(w.start <= r.frame.t < w.until for w in windows)]
    buckets: dict[int, list[Any]] = defaultdict(list)
    for r in clean:
        buckets[int(r.frame.t // 60)].append(r)
    out = []
    for m in sorted(buckets):
        s = summarise_latency(buckets[m])
        out.append({"minute": m, **{k: s[k] for k in ("frames", "latency_p50_ms", "latency_p99_ms",
                                                      "e2e_p50_ms", "e2e_p99_ms")}})
    return out


def fault_counts(checks: list[CheckResult]) -> dict[str, dict[str, Any]]:
    """Per fault (instances ``name#k`` together): passed, failed, skipped and not run instances, why skipped.

    Why skips apart: they were counted as passes (``cpu_load | 1 | 0`` with stress-ng missing, and
    no reason anywhere), so a soak that never loaded the CPU read as one that held under load.
    Why not run apart from skips: a stopped soak's unreached instances read as skipped by the harness.
    """
    out: dict[str, dict[str, Any]] = {}
    for c in checks:
        row = out.setdefault(c.fault.split("#")[0], {"pass": 0, "fail": 0, "skip": 0, "not_run": 0, "skipped_why": []})
        if c.interrupted:
            row["not_run"] += 1
        elif c.skipped:
            row["skip"] += 1
            if c.skipped not in row["skipped_why"]:
                row["skipped_why"].append(c.skipped)
        else:
            row["pass" if c.passed else "fail"] += 1
    return out


def run_soak(cfg: HarnessConfig, duration_s: float, names: list[str] | None = None) -> int:
    """Run the soak, write ``soak.json``, ``soak.md`` and plots to ``cfg.out_dir``; 0 when all passed.

    Stopped early (Ctrl-C, SIGTERM), it writes them from what was collected (verdict ``INTERRUPTED``)
    and re-raises :class:`Interrupted`. Stopped once the soak streamed (its node run's clean-up, or
    writing the files), the files are written whole first; the stop is then raised with its record.
    """
    faults = soak_plan(duration_s, names)
    last = max((f.window.until for f in faults), default=0.0)
    cfg.lead_in_s = SOAK_LEAD_IN_S
    try:
        rec, checks = run_group(cfg, "main", faults, extra_s=max(0.0, duration_s - last - cfg.tail_s))
    except KeyboardInterrupt as exc:
        stop = exc if isinstance(exc, Interrupted) else Interrupted(
            exc, [], not_run(faults, "main", "not run: interrupted before the soak streamed"),
            "before the soak streamed")
        with stops_held():  # a second stop is the same request: the files are written whole
            write_soak(cfg.out_dir, stop.records[0] if stop.records else None, stop.checks, stop.how)
        raise stop from exc
    # held: a stop while they were written overwrote a finished soak's files with "before the first
    # node run" (review); now they are finished, and the stop then raised after the stream
    with stops_held() as held:
        md, result = write_soak(cfg.out_dir, rec, checks)
        with contextlib.suppress(OSError):  # a terminal gone (a hang-up): the files are what counts
            print("\n".join(md), flush=True)
    if held.signum is not None:
        raise Interrupted(held.stop(), [rec], checks, "after the soak streamed, while its report was written",
                          finished=result)
    return exit_status(result)


def write_soak(out_dir: Path, rec: RunRecord | None, checks: list[CheckResult],
               interrupted: str = "") -> tuple[list[str], str]:
    """``soak.json``, ``soak.md`` and the plots; the Markdown lines and the verdict.

    ``interrupted``: how and where it was stopped (:attr:`Interrupted.how`). ``rec`` None: interrupted
    before it streamed (the files then say so, and name the faults).
    """
    by_fault = fault_counts(checks)
    unrun = [c.fault for c in checks if c.interrupted]
    out_dir.mkdir(parents=True, exist_ok=True)
    if rec is None:
        summary = {"verdict": "INTERRUPTED", "passed": False, "interrupted": interrupted, "not_run": unrun}
        (out_dir / "soak.json").write_text(dump_json(summary))
        md = [f"# Soak: INTERRUPTED ({interrupted})", "", f"Not run: {', '.join(unrun) or 'none'}"]
        (out_dir / "soak.md").write_text("\n".join(md) + "\n")
        return md, "INTERRUPTED"
    fails = global_failures(rec)
    minutes = per_minute(rec)
    clean = clean_per_minute(rec)
    mem = memory_growth(rec)
    result = verdict(checks, {"main": fails}, interrupted=bool(interrupted))
    tot = summarise_latency(rec.results())
    stall_info: dict[str, Any] = {"probe": rec.probe, "count": len(rec.stalls),
                                  "max_ms": max((st.ms for st in rec.stalls), default=0.0),
                                  "over_50ms": sum(st.ms > 50 for st in rec.stalls)}
    summary = {"duration_s": rec.duration_s, "totals": tot, "frameless_decisions": len(rec.frameless),
               "frames_skipped_by_harness": rec.skipped_late, "unsent": rec.unsent,
               "memory": mem, "per_minute": minutes,
               "per_minute_clean": clean, "notes": rec.notes,
               "machine_stalls": stall_info,
               "faults": by_fault, "failures": fails,
               "failed_checks": [c.as_dict() for c in checks if not c.passed],
               "skipped": skipped_summary(checks),
               "verdict": result, "passed": result == "PASS", "interrupted": interrupted or None, "not_run": unrun}
    (out_dir / "soak.json").write_text(dump_json(summary))
    md = [f"# Soak: {rec.duration_s / 60:.1f} min at 30 Hz, faults cycling", ""]
    if interrupted:
        md += [f"**INTERRUPTED** ({interrupted}): a partial report of what was collected until then; not run: "
               f"{', '.join(unrun) or 'none'}", ""]
    md += [f"frames {tot['frames']}, decisions {tot['decisions']}, missing {tot['missing']}, duplicates "
           f"{tot['duplicates']}, after deadline (node) {tot['after_deadline_node']}; decisions without a "
           f"frame (camera out for camera_timeout_s: dropouts, harness stalls) {len(rec.frameless)}; "
           f"camera frames the harness skipped after its own stalls (not sent) {rec.skipped_late}", "",
           "| minute | frames | decisions | latency p50 | latency p99 | e2e p50 | e2e p99 |",
           "|---|---|---|---|---|---|---|"]
    md += [f"| {m['minute']} | {m['frames']} | {m['decisions']} | {_f(m['latency_p50_ms'])} | "
           f"{_f(m['latency_p99_ms'])} | {_f(m['e2e_p50_ms'])} | {_f(m['e2e_p99_ms'])} |" for m in minutes]
    ms = stall_info
    md += ["", f"Machine stalls seen by the probe ({ms['probe']}): {ms['count']} over 10 ms, "
           f"{ms['over_50ms']} over 50 ms, longest {ms['max_ms']:.0f} ms"]
    md += ["", "Outside fault windows (drift):", "",
           "| minute | frames | latency p50 | latency p99 | e2e p50 | e2e p99 |", "|---|---|---|---|---|---|"]
    md += [f"| {m['minute']} | {m['frames']} | {_f(m['latency_p50_ms'])} | {_f(m['latency_p99_ms'])} | "
           f"{_f(m['e2e_p50_ms'])} | {_f(m['e2e_p99_ms'])} |" for m in clean]
    md += ["", "Memory: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in mem.items()),
           "", "| fault | pass | fail | skip | not run |", "|---|---|---|---|---|"]
    md += [f"| {k} | {v['pass']} | {v['fail']} | {v['skip']}"
           f"{' (' + '; '.join(v['skipped_why']) + ')' if v['skip'] else ''} | {v['not_run']} |"
           for k, v in sorted(by_fault.items())]
    if result == "SKIP":
        md += ["", f"No fault was injected: every fault was skipped (exit status {EXIT_NOTHING_INJECTED})."]
    md += ["", "Failed checks:"] + [f"- {c.fault}: {'; '.join(c.failures)}" for c in checks if not c.passed]
    md += [f"- run: {f}" for f in fails]
    (out_dir / "soak.md").write_text("\n".join(md) + "\n")
    plot_histogram(out_dir / "latency_hist.png", rec.results())
    plot_timeline(out_dir / "timeline_soak.png", rec)
    write_frames_csv(out_dir / "frames_soak.csv", rec)
    _plot_soak(out_dir / "soak.png", rec, minutes)
    return md, result


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def _plot_soak(path: Path, rec: RunRecord, minutes: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 6), sharex=False)
    res = [s for s in rec.resources if math.isfinite(s["node_rss_kib"])]
    a.plot([s["t"] / 60 for s in res], [s["node_rss_kib"] / 1024 for s in res], label="node RSS MiB")
    a.plot([s["t"] / 60 for s in rec.resources], [s["worker_rss_kib"] / 1024 for s in rec.resources],
           label="worker RSS MiB")
    a.set_xlabel("minutes")
    a.legend(fontsize=8)
    m = [x["minute"] for x in minutes]
    for key in ("latency_p50_ms", "latency_p99_ms", "e2e_p50_ms", "e2e_p99_ms"):
        b.plot(m, [x[key] if x[key] is not None else np.nan for x in minutes], marker="o", label=key)
    b.set_xlabel("minute")
    b.set_ylabel("ms")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
