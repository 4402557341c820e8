"""Sensor state: the latest reading of each topic with its receipt time, and its faults.

Staleness is measured on receipt time (the injected clock), as Autoware's
topic_state_monitor does, so it works the same in real time and in lockstep; the node injects
its steady clock, so a simulator off real time stretches it (tiny_node.clock_rate says so).  An
invalid range reading (NaN, negative, outside [``min_range``, ``max_range``]: sensor_msgs/Range
says discard it) is taken as a missed one: the last valid reading stands, with a warning, until it is
``range_timeout_s`` old, and only then is it a fault. Why: one garbage sample was a fault at
once, and its fail-safe brake and 2 s hold braked a car at 130 km/h for nothing; a sensor that
keeps sending garbage is a fault within the same time as one that stops sending.  The
range rate (closing speed) is estimated from the sensor's own stamps over a short window,
because receipt times carry transport jitter; a driver that does not stamp its scans (new
ranges under one stamp, 0 or other) has them timed by their receipt instead, since without a
time no track formed and every frame behind a lead braked on an assumed stationary object.
Updates come from the ROS executor thread and snapshots are taken by the deadline thread, hence
the lock; critical sections are tiny.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, replace

from tiny_node.config import RuleConfig
from tiny_node.rules import rss_distance

# Odometry noise at standstill may read slightly negative; beyond this the ego reverses, and a
# forward AEB stands aside (``SensorSnapshot.reverse_mps``): braking on every reverse manoeuvre
# would make the vehicle unusable. Faster in reverse than a car's reverse gear goes is garbage.
SPEED_NOISE_MPS = 0.1
MAX_PLAUSIBLE_SPEED_MPS = 100.0
MAX_PLAUSIBLE_REVERSE_MPS = 15.0
# A car's yaw-rate sensor spans about +-100..300 deg/s; beyond 5 rad/s (286 deg/s) a value is garbage.
MAX_PLAUSIBLE_YAW_RATE_RPS = 5.0
MAX_PLAUSIBLE_ACCEL_MPS2 = 100.0
# Range reported to the model when nothing is within range (REP-117 +Inf).
RANGE_CLEAR_M = 100.0
# A range stamp this fraction of range_timeout_s (or less) behind the newest is a sample
# reordered in transport and dropped; further back, the sensor's clock restarted. Half the
# timeout: a small clock step back cannot make the range stale by dropping what follows it.
REORDER_TOLERANCE = 0.5
# A repeated range stamp is a resent scan (aged from its first copy) when the driver's stamps advance
# at most this fraction of range_timeout_s apart; further apart, it may be a new scan under a coarse stamp.
RESEND_STEP = 0.5
# Weight of each new window in the running mean of the range noise (about 1 s at 20 Hz).
NOISE_ALPHA = 0.05
# New ranges in a row under one stamp that make a driver unstamped, and advancing stamps that end it.
UNSTAMPED_RUN = 3
# A track timed by receipt gives a rate only from this many points over this span (a burst, a
# lagging copy of an older scan or one late delivery is no track yet: each read +80 m/s, "not
# closing", on a standing child), and judges a standing object allowing this much receipt jitter:
# its range moves by the ego's speed times the jitter, and one latency step lifted a child's brake.
RECEIPT_MIN_POINTS = 3
RECEIPT_MIN_SPAN_S = 0.1
RECEIPT_JITTER_S = 0.05
# The range track holds range_rate_window_s of scans at up to this rate (automotive radars and
# lidars run at 10-50 Hz; ultrasonic and ToF sensors up to about 100), and never fewer than
# TRACK_MIN_POINTS. Why sized by the window: a fixed 64 covered 3.15 s of a 5 s window at 20 Hz,
# and the closing speed was fitted over less than was asked. A faster sensor's fit takes its newest
# points only. Cost: about 0.4 us per point in the window per fit (two fits per scan, one per snapshot).
MAX_RANGE_RATE_HZ = 100.0
TRACK_MIN_POINTS = 64
#: rules.range_rate_window_s under this many of the range driver's stamp steps is a sensor warning
#: (fewer than 3 scans in the window, some of the time: no closing speed measured then)
WINDOW_STEPS = 2.1


def track_points(window_s: float) -> int:
    """Range scans the track keeps so that ``window_s`` is covered at :data:`MAX_RANGE_RATE_HZ`.

    One more than the periods in the window (both ends count), and one for stamp jitter.
    """
    return max(TRACK_MIN_POINTS, math.ceil(window_s * MAX_RANGE_RATE_HZ) + 2)


@dataclass(frozen=True)
class RangeReading:
    """One sensor_msgs/Range, reduced to what the core needs (REP-117 semantics)."""

    range_m: float
    min_range: float
    max_range: float
    stamp_ns: int
    received_at: float
    #: Why ``stamp_ns`` does not look like the driver's clock (:func:`range_stamp_warning`), or None.
    stamp_warning: str | None = None

    @property
    def reach_m(self) -> float | None:
        """How far a +Inf reading clears the path: ``max_range``, or None for no bound.

        A ``max_range`` <= 0, NaN or inf is none (``convert.range_reading`` reads them so too).
        """
        return self.max_range if 0.0 < self.max_range < math.inf else None


def range_reach_warning(reading: RangeReading, speed: float | None, cfg: RuleConfig) -> str | None:
    """Why a +Inf reading cannot clear the path at ``speed``, or None.

    REP-117 +Inf says nothing lies within ``max_range``: beyond it, as far as a standing object's
    RSS distance, the path is not cleared (a 4 m ultrasonic sensor at 30 m/s, where 106 m are
    needed, read "clear", level OK).
    """
    reach = reading.reach_m
    if reading.range_m != math.inf or reach is None or speed is None or not speed > 0.0:
        return None
    needed = rss_distance(speed, 0.0, cfg)
    if needed <= reach:
        return None
    return (f"range: clear only to its max_range {reach:.2f} m, short of the RSS distance {needed:.2f} m "
            f"to a standing object at {speed:.2f} m/s")


def range_stamp_warning(stamp_ns: int, now_ns: int, ahead_tolerance_s: float, behind_limit_s: float) -> str | None:
    """Why a range reading's header.stamp does not look like the driver's ROS clock at receipt, or None.

    Why: the range-rate track is timed by these stamps, and staleness by the receipt; a driver
    stamping on another clock (system time against /clock: ``use_sim_time`` on one side only) or
    hours late went unnoticed, its closing speed trusted. Here, not in one driver, so that the node
    (its ROS clock) and bag replay (the log time) judge alike. Stamp 0 (an unstamped driver, timed by
    receipt) and ``now_ns`` 0 (no /clock yet) are not judged.
    """
    if stamp_ns == 0 or now_ns <= 0:
        return None
    ahead = (stamp_ns - now_ns) * 1e-9
    if ahead > ahead_tolerance_s:
        return f"header.stamp {ahead:.2f} s ahead of the node clock (another clock? use_sim_time on one side only?)"
    if -ahead > behind_limit_s:
        return (f"header.stamp {-ahead:.2f} s behind the node clock at receipt (> range_timeout_s "
                f"{behind_limit_s:g} s: another clock, or a late driver)")
    return None


@dataclass(frozen=True)
class SensorSnapshot:
    """What the rule path and the model see for one cycle; faults are already judged."""

    taken_at: float
    range: RangeReading | None
    range_age: float | None
    range_rate: float | None  # d(range)/dt in m/s; negative = closing; None = unknown
    ego_speed: float | None
    odom_age: float | None
    accel_x: float | None
    imu_age: float | None
    faults: tuple[str, ...]  # human-readable, each naming the topic and the value
    range_rate_se: float = 0.0  # standard error of range_rate (m/s), its noise (0: exact)
    ego_yaw_rate: float | None = None  # rad/s, left + (odometry's twist.angular.z); None = unknown
    #: The ego's speed in reverse (m/s, > 0) beyond the standstill noise; 0 when not reversing.
    #: ``ego_speed`` is then 0: the forward-facing paths do not judge a reversing ego.
    reverse_mps: float = 0.0
    #: Inputs not trusted but not (yet) a fault, each naming the topic and the value: an
    #: invalid range reading while the last valid one is still fresh (and used).
    warnings: tuple[str, ...] = ()
    #: The range rate's standard error were the range noise the sensor's own (``range_noise_m``
    #: + ``range_noise_frac``): a floor for judging a young track, whose residuals can be ~0.
    range_rate_se_sensor: float = math.inf
    #: Number of the range track holding the newest reading (0: none), new with every track: a
    #: verdict on the track is known to be about the object a reading of it showed.
    track_id: int = 0
    #: Why the range driver's scans are timed by their receipt, not their header stamps (None:
    #: they are not): its track and closing speed then carry the transport's jitter.
    range_timed_by_receipt: str | None = None
    #: The topics with no reading at all since this state was made (the node's configure; each one
    #: fault, "<topic>: no reading received"): a start-up, not a sensor that failed.
    unreceived: tuple[str, ...] = ()
    #: ``range_rate`` is the slope of two scans: they fit exactly, so it is unweighed (20 Hz and
    #: 0.2 m of noise: +-6 m/s; a noise measured earlier, nearer, is too small for a new object
    #: further away), and the model reads it as unknown.
    range_rate_unweighed: bool = False
    #: How long the range track has run, its first scan to its newest (s; None: no track, or not
    #: known). Young (under ``range_rate_window_s``), a track that cannot tell a standing object
    #: from one moving with the ego leaves it taken as standing; older, it is what it measured.
    range_track_age_s: float | None = None

    @property
    def object_distance(self) -> float | None:
        """Distance to the nearest object: ``inf`` when clear, 0 when closer than min_range (-Inf)."""
        if self.range is None:
            return None
        r = self.range.range_m
        return 0.0 if r == -math.inf else r

    @property
    def odom_fault(self) -> str | None:
        """The odometry fault of this cycle, if any: then ``ego_speed`` is not to be trusted."""
        return next((f for f in self.faults if f.startswith("odom:")), None)

    def features(self) -> dict[str, float]:
        """Model sensor features (names are the bundle contract in docs/BUNDLE.md).

        ``ego_speed`` is NaN under an odometry fault: a missing speed has no safe default
        (0 m/s would tell the model and its tracker the ego stands still), and the model
        refuses a non-finite one, so the watchdog does not ask it. ``ego_yaw_rate`` likewise
        (0 would tell the tracker the road is straight), from the same odometry message.
        """
        odom_ok = not self.odom_fault
        d = self.object_distance
        valid = d is not None and not any(f.startswith("range") for f in self.faults)
        rng = min(d, RANGE_CLEAR_M) if (valid and d is not None) else RANGE_CLEAR_M
        return {
            "ego_speed": float(self.ego_speed) if odom_ok and self.ego_speed is not None else math.nan,
            "ego_yaw_rate": float(self.ego_yaw_rate) if odom_ok and self.ego_yaw_rate is not None else math.nan,
            "range": float(rng),
            # Why not an unweighed rate: at a node's start two scans read a standing car as closing
            # at 19.7 m/s (8.4 true), and the model braked at TTC 3.9 s, held 2 s.
            "range_rate": 0.0 if self.range_rate_unweighed else float(self.range_rate or 0.0),
            "range_valid": 1.0 if valid and d is not None and math.isfinite(d) else 0.0,
            "accel_x": float(self.accel_x or 0.0),
        }


class SensorState:
    """Latest range / odometry / IMU readings and a range-rate track."""

    def __init__(self, cfg: RuleConfig) -> None:
        self._cfg = cfg
        self._lock = threading.Lock()
        self._range: RangeReading | None = None  # the last valid reading (REP-117 +-Inf included)
        # Its header stamp, and why the driver's scans are timed by their receipt instead
        # (``_range.stamp_ns`` is then the receipt time; None: by their stamps); the runs of new
        # ranges under the same stamp, and of advancing stamps, that decide it (_judge_stamps).
        self._header_ns: int | None = None
        self._receipt_why: str | None = None
        self._reused = 0
        self._advanced = 0
        self._copies = 0  # copies of the newest scan received since it (its stamp again, not 0)
        # The step between the last two distinct stamps (s): a driver stamping its scans that often
        # and repeating a stamp is resending its last scan (None: not seen advancing)
        self._stamp_step_s: float | None = None
        self._wider_step_s: float | None = None  # a larger step seen once, taken if the next is larger too
        self._repeats = 0  # new scans under the newest stamp after its first (not a relay's copies)
        self._stamp_first_at = 0.0  # receipt of the newest stamp's first reading
        # Why the newest reading is invalid, and the receipt time of the first of its run (both
        # None: the newest reading is valid).
        self._invalid_why: str | None = None
        self._invalid_since: float | None = None
        self._speed: float | None = None
        self._yaw_rate = 0.0
        self._speed_at: float | None = None
        self._accel: float | None = None
        self._accel_at: float | None = None
        # (stamp s, range m, receipt s)
        self._track: deque[tuple[float, float, float]] = deque(maxlen=track_points(cfg.range_rate_window_s))
        self._track_id = 0  # the current track's number, new each time one starts (never by stamp)
        self._track_start = 0.0  # its first point's time (s, the track's clock)
        # The current run of bit-identical finite readings: its value (None: no run).
        self._same_value: float | None = None
        # Time spent moving (odometry above range_stuck_min_speed_mps), summed up to the last odometry,
        # and its value when the run of identical readings began: a stuck range is timed while
        # moving only, so a value repeated at a standstill (behind a stopped lead) is no stuck sensor.
        self._moving_s = 0.0
        self._moving = False
        self._same_moving_s = 0.0
        self._noise_var: float | None = None  # running mean of the range fit's residual variance (m^2)

    @property
    def range_timed_by_receipt(self) -> str | None:
        """Why the range driver's scans are timed by their receipt now (None: by their stamps)."""
        with self._lock:
            return self._receipt_why

    def reconfigure(self, cfg: RuleConfig) -> None:
        """Take new timeouts / track parameters; the track is resized to the window (its newest points kept)."""
        with self._lock:  # the track is swapped while the executor thread may extend it
            self._cfg = cfg
            if (points := track_points(cfg.range_rate_window_s)) != self._track.maxlen:
                self._track = deque(self._track, maxlen=points)

    def update_range(self, reading: RangeReading) -> None:
        """Store a range reading and extend (or restart) the range-rate track.

        An invalid one (:func:`invalid_range`) is kept apart, and the last valid one stands. The
        scans of a driver that does not stamp them (:meth:`_judge_stamps`) are timed by their receipt.
        """
        with self._lock:
            last = self._range
            header_ns = reading.stamp_ns
            why = invalid_range(reading)
            if self._receipt_why is None and self._late(last, reading):
                return
            switched = why is None and self._judge_stamps(reading, last)
            if self._receipt_why is not None:
                # A copy (the same stamp and range as the last valid scan: a relay, a duplicated
                # sample) keeps that scan's time and is the same scan again below, as with stamps:
                # timed apart, copies made a flat track that lifted a standing child's brake.
                copy = (not switched and last is not None and header_ns == self._header_ns
                        and math.isfinite(reading.range_m) and reading.range_m == last.range_m)
                reading = replace(reading, stamp_ns=last.stamp_ns if copy and last is not None
                                  else round(reading.received_at * 1e9))
                if not switched and self._late(last, reading):
                    return
            if switched:
                # Into receipt timing the track is kept, its points timed by their receipt: a new track
                # would leave a provisional brake on the old one unlifted. Back to stamps, it restarts.
                retimed = [(rcv, r, rcv) for _, r, rcv in self._track] if self._receipt_why is not None else []
                self._track.clear()
                self._track.extend(retimed)
                if retimed:  # its age on the clock that now times it
                    self._track_start = retimed[0][0]
            if why is not None:
                self._invalid_why = why
                if self._invalid_since is None:
                    self._invalid_since = reading.received_at
                # A missed scan, whose stamp is not trusted (a NaN stamped 0, or an hour ahead): the
                # track is left alone; the next valid reading drops it if it came too late.
                return
            same_scan = last is not None and reading.stamp_ns == last.stamp_ns
            self._note_stamp_step(header_ns, reading, last)
            step = self._stamp_step_s
            if (same_scan and last is not None and self._receipt_why is None and step is not None
                    and step <= RESEND_STEP * self._cfg.range_timeout_s):
                # The same scan again from a driver that stamps every scan is no newer reading: its
                # age runs from the first copy, or a driver resending its last scan after the sensor
                # died (a CAN bridge, a cached timer) kept a clear road "fresh" for ever. Not so for
                # one that stamps seldom (whole seconds) or never (a fixed stamp, stamp 0): there a
                # repeated stamp is a new scan, and an unchanging +Inf no evidence of a resend.
                reading = replace(reading, received_at=last.received_at)
                self._copies = self._copies + 1 if reading.range_m == last.range_m else 0
            else:
                self._copies = 0
            self._range, self._header_ns = reading, header_ns
            r = reading.range_m
            t = reading.stamp_ns * 1e-9
            if not (math.isfinite(r) and r == self._same_value):
                self._same_value = r if math.isfinite(r) else None
                self._same_moving_s = self._moving_s_at(reading.received_at)
            if same_scan:
                # The same scan again (a driver republishing it, a duplicated sample): nothing to
                # add to the track, and no reason to drop it, which would lose the closing speed.
                # Nor does it end a run of invalid readings: republished between NaNs, it kept the
                # range "fresh" and the fault never came. But stamp 0 names no scan: an unstamped
                # driver's clear road (+Inf again and again) is new readings, and one NaN on an
                # empty road was a fail-safe brake until an object came.
                if header_ns == 0 and not math.isfinite(r):
                    self._invalid_why = self._invalid_since = None
                return
            self._invalid_why = self._invalid_since = None
            if not math.isfinite(r):
                # No return (or -Inf, within min_range): keep the track, a radar misses a scan now and
                # then; it is dropped below if the object does not come back where expected in time,
                # and here once no return has come for longer than the window (or the stamps went
                # back): else its closing speed would stay in the features for ever.
                if self._track and not 0.0 <= t - self._track[-1][0] <= self._cfg.range_rate_window_s:
                    self._track.clear()
                return
            if self._track:
                t0, r0, _ = self._track[-1]
                rate = self._rate_locked()
                gone_too_long = t - t0 > self._cfg.range_rate_window_s
                if rate is not None:
                    jumped = abs(r - (r0 + rate * (t - t0))) > self._cfg.range_jump_m
                else:
                    # A track's second point, no rate yet: expect a stationary object (closing at
                    # the ego's speed), give or take the ego's speed. Gated around no motion, an
                    # oncoming car at 10 Hz moved over range_jump_m every scan and never formed
                    # a track (its closing under-read by half).
                    ego = abs(self._speed) if self._speed is not None and math.isfinite(self._speed) else 0.0
                    jumped = abs(r - (r0 - ego * (t - t0))) > self._cfg.range_jump_m + ego * (t - t0)
                if t <= t0 or gone_too_long or jumped:
                    self._track.clear()  # stamps went backwards, a long gap, or another object
            if not self._track:
                self._track_id += 1
                self._track_start = t
            self._track.append((t, r, reading.received_at))
            fit = self._fit_locked()
            if fit is not None and math.isfinite(fit[2]):  # the sensor's noise: a running mean over ~1 s
                old = fit[2] if self._noise_var is None else self._noise_var
                self._noise_var = old + NOISE_ALPHA * (fit[2] - old)

    def _note_stamp_step(self, header_ns: int, reading: RangeReading, last: RangeReading | None) -> None:
        """Keep the step between the driver's distinct header stamps (``_stamp_step_s``).

        A smaller step is taken at once. A larger one is taken when readings under the last stamp
        came before it (a coarse stamp: its repeats were new scans), or the second time in a row;
        not once alone: a gap of lost scans, or one stamp jumping ahead, as the sensor fails must
        not make its resent last scan read as a seldom-stamping driver's new scans (never aged).
        Header stamps only, whichever clock times the scans (a receipt time is no stamp: against
        one, the scan back on its stamps read as a 1000 s step); a step back starts afresh. A repeat
        is a reading of another value, or one half a step after the stamp's first: a relay's copy
        a few ms after each scan is none, or every stamp "had repeats" and the guard was off.
        """
        prev, step_now = self._header_ns, self._stamp_step_s
        if prev is None or header_ns < prev:
            self._stamp_step_s = self._wider_step_s = None
            self._repeats, self._stamp_first_at = 0, reading.received_at
            return
        if header_ns == prev:
            other = last is not None and reading.range_m != last.range_m
            if other or step_now is None or reading.received_at - self._stamp_first_at >= 0.5 * step_now:
                self._repeats += 1
            return
        self._stamp_first_at = reading.received_at
        step, repeated, self._repeats = (header_ns - prev) * 1e-9, self._repeats > 0, 0
        if self._stamp_step_s is None or step <= self._stamp_step_s or repeated:
            self._stamp_step_s, self._wider_step_s = step, None
        elif self._wider_step_s is None:
            self._wider_step_s = step
        else:  # twice in a row: the driver stamps less often now
            self._stamp_step_s, self._wider_step_s = min(step, self._wider_step_s), None

    def _late(self, last: RangeReading | None, reading: RangeReading) -> bool:
        """A late sample (transport reordering): the newer reading and the track stand.

        A longer step back is a restarted clock (a bag looping), taken as a new track.
        """
        behind_s = 0.0 if last is None else (last.stamp_ns - reading.stamp_ns) * 1e-9
        return 0.0 < behind_s <= REORDER_TOLERANCE * self._cfg.range_timeout_s

    def _judge_stamps(self, reading: RangeReading, last: RangeReading | None) -> bool:
        """Judge whether the driver stamps its scans (a valid ``reading``); True when that changed.

        :data:`UNSTAMPED_RUN` new ranges in a row under the previous scan's stamp (0, unset, or
        any other) are a driver whose stamp does not advance: its scans are timed by their
        receipt from then on, until as many scans in a row advance their stamps. A run, not one
        scan: a clock stepping back, or coarse stamps (two scans per 100 ms stamp), repeat a
        stamp now and then, and switching clocks restarts the track each time.
        """
        if last is None or self._header_ns is None:
            return False
        if reading.stamp_ns == self._header_ns:
            if reading.range_m == last.range_m:
                return False  # a copy: no evidence either way
            self._reused, self._advanced = self._reused + 1, 0
        else:
            self._reused, self._advanced = 0, self._advanced + 1 if reading.stamp_ns > self._header_ns else 0
        if self._receipt_why is None and self._reused >= UNSTAMPED_RUN:
            self._receipt_why = ("header.stamp unset (0)" if reading.stamp_ns == 0 else
                                 f"header.stamp not advancing ({reading.stamp_ns} on {UNSTAMPED_RUN} new ranges)")
            return True
        if self._receipt_why is not None and self._advanced >= UNSTAMPED_RUN:
            self._receipt_why = None
            return True
        return False

    def update_odometry(self, speed_mps: float, received_at: float, yaw_rate_rps: float = 0.0) -> None:
        """Store the ego forward speed (m/s) and yaw rate (rad/s, left +) of one odometry message.

        The yaw rate turns the VRU tracker's tracks with the ego on a curve; 0 (a source without
        one: the simulator's straight road) is a straight road.
        """
        with self._lock:
            self._moving_s = self._moving_s_at(received_at)
            # a stuck range is judged while moving only: standing before a wall, a quantised sensor
            # may legitimately repeat its value (``range_stuck_min_speed_mps``)
            self._moving = math.isfinite(speed_mps) and speed_mps > self._cfg.range_stuck_min_speed_mps
            self._speed, self._yaw_rate, self._speed_at = speed_mps, yaw_rate_rps, received_at

    def _moving_s_at(self, t: float) -> float:
        """Seconds spent moving up to ``t``: the sum so far, plus the time since a moving odometry."""
        since = t - self._speed_at if self._moving and self._speed_at is not None else 0.0
        return self._moving_s + max(0.0, since)

    def update_imu(self, accel_x_mps2: float, received_at: float) -> None:
        """Store the longitudinal acceleration (m/s^2)."""
        with self._lock:
            self._accel, self._accel_at = accel_x_mps2, received_at

    def _rate_locked(self) -> float | None:
        """Least-squares slope of range over the window; None with too little data."""
        fit = self._fit_locked()
        return None if fit is None else fit[0]

    def _fit_locked(self) -> tuple[float, float, float, float] | None:
        """Slope of range over the window, its standard error, residual variance, sensor-noise error.

        None with too little data. The standard error says how much of a small slope is the
        sensor's noise, for the rule path not to take noise for closing. Its range noise is the
        larger of this window's residuals and their running mean (:attr:`_noise_var`): from
        ten points alone it is now and then far too small, and noise passed for closing. The
        residual variance is NaN with two points (they fit exactly). The last: the slope's error
        were the range noise the sensor's own (``range_noise_m`` + ``range_noise_frac`` of the
        range), a floor for judging a young track.
        """
        if len(self._track) < 2:
            return None
        t_last = self._track[-1][0]
        pts = [(t, r) for t, r, _ in self._track if t_last - t <= self._cfg.range_rate_window_s]
        if len(pts) < 2:
            return None
        n = len(pts)
        if self._receipt_why is not None and (n < RECEIPT_MIN_POINTS or pts[-1][0] - pts[0][0] < RECEIPT_MIN_SPAN_S):
            return None
        mt = sum(t for t, _ in pts) / n
        mr = sum(r for _, r in pts) / n
        var = sum((t - mt) ** 2 for t, _ in pts)
        if var < 1e-6:
            return None
        slope = sum((t - mt) * (r - mr) for t, r in pts) / var
        res_var = sum((r - mr - slope * (t - mt)) ** 2 for t, r in pts) / (n - 2) if n > 2 else math.nan
        noise_var = max(res_var if n > 2 else 0.0, self._noise_var or 0.0)
        # The slope's error if the range noise were only the sensor's own (its datasheet figure):
        # two points fit exactly, and a few points' residuals (or a running mean of them) can be
        # far too small, which let a child's first scans at 2 m/s "show" it was not standing still.
        floor = self._cfg.range_noise_m + self._cfg.range_noise_frac * pts[-1][1]
        if self._receipt_why is not None:
            ego = abs(self._speed) if self._speed is not None and math.isfinite(self._speed) else 0.0
            floor = math.hypot(floor, ego * RECEIPT_JITTER_S)
        return slope, math.sqrt(noise_var / var), res_var, floor / math.sqrt(var)

    def snapshot(self, now: float) -> SensorSnapshot:
        """Judge every input at time ``now`` and return an immutable view."""
        cfg = self._cfg
        with self._lock:
            rng, speed, yaw_rate, speed_at = self._range, self._speed, self._yaw_rate, self._speed_at
            bad, invalid_since = self._invalid_why, self._invalid_since
            accel, accel_at = self._accel, self._accel_at
            fit = self._fit_locked()
            unweighed = fit is not None and math.isnan(fit[2])  # two scans: no residual to weigh them
            track_id = self._track_id if self._track else 0
            track_age = self._track[-1][0] - self._track_start if self._track else None
            receipt_why = self._receipt_why
            copies, step = self._copies, self._stamp_step_s
            held_moving = (None if rng is None or self._same_value is None
                           else self._moving_s_at(rng.received_at) - self._same_moving_s)
        faults: list[str] = []
        warnings: list[str] = []
        range_age = None if rng is None else now - rng.received_at
        odom_age = None if speed_at is None else now - speed_at
        imu_age = None if accel_at is None else now - accel_at

        bad_s = 0.0 if invalid_since is None else now - invalid_since  # the invalid run's length
        unreceived = [t for t, v in (("range", rng is None and bad is None), ("odom", speed is None),
                                     ("imu", cfg.imu_required and accel is None)) if v]
        if rng is None:
            faults.append("range: no reading received" if bad is None
                          else f"range: {bad}, and no valid reading received yet")
        elif (no_new := max(range_age or 0.0, bad_s)) > cfg.range_timeout_s:
            # the invalid run's own length counts too: a valid scan republished in it is no new reading
            times = "once" if copies == 1 else f"{copies} times"
            resent = (f": the scan stamped {rng.stamp_ns * 1e-9:.3f} s republished {times} since, no new one"
                      if copies else "")
            faults.append(f"range: stale ({range_age:.2f} s > {cfg.range_timeout_s} s){resent}" if bad is None else
                          f"range: {bad} for {bad_s:.2f} s: no valid reading for {no_new:.2f} s "
                          f"> range_timeout_s {cfg.range_timeout_s} s")
        else:
            r = rng.range_m
            if bad is not None:
                warnings.append(f"range: {bad} for {bad_s:.2f} s: the last valid reading ({range_age:.2f} s "
                                f"old) used until range_timeout_s {cfg.range_timeout_s} s")
            if rng.stamp_warning is not None and receipt_why is None:  # timed by receipt, stamps are not used
                warnings.append(f"range: {rng.stamp_warning}; the closing speed is timed by these stamps")
            if (reach := range_reach_warning(rng, speed, cfg)) is not None:
                warnings.append(reach)
            if receipt_why is None and step is not None and cfg.range_rate_window_s < WINDOW_STEPS * step:
                # Why: such a window holds one or two scans, so no closing speed is measured (or only
                # the sensor's noise): every object is taken as standing, a lead at the ego's speed a
                # brake on most frames, and nothing said why (review 2026-12-07). Not 2 steps: one
                # exactly that long holds a third scan only when the stamps do not jitter.
                warnings.append(f"range: rules.range_rate_window_s {cfg.range_rate_window_s:g} s holds fewer "
                                f"than 3 scans {step:.3f} s apart: no closing speed is measured")
            if held_moving is not None and cfg.range_stuck_s > 0.0:
                moving = speed is not None and speed > cfg.range_stuck_min_speed_mps
                if moving and held_moving >= cfg.range_stuck_s:
                    faults.append(f"range: stuck at {r:.2f} m (identical readings for {held_moving:.2f} s "
                                  f"of moving; range_stuck_s {cfg.range_stuck_s})")

        if speed is None:
            faults.append("odom: no reading received")
        elif odom_age is not None and odom_age > cfg.odom_timeout_s:
            faults.append(f"odom: stale ({odom_age:.2f} s > {cfg.odom_timeout_s} s)")
        elif not math.isfinite(speed) or speed < -MAX_PLAUSIBLE_REVERSE_MPS or speed > MAX_PLAUSIBLE_SPEED_MPS:
            faults.append(f"odom: implausible speed {speed!r} m/s")
        elif not math.isfinite(yaw_rate) or abs(yaw_rate) > MAX_PLAUSIBLE_YAW_RATE_RPS:
            # the same message as the speed: garbage in its twist is a fault of the odometry, and taken
            # for 0 it would tell the tracker a curve is straight (the inner kerb's person walks in)
            faults.append(f"odom: implausible yaw rate {yaw_rate!r} rad/s (twist.twist.angular.z)")

        if cfg.imu_required:
            if accel is None:
                faults.append("imu: no reading received")
            elif imu_age is not None and imu_age > cfg.imu_timeout_s:
                faults.append(f"imu: stale ({imu_age:.2f} s > {cfg.imu_timeout_s} s)")
            elif math.isnan(accel):
                faults.append("imu: no linear acceleration (NaN, or linear_acceleration_covariance[0] = -1)")
            elif not math.isfinite(accel) or abs(accel) > MAX_PLAUSIBLE_ACCEL_MPS2:
                faults.append(f"imu: implausible acceleration {accel!r} m/s^2")

        reverse = 0.0
        if speed is not None and math.isfinite(speed):
            if speed < -SPEED_NOISE_MPS and not any(f.startswith("odom:") for f in faults):
                reverse = -speed
            speed = max(speed, 0.0)
        if accel is not None and (not math.isfinite(accel) or abs(accel) > MAX_PLAUSIBLE_ACCEL_MPS2
                                  or (imu_age is not None and imu_age > cfg.imu_timeout_s)):
            # judged whether required or not: an optional IMU gone 10 s, or sending 1e6, reached the
            # model as the current accel_x while the diagnostic said "imu missing" (review 2026-12-07)
            accel = None
        return SensorSnapshot(
            taken_at=now,
            range=rng,
            range_age=range_age,
            range_rate=None if fit is None else fit[0],
            ego_speed=speed,
            ego_yaw_rate=None if speed is None else yaw_rate,
            odom_age=odom_age,
            accel_x=accel,
            imu_age=imu_age,
            faults=tuple(faults),
            range_rate_se=math.inf if fit is None else fit[1],
            range_rate_se_sensor=math.inf if fit is None else fit[3],
            reverse_mps=reverse,
            warnings=tuple(warnings),
            track_id=track_id,
            range_timed_by_receipt=receipt_why,
            unreceived=tuple(unreceived),
            range_rate_unweighed=unweighed,
            range_track_age_s=track_age,
        )


def invalid_range(reading: RangeReading) -> str | None:
    """Why a range reading is invalid (NaN, negative, outside [min_range, max_range]), or None.

    REP-117: +Inf is a clear road and -Inf an object within ``min_range``, both valid. A finite
    reading below ``min_range`` is not REP-117's "too close" (that is -Inf), and Range.msg says
    to discard it: read as an object at 0 m, one such sample (a driver's 0 for "no echo") was a
    brake and its 2 s hold at any speed.
    """
    r = reading.range_m
    if math.isnan(r):
        return "NaN reading (sensor error)"
    if math.isfinite(r) and r < 0.0:
        return f"negative reading {r:.2f} m"
    if math.isfinite(r) and r < reading.min_range:
        return f"{r:.2f} m below min_range {reading.min_range:.2f} m (REP-117: -Inf for an object that close)"
    if math.isfinite(r) and r > reading.max_range:
        return f"{r:.2f} m beyond max_range {reading.max_range:.2f} m"
    return None
