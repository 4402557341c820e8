"""Simulator physics against hand-computed values: stopping distance, TTC, contact, end rules."""

from __future__ import annotations

import dataclasses
import math

import pytest

from tiny_node.sim.scenario import ActorSpec, Scenario, Trajectory
from tiny_node.sim.suite import benign_suite, cbla, ccrb, ccrm, ccrs, cpla, cpna, ncap_suite
from tiny_node.sim.vehicle import Ego, stopping_distance
from tiny_node.sim.world import World

DT = 0.001


def brake_to_stop(v0: float, dt: float = DT) -> tuple[float, float]:
    """Distance and time from a brake request at t=0 to standstill."""
    ego = Ego(speed=v0)
    t = 0.0
    while ego.speed > 0.0:
        ego.step(dt, t, True)
        t += dt
    return ego.position, t


def test_stopping_distance_50kmh_hand_computed():
    # v0 = 13.889 m/s, delay 0.2 s, jerk 30 m/s^3 to 9 m/s^2 (ramp 0.3 s), then constant:
    #   delay   13.889 * 0.2                           =  2.778 m
    #   ramp    13.889 * 0.3 - 30 * 0.3^3 / 6          =  4.032 m, speed 13.889 - 1.35 = 12.539
    #   brake   12.539^2 / (2 * 9)                     =  8.734 m
    #   total                                          = 15.544 m
    assert stopping_distance(50 / 3.6) == pytest.approx(15.544, abs=2e-3)
    d, t = brake_to_stop(50 / 3.6)
    assert d == pytest.approx(15.544, abs=0.02)
    # time: 0.2 + 0.3 + 12.539 / 9 = 1.893 s
    assert t == pytest.approx(1.893, abs=0.005)


def test_stopping_distance_stops_during_ramp():
    # 1 m/s is less than the 1.35 m/s the ramp removes: stops at t_r = sqrt(2 v0 / j) = 0.258 s
    #   0.2 + 1 * 0.258 - 30 * 0.258^3 / 6 = 0.2 + 0.258 - 0.086 = 0.372 m
    assert stopping_distance(1.0) == pytest.approx(0.372, abs=1e-3)
    assert brake_to_stop(1.0)[0] == pytest.approx(0.372, abs=0.005)


@pytest.mark.parametrize("kmh", [10.0, 30.0, 80.0])
def test_numeric_matches_closed_form(kmh):
    assert brake_to_stop(kmh / 3.6, dt=0.005)[0] == pytest.approx(stopping_distance(kmh / 3.6), abs=0.03)


def test_delay_ramp_and_release():
    ego = Ego(speed=20.0)
    t = 0.0
    for _ in range(190):  # 0.19 s: still within the actuation delay
        ego.step(DT, t, True)
        t += DT
    assert ego.accel == 0.0 and ego.speed == 20.0
    for _ in range(110):  # to 0.3 s: 0.1 s of ramp at 30 m/s^3
        ego.step(DT, t, True)
        t += DT
    assert ego.accel == pytest.approx(-3.0, abs=0.05)
    v = ego.speed
    for _ in range(199):  # released at 0.3 s: the brake acts on for the delay, ramping on to -9 by 0.5 s
        ego.step(DT, t, False)
        t += DT
    assert ego.accel == pytest.approx(-9.0, abs=0.05) and ego.braking
    assert ego.speed == pytest.approx(v - 0.5 * (3.0 + 9.0) * 0.2, abs=0.01)
    v = ego.speed
    for _ in range(400):  # the release come through: back to 0 within 0.3 s, then holds
        ego.step(DT, t, False)
        t += DT
    assert ego.accel == 0.0
    assert ego.speed == pytest.approx(v - 0.5 * 9.0 * 0.3, abs=0.01)  # lost 1.35 m/s in the release
    assert not ego.braking and ego.first_request_t == 0.0


@pytest.mark.parametrize(("hold_s", "kmh_after", "peak"), [(0.1, 128.92, -3.0), (0.167, 126.88, -5.1),
                                                         (0.3, 120.28, -9.0)])
def test_a_request_shorter_than_the_delay_still_brakes(hold_s: float, kmh_after: float, peak: float) -> None:
    """The delay is a latency, on the release too: a 0.1 s request at 130 km/h is 3 m/s^2 for a moment
    on the road. It used to be dropped (no deceleration at all), which made a short false brake look free
    (review)."""
    ego, t, dt, lowest = Ego(speed=130 / 3.6), 0.0, 1 / 300, 0.0
    while t < 3.0:
        ego.step(dt, t, 1.9 <= t < 1.9 + hold_s)
        t += dt
        lowest = min(lowest, ego.accel)
    assert ego.speed * 3.6 == pytest.approx(kmh_after, abs=0.05)
    assert lowest == pytest.approx(peak, abs=0.05)
    assert not ego.braking and ego.first_request_t == pytest.approx(1.9, abs=dt)


def test_ttc_and_in_path_distance_at_start():
    w = World(ccrs(50.0))
    tr = w.truth()
    assert tr.in_path_distance == pytest.approx(4.0 * 50 / 3.6)  # test starts at TTC 4 s
    assert tr.ttc == pytest.approx(4.0)
    assert tr.nearest_kind == "car"
    m = World(ccrm(60.0)).truth()
    assert m.ttc == pytest.approx(4.0)  # closing at 40 km/h
    assert m.closing_speed == pytest.approx(40 / 3.6)


def run_open_loop(s: Scenario, dt: float = 0.01) -> World:
    w = World(s)
    while not w.done():
        w.step(dt, False)
    return w


def test_contact_freezes_with_impact_speeds():
    w = run_open_loop(ccrm(50.0), dt=0.002)
    tr = w.truth()
    assert tr.collided and tr.t == pytest.approx(4.0, abs=0.003)
    assert tr.impact_speed_kmh == pytest.approx(50.0)
    assert tr.relative_impact_speed_kmh == pytest.approx(30.0)
    assert tr.nearest_kind == "car" and tr.ttc == 0.0
    t, x = w.t, w.ego.position
    w.step(0.1, False)
    assert (w.t, w.ego.position) == (t, x)  # frozen


def test_braking_in_time_avoids_and_ends_when_stopped():
    w = World(ccrs(30.0))
    brake_at = 4.0 - 1.3  # brake at TTC 1.3 s: 10.833 m left
    while not w.done():
        w.step(0.005, w.t >= brake_at)
    tr = w.truth()
    assert not tr.collided and tr.ego_speed == 0.0
    # stopping from 8.333 m/s: 1.667 (delay) + 2.365 (ramp) + 6.983^2 / 18 = 2.709 -> 6.741 m
    assert tr.in_path_distance == pytest.approx(10.833 - 6.741, abs=0.05)


def test_a_stop_does_not_end_the_run_while_a_car_drives_at_the_ego():
    """A wrong-way car in the ego's lane: the ego braked to a stop and the run ended "avoided", the car
    6.5 m away and still coming. The contact follows, at the car's speed."""
    car = ActorSpec("car", Trajectory(x_m=60.0, y_m=0.0, heading_deg=180.0, speed_kmh=15.0), name="wrong_way")
    w = World(Scenario(name="wrong_way", ego_speed_kmh=60.0, actors=(car,), duration_s=15.0))
    while not w.done():
        w.step(DT, True)
    assert w.collided and w.ego.speed == 0.0 and w.contact_name == "wrong_way"
    assert w.impact_speed_kmh == 0.0 and w.relative_impact_speed_kmh == pytest.approx(15.0)
    parked = ActorSpec("car", Trajectory(x_m=60.0, y_m=0.0, heading_deg=180.0), name="parked_facing_us")
    w = World(Scenario(name="facing", ego_speed_kmh=60.0, actors=(parked,), duration_s=15.0))
    while not w.done():
        w.step(DT, True)
    assert not w.collided and w.ego.speed == 0.0 and w.t < 4.0  # standing: the stop ends it


def test_ccr_ends_when_slower_than_target():
    w = World(ccrm(30.0))
    while not w.done():
        w.step(0.01, True)
    assert not w.collided and w.ego.speed < 20 / 3.6 and w.ego.speed > 0.0


def test_longitudinal_vru_runs_end_as_ccr_runs_do():
    """CPLA / CBLA targets move ahead in the lane too: a brake released with the ego still closing counted
    as avoided when the clock ran out (CBLA 60 km/h: the ego left at 31 km/h hits the cyclist 2.5 s later)."""
    for sc, on, off, rel in ((cbla(60), 2.5, 3.6, 9.36), (cpla(40, 50), 3.0, 4.0, 2.6)):
        w = World(sc)
        while not w.done():
            w.step(DT, on <= w.t < off)
        assert w.collided and w.t > sc.duration_s, sc.name
        assert w.relative_impact_speed_kmh == pytest.approx(rel, abs=0.05)
    w = World(cpla(40, 50))  # braked to below the pedestrian's 5 km/h: over, as in CCRm
    while not w.done():
        w.step(DT, 3.0 <= w.t < 4.15)
    assert not w.collided and 0.0 < w.ego.speed < 5 / 3.6 and w.t < 4.5


def test_an_avoid_drive_cut_short_by_its_duration_runs_on_to_the_contact():
    """A user's drive whose duration_s ended before the contact was scored avoided, green, with the
    ego unbraked and a pedestrian 2.2 m ahead (only the CCR / CPLA / CBLA runs went on)."""
    short = dataclasses.replace(cpna(40.0, 25), duration_s=5.8)
    w = run_open_loop(short, dt=0.002)
    assert w.collided and w.t == pytest.approx(6.0, abs=0.01)
    crate = Scenario(name="crate", ego_speed_kmh=60.0, duration_s=1.0,
                     actors=(ActorSpec("car", Trajectory(x_m=45.0, y_m=0.0)),))
    w = run_open_loop(crate)
    assert w.collided and w.t > 2.0
    benign = dataclasses.replace(crate, expect="no_brake")  # a benign drive still ends on its clock
    w = run_open_loop(benign)
    assert not w.collided and w.t == pytest.approx(1.0)
    away = Scenario(name="away", ego_speed_kmh=30.0, duration_s=2.0,  # nothing in the path: no overtime
                    actors=(ActorSpec("car", Trajectory(x_m=30.0, y_m=6.0)),))
    w = run_open_loop(away)
    assert w.t == pytest.approx(2.0)


def test_pedestrian_contact_and_flat_or_overhead_actors_never_hit():
    w = run_open_loop(cpna(40.0, 25))
    assert w.collided and w.truth().nearest_kind == "adult"
    assert w.truth().relative_impact_speed_kmh == pytest.approx(40.0)  # crossing: no x velocity
    for kind, z in (("road_marking", 0.0), ("manhole", 0.0), ("gantry", 5.2)):
        s = Scenario(name="flat", ego_speed_kmh=50.0, duration_s=3.0,
                     actors=(ActorSpec(kind, Trajectory(x_m=10.0, y_m=0.0)),))
        w = run_open_loop(s)
        assert not w.collided and math.isinf(w.truth().in_path_distance), kind
        assert w.actors()[0].z == z


def test_every_ncap_scenario_collides_on_schedule_without_braking():
    # Synchronisation check: without braking the VRU meets the ego at TTC 6 s, the car at TTC 4 s.
    for s in ncap_suite():
        w = run_open_loop(s, dt=0.02)
        assert w.collided, s.name
        if s.protocol == "CCRb":
            continue
        expected = 4.0 if s.protocol.startswith("CCR") else 6.0
        assert w.t == pytest.approx(expected, abs=0.05), s.name


def test_benign_scenarios_never_conflict_without_braking():
    for s in benign_suite():
        w = World(s)
        min_ttc = math.inf
        while not w.done():
            w.step(0.02, False)
            min_ttc = min(min_ttc, w.truth().ttc)
        assert not w.collided, s.name
        assert min_ttc > 4.0, s.name


def test_ccrb_target_brakes_to_final_speed():
    w = World(ccrb(6.0, 40.0))
    while w.t < 4.0:
        w.step(0.01, True)  # the ego brakes too, so nothing is hit
    target = w.actors()[0]
    assert target.vx == pytest.approx(2 / 3.6)
