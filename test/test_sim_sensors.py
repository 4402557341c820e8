"""Simulated range / odometry / IMU: geometry, occlusion, the VRU weakness, REP-117, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tiny_node.sim.scenario import ActorSpec, Scenario, Trajectory
from tiny_node.sim.sensors import ImuSensor, OdometrySensor, RangeSensor, sensor_streams
from tiny_node.sim.suite import benign_suite, cpnco
from tiny_node.sim.world import World


def world(*actors: tuple[str, float, float], speed_kmh: float = 0.0) -> World:
    specs = tuple(ActorSpec(k, Trajectory(x_m=x, y_m=y), name=f"a{i}") for i, (k, x, y) in enumerate(actors))
    return World(Scenario(name="t", ego_speed_kmh=speed_kmh, actors=specs))


def scans(w: World, n: int, seed: int = 0, sensor: RangeSensor | None = None) -> np.ndarray:
    s = sensor or RangeSensor()
    rng = np.random.default_rng(seed)
    return np.array([s.measure(w, rng) for _ in range(n)])


def test_car_distance_with_noise_and_rep117():
    car_len = 4.023
    r = scans(world(("car", 30.0 + car_len / 2, 0.0)), 200)
    assert np.isfinite(r).mean() > 0.97  # a car is missed in ~1 % of scans
    r = r[np.isfinite(r)]
    assert r.mean() == pytest.approx(30.0, abs=0.05) and 0.05 < r.std() < 0.4
    assert np.all(scans(world(), 20) == math.inf)  # nothing: +inf
    close = scans(world(("car", 0.2 + car_len / 2, 0.0)), 50)  # closer than min range: -inf
    assert (close == -math.inf).mean() > 0.9 and not np.isfinite(close).any()
    assert np.all(scans(world(("car", 100.0, 0.0)), 20) == math.inf)  # beyond 80 m


def test_pedestrians_missed_more_often_and_seen_later_than_cars():
    n = 400
    car = scans(world(("car", 22.0, 0.0)), n, seed=1)
    adult = scans(world(("adult", 20.25, 0.0)), n, seed=1)
    child = scans(world(("child", 20.15, 0.0)), n, seed=1)
    rate = {k: float(np.isfinite(v).mean()) for k, v in (("car", car), ("adult", adult), ("child", child))}
    assert rate["car"] > 0.95
    assert rate["adult"] < 0.8 and rate["child"] < rate["adult"]
    # At 50 m a car is seen, a pedestrian never (shorter radar range).
    assert np.isfinite(scans(world(("car", 52.0, 0.0)), 50)).mean() > 0.9
    assert not np.isfinite(scans(world(("adult", 50.25, 0.0)), 50)).any()
    assert np.isfinite(scans(world(("cyclist", 45.0, 0.0)), 50)).mean() > 0.5


def test_beam_ignores_adjacent_lane_overhead_and_flat():
    assert np.all(scans(world(("car", 30.0, 3.5)), 30) == math.inf)  # adjacent lane
    assert np.all(scans(world(("gantry", 40.0, 1.0)), 30) == math.inf)  # 5.2 m up
    assert np.all(scans(world(("road_marking", 20.0, 0.0), ("manhole", 10.0, 0.0)), 30) == math.inf)
    for s in benign_suite():  # nothing benign is ever in the beam at the start
        if not any(a.trajectory.speed_kmh for a in s.actors):
            assert np.all(scans(World(s), 5) == math.inf), s.name


def test_occlusion_nearest_return_and_hidden_child():
    # A car behind a car is hidden, even in the scans that miss the nearer one.
    r = scans(world(("car", 20.0, 0.0), ("car", 40.0, 0.0)), 200)
    assert r[np.isfinite(r)].max() < 25.0
    # The CPNCO child is never returned while behind the parked cars, and is once it is in the path.
    w = World(cpnco(40.0))
    sensor, rng = RangeSensor(), np.random.default_rng(3)
    hits_hidden, hits_out = 0, 0
    while not w.done():
        child = next(a for a in w.actors() if a.kind == "child")
        r = sensor.measure(w, rng)
        if child.y + child.length / 2 < -1.5:
            hits_hidden += math.isfinite(r)
        elif math.isfinite(r):
            hits_out += 1
        w.step(0.05, False)
    assert hits_hidden == 0 and hits_out > 0


def test_dropout_and_determinism():
    w = world(("car", 30.0, 0.0))
    assert np.all(np.isnan(scans(w, 10, sensor=RangeSensor(dropout_prob=1.0))))
    assert np.array_equal(scans(w, 50, seed=7), scans(w, 50, seed=7))
    assert not np.array_equal(scans(w, 50, seed=7), scans(w, 50, seed=8))
    a, b = sensor_streams(42), sensor_streams(42)
    assert a.range.random() == b.range.random() and a.camera.random() != a.odom.random()


def test_odometry_and_imu():
    w = world(speed_kmh=36.0)
    rng = np.random.default_rng(0)
    odo = np.array([OdometrySensor().measure(w, rng) for _ in range(500)])
    assert odo.mean() == pytest.approx(10.0, abs=0.01) and 0.01 < odo.std() < 0.03
    assert OdometrySensor().measure(world(speed_kmh=0.0), rng) == 0.0  # exactly 0 at standstill
    t = 0.0
    for _ in range(600):
        w.step(0.001, True)
        t += 0.001
    imu = np.array([ImuSensor().measure(w, rng) for _ in range(500)])
    assert imu.mean() == pytest.approx(w.ego.accel, abs=0.01) and w.ego.accel < -8.0
