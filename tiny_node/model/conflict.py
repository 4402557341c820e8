"""When a tracked VRU's path first meets the ego's corridor, at constant velocities.

Why: the language model reads each track's position and lateral speed as binned tokens, not
its time to conflict, and misses some people it tracks well: a child already in the lane
ahead, closing at the ego's speed, got P(brake) 0.13 (docs/MODEL_HISTORY.md, *Where urgent
recall is lost*). The brake labels are constant-velocity conflicts with the corridor
(``factory.scenes.conflict_time``); this is the same test on the tracker's estimate, so a
bundle can brake on it (``vlm.tracking.conflict``) whatever the model says. The model can add
a brake, never cancel one, and neither can this.

One function serves the runtime (one frame's records) and the factory's evaluation (a split's
records at once), so the figures measure exactly what the node does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiny_node.model.tracker import RECORD_FIELDS

_PRESENT, _DX, _Y, _VY, _VX_REL = (RECORD_FIELDS.index(f) for f in ("present", "dx", "y", "vy", "vx_rel"))


@dataclass(frozen=True)
class ConflictSpec:
    """``vlm.tracking.conflict``: brake when a track's conflict starts within ``brake_within_s``.

    ``half_width_m``: the corridor's half width as a track's centre sees it: half the ego's
    width, the labels' 0.2 m margin and half a person's width (0.91 + 0.2 + 0.24 m for the
    simulator's car). ``ego_length_m``: how long a track stays beside the ego once reached.
    ``min_closing_mps``: a track closing slower than this is not reached (a person walking
    ahead at the ego's speed, a stopped ego). ``min_p_brake``: below this P(brake) the model's
    word stands: a track in the path at which the model sees nothing at all is more likely a
    false detection than a person (a detection in night fog tracked in the lane got 0.001).
    The veto is only on the tracks the model was shown: its P(brake) says nothing about one
    it was not.
    """

    brake_within_s: float
    half_width_m: float = 1.35
    ego_length_m: float = 4.5
    min_closing_mps: float = 0.5
    min_p_brake: float = 0.0

    def vetoes(self, p_brake: float) -> bool:
        """Whether the model, having said ``p_brake``, vetoes its shown tracks' conflicts.

        Never an unshown track's: its P(brake) says nothing about it. The conflict that governs
        the decision is then the earliest of the tracks not shown, and that is the one the reason
        names and ``ModelOutput.conflict_s`` holds.
        """
        return p_brake < self.min_p_brake

    def brakes(self, conflict_s: float) -> bool:
        """Whether a conflict not vetoed (:meth:`vetoes`) brakes: it starts within the window."""
        return conflict_s < self.brake_within_s


def conflict_times(records: NDArray[Any], spec: ConflictSpec,
                   widen: tuple[float, float] = (0.0, 0.0)) -> NDArray[np.float64]:
    """The earliest conflict (s from now; inf: none) of track records ``[..., slots, fields]``.

    ``fields`` as ``tracker.RECORD_FIELDS`` (present, dx, y, vy, vx_rel; metres and m/s in the
    road frame, ``vx_rel`` negative when closing). A track conflicts while it is both level
    with the ego (from reaching the bumper at its closing speed until the ego's length has
    passed it) and inside the corridor laterally (``-half_width_m - widen[1] < y + vy t <
    half_width_m + widen[0]``). ``widen``: metres added on the left and on the right; on a curve
    the inner side (``VruTracker.sweep_widening``: the body runs inside the bumper's arc), 0 on a
    straight road, where the test is the labels' own.
    """
    rec = np.asarray(records, np.float64)
    if rec.ndim < 2 or rec.shape[-1] <= _VX_REL:
        raise ValueError(f"track records must be [..., slots, {len(RECORD_FIELDS)}] ({', '.join(RECORD_FIELDS)}), "
                         f"got shape {rec.shape}")
    present, dx, y, vy = rec[..., _PRESENT] > 0.5, rec[..., _DX], rec[..., _Y], rec[..., _VY]
    closing = -rec[..., _VX_REL]
    reached = present & (closing > spec.min_closing_mps)
    speed = np.where(reached, closing, 1.0)
    t_reach = dx / speed
    t_passed = t_reach + spec.ego_length_m / speed
    right, left = -spec.half_width_m - widen[1], spec.half_width_m + widen[0]  # 0 added: the same floats
    moving = np.abs(vy) > 1e-6
    vy_safe = np.where(moving, vy, 1.0)
    a, b = (right - y) / vy_safe, (left - y) / vy_safe
    inside = (right < y) & (y < left)
    lo = np.where(moving, np.minimum(a, b), np.where(inside, -np.inf, np.inf))
    hi = np.where(moving, np.maximum(a, b), np.where(inside, np.inf, -np.inf))
    start = np.maximum(np.maximum(lo, t_reach), 0.0)
    end = np.minimum(hi, t_passed)
    t = np.where(reached & (start < end), start, np.inf)
    return np.asarray(t.min(axis=-1), np.float64)
