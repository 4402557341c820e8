"""Lockstep driver: the real model on a real bundle, latency from a deterministic budget."""

import numpy as np
import pytest

from tiny_node.clock import ManualClock
from tiny_node.config import make_config
from tiny_node.decision import ModelState, Source
from tiny_node.lockstep import Lockstep, model_from_bundle


def drive(bundle, budget_ms, gap0=60.0, speed=13.9, seconds=2.0):
    clock = ManualClock()
    ls = Lockstep(make_config(), model_from_bundle(bundle, clock, budget_ms=budget_ms), clock)
    img = np.full((120, 160, 3), 100, np.uint8)
    decisions = []
    for i in range(int(seconds * 60)):  # 60 Hz event grid: range/odom every step, camera every 2nd
        t = i / 60
        stamp = int(t * 1e9)
        decisions += ls.odom(t, speed)
        decisions += ls.range(t, gap0 - speed * t, stamp)
        if i % 2 == 0:
            decisions += ls.frame(t + 0.001, stamp, img)
    decisions += ls.finish()
    return decisions


def test_model_decides_within_budget_and_is_deterministic(bundles):
    a = drive(bundles["fast"], budget_ms=5.0, seconds=3.0)
    b = drive(bundles["fast"], budget_ms=5.0, seconds=3.0)
    assert len(a) == 90 and [d.frame_id for d in a] == sorted(d.frame_id for d in a)
    assert all(d.source in (Source.MODEL, Source.RULES) for d in a)
    # the model's answers take its budget; a rule brake is decided at once (model not asked)
    asked = [d for d in a if d.model_state is not ModelState.SKIPPED]
    skipped = [d for d in a if d.model_state is ModelState.SKIPPED]
    assert asked and all(d.latency_ms == pytest.approx(5.0) for d in asked)
    assert skipped and all(d.latency_ms == 0.0 and d.brake and d.rules.brake for d in skipped)
    assert [(d.brake, d.reason, d.decided_at) for d in a] == [(d.brake, d.reason, d.decided_at) for d in b]
    assert any(d.brake for d in a) and not a[0].brake


def test_budget_beyond_deadline_is_always_fallback_on_time(bundles):
    decisions = drive(bundles["fast"], budget_ms=80.0)
    assert len(decisions) == 60
    assert {d.source for d in decisions} == {Source.FALLBACK}
    assert {d.model_state for d in decisions} <= {ModelState.LATE, ModelState.UNAVAILABLE}
    assert all(d.decided_at <= d.deadline_at for d in decisions)


def test_model_gets_each_frame_time_and_a_two_frame_vlm_uses_its_history(tmp_path):
    from tiny_node.lockstep import LockstepModel
    from tiny_node.model.bundle import load_bundle
    from tiny_node.model.testvlm import make_tiny_vlm_bundle
    from tiny_node.model.vlm import VlmRuntime

    rt = VlmRuntime(load_bundle(make_tiny_vlm_bundle(tmp_path / "vlm2", frames=2)), threads=1)
    seen = []

    def infer(image, features, time_s):
        out = rt.decide(image, features, time_s=time_s)
        seen.append((time_s, rt.last_prev_age_s))
        return out

    clock = ManualClock()
    ls = Lockstep(make_config(), LockstepModel(infer, 0.005, clock), clock)
    img = np.full((64, 64, 3), 100, np.uint8)
    for k in range(12):  # 30 Hz camera, the model idle at every frame
        t = 1.0 + k / 30
        ls.odom(t - 0.01, 10.0)
        ls.range(t - 0.01, 80.0, int((t + 50.0) * 1e9))  # a clear road: the rules do not brake
        ls.frame(t, int((t + 50.0) * 1e9), img)  # the camera's clock is not the receiver's
    ls.finish()
    assert [s[0] for s in seen] == pytest.approx([51.0 + k / 30 for k in range(12)])  # the stamps
    assert seen[0][1] is None and seen[1][1] is None  # nothing 0.06-0.14 s back yet
    assert all(age == pytest.approx(0.1) for _, age in seen[3:])


def test_odometry_brings_its_yaw_rate_and_the_simulators_straight_road_gives_zero():
    ls = Lockstep(make_config())
    ls.odom(0.0, 10.0)
    assert ls.sensors.snapshot(0.0).features()["ego_yaw_rate"] == 0.0
    ls.odom(0.02, 10.0, 0.15)
    assert ls.sensors.snapshot(0.02).features()["ego_yaw_rate"] == 0.15
