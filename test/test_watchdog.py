"""Watchdog with an injected clock: deadlines, latest-frame-only, arbitration table, hold."""

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest

from tiny_node.clock import ManualClock
from tiny_node.config import make_config
from tiny_node.decision import ModelState, Source, decision_level, decision_values
from tiny_node.sensors import RangeReading, SensorState
from tiny_node.watchdog import Frame, Watchdog

IMG = np.zeros((4, 4, 3), np.uint8)


@dataclass
class Out:
    brake: bool
    confidence: float
    label: str
    tracks: str = ""
    conflict_s: float = math.inf
    conflict_brake: bool = False

    @property
    def p_brake(self) -> float:
        return self.confidence if self.brake else 1.0 - self.confidence


class ScriptedPort:
    """Stands in for the worker process in pure-core tests: records calls, never decides."""

    def __init__(self, ready=True):
        self.ready = ready
        self.busy_seq = None
        self.submitted: list[int] = []
        self.frame_times: list[float] = []
        self.cancelled: list[int] = []

    def submit(self, seq, image, features, frame_time_s):
        if not self.ready or self.busy_seq is not None:
            return False
        self.busy_seq = seq
        self.submitted.append(seq)
        self.frame_times.append(frame_time_s)
        return True

    def cancel(self, seq):
        self.cancelled.append(seq)

    def finish(self):
        self.busy_seq = None


def setup(range_m=80.0, speed=10.0, port=None, **params):
    clock = ManualClock(100.0)
    cfg = make_config(params)
    sensors = SensorState(cfg.rules)
    sensors.update_range(RangeReading(range_m, 0.2, 150.0, 0, clock.now()))
    sensors.update_odometry(speed, clock.now())
    return clock, sensors, Watchdog(cfg, sensors, clock, port)


def frame(clock, stamp):
    return Frame(stamp_ns=stamp, received_at=clock.now(), image=IMG)


def test_rules_only_decides_at_once_with_source_rules():
    clock, _, wd = setup()
    [d] = wd.on_frame(frame(clock, 1))
    assert d.source is Source.RULES and d.model_state is ModelState.DISABLED
    assert d.latency_ms == 0.0 and d.stamp_ns == 1 and not d.brake
    assert d.deadline_ms == pytest.approx(50.0)


def test_model_on_time_decides_early():
    port = ScriptedPort()
    clock, _, wd = setup(port=port)
    assert wd.on_frame(frame(clock, 1)) == []
    assert port.frame_times == [1e-9]  # the frame's stamp, in seconds
    clock.advance(0.012)
    port.finish()
    [d] = wd.on_model_result(1, Out(True, 0.9, "brake"))
    assert d.brake and d.source is Source.MODEL and d.model_state is ModelState.ON_TIME
    assert d.latency_ms == pytest.approx(12.0) and d.confidence == 0.9
    assert d.reason == "model: brake (p=0.90)"  # a model without tracking says nothing more


def test_the_tracks_a_model_was_shown_are_in_its_reason():
    port = ScriptedPort()
    clock, _, wd = setup(port=port)
    wd.on_frame(frame(clock, 1))
    clock.advance(0.010)
    port.finish()
    [d] = wd.on_model_result(1, Out(True, 0.95, "brake", "vru0 14.2 m, y -2.1 m, vy +1.3 m/s"))
    assert d.reason == "model: brake (p=0.95; vru0 14.2 m, y -2.1 m, vy +1.3 m/s)"


def test_late_model_falls_back_at_guarded_deadline_and_is_cancelled_and_discarded():
    port = ScriptedPort()
    clock, _, wd = setup(port=port, publish_guard_ms=2.0)
    wd.on_frame(frame(clock, 1))
    assert wd.next_wakeup() == pytest.approx(100.048)  # 50 ms deadline - 2 ms guard
    clock.advance(0.047)
    assert wd.on_tick() == []
    clock.advance(0.001)
    [d] = wd.on_tick()
    assert d.source is Source.FALLBACK and d.model_state is ModelState.LATE
    assert d.decided_at <= d.deadline_at
    assert port.cancelled == [1]
    assert "no result by the deadline" in d.reason
    port.finish()
    assert wd.on_model_result(1, Out(True, 0.9, "brake")) == []
    assert wd.stats.late_results_discarded == 1
    assert wd.stats.deadline_misses == 0


def test_busy_model_takes_newest_frame_next_no_queue():
    port = ScriptedPort()
    clock, _, wd = setup(port=port)
    wd.on_frame(frame(clock, 1))  # running
    clock.advance(0.005)
    wd.on_frame(frame(clock, 2))  # waits
    clock.advance(0.005)
    wd.on_frame(frame(clock, 3))  # replaces 2 as the newest
    clock.advance(0.005)
    port.finish()
    out = wd.on_model_result(1, Out(False, 0.8, "no_brake"))
    assert [d.frame_id for d in out] == [1]
    assert port.submitted == [1, 3]  # frame 2 never goes to the model
    clock.advance(0.050)
    out = wd.on_tick()
    assert sorted(d.frame_id for d in out) == [2, 3]
    by_id = {d.frame_id: d for d in out}
    assert by_id[2].model_state is ModelState.UNAVAILABLE
    assert "newer frame took its place" in by_id[2].reason
    assert by_id[3].model_state is ModelState.LATE


def test_a_rule_brake_on_a_newer_frame_takes_the_waiting_frames_place():
    """The model is not spent on a frame older than one already decided (review 2026-12-07)."""
    port = ScriptedPort()
    clock, sensors, wd = setup(range_m=80.0, speed=10.0, port=port)
    assert wd.on_frame(frame(clock, 1)) == []  # running
    clock.advance(0.010)
    assert wd.on_frame(frame(clock, 2)) == []  # waits
    clock.advance(0.010)
    sensors.update_range(RangeReading(8.0, 0.2, 150.0, 0, clock.now()))
    [d3] = wd.on_frame(frame(clock, 3))  # braked by the rules at once
    assert d3.brake and d3.model_state is ModelState.SKIPPED
    clock.advance(0.010)
    port.finish()
    wd.on_model_result(1, Out(False, 0.9, "no_brake"))
    assert port.submitted == [1] and port.busy_seq is None  # frame 2 did not take the model
    clock.advance(0.005)
    sensors.update_range(RangeReading(80.0, 0.2, 150.0, 0, clock.now()))
    assert wd.on_frame(frame(clock, 4)) == [] and port.submitted == [1, 4]  # so frame 4 finds it free
    clock.advance(0.100)
    by_id = {d.frame_id: d for d in wd.on_tick()}
    assert by_id[2].model_state is ModelState.UNAVAILABLE and "newer frame was braked by the rules" in by_id[2].reason


def test_unready_worker_gives_immediate_fallback():
    clock, _, wd = setup(port=ScriptedPort(ready=False))
    [d] = wd.on_frame(frame(clock, 1))
    assert d.source is Source.FALLBACK and d.model_state is ModelState.UNAVAILABLE
    assert "not ready" in d.reason


@pytest.mark.parametrize(
    ("rules_brake", "model_brake", "brake", "source"),
    [
        (False, False, False, Source.MODEL),
        (False, True, True, Source.MODEL),
        (True, False, True, Source.RULES),  # the model never cancels a rule brake ...
        (True, True, True, Source.RULES),  # ... so it is not even asked
    ],
)
def test_arbitration_table(rules_brake, model_brake, brake, source):
    port = ScriptedPort()
    clock, _, wd = setup(range_m=5.0 if rules_brake else 80.0, port=port, brake_hold_s=0.0)
    at_once = wd.on_frame(frame(clock, 1))
    if rules_brake:
        [d] = at_once
        assert d.model_state is ModelState.SKIPPED and d.latency_ms == 0.0 and port.submitted == []
        assert "model not asked: the rules brake" in d.reason
    else:
        assert at_once == [] and port.submitted == [1]
        port.finish()
        [d] = wd.on_model_result(1, Out(model_brake, 0.7, "brake" if model_brake else "no_brake"))
    assert (d.brake, d.source) == (brake, source)
    assert d.rules is not None and d.rules.brake is rules_brake
    assert decision_level(d) == 0  # a rule brake that did not wait is no fallback


def test_a_rule_brake_does_not_wait_for_a_busy_or_hung_model():
    """The model busy with an older frame (or hung in it) must not delay a rule brake."""
    port = ScriptedPort()
    clock, sensors, wd = setup(port=port, brake_hold_s=0.0)
    assert wd.on_frame(frame(clock, 1)) == [] and port.busy_seq == 1  # the model never answers
    clock.advance(0.01)
    sensors.update_range(RangeReading(5.0, 0.2, 150.0, 2, clock.now()))
    [d] = wd.on_frame(frame(clock, 2))
    assert d.brake and d.source is Source.RULES and d.latency_ms == 0.0 and d.stamp_ns == 2
    assert wd.stats.by_model_state["skipped"] == 1 and port.submitted == [1]
    # shadow: the model decides nothing, so a rule brake did not have to wait for it either (it
    # waited up to the deadline: 95 ms at deadline_ms 100, review 2026-12-06)
    port = ScriptedPort()
    clock, _, wd = setup(range_m=5.0, port=port, arbitration="shadow")
    [d] = wd.on_frame(frame(clock, 1))
    assert d.brake and d.latency_ms == 0.0 and d.model_state is ModelState.SKIPPED and port.submitted == []


def _model_busy_then_a_rule_brake():
    """brake_hold_s 0; the model takes frame 1 and keeps it; frame 2 brakes by the rules at once."""
    port = ScriptedPort()
    clock, sensors, wd = setup(port=port, brake_hold_s=0.0)
    assert wd.on_frame(frame(clock, 1)) == []
    clock.advance(0.01)
    sensors.update_range(RangeReading(5.0, 0.2, 150.0, 2, clock.now()))
    [newer] = wd.on_frame(frame(clock, 2))
    assert newer.brake and newer.source is Source.RULES
    return port, clock, sensors, wd


@pytest.mark.parametrize("model_answers", [True, False])
def test_an_older_frame_decided_after_a_newer_brake_keeps_the_brake_without_a_hold(model_answers):
    """brake_hold_s 0: the last word on `brake` must not be an older frame's no-brake."""
    port, clock, sensors, wd = _model_busy_then_a_rule_brake()
    clock.advance(0.01)
    if model_answers:
        port.finish()
        [older] = wd.on_model_result(1, Out(False, 0.9, "no_brake"))
    else:
        clock.advance(0.05)
        [older] = wd.on_tick()
        port.finish()  # the cancel acknowledged
    assert older.stamp_ns == 1 and older.brake and older.hold
    assert "newer frame 2 braked" in older.reason
    # a frame newer than the brake is decided on its own again
    sensors.update_range(RangeReading(80.0, 0.2, 150.0, 3, clock.now()))
    sensors.update_odometry(10.0, clock.now())
    assert wd.on_frame(frame(clock, 3)) == [] and port.submitted[-1] == 3
    port.finish()
    [d] = wd.on_model_result(3, Out(False, 0.9, "no_brake"))
    assert d.stamp_ns == 3 and not d.brake and not d.hold


def test_an_older_frame_follows_the_newest_decided_frame_not_an_older_brake():
    """brake_hold_s 0: frame 2 brakes, frame 3 (newer) releases; frame 1, decided last, follows frame 3."""
    port, clock, sensors, wd = _model_busy_then_a_rule_brake()
    clock.advance(0.01)
    sensors.update_range(RangeReading(80.0, 0.2, 150.0, 3, clock.now()))
    [third] = wd.on_frame(Frame(stamp_ns=3, received_at=clock.now(), image=None, fault="truncated image"))
    assert not third.brake
    port.finish()
    [first] = wd.on_model_result(1, Out(False, 0.9, "no_brake"))
    assert first.stamp_ns == 1 and not first.brake and not first.hold


def test_shadow_mode_reports_model_but_rules_decide():
    port = ScriptedPort()
    clock, _, wd = setup(port=port, arbitration="shadow")
    wd.on_frame(frame(clock, 1))
    port.finish()
    [d] = wd.on_model_result(1, Out(True, 0.99, "brake"))
    assert not d.brake and d.source is Source.RULES and d.model is not None and d.model.brake


def scan(clock, sensors, range_m, stamp_ns, speed=10.0):
    """One range scan (and odometry) received now."""
    sensors.update_odometry(speed, clock.now())
    sensors.update_range(RangeReading(range_m, 0.2, 150.0, stamp_ns, clock.now()))


def test_brake_hold():
    clock, sensors, wd = setup(range_m=5.5, brake_hold_s=2.0)
    for i, r in ((1, 5.0), (2, 4.5)):  # a track (three scans: two alone leave its noise unknown)
        clock.advance(0.05)
        scan(clock, sensors, r, i * 50_000_000)  # closing at the ego's 10 m/s
    [d] = wd.on_frame(frame(clock, 1))
    assert d.brake and not d.hold and not d.rules.provisional
    clock.advance(1.0)
    scan(clock, sensors, float("inf"), 1_100_000_000)
    [d] = wd.on_frame(frame(clock, 2))
    assert d.brake and d.hold and "holding brake" in d.reason
    clock.advance(1.01)
    scan(clock, sensors, float("inf"), 2_110_000_000)
    [d] = wd.on_frame(frame(clock, 3))
    assert not d.brake


def test_a_held_brake_carries_the_confidence_of_the_brake_it_holds():
    """Not the confidence of the no-brake it overrides (review 2026-12-07: 0.97 beside brake: true)."""
    port = ScriptedPort()
    clock, _, wd = setup(range_m=80.0, speed=10.0, port=port)
    wd.on_frame(frame(clock, 1))
    clock.advance(0.01)
    port.finish()
    [d1] = wd.on_model_result(1, Out(True, 0.95, "brake"))
    clock.advance(0.05)
    wd.on_frame(frame(clock, 2))
    clock.advance(0.01)
    port.finish()
    [d2] = wd.on_model_result(2, Out(False, 0.97, "no_brake"))
    assert d2.brake and d2.hold and d2.source is Source.MODEL
    assert d2.confidence == d1.confidence == 0.95
    assert d2.model is not None and d2.model.confidence == 0.97  # the model's own verdict is still reported


def test_a_frame_before_the_first_range_and_odometry_brakes_without_the_hold():
    """A node (re)started on a moving vehicle: its first frame came 5 ms before the sensors' first
    messages, and the fail-safe brake held 2 s (58 frames) on a clear road. A sensor that spoke and
    then went quiet is a fault, and its fail-safe is held as before."""
    clock = ManualClock(100.0)
    cfg = make_config({"brake_hold_s": 2.0})
    sensors = SensorState(cfg.rules)
    wd = Watchdog(cfg, sensors, clock, None)
    [d] = wd.on_frame(frame(clock, 1))
    assert d.brake and not d.hold and d.rules.awaiting_inputs
    assert d.reason.startswith("fail-safe brake: range: no reading received; odom: no reading received")
    clock.advance(0.005)
    sensors.update_range(RangeReading(60.0, 0.2, 150.0, 5_000_000, clock.now()))
    sensors.update_odometry(15.0, clock.now())
    clock.advance(0.028)
    [d] = wd.on_frame(frame(clock, 2))
    # the scan 28 ms old: the standing object 15 m/s x 0.028 s nearer now
    assert not d.brake and d.reason.startswith("clear: object at 59.6 m > safe distance")
    clock.advance(0.6)  # the range went quiet: stale, a fault held brake_hold_s
    sensors.update_odometry(15.0, clock.now())
    [d] = wd.on_frame(frame(clock, 3))
    assert d.brake and not d.rules.awaiting_inputs and "range: stale" in d.reason
    clock.advance(0.05)
    sensors.update_range(RangeReading(60.0, 0.2, 150.0, 700_000_000, clock.now()))
    [d] = wd.on_frame(frame(clock, 4))
    assert d.brake and d.hold and d.reason.startswith("holding brake")


def test_a_car_cutting_in_at_the_egos_speed_brakes_one_frame_not_the_hold():
    """130 km/h, a lead at the same speed first seen 60 m ahead: RSS on the assumed closing
    (object stationary) brakes, provisionally; the track shows it is not closing once its noise
    allows (the sensor's 5 cm + 0.5 % at 60 m, 0.35 m: two scans give 0 +- 5 x 9.9 m/s, which
    cannot tell; three give 0 +- 5 x 4.9 m/s, below 36.1)."""
    clock, sensors, wd = setup(range_m=60.0, speed=36.1, brake_hold_s=2.0)
    [d] = wd.on_frame(frame(clock, 1))
    assert d.brake and not d.hold and d.rules.provisional and d.reason.endswith("assumed stationary: no range track yet)")
    assert decision_values(d)["rules_provisional_track"] == 1
    clock.advance(0.05)
    scan(clock, sensors, 60.0, 50_000_000, speed=36.1)
    [d] = wd.on_frame(frame(clock, 2))  # a track that cannot tell: still taken as standing, provisionally
    assert d.brake and not d.hold and d.rules.provisional and d.rules.refutes_track is None, d.reason
    assert d.reason.endswith("taken as standing: its range track cannot tell yet)")
    clock.advance(0.05)
    scan(clock, sensors, 60.0, 100_000_000, speed=36.1)
    [d] = wd.on_frame(frame(clock, 3))
    assert not d.brake and not d.hold and d.rules.refutes_track == 1, d.reason  # the track its first scan began
    assert d.reason.endswith("[lifts the provisional brake on range track 1: not stationary]")
    assert decision_values(d)["rules_refutes_track"] == 1  # a recorded run tells a lift from an expiry
    clock.advance(0.05)
    scan(clock, sensors, 60.0, 150_000_000, speed=36.1)
    [d] = wd.on_frame(frame(clock, 4))
    assert not d.brake


def test_a_track_that_cannot_tell_brakes_no_longer_than_the_window_from_its_first_scan():
    """3 m/s, 3 m behind a car at the same speed (inside a standing object's RSS distance, 3.4 m), a
    10 Hz radar with 0.3 m of noise: 5 standard errors of the track's closing stay above the ego's
    speed over the whole window, so it never tells a standing object from this car. Taken as
    standing for as long as it could not tell, and each such brake re-arming the hold, it braked
    frame after frame to a standstill (review 2026-12-07): now from the first scan for at most
    range_rate_window_s (0.5 s), as documented."""
    clock, sensors, wd = setup(range_m=float("inf"), speed=3.0, **{"rules.range_noise_m": 0.3})
    brakes = []
    for i in range(1, 31):  # 3 s, frames with the scans
        clock.advance(0.1)
        scan(clock, sensors, 3.0 + (0.3 if i % 2 else -0.3) * (i % 3) / 2, i * 100_000_000, speed=3.0)
        [d] = wd.on_frame(frame(clock, i))
        brakes.append(d.brake)
    assert brakes[:5] == [True] * 5  # 0.1-0.5 s: the standing assumption, provisionally
    assert not any(brakes[6:]), brakes  # 0.5 s after the first scan (0.6 s, give or take a float) on: none


def test_a_provisional_brake_first_taken_on_an_older_track_ends_a_window_after_its_first_scan():
    """A car cut in at the ego's 3 m/s 4 m ahead (outside a standing object's 3.4 m), a noisy radar:
    its fourth scan reads 3.3 m, a provisional brake 0.3 s into the track. Held a window from that
    brake, it ran 0.3 s into the time the track was old enough to be what it measured (a car at
    walking pace braked from 10.8 to 1.1 km/h; review 2026-12-07): it ends 0.5 s after the first scan."""
    clock, sensors, wd = setup(range_m=float("inf"), speed=3.0, **{"rules.range_noise_m": 0.3})
    brakes = []
    for i, r in enumerate((4.0, 3.9, 4.1, 3.3, 4.0, 3.9, 4.1, 4.0, 3.9, 4.1), start=1):
        clock.advance(0.07)
        scan(clock, sensors, r, i * 100_000_000, speed=3.0)
        clock.advance(0.03)  # each frame 30 ms after its scan: the hold ran a frame late (review of the fix)
        [d] = wd.on_frame(frame(clock, i))
        brakes.append(d.brake)
    assert brakes[:3] == [False] * 3 and brakes[3]  # the 3.3 m scan, 0.3 s after the first
    assert not any(brakes[5:]), brakes  # 0.5 s after the first scan (0.57 s) on: none


def test_a_provisional_brake_holds_over_a_missed_scan_until_the_track_confirms_it():
    """A child stepping out 20 m ahead at 50 km/h: the radar misses the next scan, and the brake
    must not drop; the track that then forms confirms it, and the full hold starts."""
    clock, sensors, wd = setup(range_m=20.0, speed=13.9, brake_hold_s=2.0)
    [d] = wd.on_frame(frame(clock, 1))
    assert d.brake and d.rules.provisional
    clock.advance(0.05)
    scan(clock, sensors, float("inf"), 50_000_000, speed=13.9)
    [d] = wd.on_frame(frame(clock, 2))
    assert d.brake and d.hold and d.reason.startswith("holding provisional brake"), d.reason
    clock.advance(0.05)
    scan(clock, sensors, 18.61, 100_000_000, speed=13.9)  # the child, standing: closing at 13.9 m/s
    [d] = wd.on_frame(frame(clock, 3))
    assert d.brake and not d.hold and not d.rules.provisional, d.reason  # 13.9 m/s > noise 5 x 0.71 m/s
    clock.advance(0.05)
    scan(clock, sensors, 17.915, 150_000_000, speed=13.9)
    [d] = wd.on_frame(frame(clock, 4))
    assert d.brake and not d.hold and not d.rules.provisional, d.reason
    clock.advance(1.5)  # the range clears: held by the confirmed brake's 2 s hold, not 0.5 s
    scan(clock, sensors, float("inf"), 1_650_000_000, speed=13.9)
    [d] = wd.on_frame(frame(clock, 5))
    assert d.brake and d.hold and d.reason.startswith("holding brake 0.50 s more"), d.reason


def test_a_young_tracks_noise_does_not_lift_a_provisional_brake_on_a_standing_child():
    """At 3 m/s a two-scan track's closing (5 standard errors: about 7 m/s here) cannot tell a
    standing child from a lead at the ego's speed: its 'clear, within the noise' lifts nothing."""
    clock, sensors, wd = setup(range_m=60.0, speed=3.0)
    for i in range(1, 41):  # 2 s behind a far object with +-5 cm of range noise: the noise is known
        clock.advance(0.05)
        scan(clock, sensors, 60.0 - 0.15 * i + (0.05 if i % 2 else -0.05), i * 50_000_000, speed=3.0)
        wd.on_frame(frame(clock, i))
    clock.advance(0.05)
    scan(clock, sensors, 3.3, 41 * 50_000_000, speed=3.0)  # a child steps in, inside d_safe 3.4 m
    [d] = wd.on_frame(frame(clock, 41))
    assert d.brake and d.rules.provisional, d.reason
    clock.advance(0.05)
    scan(clock, sensors, 3.2, 42 * 50_000_000, speed=3.0)
    [d] = wd.on_frame(frame(clock, 42))
    assert "its range track cannot tell yet" in d.rules.reason and d.rules.refutes_track is None
    assert d.brake and d.rules.provisional, d.reason


def test_a_track_on_another_object_does_not_lift_a_provisional_brake():
    """A child 14 m ahead, then the radar returns the car behind it (40 m, at the ego's speed) for two
    scans: that car's track refutes nothing about the child."""
    clock, sensors, wd = setup(range_m=40.0, speed=10.0)
    for i in range(1, 11):
        clock.advance(0.05)
        scan(clock, sensors, 40.0, i * 50_000_000)
        [d] = wd.on_frame(frame(clock, i))
        assert not d.brake
    clock.advance(0.05)
    scan(clock, sensors, 14.0, 11 * 50_000_000)  # the child: d_safe 16 m
    [d] = wd.on_frame(frame(clock, 11))
    assert d.brake and d.rules.provisional_track == 2  # the car's track was 1
    for i in range(12, 17):  # five scans: the car's track can tell (0 +- 5 x 1.6 m/s < 10 m/s)
        clock.advance(0.05)
        scan(clock, sensors, 40.0, i * 50_000_000)
        [d] = wd.on_frame(frame(clock, i))
    assert d.rules.refutes_track == 3  # the car's new track, not the one the child's reading began
    assert d.brake and d.hold and d.reason.startswith("holding provisional brake"), d.reason


def test_a_newer_provisional_brake_on_another_object_does_not_take_the_older_ones_place():
    """20 m/s: a child at 30 m, then the car behind it at 40 m, both inside the stationary RSS
    distance (51 m), so each first scan is a provisional brake. The car's track, once it shows the
    car moves with the ego, lifts the car's brake only; the child's holds on."""
    clock, sensors, wd = setup(range_m=40.0, speed=20.0)
    for i in range(1, 21):  # following the car: its track and the sensor's noise are known
        clock.advance(0.05)
        scan(clock, sensors, 40.0, i * 50_000_000, speed=20.0)
        wd.on_frame(frame(clock, i))
    clock.advance(0.05)
    scan(clock, sensors, 30.0, 21 * 50_000_000, speed=20.0)  # the child steps in
    [d] = wd.on_frame(frame(clock, 21))
    assert d.brake and d.rules.provisional_track == 2
    for i in range(22, 26):  # the radar returns the car behind it: a new track (3), braked on first
        clock.advance(0.05)
        scan(clock, sensors, 40.0, i * 50_000_000, speed=20.0)
        [d] = wd.on_frame(frame(clock, i))
        if i == 22:
            assert d.brake and d.rules.provisional_track == 3
    assert d.rules.refutes_track == 3, d.rules.reason  # the car's brake is lifted...
    assert d.brake and d.hold and "object at 30.0 m" in d.reason, d.reason  # ...the child's is not


@pytest.mark.parametrize("hold_s", [2.0, 0.3, 0.0])
def test_a_provisional_hold_ends_with_the_rate_window_or_the_hold_if_no_track_forms(hold_s):
    """No second return: the object is gone (range_rate_window_s 0.5 s), so is the brake on it."""
    clock, sensors, wd = setup(range_m=20.0, speed=13.9, brake_hold_s=hold_s)
    [d] = wd.on_frame(frame(clock, 1))
    assert d.brake and d.rules.provisional
    braked_at, held, expected = clock.now(), [], []
    window = min(hold_s, make_config().rules.range_rate_window_s)
    for i in range(2, 14):
        clock.advance(0.0625)  # 16 Hz: exact in binary, so the window's end is not a rounding matter
        scan(clock, sensors, float("inf"), i * 62_500_000, speed=13.9)
        [d] = wd.on_frame(frame(clock, i))
        held.append(d.brake)
        expected.append(clock.now() < braked_at + window)
    assert held == expected and sum(expected) == {2.0: 7, 0.3: 4, 0.0: 0}[hold_s]


def test_the_track_lifting_a_provisional_brake_never_shortens_a_confirmed_hold():
    clock, sensors, wd = setup(range_m=5.5, brake_hold_s=2.0)
    for i, r in ((1, 5.0), (2, 4.5)):
        clock.advance(0.05)
        scan(clock, sensors, r, i * 50_000_000)
    [d] = wd.on_frame(frame(clock, 1))
    assert d.brake and not d.rules.provisional  # confirmed: held 2 s
    clock.advance(0.6)  # that object gone; a new one, stationary by assumption, then not closing
    scan(clock, sensors, 12.0, 700_000_000, speed=10.0)
    [d] = wd.on_frame(frame(clock, 2))
    assert d.brake and d.rules.provisional
    clock.advance(0.05)
    scan(clock, sensors, 12.5, 750_000_000, speed=10.0)  # the first track measured the noise: known
    [d] = wd.on_frame(frame(clock, 3))
    assert d.rules.refutes_track == 2, d.rules.reason
    assert d.brake and d.hold and d.reason.startswith("holding brake 1.35 s more"), d.reason


def test_one_invalid_range_sample_is_a_warning_not_a_failsafe_brake():
    """At 130 km/h one NaN from the radar was a fail-safe brake and its 2 s hold."""
    clock, sensors, wd = setup(range_m=60.0, speed=36.1, brake_hold_s=2.0)
    for i in (1, 2):
        clock.advance(0.05)
        scan(clock, sensors, 60.0, i * 50_000_000, speed=36.1)  # a lead at the ego's speed
    clock.advance(0.05)
    scan(clock, sensors, float("nan"), 150_000_000, speed=36.1)
    [d] = wd.on_frame(frame(clock, 1))
    assert not d.brake and d.reason == "clear: object at 60.0 m not closing (0.0 m/s)", d.reason
    values = decision_values(d)
    assert values["range_m"] == "60.00" and "NaN reading" in values["sensor_warnings"]
    assert decision_level(d) == 1


def test_bad_frame_and_frozen_stamp_still_decided():
    port = ScriptedPort()
    clock, _, wd = setup(port=port)
    [d] = wd.on_frame(Frame(5, clock.now(), None, fault="image encoding 'yuv422' not supported"))
    assert d.model_state is ModelState.UNAVAILABLE and "yuv422" in d.reason
    wd.on_frame(frame(clock, 6))
    port.finish()
    wd.on_model_result(2, Out(False, 0.9, "no_brake"))
    [d] = wd.on_frame(frame(clock, 6))
    assert "frozen camera" in d.reason
    [d] = wd.on_frame(frame(clock, 3))
    assert "out-of-order" in d.reason
    assert wd.stats.bad_frames == 3


def test_a_first_frame_at_stamp_0_is_sim_time_starting_and_a_second_an_unstamping_driver():
    clock, _, wd = setup()
    [first] = wd.on_frame(frame(clock, 0))
    assert first.frame_fault == ""
    clock.advance(0.033)
    [again] = wd.on_frame(frame(clock, 0))
    assert again.frame_fault == "camera stamp 0 repeated (frozen camera, or a driver that leaves header.stamp unset)"


def test_backwards_clock_jump_is_not_a_camera_fault():
    port = ScriptedPort(ready=False)
    clock, _, wd = setup(port=port)
    wd.on_frame(frame(clock, 10_000_000_000))
    [d] = wd.on_frame(frame(clock, 2_000_000_000))  # sim time restarted 8 s back
    assert "out-of-order" not in d.reason and "frozen" not in d.reason
    assert wd.stats.clock_jumps == 1
    [d] = wd.on_frame(frame(clock, 2_000_000_001))
    assert "out-of-order" not in d.reason


def test_stale_sensors_failsafe_brake():
    clock, _, wd = setup()
    clock.advance(0.6)
    [d] = wd.on_frame(frame(clock, 1))
    assert d.brake and "fail-safe" in d.reason and "stale" in d.reason


def test_model_is_not_asked_without_a_trustworthy_ego_speed():
    """Stale odometry under a no_brake fail-safe: 0 m/s would tell the model (and its tracker)
    that the ego stands still, so the frame falls to the rules; odometry back, the model again."""
    port = ScriptedPort()
    clock, sensors, wd = setup(port=port, **{"rules.failsafe": "no_brake"})
    clock.advance(0.6)
    sensors.update_range(RangeReading(80.0, 0.2, 150.0, 0, clock.now()))
    [d] = wd.on_frame(frame(clock, 1))
    assert port.submitted == [] and d.model_state is ModelState.UNAVAILABLE
    assert not d.brake and "fail-safe no_brake: odom: stale" in d.reason
    assert "[model unavailable: model not asked: no trustworthy ego speed (odom: stale" in d.reason
    sensors.update_odometry(10.0, clock.now())
    assert wd.on_frame(frame(clock, 2)) == [] and port.submitted == [2]


def test_a_reversing_ego_gets_no_forward_brake_and_the_model_is_not_asked():
    """Reversing at 1.5 m/s with an object 3 m ahead (the car it just parked behind): a forward
    AEB stands aside. Before, any speed under -0.1 m/s was an implausible-odometry fault: the
    fail-safe braked through every reverse manoeuvre. Garbage beyond reverse speed still is one."""
    port = ScriptedPort()
    clock, sensors, wd = setup(range_m=3.0, speed=-1.5, port=port)
    [d] = wd.on_frame(frame(clock, 1))
    assert not d.brake and d.model_state is ModelState.SKIPPED and port.submitted == []
    assert d.reason == "inactive: reversing at 1.50 m/s (forward AEB) [model not asked: reversing]"
    assert d.rules is not None and d.rules.reason.startswith("inactive: reversing")
    sensors.update_odometry(-40.0, clock.now())  # 144 km/h in reverse: the odometry is broken
    [d] = wd.on_frame(frame(clock, 2))
    assert d.brake and "fail-safe brake: odom: implausible speed -40.0 m/s" in d.reason
    sensors.update_odometry(-0.05, clock.now())  # standstill noise: judged as stopped, model asked
    sensors.update_range(RangeReading(30.0, 0.2, 150.0, 0, clock.now()))
    clock.advance(3.0)  # past the fail-safe's brake hold
    sensors.update_odometry(-0.05, clock.now())
    sensors.update_range(RangeReading(30.0, 0.2, 150.0, 0, clock.now()))
    assert wd.on_frame(frame(clock, 3)) == [] and port.submitted == [3]


def test_exactly_one_decision_per_frame_under_random_schedule():
    """A driver that wakes at every event (frame, model done, next_wakeup) never misses."""
    rng = np.random.default_rng(7)
    port = ScriptedPort()
    clock, sensors, wd = setup(port=port)
    decided: list[int] = []
    next_frame = clock.now()
    running_until = None
    i = 0
    while i < 400:
        events = [next_frame, wd.next_wakeup(), running_until]
        clock.set(min(t for t in events if t is not None))
        if running_until is not None and clock.now() >= running_until:
            seq = port.busy_seq
            port.finish()
            running_until = None
            decided += [d.frame_id for d in wd.on_model_result(seq, Out(False, 0.6, "no_brake"))]
        decided += [d.frame_id for d in wd.on_tick()]
        if clock.now() >= next_frame:
            i += 1
            sensors.update_odometry(10.0, clock.now())
            # radar noise: a bit-identical range for 1 s while moving would be a stuck sensor
            sensors.update_range(RangeReading(80.0 + 0.01 * (i % 3), 0.2, 150.0, i, clock.now()))
            decided += [d.frame_id for d in wd.on_frame(frame(clock, i))]
            next_frame = clock.now() + float(rng.uniform(0.001, 0.04))
        if port.busy_seq is not None and running_until is None:
            running_until = clock.now() + float(rng.uniform(0.005, 0.09))
    while wd.next_wakeup() is not None:
        clock.set(wd.next_wakeup())
        decided += [d.frame_id for d in wd.on_tick()]
    assert sorted(decided) == list(range(1, 401))
    assert wd.stats.deadline_misses == 0
    assert wd.stats.by_source["model"] > 50 and wd.stats.by_source["fallback"] > 50


def _frames_at(clock, wd, n, period):
    out = []
    for i in range(n):
        out += wd.on_frame(frame(clock, 1_000_000_000 + round(i * period * 1e9)))
        clock.advance(period)
    return out


def _keep_range_fresh(sensors, clock, range_m=80.0, speed=10.0):
    noisy = range_m + 0.01 * (round(clock.now() * 1000) % 3)
    sensors.update_range(RangeReading(noisy, 0.2, 150.0, round(clock.now() * 1e9), clock.now()))
    sensors.update_odometry(speed, clock.now())


def test_camera_timeout_decides_with_the_rules_at_the_camera_period_without_a_frame():
    port = ScriptedPort(ready=False)
    clock, sensors, wd = setup(port=port, camera_timeout_s=0.5)
    assert wd.next_camera_timeout_at() is None  # not before the first frame
    _frames_at(clock, wd, 5, 0.05)  # 20 Hz, then the camera goes quiet
    last_at, last_stamp = clock.now() - 0.05, 1_000_000_000 + 4 * 50_000_000
    assert wd.next_camera_timeout_at() == pytest.approx(last_at + 0.5)
    # every frame is decided (the model is not ready): only the camera timeout is due
    assert wd.next_wakeup() is None and wd.next_tick_at() == pytest.approx(last_at + 0.5)
    out = []
    for _ in range(40):  # 1 s of ticks every 25 ms
        clock.advance(0.025)
        _keep_range_fresh(sensors, clock, range_m=-math.inf)  # REP-117: an object within min_range
        out += wd.on_tick()
    assert len(out) == 12  # from 0.5 s after the last frame (at 0.2 s), every 50 ms, to 1.25 s
    for d in out:
        assert d.no_frame and d.brake and d.source is Source.FALLBACK
        assert d.model_state is ModelState.UNAVAILABLE
        assert "camera: no frame for" in d.reason and "closer than min_range" in d.rules.reason
        assert d.stamp_ns == last_stamp + round((d.decided_at - last_at) * 1e9)
    gaps = np.diff([d.decided_at for d in out])
    assert gaps == pytest.approx(0.05, abs=0.026)
    assert wd.stats.camera_timeout_decisions == 12
    # The camera is back: no more decisions without a frame.
    wd.on_frame(frame(clock, 9_000_000_000))
    clock.advance(0.3)
    assert [d for d in wd.on_tick() if d.no_frame] == []


@pytest.mark.parametrize(("action", "brakes"), [("failsafe", True), ("none", None)])
def test_camera_timeout_action_failsafe_or_none(action, brakes):
    clock, sensors, wd = setup(camera_timeout_s=0.2, camera_timeout_action=action)
    _frames_at(clock, wd, 3, 0.1)
    clock.advance(0.3)
    _keep_range_fresh(sensors, clock)  # clear road: the rules alone would not brake
    out = wd.on_tick()
    if brakes is None:
        assert out == [] and wd.next_camera_timeout_at() is None
    else:
        [d] = out
        assert d.no_frame and d.brake and d.source is Source.RULES
        assert d.rules.reason.startswith("fail-safe brake: camera: no frame")


def test_lockstep_decides_through_a_camera_gap():
    from tiny_node.lockstep import Lockstep

    ls = Lockstep(make_config({"camera_timeout_s": 0.3}))
    out = []
    for i in range(10):  # 10 Hz for 1 s
        t = i * 0.1
        out += ls.odom(t, 5.0) + ls.range(t, 50.0 + 0.01 * (i % 2), round(t * 1e9))
        out += ls.frame(t, round(t * 1e9), IMG)
    for i in range(10, 20):  # sensors go on, no camera for 1 s
        t = i * 0.1
        out += ls.odom(t, 5.0) + ls.range(t, 50.0 + 0.01 * (i % 2), round(t * 1e9))
    out += ls.advance_to(1.95)
    frameless = [d for d in out if d.no_frame]
    # due 0.3 s after the frame at 0.9 s, then every 0.1 s (the measured camera period)
    assert [d.decided_at for d in frameless] == pytest.approx([1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9])
    assert all(not d.brake and d.source is Source.RULES for d in frameless)


def test_decision_values_carry_the_model_p_brake_and_read_back():
    """P(brake) goes out in the decision values and a DDS reader gets it back (sim --realtime)."""
    from tiny_node.decision import decision_values
    from tiny_node.sim.closed_loop import _model_verdict

    port = ScriptedPort()
    clock, _, wd = setup(port=port)
    wd.on_frame(frame(clock, 1))
    port.finish()
    [d] = wd.on_model_result(1, Out(False, 0.7, "no_brake"))
    values = decision_values(d)
    assert values["model_p_brake"] == "0.3000" and values["model_confidence"] == "0.700"
    back = _model_verdict({k: str(v) for k, v in values.items()})
    assert back is not None and not back.brake and back.p_brake == pytest.approx(0.3)
    assert "model_conflict_s" not in values and back.conflict_s == math.inf  # no track conflict
    wd.on_frame(frame(clock, 2))
    port.finish()
    [d] = wd.on_model_result(2, Out(True, 0.2, "brake", conflict_s=1.25, conflict_brake=True))  # by a track conflict
    values = decision_values(d)
    assert values["model_conflict_s"] == "1.250" and values["model_conflict_brake"] == "true"
    back = _model_verdict({k: str(v) for k, v in values.items()})
    assert back is not None and back.brake and back.conflict_s == pytest.approx(1.25) and back.conflict_brake
    wd.on_frame(frame(clock, 3))
    port.finish()
    [d] = wd.on_model_result(3, Out(False, 0.995, "no_brake", conflict_s=1.25))  # a conflict the model vetoed
    back = _model_verdict({k: str(v) for k, v in decision_values(d).items()})
    assert back is not None and back.conflict_s == pytest.approx(1.25) and not back.conflict_brake
    assert _model_verdict({"source": "rules"}) is None  # no model answered: no verdict


@pytest.mark.parametrize("deadline_from_stamp", [0.400, math.inf, math.nan])
def test_a_deadline_from_the_stamp_never_stretches_past_deadline_ms(deadline_from_stamp):
    """A stamp ahead of the node clock (or ROS time 0 before /clock) must not hold a frame open longer."""
    port = ScriptedPort()
    clock, _, wd = setup(port=port)
    f = Frame(stamp_ns=1, received_at=clock.now(), image=IMG, deadline_at=clock.now() + deadline_from_stamp)
    assert wd.on_frame(f) == []
    clock.advance(0.045)  # the guarded 50 ms deadline
    [d] = wd.on_tick()
    assert d.source is Source.FALLBACK and d.deadline_ms == pytest.approx(50.0)
    assert d.decided_at <= f.received_at + 0.050 and wd.stats.deadline_misses == 0


def test_a_deadline_from_the_stamp_may_come_sooner():
    port = ScriptedPort()
    clock, _, wd = setup(port=port)
    f = Frame(stamp_ns=1, received_at=clock.now(), image=IMG, deadline_at=clock.now() + 0.020)
    wd.on_frame(f)
    clock.advance(0.015)  # the guarded 20 ms left of this frame's 50 ms after 30 ms in transport
    [d] = wd.on_tick()
    assert d.source is Source.FALLBACK and d.deadline_ms == pytest.approx(20.0)


def test_a_result_after_the_publish_time_but_before_the_tick_is_late_and_not_cancelled():
    port = ScriptedPort()
    clock, _, wd = setup(port=port)
    wd.on_frame(frame(clock, 1))
    clock.advance(0.046)  # past the guarded deadline (45 ms), before the deadline thread's tick
    port.finish()
    [d] = wd.on_model_result(1, Out(True, 0.9, "brake"))
    assert d.source is Source.FALLBACK and d.model_state is ModelState.LATE
    # no run left to cancel (stats.cancels 0); the port is told, for the rationale the result began
    assert wd.stats.late_results_discarded == 1 and wd.stats.cancels == 0 and port.cancelled == [1]
    assert wd.on_tick() == []  # answered once


def test_a_frames_fault_is_reported_with_its_decision():
    from tiny_node.decision import decision_values
    from tiny_node.watchdog import future_stamp_fault

    clock, _, wd = setup()
    [good] = wd.on_frame(frame(clock, 5))
    assert good.frame_fault == "" and "frame_fault" not in decision_values(good)
    clock.advance(0.033)
    [frozen] = wd.on_frame(frame(clock, 5))
    assert "repeated (frozen camera)" in frozen.frame_fault
    assert decision_values(frozen)["frame_fault"] == frozen.frame_fault
    clock.advance(0.033)
    [bad] = wd.on_frame(Frame(stamp_ns=9, received_at=clock.now(), image=None, fault="truncated image"))
    assert bad.frame_fault == "truncated image"
    # a stamp ahead of the driver's ROS clock: judged alike by every driver
    assert future_stamp_fault(10_600_000_000, 10_000_000_000, 0.5) == "camera stamp 0.60 s in the future of the node clock"
    assert future_stamp_fault(10_400_000_000, 10_000_000_000, 0.5) is None
    assert future_stamp_fault(10_600_000_000, 0, 0.5) is None  # ROS time 0: before the first /clock


def test_an_activation_starts_without_the_last_periods_camera_clock_or_hold():
    """deactivate -> activate: no 'camera out' decision (nor its fail-safe hold) before the first
    frame of the new period; while inactive the node took no frames, so their absence says nothing."""
    clock, sensors, wd = setup(range_m=5.0, brake_hold_s=2.0)
    for i in range(5):
        [d] = wd.on_frame(frame(clock, 1 + i))
        clock.advance(0.033)
    assert d.brake  # a rule brake: held for 2 s
    clock.advance(3.0)  # inactive: nothing taken
    wd.on_start()
    assert wd.next_tick_at() is None and wd.on_tick() == []
    sensors.update_range(RangeReading(80.0, 0.2, 150.0, 10, clock.now()))
    sensors.update_odometry(10.0, clock.now())
    [d] = wd.on_frame(frame(clock, 10))
    assert not d.brake and not d.hold and not d.no_frame
    assert wd.next_tick_at() is not None  # the camera timeout runs again from this frame


def test_a_deactivate_activate_bounce_keeps_a_running_brake_hold():
    """on_start cleared the hold: a bounce 30 ms after a brake released it on the next clear frame."""
    clock, sensors, wd = setup(range_m=12.0, brake_hold_s=2.0)
    for i in range(20):  # closing on a stationary object, a range track: a confirmed brake, not provisional
        clock.advance(0.033 * (i > 0))
        sensors.update_range(RangeReading(12.0 - 0.33 * i, 0.2, 150.0, round(clock.now() * 1e9), clock.now()))
        sensors.update_odometry(10.0, clock.now())
        [d] = wd.on_frame(frame(clock, 1 + i))
    assert d.brake and not d.hold
    clock.advance(0.03)
    wd.on_start()
    sensors.update_range(RangeReading(80.0, 0.2, 150.0, round(clock.now() * 1e9), clock.now()))
    sensors.update_odometry(10.0, clock.now())
    clock.advance(0.02)
    [d] = wd.on_frame(frame(clock, 30))
    assert d.brake and d.hold and d.reason.startswith("holding brake 1.95 s more after: RSS"), d.reason
    clock.advance(2.0)
    sensors.update_range(RangeReading(80.5, 0.2, 150.0, round(clock.now() * 1e9), clock.now()))
    sensors.update_odometry(10.0, clock.now())
    [d] = wd.on_frame(frame(clock, 31))
    assert not d.brake and not d.hold  # the hold ran out on its own


def test_a_camera_timeout_decision_that_fails_is_not_left_due():
    """A failing no-frame decision left ``_no_frame_due`` in the past: the driver retried it at once, for ever."""
    clock, _, wd = setup(camera_timeout_s=0.5)
    wd.on_frame(frame(clock, 1))
    clock.advance(0.6)

    def bad(now):
        raise KeyError("camera-timeout bug")

    wd._decide_without_frame = bad
    with pytest.raises(KeyError):
        wd.on_tick()
    assert wd.next_tick_at() > clock.now()  # the next try a frame period on, not at once


def test_close_all_closes_each_cycle_on_its_own_decides_before_cancelling_and_feeds_the_sink():
    """close_all cancelled before closing and stopped at the first error: a failing cancel left every cycle open."""
    port = ScriptedPort()
    clock, _, wd = setup(port=port)
    wd.sink = sink = []
    wd.on_frame(frame(clock, 1))  # submitted
    port.finish()
    wd.on_frame(frame(clock, 2))  # submitted
    wd.on_frame(frame(clock, 3))  # pending: the model is busy

    def cancel(seq):
        raise OSError("cancel failed")

    port.cancel = cancel
    with pytest.raises(OSError):
        wd.close_all("shutting down")
    assert [d.stamp_ns for d in sink] == [1, 2, 3] and wd.open_cycles == 0  # every one decided, once


def test_a_close_that_raises_leaves_the_cycle_open_and_nothing_counted():
    clock, _, wd = setup(port=ScriptedPort())
    wd.on_frame(frame(clock, 1))
    cfg = wd.cfg

    class Broken:
        def float(self, key):
            raise KeyError(key)

        def str(self, key):
            return cfg.str(key)

    wd.cfg = Broken()
    with pytest.raises(KeyError):
        wd.close_cycle(1, "test")
    assert wd.is_open(1) and wd.stats.decisions == 0
    wd.cfg = cfg
    assert wd.close_cycle(1, "test").stamp_ns == 1 and wd.stats.decisions == 1


def test_a_failsafe_goes_through_the_hold_and_the_counts():
    """The loop's own fail-safe had frame_id 0, no hold (the next frame released it 33 ms later), no count."""
    port = ScriptedPort()
    clock, _, wd = setup(port=port)
    wd.on_frame(frame(clock, 1))  # open, waiting for the model
    d = wd.close_failsafe(frame(clock, 1), "core bug", seq=1)  # its close failed
    assert d.brake and d.frame_id == 1 and d.reason.startswith("fail-safe brake: core bug") and not wd.is_open(1)
    d = wd.close_failsafe(frame(clock, 2), "core bug")  # a frame never opened
    assert d.brake and d.frame_id == 2 and d.frame_fault == "core bug"
    assert wd.stats.cycles == 2 and wd.stats.decisions == 2 and wd.stats.brakes == 2
    clock.advance(0.033)
    port.finish()
    wd.on_frame(frame(clock, 3))
    [d] = wd.on_model_result(3, Out(False, 0.9, "go"))
    assert d.brake and d.hold


def test_a_frame_whose_rule_path_raises_takes_one_seq_and_counts_once():
    """Review 3, finding 3: on_frame took a seq and counted the cycle before the rule path; when
    that raised, close_failsafe took another seq and counted again (ids 1, 3, 4; 4 cycles, 3 decisions)."""
    clock, _, wd = setup()
    decide = wd.rules.decide
    calls = {"n": 0}

    def failing_decide(snap):
        calls["n"] += 1
        if calls["n"] == 2:
            raise FloatingPointError("rule path bug")
        return decide(snap)

    wd.rules.decide = failing_decide
    ids = [wd.on_frame(frame(clock, 1))[0].frame_id]
    clock.advance(0.033)
    with pytest.raises(FloatingPointError):
        wd.on_frame(frame(clock, 2))
    assert wd.open_cycles == 0 and wd.stats.cycles == 1
    ids.append(wd.close_failsafe(frame(clock, 2), "rule path bug").frame_id)
    clock.advance(0.033)
    ids += [d.frame_id for d in wd.on_frame(frame(clock, 3))]
    assert ids == [1, 2, 3]
    assert wd.stats.cycles == 3 and wd.stats.decisions == 3


def test_a_frame_handed_in_after_the_models_budget_says_so_not_that_it_arrived_late():
    """deadline 20 ms, guard 19 ms: every frame read "frame arrived after its deadline" though each
    came in time; the model's 1 ms budget was shorter than decoding (inputs review)."""
    clock, _, wd = setup(port=ScriptedPort(), deadline_ms=20.0, publish_guard_ms=19.0)
    f = frame(clock, 1)
    clock.advance(0.005)  # decoded and handed in 5 ms after its receipt
    [d] = wd.on_frame(f)
    assert d.model_state is ModelState.UNAVAILABLE and not d.brake
    assert ("no time left for the model: frame handed in 5.0 ms after its receipt, its fallback due 1.0 ms "
            "after it (deadline_ms - publish_guard_ms)") in d.reason, d.reason


def test_frames_noted_as_a_batch_then_each_count_each_interval_once():
    """The deadline thread notes a step's frames, then opens each: the clock went back to the
    first and every interval was counted twice, skewing the camera period (code review)."""
    _, _, wd = setup()
    frames = [Frame(i, 100.0 + 0.1 * i, IMG) for i in range(3)]
    for f in frames:
        wd.frame_arrived(f)
    for f in frames:
        wd.on_frame(f)
    assert list(wd._frame_intervals) == pytest.approx([0.1, 0.1])
    assert wd.next_camera_timeout_at() == pytest.approx(100.2 + 0.5)


def test_a_frame_too_old_by_its_stamp_says_so_not_that_the_model_ran_out_of_time():
    clock, _, wd = setup(port=ScriptedPort(), deadline_ms=50.0)
    f = Frame(1, clock.now(), IMG, deadline_at=clock.now() - 0.030)  # 80 ms old by its stamp
    [d] = wd.on_frame(f)
    assert d.reason.endswith("[model unavailable: frame too old by its stamp: its deadline passed 30.0 ms "
                             "before its receipt (deadline_reference: stamp)]"), d.reason  # 30 ms: no clock hint


@pytest.mark.parametrize(("stamp_ns", "hint"), [
    (1, "stamps this old are on another clock than the node's (use_sim_time on one side only?"),
    (0, "header.stamp 0 is unset"),
])
def test_a_frame_seconds_too_old_by_its_stamp_is_said_to_be_on_another_clock(stamp_ns, hint):
    """Stamps an hour behind (or unset) read as a deadline miss of 3 599 950 ms, and an engineer
    chased a CPU problem (UAT): the reason says what such an age means."""
    clock, _, wd = setup(port=ScriptedPort(), deadline_ms=50.0)
    [d] = wd.on_frame(Frame(stamp_ns, clock.now(), IMG, deadline_at=clock.now() - 3600.0))
    assert "its deadline passed 3600000.0 ms before its receipt (deadline_reference: stamp); " + hint in d.reason


def test_a_stamp_deadline_just_after_receipt_is_not_called_too_old():
    """deadline_at 0.5 ms after receipt, a 1 ms guard: the reason said "passed -0.5 ms before its receipt"."""
    clock, _, wd = setup(port=ScriptedPort(), publish_guard_ms=1.0)
    [d] = wd.on_frame(Frame(1, clock.now(), IMG, deadline_at=clock.now() + 0.0005))
    assert "no time left for the model" in d.reason and "too old" not in d.reason, d.reason


# builtin_interfaces/Time's last instant: sec int32, nanosec < 1e9 (beyond, sec wrapped negative)
MAX_STAMP_NS = (2**31 - 1) * 1_000_000_000 + 999_999_999


def _camera_out(clock, sensors, wd, seconds=1.0):
    """The camera goes quiet for ``seconds`` (ticks every 25 ms, sensors fresh); the decisions without a frame."""
    out = []
    for _ in range(round(seconds / 0.025)):
        clock.advance(0.025)
        _keep_range_fresh(sensors, clock)
        out += wd.on_tick()
    assert out and all(d.no_frame for d in out)
    return out


@pytest.mark.parametrize(("stamp_ns", "fault"), [
    (1_000_000_000 + 3600 * 10**9, "camera stamp 3600.00 s in the future of the node clock"),  # the driver's
    (2**31 * 10**9 - 1, "camera stamp 350852078.48 s in the future of the node clock"),
    (1_000_000_000 + 4 * 50_000_000, None),  # the last stamp again: frozen (the watchdog refuses it)
    (0, None),  # header.stamp unset, 1.2 s back: was a clock reset, and the outage stamped from 0 (1970)
])
def test_decisions_without_a_frame_are_stamped_from_the_last_accepted_stamp(stamp_ns, fault):
    """A frame refused for its stamp (an hour ahead, near int32 max, frozen, unset) was the base of every
    camera-out decision's stamp after it: an hour ahead, or past builtin_interfaces/Time (negative sec)."""
    clock, sensors, wd = setup(camera_timeout_s=0.5)
    _frames_at(clock, wd, 5, 0.05)  # 20 Hz
    good_at, good_stamp = clock.now() - 0.05, 1_000_000_000 + 4 * 50_000_000
    clock.advance(0.1)
    [d] = wd.on_frame(Frame(stamp_ns, clock.now(), IMG, fault))
    assert d.frame_fault and d.stamp_ns == stamp_ns  # its own decision answers it, with its stamp
    for d in _camera_out(clock, sensors, wd):
        assert d.stamp_ns == good_stamp + round((d.decided_at - good_at) * 1e9)


def test_decisions_without_a_frame_never_pass_the_range_of_a_ros_stamp():
    """An accepted stamp next to int32 max (sim time without /clock judges none): the camera-out
    decisions after it are stamped at most at sec 2**31 - 1, nanosec 999999999."""
    clock, sensors, wd = setup(camera_timeout_s=0.5)
    last = MAX_STAMP_NS - 700_000_000
    wd.on_frame(frame(clock, last))
    stamps = [d.stamp_ns for d in _camera_out(clock, sensors, wd)]
    assert stamps[0] == last + 500_000_000  # due camera_timeout_s after the frame: extrapolated as ever
    assert stamps[-1] == MAX_STAMP_NS and all(a <= b <= MAX_STAMP_NS for a, b in itertools.pairwise(stamps))
    from tiny_node import watchdog
    assert watchdog.MAX_STAMP_NS == MAX_STAMP_NS


def test_without_any_accepted_stamp_decisions_without_a_frame_take_the_drivers_stamp_clock():
    """Every frame refused for its stamp: the last frame's stamp extrapolated, but no further ahead of the
    node's ROS clock (``stamp_clock``) than future_stamp_tolerance_s (0.5 s); a ROS clock at 0 (use_sim_time,
    no /clock yet) or frozen is no bound (it stamped the outage 0, or all alike); a driver without one
    keeps the last frame's stamp, bounded."""
    ahead = Frame(5_000 * 10**9, 0.0, IMG, "camera stamp 3600.00 s in the future of the node clock")
    clock, sensors, wd = setup(camera_timeout_s=0.5)
    wd.stamp_clock = lambda: 1_400 * 10**9 + round(clock.now() * 1e9)
    wd.on_frame(Frame(ahead.stamp_ns, clock.now(), IMG, ahead.fault))
    for d in _camera_out(clock, sensors, wd):
        assert d.stamp_ns == 1_400 * 10**9 + round(d.decided_at * 1e9) + 500_000_000
    clock, sensors, wd = setup(camera_timeout_s=0.5)  # ROS time 0: the frame's stamp goes on, as before
    wd.stamp_clock = lambda: 0
    t0 = clock.now()
    wd.on_frame(Frame(ahead.stamp_ns, t0, IMG, ahead.fault))
    out = _camera_out(clock, sensors, wd)
    assert [d.stamp_ns for d in out] == [ahead.stamp_ns + round((d.decided_at - t0) * 1e9) for d in out]
    clock, sensors, wd = setup(camera_timeout_s=0.5)  # a frozen /clock: still one stamp after the other
    wd.stamp_clock = lambda: 1_000 * 10**9
    wd.on_frame(Frame(ahead.stamp_ns, clock.now(), IMG, ahead.fault))
    stamps = [d.stamp_ns for d in _camera_out(clock, sensors, wd)]
    assert stamps[0] == 1_000_500_000_000 and all(b == a + 1 for a, b in itertools.pairwise(stamps))
    clock, sensors, wd = setup(camera_timeout_s=0.5)  # no stamp clock (lockstep): as before, bounded
    wd.on_frame(Frame(MAX_STAMP_NS - 10**9, clock.now(), IMG, ahead.fault))
    stamps = [d.stamp_ns for d in _camera_out(clock, sensors, wd, 2.0)]
    assert stamps[0] == MAX_STAMP_NS - 10**9 + 500_000_000 and max(stamps) == MAX_STAMP_NS


def test_an_inactive_periods_stamps_are_no_base_for_decisions_without_a_frame():
    """Activated again (a bag replayed anew, its clock elsewhere) with every frame refused: the last
    period's accepted stamp was extrapolated across the pause; the driver's stamp clock is the base."""
    clock, sensors, wd = setup(camera_timeout_s=0.5)
    wd.stamp_clock = lambda: 7 * 10**9 + round(clock.now() * 1e9)
    wd.on_frame(Frame(10**12, clock.now(), IMG))  # accepted: 1000 s on the camera's clock
    _camera_out(clock, sensors, wd)
    wd.on_start()
    clock.advance(5.0)
    wd.on_frame(Frame(10**15, clock.now(), IMG, "camera stamp 999000.00 s in the future of the node clock"))
    for d in _camera_out(clock, sensors, wd):
        assert d.stamp_ns == 7 * 10**9 + round(d.decided_at * 1e9) + 500_000_000
