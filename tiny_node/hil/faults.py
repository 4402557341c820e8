"""Fault injection: each fault says what it does, what the node must do, and checks it.

A fault is active in a window of run time.  While active it may rewrite, hold back or drop
the messages the harness publishes (camera frames, range, odometry), or act on the node from
outside (signals to the model worker, the test-hook parameter, CPU and memory load).  After
the run, :meth:`Fault.check` asserts the expected behaviour from what the harness recorded:
the decisions (matched to frames by stamp) and ``/diagnostics``.

Common to every fault (the issue's "expected for all"): every frame published in the window
and its recovery period gets exactly one decision by its deadline (the project's tolerance,
:mod:`tiny_node.hil.record`), the node never exits; the fault-specific part adds the reason,
the source / model state, the diagnostic level and the recovery.  The table of expectations
is in docs/HIL.md; keep it in step with the ``expected`` texts here.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from tiny_node.decision import NOT_ASKED
from tiny_node.hil.record import (
    ERROR,
    OK,
    REF_CAMERA_PERIOD_S,
    WARN,
    CheckResult,
    FrameResult,
    RunRecord,
    Window,
    first_time,
    timing_failures,
)
from tiny_node.sensors import RESEND_STEP, UNSTAMPED_RUN

#: Frames due this close to a sensor or model fault's end are not judged by its "during"
#: checks: a frame and the (already unfaulted) reading or parameter that follows it can go
#: out in the same loop turn and reach the node in either order.
EDGE_S = 0.1
#: Transport and scheduling allowance for a decision without a frame to reach the harness (s).
TRANSPORT_S = 0.1
#: A stuck range is only detected while the ego moves (faster than the node's
#: ``range_stuck_min_speed_mps``): judged on frames this much faster, for margin.
STUCK_JUDGED_MARGIN_MPS = 0.5
#: Off-grid offset added to shifted stamps, so a shifted frame never reuses the stamp of
#: another frame (frames are 1/30 s apart on an integer-ns grid).
STAMP_SALT_NS = 123_457


@dataclass
class OutFrame:
    """A camera frame on its way out: an image to encode, or a hand-made message."""

    stamp_ns: int
    t: float
    image: np.ndarray | None
    raw: Any = None  # sensor_msgs Image / CompressedImage, published as is
    note: str = ""
    faults: list[str] = field(default_factory=list)


class Context(Protocol):
    """What a fault may use of the harness while it runs."""

    has_model: bool
    transport: str  # raw | compressed
    sim_time: bool
    attach: bool  # the node was already running (--attach): its model and pid are its own
    node_pid: int | None  # the node's pid (None: attached without --node-pid)

    def now(self) -> float:
        """Run time (s)."""
        ...

    def worker_pid(self, exclude: set[int] | None = None) -> int | None:
        """Pid of the model worker (None when unknown: attach mode, no model)."""
        ...

    def set_param(self, name: str, value: float, done: Callable[[str | None], None] | None = None) -> None:
        """Set a node parameter over its service without blocking the stream.

        ``done`` is called (from the harness's DDS thread) with None on success, else why not.
        """
        ...

    def shift_stamps(self, delta_ns: int) -> None:
        """Move the harness's stamp clock (and ``/clock`` with ``use_sim_time``)."""
        ...

    def spawn(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        """Start a helper process (load generator); the harness ends it at the latest at exit."""
        ...

    def note(self, text: str) -> None:
        """Record an event in the run's notes."""
        ...


class Fault:
    """Base: a no-op fault; subclasses override the hooks they need and :meth:`specific`."""

    key: ClassVar[str] = "fault"
    #: the fault holds for its node's whole run (not only its window): no episode there is clean
    run_wide: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False
    needs_pid: ClassVar[bool] = False
    # Instance-overridable defaults (a range fault's text depends on its kind):
    group: str = "main"  # node configuration the fault needs (see harness.GROUPS)
    transport: str = ""  # the camera transport the fault needs ('' = either)
    expected: str = ""
    known_gap: str = ""

    def __init__(self, duration_s: float = 1.0, recovery_s: float = 2.5) -> None:
        self.name = self.key
        self.duration_s = duration_s
        self.recovery_s = recovery_s
        self.start = math.nan
        self.info: dict[str, Any] = {}

    @property
    def window(self) -> Window:
        """Active window and recovery period in run time."""
        return Window(self.start, self.start + self.duration_s, self.recovery_s)

    def skip_reason(self, ctx: Context) -> str:
        """Why this fault cannot run against this node ('' when it can)."""
        if self.transport and ctx.transport != self.transport:
            # --transport forces every node run's transport: raw corruptions would stand in for these
            return (f"needs the {self.transport} camera transport; this node run's is {ctx.transport} "
                    "(--transport forces it on every run)")
        if self.needs_model and not ctx.has_model:
            # --model has no effect on an attached node: pointing at it would mislead
            return ("the attached node runs without a model (its model_bundle parameter is empty)"
                    if ctx.attach else "needs a model bundle (--model; this run is rules only)")
        if self.needs_pid and ctx.worker_pid() is None:
            if ctx.attach and ctx.node_pid is None:
                return "needs the model worker's pid: give the attached node's pid with --node-pid"
            if ctx.node_pid is not None:
                return f"no model worker found under the node's pid {ctx.node_pid}"
            return "needs the model worker's pid (start the node with the harness, or --attach --node-pid)"
        return ""

    # --- hooks (harness thread) ----------------------------------------------------------
    def begin(self, ctx: Context) -> None:
        """Called once when the window opens."""

    def end(self, ctx: Context) -> list[OutFrame]:
        """Called once when the window closes; frames held back are returned to be sent."""
        return []

    def on_camera(self, ctx: Context, frame: OutFrame) -> list[OutFrame]:
        """Rewrite / hold / drop a frame due while active (default: unchanged)."""
        return [frame]

    def on_sensor(self, ctx: Context, kind: str, stamp_ns: int, value: float) -> tuple[int, float] | None:
        """Rewrite or drop (None) a range / odom / imu message due while active."""
        return stamp_ns, value

    # --- check (after the run) -----------------------------------------------------------
    def check(self, rec: RunRecord) -> CheckResult:
        """The common expectations plus :meth:`specific`."""
        w = self.window
        res = CheckResult(self.name, rec.group, self.expected, True, known_gap=self.known_gap,
                          window=(w.start, w.end, w.until))
        window_frames = rec.between(w.start, w.until)
        fails, obs = timing_failures(window_frames, stalls=rec.stalls if rec.probe_trusted else None)
        res.failures += fails
        res.observed += obs
        try:
            self.specific(rec, w, res)
        except Exception as exc:  # a broken check must show as a failure, not vanish
            res.failures.append(f"check raised {type(exc).__name__}: {exc}")
        if not rec.node_alive:
            res.failures.append("the node process exited")
        res.passed = not res.failures
        return res

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """Fault-specific expectations (append to ``res.failures`` / ``res.observed``)."""


# --- shared check pieces -------------------------------------------------------------------
def _require(res: CheckResult, ok: bool, failure: str) -> None:
    if not ok:
        res.failures.append(failure)


def _share(results: list[FrameResult], pred: Callable[[FrameResult], bool]) -> float:
    decided = [r for r in results if r.decision is not None]
    return sum(pred(r) for r in decided) / len(decided) if decided else math.nan


def _asked(results: list[FrameResult]) -> list[FrameResult]:
    """The decided frames the model was asked about: not those it was not asked while the rules brake.

    Why: a window over a rule brake (the ego closing on its target) counted those frames as the
    model's misses, and a slowed model that decided none on time failed "late not reported".
    """
    return [r for r in results if r.decision is not None and r.values.get("model_state") not in NOT_ASKED]


def _moved_for(odom: Sequence[tuple[float, float]], start: float, need_s: float, min_speed: float) -> float:
    """When the odometry sent from ``start`` on has been above ``min_speed`` for ``need_s`` in all (inf: never).

    Why: the node times a stuck range while moving only; an ego standing after an episode's
    restart when the range froze made the check expect the fail-safe too soon.
    """
    moved, speed, at = 0.0, 0.0, start
    for t, v in odom:
        if t <= start:
            speed = v  # the reading in effect when the fault began
            continue
        if speed > min_speed:
            if moved + (t - at) >= need_s:
                return at + (need_s - moved)
            moved += t - at
        speed, at = v, t
    return at + (need_s - moved) if speed > min_speed else math.inf


def per_rate(n: int, rec: RunRecord) -> int:
    """``n`` frames at 30 Hz, as the same time holds them at the camera period the harness sent.

    Why: the checks' least counts ("at least 5 repeated frames in the window") were set for
    the simulated 30 Hz camera; a bag's 10 Hz camera sends a third as many in the same window
    while the node is right. Rounded up, and never more than ``n``: at 30 Hz (and faster) the
    counts are exactly the ones the results so far were judged with.
    """
    return max(1, math.ceil(n * min(1.0, REF_CAMERA_PERIOD_S / rec.camera_period_s) - 1e-6))


def _model_recovered(rec: RunRecord, w: Window, res: CheckResult, min_on_time: int = 10) -> None:
    """Model decisions resume: ``min_on_time`` on-time runs in the recovery period, one in its last second.

    ``min_on_time`` is at 30 Hz, scaled to the camera sent (:func:`per_rate`). A count, not a
    share: on the shared 2-vCPU VM the worker (normal scheduling) is sometimes kept off the
    CPU by other processes for a few frames, which costs model decisions (the fallback covers
    them) but is not a failure to recover.
    """
    if not rec.has_model:
        return
    min_on_time = per_rate(min_on_time, rec)
    after = rec.between(w.end, w.until)
    on_time = [r for r in after if r.values.get("model_state") == "on_time"]
    last = [r for r in on_time if r.frame.t >= w.until - 1.0]
    first = f", first at +{on_time[0].frame.t - w.end:.2f} s" if on_time else ""
    res.observed.append(f"model on time for {len(on_time)}/{len(after)} frames of the recovery period{first}")
    _require(res, len(on_time) >= min_on_time and bool(last),
             f"model did not recover: {len(on_time)} on-time model decisions in [{w.end:.1f}, {w.until:.1f}) s, "
             f"{len(last)} in its last second (need {min_on_time} and 1)")


def _rules_recovered(rec: RunRecord, w: Window, res: CheckResult, after_s: float = 0.3) -> None:
    """No fail-safe in the rule verdict once the input is good again."""
    after = [r for r in rec.between(w.end + after_s, w.until) if r.decision is not None]
    bad = [r for r in after if str(r.values.get("rules_reason", "")).startswith("fail-safe")]
    _require(res, not bad, f"{len(bad)} frames still fail-safe {after_s} s after the fault ended, "
             f"e.g. {bad[0].values.get('rules_reason') if bad else ''}")


def _diag_level(rec: RunRecord, res: CheckResult, name: str, level: int, *, t_from: float, t_to: float,
                what: str, lasts_s: float | None = None) -> float | None:
    """The first ``name`` diagnostic at ``level`` in the window, or a failure naming it.

    ``lasts_s``: how long the state lasts; one shorter than the node's diagnostics period
    (an attached node publishing at 1 Hz) may fall between two samples, so not seeing it is
    noted, not failed; the decisions' own levels are the evidence then.
    """
    t = first_time(rec.diag(name, t_from, t_to), rec, level)
    if lasts_s is not None:
        lasts_s = max(0.0, lasts_s)  # a state that never arose lasted 0 s, not a negative time
    if t is None and lasts_s is not None and lasts_s < rec.diag_period_s:
        res.not_judged.append(f"'{name}' level {level} not sampled: it lasted {lasts_s:.2f} s, diagnostics "
                              f"every {rec.diag_period_s} s ({what})")
    elif t is None:
        res.failures.append(f"no '{name}' diagnostic at level {level} in [{t_from:.2f}, {t_to:.2f}) s ({what})")
    else:
        res.observed.append(f"'{name}' level {level} at t={t:.2f} s ({t - t_from:+.2f} s)")
    return t


#: The node's diagnostics before a fault over which its usual level is read (at least three samples).
LEAD_IN_S = 2.0


def _diag_back(rec: RunRecord, res: CheckResult, name: str, w: Window, *, t_from: float, what: str) -> None:
    """The ``name`` diagnostic back to OK, or to a WARN it had before the fault for the same causes.

    Why not OK always: a node without an IMU has its sensors WARN throughout ("imu missing
    (optional)"), and a healthy one failed stale_odometry, "no 'sensors' diagnostic at level 0"
    (review 2026-12-08); a camera whose frames are partly unusable is WARN before a dropout too.
    Why the causes, over the lead-in: the one sample before the fault took a short WARN there as
    the level to come back to, failing a node back at OK, and passed one WARN for a new cause
    after the fault (review). Causes are the message's ``;``-separated parts, digits aside (a
    count of unusable frames changes).
    """
    lead = rec.diag(name, t_from=w.start - max(LEAD_IN_S, 3 * rec.diag_period_s), t_to=w.start)
    known = {part for d in lead if d.level == WARN for part in _causes(d.message)}
    after = rec.diag(name, t_from, w.until)
    back = next((d for d in after if d.level == OK or (d.level == WARN and _causes(d.message) <= known)), None)
    if back is not None:
        res.observed.append(f"'{name}' level {back.level} at t={rec.rt(back.at):.2f} s "
                            f"({rec.rt(back.at) - t_from:+.2f} s)")
        return
    before = [d.message for d in lead if d.level == WARN]
    said = f" or at level {WARN} as before the fault ({_distinct(before)})" if before else ""
    last = f"; last: level {after[-1].level}, {after[-1].message!r}" if after else "; none received"
    res.failures.append(f"no '{name}' diagnostic at level {OK}{said} in [{t_from:.2f}, {w.until:.2f}) s "
                        f"({what}{last})")


def _causes(message: str) -> frozenset[str]:
    """A diagnostic message's causes: its ``;``-separated parts, with digits left out."""
    return frozenset(re.sub(r"[0-9]+(\.[0-9]+)?", "#", p).strip() for p in message.split(";") if p.strip())


def _reasons(results: list[FrameResult], text: str) -> list[FrameResult]:
    """Frames whose own reason (not a held brake's) contains ``text``."""
    return [r for r in results if text in r.current_reason]


def _distinct(texts: Iterable[str], most: int = 3) -> str:
    """Up to ``most`` distinct texts, whole, and how many more: what a report's reader needs to see."""
    seen = sorted(set(texts))
    more = f" (+{len(seen) - most} more)" if len(seen) > most else ""
    return "; ".join(repr(t) for t in seen[:most]) + more


def _span(rec: RunRecord, w: Window, res: CheckResult, what: str, span: tuple[float, float]) -> list[FrameResult]:
    """The decided frames due in ``span`` [t0, t1) to judge ``what`` on; none (noted) when it is too short.

    Under three camera periods (the node's range_timeout_s, the range rate or the window leave
    no time) nothing is judged; otherwise at least 3 decided frames (at 30 Hz) are required.
    """
    t0, t1 = span
    if t1 - t0 < 3 * rec.camera_period_s:
        res.not_judged.append(f"the frames {what} (range_timeout_s {rec.range_timeout_s} s, range period "
                              f"{rec.range_period_s:.3f} s, fault window {w.end - w.start:.2f} s: "
                              f"{max(0.0, t1 - t0):.2f} s to judge)")
        return []
    got = [r for r in rec.between(t0, t1) if r.decision is not None]
    _require(res, len(got) >= per_rate(3, rec), f"only {len(got)} frames decided {what} "
             f"(need {per_rate(3, rec)}; range_timeout_s {rec.range_timeout_s} s)")
    return got


# --- camera --------------------------------------------------------------------------------
class CameraDropout(Fault):
    """No camera frames for ``duration_s`` (range, odometry and IMU go on)."""

    key = "camera_dropout"
    expected = ("after camera_timeout_s without a frame: decisions without a frame (values frame: none) "
                "at the camera period, reason 'camera: no frame', level ERROR, the rules deciding "
                "(camera_timeout_action 'rules'); camera diagnostic ERROR within camera_timeout_s "
                "(+ one diagnostics period); with the next frame they stop, that frame is decided, "
                "camera OK again")
    #: Longest gap allowed between two decisions without a frame at 30 Hz (scheduling and
    #: transport jitter included); at slower cameras :data:`GAP_PERIODS` camera periods.
    MAX_GAP_S = 0.1
    #: The node decides without a frame at the camera's measured period: a slower camera's gap
    #: may be this many of its periods (1.5 x 33 ms is under MAX_GAP_S: 30 Hz stays at 100 ms).
    GAP_PERIODS = 1.5

    def max_gap_s(self, rec: RunRecord) -> float:
        """The longest gap allowed between decisions without a frame, at the camera period sent."""
        return max(self.MAX_GAP_S, self.GAP_PERIODS * rec.camera_period_s)

    def __init__(self, duration_s: float = 1.5, recovery_s: float = 2.0) -> None:
        super().__init__(duration_s, recovery_s)

    def on_camera(self, ctx: Context, frame: OutFrame) -> list[OutFrame]:
        """Dropped."""
        return []

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """No frame sent in the window; decisions go on without one; camera ERROR in time; recovery."""
        inside = rec.between(w.start, w.end)
        _require(res, not inside, f"{len(inside)} frames were sent during the dropout")
        limit = w.start + rec.camera_timeout_s + rec.diag_period_s + 0.15
        t_err = _diag_level(rec, res, "camera", ERROR, t_from=w.start, t_to=w.end + 0.1, what="no frames")
        if t_err is not None:
            _require(res, t_err <= limit, f"camera ERROR only at {t_err:.2f} s, expected by {limit:.2f} s "
                     f"(camera_timeout_s {rec.camera_timeout_s} + diagnostics period {rec.diag_period_s})")
        self._frameless(rec, w, res)
        after = rec.between(w.end, w.until)
        _require(res, bool(after) and after[0].decision is not None, "first frame after the dropout not decided")
        _diag_back(rec, res, "camera", w, t_from=w.end + 0.05, what="frames again")

    def _frameless(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """Decisions without a frame: from camera_timeout_s after the last frame, steady, then none."""
        got = [d for d in rec.frameless if w.start <= rec.rt(d.received_at) < w.until]
        if rec.camera_timeout_action == "none":
            res.observed.append("camera_timeout_action 'none': no decisions expected without frames")
            _require(res, not got, f"{len(got)} decisions without a frame with camera_timeout_action 'none'")
            return
        before = [f for f in rec.frames if f.t < w.start]
        _require(res, bool(before) and len(got) >= 3, f"only {len(got)} decisions without a frame")
        if not before or len(got) < 3:
            return
        last_sent = rec.rt(before[-1].sent_at)
        times = [rec.rt(d.received_at) for d in got]
        first = times[0] - last_sent
        # steady until the frames are back: the gap to the first frame after the outage counts too,
        # or a node that went quiet halfway would pass on its first few decisions
        back = [rec.rt(f.sent_at) for f in rec.frames if f.t >= w.end]
        gaps = np.diff(times + back[:1])
        stray = {id(d) for d in rec.stray_frameless()}
        late = [d for d in got if id(d) in stray]
        res.observed.append(f"{len(got)} decisions without a frame, the first {first:.2f} s after the last "
                            f"frame, gaps max {np.max(gaps) * 1e3:.0f} ms, reasons "
                            f"{_distinct(str(d.values.get('reason', '')) for d in got)}")
        lo, hi = rec.camera_timeout_s - 0.02, rec.camera_timeout_s + TRANSPORT_S
        _require(res, lo <= first <= hi, f"first decision without a frame {first:.2f} s after the last frame, "
                 f"expected camera_timeout_s {rec.camera_timeout_s} (+{TRANSPORT_S} s)")
        max_gap = self.max_gap_s(rec)
        _require(res, float(np.max(gaps)) <= max_gap, f"a {np.max(gaps) * 1e3:.0f} ms gap between decisions "
                 f"without a frame (max {max_gap * 1e3:.0f} ms with the camera sent every "
                 f"{rec.camera_period_s * 1e3:.0f} ms: {self.GAP_PERIODS} periods, at least "
                 f"{self.MAX_GAP_S * 1e3:.0f} ms)")
        bad_reason = [d for d in got if "camera: no frame" not in str(d.values.get("reason", ""))]
        _require(res, not bad_reason, f"{len(bad_reason)} without 'camera: no frame' in the reason")
        bad_level = [d for d in got if int(d.values.get("level", 0)) != ERROR]
        _require(res, not bad_level, f"{len(bad_level)} decisions without a frame not at level ERROR")
        if rec.camera_timeout_action == "rules":  # the rule path: "rules", "fallback" beside a model,
            # or a brake held from before the outage (its source is the held one's)
            bad_source = [d for d in got if d.values.get("source") not in ("rules", "fallback")
                          and str(d.values.get("hold")) != "true"]
            _require(res, not bad_source, f"{len(bad_source)} decisions without a frame not by the rules")
        _require(res, not late, f"{len(late)} decisions without a frame after frames were back")


class FrozenCamera(Fault):
    """The camera repeats its last frame and stamp (a frozen driver)."""

    key = "frozen_camera"
    expected = ("every repeated frame decided, reason 'frozen camera', model not used "
                "(fallback, model_state unavailable); model decisions resume on fresh stamps")

    def __init__(self, duration_s: float = 1.0, recovery_s: float = 2.0) -> None:
        super().__init__(duration_s, recovery_s)
        self._frozen: OutFrame | None = None

    def on_camera(self, ctx: Context, frame: OutFrame) -> list[OutFrame]:
        """Replace the frame by the first one of the window (same stamp, same image)."""
        if self._frozen is None:
            self._frozen = frame
            return [frame]
        return [OutFrame(self._frozen.stamp_ns, frame.t, self._frozen.image, note="frozen (repeated stamp)")]

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """Repeats flagged, model not used; recovery."""
        repeats = [r for r in rec.between(w.start, w.end) if r.frame.note.startswith("frozen")]
        _require(res, len(repeats) >= per_rate(5, rec), f"only {len(repeats)} repeated frames sent "
                 f"(need {per_rate(5, rec)})")
        flagged = _reasons(repeats, "frozen camera")
        res.observed.append(f"{len(flagged)}/{len(repeats)} repeats with reason 'frozen camera'")
        _require(res, len(flagged) == len(repeats), "a repeated frame without 'frozen camera' in its reason")
        used = [r for r in repeats if r.values.get("model_state") == "on_time"]
        _require(res, not used, f"the model was used on {len(used)} repeated frames")
        _model_recovered(rec, w, res)


class CorruptFrames(Fault):
    """Malformed camera messages, one kind per frame, cycling.

    Raw transport: wrong step, truncated data, unknown encoding, zero size.  Compressed
    transport: garbage JPEG bytes, unknown format, empty data.
    """

    key = "corrupt_frames"
    expected = ("each frame decided by the rules (fallback, model not run) with the reason "
                "naming the field (step / truncated / encoding / size / could not be decoded); "
                "good frames after it decided by the model")
    #: An invented encoding name, which no version of the node will read ('yuv422' was used until
    #: the node learnt it: the "corrupt" frame then decoded and the model ran on it).
    UNKNOWN_ENCODING: ClassVar[str] = "not_an_encoding"
    RAW: ClassVar[dict[str, str]] = {"wrong step": "step", "truncated": "truncated",
                                     "unknown encoding": f"'{UNKNOWN_ENCODING}' not supported",
                                     "zero size": "size 0x0"}
    COMPRESSED: ClassVar[dict[str, str]] = {"garbage jpeg": "could not be decoded",
                                            "unknown format": "'webp' not supported",
                                            "empty": "no data"}

    def __init__(self, duration_s: float = 1.0, recovery_s: float = 2.0) -> None:
        super().__init__(duration_s, recovery_s)
        self._n = 0
        self._rng = np.random.default_rng(7)

    def on_camera(self, ctx: Context, frame: OutFrame) -> list[OutFrame]:
        """Swap the frame for a corrupt message of the next kind."""
        import array

        from sensor_msgs.msg import CompressedImage, Image

        img = frame.image if frame.image is not None else np.zeros((48, 64, 3), np.uint8)
        h, w = img.shape[:2]
        good = img.tobytes()
        msg: Any
        if ctx.transport == "compressed":
            kind = list(self.COMPRESSED)[self._n % len(self.COMPRESSED)]
            data = {"garbage jpeg": self._rng.integers(0, 256, 4000, dtype=np.uint8).tobytes(),
                    "unknown format": b"RIFF....WEBPVP8 ", "empty": b""}[kind]
            fmt = "webp" if kind == "unknown format" else "jpeg"
            msg = CompressedImage(format=fmt, data=array.array("B", data))
        else:
            kind = list(self.RAW)[self._n % len(self.RAW)]
            fields = {"wrong step": (w, h, 10, "rgb8", good),
                      "truncated": (w, h, w * 3, "rgb8", good[: len(good) // 3]),
                      "unknown encoding": (w, h, w * 3, self.UNKNOWN_ENCODING, good),
                      "zero size": (0, 0, 0, "rgb8", b"")}[kind]
            msg = Image(width=fields[0], height=fields[1], step=fields[2], encoding=fields[3],
                        data=array.array("B", fields[4]))
        self._n += 1
        return [OutFrame(frame.stamp_ns, frame.t, None, raw=msg, note=f"corrupt: {kind}")]

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """Reason names the field; the model was not run on it."""
        table = self.COMPRESSED if rec.transport == "compressed" else self.RAW
        bad = [r for r in rec.between(w.start, w.end) if r.frame.note.startswith("corrupt")]
        _require(res, len(bad) >= len(table), f"only {len(bad)} corrupt frames sent")
        seen: set[str] = set()
        for r in bad:
            kind = r.frame.note.split(": ", 1)[1]
            want = table[kind]
            if r.decision is None:
                continue
            if want not in r.current_reason:
                res.failures.append(f"{kind}: reason {r.current_reason[:90]!r} does not name {want!r}")
            if r.values.get("model_state") == "on_time":
                res.failures.append(f"{kind}: the model was run on a corrupt frame")
            seen.add(kind)
        res.observed.append(f"{len(bad)} corrupt frames ({', '.join(sorted(seen))}), each with its reason")
        _model_recovered(rec, w, res)


class StampsOutOfOrder(Fault):
    """Pairs of frames swapped on the wire: frame n+1 published before frame n."""

    key = "stamps_out_of_order"
    expected = ("every frame decided; the late one of each pair has reason 'out-of-order frame' "
                "and the model is not run on it; no fault once order is restored")

    def __init__(self, duration_s: float = 1.0, recovery_s: float = 2.0) -> None:
        super().__init__(duration_s, recovery_s)
        self._held: OutFrame | None = None

    def on_camera(self, ctx: Context, frame: OutFrame) -> list[OutFrame]:
        """Hold one frame, send it after the next."""
        if self._held is None:
            self._held = frame
            return []
        held, self._held = self._held, None
        held.note = "out of order (sent after its successor)"
        return [frame, held]

    def end(self, ctx: Context) -> list[OutFrame]:
        """Release a frame still held (it is then late, so still out of order)."""
        held, self._held = self._held, None
        return [] if held is None else [held]

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """Swapped frames flagged; in-order frames not."""
        frames = rec.between(w.start, w.end + 0.1)
        swapped = [r for r in frames if r.frame.note.startswith("out of order")]
        _require(res, len(swapped) >= per_rate(5, rec), f"only {len(swapped)} swapped pairs "
                 f"(need {per_rate(5, rec)})")
        flagged = _reasons(swapped, "out-of-order")
        res.observed.append(f"{len(flagged)}/{len(swapped)} late frames flagged 'out-of-order'")
        _require(res, len(flagged) == len(swapped), "a late frame without 'out-of-order' in its reason")
        _require(res, not [r for r in swapped if r.values.get("model_state") == "on_time"],
                 "the model was run on an out-of-order frame")
        after = _reasons(rec.between(w.end + 0.1, w.until), "out-of-order")
        _require(res, not after, f"{len(after)} 'out-of-order' reasons after order was restored")
        _model_recovered(rec, w, res)


class FutureStamps(Fault):
    """Frames stamped ``ahead_s`` in the future of the node's clock."""

    key = "future_stamps"
    expected = ("every frame decided, reason 'in the future of the node clock', model not run; "
                "no out-of-order storm afterwards (the bad stamps are not remembered)")

    def __init__(self, duration_s: float = 0.7, recovery_s: float = 2.0, ahead_s: float = 2.0) -> None:
        super().__init__(duration_s, recovery_s)
        self.ahead_ns = int(ahead_s * 1e9) + STAMP_SALT_NS

    def on_camera(self, ctx: Context, frame: OutFrame) -> list[OutFrame]:
        """Shift the stamp forward."""
        frame.stamp_ns += self.ahead_ns
        frame.note = "future stamp"
        return [frame]

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """Flagged, model not run, no storm after."""
        fut = [r for r in rec.between(w.start, w.end) if r.frame.note == "future stamp"]
        _require(res, len(fut) >= per_rate(5, rec), f"only {len(fut)} future-stamped frames "
                 f"(need {per_rate(5, rec)})")
        flagged = _reasons(fut, "in the future")
        res.observed.append(f"{len(flagged)}/{len(fut)} flagged 'in the future'")
        _require(res, len(flagged) == len(fut), "a future-stamped frame without the reason")
        after = _reasons(rec.between(w.end, w.until), "camera stamp")
        _require(res, not after, f"{len(after)} stamp faults after the fault ended: "
                 f"{after[0].current_reason[:80] if after else ''}")
        _model_recovered(rec, w, res)


class ClockJump(Fault):
    """``/clock`` and every stamp jump back by ``back_s`` (a simulator or bag restarting)."""

    key = "clock_jump"
    group = "simtime"
    expected = ("with use_sim_time: no camera fault storm (no frozen / out-of-order / future "
                "reasons after the jump), every frame decided, clock_jumps counted in the camera "
                "diagnostic")

    def __init__(self, duration_s: float = 0.1, recovery_s: float = 2.5, back_s: float = 60.0) -> None:
        super().__init__(duration_s, recovery_s)
        self.back_ns = int(back_s * 1e9) + STAMP_SALT_NS

    def skip_reason(self, ctx: Context) -> str:
        """Needs the harness to own the node's clock."""
        return "" if ctx.sim_time else "needs use_sim_time (the harness publishes /clock)"

    def begin(self, ctx: Context) -> None:
        """Jump the stamp clock (and /clock) back."""
        ctx.shift_stamps(-self.back_ns)
        ctx.note(f"clock jumped back {self.back_ns / 1e9:.3f} s")

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """No stamp faults after the jump; clock_jumps counted."""
        after = rec.between(w.start, w.until)
        storm = _reasons(after, "camera stamp")
        _require(res, not storm, f"{len(storm)} camera stamp faults after the jump, e.g. "
                 f"{storm[0].current_reason[:80] if storm else ''}")
        jumps = [int(d.values.get("clock_jumps", "0")) for d in rec.diag("camera", w.start, math.inf)]
        before = [int(d.values.get("clock_jumps", "0")) for d in rec.diag("camera", -math.inf, w.start)]
        base = max(before, default=0)
        res.observed.append(f"clock_jumps {base} -> {max(jumps, default=base)}")
        _require(res, max(jumps, default=0) >= base + 1, "clock jump not counted in the camera diagnostic")
        _model_recovered(rec, w, res)


class BurstyDelivery(Fault):
    """Frames held back and released ``burst`` at a time (a congested link).

    With a model, a test-hook delay of ``model_delay_ms`` keeps it busy for part of a burst so
    the latest-frame-only feeding shows: a frame overtaken by a newer one while the model is
    busy is decided by the rules, never queued behind it.
    """

    key = "bursty_delivery"
    expected = ("every frame of every burst decided by its deadline (no queue behind the model); "
                "frames overtaken while the model is busy: fallback 'newer frame took its place'")

    def __init__(self, duration_s: float = 2.0, recovery_s: float = 2.5, burst: int = 5,
                 model_delay_ms: float = 15.0) -> None:
        super().__init__(duration_s, recovery_s)
        self.burst = burst
        self.model_delay_ms = model_delay_ms
        self._held: list[OutFrame] = []
        self._hook = False

    def begin(self, ctx: Context) -> None:
        """Slow the model a little so bursts find it busy."""
        if ctx.has_model and self.model_delay_ms > 0:
            self._hook = True
            ctx.set_param("test_hook_model_delay_ms", self.model_delay_ms, self._result("set"))

    def _result(self, key: str) -> Callable[[str | None], None]:
        def done(err: str | None) -> None:
            self.info[key] = err or "ok"
        return done

    def on_camera(self, ctx: Context, frame: OutFrame) -> list[OutFrame]:
        """Hold frames; release them all with every ``burst``-th."""
        frame.note = "burst"
        self._held.append(frame)
        if len(self._held) < self.burst:
            return []
        out, self._held = self._held, []
        return out

    def end(self, ctx: Context) -> list[OutFrame]:
        """Release the rest; the test hook back to 0."""
        if self._hook:
            ctx.set_param("test_hook_model_delay_ms", 0.0, self._result("reset"))
        out, self._held = self._held, []
        return out

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """Bursts happened; overtaken frames got the fallback with the reason."""
        burst = [r for r in rec.between(w.start, w.end) if r.frame.note == "burst"]
        _require(res, len(burst) >= 2 * self.burst, f"only {len(burst)} frames in bursts")
        overtaken = _reasons(burst, "newer frame took its place")
        model = [r for r in burst if r.values.get("model_state") == "on_time"]
        res.observed.append(f"{len(burst)} burst frames: {len(model)} by the model, "
                            f"{len(overtaken)} overtaken (fallback)")
        if rec.has_model and self._hook:
            _require(res, self.info.get("set") == "ok", f"test hook not set: {self.info.get('set')}")
            _require(res, self.info.get("reset") == "ok", f"test hook not reset: {self.info.get('reset')}")
            _require(res, bool(overtaken), "no frame was overtaken: latest-frame-only feeding not seen")
        _model_recovered(rec, w, res)


# --- range / odometry ----------------------------------------------------------------------
class RangeFault(Fault):
    """The range sensor reports ``kind``: nan, +inf, -inf, negative, stuck, unstamped or resent.

    stuck: the last value with fresh stamps; unstamped: stamp 0; resent: the window's first scan
    again, its stamp and value.
    """

    key = "range"
    KINDS: ClassVar[dict[str, str]] = {
        "nan": "the last valid reading used, under a warning ('sensor_warnings', decision level WARN), until "
               "range_timeout_s; then fail-safe brake, reason 'range: NaN reading', decision level ERROR, "
               "sensors diagnostic ERROR; no fail-safe once readings are valid again",
        "+inf": "REP-117 'no object in range': not a fault, rules say 'clear: nothing within max_range'",
        "-inf": "REP-117 'closer than min_range': rules brake, reason 'object closer than min_range'",
        "negative": "the last valid reading used, under a warning, until range_timeout_s; then fail-safe brake, "
                    "reason 'range: negative reading', sensors diagnostic ERROR; recovery",
        "stuck": "after range_stuck_s of identical readings while the ego moves: fail-safe brake, reason "
                 "'range: stuck', decision level ERROR, sensors diagnostic ERROR; no fail-safe once the "
                 "value changes",
        "unstamped": "header.stamp left at 0: from the fourth scan on timed by their receipt ('closing_from' "
                     "says 'timed by receipt', sensors diagnostic WARN 'header.stamp unset'), no fail-safe; "
                     "back on the stamps three scans after they return",
        "resent": "the window's first scan resent at the range rate, its stamp and value (a driver resending "
                  "its last scan after the sensor died; a NaN or negative reading, no scan, goes out as it is "
                  "and the first valid one after it is resent): after range_timeout_s from that scan fail-safe "
                  "brake, reason 'range: stale ... republished', decision level ERROR, sensors diagnostic "
                  "ERROR; no fail-safe once new scans come",
    }

    def __init__(self, kind: str = "nan", duration_s: float | None = None, recovery_s: float = 2.5) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"range fault kind must be one of {', '.join(self.KINDS)}, got {kind!r}")
        # A stuck value needs range_stuck_s (1 s by default) before it can be told from a steady gap;
        # NaN and negative readings range_timeout_s (0.5 s) before they are a fault, not one missed scan;
        # a resent scan as long before it is stale.
        default_s = {"stuck": 2.0, "nan": 1.5, "negative": 1.5, "unstamped": 1.5, "resent": 1.5}.get(kind, 0.8)
        super().__init__(duration_s if duration_s is not None else default_s, recovery_s)
        self.kind = kind
        self.name = f"range_{kind.replace('+', 'pos').replace('-', 'neg')}"
        self.expected = self.KINDS[kind]
        self._stuck: float | None = None

    def on_sensor(self, ctx: Context, kind: str, stamp_ns: int, value: float) -> tuple[int, float] | None:
        """Replace the range reading."""
        if kind != "range":
            return stamp_ns, value
        if self.kind == "stuck":
            if self._stuck is None and not math.isfinite(value):
                # a no-return (a missed scan, nothing in range) goes out as it is: frozen there, the
                # range reads as an empty road and nothing could be judged
                return stamp_ns, value
            if self._stuck is None:
                self._stuck = value
                self.info["frozen_m"] = value
                self.info["frozen_at"] = ctx.now()  # the node's stuck timer starts with this reading
            return stamp_ns, self._stuck
        if self.kind == "unstamped":
            # the node takes a reading as evidence of an unset stamp only when its range is new (a
            # repeated one is "a copy: no evidence": a clear road's +Inf, a standing ego's constant range)
            self.info["new"] = self.info.get("new", 0) + (value != self.info.get("last", math.nan))
            self.info["last"] = value
            self.info["readings"] = self.info.get("readings", 0) + 1
            return 0, value
        if self.kind == "resent":
            return self._resend(ctx, stamp_ns, value)
        return stamp_ns, {"nan": math.nan, "+inf": math.inf, "-inf": -math.inf, "negative": -3.0}[self.kind]

    def _resend(self, ctx: Context, stamp_ns: int, value: float) -> tuple[int, float]:
        """The first valid scan of the window, again and again (stamp and value).

        +Inf (a clear road) and -Inf are valid REP-117 scans and resent like any other: a clear
        road kept "fresh" by a resending driver is the case this fault is for. A NaN or negative
        reading is no scan (the node discards it, its last valid reading standing): resent, it
        would be the range_nan / range_negative fault again, so it goes out as it is and the first
        valid reading after it is resent, as "stuck" waits for a finite value.
        """
        if "resent_at" not in self.info:
            if math.isnan(value) or (math.isfinite(value) and value < 0.0):
                self.info["unsent_invalid"] = self.info.get("unsent_invalid", 0) + 1
                return stamp_ns, value
            # the node ages the scan from this first receipt: the check times the fault from here
            self.info.update(resent_at=ctx.now(), resent_ns=stamp_ns, resent_m=value, copies=0)
            return stamp_ns, value
        self.info["copies"] += 1
        return int(self.info["resent_ns"]), float(self.info["resent_m"])

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """Per kind, see :data:`KINDS`."""
        if self.kind in ("nan", "negative"):
            self._invalid_checks(rec, w, res)
            return
        if self.kind == "unstamped":
            self._unstamped_checks(rec, w, res)
            return
        if self.kind == "resent":
            self._resent_checks(rec, w, res)
            return
        inside = [r for r in rec.between(w.start + 0.12, w.end - EDGE_S) if r.decision is not None]
        _require(res, len(inside) >= per_rate(5, rec), f"only {len(inside)} frames decided during the fault "
                 f"(need {per_rate(5, rec)})")
        rr = [str(r.values.get("rules_reason", "")) for r in inside]
        if self.kind == "+inf":
            # a recorded sensor's max_range 0 or NaN is read as none: "clear: no object within range"
            ok = [x for x in rr if x.startswith(("clear: nothing within max_range", "clear: no object within range"))]
            res.observed.append(f"{len(ok)}/{len(inside)} 'clear: nothing within max_range'")
            _require(res, len(ok) == len(inside), f"+Inf not read as a clear road: {rr[:1]}")
        elif self.kind == "-inf":
            ok = [x for x in rr if "closer than min_range" in x]
            res.observed.append(f"{len(ok)}/{len(inside)} 'object closer than min_range'")
            _require(res, len(ok) == len(inside), f"-Inf not read as an object within min_range: {rr[:1]}")
            _require(res, all(r.values.get("decision") == "brake" for r in inside), "-Inf did not brake")
        else:
            self._stuck_checks(rec, w, res)

    def _invalid_checks(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """A warning while the last valid reading is younger than range_timeout_s, the fail-safe after.

        The last valid reading went out up to a range period before the window opened (and
        reached the node within TRANSPORT_S): frames sent before it can be range_timeout_s old
        are judged for the warning, frames sent once it surely is, for the fault.
        """
        text = "NaN reading" if self.kind == "nan" else "negative reading"
        # The span ends with the window: valid readings come back after it, and frames then are the
        # recovery's (a range_timeout_s longer than the window judged them as "under the warning").
        warned = _span(rec, w, res, "under the warning", (
            w.start + rec.range_period_s + TRANSPORT_S,
            min(w.start + rec.range_timeout_s - rec.range_period_s - TRANSPORT_S, w.end - EDGE_S)))
        warn_ok = [r for r in warned if text in str(r.values.get("sensor_warnings", ""))
                   and not str(r.values.get("rules_reason", "")).startswith("fail-safe")
                   and int(r.values.get("level", 0)) >= WARN]
        res.observed.append(f"{len(warn_ok)}/{len(warned)} last valid reading used under a '{text}' warning")
        missed = [(r.values.get("rules_reason"), r.values.get("sensor_warnings")) for r in warned if r not in warn_ok]
        _require(res, not missed, f"not every frame before range_timeout_s used the last valid reading under a "
                 f"'{text}' warning: {missed[:1]}")
        warned_s = min(rec.range_timeout_s, w.end - w.start)  # the warning ends with the window at the latest
        _diag_level(rec, res, "sensors", WARN, t_from=w.start, t_to=w.start + warned_s + TRANSPORT_S,
                    lasts_s=warned_s, what="invalid range readings, the last valid one used")
        self._timed_out(rec, w, res, w.start, (text,), what="range fault")

    def _timed_out(self, rec: RunRecord, w: Window, res: CheckResult, since: float, texts: tuple[str, ...], *,
                   what: str, from_what: str = "") -> None:
        """Fail-safe from range_timeout_s after ``since`` to the window's end; sensors ERROR; recovery.

        ``since``: when the node's range timer started (no later than it: the last valid reading
        went out then, or the scan now resent). Frames sent once it surely ran out (transport of
        that reading, and of the frame's decision) are judged: each fail-safe naming every one
        of ``texts``, braking, at level ERROR.
        """
        faulted = _span(rec, w, res, "after range_timeout_s",
                        (since + rec.range_timeout_s + 2 * TRANSPORT_S, w.end - EDGE_S))
        shown = " … ".join(texts)
        rr = [str(r.values.get("rules_reason", "")) for r in faulted]
        ok = [x for x in rr if x.startswith("fail-safe") and all(t in x for t in texts)]
        res.observed.append(f"{len(ok)}/{len(faulted)} fail-safe '{shown}' after range_timeout_s")
        _require(res, len(ok) == len(faulted), f"not every frame after range_timeout_s fail-safe with '{shown}': "
                 f"{[x for x in rr if x not in ok][:1]}")
        brakes = sum(r.values.get("decision") == "brake" for r in faulted)
        _require(res, brakes == len(faulted), f"{len(faulted) - brakes} frames not braking under fail-safe")
        lvl = [r for r in faulted if int(r.values.get("level", 0)) != ERROR]
        _require(res, not lvl, f"{len(lvl)} fail-safe decisions not at level ERROR")
        if w.end - since > rec.range_timeout_s:
            _diag_level(rec, res, "sensors", ERROR, t_from=w.start, t_to=w.end + rec.diag_period_s + 0.1,
                        lasts_s=w.end - since - rec.range_timeout_s, what=what)
        else:  # the readings were valid again before range_timeout_s: no fault state to see
            res.not_judged.append(f"'sensors' level {ERROR}: the window ({w.end - since:.2f} s{from_what}) closed "
                                  f"before range_timeout_s ({rec.range_timeout_s} s)")
        _rules_recovered(rec, w, res)

    def _resent_checks(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """Fresh until range_timeout_s after the resent scan went out, then fail-safe 'stale … republished'.

        The node ages a scan received again with its stamp from its first receipt: the fault is
        timed from the first scan of the window (sent as it was), which every later range message
        repeats.
        """
        if "resent_at" not in self.info:
            res.not_judged.append(f"the resent scan (no valid range reading in the window: "
                                  f"{self.info.get('unsent_invalid', 0)} NaN or negative, sent as they were)")
            return
        if rec.range_period_s > RESEND_STEP * rec.range_timeout_s:
            # the node cannot tell such a driver's repeated stamp from a new scan under a coarse one
            res.not_judged.append(f"the resent scan (range period {rec.range_period_s:.3f} s over {RESEND_STEP} x "
                                  f"range_timeout_s {rec.range_timeout_s} s: the node ages a repeated stamp only "
                                  "from a driver stamping its scans that often)")
            return
        since, value = float(self.info["resent_at"]), float(self.info["resent_m"])
        shown = f"{value:.2f} m" if math.isfinite(value) else f"{value:+}".replace("inf", "Inf")
        res.observed.append(f"the scan stamped {int(self.info['resent_ns']) * 1e-9:.3f} s ({shown}) resent "
                            f"{self.info['copies']} times, from {since - w.start:+.2f} s")
        # before range_timeout_s (its receipt, the frame's decision) the resent scan is no older than it
        early = [r for r in rec.between(w.start, since + rec.range_timeout_s - 2 * TRANSPORT_S)
                 if r.decision is not None and "range: stale" in str(r.values.get("rules_reason", ""))]
        _require(res, not early, f"{len(early)} frames 'range: stale' before range_timeout_s from the resent "
                 f"scan's first receipt: {_distinct(str(r.values.get('rules_reason')) for r in early)}")
        self._timed_out(rec, w, res, since, ("range: stale", "republished"), what="resent range scan",
                        from_what=" from the resent scan")

    def _unstamped_checks(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """Scans timed by their receipt from the fourth unstamped one on, a sensors WARN; stamps again after.

        Judged on the frames whose rule verdict has a closing speed (``closing_from``; a clear
        road has none) from three scans (and one period of receipt jitter) after the switch: none
        from a track on the stamps, enough from one timed by receipt (a new track, after an
        episode restart, has no rate for its first 0.1 s: the ego's speed).
        """
        settle = (UNSTAMPED_RUN + 1) * rec.range_period_s + TRANSPORT_S

        def closing(t0: float, t1: float) -> list[str]:
            return [str(r.values["closing_from"]) for r in rec.between(t0, t1)
                    if r.decision is not None and "closing_from" in r.values]

        inside, after = closing(w.start + settle, w.end - EDGE_S), closing(w.end + settle, w.until)
        timed = [x for x in inside if "timed by receipt" in x]
        stamped = [x for x in inside if x.startswith("range_rate") and "timed by receipt" not in x]
        _require(res, not stamped, f"unstamped scans timed by their stamps: {_distinct(stamped)}")
        if len(inside) < per_rate(5, rec):
            res.not_judged.append(f"receipt timing ({len(inside)} frames with a range to judge in the window)")
        else:
            res.observed.append(f"{len(timed)}/{len(inside)} closing speeds from a track timed by receipt")
            _require(res, len(timed) >= per_rate(5, rec), f"only {len(timed)} closing speeds from a track timed "
                     f"by receipt (need {per_rate(5, rec)}): {_distinct(inside)}")
        _require(res, not any("timed by receipt" in x for x in after),
                 f"still timed by receipt after the stamps returned: {_distinct(after)}")
        bad = [r for r in rec.between(w.start, w.until) if r.decision is not None
               and str(r.values.get("rules_reason", "")).startswith("fail-safe")]
        _require(res, not bad, f"{len(bad)} fail-safe decisions: {_distinct(r.values['rules_reason'] for r in bad)}")
        new, sent = int(self.info.get("new", 0)), int(self.info.get("readings", 0))
        if new <= UNSTAMPED_RUN:
            # Too few new ranges (a clear road's repeated +Inf, a standing ego's constant range): the
            # node counts a repeated range as a copy, no evidence, so no warning can come; not judged.
            res.not_judged.append(f"the 'header.stamp unset' warning ({new} of {sent} readings in the window "
                                  f"were new ranges; the node judges stamps after {UNSTAMPED_RUN + 1})")
            return
        if _diag_level(rec, res, "sensors", WARN, t_from=w.start, t_to=w.end + rec.diag_period_s + 0.1,
                       lasts_s=w.end - w.start - settle, what="unstamped range scans") is not None:
            said = [d.message for d in rec.diag("sensors", w.start, w.end + rec.diag_period_s + 0.1)
                    if "header.stamp unset" in d.message]
            _require(res, bool(said), "the sensors diagnostic never said 'header.stamp unset'")

    def _stuck_checks(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """Fail-safe on every frame from range_stuck_s into the fault while the ego moves."""
        if rec.range_stuck_s <= 0.0:
            res.known_gap = "range_stuck_s is 0 on this node: a stuck range is not detected"
            res.not_judged.append("stuck detection (range_stuck_s is 0)")
            return
        frozen = float(self.info.get("frozen_m", math.nan))
        if not math.isfinite(frozen):
            res.known_gap = ("no object in range while the fault lasted: a sensor stuck on 'no object' "
                             "reads like an empty road and is not detected by the range alone")
            res.not_judged.append("stuck detection (no finite range to freeze)")
            return
        # From the first frozen reading sent (up to a range period after the window opens), plus
        # range_stuck_s of moving (the node times a stuck value while the odometry is above
        # range_stuck_min_speed_mps only), the one more reading receipt jitter may cost (the node
        # times a stuck value between the receipts of the first and the latest reading; at the
        # period the harness sent, which a bag sets), and transport. Frames judged: moving by the
        # odometry the node had (not the simulated speed): after an episode restart its last
        # odometry is still the stopped ego's for a frame or two, and it rightly judges nothing.
        frozen_at = float(self.info.get("frozen_at", w.start))
        moved = _moved_for(rec.odom, frozen_at, rec.range_stuck_s, rec.range_stuck_min_speed_mps)
        since = moved + rec.range_period_s + TRANSPORT_S
        if since >= w.end - EDGE_S:
            res.not_judged.append(f"stuck detection (the odometry sent was above {rec.range_stuck_min_speed_mps} m/s "
                                  f"for less than range_stuck_s {rec.range_stuck_s} s while the range was frozen)")
            return
        stood = moved - (frozen_at + rec.range_stuck_s)  # how much later than range_stuck_s the ego's standing made it
        judged = [r for r in rec.between(since, w.end - EDGE_S) if r.decision is not None
                  and rec.odom_min(rec.rt(r.frame.sent_at) - TRANSPORT_S, rec.rt(r.frame.sent_at))
                  > rec.range_stuck_min_speed_mps + STUCK_JUDGED_MARGIN_MPS]
        sent = [v for t, v in rec.odom if since - TRANSPORT_S <= t < w.end - EDGE_S]
        if not judged and sent and max(sent) <= rec.range_stuck_min_speed_mps:
            # The ego never moved faster than the node's "moving" while the value was frozen (a
            # fail-safe before it released the brake at a crawl): the node rightly timed nothing.
            res.not_judged.append(f"stuck detection (the odometry sent stayed at or below "
                                  f"{rec.range_stuck_min_speed_mps} m/s, peak {max(sent):.2f} m/s, while the "
                                  "range was frozen)")
            return
        if len(judged) < per_rate(5, rec) and stood > rec.range_period_s:
            res.not_judged.append(f"a full count of frames after range_stuck_s: the ego stood {stood:.2f} s of the "
                                  f"window, {len(judged)} frames left to judge (need {per_rate(5, rec)})")
        else:
            _require(res, len(judged) >= per_rate(5, rec), f"only {len(judged)} frames to judge after range_stuck_s "
                     f"while moving (need {per_rate(5, rec)})")
        ok = [r for r in judged if str(r.values.get("rules_reason", "")).startswith("fail-safe")
              and "range: stuck" in str(r.values.get("rules_reason", ""))]
        res.observed.append(f"{len(ok)}/{len(judged)} fail-safe 'range: stuck' from range_stuck_s "
                            f"{rec.range_stuck_s} s on")
        _require(res, len(ok) == len(judged), "not every frame after range_stuck_s fail-safe 'range: stuck': "
                 f"{[r.values.get('rules_reason') for r in judged if r not in ok][:1]}")
        brakes = sum(r.values.get("decision") == "brake" for r in judged)
        _require(res, brakes == len(judged), f"{len(judged) - brakes} frames not braking under fail-safe")
        lvl = [r for r in judged if int(r.values.get("level", 0)) != ERROR]
        _require(res, not lvl, f"{len(lvl)} stuck-range decisions not at level ERROR")
        _diag_level(rec, res, "sensors", ERROR, t_from=w.start, t_to=w.end + rec.diag_period_s + 0.1,
                    lasts_s=w.end - moved, what="stuck range")
        _rules_recovered(rec, w, res)


class StaleOdometry(Fault):
    """No odometry for ``duration_s`` (range, IMU and camera go on)."""

    key = "stale_odometry"
    expected = ("after odom_timeout_s: fail-safe brake with reason 'odom: stale', sensors diagnostic "
                "ERROR; no fail-safe once odometry is back")

    def __init__(self, duration_s: float = 1.5, recovery_s: float = 2.5) -> None:
        super().__init__(duration_s, recovery_s)

    def on_sensor(self, ctx: Context, kind: str, stamp_ns: int, value: float) -> tuple[int, float] | None:
        """Drop odometry."""
        return None if kind == "odom" else (stamp_ns, value)

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """Fail-safe after the timeout (0.5 s default + a frame), ERROR, recovery."""
        late = [r for r in rec.between(w.start + rec.odom_timeout_s + 0.15, w.end - EDGE_S) if r.decision is not None]
        _require(res, len(late) >= per_rate(5, rec), f"only {len(late)} frames decided while odometry was stale "
                 f"(need {per_rate(5, rec)})")
        stale = [r for r in late if "odom: stale" in str(r.values.get("rules_reason", ""))]
        res.observed.append(f"{len(stale)}/{len(late)} fail-safe 'odom: stale' after the timeout")
        _require(res, len(stale) == len(late), "a frame without 'odom: stale' after the timeout")
        _require(res, all(r.values.get("decision") == "brake" for r in late), "fail-safe did not brake")
        _diag_level(rec, res, "sensors", ERROR, t_from=w.start, t_to=w.end + rec.diag_period_s + 0.1,
                    lasts_s=w.end - w.start - rec.odom_timeout_s, what="stale odometry")
        _rules_recovered(rec, w, res)
        _diag_back(rec, res, "sensors", w, t_from=w.end + 0.1, what="odometry back")


# --- model ---------------------------------------------------------------------------------
class _WorkerSignal(Fault):
    sig: ClassVar[int] = signal.SIGKILL
    needs_model = True
    needs_pid = True

    def begin(self, ctx: Context) -> None:
        """Signal the model worker."""
        pid = ctx.worker_pid()
        if pid is None:
            ctx.note(f"{self.name}: no worker pid")
            return
        self.info["pid"] = pid
        os.kill(pid, self.sig)
        ctx.note(f"{self.name}: sent {signal.Signals(self.sig).name} to worker {pid}")

    def end(self, ctx: Context) -> list[OutFrame]:
        """Never leave a stopped process behind (the node should have killed it by now)."""
        pid = self.info.get("pid")
        if self.sig == signal.SIGSTOP and pid is not None:
            try:
                os.kill(pid, signal.SIGCONT)
                ctx.note(f"{self.name}: worker {pid} still existed at the end; SIGCONT sent")
            except ProcessLookupError:
                pass
        return []

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """Fallback after the signal; model ERROR; restarted; model back."""
        _require(res, "pid" in self.info, "no worker pid to signal")
        frames = [r for r in rec.between(w.start, w.until) if r.decision is not None]
        fb = [r for r in frames if r.values.get("source") == "fallback"
              or r.values.get("model_state") in ("unavailable", "late")]
        res.observed.append(f"{len(fb)} fallback decisions after the signal")
        _require(res, bool(fb), "no fallback decision after the worker was signalled")
        restarts = [int(d.values.get("restarts", "0")) for d in rec.diag("model", w.start, w.until)]
        before = [int(d.values.get("restarts", "0")) for d in rec.diag("model", -math.inf, w.start)]
        res.observed.append(f"restarts {max(before, default=0)} -> {max(restarts, default=0)}")
        _require(res, max(restarts, default=0) > max(before, default=0), "the worker was not restarted")
        if rec.diag_period_s <= 0.5:
            _diag_level(rec, res, "model", ERROR, t_from=w.start, t_to=w.until, what="worker down")
        elif first_time(rec.diag("model", w.start, w.until), rec, ERROR) is None:
            # A node publishing diagnostics slower than the restart takes (attach mode, 1 Hz)
            # may never show the ERROR; the restart counter is the evidence then.
            res.not_judged.append(f"model ERROR not sampled (diagnostics every {rec.diag_period_s} s; "
                                  "the restart counter is the evidence)")
        _model_recovered(rec, w, res)


class WorkerKill(_WorkerSignal):
    """SIGKILL to the model worker (a crash, an OOM kill)."""

    key = "worker_sigkill"
    sig = signal.SIGKILL
    expected = ("fallback for every frame until the worker is back (never a missed decision), model "
                "diagnostic ERROR, worker restarted, model decisions resume")

    def __init__(self, duration_s: float = 0.5, recovery_s: float = 3.0) -> None:
        super().__init__(duration_s, recovery_s)


class WorkerStop(_WorkerSignal):
    """SIGSTOP to the model worker (a hang)."""

    key = "worker_sigstop"
    sig = signal.SIGSTOP
    expected = ("hang detected within model_hang_timeout_ms (the model diagnostic ERROR by the next "
                "diagnostics, 0.5 s allowed beyond), worker killed and restarted; fallback meanwhile, model "
                "decisions resume")

    def __init__(self, duration_s: float = 1.5, recovery_s: float = 3.0) -> None:
        super().__init__(duration_s, recovery_s)

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """The common worker checks, and the hang found in time: the restart counted by then."""
        super().specific(rec, w, res)
        # found = the model diagnostic's first ERROR (the worker killed, restarting after its backoff)
        found = first_time(rec.diag("model", w.start, w.until), rec, ERROR)
        by = w.start + rec.model_hang_timeout_ms * 1e-3 + rec.diag_period_s + 0.5
        if found is not None:
            res.observed.append(f"hang reported at +{found - w.start:.2f} s (hang timeout "
                                f"{rec.model_hang_timeout_ms:.0f} ms)")
            _require(res, found <= by, f"the hang was found {found - w.start:.2f} s after the signal, later than "
                     f"model_hang_timeout_ms {rec.model_hang_timeout_ms:.0f} ms + a diagnostics period + 0.5 s")


class SlowModel(Fault):
    """The model slowed through the node's test-hook parameter ``test_hook_model_delay_ms``."""

    key = "slow_model"
    needs_model = True
    expected = ("every frame decided on time by the fallback (model_state late, run cancelled); "
                "model decisions resume when the delay is removed")

    def __init__(self, duration_s: float = 1.5, recovery_s: float = 2.0, delay_ms: float = 200.0) -> None:
        super().__init__(duration_s, recovery_s)
        self.delay_ms = delay_ms

    def begin(self, ctx: Context) -> None:
        """Set the test hook."""
        ctx.set_param("test_hook_model_delay_ms", self.delay_ms, self._result("set"))

    def _result(self, key: str) -> Callable[[str | None], None]:
        def done(err: str | None) -> None:
            self.info[key] = err or "ok"
        return done

    def end(self, ctx: Context) -> list[OutFrame]:
        """Remove the delay."""
        ctx.set_param("test_hook_model_delay_ms", 0.0, self._result("reset"))
        return []

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """Late + fallback inside, on time; cancels; recovery."""
        _require(res, self.info.get("set") == "ok", f"test hook not set: {self.info.get('set')}")
        _require(res, self.info.get("reset") == "ok", f"test hook not reset: {self.info.get('reset')}")
        inside = [r for r in rec.between(w.start + 0.3, w.end - EDGE_S) if r.decision is not None]
        asked = _asked(inside)
        late = [r for r in asked if r.values.get("model_state") == "late"]
        used = [r for r in asked if r.values.get("model_state") == "on_time"]
        res.observed.append(f"{len(late)}/{len(asked)} frames the model was asked about model_state late "
                            f"({len(inside) - len(asked)} not asked: the rules braked), {len(used)} model on time")
        _require(res, not used and len(inside) > 0, f"{len(used)} frames decided by the slowed model on time")
        if asked:
            _require(res, len(late) >= len(asked) // 2, "model_state 'late' not reported")
        else:
            res.not_judged.append("model_state 'late' (the rules braked through the window: the model was not asked)")
        _model_recovered(rec, w, res)


class BundleCorrupt(Fault):
    """The node is started with a bundle whose ONNX file does not match its SHA-256."""

    key = "bundle_corrupt"
    group = "bundle"
    expected = ("rules only for the whole run (fallback, model_state unavailable), model diagnostic "
                "ERROR naming the checksum, every frame decided on time, the node runs on")

    def __init__(self, duration_s: float = 3.0, recovery_s: float = 0.0) -> None:
        super().__init__(duration_s, recovery_s)

    def skip_reason(self, ctx: Context) -> str:
        """Needs its own node run (the harness corrupts a copy of the bundle)."""
        return "" if ctx.has_model else "needs a model bundle to corrupt (--model)"

    #: the node runs with the corrupt bundle from start to end: no episode of its run is clean
    run_wide: ClassVar[bool] = True

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """Rules only for the whole run (judged after warm-up, not only in the window); ERROR with the checksum."""
        frames = [r for r in rec.results() if r.decision is not None and r.frame.t >= rec.warmup_s]
        states = {str(r.values.get("model_state")) for r in frames}
        res.observed.append(f"model states {sorted(states)}")
        # never the model's answer: unavailable, or not asked while the rules brake (skipped)
        _require(res, "unavailable" in states and states <= {"unavailable", "skipped"},
                 f"model states {sorted(states)}, expected only 'unavailable' (and 'skipped' while the rules brake)")
        errs = [d for d in rec.diag("model") if d.level == ERROR]
        _require(res, bool(errs), "no model diagnostic ERROR")
        if errs:
            text = (errs[-1].message + " " + " ".join(errs[-1].values.values())).lower()
            _require(res, "sha256" in text or "checksum" in text,
                     f"model ERROR does not name the checksum: {text[:120]}")


# --- system --------------------------------------------------------------------------------
def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot (``/proc/stat``)."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


class _Load(Fault):
    cmd: ClassVar[list[str]] = []
    workers: ClassVar[int] = 1  # busy CPUs the load makes
    min_model_share: ClassVar[float] = 0.0  # of the frames under load, on time by the model (with a model)

    def skip_reason(self, ctx: Context) -> str:
        """Needs stress-ng."""
        import shutil

        return "" if shutil.which("stress-ng") else "stress-ng not installed (apt-get install -y stress-ng)"

    def begin(self, ctx: Context) -> None:
        """Start the load, bounded by its own timeout too; note the CPUs' busy time from here."""
        cmd = [*self.cmd, "--timeout", f"{max(1, math.ceil(self.duration_s))}s", "--quiet"]
        self._jiffies = _cpu_jiffies()
        self._proc = ctx.spawn(cmd)
        ctx.note(f"{self.name}: {' '.join(cmd)} (pid {self._proc.pid})")

    def end(self, ctx: Context) -> list[OutFrame]:
        """Stop the load (SIGTERM to its process group; reaped by the harness, not waited for here).

        What the check needs to know the load was there: whether stress-ng had already exited
        (with its status: a bad option exits at once) and how busy the CPUs were meanwhile.
        """
        proc = getattr(self, "_proc", None)
        if proc is None:
            return []
        self.info["exit_status"] = proc.poll()  # None: still loading when the window closed
        busy0, total0 = self._jiffies
        busy1, total1 = _cpu_jiffies()
        self.info["cpu_busy"] = (busy1 - busy0) / max(1, total1 - total0)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it ended on its own timeout
                os.killpg(proc.pid, signal.SIGTERM)
        return []

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """The load was there (else the timing checks prove nothing), and the common timing checks held."""
        status, busy = self.info.get("exit_status"), self.info.get("cpu_busy")
        _require(res, status in (None, 0), f"the load did not run: {' '.join(self.cmd)} exited with {status}")
        # the load's workers keep that many of the machine's CPUs busy, less a margin for scheduling
        need = 0.7 * min(1.0, self.workers / (os.cpu_count() or 1))
        if busy is not None:
            res.observed.append(f"CPUs busy {busy:.0%} during the load (need {need:.0%})")
        _require(res, busy is not None and busy >= need, f"the CPUs were busy {busy} during the load, "
                 f"under {need:.0%}: the load did not run as meant")
        inside = _asked(rec.between(w.start, w.end))
        share = _share(inside, lambda r: r.values.get("model_state") == "on_time")
        res.observed.append(f"model on time under load: {share:.0%} of {len(inside)} frames it was asked about")
        if rec.has_model and self.min_model_share > 0.0 and not inside:
            res.not_judged.append("the model's share on time (the rules braked through the load: it was not asked)")
        elif rec.has_model and self.min_model_share > 0.0:
            _require(res, share >= self.min_model_share, f"model on time for {share:.0%} of the frames under load "
                     f"(need {self.min_model_share:.0%})")
        _model_recovered(rec, w, res)


class CpuLoad(_Load):
    """Both cores loaded: ``stress-ng --cpu 2``."""

    key = "cpu_load"
    cmd: ClassVar[list[str]] = ["stress-ng", "--cpu", "2"]
    workers: ClassVar[int] = 2
    min_model_share: ClassVar[float] = 0.25  # the node runs SCHED_FIFO: the model keeps deciding
    expected = ("every frame decided by its deadline within the documented jitter; model keeps deciding "
                "(on time for at least a quarter of the frames under load)")

    def __init__(self, duration_s: float = 3.0, recovery_s: float = 2.0) -> None:
        super().__init__(duration_s, recovery_s)


class MemoryPressure(_Load):
    """Memory pressure: ``stress-ng --vm 1 --vm-bytes 2G`` (bounded by its timeout)."""

    key = "memory_pressure"
    cmd: ClassVar[list[str]] = ["stress-ng", "--vm", "1", "--vm-bytes", "2G"]
    expected = "every frame decided by its deadline within the documented jitter; no worker restart"

    def __init__(self, duration_s: float = 3.0, recovery_s: float = 2.0) -> None:
        super().__init__(duration_s, recovery_s)

    def specific(self, rec: RunRecord, w: Window, res: CheckResult) -> None:
        """No restart caused by memory pressure."""
        super().specific(rec, w, res)
        during = [int(d.values.get("restarts", "0")) for d in rec.diag("model", w.start, w.until)]
        before = [int(d.values.get("restarts", "0")) for d in rec.diag("model", -math.inf, w.start)]
        if during and before:
            _require(res, max(during) == max(before), "the model worker restarted under memory pressure")


# --- registry ------------------------------------------------------------------------------
def _range(kind: str) -> Callable[[], Fault]:
    return lambda: RangeFault(kind)


#: Every fault by name, in the order they run; each call makes a fresh instance.
FAULTS: dict[str, Callable[[], Fault]] = {
    "camera_dropout": CameraDropout,
    "frozen_camera": FrozenCamera,
    "corrupt_frames": CorruptFrames,
    "stamps_out_of_order": StampsOutOfOrder,
    "future_stamps": FutureStamps,
    "bursty_delivery": BurstyDelivery,
    "range_nan": _range("nan"),
    "range_posinf": _range("+inf"),
    "range_neginf": _range("-inf"),
    "range_negative": _range("negative"),
    "range_stuck": _range("stuck"),
    "stale_odometry": StaleOdometry,
    "worker_sigkill": WorkerKill,
    "worker_sigstop": WorkerStop,
    "slow_model": SlowModel,
    "cpu_load": CpuLoad,
    "memory_pressure": MemoryPressure,
    "range_unstamped": _range("unstamped"),  # after the others of the main run: the faults before keep their times
    "range_resent": _range("resent"),  # last of the main run, for the same reason (added after range_unstamped)
    "clock_jump": ClockJump,
    "corrupt_frames_compressed": CorruptFrames,
    "bundle_corrupt": BundleCorrupt,
}


def make_faults(names: list[str]) -> list[Fault]:
    """Fresh fault instances by name (``all`` = every fault); unknown names are an error."""
    if names == ["all"] or not names:
        names = list(FAULTS)
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    out = []
    for n in names:
        f = FAULTS[n]()
        if n == "corrupt_frames_compressed":
            f.name = n
            f.group = "simtime"  # the compressed-transport node run
            f.transport = "compressed"
        out.append(f)
    return out


def schedule(faults: list[Fault], *, lead_in_s: float = 2.0, gap_s: float = 0.3) -> float:
    """Place faults one after another (each after the previous one's recovery); run length."""
    t = lead_in_s
    for f in faults:
        f.start = t
        t = f.window.until + gap_s
    return t
