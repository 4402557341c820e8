"""Visual tokens of recent frames, keyed by frame time: the earlier image of a two-frame prompt.

Why keep encoder outputs and not frames: each decision then runs the vision encoder once (on
the current frame) however many frames the prompt shows. Why keyed by the frame's own time
(the header stamp, or the driver's receipt time) and a tolerance: camera rates differ (30 Hz
in the simulator and on the HIL rig, 10-60 Hz elsewhere) and the model may skip frames while
busy, so "three frames ago" is not "0.1 s ago". No wall clock is read here: the caller passes
every time.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from numpy.typing import NDArray

from tiny_node.model.bundle import FrameSpec

MAX_ENTRIES = 64  # bounds memory if times stop advancing (each entry is ~T x hidden floats)


class FrameHistory:
    """The encoder outputs of the frames of the last ``interval + tolerance`` seconds."""

    def __init__(self, spec: FrameSpec) -> None:
        self.spec = spec
        self._items: deque[tuple[float, NDArray[Any]]] = deque(maxlen=MAX_ENTRIES)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget every frame (a new drive, a bag loop, a clock reset)."""
        self._items.clear()

    def pick(self, time_s: float) -> tuple[float, NDArray[Any]] | None:
        """(age in s, features) of the frame nearest to ``time_s - interval_s``, or None.

        None when no frame is within ``tolerance_s`` of that time (first frame, a gap, times
        going backwards).
        """
        target = time_s - self.spec.interval_s
        best: tuple[float, NDArray[Any]] | None = None
        best_err = self.spec.tolerance_s
        for t, feats in self._items:
            err = abs(t - target)
            if t < time_s and err <= best_err:
                best, best_err = (time_s - t, feats), err
        return best

    def add(self, time_s: float, feats: NDArray[Any]) -> None:
        """Remember a frame's features.

        A time at or before the newest clears the history first: the stream restarted (stamp
        jump backwards, repeated stamp).
        """
        if self._items and time_s <= self._items[-1][0]:
            self._items.clear()
        horizon = time_s - self.spec.interval_s - self.spec.tolerance_s
        while self._items and self._items[0][0] < horizon:
            self._items.popleft()
        self._items.append((time_s, feats))
