"""Camera renderer: occlusion, scale with distance, light and weather, determinism, speed."""

from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np
import pytest

from tiny_node.sim.camera import CameraModel, CameraRenderer
from tiny_node.sim.scenario import ActorSpec, Environment, Scenario, Trajectory
from tiny_node.sim.suite import NIGHT, cpna, cpnco
from tiny_node.sim.world import World

DAY = Environment()


@pytest.fixture(scope="module")
def renderer() -> CameraRenderer:
    return CameraRenderer()


def still(*actors: tuple[str, float, float], env: Environment = DAY) -> World:
    specs = tuple(ActorSpec(k, Trajectory(x_m=x, y_m=y), name=f"a{i}") for i, (k, x, y) in enumerate(actors))
    return World(Scenario(name="t", ego_speed_kmh=0.0, actors=specs, environment=env))


def frame(r: CameraRenderer, w: World, env: Environment = DAY, seed: int = 0, blur: bool = True) -> np.ndarray:
    return r.render(w, env, np.random.default_rng(seed), motion_blur=blur)


def footprint(r: CameraRenderer, w: World, env: Environment = DAY) -> np.ndarray:
    """Pixels where the actors change the frame (same noise both times)."""
    empty = World(dataclasses.replace(w.scenario, actors=()))
    return np.abs(frame(r, w, env).astype(int) - frame(r, empty, env).astype(int)).max(axis=2) > 12


def test_frame_format_and_determinism(renderer):
    w = World(cpna(40.0, 25))
    for _ in range(30):
        w.step(0.05, False)
    a, b = frame(renderer, w, seed=1), frame(renderer, w, seed=1)
    assert a.shape == (480, 640, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, frame(renderer, w, seed=2))  # noise follows the seed
    assert np.array_equal(frame(CameraRenderer(), w, seed=1), a)  # a fresh renderer draws the same


def test_actor_scales_with_distance(renderer):
    near = footprint(renderer, still(("car", 20.0, 0.0)))
    far = footprint(renderer, still(("car", 40.0, 0.0)))
    ratio = near.sum() / far.sum()
    assert 3.0 < ratio < 5.0  # area goes with 1 / distance^2 (camera 1.5 m behind the bumper)
    cols = np.nonzero(far.any(axis=0))[0]
    expected = CameraModel().fx * 1.712 / (40.0 - 4.023 / 2 + 1.5)  # target car width in pixels
    assert cols.max() - cols.min() + 1 == pytest.approx(expected, abs=3)
    adult = footprint(renderer, still(("adult", 15.0, 0.0)))
    rows = np.nonzero(adult.any(axis=1))[0]
    assert rows.max() - rows.min() + 1 == pytest.approx(CameraModel().fx * 1.8 / 16.5, abs=4)


def test_child_hidden_behind_parked_car_until_it_steps_out(renderer):
    s = cpnco(40.0)
    without_child = dataclasses.replace(s, actors=s.actors[:2])
    w, w0 = World(s), World(without_child)
    seen_at = None
    while not w.done() and seen_at is None:
        same = np.array_equal(frame(renderer, w, seed=4), frame(renderer, w0, seed=4))
        child = next(a for a in w.actors() if a.kind == "child")
        if not same:
            seen_at = (w.t, child.y)
        else:
            assert child.y < -2.0, "child should be visible once in front of the parked car"
        w.step(1 / 15, False)
        w0.step(1 / 15, False)
    assert seen_at is not None
    t, y = seen_at
    assert t > 4.0 and y > -2.6  # hidden while it walked from y = -4 behind the car (started at ~2.4 s)


def test_night_dark_except_headlights_and_fog_hazes(renderer):
    day = frame(renderer, still(("adult", 15.0, 0.0)), blur=False)
    night_env = Environment(light="night")
    night = frame(renderer, still(("adult", 15.0, 0.0), env=night_env), night_env, blur=False)
    assert night.mean() < 0.4 * day.mean()
    # A pedestrian in the headlights stands out more than the same one far outside them.
    lit = footprint(renderer, still(("adult", 12.0, 0.0), env=night_env), night_env).sum()
    dark = footprint(renderer, still(("adult", 12.0, 7.0), env=night_env), night_env).sum()
    assert lit > 3 * dark
    fog_env = Environment(weather="fog")
    clear = footprint(renderer, still(("car", 60.0, 0.0))).sum()
    fog = footprint(renderer, still(("car", 60.0, 0.0), env=fog_env), fog_env).sum()
    assert fog < 0.5 * clear


def test_weather_and_blur_change_the_frame(renderer):
    w = still(("car", 30.0, 0.0))
    base = frame(renderer, w, blur=False).astype(int)
    for env in (Environment(weather="rain"), Environment(glare=True), NIGHT):
        assert np.abs(frame(renderer, w, env, blur=False).astype(int) - base).mean() > 3, env
    moving = World(dataclasses.replace(w.scenario, ego_speed_kmh=60.0))
    sharp = frame(renderer, moving, blur=False)
    smeared = frame(renderer, moving, blur=True)
    lap = [cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)[300:], cv2.CV_64F).var() for im in (sharp, smeared)]
    assert lap[1] < lap[0]


def test_render_small_is_the_resized_view(renderer):
    w = still(("car", 25.0, 0.0), ("adult", 15.0, -1.0))
    full = frame(renderer, w, blur=False)
    small = renderer.render_small(w, DAY, np.random.default_rng(0), size=(160, 120), motion_blur=False)
    assert small.shape == (120, 160, 3)
    resized = cv2.resize(full, (160, 120), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - resized.astype(int)).mean() < 6


def test_render_time_per_frame(renderer):
    results = {}
    for name, s in (("CPNA-25 40 km/h day", cpna(40.0, 25)), ("CPNCO-50 40 km/h night", cpnco(40.0, NIGHT))):
        w = World(s)
        rng = np.random.default_rng(0)
        renderer.render(w, s.environment, rng)
        for _ in range(75):  # warm the per-position backgrounds (25 m of lamp spacing at 40 km/h)
            w.step(1 / 30, False)
            renderer.render(w, s.environment, rng)
        times = []
        for _ in range(60):
            w.step(1 / 30, False)
            t0 = time.perf_counter()
            renderer.render(w, s.environment, rng)
            times.append(time.perf_counter() - t0)
        results[name] = 1e3 * float(np.median(times))
    print("render ms/frame (640x480, median):", {k: round(v, 2) for k, v in results.items()})
    assert all(v < 30.0 for v in results.values())  # loose: a shared CPU; typical 1-3 ms
