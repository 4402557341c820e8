import math

import pytest

from tiny_node.config import RuleConfig
from tiny_node.sensors import RangeReading, SensorState, range_stamp_warning


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
    [(math.nan, "NaN"), (-2.0, "negative"), (150.0, "beyond max_range"), (0.1, "below min_range")],
)
def test_invalid_ranges_before_any_valid_one_are_faults(value, fault):
    s = SensorState(RuleConfig())
    s.update_range(rr(value, 0.0))
    s.update_odometry(5.0, 0.0)
    [f] = s.snapshot(0.01).faults
    assert fault in f and f.endswith("and no valid reading received yet")


@pytest.mark.parametrize(
    ("value", "fault"),
    [(math.nan, "NaN reading (sensor error)"), (-2.0, "negative reading -2.00 m"), (150.0, "150.00 m beyond max_range 100.00 m"),
     (0.0, "0.00 m below min_range 0.20 m (REP-117: -Inf for an object that close)")],
)
def test_an_invalid_range_is_a_missed_scan_until_range_timeout_s(value, fault):
    """One garbage sample is no fault (its fail-safe brake and hold at 130 km/h were for nothing):
    the last valid reading and the track stand, under a warning, until range_timeout_s."""
    s = SensorState(RuleConfig())  # range_timeout_s 0.5
    for i in range(6):  # closing at 10 m/s
        s.update_range(rr(30.0 - 0.5 * i, 0.05 * i))
    s.update_odometry(10.0, 0.25)
    for i in range(6, 12):
        s.update_range(rr(value, 0.05 * i))
        snap = s.snapshot(0.05 * i + 0.001)
        assert snap.faults == (), snap.faults
        assert snap.object_distance == 27.5 and snap.range_rate == pytest.approx(-10.0)
        [w] = snap.warnings
        assert w.startswith(f"range: {fault} for {0.05 * (i - 6) + 0.001:.2f} s: the last valid reading")
        assert snap.features()["range_valid"] == 1.0
    s.update_odometry(10.0, 0.7)
    [f] = s.snapshot(0.76).faults  # the last valid reading (0.25 s) is now 0.51 s old
    assert f == f"range: {fault} for 0.46 s: no valid reading for 0.51 s > range_timeout_s 0.5 s"
    s.update_range(rr(24.0, 0.6))  # a valid reading ends it: the track goes on (10 m/s since 0.25 s)
    snap = s.snapshot(0.61)
    assert snap.faults == () and snap.warnings == () and snap.range_rate == pytest.approx(-10.0, abs=0.5)


def test_a_valid_scan_republished_among_invalid_ones_does_not_keep_the_range_fresh():
    """A driver resending its last good scan (same stamp) between NaNs: no new reading, so the
    NaNs are a fault after range_timeout_s all the same (the republished scan had reset them)."""
    s = SensorState(RuleConfig())  # range_timeout_s 0.5
    for i in range(3):
        s.update_range(rr(30.0 - 0.5 * i, 0.05 * i))
    for k in range(3, 16):
        s.update_range(rr(math.nan, 0.05 * k))
        s.update_range(rr(29.0, 0.10, received=0.05 * k))  # the last good scan again, received now
    s.update_odometry(10.0, 0.75)
    [f] = s.snapshot(0.76).faults
    assert f.startswith("range: NaN reading (sensor error) for 0.61 s: no valid reading for 0.66 s")  # the scan of 0.10 s


@pytest.mark.parametrize("stamp_s", [0.32, 0.0])
def test_an_invalid_reading_late_or_badly_stamped_keeps_the_track(stamp_s):
    """A NaN reordered in transport (30 ms late) is dropped like any late sample; one stamped 0 is a
    missed scan whose stamp restarts nothing. Either dropped the track: 'assumed stationary' again."""
    s = SensorState(RuleConfig())
    for i in range(8):
        s.update_range(rr(60.0 - 0.5 * i, 0.05 * i))
    s.update_odometry(10.0, 0.35)
    s.update_range(rr(math.nan, stamp_s, received=0.36))
    snap = s.snapshot(0.36)
    assert snap.range_rate == pytest.approx(-10.0) and snap.faults == ()
    assert bool(snap.warnings) is (stamp_s == 0.0)  # the late one is not even a warning


def test_the_closing_speeds_error_as_the_sensors_own_noise_would_make_it():
    """Two points fit exactly, and a few points' residuals can be near 0: beside the error the
    residuals give, the snapshot says what the sensor's own noise (5 cm + 0.5 %) would give."""
    s = SensorState(RuleConfig())
    s.update_range(rr(20.0, 0.0))
    s.update_range(rr(19.3, 0.05))
    snap = s.snapshot(0.05)  # (0.05 + 0.005 x 19.3) m / sqrt(2 x 0.025^2 s^2) = 4.14 m/s
    assert snap.range_rate == pytest.approx(-14.0) and snap.range_rate_se == 0.0
    assert snap.range_rate_se_sensor == pytest.approx(4.144, abs=1e-3)
    s.update_range(rr(18.6, 0.10))  # an exact line: residuals 0, the sensor's noise unchanged
    assert s.snapshot(0.1).range_rate_se_sensor == pytest.approx((0.05 + 0.005 * 18.6) / math.sqrt(0.005))
    assert SensorState(RuleConfig()).snapshot(0.1).range_rate_se_sensor == math.inf  # no track


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


@pytest.mark.parametrize("speed", [-20.0, math.nan, math.inf, 250.0])
def test_implausible_speed_is_a_fault(speed):
    s = SensorState(RuleConfig())
    s.update_range(rr(10.0, 0.0))
    s.update_odometry(speed, 0.0)
    assert any(f.startswith("odom: implausible") for f in s.snapshot(0.01).faults)


def test_reversing_is_no_fault_and_its_speed_is_kept_apart():
    s = SensorState(RuleConfig())
    s.update_range(rr(10.0, 0.0))
    s.update_odometry(-2.0, 0.0)
    snap = s.snapshot(0.01)
    assert snap.faults == () and snap.reverse_mps == 2.0 and snap.ego_speed == 0.0
    s.update_odometry(-0.05, 0.02)  # standstill noise
    assert s.snapshot(0.03).reverse_mps == 0.0
    s.update_odometry(-2.0, 0.7)
    stale = s.snapshot(1.3)  # an odometry fault: its last speed says nothing, reversing included
    assert stale.odom_fault and stale.reverse_mps == 0.0


def test_the_yaw_rate_is_a_model_feature_from_the_same_odometry():
    s = SensorState(RuleConfig())
    s.update_range(rr(10.0, 0.0))
    assert math.isnan(s.snapshot(0.01).features()["ego_yaw_rate"])  # never received
    s.update_odometry(7.5, 0.0)
    assert s.snapshot(0.01).features()["ego_yaw_rate"] == 0.0  # a source without one: a straight road
    s.update_odometry(7.5, 0.0, -0.15)
    snap = s.snapshot(0.01)
    assert snap.faults == () and snap.ego_yaw_rate == -0.15 and snap.features()["ego_yaw_rate"] == -0.15
    assert math.isnan(s.snapshot(0.6).features()["ego_yaw_rate"])  # stale, as the speed


@pytest.mark.parametrize("yaw_rate", [math.nan, math.inf, -math.inf, 6.0])
def test_an_implausible_yaw_rate_is_an_odometry_fault_naming_the_field(yaw_rate):
    """Not a silent 0 (a straight road): the odometry is faulted, as for a NaN speed, so the rules go
    to their fail-safe and the model (and its tracker) is not asked."""
    s = SensorState(RuleConfig())
    s.update_range(rr(10.0, 0.0))
    s.update_odometry(7.5, 0.0, yaw_rate)
    snap = s.snapshot(0.01)
    assert snap.faults == (f"odom: implausible yaw rate {yaw_rate!r} rad/s (twist.twist.angular.z)",)
    assert snap.odom_fault is not None
    feats = snap.features()
    assert math.isnan(feats["ego_speed"]) and math.isnan(feats["ego_yaw_rate"])


def test_the_odometry_messages_angular_z_is_the_yaw_rate():
    pytest.importorskip("rclpy")
    from nav_msgs.msg import Odometry

    from tiny_node.ros.convert import odom_speed, odom_yaw_rate

    msg = Odometry()
    msg.twist.twist.linear.x, msg.twist.twist.angular.z = 9.0, 0.12
    s = SensorState(RuleConfig())
    s.update_range(rr(10.0, 0.0))
    s.update_odometry(odom_speed(msg), 0.0, odom_yaw_rate(msg))
    assert s.snapshot(0.01).features()["ego_yaw_rate"] == 0.12
    msg.twist.twist.angular.z = math.nan
    s.update_odometry(odom_speed(msg), 0.0, odom_yaw_rate(msg))
    assert s.snapshot(0.01).odom_fault == "odom: implausible yaw rate nan rad/s (twist.twist.angular.z)"


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


def test_a_value_repeated_at_a_standstill_is_timed_from_moving_off_not_before():
    """Stop-and-go with a quantised radar: 10 s behind a stopped lead at 3.00 m, then both move
    off. Timed from the first identical reading, the check took the standstill for "while
    moving" and fail-safe braked 0.15 s after moving off (review 2026-12-06); a value that stays
    through motion, a stop and motion again is still stuck once it has held for range_stuck_s
    of moving."""
    s = SensorState(RuleConfig(range_stuck_s=5.0))
    for k in range(221):  # 20 Hz range, odometry with it: 0 m/s for 10 s, then 1.05 m/s
        t = k * 0.05
        s.update_odometry(0.0 if t < 10.0 else 1.05, t)
        s.update_range(rr(3.0, t))
    assert s.snapshot(11.0).faults == ()  # 1 s of moving, not 11 s
    s = SensorState(RuleConfig(range_stuck_s=1.0))
    for k in range(61):  # moving 0.8 s, stopped 1 s, moving again: 0.8 + 1.2 s of moving
        t = k * 0.05
        s.update_odometry(0.0 if 0.8 <= t < 1.8 else 8.0, t)
        s.update_range(rr(20.0, t))
    faults = s.snapshot(3.0).faults
    assert len(faults) == 1 and faults[0].startswith("range: stuck at 20.00 m (identical readings for 2.0")


def test_repeated_no_return_is_not_stuck():
    s = SensorState(RuleConfig(range_stuck_s=1.0))
    last = _feed_constant(s, math.inf, 3.0, speed=10.0)
    assert s.snapshot(last).faults == ()


def _following(s: SensorState, dup: bool = False) -> None:
    """20 m/s behind a lead pulling away at 0.5 m/s from 15 m, 20 Hz for 1 s."""
    for i in range(20):
        t = i * 0.05
        r = 15.0 + 0.5 * t
        s.update_range(rr(r, t))
        if dup:  # the same scan a second time, 10 ms later
            s.update_range(rr(r, t, received=t + 0.01))
        s.update_odometry(20.0, t)


def test_a_repeated_scan_keeps_the_closing_speed():
    """A driver republishing its last scan (same stamp) wiped the track: closing speed unknown,
    the object taken as stationary, and a false RSS brake behind a lead going faster than us."""
    from tiny_node.rules import RulePath

    s = SensorState(RuleConfig())
    _following(s, dup=True)
    snap = s.snapshot(0.96)
    assert snap.range_rate == pytest.approx(0.5)
    assert snap.range.received_at == pytest.approx(0.95)  # the scan's age runs from its first copy
    assert snap.faults == () and not RulePath(RuleConfig()).decide(snap)[0].brake


@pytest.mark.parametrize("value", [math.inf, 40.0])
def test_a_scan_resent_after_the_sensor_died_goes_stale(value):
    """A driver resending its last scan (its stamp, its clear road) after the radar died kept the range
    fresh for ever: 3.5 s later the rule path still read "clear", no fault. Its age runs from the scan."""
    from tiny_node.rules import RulePath

    s = SensorState(RuleConfig())  # range_timeout_s 0.5
    for k in range(80):
        t = k * 0.05
        s.update_odometry(20.0, t)
        s.update_range(rr(value, min(t, 0.45), received=t))  # from k = 10 the scan of 0.45 s again
        if k == 19:
            assert s.snapshot(0.96).faults == (
                "range: stale (0.51 s > 0.5 s): the scan stamped 0.450 s republished 10 times since, no new one",)
    snap = s.snapshot(3.96)
    assert snap.faults[0].startswith("range: stale (3.51 s > 0.5 s)")
    assert RulePath(RuleConfig()).decide(snap)[0].brake  # the fail-safe, as for a silent radar
    s.update_range(rr(35.0, 4.0))  # a new scan ends it
    assert s.snapshot(4.0).faults == ()


@pytest.mark.parametrize("relay", [False, True])
def test_a_scan_resent_after_lost_scans_or_a_stamp_jump_still_goes_stale(relay):
    """Only the last step between stamps was kept: 0.35 s of lost scans (or one stamp 10 s ahead) as
    the sensor failed made its resent last scan read as a seldom-stamping driver's, never aged; and
    behind a relay (each message again 4 ms later) every stamp "had repeats", so the guard was off."""
    for lost, jump_s in ((range(23, 30), 0.0), (range(0), 10.0)):
        s = SensorState(RuleConfig())
        for k in range(50):
            t = 1.0 + 0.05 * k
            s.update_odometry(10.0, t)
            if k in lost:
                continue
            stamp = (t if k < 30 else 2.5) + (jump_s if k >= 30 else 0.0)  # from k = 31 the scan of k = 30 again
            for copy in ((0.0, 0.004) if relay else (0.0,)):
                s.update_range(rr(math.inf, stamp, received=t + copy))
        [f] = s.snapshot(3.51).faults  # the scan of 2.5 s resent from 2.55 s on
        assert f.startswith("range: stale (1.01 s > 0.5 s): the scan stamped"), f
        assert f"republished {39 if relay else 19} times" in f, f


def test_a_driver_back_on_its_stamps_from_receipt_timing_resending_its_scan_goes_stale():
    """Back from receipt timing, the step was measured against a receipt time: stamps 1000 s ahead of
    this clock read as a 1000 s step, and the resent scan stayed fresh for ever."""
    s = SensorState(RuleConfig())
    for k in range(40):
        t = 1.0 + 0.05 * k
        s.update_odometry(10.0, t)
        # a stamp stuck for 10 scans (timed by receipt), advancing again for three (back on the stamps),
        # then the third of those resent
        stamp = 1000.45 if 10 <= k < 20 else 1000.0 + min(t, 2.1)
        s.update_range(rr(30.0 - 0.1 * min(k, 22), stamp, received=t))
    assert s.snapshot(2.96).range_timed_by_receipt is None
    [f] = s.snapshot(2.96).faults
    assert f.startswith("range: stale (0.86 s > 0.5 s)") and "republished 17 times" in f, f


def test_a_driver_that_turns_to_whole_second_stamps_is_faulted_one_second_at_most():
    """Its first whole second reads as a resend (nothing else tells them apart then); the new stamp that
    ends it shows the repeats were new scans, and the driver is judged by its new step from there."""
    s = SensorState(RuleConfig())
    faulted = []
    for k in range(200):
        t = 1.0 + 0.05 * k
        s.update_odometry(10.0, t)
        s.update_range(rr(math.inf, t if k < 40 else math.floor(t), received=t))
        if s.snapshot(t + 0.001).faults:
            faulted.append(round(t, 2))
    assert faulted == [round(3.5 + 0.05 * i, 2) for i in range(10)]


@pytest.mark.parametrize("stamp_s", [
    lambda t: 5.0,  # a stamp set once (timed by receipt once the values change)
    lambda t: 5.0 + math.floor(t),  # whole seconds: twenty scans under one stamp
    lambda t: 5.0 + 0.6 * math.floor(t / 0.6),  # stamps 0.6 s apart
])
@pytest.mark.parametrize("value", [math.inf, 7.25])
def test_a_stamp_repeated_by_a_driver_that_stamps_seldom_is_new_scans_not_a_resend(stamp_s, value):
    """A repeated stamp is a resent scan only from a driver seen stamping every scan: one that stamps
    in whole seconds, or once, repeats it on new scans, and an empty road (+Inf) or a standstill behind
    a stopped car (7.25 m) went "stale" after 0.5 s, a fail-safe brake on every other frame."""
    s = SensorState(RuleConfig())
    for k in range(100):
        t = 1.0 + 0.05 * k
        s.update_odometry(10.0 if math.isinf(value) else 0.0, t)
        s.update_range(rr(value, stamp_s(t), received=t))
        assert s.snapshot(t + 0.001).faults == (), k


@pytest.mark.parametrize("order", [[12, 10, 11], [13, 10, 11, 12]])
def test_scans_reordered_two_or_three_deep_are_dropped(order):
    """The newest stands: taking the second late scan in a row (tried) took an older scan for the
    newest, the range 1.5 m farther, and the track restarted."""
    s = SensorState(RuleConfig())
    newest = max(order) * 0.05
    for i in [*range(10), *order]:
        t = 0.05 * i
        # on time until the newest; the delayed ones 10 ms apart after it
        received = t + 0.03 if i < 10 or i == max(order) else newest + 0.03 + 0.01 * order.index(i)
        s.update_odometry(15.0, received)
        s.update_range(rr(40.0 - 15.0 * t, t, received=received))
    snap = s.snapshot(newest + 0.1)
    assert snap.object_distance == pytest.approx(40.0 - 15.0 * newest) and snap.track_id == 1


def test_a_late_reordered_scan_neither_replaces_the_newest_nor_ends_the_track():
    from tiny_node.rules import RulePath

    s = SensorState(RuleConfig())
    _following(s)
    s.update_range(rr(14.0, 0.90, received=0.96))  # the scan before the newest, delivered late
    snap = s.snapshot(0.96)
    assert snap.range.stamp_ns == int(0.95 * 1e9) and snap.range.range_m == pytest.approx(15.475)
    assert snap.range_rate == pytest.approx(0.5)
    assert not RulePath(RuleConfig()).decide(snap)[0].brake
    # a step back longer than half the range timeout is a restarted clock: taken, a new track
    s.update_range(rr(30.0, 0.10, received=1.0))
    snap = s.snapshot(1.0)
    assert snap.range.range_m == 30.0 and snap.range_rate is None and snap.faults == ()


def test_a_repeated_stamp_with_new_values_is_not_stuck():
    """A sensor that never stamps (stamp constant) but measures: not a stuck sensor."""
    s = SensorState(RuleConfig(range_stuck_s=1.0))
    for i in range(40):
        t = i * 0.05
        s.update_range(rr(20.0 - 0.1 * i, 0.0, received=t))
        s.update_odometry(10.0, t)
    assert s.snapshot(1.95).faults == ()


def _lead_at_ego_speed(s: SensorState, stamp_ns, n: int = 40, closing: float = 0.0) -> None:
    """A lead 40 m ahead at 30 m/s (minus ``closing``), scans at 20 Hz stamped by ``stamp_ns(i)``."""
    for i in range(n):
        t = 1.0 + i * 0.05
        s.update_odometry(30.0, t)
        s.update_range(RangeReading(40.0 - closing * (t - 1.0) + 0.02 * (-1) ** i, 0.2, 100.0, stamp_ns(i), t))


@pytest.mark.parametrize("stamp_ns,why", [
    (lambda i: 0, "header.stamp unset (0)"),
    (lambda i: 7_000_000_000, "header.stamp not advancing (7000000000 on 3 new ranges)"),
])
def test_scans_a_driver_does_not_stamp_are_timed_by_their_receipt(stamp_ns, why):
    """A driver that leaves header.stamp at 0 (or never advances it) had its scans taken as one
    republished scan: no track ever formed, the lead was assumed stationary, and the RSS rule
    braked on every frame behind a lead at the ego's own 108 km/h."""
    from tiny_node.rules import RulePath

    rules = RulePath(RuleConfig())
    s = SensorState(RuleConfig())
    _lead_at_ego_speed(s, stamp_ns)
    snap = s.snapshot(2.96)
    assert snap.range_timed_by_receipt == why and snap.faults == () and snap.warnings == ()
    # three new ranges under one stamp make the driver unstamped; its track is kept, timed by receipt
    assert snap.range_rate == pytest.approx(0.0, abs=0.3) and snap.track_id == 1
    verdict, figures = rules.decide(snap)
    assert not verdict.brake, verdict.reason
    assert figures["closing_from"] == f"range_rate (scans timed by receipt: {why})"
    # and a closing one is measured as closing
    s = SensorState(RuleConfig())
    _lead_at_ego_speed(s, stamp_ns, closing=10.0)
    assert s.snapshot(2.96).range_rate == pytest.approx(-10.0, abs=0.3)


def test_copies_of_unstamped_scans_are_one_scan_and_never_lift_a_standing_childs_brake():
    """A relay republishing an unstamped 20 Hz radar at 100 Hz: timed by their receipt, the copies
    made a flat track (a rate of 0) that cleared a standing child 30 m ahead at 25 m/s."""
    from tiny_node.rules import RulePath

    rules = RulePath(RuleConfig())
    s = SensorState(RuleConfig())
    _lead_at_ego_speed(s, lambda i: 0, n=10)  # the driver is known unstamped by now
    s.update_odometry(25.0, 1.5)
    for i in range(20):
        t = 1.5 + i * 0.05
        for k in range(5):  # the scan and its four copies, 10 ms apart
            s.update_range(RangeReading(30.0 - 25.0 * i * 0.05, 0.2, 100.0, 0, t + 0.01 * k))
            s.update_odometry(25.0, t + 0.01 * k)
            verdict, _ = rules.decide(s.snapshot(t + 0.01 * k + 0.001))
            assert verdict.brake and verdict.refutes_track is None, verdict.reason
    assert s.snapshot(2.5).range_rate == pytest.approx(-25.0, abs=0.5)


def test_a_copy_of_an_unstamped_scan_between_nans_does_not_keep_the_range_fresh():
    s = SensorState(RuleConfig())
    _lead_at_ego_speed(s, lambda i: 0, n=10)
    last = s.snapshot(1.46).range
    for i in range(12):  # NaNs, each followed by the last valid scan again (a relay's copy)
        t = 1.5 + i * 0.05
        s.update_range(RangeReading(math.nan, 0.2, 100.0, 0, t))
        s.update_range(RangeReading(last.range_m, 0.2, 100.0, 0, t + 0.01))
        s.update_odometry(30.0, t)
    faults = s.snapshot(2.06).faults
    assert any(f.startswith("range: NaN reading (sensor error) for 0.5") for f in faults), faults


def _child_ahead(s: SensorState, scans, speed: float = 15.7):
    """Rule verdicts on every scan of ``scans`` ((receipt s, range m), unstamped) at ``speed``."""
    from tiny_node.rules import RulePath

    rules, out = RulePath(RuleConfig()), []
    for rcv, r in sorted(scans):
        s.update_odometry(speed, rcv)
        s.update_range(RangeReading(r, 0.2, 100.0, 0, rcv))
        out.append(rules.decide(s.snapshot(rcv + 0.001))[0])
    return out


@pytest.mark.parametrize("lag_s", [0.06, 0.12])
def test_a_lagging_copy_of_an_unstamped_scan_does_not_read_as_the_child_moving_away(lag_s):
    """A second publisher repeating each scan after the next one arrived: each copy, a few ms after
    a newer scan and farther, made a two-point track reading +80 m/s ("not closing")."""
    s = SensorState(RuleConfig())
    _lead_at_ego_speed(s, lambda i: 0, n=10)  # known unstamped by now
    scans = [(1.5 + i * 0.05, 30.0 - 15.7 * i * 0.05) for i in range(20)]
    verdicts = _child_ahead(s, scans + [(t + lag_s, r) for t, r in scans])
    assert all(v.brake and v.refutes_track is None for v in verdicts), [v.reason for v in verdicts if not v.brake]


def test_a_latency_step_after_a_childs_first_scan_does_not_lift_its_brake():
    """Delivery 90 ms later from the child's second scan on: the first interval read too long and
    the closing speed 3-4 times too low, which "showed" the child was not standing still."""
    s = SensorState(RuleConfig())
    _lead_at_ego_speed(s, lambda i: 0, n=10)
    scans = [(1.5 + i * 0.05 + (0.09 if i else 0.0), 30.0 - 15.7 * i * 0.05) for i in range(20)]
    assert all(v.brake and v.refutes_track is None for v in _child_ahead(s, scans))


@pytest.mark.parametrize("speed,object_speed", [(15.7, 0.0), (10.0, -15.0)])
def test_a_track_timed_by_receipt_that_shows_closing_makes_the_brake_final(speed, object_speed):
    """A standing child, or an oncoming car: once the track shows the object closing beyond its
    noise, the brake is no longer provisional (held brake_hold_s, not 0.5 s), and an oncoming car
    closes as measured, not at the ego's speed."""
    s = SensorState(RuleConfig())
    _lead_at_ego_speed(s, lambda i: 0, n=10)
    closing = speed - object_speed
    scans = [(1.5 + i * 0.05, 40.0 - closing * i * 0.05) for i in range(14)]  # the lead starts to close
    verdicts = _child_ahead(s, scans, speed=speed)[-4:]  # inside the RSS distance by now
    assert all(v.brake and v.provisional_track is None for v in verdicts), [v.reason for v in verdicts]
    assert f"object {object_speed:.1f} m/s" in verdicts[-1].reason


def test_one_nan_on_an_empty_road_is_no_lasting_fault_for_an_unstamped_driver():
    """Stamp 0 names no scan: +Inf again and again is new readings, not one scan republished, and
    one NaN among them was a fail-safe brake until an object came."""
    s = SensorState(RuleConfig())
    for i in range(40):
        t = 1.0 + i * 0.05
        s.update_odometry(25.0, t)
        s.update_range(RangeReading(math.nan if i == 10 else math.inf, 0.2, 100.0, 0, t))
    assert s.snapshot(2.96).faults == () and s.snapshot(2.96).warnings == ()


@pytest.mark.parametrize("stamp_ns,unstamped", [
    (lambda i: 5_000_000_000 + (i // 2) * 100_000_000, False),  # 100 ms stamps: two scans per stamp
    (lambda i: 5_000_000_000 + (i - (4 if i >= 20 else 0)) * 50_000_000, False),  # a step back by 0.2 s
    (lambda i: 5_000_000_000 + (i // 20) * 1_000_000_000, True),  # whole seconds: twenty scans per stamp
])
def test_a_stamp_repeated_now_and_then_is_no_unstamped_driver(stamp_ns, unstamped):
    """Three new ranges in a row under one stamp make a driver unstamped, not a clock stepping back
    or coarse stamps: switching clocks at every repeat restarted the track each time."""
    from tiny_node.rules import RulePath

    s = SensorState(RuleConfig())
    _lead_at_ego_speed(s, stamp_ns)
    snap = s.snapshot(2.96)
    assert (snap.range_timed_by_receipt is not None) is unstamped and snap.track_id == 1
    assert not RulePath(RuleConfig()).decide(snap)[0].brake


def test_a_stamped_driver_is_timed_by_its_stamps_and_a_republished_scan_stays_one_scan():
    s = SensorState(RuleConfig())
    _lead_at_ego_speed(s, lambda i: 5_000_000_000 + i * 50_000_000)
    assert s.snapshot(2.96).range_timed_by_receipt is None
    s.update_range(RangeReading(s.snapshot(2.96).range.range_m, 0.2, 100.0, 5_000_000_000 + 39 * 50_000_000, 2.97))
    snap = s.snapshot(2.97)
    assert snap.range_timed_by_receipt is None and snap.track_id == 1 and snap.range.received_at == 2.95


def test_an_imu_without_acceleration_is_not_a_measured_zero():
    """sensor_msgs/Imu: linear_acceleration_covariance[0] = -1 means no estimate; its zeros
    passed as 0 m/s^2, and a required IMU that measures no acceleration counted as healthy."""
    pytest.importorskip("rclpy")
    from sensor_msgs.msg import Imu

    from tiny_node.ros.convert import imu_accel_x

    msg = Imu()
    msg.linear_acceleration.x = 0.0
    assert imu_accel_x(msg) == 0.0
    msg.linear_acceleration_covariance[0] = -1.0
    accel = imu_accel_x(msg)
    assert math.isnan(accel)
    s = SensorState(RuleConfig(imu_required=True))
    s.update_range(rr(10.0, 0.0))
    s.update_odometry(5.0, 0.0)
    s.update_imu(accel, 0.0)
    snap = s.snapshot(0.01)
    assert snap.faults == ("imu: no linear acceleration (NaN, or linear_acceleration_covariance[0] = -1)",)
    assert snap.features()["accel_x"] == 0.0


def _behind(seed: int, gap: float, v: float, closing: float, brake_at: float, decel: float, seconds: float,
            ttc_s: float = 0.0):
    """Rule verdicts at 20 Hz, the ego at ``v`` behind a car ``closing`` m/s slower ``gap`` m ahead, with
    radar noise as the simulator's (5 cm + 0.5 % of range); the car brakes at ``decel`` from ``brake_at``
    s to a stop. Yields (t, snapshot, verdict)."""
    import numpy as np

    from tiny_node.rules import RulePath

    rng = np.random.default_rng(seed)
    cfg = RuleConfig(rss_max_ttc_s=ttc_s)
    s, rules = SensorState(cfg), RulePath(cfg)
    lead = v - closing
    for i in range(int(seconds / 0.05)):
        t = i * 0.05
        tb = max(0.0, t - brake_at)
        d = gap - closing * t - (0.5 * decel * tb * tb if decel * tb < lead else lead * lead / (2 * decel))
        s.update_range(rr(d + rng.normal(0.0, 0.05 + 0.005 * d), t, max_range=200.0))
        s.update_odometry(v, t)
        snap = s.snapshot(t)
        yield t, snap, rules.decide(snap)[0]


def _lead(seed: int, gap: float, v: float, brake_at: float, decel: float, seconds: float):
    """The first rule brake (s) or None behind a lead at the ego's speed, once a track is there (0.5 s)."""
    return next((t for t, _, verdict in _behind(seed, gap, v, 0.0, brake_at, decel, seconds)
                 if t >= 0.5 and verdict.brake), None)


@pytest.mark.parametrize(("gap", "v"), [(14.0, 13.9), (28.0, 22.2), (42.0, 27.8)])
def test_following_a_lead_at_our_speed_inside_the_rss_distance_is_no_brake(gap, v):
    """The range-rate noise passed for closing: the rules braked within a second of following
    a car at 1-1.5 s (sim: every such run a false activation at 0.3-0.7 s)."""
    for seed in range(3):
        assert _lead(seed, gap, v, brake_at=1e9, decel=0.0, seconds=60.0) is None


@pytest.mark.parametrize(("decel", "within_s"), [(6.0, 0.7), (2.0, 1.2)])
def test_a_lead_that_brakes_is_braked_for_soon(decel, within_s):
    """CCRb-like, 50 km/h at 12 m: the RSS rule acts once the closing stands out of the noise."""
    for seed in range(5):
        t = _lead(seed, 12.0, 13.9, brake_at=2.0, decel=decel, seconds=5.0)
        assert t is not None and 2.0 < t <= 2.0 + within_s


def _slower_car(seed: int, closing: float, brake_at: float, decel: float, seconds: float = 6.0,
                ttc_s: float = 0.0):
    """Behind a car ``closing`` m/s slower, 50 m ahead at 108 km/h (see :func:`_behind`)."""
    return _behind(seed, 50.0, 30.0, closing, brake_at, decel, seconds, ttc_s)


def test_a_slower_car_far_ahead_with_the_rss_ttc_limit_is_no_brake_and_braked_for_once_it_brakes():
    """108 km/h, 50 m behind a car 1.5 m/s slower: inside the RSS distance (a_obj > a_ego) all along. With
    rules.rss_max_ttc_s 8 it is no brake, and the same car braking at 4 m/s^2 is braked for within the
    equal-braking distance or 8 s of TTC (1.05-1.2 s after it began)."""
    for seed in range(5):
        steady = [(t, v) for t, _, v in _slower_car(seed, 1.5, brake_at=1e9, decel=0.0, ttc_s=8.0) if t >= 1.0]
        assert not any(v.brake for _, v in steady), [v.reason for _, v in steady if v.brake][:1]
        first = next(t for t, _, v in _slower_car(seed, 1.5, brake_at=2.0, decel=4.0, ttc_s=8.0) if v.brake and t >= 1.0)
        assert 2.0 < first <= 3.3, (seed, first)


def test_a_big_endian_16_bit_image_message_is_read_by_its_high_byte():
    """The node passes the message's ``is_bigendian`` to the decoder: a big-endian mono16 frame read
    as little-endian would take each pixel's low byte (0x34 for 0x1234, 0xAB for 0xCDAB)."""
    pytest.importorskip("rclpy")
    import numpy as np
    from sensor_msgs.msg import Image

    from tiny_node.ros.convert import image_to_rgb

    px = np.array([[0x1234, 0xCDAB]], ">u2")
    msg = Image(height=1, width=2, encoding="mono16", is_bigendian=1, step=4, data=px.tobytes())
    rgb, fault = image_to_rgb(msg, 64, 64)
    assert fault is None and rgb[0, :, 0].tolist() == [0x12, 0xCD]


def test_an_oncoming_car_at_10_hz_forms_a_track():
    """Ego 20 m/s, an oncoming car at 20 m/s, a 10 Hz radar: 4 m closer every scan. The second
    point was gated as if the object did not move (3 m): every scan restarted the track, and the
    rules took the closing for the ego's 20 m/s, half the truth (review 2026-12-06)."""
    s = SensorState(RuleConfig())
    for k in range(4):
        t = k * 0.1
        s.update_odometry(20.0, t)
        s.update_range(rr(130.0 - 40.0 * t, t, max_range=200.0))
    assert s.snapshot(0.3).range_rate == pytest.approx(-40.0, abs=0.1)
    # standing still, the gate stays range_jump_m around no motion: another object 4 m closer is not joined
    s = SensorState(RuleConfig())
    s.update_odometry(0.0, 0.0)
    s.update_range(rr(20.0, 0.0))
    s.update_range(rr(16.0, 0.1))
    assert s.snapshot(0.1).range_rate is None


def test_a_slow_robot_is_checked_for_a_stuck_range_below_the_default_speed():
    """The check's "moving" was a constant 1 m/s: a robot at 0.5 m/s was never checked."""
    for min_speed, stuck in ((1.0, False), (0.3, True)):
        s = SensorState(RuleConfig(range_stuck_s=1.0, range_stuck_min_speed_mps=min_speed))
        for k in range(31):
            t = k * 0.05
            s.update_odometry(0.5, t)
            s.update_range(rr(5.0, t))
        assert any(f.startswith("range: stuck at 5.00 m") for f in s.snapshot(1.5).faults) == stuck


def test_a_range_stamp_on_another_clock_is_a_warning_while_its_stamps_time_the_track():
    """Range stamped 5 s ahead, or on system time against /clock: the track timed by those stamps
    and the decision at level OK, without a word (ROS-integration review)."""
    now = 100 * 10**9
    assert range_stamp_warning(now + 5 * 10**9, now, 0.5, 0.5) == (
        "header.stamp 5.00 s ahead of the node clock (another clock? use_sim_time on one side only?)")
    assert range_stamp_warning(now - 2 * 10**9, now, 0.5, 0.5).startswith(
        "header.stamp 2.00 s behind the node clock at receipt (> range_timeout_s 0.5 s")
    assert range_stamp_warning(now + 4 * 10**8, now, 0.5, 0.5) is None  # within the tolerance
    assert range_stamp_warning(now - 4 * 10**8, now, 0.5, 0.5) is None  # a driver's usual latency
    assert range_stamp_warning(0, now, 0.5, 0.5) is None  # unstamped: timed by receipt, judged there
    assert range_stamp_warning(now, 0, 0.5, 0.5) is None  # no /clock yet
    s = SensorState(RuleConfig())
    s.update_odometry(10.0, 1.0)
    why = range_stamp_warning(now + 5 * 10**9, now, 0.5, 0.5)
    s.update_range(RangeReading(40.0, 0.2, 150.0, now + 5 * 10**9, 1.0, why))
    snap = s.snapshot(1.0)
    assert not snap.faults and snap.warnings == (
        f"range: {why}; the closing speed is timed by these stamps",)
    s.update_range(RangeReading(39.0, 0.2, 150.0, now + 5 * 10**9 + 10**8, 1.1))  # on the node's clock again
    assert s.snapshot(1.1).warnings == ()


def test_a_tracks_first_two_scans_are_an_unknown_rate_to_the_model():
    """At a node's start, two scans 50 ms apart (0.2 m of noise each at 32 m) read a standing car
    as closing at 19.7 m/s against 8.4 true: the model braked at TTC 3.9 s (held 2 s); in HIL a
    new object at 32 m after one at 5 m, its rate weighed by the noise measured at 5 m, did the
    same. The rules keep the rate (their provisional brakes are judged by the sensor's own noise floor)."""
    s = SensorState(RuleConfig())
    s.update_odometry(8.36, 0.0)
    s.update_range(rr(32.5, 0.0))
    s.update_range(rr(32.5 - 0.42 - 0.56, 0.05))  # 8.36 m/s * 0.05 s, and 0.56 m of noise
    snap = s.snapshot(0.05)
    assert snap.range_rate == pytest.approx(-19.6) and snap.range_rate_unweighed
    assert snap.features()["range_rate"] == 0.0  # "unknown" to the model
    s.update_range(rr(32.5 - 0.84 + 0.1, 0.10))
    third = s.snapshot(0.10)
    assert not third.range_rate_unweighed and third.features()["range_rate"] == third.range_rate
    # a new track's first two scans, a noise measured before or not
    s.update_range(rr(10.0, 0.15))
    s.update_range(rr(9.58, 0.20))
    young = s.snapshot(0.20)
    assert young.track_id == 2 and young.range_rate == pytest.approx(-8.4) and young.range_rate_unweighed
    assert young.features()["range_rate"] == 0.0
    s.update_range(rr(9.16, 0.25))
    assert s.snapshot(0.25).features()["range_rate"] == pytest.approx(-8.4)


def _closing_track(s: SensorState, hz: float, seconds: float, t0: float = 0.0) -> list[tuple[float, float]]:
    """Noisy scans of an object closing at 10 m/s, ``hz`` for ``seconds`` from ``t0``; the (t, range) fed."""
    import random

    noise = random.Random(7)
    fed = []
    for i in range(round(hz * seconds)):
        t = t0 + i / hz
        r = 120.0 - 10.0 * t + noise.gauss(0.0, 0.05)
        s.update_odometry(10.0, t)
        s.update_range(RangeReading(r, 0.2, 200.0, round(t * 1e9), t))
        fed.append((round(t * 1e9) * 1e-9, r))
    return fed


def _window_slope(fed: list[tuple[float, float]], window_s: float) -> float:
    """The least-squares slope over every scan of the last ``window_s``, as the fit defines it."""
    import numpy as np

    t_last = fed[-1][0]
    pts = np.array([(t, r) for t, r in fed if t_last - t <= window_s])
    return float(np.polyfit(pts[:, 0], pts[:, 1], 1)[0])


@pytest.mark.parametrize(("hz", "window_s"), [(20, 5.0), (50, 2.0), (100, 5.0)])
def test_the_range_rate_is_fitted_over_the_whole_window(hz, window_s):
    """64 scans were kept whatever the window: at 20 Hz a 5 s window was fitted over 3.15 s, at 50 Hz
    a 2 s one over 1.26 s (range sensors up to sensors.MAX_RANGE_RATE_HZ are covered)."""
    s = SensorState(RuleConfig(range_rate_window_s=window_s, range_stuck_s=0.0))
    fed = _closing_track(s, hz, 1.5 * window_s)
    snap = s.snapshot(fed[-1][0])
    assert snap.range_rate == pytest.approx(_window_slope(fed, window_s), rel=1e-9)
    assert snap.range_rate != pytest.approx(_window_slope(fed[-64:], window_s), rel=1e-9)  # not the last 64 only


def test_reconfiguring_the_range_rate_window_resizes_the_track():
    """Shrunk, the track keeps its newest scans; widened, the window is covered as scans come."""
    s = SensorState(RuleConfig(range_rate_window_s=5.0, range_stuck_s=0.0))
    fed = _closing_track(s, 20, 6.0)
    s.reconfigure(RuleConfig(range_rate_window_s=0.5, range_stuck_s=0.0))
    assert s.snapshot(fed[-1][0]).range_rate == pytest.approx(_window_slope(fed, 0.5), rel=1e-9)
    assert len(s._track) == 64 and s._track[-1][0] == pytest.approx(fed[-1][0])  # the old default size, newest kept
    s.reconfigure(RuleConfig(range_rate_window_s=4.0, range_stuck_s=0.0))
    fed += _closing_track(s, 20, 4.0, t0=6.0)
    assert s.snapshot(fed[-1][0]).range_rate == pytest.approx(_window_slope(fed, 4.0), rel=1e-9)


@pytest.mark.parametrize(("hz", "window", "warned"), [(20, 0.5, False), (20, 0.11, False), (20, 0.05, True),
                                                       (10, 0.1, True), (10, 0.25, False), (4, 0.5, True)])
def test_a_window_of_fewer_than_three_scans_is_a_sensor_warning(hz, window, warned):
    """Such a window measures no closing speed: every object taken as standing, a lead at the ego's
    speed braked on most frames, and nothing said why (review 2026-12-07)."""
    s = SensorState(RuleConfig(range_rate_window_s=window))
    for i in range(20):
        t = 1.0 + i / hz
        s.update_odometry(13.9, t)
        s.update_range(RangeReading(20.0 - 0.01 * i, 0.2, 200.0, round(t * 1e9), t))
    warnings = [w for w in s.snapshot(t).warnings if "range_rate_window_s" in w]
    assert bool(warnings) is warned, warnings
    if warned:
        assert warnings == [f"range: rules.range_rate_window_s {window:g} s holds fewer than 3 scans "
                            f"{1 / hz:.3f} s apart: no closing speed is measured"]


def test_an_optional_imu_stale_or_implausible_gives_the_model_no_acceleration():
    """Judged only when imu_required, an optional IMU last heard 10 s ago (-7.5 m/s^2), or sending
    1e6, reached the model as the current accel_x while the diagnostic said the IMU was missing."""
    s = SensorState(RuleConfig())
    s.update_range(rr(10.0, 0.0))
    s.update_odometry(5.0, 0.0)
    s.update_imu(-7.5, 0.0)
    assert s.snapshot(0.1).features()["accel_x"] == -7.5  # fresh: as sent
    s.update_range(rr(12.0, 10.0))
    s.update_odometry(5.0, 10.0)
    stale = s.snapshot(10.0)
    assert stale.faults == () and stale.accel_x is None and stale.features()["accel_x"] == 0.0
    s.update_imu(1e6, 10.0)
    garbage = s.snapshot(10.01)
    assert garbage.faults == () and garbage.features()["accel_x"] == 0.0
