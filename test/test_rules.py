"""Rule path pinned at chosen distances (hand-computed), like Autoware AEB's tests."""

import dataclasses
import math

import pytest

from tiny_node.config import RuleConfig
from tiny_node.rules import RulePath, rss_distance, rss_distance_equal_braking, time_to_collision
from tiny_node.sensors import RangeReading, SensorSnapshot, SensorState

CFG = RuleConfig()  # t_r 0.5, a_ego 5, a_obj 8, margin 1, ttc 1.0


def snap(range_m: float, speed: float, rate: float | None = None, faults=(), min_range=0.2, max_range=150.0):
    """A snapshot as the sensors make it; a range rate comes from a range track (its id 1)."""
    rr = RangeReading(range_m, min_range, max_range, 0, 0.0)
    return SensorSnapshot(0.0, rr, 0.0, rate, speed, 0.0, None, None, tuple(faults),
                          track_id=0 if rate is None else 1)


def test_rss_distance_stationary_object_hand_computed():
    # 50 km/h = 13.889 m/s: 13.889*0.5 + 13.889^2/10 + 1 = 6.944 + 19.290 + 1 = 27.235 m
    assert rss_distance(50 / 3.6, 0.0, CFG) == pytest.approx(27.235, abs=1e-3)


def test_rss_distance_moving_and_oncoming_object():
    # lead at 20 km/h (5.556 m/s) braking at 8 m/s^2 stops in 1.929 m: subtracted
    assert rss_distance(50 / 3.6, 20 / 3.6, CFG) == pytest.approx(27.235 - 1.929, abs=1e-3)
    # oncoming at 5.556 m/s: its travel is added, never subtracted, and as RSS has it for opposite
    # directions: its response distance 5.556*0.5, then a stop no harder than the ego's, 5.556^2/10
    assert rss_distance(50 / 3.6, -20 / 3.6, CFG) == pytest.approx(27.235 + 2.778 + 3.086, abs=1e-3)
    # both at 50 km/h: 53.5 m (at 8 m/s^2 at once it was 39.3 m, "clear" at 46 m, TTC 1.7 s)
    assert rss_distance(50 / 3.6, -50 / 3.6, CFG) == pytest.approx(2 * 27.235 - 1.0, abs=1e-3)
    v, _ = RulePath(CFG).decide(snap(46.4, 50 / 3.6, rate=-100 / 3.6))
    assert v.brake and v.reason.startswith("RSS: object at 46.4 m <= safe distance 53.5 m")
    # the equal-braking distance of an oncoming object is its full RSS distance (it brakes at a_ego)
    assert rss_distance_equal_braking(50 / 3.6, -20 / 3.6, CFG) == rss_distance(50 / 3.6, -20 / 3.6, CFG)


def test_ttc():
    assert time_to_collision(20.0, 10.0) == 2.0
    assert time_to_collision(20.0, 0.0) == math.inf
    assert time_to_collision(20.0, -3.0) == math.inf


@pytest.mark.parametrize(
    ("range_m", "brake"),
    [(27.0, True), (27.5, False), (5.0, True), (100.0, False)],
)
def test_brake_threshold_at_50kmh_stationary(range_m, brake):
    verdict, figures = RulePath(CFG).decide(snap(range_m, 50 / 3.6))
    assert verdict.brake is brake
    assert figures["rss_distance_m"] == "27.23"


def test_uses_range_rate_when_available():
    # ego 13.9 m/s but the object moves away as fast: not closing -> no brake at 20 m
    verdict, figures = RulePath(CFG).decide(snap(20.0, 50 / 3.6, rate=0.5))
    assert not verdict.brake
    assert figures["closing_from"] == "range_rate"


def test_ttc_rule_for_a_closing_within_the_rss_noise():
    # 10 m/s behind a lead at 9.1 m/s, 0.8 m away: inside the RSS distance, but a measured closing of
    # 0.9 m/s is within its 1 m/s floor; TTC = 0.89 s < 1.0 s brakes
    verdict, figures = RulePath(CFG).decide(snap(0.8, 10.0, rate=-0.9))
    assert figures["rss_distance_m"] == "10.82" and figures["closing_noise_mps"] == "1.00"
    assert verdict.brake
    assert verdict.reason.startswith("TTC 0.89 s")
    # ego standing, object oncoming at 10 m/s, 8 m away: RSS distance 0 + 10*0.5 + 100/10 + 1 = 16 m
    verdict, figures = RulePath(CFG).decide(snap(8.0, 0.0, rate=-10.0))
    assert figures["rss_distance_m"] == "16.00" and verdict.brake and verdict.reason.startswith("RSS")


def test_rep117_infinities():
    clear, fig = RulePath(CFG).decide(snap(math.inf, 20.0))
    assert not clear.brake and clear.reason == "clear: nothing within max_range 150.00 m"
    assert "sensor_warnings" not in fig  # 150 m reach > 51 m needed at 20 m/s
    close, fig = RulePath(CFG).decide(snap(-math.inf, 1.0))
    assert close.brake and close.reason == "object closer than min_range 0.20 m (range -inf, REP-117)"
    assert fig["range_m"] == "-inf"


def _live(range_m: float, speed: float, max_range: float) -> SensorSnapshot:
    """A snapshot from the sensor state itself (where the sensor warnings are made)."""
    s = SensorState(CFG)
    s.update_range(RangeReading(range_m, 0.02, max_range, 1, 0.0))
    s.update_odometry(speed, 0.0)
    return s.snapshot(0.01)


def test_inf_from_a_sensor_too_short_for_the_speed_is_clear_under_a_warning():
    """REP-117 +Inf clears only up to max_range: a 4 m ultrasonic sensor at 30 m/s said 'clear: no
    object within range', level OK, where a standing object needs 106 m (UAT). The warning is the
    sensor state's, so the sensors diagnostic says it too."""
    short = _live(math.inf, 30.0, 4.0)
    v, fig = RulePath(CFG).decide(short)
    assert not v.brake and v.reason == "clear: nothing within max_range 4.00 m"
    # 30 * 0.5 + 900 / 10 + 1 = 106 m
    want = "range: clear only to its max_range 4.00 m, short of the RSS distance 106.00 m to a standing object at 30.00 m/s"
    assert short.warnings == (want,) and fig["sensor_warnings"] == want
    assert _live(math.inf, 1.0, 4.0).warnings == ()  # 0.5 + 0.1 + 1 m: enough
    assert _live(math.inf, 0.0, 0.5).warnings == ()  # standing: nothing to stop
    assert _live(3.0, 30.0, 4.0).warnings == ()  # an object seen: no +Inf to trust
    for unbounded in (0.0, math.nan):  # read as no limit
        v, fig = RulePath(CFG).decide(_live(math.inf, 30.0, unbounded))
        assert v.reason == "clear: no object within range" and "sensor_warnings" not in fig


@pytest.mark.parametrize(("speed", "rate"), [(0.0, None), (8.0, 0.0), (1.5, None)])
def test_a_valid_zero_reading_is_contact_a_brake_not_an_object_within_min_range(speed, rate):
    """A finite 0 m (valid with min_range 0) brakes whatever the closing speed, as -Inf does, and is
    not called 'closer than min_range' (a review caught the standing and not-closing cases cleared)."""
    v, fig = RulePath(CFG).decide(snap(0.0, speed, rate=rate, min_range=0.0, max_range=10.0))
    assert v.brake and v.reason == "object at 0.00 m" and fig["range_m"] == "0.00"
    v, fig = RulePath(CFG).decide(snap(-math.inf, speed, rate=rate))
    assert v.brake and v.reason == "object closer than min_range 0.20 m (range -inf, REP-117)"


def test_an_old_reading_is_the_distance_the_object_was_at_moved_to_now_by_the_closing():
    """A reading 0.45 s old (a dropout under range_timeout_s): at 50 km/h a standing object seen at
    30 m is 23.75 m away now, inside the 27.2 m RSS distance. Held as seen it was "clear", and the
    brake came 6 m late: a 19 km/h impact under the rule's own 5 m/s² (review 2026-12-08)."""
    v_ego = 50 / 3.6
    old = dataclasses.replace(snap(30.0, v_ego), range_age=0.45)
    verdict, figures = RulePath(CFG).decide(old)
    assert verdict.brake and verdict.reason.startswith("RSS: object at 23.8 m <= safe distance 27.2 m"), verdict.reason
    assert (figures["range_m"], figures["range_age_s"], figures["range_now_m"]) == ("30.00", "0.450", "23.75")
    assert figures["ttc_s"] == "1.71"  # 30 / 13.89 - 0.45
    # a receding object's old distance stands: the safe side
    receding = dataclasses.replace(snap(20.0, v_ego, rate=2.0), range_age=0.45)
    verdict, figures = RulePath(CFG).decide(receding)
    assert not verdict.brake and figures["range_now_m"] == "20.00" and figures["ttc_s"] == "inf"
    # closer than its travel since: contact by now, whatever the rules' distances; on a closing only
    # assumed, a provisional brake as the RSS one is (final, it held a car cut in at the ego's speed
    # braked 2 s after a dropout: review 2026-12-08), on a measured one final
    near = dataclasses.replace(snap(3.0, v_ego), range_age=0.3)
    verdict, _ = RulePath(CFG).decide(near)
    assert verdict.brake and verdict.reason == ("object at 0.00 m by now: 3.00 m 0.30 s ago, closing at 13.89 m/s, "
                                                "assumed stationary: no range track yet")
    assert verdict.provisional_track == 0
    tracked = dataclasses.replace(tracked_snap(3.0, v_ego, rate=-v_ego, se=0.1), range_age=0.3)
    verdict, _ = RulePath(CFG).decide(tracked)
    assert verdict.brake and verdict.provisional_track is None and verdict.reason.startswith("object at 0.00 m by now")


@pytest.mark.parametrize("gap", ["invalid readings", "no messages"])
def test_a_range_dropout_under_the_timeout_brakes_where_the_object_is_now(gap):
    """The sensor state holds the last valid scan through a dropout shorter than range_timeout_s: a
    standing car approached at 50 km/h with scans at 20 Hz, then 0.45 s without a valid one."""
    state = SensorState(CFG)
    v_ego, t, k = 50 / 3.6, 0.0, 0
    while 40.0 - v_ego * t > 30.5:  # scans from 40 m until just outside the 27.2 m RSS distance + 3 m
        state.update_odometry(v_ego, t)
        state.update_range(RangeReading(40.0 - v_ego * t, 0.2, 150.0, round(t * 1e9), t))
        k += 1
        t = k * 0.05
    last = t - 0.05
    for i in range(1, 10):  # 0.45 s more of odometry; the range NaN or silent
        now = last + i * 0.05
        state.update_odometry(v_ego, now)
        if gap == "invalid readings":
            state.update_range(RangeReading(math.nan, 0.2, 150.0, round(now * 1e9), now))
    snap_now = state.snapshot(last + 0.45)
    assert not snap_now.faults and snap_now.range_age == pytest.approx(0.45)
    verdict, figures = RulePath(CFG).decide(snap_now)
    true_now = 40.0 - v_ego * (last + 0.45)
    assert float(figures["range_now_m"]) == pytest.approx(true_now, abs=0.2)
    assert verdict.brake and verdict.reason.startswith("RSS: object at "), verdict.reason


def test_faults_give_failsafe_with_reason():
    v, _ = RulePath(CFG).decide(snap(50.0, 10.0, faults=["range: stale (0.80 s > 0.5 s)"]))
    assert v.brake and "fail-safe" in v.reason and "range: stale" in v.reason
    v, _ = RulePath(RuleConfig(failsafe="no_brake")).decide(snap(50.0, 10.0, faults=["odom: x"]))
    assert not v.brake and "odom: x" in v.reason


def test_a_lead_inside_the_safe_distance_but_not_closing_is_clear_and_the_reason_says_why():
    # following at 15 m at the same 20 m/s (range rate 0): RSS distance 10 + 40 - 25 + 1 = 26 m, no closing
    v, fig = RulePath(CFG).decide(snap(15.0, 20.0, rate=0.0))
    assert not v.brake and fig["rss_distance_m"] == "26.00"
    assert v.reason == "clear: object at 15.0 m not closing (0.0 m/s)"
    v, _ = RulePath(CFG).decide(snap(50.0, 10.0, rate=-1.0))
    assert v.reason.startswith("clear: object at 50.0 m > safe distance")


def test_a_measured_closing_within_its_noise_does_not_brake_on_rss():
    """Behind a lead at our 20 m/s, 25 m (RSS distance 26 m with a_obj > a_ego): a closing of a
    few tenths of a m/s is the range noise; the RSS rule braked on any closing above 0."""
    v, fig = RulePath(CFG).decide(snap(25.0, 20.0, rate=-0.3))  # se 0: only the 1 m/s floor
    assert not v.brake and fig["closing_noise_mps"] == "1.00"
    assert v.reason == "clear: object at 25.0 m closing at 0.30 m/s, within the range-rate noise (1.00 m/s)"
    s = SensorSnapshot(0.0, RangeReading(25.0, 0.2, 150.0, 0, 0.0), 0.0, -1.5, 20.0, 0.0, None, None, (), 0.4,
                       track_id=1)
    v, _ = RulePath(CFG).decide(s)  # 1.5 m/s, but under 5 standard errors (2.0 m/s)
    assert not v.brake and "within the range-rate noise (2.00 m/s)" in v.reason
    v, _ = RulePath(CFG).decide(snap(25.0, 20.0, rate=-6.0))  # clear of its noise (and TTC 4.2 s): RSS
    assert v.brake and v.reason.startswith("RSS")
    v, _ = RulePath(CFG).decide(snap(25.0, 20.0))  # no rate: the object taken as stationary
    assert v.brake and v.reason.startswith("RSS")


def test_a_young_tracks_closing_is_weighed_with_at_least_the_sensors_noise():
    """A lead at the ego's 130 km/h, 60 m ahead, new to the radar: its second scan 0.4 m nearer (8 m/s
    "closing", within the simulated radar's 0.35 m noise). Two scans fit exactly (error 0): that
    closing passed the 1 m/s floor, a final RSS brake held 2 s (review 2026-12-07: half the seeds of
    the 130 km/h cut-in braked it to 69.5 km/h)."""
    v_ego = 130 / 3.6
    s, rules = SensorState(CFG), RulePath(CFG)
    for i, r in enumerate((60.0, 59.6)):
        t = 10.0 + 0.05 * i
        s.update_odometry(v_ego, t)
        s.update_range(RangeReading(r, 0.2, 200.0, round(t * 1e9), t))
        v, fig = rules.decide(s.snapshot(t))
        if i == 0:  # no track: assumed standing, a provisional brake the track may lift
            assert v.brake and v.provisional_track is not None
    snapshot = s.snapshot(10.05)
    assert snapshot.range_rate_unweighed and snapshot.range_rate_se == 0.0
    se = (0.05 + 0.005 * 59.6) / math.sqrt(2 * 0.025**2)
    assert snapshot.range_rate_se_sensor == pytest.approx(se)
    # 8 m/s +- 49: the track cannot tell yet, so the object is still taken as standing: a provisional
    # brake as on the first scan (lifted once the track shows it is not standing), not a final one
    assert v.brake and v.provisional_track is not None, v.reason
    assert v.reason.endswith("taken as standing: its range track cannot tell yet)")
    assert fig["closing_from"] == (f"ego_speed: the track cannot tell yet (range rate -8.00 +- {5 * se:.2f} m/s; "
                                   "TTC on the faster closing)")


def test_a_standing_object_whose_first_frame_sees_two_scans_is_braked_for():
    """A child standing 12 m ahead at 36 km/h (RSS distance 16 m), two scans 10 ms apart before the
    first frame: their closing (10 m/s +- 78) is within the noise. "Clear, within the noise" was no
    brake for the frames the track took to tell (the CI's DDS test, 2026-12-07); the object is taken
    as standing until its track tells, a provisional brake as without a track."""
    s, rules = SensorState(CFG), RulePath(CFG)
    for t, r in ((10.0, 12.1), (10.01, 12.0)):
        s.update_odometry(10.0, t)
        s.update_range(RangeReading(r, 0.2, 200.0, round(t * 1e9), t))
    v, fig = rules.decide(s.snapshot(10.01))
    assert v.brake and v.provisional_track is not None and fig["closing_speed_mps"] == "10.00", v.reason
    assert v.reason == ("RSS: object at 12.0 m <= safe distance 16.0 m (ego 10.0 m/s, object 0.0 m/s, "
                        "taken as standing: its range track cannot tell yet)")


def test_a_young_track_that_cannot_tell_times_the_ttc_rule_by_the_faster_closing():
    """An oncoming car at 30 km/h, 15 m ahead of the ego at 30 km/h, a 50 Hz radar: two scans read a
    closing of 16.7 m/s +- 55. Taken as standing (8.3 m/s) the TTC rule read 1.76 s, "clear", where it
    is 0.88 s (review 2026-12-07): the TTC rule takes the faster of the two, provisionally."""
    s, rules = SensorState(CFG), RulePath(CFG)
    for t, r in ((10.0, 15.0), (10.02, 15.0 - 0.02 * 60 / 3.6)):
        s.update_odometry(30 / 3.6, t)
        s.update_range(RangeReading(r, 0.2, 200.0, round(t * 1e9), t))
    v, fig = rules.decide(s.snapshot(10.02))
    assert v.brake and v.provisional_track is not None, v.reason
    assert v.reason == "TTC 0.88 s < 1.00 s at 14.7 m, closing at 16.7 m/s as measured: its range track cannot tell yet"
    assert fig["closing_speed_mps"] == "8.33" and fig["ttc_s"] == "0.88"


def test_the_rss_ttc_limit_when_set_brakes_only_near_a_collision_beyond_the_equal_braking_distance():
    """108 km/h, 50 m behind a car at 102.6 km/h: inside the RSS distance (a_obj > a_ego) and closing
    beyond the noise, 33 s from a collision: a brake request (a full stop) on every frame. By default it
    still is (a review found the limit braked hard-braking leads late on wet roads); rules.rss_max_ttc_s
    set, the band a_obj > a_ego adds waits for that TTC."""
    v, fig = RulePath(CFG).decide(snap(50.0, 30.0, rate=-1.5))
    assert CFG.rss_max_ttc_s == 0.0 and v.brake and v.reason.startswith("RSS: object at 50.0 m <= safe distance 55.2")
    limited = RuleConfig(rss_max_ttc_s=8.0)
    v, fig = RulePath(limited).decide(snap(50.0, 30.0, rate=-1.5))
    assert not v.brake and fig["rss_distance_m"] == "55.23" and fig["ttc_s"] == "33.33"
    # 15 + (30^2 - 28.5^2) / 10 + 1: a lead braking as hard as the ego (5 m/s^2)
    assert fig["rss_distance_equal_braking_m"] == "24.78"
    assert v.reason == ("clear: object at 50.0 m inside the safe distance 55.2 m (24.8 m were it to brake no harder "
                        "than the ego) but TTC 33.3 s >= 8.0 s (closing at 1.50 m/s)")
    # closer than the equal-braking distance: braked at any TTC (24 m, TTC 16 s)
    v, _ = RulePath(limited).decide(snap(24.0, 30.0, rate=-1.5))
    assert v.brake and v.reason.startswith("RSS: object at 24.0 m <= safe distance")
    # within 8 s of TTC: closing 12 m/s at 50 m (TTC 4.2 s), the RSS distance 85.8 m
    v, fig = RulePath(limited).decide(snap(50.0, 30.0, rate=-12.0))
    assert v.brake and v.reason.startswith("RSS: object at 50.0 m <= safe distance 85.8 m")
    # a standing object: its equal-braking distance is its RSS distance, braked at any TTC (8.8 s at 300 km/h)
    v83 = 300 / 3.6
    assert rss_distance_equal_braking(v83, 0.0, CFG) == rss_distance(v83, 0.0, CFG)
    for rate in (-v83, None):
        v, fig = RulePath(limited).decide(snap(rss_distance(v83, 0.0, CFG) - 0.5, v83, rate=rate))
        assert v.brake and v.reason.startswith("RSS") and float(fig["ttc_s"]) > limited.rss_max_ttc_s
    # an oncoming object: never more than the RSS distance (its a_obj term adds distance)
    assert rss_distance_equal_braking(20.0, -10.0, CFG) == rss_distance(20.0, -10.0, CFG)


def test_a_fail_safe_only_for_sensors_not_heard_from_yet_is_not_held():
    """A frame a few ms before the first range and odometry: its fail-safe brake held 2 s on a clear road."""
    none = SensorSnapshot(0.0, None, None, None, None, None, None, None,
                          ("range: no reading received", "odom: no reading received"), unreceived=("range", "odom"))
    v, _ = RulePath(CFG).decide(none)
    assert v.brake and v.awaiting_inputs and v.reason.startswith("fail-safe brake: range: no reading received")
    stale = SensorSnapshot(0.0, None, None, None, None, None, None, None,
                           ("range: no reading received", "odom: stale (0.60 s > 0.5 s)"), unreceived=("range",))
    v, _ = RulePath(CFG).decide(stale)  # odometry that spoke and stopped is a fault: held as before
    assert v.brake and not v.awaiting_inputs


def test_a_non_finite_range_rate_is_taken_as_none_not_as_not_closing():
    """NaN compares False everywhere: a NaN closing speed cleared RSS and TTC alike ("> safe distance nan m")."""
    for rate, se in ((math.nan, 0.0), (-math.inf, 0.0), (-14.0, math.nan)):
        s = SensorSnapshot(0.0, RangeReading(5.0, 0.2, 150.0, 0, 0.0), 0.0, rate, 15.0, 0.0, None, None, (), se)
        v, fig = RulePath(CFG).decide(s)
        assert v.brake and v.reason.startswith("RSS"), (rate, se)
        assert fig["closing_from"].startswith("ego_speed (range rate") and fig["closing_speed_mps"] == "15.00"


def test_a_non_finite_speed_or_nan_distance_without_a_fault_fails_safe():
    for range_m, speed in ((5.0, math.nan), (5.0, math.inf), (math.nan, 15.0)):
        v, fig = RulePath(CFG).decide(snap(range_m, speed))
        assert v.brake and v.reason.startswith("fail-safe brake: ") and "reached the rule path" in v.reason
        assert "reached the rule path" in fig["faults"]
        v, _ = RulePath(RuleConfig(failsafe="no_brake")).decide(snap(range_m, speed))
        assert not v.brake and "fail-safe no_brake" in v.reason


def test_a_brake_on_an_assumed_closing_is_provisional_and_one_on_a_track_is_not():
    """No track: the object is taken as stationary, and the brake says it rests on that assumption."""
    rules = RulePath(CFG)
    assumed, _ = rules.decide(snap(20.0, 50 / 3.6))  # RSS 27.2 m on the ego's speed as closing
    assert assumed.brake and assumed.provisional and assumed.provisional_track == 0  # the snapshot's track
    assert "assumed stationary: no range track yet" in assumed.reason
    ttc, _ = rules.decide(snap(5.0, 6.0))  # RSS 7.5 m and TTC 0.83 s, both on the assumption
    assert ttc.brake and ttc.provisional
    tracked, _ = rules.decide(tracked_snap(20.0, 50 / 3.6, rate=-50 / 3.6, se=0.1))
    assert tracked.brake and not tracked.provisional and tracked.refutes_track is None
    assert "assumed" not in tracked.reason
    failsafe, _ = rules.decide(snap(20.0, 50 / 3.6, faults=("range: stale (0.30 s > 0.2 s)",)))
    assert failsafe.brake and not failsafe.provisional


def tracked_snap(range_m: float, speed: float, *, rate: float, se: float, track: int = 7,
                 se_sensor: float = 0.0) -> SensorSnapshot:
    return SensorSnapshot(0.0, RangeReading(range_m, 0.2, 150.0, 50_000_000, 0.0), 0.0, rate, speed, 0.0, None,
                          None, (), se, track_id=track, range_rate_se_sensor=se_sensor)


@pytest.mark.parametrize(("speed", "rate", "se", "refutes"), [
    (36.1, 0.0, 1.17, True),  # a lead at 130 km/h: closing 0 + noise 5.85 < 36.1, not stationary
    (36.1, 7.0, 1.17, True),  # pulling away: not closing at all
    (3.0, -2.78, 1.17, False),  # a child at 3 m/s, a young track's noise 5.85 m/s: it cannot tell yet
    (13.9, -12.0, 0.4, False),  # closing at 12 +- 2 m/s against 13.9: a stationary object not refuted
])
def test_a_clear_verdict_refutes_a_stationary_object_only_beyond_its_tracks_noise(speed, rate, se, refutes):
    verdict, _ = RulePath(CFG).decide(tracked_snap(60.0, speed, rate=rate, se=se))
    assert not verdict.brake
    assert verdict.refutes_track == (7 if refutes else None), verdict.reason


def test_a_young_track_refutes_nothing_within_the_sensors_own_noise():
    """Two scans fit exactly (residual error 0): the sensor's noise (two scans of 5 cm + 0.5 % at
    20 m: 4.2 m/s) is the floor, so a standing child at 3 m/s is not 'shown' to be moving."""
    exact, _ = RulePath(CFG).decide(tracked_snap(20.0, 3.0, rate=-1.5, se=0.0))
    assert exact.refutes_track == 7  # were the two scans exact
    floored, _ = RulePath(CFG).decide(tracked_snap(20.0, 3.0, rate=-1.5, se=0.0, se_sensor=4.2))
    assert not floored.brake and floored.refutes_track is None


def test_no_clear_verdict_without_a_track_refutes_anything():
    for no_evidence in (snap(math.inf, 50 / 3.6, rate=0.0), snap(60.0, 50 / 3.6)):
        verdict, _ = RulePath(CFG).decide(no_evidence)
        assert not verdict.brake and verdict.refutes_track is None
