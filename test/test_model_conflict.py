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
    assert veto.vetoes(go.p_brake) and not veto.vetoes(0.38)


def test_the_veto_is_below_min_p_brake_and_a_conflict_brakes_within_the_window() -> None:
    veto = ConflictSpec(brake_within_s=1.5, min_p_brake=0.3)
    assert veto.vetoes(0.29) and not veto.vetoes(0.3)
    assert veto.brakes(1.49) and not veto.brakes(1.5) and not veto.brakes(math.inf)
    assert not SPEC.vetoes(0.0)  # min_p_brake 0: no veto


def test_under_the_veto_the_unshown_conflict_is_the_one_reported_and_the_vetoed_one_said(tmp_path) -> None:
    """The shipped bundle, made to veto every conflict of a shown track: a shown person 4 m ahead
    in the path (0.5 s), and a third track the prompt has no slot for, also in the path (1.2 s).
    It brakes on the third; before, its reason and ``conflict_s`` named the vetoed 0.5 s one."""
    import shutil

    import yaml

    from tiny_node.model.bundle import DEFAULT_BUNDLE_DIR, MANIFEST, load_bundle, set_threshold
    from tiny_node.model.vlm import VlmRuntime

    root = tmp_path / "b"
    shutil.copytree(DEFAULT_BUNDLE_DIR, root)
    set_threshold(root, 1.0)  # the model alone never brakes
    doc = yaml.safe_load((root / MANIFEST).read_text())
    doc["vlm"]["tracking"]["conflict"]["min_p_brake"] = 0.999  # and vetoes its shown tracks' conflicts
    (root / MANIFEST).write_text(yaml.safe_dump(doc, sort_keys=False))
    rt = VlmRuntime(load_bundle(root), threads=1)
    grey = np.full((480, 640, 3), 110, np.uint8)
    feats = {"ego_speed": 8.0, "range": float("inf"), "range_rate": 0.0, "range_valid": 0.0}
    shown = [[1.0, 4.0, 0.3, 0.0, -8.0], [1.0, 30.0, 6.0, 0.0, -8.0]]
    out = rt.decide(grey, feats, tracks=np.asarray([*shown, [1.0, 9.6, 0.3, 0.0, -8.0]], np.float32), time_s=0.0)
    assert out.brake and out.conflict_brake and out.conflict_s == pytest.approx(1.2)
    assert "track conflict in 1.2 s (vru2 9.6 m" in out.tracks and "not among the tracks shown" in out.tracks
    assert "track conflict in 0.5 s vetoed by the model (P(brake) " in out.tracks
    # the unshown one beyond the window: no brake, and how near it came is still reported
    out = rt.decide(grey, feats, tracks=np.asarray([*shown, [1.0, 16.0, 0.3, 0.0, -8.0]], np.float32), time_s=0.0)
    assert not out.brake and not out.conflict_brake and out.conflict_s == pytest.approx(2.0)
    assert "vetoed by the model" in out.tracks
    # the shown conflict alone, vetoed: no conflict counts, and the reason says why it did not brake
    out = rt.decide(grey, feats, tracks=np.asarray(shown, np.float32), time_s=0.0)
    assert not out.brake and out.conflict_s == math.inf and "track conflict in 0.5 s vetoed" in out.tracks
