import math

import pytest

from tiny_node.config import RuleConfig
from tiny_node.sensors import RangeReading, SensorState


def rr(r, t, received=None, min_range=0.2, max_range=100.0):
    return RangeReading(r, min_range, max_range, int(t * 1e9), t if received is None else received)


def test_range_rate_from_stamps_and_staleness():
    s = SensorState(RuleConfig())
    for i in range(10):
        t = i * 0.05
        s.update_range(rr(30.0 - 10.0 * t, t))
    s.update_odometry(10.0, 0.45)
    snap = s.snapshot(0.46)
    assert snap.range_rate == pytest.approx(-10.0, abs=1e-6)
    assert snap.faults == ()
    stale = s.snapshot(1.2)
    assert any(f.startswith("range: stale") for f in stale.faults)
    assert any(f.startswith("odom: stale") for f in stale.faults)


def test_jump_starts_a_new_track():
    s = SensorState(RuleConfig())
    s.update_range(rr(30.0, 0.0))
    s.update_range(rr(29.5, 0.05))
    s.update_range(rr(12.0, 0.10))  # a different object cut in
    assert s.snapshot(0.1).range_rate is None


@pytest.mark.parametrize(
    ("value", "fault"),
    [(math.nan, "NaN"), (-2.0, "negative"), (150.0, "beyond max_range")],
)
def test_invalid_ranges_are_faults(value, fault):
    s = SensorState(RuleConfig())
    s.update_range(rr(value, 0.0))
    s.update_odometry(5.0, 0.0)
    assert any(fault in f for f in s.snapshot(0.01).faults)


def test_rep117_plus_inf_is_clear_not_a_fault():
    s = SensorState(RuleConfig())
    s.update_range(rr(math.inf, 0.0))
    s.update_odometry(5.0, 0.0)
    snap = s.snapshot(0.01)
    assert snap.faults == ()
    assert snap.object_distance == math.inf
    assert snap.features()["range_valid"] == 0.0


def test_model_features_carry_no_made_up_ego_speed():
    s = SensorState(RuleConfig())
    s.update_range(rr(10.0, 0.0))
    assert math.isnan(s.snapshot(0.01).features()["ego_speed"])  # never received
    s.update_odometry(7.5, 0.0)
    assert s.snapshot(0.01).features()["ego_speed"] == 7.5
    snap = s.snapshot(0.6)  # stale: the last speed is no longer the ego's speed
    assert snap.odom_fault is not None and math.isnan(snap.features()["ego_speed"])


@pytest.mark.parametrize("speed", [-1.0, math.nan, math.inf, 250.0])
def test_implausible_speed_is_a_fault(speed):
    s = SensorState(RuleConfig())
    s.update_range(rr(10.0, 0.0))
    s.update_odometry(speed, 0.0)
    assert any(f.startswith("odom: implausible") for f in s.snapshot(0.01).faults)


def test_imu_only_required_when_configured():
    s = SensorState(RuleConfig(imu_required=True))
    s.update_range(rr(10.0, 0.0))
    s.update_odometry(5.0, 0.0)
    assert any(f.startswith("imu:") for f in s.snapshot(0.01).faults)
    s2 = SensorState(RuleConfig())
    s2.update_range(rr(10.0, 0.0))
    s2.update_odometry(5.0, 0.0)
    assert s2.snapshot(0.01).faults == ()


def test_track_survives_a_missed_scan_but_not_a_long_gap():
    s = SensorState(RuleConfig())
    for i in range(6):
        s.update_range(rr(30.0 - 10.0 * i * 0.05, i * 0.05))
    s.update_range(rr(math.inf, 0.30))  # one scan without a return
    s.update_range(rr(30.0 - 10.0 * 0.35, 0.35))
    assert s.snapshot(0.36).range_rate == pytest.approx(-10.0, abs=1e-6)
    s.update_range(rr(10.0, 2.0))  # back after 1.65 s: a new track, no stale rate
    assert s.snapshot(2.01).range_rate is None


def test_no_return_for_longer_than_the_window_ends_the_track_and_its_rate():
    """An object that leaves the beam (no return from then on) must not leave its closing speed
    in the features for ever: the model read a stale closing rate beside a clear road, and
    braked (sim --realtime, a drive after a CCR run, on one node)."""
    s = SensorState(RuleConfig())
    for i in range(6):
        s.update_range(rr(30.0 - 10.0 * i * 0.05, i * 0.05))
    t = 0.30
    while t < 0.30 + 0.45:  # missed scans within the window: the track is kept
        s.update_range(rr(math.inf, t))
        t = round(t + 0.05, 3)
    assert s.snapshot(t).range_rate == pytest.approx(-10.0, abs=1e-6)
    while t < 3.0:  # then nothing for seconds
        s.update_range(rr(math.inf, t))
        t = round(t + 0.05, 3)
    snap = s.snapshot(t)
    assert snap.range_rate is None and snap.features()["range_rate"] == 0.0
    # stamps that go back (a bag looping, a new drive) with no return end it too
    s.update_range(rr(25.0, 10.0))
    s.update_range(rr(24.5, 10.05))
    s.update_range(rr(math.inf, 1.0))
    assert s.snapshot(10.1).range_rate is None


def _feed_constant(s: SensorState, value: float, seconds: float, speed: float) -> float:
    t = 0.0
    while t <= seconds + 1e-9:
        s.update_range(rr(value, t))
        s.update_odometry(speed, t)
        t = round(t + 0.05, 3)
    return t - 0.05


def test_range_repeated_bit_for_bit_while_moving_is_stuck():
    s = SensorState(RuleConfig(range_stuck_s=1.0))
    last = _feed_constant(s, 24.9, 0.95, speed=10.0)
    assert s.snapshot(last).faults == ()  # 0.95 s of repeats: not yet
    s.update_range(rr(24.9, 1.0))
    faults = s.snapshot(1.0).faults
    assert len(faults) == 1 and faults[0].startswith("range: stuck at 24.90 m")
    assert s.snapshot(1.0).features()["range_valid"] == 0.0
    s.update_range(rr(24.87, 1.05))  # a changing value clears it at once
    assert s.snapshot(1.05).faults == ()


@pytest.mark.parametrize(("speed", "stuck_s"), [(0.5, 1.0), (10.0, 0.0)])
def test_repeats_at_standstill_or_with_the_check_off_are_no_fault(speed, stuck_s):
    s = SensorState(RuleConfig(range_stuck_s=stuck_s))
    last = _feed_constant(s, 3.2, 3.0, speed=speed)
    assert s.snapshot(last).faults == ()


def test_repeated_no_return_is_not_stuck():
    s = SensorState(RuleConfig(range_stuck_s=1.0))
    last = _feed_constant(s, math.inf, 3.0, speed=10.0)
    assert s.snapshot(last).faults == ()
