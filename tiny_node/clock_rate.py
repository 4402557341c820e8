"""How fast the ROS clock runs against the steady clock: a simulator's real-time factor.

Why: the node times its deadline, brake hold, sensor timeouts and camera timeout on the steady
clock, since its compute is real. Under ``use_sim_time`` with a simulator that is not real
time, those last ``1 / rate`` times as long in simulated seconds (a 2 s hold covered 8 s of a
4x simulation, 0.5 s of a 0.25x one, and healthy 10 Hz sensors read as stale there). The node
cannot make them follow /clock without its deadline stopping with a paused simulator, so it
measures the rate and says so.
"""

from __future__ import annotations

from collections import deque

#: Samples over this much steady time are kept, and never fewer than MIN_SAMPLES; all but the
#: newest interval (about 5 s, at the default 1 s diagnostics period) judge the rate, and less
#: than MIN_SPAN_S judges nothing.
WINDOW_S = 6.0
#: Two intervals: the newest, left out, and one to judge. Why: with a diagnostics period of 6 s
#: or more only two readings were kept, and the rate was never measured (review 2026-12-08).
MIN_SAMPLES = 3
MIN_SPAN_S = 2.0
#: A rate within this of 1 is real time (a simulator's own jitter, a bag played at rate 1).
TOLERANCE = 0.1
#: Below this, /clock is taken as paused; and standing still this long (steady s).
PAUSED_RATE = 0.02
PAUSED_AFTER_S = 2 * MIN_SPAN_S
#: One reading that moved /clock this much further than the rate so far (or real time, if
#: faster) predicts, and JUMP_FACTOR times as far, is a step, not a rate: a replay stepping over
#: a log gap, a simulator skipping ahead.
JUMP_S = 2.0
JUMP_FACTOR = 3.0


class ClockRate:
    """The rate of ROS time against steady time over the last :data:`WINDOW_S`, and what it means."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()  # (steady s, ROS ns)
        self._moved = False  # /clock has moved since the measurement (re)started
        self._stood_since: float | None = None  # steady time from which /clock has stood still
        self._step_rate = 0.0  # the rate between the last two readings

    def observe(self, ros_ns: int, steady_s: float) -> None:
        """One reading of both clocks, taken together (the diagnostics period is plenty).

        ROS time 0 (no /clock yet) is not a reading. The measurement starts again at a step back
        (a bag looping, a simulator reset), and where /clock first moves after its first reading
        or after standing still for :data:`MIN_SPAN_S` or more (``replay --realtime`` holds it at
        the bag's start while it restarts the node; a simulator unpaused): a window across the
        pause would read a real-time clock as slow. A shorter stand is a coarse /clock (a 0.05x
        simulator's 10 Hz ticks come every 2 s) and is measured through. It starts again at a
        forward step (:data:`JUMP_S`), from the reading that stepped: a window across a replay's
        step over a log gap read a real-time clock as a fast one for 5 s.
        """
        if ros_ns <= 0:
            return
        last = self._samples[-1] if self._samples else None
        if last is None or ros_ns < last[1]:
            self._samples.clear()
            self._moved, self._stood_since, self._step_rate = False, None, 0.0
        elif ros_ns == last[1]:
            if self._stood_since is None:
                self._stood_since = last[0]
        else:
            if (not self._moved or self._is_step(ros_ns, steady_s, last)
                    or (self._stood_since is not None and last[0] - self._stood_since >= MIN_SPAN_S)):
                self._samples.clear()
            self._moved, self._stood_since = True, None
            self._step_rate = (ros_ns - last[1]) * 1e-9 / max(steady_s - last[0], 1e-9)
        self._samples.append((steady_s, ros_ns))
        while len(self._samples) > MIN_SAMPLES and steady_s - self._samples[1][0] >= WINDOW_S:
            self._samples.popleft()

    def _is_step(self, ros_ns: int, steady_s: float, last: tuple[float, int]) -> bool:
        """Whether /clock moved, since the last reading, by a step rather than at its rate.

        The rate it is held against is the fastest of real time, the window's and the last
        reading's: a fast simulator's first readings, before the window judges it, are no step.
        """
        moved_s = (ros_ns - last[1]) * 1e-9
        predicted_s = max(self.rate() or 0.0, self._step_rate, 1.0) * max(steady_s - last[0], 0.0)
        return moved_s - predicted_s > JUMP_S and moved_s > JUMP_FACTOR * predicted_s

    def rate(self) -> float | None:
        """Simulated seconds per real second, or None until :data:`MIN_SPAN_S` have been seen.

        While /clock stands, the rate up to where it stood (a coarse clock between its ticks),
        unknown once it has stood :data:`MIN_SPAN_S` (a 0.05x simulator's 2 s between ticks, one
        late), and 0 (paused) from twice that. Why: through a stand the rate fell by the second,
        and a real-time clock paused (or a ``replay --realtime`` at its end) read as a simulator
        at 0.81x, 0.64x, ... with "run the simulator in real time" (review 2026-12-07).

        The newest interval (up to the newest reading, or to where /clock stood) does not count:
        /clock may have stopped somewhere inside it (a pause, the end of a replay, between two
        readings), and counted it read a real-time clock as 0.89x, 0.86x, 0.81x (review
        2026-12-08). Any change is said one reading later. Left out only when slower than the
        window, as first done, it biased a coarse /clock (ticks about a reading apart) fast: a
        real-time 1.1 Hz one read 1.14x, a 0.85x one read 0.90x half the time (review).
        """
        samples = self._samples
        if len(samples) < 2:
            return None
        end = len(samples) - 1
        if self._stood_since is not None:
            now = samples[-1][0]
            if now - self._stood_since >= PAUSED_AFTER_S:
                return 0.0
            if now - self._stood_since >= MIN_SPAN_S:
                return None
            end = next((i for i in range(end, -1, -1) if samples[i][0] <= self._stood_since), -1)
            if end < 0:
                return None
        return _rate_between(samples[0], samples[end - 1]) if end >= 2 else None

    def warning(self) -> str | None:
        """Why the node's timers do not match simulated time now, or None (real time, or not known)."""
        rate = self.rate()
        if rate is None or abs(rate - 1.0) <= TOLERANCE:
            return None
        timers = "brake_hold_s, the sensor and camera timeouts and the deadline run on the steady clock"
        if rate < PAUSED_RATE:
            return f"/clock paused: {timers}, and go on while it is"
        return (f"sim time runs at {rate:.2f}x real time: {timers}, so in sim time they last "
                f"{1.0 / rate:.2f}x as long; run the simulator in real time, or replay in lockstep")


def _rate_between(a: tuple[float, int], b: tuple[float, int], min_span_s: float = MIN_SPAN_S) -> float | None:
    """Simulated seconds per real second from reading ``a`` to ``b``; None over less than ``min_span_s``."""
    span = b[0] - a[0]
    if span <= 0.0 or span < min_span_s - 1e-9:  # 2.0 s of readings summed to 1.9999999999999998
        return None
    return (b[1] - a[1]) * 1e-9 / span
