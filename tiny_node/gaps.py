"""Frames lost in transport, counted from DDS publication sequence numbers.

Best-effort camera topics lose frames silently (UDP fragments, a too small shared-memory
segment); each publisher numbers its samples, so a jump in that number is a loss we can
count and report instead of guessing from stamps.
"""

from __future__ import annotations


class GapCounter:
    """Per-publisher last sequence number; :meth:`observe` returns how many were skipped."""

    def __init__(self) -> None:
        self._last: dict[bytes, int] = {}
        self.lost = 0

    def observe(self, publisher: bytes, seq: int) -> int:
        """Record sample ``seq`` of ``publisher``; return the samples missing before it."""
        last = self._last.get(publisher)
        if last is not None and seq <= last:
            return 0  # duplicate or reordered: not a loss
        self._last[publisher] = seq
        missing = 0 if last is None else seq - last - 1
        self.lost += missing
        return missing
