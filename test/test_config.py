from pathlib import Path

import pytest

from tiny_node.config import PARAMS, ConfigError, config_from_file, load_params_file, make_config

REPO = Path(__file__).resolve().parents[1]


def test_shipped_params_file_lists_every_parameter_with_its_default():
    flat = load_params_file(REPO / "config" / "tiny_node.yaml")
    assert set(flat) == {p.name for p in PARAMS}
    cfg = config_from_file(REPO / "config" / "tiny_node.yaml")
    for p in PARAMS:
        assert cfg[p.name] == p.default, p.name


def test_out_of_range_names_parameter_and_range():
    with pytest.raises(ConfigError, match=r"'deadline_ms'.*2000.*\[5.0, 1000.0\]"):
        make_config({"deadline_ms": 2000.0})


def test_bad_choice_and_type_and_unknown():
    with pytest.raises(ConfigError, match=r"'arbitration'.*'either', 'shadow'"):
        make_config({"arbitration": "model_only"})
    with pytest.raises(ConfigError, match="'brake_hold_s': expected float"):
        make_config({"brake_hold_s": "two"})
    with pytest.raises(ConfigError, match="unknown parameter 'deadline_msec'"):
        make_config({"deadline_msec": 40.0})


def test_params_file_errors_name_the_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("tiny_node:\n  ros__parameters:\n    rules:\n      t_response_s: 9.0\n")
    with pytest.raises(ConfigError, match=r"p.yaml.*'rules.t_response_s'.*\[0.0, 5.0\]"):
        config_from_file(f)
    f.write_text("other_node:\n  ros__parameters: {}\n")
    with pytest.raises(ConfigError, match="no section for node 'tiny_node'"):
        config_from_file(f)
    f.write_text("tiny_node: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        config_from_file(f)


def test_namespaced_and_wildcard(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(
        "/**:\n  ros__parameters:\n    use_sim_time: true\n    deadline_ms: 40.0\n"
        "/ego/tiny_node:\n  ros__parameters:\n    brake_hold_s: 1.5\n"
    )
    cfg = config_from_file(f)
    assert cfg.float("deadline_ms") == 40.0
    assert cfg.float("brake_hold_s") == 1.5
