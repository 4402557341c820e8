"""Injected time.

The core never reads the wall clock: every driver hands it a :class:`Clock`, so the same
code runs in real time (ROS node, HIL) and in deterministic lockstep (simulator, bag replay).
"""

from __future__ import annotations

import math
import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic time source in seconds."""

    def now(self) -> float:
        """Return the current time in seconds on a monotonic scale."""
        ...


class MonotonicClock:
    """Real time: ``time.monotonic`` (immune to NTP steps and ROS sim time)."""

    def now(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()


class ManualClock:
    """Virtual time for lockstep runs and tests: it moves only when told to."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = start

    def now(self) -> float:
        """Return the current virtual time."""
        return self._t

    def advance(self, dt: float) -> None:
        """Move time forward by ``dt`` seconds (never backwards)."""
        if dt < 0:
            raise ValueError(f"ManualClock cannot go backwards (dt={dt})")
        self._t += dt

    def set(self, t: float) -> None:
        """Jump to absolute time ``t`` (must not be earlier than now)."""
        if t < self._t:
            raise ValueError(f"ManualClock cannot go backwards ({t} < {self._t})")
        self._t = t


#: Longest queueing a DDS receipt stamp may back-date a message by (more is another clock's stamp).
MAX_QUEUED_S = 1.0
#: A change of the wall clock against the monotonic one over this (beyond a slew's 0.1 %) is a step.
WALL_STEP_S = 0.002


class WallSteps:
    """Whether the wall clock, on which DDS stamps a message's receipt, is steady against the monotonic one.

    Why: a receipt is back-dated by its queueing, the wall clock now less its DDS receipt stamp; a
    step of the wall clock (chrony's makestep, a PTP daemon) while a message was queued counted as
    queueing, up to a second: a reading just received was stale, a fail-safe brake held 2 s (review).
    For ``MAX_QUEUED_S`` after a step no receipt is back-dated: a message queued across it may still
    come.
    """

    def __init__(self) -> None:
        self._offset: float | None = None  # wall - monotonic at the last receipt
        self._at = 0.0  # monotonic, then
        self._until = -math.inf  # no back-dating before this monotonic time

    def steady(self, wall_s: float, mono_s: float) -> bool:
        """Whether a wall-clock receipt stamp may be read against ``wall_s`` at ``mono_s``."""
        offset, last, at = wall_s - mono_s, self._offset, self._at
        self._offset, self._at = offset, mono_s
        if last is not None and abs(offset - last) > WALL_STEP_S + 1e-3 * max(0.0, mono_s - at):
            self._until = mono_s + MAX_QUEUED_S
        return mono_s >= self._until
