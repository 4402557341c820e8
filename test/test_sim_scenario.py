"""Scenario schema, YAML round trip, errors that name the field, the suites, the scoring wrapper."""

from __future__ import annotations

import copy
import math
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
