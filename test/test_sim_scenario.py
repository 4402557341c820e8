"""Scenario schema, YAML round trip, errors that name the field, the suites, the scoring wrapper."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tiny_node.sim import scoring
from tiny_node.sim.kinds import KINDS
from tiny_node.sim.scenario import (
    ScenarioError,
    dump_scenario,
    example_scenario_files,
    load_scenario,
    scenario_from_dict,
    scenario_to_dict,
)
from tiny_node.sim.suite import SMOKE, benign_suite, ncap_suite, suite

BASE: dict[str, Any] = {
    "name": "ccrs",
    "ego_speed_kmh": 30,
    "actors": [{"kind": "car", "x_m": 35.0, "y_m": 0.0}],
}


def err(d: dict[str, Any]) -> str:
    with pytest.raises(ScenarioError) as exc:
        scenario_from_dict(d, "ccrs.yaml")
    return str(exc.value)


def with_actor(**kw: Any) -> dict[str, Any]:
    d = copy.deepcopy(BASE)
    d["actors"][0].update(kw)
    return d


def test_defaults_and_ncap_dimensions():
    s = scenario_from_dict(BASE)
    assert (s.camera_hz, s.range_hz, s.odom_hz) == (30.0, 20.0, 50.0)
    assert s.expect == "avoid" and s.environment.light == "day" and s.seed == 0
    car = s.actors[0]
    assert (car.length_m, car.width_m, car.height_m) == (4.023, 1.712, 1.427)  # Euro NCAP target
    assert car.name == "car0"
    child = scenario_from_dict(with_actor(kind="child")).actors[0]
    assert (child.height_m, child.length_m, child.width_m) == (1.154, 0.711, 0.298)


@pytest.mark.parametrize(
    ("d", "message"),
    [
        (with_actor(speed_kmh=-5), "ccrs.yaml: actors[0].speed_kmh: must be >= 0 (got -5)"),
        (with_actor(spead_kmh=5), "ccrs.yaml: actors[0].spead_kmh: unknown field (did you mean speed_kmh?)"),
        (with_actor(kind="truck"), "ccrs.yaml: actors[0].kind: must be one of"),
        (with_actor(x_m="far"), "ccrs.yaml: actors[0].x_m: must be a number (got 'far')"),
        (with_actor(x_m="1e3"), "actors[0].x_m: must be a number (got '1e3'); YAML reads that as text: write it in full"),
        (with_actor(start={"time_s": 1, "gap_m": 3}), "actors[0].start: give one trigger of"),
        (with_actor(start={}), "actors[0].start: needs a trigger"),
        (with_actor(braking={"time_s": 1}), "actors[0].braking.decel_mps2: required"),
        (with_actor(braking={"time_s": 1, "decel_mps2": 0}), "actors[0].braking.decel_mps2: must be > 0 (got 0)"),
        (with_actor(colour=[1, 2]), "actors[0].colour: must be [r, g, b]"),
        (with_actor(speed_kmh=math.nan), "actors[0].speed_kmh: must be finite"),
        ({**BASE, "ego_speed_kmh": None}, "ccrs.yaml: ego_speed_kmh: required"),
        ({k if k != "ego_speed_kmh" else "ego_sped_kmh": v for k, v in BASE.items()},
         "ccrs.yaml: ego_speed_kmh: required (found ego_sped_kmh: a typo?)"),
        ({**BASE, "environment": {"light": "dusk"}}, "environment.light: must be one of day, night (got 'dusk')"),
        ({**BASE, "environment": {"glare": "yes"}}, "environment.glare: must be true or false"),
        ({**BASE, "expect": "maybe"}, "expect: must be one of avoid, no_brake"),
        ({**BASE, "seed": 1.5}, "seed: must be an integer"),
        ({**BASE, "duration_s": 0}, "duration_s: must be > 0 (got 0)"),
        ({**BASE, "actors": {"kind": "car"}}, "ccrs.yaml: actors: must be a list"),
        ({**BASE, "actors": ["car"]}, "ccrs.yaml: actors[0]: must be a mapping (got str)"),
        ({**BASE, "actors": [BASE["actors"][0], BASE["actors"][0] | {"name": "car0"}]}, "actors[1].name: duplicate"),
        ({**BASE, "colour": 1}, "ccrs.yaml: colour: unknown field"),
        ({**BASE, "name": "x" * 201}, "ccrs.yaml: name: 201 bytes long: at most 200"),  # not ENAMETOOLONG later
        ({**BASE, "name": "é" * 101}, "ccrs.yaml: name: 202 bytes long: at most 200"),
    ],
)
def test_errors_name_the_file_and_field(d, message):
    assert message in err(d)


def test_file_errors(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ScenarioError, match=r"nope\.yaml: cannot read"):
        load_scenario(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match=r"bad\.yaml: invalid YAML") as err:
        load_scenario(bad)
    # one line: the file, then where and what (not PyYAML's multi-line dump)
    assert str(err.value).startswith(f"{bad}: invalid YAML: line 2, column 1: ") and "\n" not in str(err.value)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ScenarioError, match=r"list\.yaml: <top>: must be a mapping"):
        load_scenario(listed)
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("name: !!python/object/apply:os.system ['true']\nego_speed_kmh: 1\n")
    with pytest.raises(ScenarioError, match="invalid YAML"):  # safe_load only
        load_scenario(unsafe)


def test_round_trip_whole_suite(tmp_path: Path):
    for s in suite("all"):
        assert scenario_from_dict(scenario_to_dict(s)) == s, s.name
    for s in suite("smoke"):  # through real YAML text as well
        path = tmp_path / f"{s.name}.yaml"
        dump_scenario(s, path)
        assert load_scenario(path) == s
        assert yaml.safe_load(path.read_text())["name"] == s.name


def test_example_files_load():
    files = example_scenario_files()
    assert len(files) >= 4
    for p in files:
        s = load_scenario(p)
        assert s.actors and s.name


def test_suites():
    ncap, benign = ncap_suite(), benign_suite()
    names = [s.name for s in ncap + benign]
    assert len(names) == len(set(names))
    assert len(benign) >= 15 and all(s.expect == "no_brake" and s.protocol is None for s in benign)
    assert all(s.expect == "avoid" and s.protocol for s in ncap)
    protocols = {s.protocol for s in ncap}
    assert protocols == {"CCRs", "CCRm", "CCRb", "CPNA-25", "CPNA-75", "CPFA-50", "CPNCO-50", "CPLA-25", "CPLA-50",
                         "CBNA-50", "CBFA-50", "CBLA-50"}
    night = {s.protocol for s in ncap if s.environment.light == "night"}
    assert night == {"CPNA-25", "CPNA-75", "CPFA-50", "CPNCO-50", "CPLA-25", "CPLA-50"}
    assert "CPNCO-50_40kmh_night" in names and "CCRs_30kmh_100pct" in names
    assert [s.name for s in suite("smoke")] == list(SMOKE)
    assert len(suite("all")) == len(ncap) + len(benign)
    assert suite("ncap") == ncap  # deterministic construction, seeds from names
    with pytest.raises(ValueError, match="unknown suite"):
        suite("everything")


@pytest.mark.parametrize(
    ("protocol", "vut", "v_rel", "light", "colour", "points"),
    [
        ("CCRs", 20, 0.0, "day", "green", 1.0),
        ("CCRs", 20, 1.0, "day", "red", 0.0),
        ("CCRs", 30, 9.9, "day", "brown", 0.25),
        ("CCRs", 40, 5.0, "day", "orange", 0.5),
        ("CCRm", 70, 15.0, "day", "orange", 0.5),
        ("CPNA-75", 60, 8.0, "night", "yellow", 0.75),
        ("CBLA-50", 60, 45.0, "day", "red", 0.0),
    ],
)
def test_scoring_bands(protocol, vut, v_rel, light, colour, points):
    b = scoring.band(protocol, vut, v_rel, light)
    assert b is not None and (b.colour, b.points) == (colour, points)


def test_scoring_fallback_matches_package(monkeypatch: pytest.MonkeyPatch):
    if scoring._package() is None:
        pytest.skip(f"{scoring.PACKAGE} not installed")
    cases = [(p, v, r) for p in ("CCRs", "CPNA-25", "CBLA-50") for v in (10, 25, 30, 40, 50, 60, 80)
             for r in (0.0, 0.5, 9.99, 10.0, 15.0, 20.0, 29.9, 30.0, 31.0, 70.0)]
    official = [scoring.band(p, v, r) for p, v, r in cases]
    monkeypatch.setattr(scoring, "_package", lambda: None)
    fallback = [scoring.band(p, v, r) for p, v, r in cases]
    for case, a, b in zip(cases, official, fallback, strict=True):
        assert a is not None and b is not None
        assert (a.colour, a.points) == (b.colour, b.points), case
        assert "not installed" in b.source


def test_scoring_misc():
    assert scoring.band("benign", 50, 10.0) is None
    assert scoring.test_name("CPNCO-50", "night") == "CPNCO night"
    assert scoring.grid_speed(5) == 10 and scoring.grid_speed(45) == 40 and scoring.grid_speed(80) == 50
    smoke = suite("smoke")
    assert scoring.score(smoke[0], None).colour == "green"
    assert scoring.score(smoke[-1], None) is None
    assert scoring.frontal_gate_passed([("CCRs", 20, "green"), ("CCRs", 30, "red"), ("CPNA-75", 20, "red"),
                                        ("CPNA-25", 10, "red"), ("CCRm", 10, "red")])
    assert not scoring.frontal_gate_passed([("CCRs", 10, "brown")])
    assert not scoring.frontal_gate_passed([("CPNA-75", 10, "red")])  # the rating code's CPNA 75 % / 10 km/h cell


def test_a_key_given_twice_is_an_error_not_the_last_value(tmp_path: Path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("name: x\nego_speed_kmh: 30\nactors:\n  - {kind: car, x_m: 35.0, y_m: 0.0, y_m: 3.5}\n"
                     "ego_speed_kmh: 80\n")
    with pytest.raises(ScenarioError, match=r"(?s)twice\.yaml: invalid YAML.*found the key 'ego_speed_kmh' twice"):
        load_scenario(twice)
    twice.write_text("name: x\nego_speed_kmh: 30\nactors:\n  - {kind: car, x_m: 35.0, y_m: 0.0, y_m: 3.5}\n")
    with pytest.raises(ScenarioError, match=r"line 4, column \d+: found the key 'y_m' twice"):
        load_scenario(twice)


def test_an_unknown_protocol_is_an_error_with_a_suggestion():
    """A typo took the run out of the scoring (no band, no points), and CCR's end rule with it."""
    assert "did you mean 'CCRs'" in err({**BASE, "protocol": "CCRS"})
    assert "unknown Euro NCAP protocol 'CPNA25'" in err({**BASE, "protocol": "CPNA25"})
    assert scenario_from_dict({**BASE, "protocol": "CPNA-50"}, "x.yaml").protocol == "CPNA-50"  # the family counts
    # the families the scenario accepts are the ones the scoring has bands for
    from tiny_node.sim.scenario import PROTOCOL_FAMILIES

    assert set(scoring._LIT + scoring._PLAIN) == PROTOCOL_FAMILIES


def test_two_scenarios_of_one_name_are_refused_naming_where_each_came_from(tmp_path: Path, capsys):
    from tiny_node.cli import main

    path = tmp_path / "mine.yaml"
    dump_scenario(next(s for s in suite("smoke") if s.name.startswith("CCRs")), path)
    rc = main(["sim", "--suite", "smoke", "--scenario", str(path), "--rules-only", "--out", str(tmp_path / "o")])
    captured = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in captured
    assert "scenario names must be unique" in captured and "suite smoke and" in captured and "mine.yaml" in captured


def test_two_names_that_make_one_file_name_are_refused_not_one_run_lost(tmp_path: Path, capsys):
    """Runs are stored and reported by run_key: 'CCRs 30' and 'CCRs_30' shared one file and one report row."""
    import dataclasses

    from tiny_node.cli import main
    from tiny_node.config import make_config
    from tiny_node.sim.runner import run_suite

    ccrs = next(s for s in suite("smoke") if s.name.startswith("CCRs"))
    a, b = dataclasses.replace(ccrs, name="CCRs 30"), dataclasses.replace(ccrs, name="CCRs_30")
    for s in (a, b):
        dump_scenario(s, tmp_path / f"{s.name.replace(' ', '-')}.yaml")
    rc = main(["sim", "--scenario", str(tmp_path / "CCRs-30.yaml"), "--scenario", str(tmp_path / "CCRs_30.yaml"),
               "--rules-only", "--out", str(tmp_path / "o")])
    captured = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in captured and "must be unique" in captured
    assert "'CCRs 30' from" in captured and "CCRs-30.yaml" in captured and "CCRs_30.yaml" in captured
    with pytest.raises(ValueError, match="'CCRs 30' and 'CCRs_30'"):
        run_suite([a, b], make_config(), bundle=None, out_dir=tmp_path / "api", modes=("rules",), progress=False)


@pytest.mark.parametrize(
    ("d", "message"),
    [
        # each of these ran: the motion silently ignored the field (or the run was scored as a test)
        (with_actor(speed_kmh=10, initial_speed_kmh=40),
         "ccrs.yaml: actors[0].initial_speed_kmh: has no effect without start or accel_mps2"),
        (with_actor(speed_kmh=30, accel_mps2=1.0), "ccrs.yaml: actors[0].accel_mps2: has no effect"),
        (with_actor(speed_kmh=10, start={"time_s": 1}, initial_speed_kmh=10, accel_mps2=1.0),
         "actors[0].accel_mps2: has no effect"),
        (with_actor(speed_kmh=50, braking={"time_s": 1, "decel_mps2": 6, "final_speed_kmh": 60}),
         "ccrs.yaml: actors[0].braking.final_speed_kmh: must be below the actor's speed (50 km/h)"),
        (with_actor(braking={"time_s": 1, "decel_mps2": 6}), "actors[0].braking.final_speed_kmh: must be below"),
        (with_actor(kind="adult", lights_on=True), "ccrs.yaml: actors[0].lights_on: only for car, parked_car"),
        (with_actor(kind="adult", stop_after_m=3), "ccrs.yaml: actors[0].stop_after_m: has no effect: the actor "
         "never moves (speed_kmh 0) (got 3)"),
        ({**BASE, "name": " "}, "ccrs.yaml: name: must not be empty"),
        ({**BASE, "protocol": "CCRs", "expect": "no_brake"}, "ccrs.yaml: protocol: only for expect: avoid"),
    ],
)
def test_fields_the_drive_would_ignore_are_errors(d, message):
    assert message in err(d)


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({**BASE, "actors": []}, "ccrs.yaml: actors: empty: an expect: avoid drive needs something to avoid"),
        ({**BASE, "protocol": "CCRs", "actors": None}, "ccrs.yaml: actors: empty"),
        (with_actor(x_m=1.0), "ccrs.yaml: actors[0]: 'car0' touches the ego at t = 0"),
        (with_actor(x_m=-3.0, y_m=1.5), "ccrs.yaml: actors[0]: 'car0' touches the ego at t = 0"),  # beside, overlapping
        ({**BASE, "actors": [BASE["actors"][0], {"kind": "adult", "x_m": -1.0, "y_m": 0.8, "name": "p"}]},
         "ccrs.yaml: actors[1]: 'p' touches the ego at t = 0: the run would begin in a collision"),
    ],
)
def test_drives_that_test_nothing_or_begin_in_a_collision_are_errors(d, message):
    """A CCRs file with no car passed with a green point; a car placed on the ego collided at t = 0,
    before the first camera frame, and was scored as the system's failure."""
    assert message in err(d)


def test_clear_of_the_ego_by_a_little_and_an_empty_benign_drive_are_accepted():
    half = KINDS["car"].length_m / 2
    assert scenario_from_dict(with_actor(x_m=half + 0.01), "ccrs.yaml").actors[0].trajectory.x_m == half + 0.01
    assert scenario_from_dict(with_actor(x_m=-3.0, y_m=1.8), "ccrs.yaml").actors  # the next lane, alongside
    assert scenario_from_dict({**BASE, "actors": [], "expect": "no_brake"}, "ccrs.yaml").actors == ()


def test_speed_fields_that_do_act_are_accepted():
    ok = [with_actor(speed_kmh=80, initial_speed_kmh=50, accel_mps2=2.0),  # ramps from t = 0
          with_actor(speed_kmh=80, initial_speed_kmh=50, start={"time_s": 1}),  # steps at the trigger
          with_actor(speed_kmh=5, start={"ego_distance_m": 20}, accel_mps2=1.0),  # from 0 with start
          with_actor(speed_kmh=50, braking={"time_s": 1, "decel_mps2": 6, "final_speed_kmh": 2}),
          with_actor(kind="parked_car", lights_on=True)]
    for d in ok:
        scenario_from_dict(d, "ccrs.yaml")


def test_a_no_brake_drive_is_never_scored():
    """A benign drive with a protocol got a green band (a free point, even when it braked) in the NCAP total."""
    import dataclasses

    ccrs = next(s for s in suite("smoke") if s.name.startswith("CCRs"))
    assert scoring.score(ccrs, None) is not None
    assert scoring.score(dataclasses.replace(ccrs, expect="no_brake"), None) is None


def _load_text(tmp_path: Path, text: str, name: str = "s.yaml") -> Any:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_scenario(path)


def test_yaml_merge_keys_work_and_an_explicit_key_twice_is_still_refused(tmp_path: Path):
    """``<<: *oncoming`` was refused ("no constructor for tag:yaml.org,2002:merge"); safe_load reads it."""
    text = ("name: merged\nego_speed_kmh: 50\nexpect: no_brake\nactors:\n"
            "  - &oncoming {kind: car, name: onc1, x_m: 120, y_m: 3.5, heading_deg: 180, speed_kmh: 50}\n"
            "  - <<: *oncoming\n    name: onc2\n    x_m: 180\n")
    s = _load_text(tmp_path, text)
    assert s == scenario_from_dict(yaml.safe_load(text), "s.yaml")
    _, onc2 = s.actors
    assert (onc2.name, onc2.trajectory.x_m) == ("onc2", 180.0)  # given here: overrides the merged value
    assert (onc2.trajectory.y_m, onc2.trajectory.heading_deg, onc2.trajectory.speed_kmh) == (3.5, 180.0, 50.0)
    with pytest.raises(ScenarioError, match=r"line 9, column 5: found the key 'x_m' twice"):
        _load_text(tmp_path, text + "    x_m: 190\n")


@pytest.mark.parametrize(
    ("d", "message"),
    [
        # each of these loaded, then crashed the renderer (OpenCV) or ran a drive no road holds
        (with_actor(kind="adult", x_m=40, y_m=-1.0e15, heading_deg=90, speed_kmh=5),
         "ccrs.yaml: actors[0].y_m: must be >= -1000 (got -1000000000000000.0)"),
        (with_actor(speed_kmh=40, lane_change={"time_s": 1, "offset_m": 1.0e12}),
         "ccrs.yaml: actors[0].lane_change.offset_m: must be <= 20 (got 1000000000000.0)"),
        (with_actor(speed_kmh=40, lane_change={"time_s": 1, "offset_m": 3.5, "duration_s": 1e-300}),
         "actors[0].lane_change.duration_s: must be >= 0.1 (got 1e-300)"),
        (with_actor(speed_kmh=50, braking={"time_s": 1, "decel_mps2": 1.0e300}),
         "ccrs.yaml: actors[0].braking.decel_mps2: must be <= 15 (got 1e+300)"),
        (with_actor(speed_kmh=50, initial_speed_kmh=10, accel_mps2=1.0e300), "actors[0].accel_mps2: must be <= 15"),
        (with_actor(speed_kmh=40, turn={"time_s": 1, "to_heading_deg": 90, "rate_dps": 1.0e300}),
         "actors[0].turn.rate_dps: must be <= 360 (got 1e+300)"),
        (with_actor(x_m=1.0e300), "actors[0].x_m: must be <= 10000 (got 1e+300)"),
        (with_actor(x_m=10**400), "actors[0].x_m: must be <= 10000 (got 1000000000"),  # not OverflowError
        (with_actor(length_m=1.0e12), "actors[0].length_m: must be <= 100"),
        (with_actor(width_m=1712), "actors[0].width_m: must be <= 100 (got 1712)"),  # millimetres
        (with_actor(height_m=1.0e9), "actors[0].height_m: must be <= 30"),
        (with_actor(z_m=1.0e9), "actors[0].z_m: must be <= 30"),
        (with_actor(stop_after_m=1.0e9), "actors[0].stop_after_m: must be <= 10000"),
        (with_actor(speed_kmh=5, start={"ttc_s": 1.0e300}), "actors[0].start.ttc_s: must be <= 600"),
        (with_actor(speed_kmh=5, start={"time_s": 1.0e300}), "actors[0].start.time_s: must be <= 600"),
        (with_actor(speed_kmh=5, start={"time_s": -3}), "actors[0].start.time_s: must be >= 0 (got -3)"),
        (with_actor(speed_kmh=5, start={"ego_distance_m": 1.0e300}), "actors[0].start.ego_distance_m: must be <= 10000"),
        (with_actor(speed_kmh=5, start={"gap_m": 1.0e300}), "actors[0].start.gap_m: must be <= 10000"),
        (with_actor(speed_kmh=50, braking={"time_s": 1, "decel_mps2": 6, "final_speed_kmh": 1e300}),
         "actors[0].braking.final_speed_kmh: must be <= 300"),
    ],
)
def test_values_no_road_vehicle_or_person_has_are_refused_naming_field_and_value(d, message):
    assert message in err(d)


def test_the_extreme_positions_the_bounds_allow_still_render():
    """The bounds keep every pixel coordinate in OpenCV's int32: an actor at the widest start, moved
    sideways by a lane change and at top speed for the longest run, drawn right beside the camera."""
    import numpy as np

    from tiny_node.sim import scenario as sc
    from tiny_node.sim.camera import CameraRenderer
    from tiny_node.sim.world import ActorState

    y_max = sc.MAX_Y_M + sc.MAX_OFFSET_M + sc.MAX_ACTOR_SPEED_KMH / 3.6 * (sc.MAX_DURATION_S + 30.0)
    renderer = CameraRenderer()
    for kind in ("adult", "cyclist", "car"):
        for y in (y_max, -y_max):
            for heading in (0.0, 0.7, math.pi / 2):
                # x -1.19: 0.31 m in front of the camera (1.5 m behind the bumper), just past its near plane
                a = ActorState(kind, -1.19, y, sc.MAX_SIZE_M, sc.MAX_SIZE_M, sc.MAX_HEIGHT_M, 80.0, 80.0, heading,
                               0.0, "a", 3.3, True, None)
                renderer.render_state(0.0, 0.0, [a], sc.Environment(light="night"), np.random.default_rng(0))


def test_the_largest_sensible_values_are_accepted():
    ok = [with_actor(x_m=10_000, y_m=-1_000), with_actor(x_m=-10_000, y_m=1_000),
          with_actor(speed_kmh=50, braking={"time_s": 600, "decel_mps2": 15}),
          with_actor(speed_kmh=40, lane_change={"time_s": 0, "offset_m": -20, "duration_s": 0.1}),
          with_actor(speed_kmh=40, turn={"ttc_s": 600, "to_heading_deg": 90, "rate_dps": 360}),
          with_actor(length_m=100, width_m=100, height_m=30, z_m=30)]
    for d in ok:
        scenario_from_dict(d, "ccrs.yaml")


def test_braking_timed_before_start_is_refused_naming_both_fields():
    """start at 3 s, braking at 1 s: the braking branch won and the actor, reported started, never moved."""
    msg = err(with_actor(speed_kmh=50, start={"time_s": 3}, braking={"time_s": 1, "decel_mps2": 6}))
    assert "ccrs.yaml: actors[0].braking.time_s: must be after start.time_s (3 s)" in msg and "(got 1)" in msg
    assert "must be after start.time_s" in err(with_actor(speed_kmh=50, start={"time_s": 3},
                                                          braking={"time_s": 3, "decel_mps2": 6}))
    scenario_from_dict(with_actor(speed_kmh=50, start={"time_s": 1}, braking={"time_s": 3, "decel_mps2": 6}))


def test_a_braking_trigger_that_holds_before_the_start_does_not_cancel_it():
    """Triggers on the ego's position cannot be ordered by the file: braking counts only once started."""
    from tiny_node.sim.motion import ActorMotion

    d = with_actor(x_m=40.0, speed_kmh=50, start={"ego_distance_m": 30}, braking={"ego_distance_m": 35,
                                                                                   "decel_mps2": 2,
                                                                                   "final_speed_kmh": 20})
    m = ActorMotion(scenario_from_dict(d).actors[0])
    dt, ego_front, t = 0.001, 0.0, 0.0
    while not m.started:
        m.step(dt, t, ego_front, 30 / 3.6)
        ego_front += 30 / 3.6 * dt
        t += dt
    assert m.speed == pytest.approx(50 / 3.6)  # it started at its speed, then brakes from it
    for _ in range(1000):
        m.step(dt, t, ego_front, 30 / 3.6)
        t += dt
    assert m.braking and 20 / 3.6 < m.speed < 50 / 3.6 and m.travelled > 10.0


@pytest.mark.parametrize(
    ("d", "message"),
    [
        (with_actor(kind="adult", speed_kmh=5, start={"ttc": 3}),
         "ccrs.yaml: actors[0].start.ttc: unknown field (did you mean ttc_s?)"),
        (with_actor(speed_kmh=30, braking={"time": 1, "decel_mps2": 6}),
         "ccrs.yaml: actors[0].braking.time: unknown field (did you mean time_s?)"),
        (with_actor(speed_kmh=30, lane_change={"gap": 10, "offset_m": 3.5}),
         "actors[0].lane_change.gap: unknown field (did you mean gap_m?)"),
    ],
)
def test_a_misspelled_trigger_key_is_named(d, message):
    """It gave "needs a trigger" only: the check for unknown keys came after."""
    assert message in err(d)


def test_the_typo_hint_never_points_at_a_valid_field():
    d = copy.deepcopy(BASE)
    del d["actors"][0]["x_m"]
    assert err(d) == "ccrs.yaml: actors[0].x_m: required"  # not "(found y_m: a typo?)"
    d["actors"][0]["xm"] = 35.0
    assert err(d) == "ccrs.yaml: actors[0].x_m: required (found xm: a typo?)"
    del d["actors"][0]["xm"]
    d["actors"][0]["x"] = 35.0  # too short for difflib: the stem before the unit
    assert err(d) == "ccrs.yaml: actors[0].x_m: required (found x: a typo?)"


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "--- # nothing\n...\n", "null\n"])
def test_an_empty_file_is_said_to_be_empty(tmp_path: Path, text: str):
    with pytest.raises(ScenarioError) as exc:
        _load_text(tmp_path, text, "empty.yaml")
    assert str(exc.value).startswith(f"{tmp_path / 'empty.yaml'}: the file is empty")
    assert "NoneType" not in str(exc.value)


@pytest.mark.parametrize("bad", ["a\nb", "a\tb", "a\rb", "a\x00b", "a\x1bb", "a\u2028b", "a\x85b"])
def test_control_characters_in_names_are_refused(bad: str):
    """A newline in a name split report.md's table row and the console table."""
    assert f"ccrs.yaml: name: must not hold control characters or line breaks (found {bad[1]!r}" in err(
        {**BASE, "name": bad})
    assert "ccrs.yaml: actors[0].name: must not hold control characters" in err(with_actor(name=bad))


def test_a_pipe_in_a_name_is_kept_and_escaped_in_the_markdown_report():
    from tiny_node.sim.report import markdown
    from tiny_node.sim.runner import run_key

    assert scenario_from_dict({**BASE, "name": "CCRs | 30 [a]"}).name == "CCRs | 30 [a]"
    name = "CCRs | 30 [a]\\"
    run = {"name": name, "mode": "rules", "outcome": "passed", "passed": True}
    for plotted in ((), (run_key(name, "rules"),)):
        md = markdown([run], plotted=plotted)
        row = next(line for line in md.splitlines() if "CCRs" in line)
        assert r"CCRs \| 30 \[a\]\\" in row and ("](plots/" in row) == bool(plotted)
        # the row has the table's 10 columns: every unescaped | is a cell border
        assert len(re.split(r"(?<!\\)\|", row.replace("\\\\", ""))) == 12


def test_a_device_or_huge_file_is_refused_at_the_bound_naming_it(tmp_path: Path):
    # --scenario /dev/zero was read whole, without bound (memory until the machine gave out)
    with pytest.raises(ScenarioError, match=r"^/dev/zero: cannot read: over 1 MiB, too large for a file of settings$"):
        load_scenario(Path("/dev/zero"))


def test_a_turn_goes_the_shorter_way_however_the_heading_is_written():
    """An oncoming car (heading 180) told to turn to 270 drove a 270 deg loop through the nearside,
    where -90, the same heading, turned 90 deg (review 2026-12-08)."""
    from tiny_node.sim.motion import ActorMotion

    def drive(to_heading: float) -> list[tuple[float, float]]:
        d = with_actor(x_m=60.0, y_m=3.0, heading_deg=180, speed_kmh=20,
                       turn={"time_s": 0.5, "to_heading_deg": to_heading, "rate_dps": 30})
        m = ActorMotion(scenario_from_dict(d).actors[0])
        path = []
        for k in range(600):  # 6 s at 10 ms
            m.step(0.01, k * 0.01, 0.0, 0.0)
            path.append((m.x, m.y))
        return path

    short, written_270 = drive(-90), drive(270)
    assert [c for p in written_270 for c in p] == pytest.approx([c for p in short for c in p])
    assert min(y for _, y in short) > -30 and max(y for _, y in short) <= 3.0 + 1e-9  # to the right, not round
    assert drive(90)[-1][1] > 3.0  # +90 from 180 turns left: the shorter way too


@pytest.mark.parametrize(("heading", "goals"), [(90, (270, -90)), (0, (180, -180)), (180, (0, 360, -360)),
                                                (-178, (2, -358)), (-155, (25, -335)), (45, (225, -135))])
def test_a_u_turn_goes_to_the_right_however_either_heading_is_written(heading, goals):
    """Neither way is shorter: the side came from float rounding of the headings' spelling (-178 -> -358
    turned left, -178 -> 2 right; review 2026-12-08). Always to the right (clockwise)."""
    import math

    from tiny_node.sim.motion import ActorMotion

    for goal in goals:
        d = with_actor(x_m=60.0, y_m=0.0, heading_deg=heading, speed_kmh=20,
                       turn={"time_s": 0.0, "to_heading_deg": goal, "rate_dps": 30})
        m = ActorMotion(scenario_from_dict(d).actors[0])
        start = m.heading
        m.step(0.1, 0.0, 0.0, 0.0)
        assert m.heading - start == pytest.approx(-math.radians(3.0)), (heading, goal)  # clockwise
