"""Frames lost in transport, counted from DDS publication sequence numbers.

Best-effort camera topics lose frames silently (UDP fragments, a too small shared-memory
segment); each publisher numbers its samples, so a jump in that number is a loss we can
count and report instead of guessing from stamps.
"""

from __future__ import annotations

#: missing sample numbers remembered per publisher (the newest), so a late one is not a loss
MAX_MISSING = 256


class GapCounter:
    """Per-publisher last sequence number; :meth:`observe` returns the change in samples lost."""

    def __init__(self) -> None:
        self._last: dict[bytes, int] = {}
        self._missing: dict[bytes, set[int]] = {}
        self.lost = 0

    def observe(self, publisher: bytes, seq: int) -> int:
        """Record sample ``seq`` of ``publisher``; return how many more samples are now lost.

        A jump counts the samples skipped as lost; one of them arriving late (a reordering
        link) is no loss after all: -1. Why: counted when the gap was seen and never taken
        back, samples 1, 3, 2, 4 read as one lost (review).
        """
        last = self._last.get(publisher)
        missing = self._missing.setdefault(publisher, set())
        if last is not None and seq <= last:
            if seq in missing:  # reordered: the gap it left is filled
                missing.discard(seq)
                self.lost -= 1
                return -1
            return 0  # a duplicate, or a gap too old to remember
        self._last[publisher] = seq
        if last is None:
            return 0
        skipped = seq - last - 1
        missing.update(range(max(last + 1, seq - MAX_MISSING), seq))
        if len(missing) > MAX_MISSING:
            for old in sorted(missing)[:len(missing) - MAX_MISSING]:
                missing.discard(old)
        self.lost += skipped
        return skipped
