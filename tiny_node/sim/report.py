"""Suite report: ``summary.json`` for machines, PNG plots and ``report.md`` for people.

Output folder::

    summary.json            every run's record (sorted by name, mode), plus totals per mode
    timelines/<run>.csv     one row per camera frame (written by the runner)
    runs/<run>.json         a run's record and config hash (resume)
    plots/<run>.png         speed / distance / TTC / decision over time
    score_matrix.png        scenario x speed cells coloured by Euro NCAP band, one panel per mode
    report.md               the table a person reads first
    timing.json             wall times (the only non-deterministic file)

Everything but ``timing.json`` depends only on the runs, so it is byte-identical across
repeated suites.  Plotting costs ~0.2 s a run, so by default (``plots="auto"``) only runs
that failed (collision, false activation, error) and one run per protocol get a plot;
``"all"`` plots every run, ``"none"`` none.  A report rewritten into its folder leaves only
its own plots and score matrix there: an earlier suite's that it did not draw are removed.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiny_node.decision import model_asked
from tiny_node.sim.closed_loop import canonical_json
from tiny_node.sim.scoring import frontal_gate_passed

if TYPE_CHECKING:
    from tiny_node.sim.runner import SuiteResult

BAND_COLOURS: Mapping[str, str] = {"green": "#2e9d41", "yellow": "#f2d43d", "orange": "#f08c2e",
                                   "brown": "#8b5a2b", "red": "#d7302a"}
PLOTS = ("auto", "all", "none")
Mapper = Callable[[Callable[[Mapping[str, Any]], "str | None"], Sequence[Mapping[str, Any]]], Iterable["str | None"]]


def panel_title(mode: str, t: Mapping[str, Any]) -> str:
    """A score-matrix panel's title from the mode's :func:`totals` (the report's own figures)."""
    gate = "" if t["frontal_gate_passed"] else " (Frontal Collisions gate failed)"
    return f"{mode}: {t['points']:.2f} / {t['points_max']:.0f} points{gate}"


def totals(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per mode: runs, passed, collisions, false activations, points scored / available."""
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        t = out.setdefault(str(r["mode"]), {"runs": 0, "passed": 0, "collisions": 0,
                                            "false_activations": 0, "errors": 0, "points": 0.0,
                                            "points_max": 0.0, "scored_runs": 0,
                                            "benign_runs": 0, "deadline_misses": 0, "model_asked": 0,
                                            "model_on_time": 0, "model_silent_runs": 0})
        t["runs"] += 1
        # Whether the model decided at all: a bundle the node could not load, or a latency budget over
        # the deadline, passed "model 1/1" on the rules' brakes alone.
        by_state = r.get("by_model_state") or {}
        asked = model_asked(by_state)
        t["model_asked"] += asked
        t["model_on_time"] += int(by_state.get("on_time", 0))
        t["model_silent_runs"] += int(asked > 0 and not by_state.get("on_time"))
        t["passed"] += int(bool(r.get("passed")))
        t["collisions"] += int(bool(r.get("collided")))
        t["false_activations"] += int(bool(r.get("false_activation")))
        t["errors"] += int(r.get("outcome") == "error")
        t["benign_runs"] += int(r.get("expect") == "no_brake")
        t["deadline_misses"] += int(r.get("deadline_misses") or 0)
        if r.get("points") is not None:
            t["points"] += float(r["points"])
            t["points_max"] += 1.0
            t["scored_runs"] += 1
        elif r.get("outcome") in ("error", "no_target", "unresolved") and r.get("protocol"):
            # a scored test that crashed, tested nothing or never ended scores 0, not nothing
            t["points_max"] += 1.0
            t["scored_runs"] += 1
    for mode, t in out.items():  # a CCRs <= 20 / CPNA-75 10 km/h point not green zeroes Frontal Collisions
        t["frontal_gate_passed"] = mode_frontal_gate(runs, mode)
        if not t["frontal_gate_passed"]:
            t["points"] = 0.0  # every protocol scored here is a Frontal Collisions test
    return dict(sorted(out.items(), key=lambda kv: _mode_order(kv[0])))


def model_in_time(t: Mapping[str, Any]) -> str:
    """The model's frames in time, ``on_time / asked frames (pct)``, of a mode's totals; "" if never asked."""
    asked = int(t["model_asked"])
    return f"{t['model_on_time']} / {asked} frames ({100.0 * t['model_on_time'] / asked:.1f} %)" if asked else ""


def silent_model_warnings(tot: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per mode with runs where the model was asked and answered no frame in time."""
    return [f"warning: in {t['model_silent_runs']} of {t['runs']} {mode} run(s) the model answered no frame in "
            "time: their decisions are the rules' (by_model_state in summary.json: a bundle the node could not "
            "load, or a latency budget not under deadline_ms - publish_guard_ms in lockstep)"
            for mode, t in tot.items() if t["model_silent_runs"]]


def mode_frontal_gate(runs: Sequence[Mapping[str, Any]], mode: str) -> bool:
    """Whether a mode passes the 2026 general requirements gate (:func:`scoring.frontal_gate_passed`).

    A gate point without a band (a run that crashed, tested nothing (``no_target``) or never ended
    (``unresolved``)) is not green: it scored better than the same point as a collision, which fails
    the gate.
    """
    return frontal_gate_passed((str(r.get("protocol")), float(r.get("ego_speed_kmh") or 0.0), str(r.get("band")))
                               for r in runs if r["mode"] == mode)


def _mode_order(mode: str) -> tuple[int, str]:
    """Rules before model (the baseline first), unknown modes after, by name."""
    order = {"rules": 0, "model": 1}
    return order.get(mode, 2), mode


def write_report(result: SuiteResult, *, plots: str = "auto", mapper: Mapper = map) -> None:
    """Write summary.json, the plots, the score matrix and report.md; note the runs plotted in ``result``.

    ``mapper`` runs the per-run plots (``map``, or a process pool's ``map`` to use its workers).
    """
    if plots not in PLOTS:
        raise ValueError(f"plots must be one of {', '.join(PLOTS)} (got {plots!r})")
    out = result.out_dir
    runs = result.runs
    summary = {"totals": totals(runs), "runs": runs}
    write_text_atomic(out / "summary.json", canonical_json(summary))
    plotted = _plot_runs(out, runs, plots, mapper)
    result.plotted = plotted
    matrix = out / "score_matrix.png"
    has_matrix = write_score_matrix(runs, matrix)
    write_text_atomic(out / "report.md", markdown(runs, plotted=plotted, matrix=has_matrix))


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    """Have ``write`` fill a temporary file, then rename it over ``path``.

    Why: a suite re-run into its folder replaces the last report; a full disk, a kill or a reader
    mid-write must see the old file or the new one, never a torn ``summary.json``.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (:func:`_replace`)."""
    _replace(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_timing(result: SuiteResult) -> None:
    """``timing.json``: wall time of the suite; wall and CPU time of each fresh run and its speed-up.

    The CPU-time figure is what a run costs on a core of its own; the wall figure also counts
    waiting for the core (other workers, other processes).
    """
    runs = result.runs
    per_run: dict[str, dict[str, Any]] = {}
    for k, w in sorted(result.run_wall_s.items()):
        sim, cpu = _sim_s(runs, k), result.run_cpu_s.get(k)
        per_run[k] = {"sim_s": sim, "wall_s": w, "cpu_s": cpu, "x_realtime": sim / w if w else None,
                      "x_realtime_cpu": sim / cpu if cpu else None}
    timing = {"suite_wall_s": result.wall_s, "reused_runs": result.reused, "runs": per_run}
    write_text_atomic(result.out_dir / "timing.json", canonical_json(timing))


def _sim_s(runs: Sequence[Mapping[str, Any]], key: str) -> float:
    from tiny_node.sim.runner import run_key

    for r in runs:
        if run_key(str(r["name"]), str(r["mode"])) == key:
            return float(r.get("sim_time_s") or 0.0)
    return 0.0


# --- markdown ----------------------------------------------------------------------------------
def _f(x: Any, nd: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{float(x):.{nd}f}"


def _md_cell(text: str) -> str:
    """Text for a Markdown table cell or link text: backslash, ``|``, ``[`` and ``]`` escaped.

    Why: a scenario name is free text; a ``|`` in it split its row into extra columns and a ``]``
    ended its plot link.  Escaped rather than refused: it breaks no line and no file name
    (``run_key`` maps it), so only the Markdown needs to care.  Line breaks and other control
    characters are refused by the scenario schema, since no escape keeps a table row on one line.
    """
    return re.sub(r"([\\|\[\]])", r"\\\1", text)


def markdown(runs: Sequence[Mapping[str, Any]], *, plotted: Sequence[str] = (), matrix: bool = False,
             title: str = "Simulation suite") -> str:
    """The run table and totals as Markdown (relative links into the output folder)."""
    from tiny_node.sim.runner import run_key

    lines = [f"# {title}", ""]
    tot = totals(runs)
    lines += ["| mode | runs | passed | collisions | false activations | errors | NCAP points | deadline misses "
              "| model in time |",
              "|---|---|---|---|---|---|---|---|---|"]
    for mode, t in tot.items():
        pts = f"{t['points']:.2f} / {t['points_max']:.0f}" if t["points_max"] else "-"
        lines.append(f"| {mode} | {t['runs']} | {t['passed']} | {t['collisions']} | "
                     f"{t['false_activations']} / {t['benign_runs']} benign | {t['errors']} | {pts} | "
                     f"{t['deadline_misses']} | {model_in_time(t) or '-'} |")
    lines.append("")
    silent = silent_model_warnings(tot)
    lines += [f"**{line}**" for line in silent] + ([""] if silent else [])
    gated = [m for m, t in tot.items() if not t["frontal_gate_passed"]]
    if gated:
        lines += [f"Frontal Collisions gate failed ({', '.join(gated)}): a CCRs point at <= 20 km/h or a CPNA-75 "
                  "point at 10 km/h is not green, which zeroes every Frontal Collisions score under Euro NCAP "
                  "2026 (its NCAP points above are 0).", ""]
    if matrix:
        lines += ["![score matrix](score_matrix.png)", ""]
    lines += ["| scenario | mode | outcome | impact km/h (rel.) | band | points | false activation | "
              "first brake s | TTC at brake s | min TTC s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    plotted_set = set(plotted)
    for r in runs:
        key = run_key(str(r["name"]), str(r["mode"]))
        cell = _md_cell(str(r["name"]))
        name = f"[{cell}](plots/{key}.png)" if key in plotted_set else cell
        outcome = str(r.get("outcome", ""))
        if outcome in ("collision", "false_activation", "error", "no_target", "unresolved"):
            outcome = f"**{outcome}**"
        impact = (f"{_f(r.get('impact_speed_kmh'))} ({_f(r.get('relative_impact_speed_kmh'))})"
                  if r.get("collided") else "-")
        lines.append(
            f"| {name} | {r['mode']} | {outcome} | {impact} | {r.get('band') or '-'} | "
            f"{_f(r.get('points'), 2)} | {'yes' if r.get('false_activation') else 'no'} | "
            f"{_f(r.get('first_brake_t_s'), 2)} | {_f(r.get('ttc_at_first_brake_s'), 2)} | "
            f"{_f(r.get('min_ttc_s'), 2)} |")
    errors = [r for r in runs if r.get("outcome") == "error"]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [f"- {r['name']} ({r['mode']}): {r.get('error')}" for r in errors]
    untested = [r for r in runs if r.get("outcome") == "no_target"]
    if untested:
        lines += ["", "## Drives that tested nothing", ""]
        lines += [f"- {r['name']} ({r['mode']}): {r.get('note')}" for r in untested]
    unresolved = [r for r in runs if r.get("outcome") == "unresolved"]
    if unresolved:
        lines += ["", "## Drives that ran out of time still closing", ""]
        lines += [f"- {r['name']} ({r['mode']}): {r.get('note')}" for r in unresolved]
    lines += ["", "Timelines: `timelines/<scenario>__<mode>.csv`; every record: `summary.json`.", ""]
    return "\n".join(lines)


# --- plots -------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Fixed metadata: no creation date or version stamped into PNGs.
    plt.rcParams["svg.hashsalt"] = "tiny_node"
    return plt


def select_plots(runs: Sequence[Mapping[str, Any]], plots: str) -> list[Mapping[str, Any]]:
    """Runs to plot: ``all``; ``none``; ``auto``: failed runs and the first run per protocol and mode."""
    if plots == "none":
        return []
    if plots == "all":
        return [r for r in runs if r.get("outcome") != "error"]
    chosen, protocols = [], set()
    for r in runs:
        if r.get("outcome") == "error":
            continue
        failed = not r.get("passed")
        proto = (str(r.get("protocol") or r.get("expect")), str(r["mode"]))
        if failed or proto not in protocols:
            chosen.append(r)
            protocols.add(proto)
    return chosen


def plot_run(out: Path, run: Mapping[str, Any]) -> str | None:
    """Plot one run's timeline into ``plots/``; its key, or None without a timeline."""
    from tiny_node.sim.runner import run_key

    key = run_key(str(run["name"]), str(run["mode"]))
    timeline = out / "timelines" / f"{key}.csv"
    if not timeline.is_file():
        return None
    plot_timeline(timeline, out / "plots" / f"{key}.png",
                  title=f"{run['name']} — {run['mode']}: {run.get('outcome')}", summary=run)
    return key


def _plot_runs(out: Path, runs: Sequence[Mapping[str, Any]], plots: str, mapper: Mapper) -> list[str]:
    """Draw the selected runs' plots; the keys drawn. ``plots/`` is left holding those alone."""
    selected = select_plots(runs, plots)
    plotted: list[str] = []
    if selected:
        (out / "plots").mkdir(exist_ok=True)
        plotted = [k for k in mapper(functools.partial(plot_run, out), selected) if k is not None]
    _remove_other_plots(out / "plots", plotted)
    return plotted


def _remove_other_plots(folder: Path, keep: Iterable[str]) -> None:
    """Remove the run plots in ``folder`` not named in ``keep``, then the folder if that empties it.

    Why: a suite re-run into its folder with fewer plots (``--plots none``, runs that now pass, a
    stored run's timeline gone) left the earlier suite's PNGs beside a report that did not link
    them, and the command named the folder as this run's plots.  Only files named as
    :func:`plot_run` names them (``<run key>.png``) are removed: anything else put there stays.
    """
    from tiny_node.sim.runner import MODES, run_key

    if not folder.is_dir():
        return
    kept = set(keep)
    for png in folder.glob("*.png"):
        name, sep, mode = png.stem.rpartition("__")
        if sep and mode in MODES and run_key(name, mode) == png.stem and png.stem not in kept:
            png.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: the kept plots, or files of someone else's
        folder.rmdir()


def _col(rows: list[dict[str, str]], name: str) -> list[float]:
    return [float(v) if (v := r[name]) not in ("",) else math.nan for r in rows]


def plot_timeline(csv_path: Path, png_path: Path, *, title: str = "",
                  summary: Mapping[str, Any] | None = None) -> None:
    """Speed, distance, TTC and the decision (coloured by source) over time, one PNG."""
    plt = _pyplot()
    with csv_path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    t = _col(rows, "t_s")
    fig, axes = plt.subplots(4, 1, figsize=(8, 7.5), sharex=True,
                             gridspec_kw={"height_ratios": [2, 2, 2, 1.2]})
    ax = axes[0]
    ax.plot(t, _col(rows, "ego_speed_kmh"), color="#1f4e9c")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("ego speed\nkm/h")
    ax = axes[1]
    dist = [d if math.isfinite(d) else math.nan for d in _col(rows, "distance_m")]
    ax.plot(t, dist, color="#444444")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("in-path\ndistance m")
    ax = axes[2]
    ttc = [x if math.isfinite(x) else math.nan for x in _col(rows, "ttc_s")]
    ax.plot(t, ttc, color="#7a3b9c")
    ax.set_ylim(0, 6)
    ax.set_ylabel("TTC s")
    ax = axes[3]
    colours = {"model": "#2e9d41", "rules": "#1f4e9c", "fallback": "#f08c2e"}
    for src, colour in colours.items():
        xs = [ti for ti, r in zip(t, rows, strict=True) if r["source"] == src]
        ys = [1.0 if r["decision"] == "brake" else 0.0 for r in rows if r["source"] == src]
        if xs:
            ax.scatter(xs, ys, s=6, color=colour, label=src)
    req = [float(r["brake_request"]) for r in rows]
    ax.step(t, req, where="post", color="#999999", lw=0.8, label="request at vehicle")
    ax.set_yticks([0, 1], ["no brake", "brake"])
    ax.set_ylim(-0.3, 1.3)
    ax.legend(loc="center left", fontsize=7, ncol=4)
    ax.set_xlabel("sim time s")
    if summary is not None:
        fb = summary.get("first_brake_t_s")
        if fb is not None:
            for a in axes:
                a.axvline(float(fb), color="#d7302a", lw=0.8, ls="--")
        ct = summary.get("collision_t_s")
        if ct is not None and summary.get("collided"):
            for a in axes:
                a.axvline(float(ct), color="black", lw=1.2)
    for a in axes:
        a.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _replace(png_path, lambda tmp: fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None}))
    plt.close(fig)


_SPEED_TOKEN = re.compile(r"(?:^|[-_ @])(\d+(?:\.\d+)?)\s*(?:kmh|kph|km/h)(?=$|[-_ ])", re.IGNORECASE)


def family(run: Mapping[str, Any]) -> str:
    """Matrix row of a run: its name without the speed (``CCRs_30kmh_o50`` -> ``CCRs_o50``)."""
    name = str(run["name"])
    stripped = _SPEED_TOKEN.sub("", name).strip("-_ ")
    if stripped == name:  # a bare number equal to the speed, e.g. ``ccrs-30-50``
        speed = f"{float(run.get('ego_speed_kmh') or 0):g}"
        parts = re.split(r"([-_])", name)
        for i, p in enumerate(parts):
            if p == speed:
                parts[i] = ""
                break
        stripped = re.sub(r"[-_]{2,}", lambda m: m.group(0)[0], "".join(parts)).strip("-_ ")
    return stripped or name


def write_score_matrix(runs: Sequence[Mapping[str, Any]], path: Path) -> bool:
    """Euro NCAP-style grid: rows scenario families, columns speeds, one panel per mode; False: none scored.

    With no scored run an earlier suite's matrix at ``path`` is removed: it sat beside a report
    without it (a benign-only suite after a CCRs one), as if it were this suite's.
    """
    scored = [r for r in runs if r.get("band") is not None]
    if not scored:
        path.unlink(missing_ok=True)
        return False
    plt = _pyplot()
    modes = sorted({str(r["mode"]) for r in scored}, key=_mode_order)
    rows = sorted({family(r) for r in scored})
    speeds = sorted({float(r["ego_speed_kmh"]) for r in scored})
    cell = {(str(r["mode"]), family(r), float(r["ego_speed_kmh"])): r for r in scored}
    width = 2.0 + len(speeds) * 0.55
    fig, axes = plt.subplots(1, len(modes), figsize=(width * len(modes), 1.2 + 0.3 * len(rows)),
                             squeeze=False)
    tot = totals(runs)  # the title's figures are the report's (a crashed scored run counts, the gate applies)
    for ax, mode in zip(axes[0], modes, strict=True):
        for i, fam in enumerate(rows):
            for j, v in enumerate(speeds):
                r = cell.get((mode, fam, v))
                if r is None:
                    continue
                band = str(r["band"])
                ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor=BAND_COLOURS.get(band, "#cccccc"),
                                           edgecolor="white", lw=1.5))
                rel = r.get("relative_impact_speed_kmh") if r.get("collided") else 0.0
                ax.text(j + 0.5, i + 0.5, f"{float(rel or 0):.0f}", ha="center", va="center", fontsize=6,
                        color="white" if band in ("red", "brown", "green") else "black")
        ax.set_xlim(0, len(speeds))
        ax.set_ylim(len(rows), 0)
        ax.set_xticks([j + 0.5 for j in range(len(speeds))], [f"{v:g}" for v in speeds], fontsize=7)
        ax.set_yticks([i + 0.5 for i in range(len(rows))], rows, fontsize=7)
        ax.set_xlabel("ego speed km/h (cell: relative impact km/h)", fontsize=7)
        ax.set_title(panel_title(mode, tot[mode]), fontsize=9)
        ax.tick_params(length=0)
        for s in ax.spines.values():
            s.set_visible(False)
    fig.tight_layout()
    _replace(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None}))
    plt.close(fig)
    return True
