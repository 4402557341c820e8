"""What a replay hands back: per-frame decision records, the summary and the plot."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiny_node.decision import FRAME_NONE, Decision, decision_level

#: the roles whose first message ends a start-up, in the order they are named
SENSOR_ROLES = ("range", "odom", "imu")


@dataclass(frozen=True)
class DecisionRecord:
    """One decision as the replay saw it, from the core (lockstep) or from the node (real time)."""

    stamp_ns: int  # header stamp of the answered frame
    t: float  # log time of the decision, s from the replay origin
    brake: bool
    source: str
    model_state: str
    reason: str
    latency_ms: float
    deadline_ms: float
    hold: bool
    level: int
    no_frame: bool = False  # decided while the camera was out: answers no frame (its stamp is extrapolated)
    frame_fault: str = ""  # why the decider could not use the frame (image or stamp); "" when it could
    #: start-up: the sensor roles that had not yet delivered a first message when this decision's
    #: frame was judged (after the bag's start or a log-time gap); () in steady state
    startup: tuple[str, ...] = ()

    @classmethod
    def from_decision(cls, d: Decision, t: float, startup: tuple[str, ...] = ()) -> DecisionRecord:
        """From the core's decision."""
        return cls(d.stamp_ns, t, d.brake, d.source.value, d.model_state.value, d.reason,
                   d.latency_ms, d.deadline_ms, d.hold, decision_level(d), d.no_frame, d.frame_fault, startup)

    @classmethod
    def from_values(cls, v: dict[str, Any], t: float) -> DecisionRecord:
        """From the key-values of a ``decision`` message (``msgs.parse_decision``)."""
        return cls(int(v["stamp_ns"]), t, v.get("decision") == "brake", str(v.get("source", "")),
                   str(v.get("model_state", "")), str(v.get("reason", "")),
                   _num(v.get("latency_ms")), _num(v.get("deadline_ms")), v.get("hold") == "true",
                   int(v.get("level", 0)), v.get("frame") == FRAME_NONE, str(v.get("frame_fault", "")))


def _num(text: object) -> float:
    try:
        return float(str(text))
    except ValueError:
        return math.nan


@dataclass
class Series:
    """Inputs over time, for the summary and the plot (log time, s from the origin)."""

    range_t: list[float] = field(default_factory=list)
    range_m: list[float] = field(default_factory=list)
    speed_t: list[float] = field(default_factory=list)
    speed_mps: list[float] = field(default_factory=list)
    frames: list[tuple[float, int]] = field(default_factory=list)  # (t, stamp)
    #: log-time gaps over MAX_LOG_GAP_S (t before, t after): a pause, or a clock that jumped by decades
    gaps: list[tuple[float, float]] = field(default_factory=list)
    undecodable: Counter[str] = field(default_factory=Counter)
    undecodable_why: dict[str, str] = field(default_factory=dict)  # topic -> the first message's error
    #: lockstep: each start-up (the bag's, and one after each log-time gap): from_s, until_s (the
    #: message that completed the sensors, or the bound of the last one that stayed silent; None:
    #: the bag ended first), missing (roles at its start), silent (roles with no message by their bound),
    #: first_frame_s (its first camera frame, from which the bounds run; None: none came)
    startup_windows: list[dict[str, Any]] = field(default_factory=list)


def _pct(values: list[float], q: float) -> float | None:
    vals = sorted(v for v in values if math.isfinite(v))
    if not vals:
        return None
    k = min(len(vals) - 1, max(0, math.ceil(q / 100.0 * len(vals)) - 1))
    return round(vals[k], 3)


def startup_holds(records: list[DecisionRecord]) -> list[bool]:
    """Per record (in the order decided): whether it is only the brake hold of a start-up brake.

    A held decision (``hold``) holds the last brake decided before it; when that brake was a
    start-up fail-safe, the hold is start-up too, though its own frame had every sensor.
    """
    out = []
    held_startup = False
    for r in records:
        if r.brake and not r.hold:
            held_startup = bool(r.startup)
        out.append(r.hold and held_startup)
    return out


def _brake_entry(r: DecisionRecord | None) -> dict[str, Any] | None:
    return None if r is None else {"t_s": round(r.t, 6), "stamp_ns": r.stamp_ns, "source": r.source,
                                   "reason": r.reason}


def _first_brake(records: list[DecisionRecord]) -> DecisionRecord | None:
    return min((r for r in records if r.brake), key=lambda r: r.t, default=None)


def startup_summary(records: list[DecisionRecord], series: Series) -> dict[str, Any]:
    """``startup_failsafe`` of ``summary.json``: the decisions taken before every sensor had spoken.

    A recording starts mid-drive, and its first camera message often comes before the first
    range or odometry message: the core judges that frame fail-safe ("no reading received"),
    as the node would, and holds the brake ``brake_hold_s``. Those decisions stay as decided;
    they are counted here, apart, so that ``first_brake`` is the first brake of the drive.
    """
    holds = startup_holds(records)
    startup = [r for r in records if r.startup]
    missing = {role: n for role in SENSOR_ROLES if (n := sum(role in r.startup for r in startup))}
    return {
        "decisions": len(startup),
        "frames": sum(not r.no_frame for r in startup),
        "brakes": sum(r.brake for r in startup),
        "held_brakes": sum(holds),
        "first_brake": _brake_entry(_first_brake(startup)),
        "missing": missing,
        "windows": series.startup_windows or None,
    }


def startup_warning(part: dict[str, Any], first_brake: dict[str, Any] | None) -> str | None:
    """The warning for :func:`startup_summary`'s part, or None when no decision was start-up."""
    if not part["decisions"]:
        return None
    windows = part["windows"] or []
    when = ", ".join(f"{w['from_s']:.3f}-" + ("end" if w["until_s"] is None else f"{w['until_s']:.3f}") + " s"
                     for w in windows if w["decisions"])
    # each role with its own count: one frame without range and sixteen without odometry read as
    # sixteen without either
    roles = ", ".join(f"{role} ({n})" for role, n in part["missing"].items())
    held = f", held for {part['held_brakes']} more decision(s)" if part["held_brakes"] else ""
    first = "none" if first_brake is None else f"at {first_brake['t_s']:.3f} s"
    return (f"start-up: {part['frames']} frame(s) decided before {roles} had delivered a first message"
            + (f" (log time {when})" if when else "")
            + f", as the node would decide them: fail-safe, {part['brakes']} brake(s){held}; counted in "
            f"startup_failsafe, not in first_brake (the first brake after start-up: {first})")


#: the figures of a reason (an offset, a count), left out to group reasons of one kind
_FIGURES = re.compile(r"-?\d+(\.\d+)?")


def bad_frame_warning(topic: str, frames: int, bad: list[dict[str, Any]]) -> str | None:
    """One warning naming the camera topic when frames were unusable, with the most frequent reason.

    Why: a camera 2 s ahead of the bag's clock made every frame a bad one, decided by the rules
    alone, and the summary said so only per frame: a validation run could pass on rules alone.
    Reasons are grouped with their figures left out (each frame's stamp offset differs).
    """
    if not bad:
        return None
    shapes = [(_FIGURES.sub("#", b["reason"]), b["reason"]) for b in bad]
    kind, n = Counter(shape for shape, _ in shapes).most_common(1)[0]
    example = next(reason for shape, reason in shapes if shape == kind)
    return (f"{topic}: {len(bad)} of {frames} frame(s) unusable, decided without the model; the most frequent "
            f"({n}): {example}")


def unanswered(records: list[DecisionRecord], series: Series) -> list[tuple[float, int]]:
    """The frames (t, stamp) sent that got no decision, in order.

    Matched by stamp, per stamp: a frozen camera repeats stamps, and each repeat is a frame; of
    frames sharing one, those left over are taken to be the last.
    """
    left = Counter(r.stamp_ns for r in records if not r.no_frame)
    missing = []
    for t, stamp in series.frames:
        if left[stamp]:
            left[stamp] -= 1
        else:
            missing.append((t, stamp))
    return missing


def duplicates(records: list[DecisionRecord], series: Series) -> int:
    """Decisions answering a frame stamp more often than frames with it were sent."""
    sent = Counter(s for _, s in series.frames)
    return sum(max(0, n - sent[s]) for s, n in Counter(r.stamp_ns for r in records if not r.no_frame).items())


def undecided_warning(topic: str, records: list[DecisionRecord], series: Series) -> str | None:
    """One warning naming the camera topic when frames got no decision, or a frame more than one.

    Why: in real time a damaged camera message is dropped by the node's middleware (lockstep
    decides it as a bad frame), and a frame can be lost on its way: the one outcome the deadline
    guarantee exists to prevent was only a count in ``summary.json``.
    """
    missing, extra = unanswered(records, series), duplicates(records, series)
    sent = Counter(s for _, s in series.frames)
    notes = []
    if missing:
        bad = series.undecodable.get(topic, 0)
        t, stamp = missing[0]
        # matched by stamp: of frames sharing one (a frozen camera), which went without is not known
        since = next(f for f, s in series.frames if s == stamp)
        first = (f"at {t:.3f} s, stamp {stamp}" if sent[stamp] == 1 else
                 f"stamp {stamp}, which {sent[stamp]} frames carry from {since:.3f} s")
        notes.append(f"{len(missing)} of {len(series.frames)} frame(s) got no decision (the first {first})"
                     + (f", {bad} of them undecodable" if bad else ""))
    if extra:
        notes.append(f"{extra} decision(s) answer a frame already answered (duplicate_decisions)")
    return f"{topic}: {'; '.join(notes)}" if notes else None


def sensor_end_warnings(topics: dict[str, str], last_t: dict[str, float], frames_t: list[float],
                        bounds: dict[str, float]) -> list[str]:
    """One warning per sensor whose messages stop while frames go on past its timeout.

    Why: odometry recorded for the first half of a bag made every later frame a fail-safe
    brake, counted as steady-state decisions, and nothing named the topic that stopped.
    """
    out = []
    for role, t in last_t.items():
        after = [f for f in frames_t if f > t + bounds[role]]
        if after:
            out.append(f"{topics[role]}: no message after {t:.3f} s (log time), while {len(after)} frame(s) "
                       f"followed beyond its {role}_timeout_s ({bounds[role]:g} s), to {frames_t[-1]:.3f} s: "
                       "decided with it stale (fail-safe)")
    return out


def silent_sensor_warnings(windows: list[dict[str, Any]] | None, bounds: dict[str, float]) -> list[str]:
    """One warning per start-up window a sensor did not speak in within its bound (lockstep).

    Why: from the bound on its silence is a fault, and the fail-safes it causes are steady state
    (``first_brake``); the reader must know start-up ended that way, not by the sensor reporting.
    """
    out = []
    for w in windows or []:
        # the bounds run from the start-up's first camera frame, not its first message (a /rosout
        # logged a second before the camera said the fault began a second early)
        first = w.get("first_frame_s")
        begins = float(w["from_s"] if first is None else first)  # a bound runs out after a frame only
        for role in w.get("silent", []):
            out.append(f"{role}: no message within {role}_timeout_s ({bounds[role]:g} s) of the start-up's first "
                       f"camera frame at {begins:.3f} s: from {begins + bounds[role]:.3f} s on its absence is a "
                       "sensor fault, decided in steady state (its fail-safe brakes count in first_brake, not in "
                       "startup_failsafe)")
    return out


def summarize(records: list[DecisionRecord], series: Series, *, deadline_misses: int) -> dict[str, Any]:
    """The decision part of ``summary.json`` (counts, first brake, bad frames, misses, latency).

    ``first_brake`` is the first brake in steady state: start-up decisions and their brake hold
    (:func:`startup_summary`) are counted apart, in ``startup_failsafe``.
    """
    brakes = [r for r in records if r.brake]
    holds = startup_holds(records)
    first = _first_brake([r for r, held in zip(records, holds, strict=True) if not r.startup and not held])
    return {
        "frames": len(series.frames),
        "decisions": len(records),
        "brakes": len(brakes),
        "by_source": dict(sorted(Counter(r.source for r in records).items())),
        "by_model_state": dict(sorted(Counter(r.model_state for r in records).items())),
        "first_brake": _brake_entry(first),
        "startup_failsafe": startup_summary(records, series),
        # as the decider judged them (the core in lockstep, the node in real time): bad images
        # and bad stamps alike, each decided without the model
        "bad_frames": [{"t_s": round(r.t, 6), "stamp_ns": r.stamp_ns, "reason": r.frame_fault}
                       for r in sorted(records, key=lambda r: r.t) if r.frame_fault],
        "deadline_misses": deadline_misses,
        "frames_without_decision": len(unanswered(records, series)),
        "duplicate_decisions": duplicates(records, series),
        "camera_timeout_decisions": sum(r.no_frame for r in records),
        "latency_ms": {"p50": _pct([r.latency_ms for r in records], 50),
                       "p99": _pct([r.latency_ms for r in records], 99),
                       "max": _pct([r.latency_ms for r in records], 100)},
        "undecodable_messages": dict(sorted(series.undecodable.items())),
    }


_SOURCE_COLOURS = {"model": "tab:blue", "rules": "tab:orange", "fallback": "tab:red"}


def _played_time(gaps: list[tuple[float, float]]) -> Callable[[float], float]:
    """Log time to played time: each gap over MAX_LOG_GAP_S cut out.

    Why: a ``--use-sim-time`` recording logs at 0 until its first /clock, then at 1.75e9 s: on log
    time its plot was two vertical lines 55 years apart, joined by flat lines across the gap.
    """
    def played(t: float) -> float:  # a decision inside a gap (the cycles decided at it) at its start
        return t - sum(min(t, after) - before for before, after in gaps if before < t)
    return played


def _broken_at_gaps(ts: list[float], values: list[float],
                    gaps: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """``ts``, ``values`` with a NaN point at each gap, so a line is not drawn across it."""
    out_t: list[float] = []
    out_v: list[float] = []
    for i, (t, v) in enumerate(zip(ts, values, strict=True)):
        if i and any(ts[i - 1] < after <= t for _, after in gaps):
            out_t.append(ts[i - 1])
            out_v.append(math.nan)
        out_t.append(t)
        out_v.append(v)
    return out_t, out_v


def write_plot(path: Path, records: list[DecisionRecord], series: Series, title: str) -> None:
    """PNG: range, ego speed and the decision (coloured by source) over log time."""
    # The Figure API with the Agg canvas, not pyplot: no backend selection, no global state,
    # and half the import time (the plot is a fixed cost on every replay).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 7), layout="constrained")
    FigureCanvasAgg(fig)
    ax_r, ax_v, ax_d = fig.subplots(3, 1, sharex=True)
    x = _played_time(series.gaps)
    range_x, range_m = _broken_at_gaps(series.range_t, series.range_m, series.gaps)
    rng = [r if math.isfinite(r) else math.nan for r in range_m]
    ax_r.plot([x(t) for t in range_x], rng, ".-", ms=2, lw=0.8, color="tab:green")
    # REP-117 infinities as ticks on the axis edges (x in data, y in axes units).
    edge = ax_r.get_xaxis_transform()
    for value, y, label in ((math.inf, 0.97, "clear (+Inf)"), (-math.inf, 0.03, "closer than min (-Inf)")):
        ts = [x(t) for t, r in zip(series.range_t, series.range_m, strict=True) if r == value]
        if ts:
            ax_r.plot(ts, [y] * len(ts), "|", color="grey" if value > 0 else "red", transform=edge, label=label)
    if any(math.isinf(r) for r in series.range_m):
        ax_r.legend(loc="center right", fontsize=8)
    ax_r.set_ylabel("range (m)")
    speed_x, speed_v = _broken_at_gaps(series.speed_t, series.speed_mps, series.gaps)
    ax_v.plot([x(t) for t in speed_x], speed_v, lw=1.0, color="tab:purple")
    ax_v.set_ylabel("ego speed (m/s)")
    held = startup_holds(records)
    ordered = sorted(records, key=lambda r: r.t)
    # start-up (sensors not all in yet) and its brake hold: shaded, each run of them one span
    in_startup = {id(r) for r, h in zip(records, held, strict=True) if r.startup or h}
    span: list[float] = []
    for r in [*ordered, None]:
        if r is not None and id(r) in in_startup:
            span = [span[0] if span else x(r.t), x(r.t)]
        elif span:
            ax_d.axvspan(span[0], span[1], color="0.85", lw=0,
                         label="start-up fail-safe, hold" if not ax_d.patches else None)
            span = []
    step_t, step_b = _broken_at_gaps([r.t for r in ordered], [float(r.brake) for r in ordered], series.gaps)
    ax_d.step([x(t) for t in step_t], step_b, where="post", color="black", lw=0.8)
    for source, colour in _SOURCE_COLOURS.items():
        pts = [r for r in ordered if r.source == source]
        if pts:
            ax_d.scatter([x(r.t) for r in pts], [int(r.brake) for r in pts], s=8, color=colour, label=source)
    if bad := [x(r.t) for r in ordered if r.frame_fault]:
        ax_d.scatter(bad, [0.5] * len(bad), marker="x", color="magenta", label="bad frame")
    for before, after in series.gaps:  # where the cut-out gaps were
        for ax in (ax_r, ax_v, ax_d):
            ax.axvline(x(after), color="0.5", ls="--", lw=0.8)
        ax_d.annotate(f"gap {after - before:.4g} s", (x(after), 0.5), xycoords=ax_d.get_xaxis_transform(),
                      fontsize=7, rotation=90, va="center", ha="right", color="0.4")
    ax_d.set_yticks([0, 1], ["no_brake", "brake"])
    ax_d.set_ylabel("decision")
    ax_d.set_xlabel("log time (s)" if not series.gaps else "log time (s) played: the log-time gaps (dashed) cut out")
    ax_d.legend(loc="upper left", fontsize=8, ncols=4)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100)
