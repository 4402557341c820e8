"""What a replay hands back: per-frame decision records, the summary and the plot."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiny_node.decision import FRAME_NONE, Decision, decision_level


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

    @classmethod
    def from_decision(cls, d: Decision, t: float) -> DecisionRecord:
        """From the core's decision."""
        return cls(d.stamp_ns, t, d.brake, d.source.value, d.model_state.value, d.reason,
                   d.latency_ms, d.deadline_ms, d.hold, decision_level(d), d.no_frame, d.frame_fault)

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
    undecodable: Counter[str] = field(default_factory=Counter)
    undecodable_why: dict[str, str] = field(default_factory=dict)  # topic -> the first message's error


def _pct(values: list[float], q: float) -> float | None:
    vals = sorted(v for v in values if math.isfinite(v))
    if not vals:
        return None
    k = min(len(vals) - 1, max(0, math.ceil(q / 100.0 * len(vals)) - 1))
    return round(vals[k], 3)


def summarize(records: list[DecisionRecord], series: Series, *, deadline_misses: int) -> dict[str, Any]:
    """The decision part of ``summary.json`` (counts, first brake, bad frames, misses, latency)."""
    brakes = [r for r in records if r.brake]
    first = min(brakes, key=lambda r: r.t) if brakes else None
    # Per stamp, not per set: a frozen camera repeats stamps, and each repeat is a frame.
    sent = Counter(s for _, s in series.frames)
    got = Counter(r.stamp_ns for r in records if not r.no_frame)
    return {
        "frames": len(series.frames),
        "decisions": len(records),
        "brakes": len(brakes),
        "by_source": dict(sorted(Counter(r.source for r in records).items())),
        "by_model_state": dict(sorted(Counter(r.model_state for r in records).items())),
        "first_brake": None if first is None else {
            "t_s": round(first.t, 6), "stamp_ns": first.stamp_ns, "source": first.source,
            "reason": first.reason,
        },
        # as the decider judged them (the core in lockstep, the node in real time): bad images
        # and bad stamps alike, each decided without the model
        "bad_frames": [{"t_s": round(r.t, 6), "stamp_ns": r.stamp_ns, "reason": r.frame_fault}
                       for r in sorted(records, key=lambda r: r.t) if r.frame_fault],
        "deadline_misses": deadline_misses,
        "frames_without_decision": sum(max(0, n - got[s]) for s, n in sent.items()),
        "duplicate_decisions": sum(max(0, n - sent[s]) for s, n in got.items()),
        "camera_timeout_decisions": sum(r.no_frame for r in records),
        "latency_ms": {"p50": _pct([r.latency_ms for r in records], 50),
                       "p99": _pct([r.latency_ms for r in records], 99),
                       "max": _pct([r.latency_ms for r in records], 100)},
        "undecodable_messages": dict(sorted(series.undecodable.items())),
    }


_SOURCE_COLOURS = {"model": "tab:blue", "rules": "tab:orange", "fallback": "tab:red"}


def write_plot(path: Path, records: list[DecisionRecord], series: Series, title: str) -> None:
    """PNG: range, ego speed and the decision (coloured by source) over log time."""
    # The Figure API with the Agg canvas, not pyplot: no backend selection, no global state,
    # and half the import time (the plot is a fixed cost on every replay).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 7), layout="constrained")
    FigureCanvasAgg(fig)
    ax_r, ax_v, ax_d = fig.subplots(3, 1, sharex=True)
    rng = [r if math.isfinite(r) else math.nan for r in series.range_m]
    ax_r.plot(series.range_t, rng, ".-", ms=2, lw=0.8, color="tab:green")
    # REP-117 infinities as ticks on the axis edges (x in data, y in axes units).
    edge = ax_r.get_xaxis_transform()
    for value, y, label in ((math.inf, 0.97, "clear (+Inf)"), (-math.inf, 0.03, "closer than min (-Inf)")):
        ts = [t for t, r in zip(series.range_t, series.range_m, strict=True) if r == value]
        if ts:
            ax_r.plot(ts, [y] * len(ts), "|", color="grey" if value > 0 else "red", transform=edge, label=label)
    if any(math.isinf(r) for r in series.range_m):
        ax_r.legend(loc="center right", fontsize=8)
    ax_r.set_ylabel("range (m)")
    ax_v.plot(series.speed_t, series.speed_mps, lw=1.0, color="tab:purple")
    ax_v.set_ylabel("ego speed (m/s)")
    ordered = sorted(records, key=lambda r: r.t)
    ax_d.step([r.t for r in ordered], [int(r.brake) for r in ordered], where="post", color="black", lw=0.8)
    for source, colour in _SOURCE_COLOURS.items():
        pts = [r for r in ordered if r.source == source]
        if pts:
            ax_d.scatter([r.t for r in pts], [int(r.brake) for r in pts], s=8, color=colour, label=source)
    if bad := [r.t for r in ordered if r.frame_fault]:
        ax_d.scatter(bad, [0.5] * len(bad), marker="x", color="magenta", label="bad frame")
    ax_d.set_yticks([0, 1], ["no_brake", "brake"])
    ax_d.set_ylabel("decision")
    ax_d.set_xlabel("log time (s)")
    ax_d.legend(loc="upper left", fontsize=8, ncols=4)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100)
