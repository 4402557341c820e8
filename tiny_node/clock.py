"""Injected time.

The core never reads the wall clock: every driver hands it a :class:`Clock`, so the same
code runs in real time (ROS node, HIL) and in deterministic lockstep (simulator, bag replay).
"""

from __future__ import annotations

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
