"""The deadline watchdog: cycles, arbitration, hold, statistics.

Every camera frame opens a *cycle*.  The rule verdict is computed at once; the model is asked
only if it is idle (latest frame only, no queue).  A cycle closes exactly once:

* as soon as the model answers on time (arbitrated with the rules),
* at once when the model cannot take part (disabled, not ready, bad frame),
* at once when the rules brake: under ``either`` the model could only agree, under
  ``shadow`` it decides nothing, so it is not asked (``model_state: skipped``) and the brake
  does not wait for a model run,
* otherwise at ``deadline - publish_guard`` with the rule verdict (fallback); the model run
  is then cancelled and its result, should it still come, is discarded and counted.

When no frame has come for ``camera_timeout_s``, the watchdog goes on deciding without one at
the camera's measured period (``camera_timeout_action``: the rule verdict, or the fail-safe),
so a consumer never sits on a stale ``brake=false`` while the camera is out.

This class is pure state: no threads, no ROS, no wall clock.  The real-time loop
(:mod:`tiny_node.realtime`), the lockstep simulator and the tests drive it with their own
clock and model port, which is why they all decide the same way.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tiny_node.clock import Clock
from tiny_node.config import NodeConfig
from tiny_node.decision import Decision, ModelState, Source, Verdict
from tiny_node.rules import RulePath
from tiny_node.sensors import SensorState

# A camera stamp going back by more than this is a clock reset, not a reordered frame.
CLOCK_JUMP_NS = 1_000_000_000
# The latest stamp a decision may carry: builtin_interfaces/Time's (sec int32, nanosec < 1e9). An
# extrapolated stamp past it wrapped to a negative sec in the message.
MAX_STAMP_NS = (2**31 - 1) * 1_000_000_000 + 999_999_999
# Period of camera-timeout decisions before the camera's own period is known (one frame seen),
# and the bounds put on the measured one.
DEFAULT_FRAME_PERIOD_S = 0.1
FRAME_PERIOD_BOUNDS_S = (0.005, 1.0)


class ModelPort(Protocol):
    """What the watchdog needs from a model runner (worker process or lockstep model)."""

    @property
    def busy_seq(self) -> int | None:
        """Sequence number of the frame being run, or None when idle."""
        ...

    def submit(self, seq: int, image: np.ndarray, features: Mapping[str, float], frame_time_s: float) -> bool:
        """Start a run; False (without side effects) when not ready or busy.

        ``frame_time_s`` is the frame's header stamp in seconds: a two-frame model finds its
        earlier image by it (camera time, free of transport and queueing jitter).
        """
        ...

    def cancel(self, seq: int) -> None:
        """Ask for the run of ``seq`` to be terminated."""
        ...


class ModelAnswer(Protocol):
    """The parts of a model output the watchdog reads."""

    @property
    def brake(self) -> bool:
        """The model's decision."""
        ...

    @property
    def confidence(self) -> float:
        """Probability of that decision."""
        ...

    @property
    def p_brake(self) -> float:
        """P(brake) before the threshold (what an operating point is chosen on)."""
        ...

    @property
    def label(self) -> str:
        """The decision as the model's word."""
        ...

    @property
    def conflict_s(self) -> float:
        """The earliest conflict of the model's tracks, s (inf: none; ``model.conflict``)."""
        ...

    @property
    def conflict_brake(self) -> bool:
        """Whether that conflict brakes whatever the threshold (``ModelOutput.conflict_brake``)."""
        ...

    @property
    def tracks(self) -> str:
        """The tracked VRUs the model was shown, as text ('' for a model without tracking)."""
        ...


#: A frame whose stamp deadline passed this long before its receipt has a stamp on another clock.
STAMP_CLOCK_HINT_S = 1.0


def future_stamp_fault(stamp_ns: int, now_ns: int, tolerance_s: float) -> str | None:
    """Why a camera stamp is unusable for being ahead of the driver's ROS clock, or None.

    Why here, not in one driver: the node (its ROS clock), bag replay (the message's log time)
    and any other driver must judge the same frame alike. ``now_ns`` 0 is ROS time before the
    first /clock: nothing to judge against.
    """
    ahead = (stamp_ns - now_ns) * 1e-9
    if now_ns > 0 and ahead > tolerance_s:
        return f"camera stamp {ahead:.2f} s in the future of the node clock"
    return None


@dataclass(frozen=True)
class Frame:
    """A camera frame as handed in by a driver (already decoded, or with the reason why not)."""

    stamp_ns: int
    received_at: float
    image: np.ndarray | None
    fault: str | None = None
    deadline_at: float | None = None  # set by drivers that measure from the header stamp


@dataclass(frozen=True)
class _Brake:
    """A brake a hold carries on: who took it, why, and how sure it was.

    Why the confidence too: a held decision said the confidence of the verdict it overrides (a
    model's 0.97 for "no brake" beside ``brake: true``).
    """

    source: Source
    reason: str
    confidence: float


_NO_BRAKE = _Brake(Source.RULES, "", 1.0)


@dataclass(frozen=True)
class _Provisional:
    """A provisional rule brake's hold on one range track: until when, and the brake held."""

    until: float
    seq: int  # the cycle that braked: only a newer frame's verdict may lift it
    brake: _Brake


@dataclass
class _Cycle:
    seq: int
    frame: Frame
    deadline_at: float
    publish_by: float
    rules: Verdict
    figures: dict[str, str]
    features: dict[str, float]
    submitted: bool = False
    unavailable_why: str = ""
    no_frame: bool = False
    fault: str = ""  # why the frame was unusable (decoding or stamp), reported with its decision


@dataclass
class WatchdogStats:
    """Counters for /diagnostics and reports (monotonic over a run)."""

    cycles: int = 0
    decisions: int = 0
    brakes: int = 0
    by_source: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in Source})
    by_model_state: dict[str, int] = field(
        default_factory=lambda: {s.value: 0 for s in ModelState}
    )
    deadline_misses: int = 0  # decided after the deadline (the promise broken)
    late_results_discarded: int = 0
    cancels: int = 0
    model_errors: int = 0
    bad_frames: int = 0
    frames_dropped_in_transport: int = 0
    clock_jumps: int = 0
    camera_timeout_decisions: int = 0  # decided without a frame while the camera was out
    last_fault: str = ""
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1000))

    def latency_percentile(self, q: float) -> float:
        """Percentile ``q`` (0-100) of recent decision latencies, NaN before the first."""
        if not self.latencies_ms:
            return math.nan
        return float(np.percentile(np.fromiter(self.latencies_ms, float), q))

    def as_values(self) -> dict[str, Any]:
        """Flat key-values for diagnostics."""
        out: dict[str, Any] = {
            "cycles": self.cycles,
            "decisions": self.decisions,
            "brakes": self.brakes,
            "deadline_misses": self.deadline_misses,
            "late_results_discarded": self.late_results_discarded,
            "cancels": self.cancels,
            "model_errors": self.model_errors,
            "bad_frames": self.bad_frames,
            "frames_dropped_in_transport": self.frames_dropped_in_transport,
            "clock_jumps": self.clock_jumps,
            "camera_timeout_decisions": self.camera_timeout_decisions,
            "latency_p50_ms": round(self.latency_percentile(50), 3),
            "latency_p99_ms": round(self.latency_percentile(99), 3),
        }
        out.update({f"source_{k}": v for k, v in self.by_source.items()})
        out.update({f"model_{k}": v for k, v in self.by_model_state.items()})
        return out


class Watchdog:
    """Opens a cycle per frame and closes each exactly once, by its deadline."""

    def __init__(
        self,
        cfg: NodeConfig,
        sensors: SensorState,
        clock: Clock,
        model: ModelPort | None = None,
    ) -> None:
        self.cfg = cfg
        self.sensors = sensors
        self.clock = clock
        self.model = model
        self.rules = RulePath(cfg.rules)
        self.stats = WatchdogStats()
        self._open: dict[int, _Cycle] = {}
        self._pending: int | None = None  # newest frame waiting for the busy model
        self._seq = 0
        self._last_stamp_ns: int | None = None
        self._hold_until = -math.inf
        self._newest_seq, self._newest_brake = 0, False  # the newest frame decided so far, and its brake
        self._held = _NO_BRAKE  # the brake the hold window carries on
        # Provisional rule brakes' holds (``Verdict.provisional``), by range track: each until
        # its own track confirms it (a brake of its own then starts the hold above) or refutes
        # it, and at most range_rate_window_s, within which a track forms or the object is gone.
        # Per track: a refuted car's track must not lift the brake on a child seen in between.
        # Kept apart from the hold above so that lifting one never shortens a confirmed hold.
        self._prov: dict[int, _Provisional] = {}
        self._newest = _NO_BRAKE  # the newest frame's brake, when it braked
        # Camera liveness: last frame receipt / stamp, recent inter-arrival times, and when the
        # next decision without a frame is due (None until the first frame).
        self._last_frame_at: float | None = None
        self._last_frame_stamp_ns = 0
        self._frame_intervals: deque[float] = deque(maxlen=15)
        self._no_frame_due: float | None = None
        # (stamp, receipt) of the newest frame taken without a fault (its stamp accepted; a frame
        # that could not be decoded had its stamp judged by no driver): decisions without a frame
        # are stamped from it. Why not the last frame's: one refused for its stamp (an hour ahead,
        # near int32 max) stamped every decision of the camera outage after it as wrongly.
        self._stamp_ref: tuple[int, float] | None = None
        # Where every decision goes the moment it is taken, besides the list a method returns:
        # a driver that owns a sink loses none when the same call raises after a close.
        self.sink: list[Decision] | None = None
        # The driver's time in stamp nanoseconds (the node's ROS clock): decisions without a frame,
        # while no frame's stamp was accepted yet, are stamped no further ahead of it than the
        # future-stamp tolerance; None: the last frame's stamp, however judged.
        self.stamp_clock: Callable[[], int] | None = None
        # The last decision without a frame's stamp in this outage (None: a frame came since)
        self._no_frame_stamp_ns: int | None = None

    def on_start(self) -> None:
        """A new deciding period (the node activated again): the camera clock starts afresh.

        Why: the last active period's camera clock would make the node decide "camera out" (a
        fail-safe brake, then its hold) the instant it is activated, before any frame: while
        inactive it takes no frames, so their absence says nothing. A brake hold still running
        (absolute times, they run out on their own) is kept: a deactivate / activate bounce 30 ms
        after a brake released it on the next clear-looking frame, 1.9 s early.
        """
        self._last_frame_at = None
        self._frame_intervals.clear()
        self._no_frame_due = None
        self._stamp_ref = None  # an inactive period's camera stamps are no base (a bag replayed anew)

    def reconfigure(self, cfg: NodeConfig) -> None:
        """Take new parameters (from the deadline thread); open cycles keep their deadlines."""
        self.cfg = cfg
        self.rules = RulePath(cfg.rules)

    # --- inputs ----------------------------------------------------------------------------
    def on_frame(self, frame: Frame) -> list[Decision]:
        """Open a cycle for ``frame``; returns decisions that could be taken at once."""
        self.frame_arrived(frame)
        deadline = self.frame_deadline(frame)
        guard = self.cfg.float("publish_guard_ms") * 1e-3
        snap = self.sensors.snapshot(frame.received_at)
        verdict, figures = self.rules.decide(snap)
        fault = frame.fault or self._stamp_fault(frame.stamp_ns)
        if fault is None:
            self._last_stamp_ns = frame.stamp_ns
            if self._stamp_ref is None or frame.received_at > self._stamp_ref[1]:
                self._stamp_ref = (frame.stamp_ns, frame.received_at)
        else:
            self.stats.bad_frames += 1
            self.stats.last_fault = fault
        # The seq is taken and the cycle counted only as it opens: if anything above raises,
        # close_failsafe gives the frame its one seq and count (no id skipped, none counted twice).
        seq = self._seq + 1
        cycle = _Cycle(
            seq=seq,
            frame=frame,
            deadline_at=deadline,
            publish_by=max(deadline - guard, frame.received_at),
            rules=verdict,
            figures=figures,
            features=snap.features(),
            fault=fault or "",
        )
        self._seq = seq
        self.stats.cycles += 1
        self._open[seq] = cycle
        if fault is not None or frame.image is None:
            cycle.unavailable_why = f"bad frame: {fault or 'no image'}"
        elif snap.odom_fault:
            cycle.unavailable_why = f"model not asked: no trustworthy ego speed ({snap.odom_fault})"
        if self.model is None:
            return [self._close(cycle, None, ModelState.DISABLED)]
        if cycle.unavailable_why:
            return [self._close(cycle, None, ModelState.UNAVAILABLE)]
        if snap.reverse_mps > 0.0:  # the model was made for a forward-driving ego, like the rules
            cycle.unavailable_why = "model not asked: reversing"
            return [self._close(cycle, None, ModelState.SKIPPED)]
        if (now := self.clock.now()) >= cycle.publish_by:
            # Why both figures: "arrived after its deadline" was said when the frame came in time
            # but the model's budget (deadline - guard: 1 ms) was shorter than decoding it.
            due_ms = (cycle.publish_by - frame.received_at) * 1e3
            # >= 0 only for a deadline from the stamp: one from the receipt is deadline_ms (>= 5) after it
            late_s = frame.received_at - cycle.deadline_at
            # Seconds too old is no slow network: the camera's stamps are on another clock, or unset
            clock_hint = ("" if late_s < STAMP_CLOCK_HINT_S else "; header.stamp 0 is unset" if frame.stamp_ns == 0
                          else "; stamps this old are on another clock than the node's (use_sim_time on one "
                               "side only? a camera clock not synchronised?)")
            cycle.unavailable_why = (
                f"frame too old by its stamp: its deadline passed {late_s * 1e3:.1f} ms before its receipt "
                f"(deadline_reference: stamp){clock_hint}" if late_s >= 0.0 else
                f"no time left for the model: frame handed in {(now - frame.received_at) * 1e3:.1f} ms after "
                f"its receipt, its fallback due {due_ms:.1f} ms after it (deadline_ms - publish_guard_ms)")
            return [self._close(cycle, None, ModelState.UNAVAILABLE)]
        if verdict.brake:
            # The model can add a brake, never cancel one (under ``shadow`` it decides nothing):
            # waiting for it would only delay this brake by a model run (up to the deadline when
            # the model is late or hung). Under ``shadow`` such frames go without a model P(brake).
            cycle.unavailable_why = "model not asked: the rules brake"
            self._supersede_pending("model not asked: a newer frame was braked by the rules")
            return [self._close(cycle, None, ModelState.SKIPPED)]
        if self._try_submit(cycle):
            # an older frame still waiting (the model freed in this step, not fed yet) is outdated;
            # one past its publish time keeps its reason: it is closed at this tick, busy as it was
            waiting = self._open.get(self._pending) if self._pending is not None else None
            if waiting is not None and now < waiting.publish_by:
                self._supersede_pending("a newer frame was given to the model")
            return []
        busy = self.model.busy_seq
        if busy is None:
            cycle.unavailable_why = "model worker not ready"
            return [self._close(cycle, None, ModelState.UNAVAILABLE)]
        # The model is busy: this frame becomes the newest in line
        self._supersede_pending("model busy, newer frame took its place")
        self._pending = seq
        cycle.unavailable_why = f"model busy with frame {busy}"
        return []

    def _supersede_pending(self, why: str) -> None:
        """An older frame waiting for the busy model will not get it: a newer one was opened.

        It keeps its deadline and is decided by the rules then. Why: the model run on it would be
        spent on a frame already outdated (a newer one decided, or next in line), and the frame
        after it would find the model busy again.
        """
        if self._pending is not None and self._pending in self._open:
            self._open[self._pending].unavailable_why = why
        self._pending = None

    def on_model_result(
        self,
        seq: int,
        output: ModelAnswer | None,
        *,
        error: str | None = None,
        cancelled: bool = False,
        feed: bool = True,
    ) -> list[Decision]:
        """Take a model result (or its failure); the model is idle again afterwards.

        ``feed``: hand the waiting frame to the model at once. False when the driver has newer
        frames to open in the same step (it calls :meth:`feed_model` after them): the model then
        gets the newest, as in arrival order, not the frame those have superseded.
        """
        out: list[Decision] = []
        cycle = self._open.get(seq)
        if error is not None:
            self.stats.model_errors += 1
            self.stats.last_fault = f"model error on frame {seq}: {error}"
        if cycle is not None and cycle.submitted:
            now = self.clock.now()
            if output is not None and now < cycle.publish_by:
                seen = f"; {output.tracks}" if output.tracks else ""
                model = Verdict(output.brake, float(output.confidence), f"model: {output.label} "
                                f"(p={output.confidence:.2f}{seen})", p_brake=float(output.p_brake),
                                conflict_s=float(output.conflict_s), conflict_brake=bool(output.conflict_brake))
                out.append(self._close(cycle, model, ModelState.ON_TIME))
            elif output is None and not cancelled:
                cycle.unavailable_why = f"model run failed: {error or 'no output'}"
                out.append(self._close(cycle, None, ModelState.UNAVAILABLE))
            elif output is not None:  # past its publish time: late; its rationale, if begun, is cancelled
                self.stats.late_results_discarded += 1
                out.append(self._close(cycle, None, ModelState.LATE))
                self._cancel_rationale(seq)
        elif output is not None:
            self.stats.late_results_discarded += 1
            self._cancel_rationale(seq)
        if feed:
            self.feed_model()
        return out

    def _cancel_rationale(self, seq: int) -> None:
        """Stop the rationale of a result that came too late: it would explain a decision never made.

        Why: the worker began it with the result, and the node published it with the frame's stamp
        beside the fallback's decision (a model "brake" beside a published no-brake).
        """
        if self.model is not None:
            self.model.cancel(seq)

    def on_tick(self, frames_waiting: bool = False) -> list[Decision]:
        """Close every cycle whose publish time has come (fallback), oldest first.

        ``frames_waiting``: the driver holds frames it has not opened yet, or one received before
        the camera timeout is still being decoded, so the camera is not out, however late they
        are handled (a stall longer than ``camera_timeout_s`` between their receipt and this tick,
        or a 13 ms decode across the timeout, gave a fail-safe brake, held 2 s, before them).
        """
        now = self.clock.now()
        due = sorted((c for c in self._open.values() if c.publish_by <= now), key=lambda c: c.seq)
        out = []
        for cycle in due:
            if cycle.submitted:  # decided first, then the run cancelled: a failing cancel costs no decision
                assert self.model is not None
                out.append(self._close(cycle, None, ModelState.LATE))
                self.stats.cancels += 1
                self.model.cancel(cycle.seq)
            else:
                out.append(self._close(cycle, None, ModelState.UNAVAILABLE))
        due_at = self.next_camera_timeout_at()
        if due_at is not None and now >= due_at and frames_waiting:
            # a frame is here or on its way: no camera out; looked at again half a period on
            # (its arrival re-arms the timeout), not at once in a spin
            self._no_frame_due = now + 0.5 * self.frame_period()
        elif due_at is not None and now >= due_at:
            # Next one a frame period on; after a stall, from now (never a burst to catch up).
            # Moved on before deciding: a decision that fails must not stay due (a driver
            # would retry it at once, for ever).
            self._no_frame_due = max(due_at + self.frame_period(), now + 0.5 * self.frame_period())
            out.append(self._decide_without_frame(now))
        return out

    # --- camera timeout --------------------------------------------------------------------
    def frame_arrived(self, frame: Frame) -> None:
        """Note a frame's arrival: it re-arms the camera timeout and measures the frame period.

        :meth:`on_frame` calls it; a driver holding frames not opened yet calls it first, before
        :meth:`on_tick`, so that a frame received before the camera timeout is not preceded by a
        "camera: no frame" decision (or its fail-safe hold). A frame received no later than the
        newest one noted changes nothing, so noting a frame twice (or a batch, then each of it)
        neither counts an interval twice nor moves the camera clock back.
        """
        last = self._last_frame_at
        if last is not None and frame.received_at <= last:
            return
        if last is not None:
            self._frame_intervals.append(frame.received_at - last)
        self._last_frame_at = frame.received_at
        self._last_frame_stamp_ns = frame.stamp_ns
        self._no_frame_due = frame.received_at + self.cfg.float("camera_timeout_s")
        self._no_frame_stamp_ns = None  # the outage is over: the next one follows the camera's clock again

    def frame_period(self) -> float:
        """The camera's period: median of recent inter-arrival times (bounded)."""
        if not self._frame_intervals:
            return DEFAULT_FRAME_PERIOD_S
        lo, hi = FRAME_PERIOD_BOUNDS_S
        return min(max(float(np.median(np.fromiter(self._frame_intervals, float))), lo), hi)

    def next_camera_timeout_at(self) -> float | None:
        """When the next decision without a frame is due (None: camera alive or action 'none')."""
        if self.cfg.str("camera_timeout_action") == "none":
            return None
        return self._no_frame_due

    def _decide_without_frame(self, now: float) -> Decision:
        """One decision while the camera is out: rules (model unavailable) or the fail-safe."""
        assert self._last_frame_at is not None
        age = now - self._last_frame_at
        why = f"camera: no frame for {age:.2f} s (camera_timeout_s {self.cfg.float('camera_timeout_s')})"
        snap = self.sensors.snapshot(now)
        verdict, figures = self.rules.decide(snap)
        if self.cfg.str("camera_timeout_action") == "failsafe":
            verdict = self.failsafe_verdict(why)
        self._seq += 1
        self.stats.camera_timeout_decisions += 1
        self.stats.last_fault = why
        frame = Frame(self._no_frame_stamp(now), now, None, why)
        cycle = _Cycle(seq=self._seq, frame=frame, deadline_at=now + self.cfg.float("deadline_ms") * 1e-3,
                       publish_by=now, rules=verdict, figures=figures, features=snap.features(),
                       unavailable_why=why, no_frame=True)
        self._open[cycle.seq] = cycle
        return self._close(cycle, None, ModelState.DISABLED if self.model is None else ModelState.UNAVAILABLE)

    def _no_frame_stamp(self, now: float) -> int:
        """The stamp of a decision without a frame at ``now``: the camera's time, extrapolated.

        From the newest frame whose stamp was accepted, plus the time since its receipt, so the
        output stays a monotonic stream on the camera's clock. With none since activation, from
        the last frame's, but no further ahead of the driver's :attr:`stamp_clock` (when it runs:
        above 0) than ``future_stamp_tolerance_s``: the ROS clock itself was 0 or frozen under
        ``use_sim_time``, or behind a camera 2 s ahead, whose outage stamps then went back. Each
        one of an outage after the one before, and at most :data:`MAX_STAMP_NS`.
        """
        if self._stamp_ref is not None:
            stamp, at = self._stamp_ref
            stamp_ns = stamp + round((now - at) * 1e9)
        else:
            assert self._last_frame_at is not None
            stamp_ns = self._last_frame_stamp_ns + round((now - self._last_frame_at) * 1e9)
            if self.stamp_clock is not None and (clock_ns := self.stamp_clock()) > 0:
                ahead_ns = round(self.cfg.float("future_stamp_tolerance_s") * 1e9)
                stamp_ns = min(stamp_ns, clock_ns + ahead_ns)
        if self._no_frame_stamp_ns is not None:
            stamp_ns = max(stamp_ns, self._no_frame_stamp_ns + 1)
        self._no_frame_stamp_ns = min(stamp_ns, MAX_STAMP_NS)
        return self._no_frame_stamp_ns

    def _stamp_fault(self, stamp_ns: int) -> str | None:
        """Frozen (repeated) or out-of-order camera stamps make a frame unusable for the model.

        A jump back by more than :data:`CLOCK_JUMP_NS` is a clock reset (a bag looping, sim
        time restarting), not a camera fault: the frame is accepted and tracking restarts. Not
        a jump to 0 itself: that is a frame whose driver left ``header.stamp`` unset, and taken
        as a reset it became the base of a camera outage's stamps (1970, review 2026-12-08);
        sim time restarting at 0 loses the model one frame, its next frame is the reset.
        """
        last = self._last_stamp_ns
        if last is None or stamp_ns > last:
            return None
        if stamp_ns == last:
            return (f"camera stamp {stamp_ns} repeated (frozen camera)" if stamp_ns else
                    "camera stamp 0 repeated (frozen camera, or a driver that leaves header.stamp unset)")
        if stamp_ns == 0:
            return f"camera stamp 0 after stamped frames (last {last}): header.stamp left unset"
        if last - stamp_ns > CLOCK_JUMP_NS:
            self.stats.clock_jumps += 1
            return None
        return f"camera stamp {stamp_ns} before previous {last} (out-of-order frame)"

    def frame_deadline(self, frame: Frame) -> float:
        """When ``frame`` must be decided: ``deadline_ms`` after its receipt, or its own deadline if sooner.

        A deadline from the stamp may come sooner (the frame aged in transport), never later: a
        stamp ahead of this clock, or ROS time at 0 before the first /clock, must not stretch it.
        """
        deadline = frame.received_at + self.cfg.float("deadline_ms") * 1e-3
        if frame.deadline_at is not None and math.isfinite(frame.deadline_at):
            deadline = min(deadline, frame.deadline_at)
        return deadline

    def failsafe_verdict(self, why: str) -> Verdict:
        """The ``rules.failsafe`` verdict (brake or not) for inputs that cannot be trusted, saying ``why``."""
        brake = self.cfg.rules.failsafe == "brake"
        return Verdict(brake, 1.0, f"fail-safe {'brake' if brake else 'no_brake'}: {why}")

    def close_cycle(self, seq: int, why: str) -> Decision:
        """Decide the open cycle ``seq`` now with the rule verdict, then cancel its model run.

        Decided first: a cancel that raises then costs no decision (it is in :attr:`sink`).
        A close that raises leaves the cycle open (see :meth:`_close`).
        """
        cycle = self._open[seq]
        cycle.unavailable_why = why
        decision = self._close(cycle, None, ModelState.UNAVAILABLE)
        if cycle.submitted and self.model is not None:
            self.model.cancel(seq)
        return decision

    def close_failsafe(self, frame: Frame, why: str, seq: int | None = None) -> Decision:
        """Decide ``frame`` with the fail-safe (``rules.failsafe``), through the hold and the counts.

        For a frame whose cycle could not be opened (``seq`` None: it gets a new seq and counts
        as a cycle), or the open cycle ``seq`` whose close failed (its verdict is not to be
        trusted). The cycle is taken out first: it is never decided twice, even if this raises.
        """
        old = self._open.pop(seq, None) if seq is not None else None
        if self._pending is not None and self._pending == seq:
            self._pending = None
        if seq is None:
            self._seq += 1
            seq = self._seq
            self.stats.cycles += 1
        deadline = old.deadline_at if old is not None else self.frame_deadline(frame)
        verdict = self.failsafe_verdict(why)
        cycle = _Cycle(seq=seq, frame=frame, deadline_at=deadline, publish_by=deadline, rules=verdict,
                       figures={}, features={}, unavailable_why="fail-safe", fault=why)
        self._open[seq] = cycle
        try:
            return self._close(cycle, None, ModelState.DISABLED if self.model is None else ModelState.UNAVAILABLE)
        except BaseException:
            self._open.pop(seq, None)  # not decided here: the driver's last resort decides it, once
            raise

    def close_all(self, why: str) -> list[Decision]:
        """Decide every open cycle now with the rule verdict (shutdown: none goes unanswered).

        Each cycle on its own: one that fails does not keep the others open. The first error is
        raised after all were tried; the cycles it left open are in :meth:`open_frames`.
        """
        out, errors = [], []
        for seq in sorted(self._open):
            try:
                out.append(self.close_cycle(seq, why))
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return out

    def feed_model(self) -> None:
        """Hand the newest waiting frame to the model if it became free.

        Called after a result, a cancel acknowledgement or a restart; it never decides.
        """
        if self._pending is None:
            return
        cycle = self._open.get(self._pending)
        if cycle is None:
            self._pending = None
            return
        if self.clock.now() < cycle.publish_by and self._try_submit(cycle):
            self._pending = None

    def count_dropped(self, n: int) -> None:
        """Record frames lost in transport (sequence gaps); -1: one counted lost arrived late after all."""
        self.stats.frames_dropped_in_transport += n

    # --- queries ---------------------------------------------------------------------------
    def next_wakeup(self) -> float | None:
        """Earliest publish time of an open cycle (None once every cycle is decided)."""
        return min((c.publish_by for c in self._open.values()), default=None)

    def next_tick_at(self) -> float | None:
        """When :meth:`on_tick` must run next: an open cycle's publish time or a camera timeout.

        Drivers sleep until this; :meth:`next_wakeup` alone says when open cycles are drained.
        """
        return min((t for t in (self.next_wakeup(), self.next_camera_timeout_at()) if t is not None),
                   default=None)

    def open_frames(self) -> list[tuple[int, Frame]]:
        """The seq and frame of every open cycle, oldest first."""
        return [(seq, self._open[seq].frame) for seq in sorted(self._open)]

    def is_open(self, seq: int) -> bool:
        """Whether cycle ``seq`` is still waiting for its decision."""
        return seq in self._open

    @property
    def open_cycles(self) -> int:
        """Cycles not yet decided."""
        return len(self._open)

    # --- internals -------------------------------------------------------------------------
    def _try_submit(self, cycle: _Cycle) -> bool:
        assert self.model is not None and cycle.frame.image is not None
        if self.model.busy_seq is not None:
            return False
        if not self.model.submit(cycle.seq, cycle.frame.image, cycle.features, cycle.frame.stamp_ns * 1e-9):
            return False
        cycle.submitted = True
        return True

    def _close(self, cycle: _Cycle, model: Verdict | None, state: ModelState) -> Decision:
        """Arbitrate, apply the brake hold, count, forget the cycle (exactly once), hand to the sink.

        The decision is built before any state changes: a close that raises leaves the cycle
        open and nothing counted, so the driver can still decide it another way.
        """
        now = self.clock.now()
        rules = cycle.rules
        shadow = self.cfg.str("arbitration") == "shadow"
        if model is not None and not shadow:
            brake = model.brake or rules.brake
            source = Source.RULES if (rules.brake and not model.brake) else Source.MODEL
            confidence = rules.confidence if source is Source.RULES else model.confidence
            reason = rules.reason if source is Source.RULES else model.reason
        else:
            brake, confidence = rules.brake, rules.confidence
            enabled = state not in (ModelState.DISABLED, ModelState.SKIPPED) and not shadow
            source = Source.FALLBACK if enabled else Source.RULES
            reason = rules.reason
            if source is Source.FALLBACK:
                why = cycle.unavailable_why if state is ModelState.UNAVAILABLE else "no result by the deadline"
                reason = f"{reason} [model {state.value}: {why}]"
            elif cycle.unavailable_why:
                reason = f"{reason} [{cycle.unavailable_why}]"
        # A brake of its own (re)starts the hold window; a provisional rule brake (on an assumed
        # closing, no model brake with it) only its own short one, which the track lifts.
        provisional = brake and source is not Source.MODEL and rules.provisional
        awaiting = brake and source is not Source.MODEL and rules.awaiting_inputs  # start-up: no hold
        hold, starts_hold = False, brake and not provisional and not awaiting
        hold_s = self.cfg.float("brake_hold_s")
        hold_until = now + hold_s
        prov_until = now + min(hold_s, self.cfg.rules.range_rate_window_s)
        # a newer frame's rule verdict, clear on the track a provisional brake's reading started,
        # which shows that object is not stationary: the assumption was wrong
        refuted = self._prov.get(rules.refutes_track) if rules.refutes_track is not None else None
        lifted = rules.refutes_track if refuted is not None and refuted.seq < cycle.seq and not rules.brake else None
        standing = [p for track, p in self._prov.items() if p.until > now and track != lifted]
        held = self._held
        if lifted is not None:
            reason = f"{reason} [lifts the provisional brake on range track {lifted}: not stationary]"
        if not brake and now < self._hold_until:
            hold = True
            reason = f"holding brake {self._hold_until - now:.2f} s more after: {held.reason} | now: {reason}"
        elif not brake and standing:
            prov = max(standing, key=lambda p: p.until)
            hold, held = True, prov.brake
            reason = (f"holding provisional brake until its range track confirms or lifts it "
                      f"({prov.until - now:.2f} s at most) after: {held.reason} | now: {reason}")
        elif not brake and cycle.seq < self._newest_seq and self._newest_brake:
            # Why: decisions go out in the order they are taken, not in frame order (a rule brake
            # does not wait for the model busy with an older frame). Without a hold window the
            # older frame's no-brake would be the last word on `brake` after the newest braked.
            hold, held = True, self._newest
            reason = f"holding brake: newer frame {self._newest_seq} braked: {held.reason} | now: {reason}"
        if hold:
            brake, source, confidence = True, held.source, held.confidence
        own = _Brake(source, reason, confidence)
        decision = Decision(
            frame_id=cycle.seq,
            stamp_ns=cycle.frame.stamp_ns,
            brake=brake,
            source=source,
            model_state=state,
            confidence=confidence,
            reason=reason,
            received_at=cycle.frame.received_at,
            deadline_at=cycle.deadline_at,
            decided_at=now,
            hold=hold,
            no_frame=cycle.no_frame,
            frame_fault=cycle.fault,
            rules=rules,
            model=model,
            extra=cycle.figures,
        )
        latency_ms = decision.latency_ms
        # --- from here on nothing raises: the cycle is decided ---
        del self._open[cycle.seq]
        if self._pending == cycle.seq:
            self._pending = None
        if starts_hold:
            self._hold_until, self._held = hold_until, own
        elif provisional:
            # A later provisional brake on the same track keeps its first one's end: at most
            # range_rate_window_s from the object's first scan, not re-armed frame after frame
            track = rules.provisional_track or 0
            first = self._prov.get(track)
            if rules.provisional_left_s is not None:  # the window since the track's first scan
                prov_until = min(prov_until, now + rules.provisional_left_s)
            until = first.until if first is not None and first.until > now else prov_until
            self._prov[track] = _Provisional(until, cycle.seq, own)
        if lifted is not None:
            del self._prov[lifted]
        for track in [t for t, p in self._prov.items() if p.until <= now]:
            del self._prov[track]
        if cycle.seq > self._newest_seq:
            self._newest_seq, self._newest_brake = cycle.seq, brake
            self._newest = held if hold else own
        s = self.stats
        s.decisions += 1
        s.brakes += int(brake)
        s.by_source[source.value] += 1
        s.by_model_state[state.value] += 1
        if now > cycle.deadline_at:
            s.deadline_misses += 1
        s.latencies_ms.append(latency_ms)
        if self.sink is not None:
            self.sink.append(decision)
        return decision
