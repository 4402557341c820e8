"""The harness report: ``summary.json``, a pass/fail table (Markdown, printed) and PNG plots.

Plots use matplotlib's Agg backend (no display): a latency histogram over every decided frame
(the node's own latency and the harness's end-to-end time) and one timeline per node run with
the fault windows shaded.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from tiny_node.hil.record import (
    JITTER_MS,
    LATE_SHARE,
    TRANSPORT_ALLOWANCE_MS,
    CheckResult,
    RunRecord,
    summarise_latency,
)
from tiny_node.strict_json import finite_or_none

#: Exit status of a run in which every requested fault was skipped and nothing failed: not 0, so
#: a CI gate does not go green without having injected anything; not 1 (a failure), not 2 (bad
#: arguments, refused before anything started).
EXIT_NOTHING_INJECTED = 3

#: The files a run writes into its output folder (``<run>``: a node run, or ``soak``), by name
#: pattern: the next run removes them first (:func:`clear_outputs`), nothing else of the folder.
OUTPUT_PATTERNS = ("summary.json", "report.md", "latency_hist.png", "soak.json", "soak.md", "soak.png",
                   *(f"{kind}_{run}.{ext}" for run in ("main", "simtime", "bundle", "soak")
                     for kind, ext in (("timeline", "png"), ("frames", "csv"))),
                   *(f"node-{run}.log" for run in ("main", "simtime", "bundle")),
                   *(f"stalls-{run}-cpu*.txt" for run in ("main", "simtime", "bundle")))


def clear_outputs(out_dir: Path) -> list[Path]:
    """Remove an earlier run's files from ``out_dir`` (only those :data:`OUTPUT_PATTERNS` name); the removed.

    Why: a run that stopped early (Ctrl-C, SIGTERM) left the previous run's PASS verdict, report
    and plots beside its own new node log, and a run without the ``simtime`` node run left an
    earlier one's ``frames_simtime.csv``: the folder read as the result of a run that never was.
    """
    gone = []
    for pattern in OUTPUT_PATTERNS:
        for path in sorted(out_dir.glob(pattern)):
            if path.is_file() or path.is_symlink():
                path.unlink()
                gone.append(path)
    return gone


def dump_json(value: Any) -> str:
    """Strict JSON (no NaN / Infinity: ``strict_json.finite_or_none``), indented; other objects as their text.

    Why: ``json.dumps`` writes NaN bare (invalid JSON, refused by most readers) and never calls
    ``default`` for a float, so the node's RSS after it was gone went out as ``NaN``.
    """
    return json.dumps(finite_or_none(value), indent=1, allow_nan=False, default=str)


def verdict(checks: list[CheckResult], global_fail: dict[str, list[str]], *, interrupted: bool = False) -> str:
    """``FAIL`` if anything failed; ``SKIP`` if faults were asked for and every one was skipped; else ``PASS``.

    Why SKIP apart: ``--faults cpu_load,memory_pressure`` without stress-ng injected nothing, and
    reported "hil: PASS" with status 0. A run without faults asked for (``--faults none``, a
    clean latency run) is judged on its whole-run invariants and may pass. A run stopped early is
    ``INTERRUPTED`` whatever it saw until then: it did not run what was asked.
    """
    if interrupted:
        return "INTERRUPTED"
    ran = [c for c in checks if not c.skipped]
    if not all(c.passed for c in ran) or any(global_fail.values()):
        return "FAIL"
    return "SKIP" if checks and not ran else "PASS"


def exit_status(result: str) -> int:
    """The process's exit status for a :func:`verdict`: 0 PASS, 1 FAIL, EXIT_NOTHING_INJECTED for SKIP."""
    return {"PASS": 0, "FAIL": 1}.get(result, EXIT_NOTHING_INJECTED)


def skipped_summary(checks: list[CheckResult]) -> str:
    """The skipped checks with their reasons, those skipped for one reason together ('' when none).

    Not those an interruption left unrun: the report names them apart (``not_run``).
    """
    by_reason: dict[str, list[str]] = {}
    for c in checks:
        if c.skipped and not c.interrupted:
            by_reason.setdefault(c.skipped, []).append(c.fault)
    return "; ".join(f"{', '.join(names)} ({why})" for why, names in by_reason.items())


def cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, cut at a word boundary with an ellipsis."""
    if len(text) <= limit:
        return text
    head = text[:limit - 1]
    if " " in head and not text[limit - 1].isspace():
        head = head.rsplit(" ", 1)[0]
    return head.rstrip(" ,;:") + "…"


def node_counters(rec: RunRecord) -> dict[str, Any]:
    """See :func:`tiny_node.hil.harness.node_counters` (imported lazily: no rclpy here)."""
    from tiny_node.hil.harness import node_counters as counters

    return counters(rec)


def episode_overlaps(ep: dict[str, Any], rec: RunRecord) -> list[str]:
    """Names of the faults whose window (with recovery) overlaps an episode."""
    t0 = float(ep.get("t_start") or 0.0)
    t1 = ep.get("t_end")
    t1 = float(t1) if t1 is not None else math.inf
    return [n for n, w in rec.windows.items() if (w.start < t1 and w.until > t0) or n in rec.run_wide]


def outcome(records: list[RunRecord]) -> dict[str, Any]:
    """Collision / impact speed / min TTC over the episodes, clean and with faults.

    An episode a stop cut off (no ``t_end``: a stopped run's last) has no outcome: it is counted
    apart (``cut_off``), not in either. Why: it read as a clean episode ("1 episodes, 0 collisions")
    though its drive never ended.
    """
    eps: list[dict[str, Any]] = []
    for rec in records:
        for ep in rec.episodes:
            eps.append({**ep, "group": rec.group, "faults": episode_overlaps(ep, rec),
                        "cut_off": ep.get("t_end") is None})
    ended = [e for e in eps if not e["cut_off"]]
    clean = [e for e in ended if not e["faults"]]

    def agg(es: list[dict[str, Any]]) -> dict[str, Any]:
        ttc = [e["min_ttc_s"] for e in es if e.get("min_ttc_s") is not None]
        return {"episodes": len(es), "collisions": sum(bool(e["collided"]) for e in es),
                "began_braked": sum(bool(e.get("began_braked")) for e in es),
                "max_impact_speed_kmh": max((e["impact_speed_kmh"] for e in es), default=0.0),
                "min_ttc_s": min(ttc) if ttc else None}

    return {"clean": agg(clean), "with_faults": agg([e for e in ended if e["faults"]]),
            "cut_off": len(eps) - len(ended), "episodes": eps}


def markdown_table(checks: list[CheckResult]) -> str:
    """One row per fault: result, expected behaviour, what was seen or why it failed."""
    lines = ["| fault | group | result | expected | observed / failures |", "|---|---|---|---|---|"]
    for c in checks:
        if c.skipped:
            result, detail = c.status, c.skipped
        else:
            result = c.status if c.passed else "**FAIL**"
            detail = "; ".join(c.failures) if c.failures else "; ".join(c.observed[2:] or c.observed)
            if c.passed and c.unjudged_detail:  # what was not exercised comes first, as on the terminal
                detail = "; ".join(filter(None, [c.unjudged_detail, detail]))
        lines.append(f"| {c.fault} | {c.group} | {result} | {c.expected} | {detail} |".replace("\n", " "))
    return "\n".join(lines)


#: Characters of a check's detail on the terminal; a failure gets more (it may relay the node's
#: own error line, see :func:`tiny_node.hil.harness.node_error`).
CONSOLE_DETAIL = 110
CONSOLE_FAILURE = 400


def console_table(checks: list[CheckResult]) -> str:
    """The pass/fail table for a terminal, with the same status as report.md and summary.json.

    A pass that left part of its expectation unexercised says so in its status and leads with
    what and why: a bare PASS beside "not judged as stuck" read as a tested check.
    """
    w = max((len(c.fault) for c in checks), default=5)
    sw = max((len(c.status) for c in checks), default=4)
    out = []
    for c in checks:
        if c.skipped or c.failures:
            detail = cut(c.skipped or "; ".join(c.failures), CONSOLE_FAILURE)
        else:
            detail = cut(c.unjudged_detail or (c.observed[-1] if c.observed else ""), CONSOLE_DETAIL)
        out.append(f"  {c.fault:<{w}}  {c.status:<{sw}}  {detail}")
    return "\n".join(out)


def not_fully_judged(checks: list[CheckResult]) -> list[str]:
    """Names of the passed checks that did not judge all of their expectation."""
    return [c.fault for c in checks if c.passed and not c.skipped and (c.known_gap or c.not_judged)]


def write_report(out_dir: Path, records: list[RunRecord], checks: list[CheckResult],
                 meta: dict[str, Any], global_fail: dict[str, list[str]], *, interrupted: str = "") -> dict[str, Any]:
    """Write summary.json, report.md and the plots; return the summary.

    ``interrupted``: how and where the run was stopped early: the verdict is then ``INTERRUPTED``,
    and the report holds what was collected until then, naming the faults not run.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for rec in records:
        runs.append({
            "group": rec.group, "duration_s": rec.duration_s, "deadline_ms": rec.deadline_ms,
            "camera_timeout_s": rec.camera_timeout_s, "diagnostics_period_s": rec.diag_period_s,
            "transport": rec.transport, "sim_time": rec.sim_time, "has_model": rec.has_model,
            "closed_loop": rec.closed_loop, "warnings": rec.warnings,
            **summarise_latency(rec.results()), "unknown_decisions": rec.unknown_decisions,
            "frames_skipped_by_harness": rec.skipped_late,
            "camera_frames_from_stream": rec.camera_from_stream,
            "camera_period_ms": rec.camera_period_s * 1e3 if rec.frames else None,
            "unsent": rec.unsent,
            "warmup": {"seconds": rec.warmup_s, **{k: v for k, v in summarise_latency(
                [r for r in rec.results() if r.frame.t < rec.warmup_s]).items() if k in ("frames", "decisions")}},
            "brake_output": {"messages": len(rec.brakes) if rec.brakes is not None else None,
                             "paired_by": rec.brake_pairing},
            "node_alive": rec.node_alive, "failures": global_fail.get(rec.group, []),
            "node_counters": node_counters(rec),
            "machine_stalls": {"probe": rec.probe, "count": len(rec.stalls),
                               "max_ms": max((st.ms for st in rec.stalls), default=0.0),
                               "over_50ms": sum(st.ms > 50 for st in rec.stalls)},
            "windows": {k: [w.start, w.end, w.until] for k, w in rec.windows.items()},
            "notes": rec.notes, "resources": rec.resources,
        })
    all_results = [r for rec in records for r in rec.results()]
    result = verdict(checks, global_fail, interrupted=bool(interrupted))
    passed = result == "PASS"
    closed = any(rec.closed_loop for rec in records)
    summary = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        **meta,
        "verdict": result,
        "passed": passed,
        "interrupted": interrupted or None,
        "not_run": [c.fault for c in checks if c.interrupted],
        "skipped": {c.fault: c.skipped for c in checks if c.skipped and not c.interrupted},
        "not_fully_judged": not_fully_judged(checks),
        "tolerance": {"jitter_ms": JITTER_MS, "late_share": LATE_SHARE,
                      "transport_allowance_ms": TRANSPORT_ALLOWANCE_MS},
        "totals": summarise_latency(all_results),
        # informational: the verdict is the checks' (closed-loop performance is `tiny-node sim`'s measure);
        # none for a recording replayed open loop, which the node's brake cannot change
        "outcome": outcome(records) if closed else None,
        "faults": [c.as_dict() for c in checks],
        "runs": runs,
    }
    (out_dir / "summary.json").write_text(dump_json(summary))
    table = markdown_table(checks)
    tot = summary["totals"]
    headline = {"PASS": "**PASS**", "FAIL": "**FAIL**",
                "SKIP": "**SKIP: no fault injected** (every requested fault was skipped; exit status "
                        f"{EXIT_NOTHING_INJECTED})",
                "INTERRUPTED": f"**INTERRUPTED** ({interrupted}; a partial report of what was collected until "
                               "then)"}[result]
    md = [f"# HIL report ({summary['date']})", "",
          f"Source: {meta.get('source')}; node: {meta.get('node')}; model: {meta.get('model')}.", ""]
    md += [f"Node run `{rec.group}` ran with deadline_ms {rec.deadline_ms:g}, camera_timeout_s "
           f"{rec.camera_timeout_s:g}, range_timeout_s {rec.range_timeout_s:g}, diagnostics every "
           f"{rec.diag_period_s:g} s, camera transport {rec.transport}, use_sim_time "
           f"{str(rec.sim_time).lower()} (as the node reported them)." for rec in records]
    md += [f"Warning (run `{rec.group}`): {w}" for rec in records for w in rec.warnings]
    md += ["", f"{headline} — {tot['decisions']}/{tot['frames']} frames decided, "
          f"{tot['duplicates']} duplicates, {tot['after_deadline_node']} after the deadline (node clock), "
          f"{tot['after_deadline_e2e']} beyond deadline + {TRANSPORT_ALLOWANCE_MS:.0f} ms (harness clock); "
          f"latency p50/p99 {_f(tot['latency_p50_ms'])}/{_f(tot['latency_p99_ms'])} ms, "
          f"e2e p50/p99 {_f(tot['e2e_p50_ms'])}/{_f(tot['e2e_p99_ms'])} ms; "
          f"{sum(r.skipped_late for r in records)} camera frames skipped by the harness after its own "
          "stalls (not sent, not counted).", ""]
    if summary["outcome"] is not None:
        oc = summary["outcome"]["clean"]
        md += [f"Outcome (episodes without a fault; informational, not part of the verdict): {oc['episodes']} "
               f"episodes, {oc['collisions']} collisions, "
               f"max impact {oc['max_impact_speed_kmh']:.1f} km/h, min TTC {_f(oc['min_ttc_s'])} s"
               + (f"; {oc['began_braked']} of them began with the node still braking from the episode before "
                  "(its brake_hold_s; the node is not restarted between episodes), so their first brake and "
                  "stop are not a response to that drive" if oc["began_braked"] else "")
               + (f"; {summary['outcome']['cut_off']} episode(s) cut off by the stop left out (no outcome)"
                  if summary["outcome"]["cut_off"] else "") + ".", ""]
    skipped = skipped_summary(checks)
    md += [table, ""] + ([f"Skipped: {skipped}", ""] if skipped else [])
    if summary["not_run"]:
        md += [f"Not run (interrupted): {', '.join(summary['not_run'])}", ""]
    for group, fails in global_fail.items():
        if fails:
            md.append(f"Run `{group}`: " + "; ".join(fails))
    (out_dir / "report.md").write_text("\n".join(md) + "\n")
    plot_histogram(out_dir / "latency_hist.png", all_results)
    for rec in records:
        plot_timeline(out_dir / f"timeline_{rec.group}.png", rec)
        write_frames_csv(out_dir / f"frames_{rec.group}.csv", rec)
    return summary


FRAME_COLUMNS = ("t", "stamp_ns", "faults", "note", "decision", "source", "model_state", "level",
                 "latency_ms", "deadline_ms", "e2e_ms", "duplicates", "rules_reason", "reason")


def write_frames_csv(path: Path, rec: RunRecord) -> None:
    """One row per published frame with its matched decision (for audits and debugging)."""
    import csv

    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(FRAME_COLUMNS)
        for r in rec.results():
            v = r.values
            w.writerow([f"{r.frame.t:.4f}", r.frame.stamp_ns, "+".join(r.frame.faults), r.frame.note,
                        v.get("decision", "MISSING"), v.get("source", ""), v.get("model_state", ""),
                        v.get("level", ""), v.get("latency_ms", ""), v.get("deadline_ms", ""),
                        "" if r.decision is None else f"{r.e2e_ms:.3f}", r.duplicates,
                        v.get("rules_reason", ""), v.get("reason", "")])


def _f(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.1f}"


def plot_histogram(path: Path, results: list[Any]) -> None:
    """Node latency and e2e histograms, log count axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    decided = [r for r in results if r.decision is not None]
    fig, ax = plt.subplots(figsize=(8, 4))
    if decided:
        lat = np.array([r.latency_ms for r in decided])
        e2e = np.array([r.e2e_ms for r in decided])
        bins = [float(x) for x in np.linspace(0, max(100.0, float(np.nanmax(e2e)) + 5), 101)]
        ax.hist(lat, bins=bins, alpha=0.6, label="node latency (receipt → decision)")
        ax.hist(e2e, bins=bins, alpha=0.6, label="end-to-end (publish → decision received)")
        dl = float(np.median([r.deadline_ms for r in decided]))
        ax.axvline(dl, color="red", ls="--", label=f"deadline {dl:.0f} ms")
        ax.axvline(dl + TRANSPORT_ALLOWANCE_MS, color="orange", ls=":", label="deadline + transport allowance")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("ms")
    ax.set_ylabel("frames")
    ax.set_title(f"decision latency, {len(decided)} frames")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


_SOURCE_Y = {"model": 3, "rules": 2, "fallback": 1}


def plot_timeline(path: Path, rec: RunRecord) -> None:
    """Latency, decision source and the ego's gap/speed over run time; faults shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = rec.results()
    fig, axes = plt.subplots(3, 1, figsize=(12, 7.5), sharex=True)
    ax = axes[0]
    t = np.array([r.frame.t for r in res])
    ax.plot(t, [r.latency_ms for r in res], ".", ms=2, label="node latency")
    ax.plot(t, [r.e2e_ms for r in res], ".", ms=2, label="e2e")
    ax.axhline(rec.deadline_ms, color="red", ls="--", lw=0.8, label="deadline")
    miss = [r.frame.t for r in res if r.decision is None]
    if miss:
        ax.plot(miss, [rec.deadline_ms] * len(miss), "rx", label="no decision")
    ax.set_ylabel("ms")
    ax.legend(fontsize=7, loc="upper right")
    ax = axes[1]
    ys = [_SOURCE_Y.get(str(r.values.get("source")), 0) for r in res]
    colours = ["red" if r.values.get("decision") == "brake" else "green" for r in res]
    ax.scatter(t, ys, c=colours, s=3)
    ax.set_yticks([0, 1, 2, 3], ["none", "fallback", "rules", "model"])
    ax.set_ylabel("source (red=brake)")
    ax = axes[2]
    if rec.truth:
        tr = np.array([(a, b, c) for a, b, c, _ in rec.truth], dtype=float)
        ax.plot(tr[:, 0], tr[:, 1], lw=1, label="gap m")
        ax.plot(tr[:, 0], tr[:, 2] * 3.6, lw=1, label="speed km/h")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xlabel("run time s")
    for a in axes:
        for name, w in rec.windows.items():
            a.axvspan(w.start, max(w.end, w.start + 0.05), color="orange", alpha=0.25)
            if a is axes[0]:
                a.text(w.start, a.get_ylim()[1] * 0.9, name, fontsize=6, rotation=90, va="top")
    fig.suptitle(f"HIL run '{rec.group}' ({rec.transport}{', sim time' if rec.sim_time else ''})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
