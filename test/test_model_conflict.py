"""A track's constant-velocity conflict with the ego's corridor, and the brake a bundle takes on it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tiny_node.model.bundle import DecisionSpec
from tiny_node.model.conflict import ConflictSpec, conflict_times
from tiny_node.model.output import brake_on_conflict, read_decision

SPEC = ConflictSpec(brake_within_s=1.5)  # corridor half width 1.35 m, ego 4.5 m long
EMPTY = [0.0, 0.0, 0.0, 0.0, 0.0]


def one(present: float, dx: float, y: float, vy: float, vx_rel: float) -> float:
    return float(conflict_times(np.asarray([[present, dx, y, vy, vx_rel], EMPTY]), SPEC))


def test_a_person_standing_in_the_path_conflicts_when_the_ego_reaches_them() -> None:
    assert math.isclose(one(1.0, 10.0, 0.3, 0.0, -10.0), 1.0)
    assert one(0.0, 10.0, 0.3, 0.0, -10.0) == math.inf  # an empty slot is no track


def test_a_crossing_conflicts_when_it_enters_the_corridor_if_the_ego_is_still_level() -> None:
    # 3 m right, walking left at 1.5 m/s: inside |y| < 1.35 from 1.1 s to 2.9 s
    assert math.isclose(one(1.0, 25.0, -3.0, 1.5, -12.5), 2.0)  # the ego arrives at 2.0 s: conflict then
    assert math.isclose(one(1.0, 10.0, -3.0, 1.5, -12.5), 1.1)  # the ego is level from 0.8 to 1.16 s
    assert one(1.0, 5.0, -3.0, 1.5, -12.5) == math.inf  # the ego has passed (0.76 s) before they step in


def test_no_conflict_beside_the_lane_moving_away_or_not_closing() -> None:
    assert one(1.0, 8.0, -2.5, 0.0, -10.0) == math.inf  # standing at the kerb
    assert one(1.0, 8.0, -2.0, -1.0, -10.0) == math.inf  # walking away from the lane
    assert one(1.0, 8.0, 0.0, 0.0, -0.3) == math.inf  # walking ahead at the ego's speed
    assert one(1.0, 8.0, 0.0, 0.0, 2.0) == math.inf  # pulling away


def test_the_earliest_slot_decides_and_any_leading_shape_is_taken() -> None:
    frame = np.asarray([[1.0, 20.0, 0.0, 0.0, -10.0], [1.0, 5.0, 0.5, 0.0, -10.0]])
    assert math.isclose(float(conflict_times(frame, SPEC)), 0.5)
    batch = np.stack([frame, np.zeros_like(frame)])
    assert conflict_times(batch, SPEC).tolist() == [0.5, math.inf]
    with pytest.raises(ValueError, match=r"track records must be \[\.\.\., slots, 5\]"):
        conflict_times(frame[:, :4], SPEC)  # no closing speed: no conflict time


def test_the_conflict_adds_a_brake_below_the_threshold_and_never_cancels_one() -> None:
    spec = DecisionSpec(name="logits", kind="softmax", labels=("go", "brake"), brake_label="brake", threshold=0.6)
    go = read_decision([1.0, 0.0], spec)  # P(brake) 0.27
    assert not go.brake
    braked = brake_on_conflict(go, 1.2, SPEC, spec)
    assert braked.brake and braked.label == "brake" and braked.p_brake == go.p_brake and braked.conflict_s == 1.2
    assert braked.conflict_brake and not go.conflict_brake
    assert not brake_on_conflict(go, 1.6, SPEC, spec).brake  # too late to count
    assert not brake_on_conflict(go, 0.2, None, spec).brake  # a bundle without the conflict brake
    brake = read_decision([0.0, 2.0], spec)
    assert brake_on_conflict(brake, math.inf, SPEC, spec).brake
    assert not brake_on_conflict(brake, math.inf, SPEC, spec).conflict_brake  # the model's own brake
    assert brake_on_conflict(brake, 1.0, SPEC, spec).conflict_brake  # both: the conflict's counted too
    veto = ConflictSpec(brake_within_s=1.5, min_p_brake=0.3)  # the model sees nothing there: its word stands
    vetoed = brake_on_conflict(go, 1.2, veto, spec)
    assert not vetoed.brake and not vetoed.conflict_brake and vetoed.conflict_s == 1.2
    assert brake_on_conflict(read_decision([0.5, 0.0], spec), 1.2, veto, spec).brake  # P 0.38


def test_the_models_veto_holds_for_the_tracks_it_was_shown_only() -> None:
    """A conflict of a track the prompt had no slot for brakes whatever P(brake): the model's P
    is about the tracks it was shown (review of the every-track change, 2026-12-06)."""
    spec = DecisionSpec(name="logits", kind="softmax", labels=("go", "brake"), brake_label="brake", threshold=0.6)
    veto = ConflictSpec(brake_within_s=1.5, min_p_brake=0.3)
    go = read_decision([1.0, 0.0], spec)  # P(brake) 0.27, under the veto
    unshown = brake_on_conflict(go, 0.9, veto, spec, unshown_s=0.9)
    assert unshown.brake and unshown.conflict_brake and unshown.label == "brake"
    # a shown track's vetoed conflict first, an unshown one within the window later: it brakes
    assert brake_on_conflict(go, 0.4, veto, spec, unshown_s=1.3).brake
    assert not brake_on_conflict(go, 0.4, veto, spec, unshown_s=1.6).brake  # the unshown one too late
    assert veto.brakes(0.9, 0.0, 0.9) and not veto.brakes(0.9, 0.0) and veto.brakes(0.9, 0.3)
