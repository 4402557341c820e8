"""What a cycle produces: one auditable decision per camera frame."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

#: Name of the single status in every ``decision`` message (node, bags, tools).
DECISION_STATUS_NAME = "tiny_node: decision"
#: The ``frame`` value of a decision that answers no frame (published while the camera is out).
FRAME_NONE = "none (camera timeout)"


def diagnostic_prefix(namespace: str, name: str = "tiny_node") -> str:
    """A node's ``/diagnostics`` status name prefix: its full name without the leading ``/``.

    Why the namespace: ``/diagnostics`` is one topic for the robot; two nodes named alike in two
    namespaces (front and rear cameras) would otherwise overwrite each other's statuses.
    """
    return f"{namespace.strip('/')}/{name}".lstrip("/")


class Source(str, Enum):
    """Which path decided (see docs/ARCHITECTURE.md, arbitration table)."""

    MODEL = "model"  # the on-time model decided (the rules agreed or did not object)
    RULES = "rules"  # the rule path decided: it overrode the model, it braked first, or no model
    FALLBACK = "fallback"  # the rules alone, because the model was not on time / unavailable


class ModelState(str, Enum):
    """What happened to the model for this frame."""

    ON_TIME = "on_time"
    LATE = "late"  # submitted but no result by the deadline (or run failed)
    UNAVAILABLE = "unavailable"  # worker not ready (starting, crashed, hung, busy, bad bundle)
    DISABLED = "disabled"  # no model configured (rules-only)
    SKIPPED = "skipped"  # not asked: the rules brake (under 'either' the model cannot cancel it), or reversing


#: model states of a frame the model was not asked about: the rules brake (or reversing), or no model
NOT_ASKED = frozenset({ModelState.SKIPPED.value, ModelState.DISABLED.value})
#: The least share of the frames it was asked that a working model answers in time: below it the
#: node's model status is WARN for the period, and a HIL run fails (a model in time for 1 frame in
#: 30 read OK and passed; review 2026-12-07)
MODEL_ON_TIME_SHARE = 0.5


def model_asked(by_model_state: Mapping[str, int]) -> int:
    """How many frames of a ``by_model_state`` count the model was asked about (not skipped or disabled)."""
    return sum(int(n) for state, n in by_model_state.items() if state not in NOT_ASKED)


@dataclass(frozen=True)
class Verdict:
    """One path's opinion on a frame: brake or not, how sure, and why.

    ``p_brake``: the model's P(brake) before its threshold (NaN for the rules), so a recorded
    run shows how close each frame came to braking. ``conflict_s``: the earliest conflict of the
    model's tracks (``model.conflict``; inf for the rules, or none), and ``conflict_brake``
    whether it brakes whatever the threshold, so a recorded run shows when a bundle's conflict
    brake would fire.

    ``provisional_track``: for a rule brake on a closing speed only assumed (a new object, no
    range track yet: taken as stationary), the number of the track its reading started
    (``SensorSnapshot.track_id``). Such a brake is held only until that track refutes the
    assumption, not for ``brake_hold_s``: held 2 s, a car cutting in at the ego's speed 60 m
    ahead was a full brake from 130 to 70 km/h on one scan's assumption. ``refutes_track``: for
    a rule no-brake on a range track whose measured closing shows the object is not stationary
    (closing plus its noise below the ego's speed), that track's number. It lifts a provisional
    brake on the same track only: a track on another object (a car behind a child the radar
    missed in a scan) says nothing about the child, nor does a young track too noisy to tell.
    ``awaiting_inputs``: a fail-safe brake only because a sensor has not reported since the node was
    configured (its sensor state is kept over deactivate / activate). It brakes its frame but starts
    no ``brake_hold_s``: a frame that came a few ms before the first range and odometry held a brake
    2 s on a clear road; a sensor that never reports fails every frame anyway.
    """

    brake: bool
    confidence: float
    reason: str
    p_brake: float = math.nan
    conflict_s: float = math.inf
    conflict_brake: bool = False
    provisional_track: int | None = None
    #: how long at most the provisional brake may be held: what is left of ``range_rate_window_s``
    #: since the track's first scan (None: the whole window)
    provisional_left_s: float | None = None
    refutes_track: int | None = None
    awaiting_inputs: bool = False

    @property
    def provisional(self) -> bool:
        """A rule brake on an assumed closing (``provisional_track``)."""
        return self.provisional_track is not None


@dataclass(frozen=True)
class Decision:
    """The single output of a cycle, published exactly once by its deadline.

    ``stamp`` is the header stamp of the frame answered (nanoseconds, ROS time), so any
    consumer can match the decision to its input.  A ``no_frame`` decision is published while
    the camera is out (``camera_timeout_action``): it answers no frame, and its stamp is the
    last frame's stamp plus the time since, so the output stays a monotonic stream.
    """

    frame_id: int  # cycle sequence number (monotonic per node run)
    stamp_ns: int
    brake: bool
    source: Source
    model_state: ModelState
    confidence: float
    reason: str
    received_at: float  # clock time the frame was received (s)
    deadline_at: float  # clock time of the deadline (s)
    decided_at: float  # clock time the decision was taken (s)
    hold: bool = False  # True when the brake is held by hysteresis, not by this frame
    no_frame: bool = False  # decided without a camera frame (camera timeout)
    frame_fault: str = ""  # why the frame could not be used (bad image or stamp); "" when it could
    rules: Verdict | None = None
    model: Verdict | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float:
        """Frame receipt to decision, in milliseconds."""
        return (self.decided_at - self.received_at) * 1e3

    @property
    def deadline_ms(self) -> float:
        """Budget this frame had, receipt to deadline, in milliseconds."""
        return (self.deadline_at - self.received_at) * 1e3

    @property
    def label(self) -> str:
        """``brake`` or ``no_brake``: the decision as a word."""
        return "brake" if self.brake else "no_brake"


def decision_level(d: Decision) -> int:
    """REP-107 level: 0 OK; 1 WARN on a fallback, a held brake or a sensor warning; 2 ERROR else.

    ERROR: a fail-safe, or a decision without a frame.
    """
    if d.no_frame or (d.rules is not None and d.rules.reason.startswith("fail-safe")):
        return 2
    if d.source is Source.FALLBACK or d.hold or d.extra.get("sensor_warnings"):
        return 1
    return 0


def decision_values(d: Decision) -> dict[str, Any]:
    """The auditable content of a decision as flat key-values (the ``decision`` topic's values)."""
    values: dict[str, Any] = {
        "source": d.source.value,
        "model_state": d.model_state.value,
        "latency_ms": f"{d.latency_ms:.3f}",
        "deadline_ms": f"{d.deadline_ms:.3f}",
        "confidence": f"{d.confidence:.3f}",
        "reason": d.reason,
        "frame_id": d.frame_id,
        "hold": str(d.hold).lower(),
    }
    if d.no_frame:
        values["frame"] = FRAME_NONE
    if d.frame_fault:
        values["frame_fault"] = d.frame_fault
    if d.rules is not None:
        values["rules_decision"] = "brake" if d.rules.brake else "no_brake"
        values["rules_reason"] = d.rules.reason
        if d.rules.provisional_track is not None:  # a recorded run tells a lift from an expiry
            values["rules_provisional_track"] = d.rules.provisional_track
        if d.rules.refutes_track is not None:
            values["rules_refutes_track"] = d.rules.refutes_track
    if d.model is not None:
        values["model_decision"] = "brake" if d.model.brake else "no_brake"
        values["model_confidence"] = f"{d.model.confidence:.3f}"
        values["model_p_brake"] = f"{d.model.p_brake:.4f}"
        if math.isfinite(d.model.conflict_s):
            values["model_conflict_s"] = f"{d.model.conflict_s:.3f}"
            values["model_conflict_brake"] = str(d.model.conflict_brake).lower()
    values.update(d.extra)
    return values
