import math
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
    with pytest.raises(ConfigError, match=f"params file {f}: invalid YAML: line 2, column 1: expected") as err:
        config_from_file(f)
    assert "\n" not in str(err.value)  # one line naming file, line and problem, not PyYAML's dump
    # rcl reads 40 as an integer, which the node's double parameter refuses at start: so does sim
    f.write_text("/**/tiny_node:\n  ros__parameters:\n    deadline_ms: 40\n")
    with pytest.raises(ConfigError, match=r"p.yaml: deadline_ms: 40 is an integer.*write 40.0"):
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


def test_parameters_that_would_switch_the_model_off_silently_are_refused_by_name():
    # a guard at or past the deadline: every frame would close at receipt, the model never asked
    with pytest.raises(ConfigError, match=r"'publish_guard_ms' \(15.0\) must be below 'deadline_ms' \(10.0\)"):
        make_config({"deadline_ms": 10.0, "publish_guard_ms": 15.0})
    # a hang timeout shorter than an on-time run may take: on-time runs killed as hangs
    with pytest.raises(ConfigError, match=r"'model_hang_timeout_ms' \(500.0\) must be at least .*\(795.0\)"):
        make_config({"deadline_ms": 800.0})
    assert make_config({"deadline_ms": 800.0, "model_hang_timeout_ms": 1000.0})["deadline_ms"] == 800.0
    # the worker refuses a longer operator context: the parameter must refuse it first
    with pytest.raises(ConfigError, match=r"'operator_context': 201 characters; allowed: .*at most 200"):
        make_config({"operator_context": "x" * 201})
    assert make_config({"operator_context": "school zone"})["operator_context"] == "school zone"


def test_sections_match_the_node_as_rcl_matches_them(tmp_path):
    """As rclpy applies them (measured: a plain 'tiny_node:' section is /tiny_node only)."""
    f = tmp_path / "p.yaml"
    f.write_text(
        "/**:\n  ros__parameters:\n    deadline_ms: 40.0\n"
        "    qos_overrides:\n      /parameter_events:\n        publisher:\n          depth: 1000\n"
        "    robot_radius: 0.4\n"  # meant for another node: not ours to refuse
        "tiny_node:\n  ros__parameters:\n    brake_hold_s: 1.5\n"
        "/*/tiny_node:\n  ros__parameters:\n    camera_timeout_s: 0.7\n"
        "/**/aeb_front:\n  ros__parameters:\n    deadline_ms: 30.0\n"
    )
    assert load_params_file(f, namespace="/") == {"deadline_ms": 40.0, "brake_hold_s": 1.5}
    assert load_params_file(f, namespace="/ego") == {"deadline_ms": 40.0, "camera_timeout_s": 0.7}
    assert load_params_file(f, namespace="/a/b") == {"deadline_ms": 40.0}
    assert load_params_file(f, "aeb_front", namespace="/ego") == {"deadline_ms": 30.0}
    other = tmp_path / "other.yaml"
    other.write_text("other_node:\n  ros__parameters:\n    x: 1\n")
    assert load_params_file(other, namespace="/", require_section=False) == {}
    # the shipped file applies in any namespace
    shipped = REPO / "config" / "tiny_node.yaml"
    assert load_params_file(shipped, namespace="/ego") == load_params_file(shipped, namespace="/")


def test_the_node_reads_its_start_parameters_as_rcl_will(tmp_path):
    """Every params file and -p in command-line order, sections by the remapped name: not the last file
    alone, nor -p after every file (launch_ros puts a SetParameter's -p before the node's params file,
    and the node ran without SCHED_FIFO where `ros2 param get` said 20; review 2026-12-08)."""
    pytest.importorskip("rclpy")
    from tiny_node.ros.node import _early_parameters

    user = tmp_path / "user.yaml"
    user.write_text("/**/tiny_node:\n  ros__parameters:\n    realtime_priority: 0\n    lock_memory: false\n")
    launch = tmp_path / "launch_overrides.yaml"  # what launch_ros appends for its overrides dict
    launch.write_text("/**:\n  ros__parameters:\n    use_sim_time: false\n")
    args = ["--ros-args", "--params-file", str(user), "--params-file", str(launch)]
    assert _early_parameters(args) == {"realtime_priority": 0, "lock_memory": False}
    assert _early_parameters([*args, "-p", "realtime_priority:=30", "-p", "other:lock_memory:=true"]) == {
        "realtime_priority": 30, "lock_memory": False}
    shipped = str(REPO / "config" / "tiny_node.yaml")  # realtime_priority 20, lock_memory true
    launched = ["--ros-args", "-p", "realtime_priority:=0", "-p", "lock_memory:=false", "--params-file", shipped]
    assert {k: _early_parameters(launched)[k] for k in ("realtime_priority", "lock_memory")} == {
        "realtime_priority": 20, "lock_memory": True}  # the file after: it wins, as rcl reads it
    assert _early_parameters(["--ros-args", "--params-file", shipped, "-p", "realtime_priority:=0",
                              "--ros-args", "--params-file", str(user), "-p", "realtime_priority:=3"])[
        "realtime_priority"] == 3
    ns = tmp_path / "ns.yaml"
    ns.write_text("/ego/tiny_node:\n  ros__parameters:\n    realtime_priority: 5\n"
                  "/other/tiny_node:\n  ros__parameters:\n    realtime_priority: 7\n"
                  "/ego/aeb_front:\n  ros__parameters:\n    realtime_priority: 9\n")
    assert _early_parameters(["--ros-args", "-r", "__ns:=/ego", "--params-file", str(ns)]) == {"realtime_priority": 5}
    assert _early_parameters(["--ros-args", "-r", "__ns:=/ego", "-r", "__node:=aeb_front",
                              "--params-file", str(ns)]) == {"realtime_priority": 9}
    assert _early_parameters(["--ros-args", "--params-file", str(ns)]) == {}  # rcl applies none of them at /


def test_a_typo_in_the_shipped_style_section_is_refused_not_dropped(tmp_path):
    """``/**/tiny_node:`` (the shipped file's section) names this node: a misspelt parameter
    there is a typo to refuse, not another node's parameter to skip; it was dropped, and the
    node ran with the default (as rclpy ignores an undeclared override)."""
    f = tmp_path / "p.yaml"
    f.write_text("/**/tiny_node:\n  ros__parameters:\n    rules:\n      ttc_brake: 2.0\n")
    with pytest.raises(ConfigError, match=r"p.yaml: unknown parameter 'rules.ttc_brake'"):
        config_from_file(f)
    pytest.importorskip("rclpy")
    from tiny_node.ros.node import _early_parameters

    with pytest.raises(ConfigError, match=r"unknown parameter 'rules\.ttc_brake'"):
        make_config(_early_parameters(["--ros-args", "-r", "__ns:=/ego", "--params-file", str(f)]))
    # a section for any node keeps skipping what is not ours
    f.write_text("/**:\n  ros__parameters:\n    robot_radius: 0.4\n    deadline_ms: 40.0\n")
    assert load_params_file(f, namespace="/ego") == {"deadline_ms": 40.0}


def test_the_node_warns_of_a_params_file_with_no_section_for_it_and_names_the_file_at_fault(tmp_path, capsys):
    """A plain ``tiny_node:`` section with the node in /ego, or a misspelt section: rcl applies
    none of it, and the node ran on every default without a word (fresh-user review)."""
    pytest.importorskip("rclpy")
    from tiny_node.ros.node import _early_parameters

    plain = tmp_path / "plain.yaml"
    plain.write_text("tiny_node:\n  ros__parameters:\n    deadline_ms: 40.0\n")
    assert _early_parameters(["--ros-args", "-r", "__ns:=/ego", "--params-file", str(plain)]) == {}
    err = capsys.readouterr().err
    assert f"warning: params file {plain}: no section for node '/ego/tiny_node'" in err
    assert "its sections: 'tiny_node'" in err and "none of its values apply" in err
    assert _early_parameters(["--ros-args", "--params-file", str(plain)]) == {"deadline_ms": 40.0}
    assert capsys.readouterr().err == ""  # at / it is the node's section
    # a bad value is named with the file (or -p) it came from
    good = tmp_path / "good.yaml"
    good.write_text("/**/tiny_node:\n  ros__parameters:\n    deadline_ms: 40.0\n")
    typo = tmp_path / "typo.yaml"
    typo.write_text("/**/tiny_node:\n  ros__parameters:\n    deadlin_ms: 40.0\n")
    with pytest.raises(ConfigError, match=rf"^params file {typo}: unknown parameter 'deadlin_ms'"):
        _early_parameters(["--ros-args", "--params-file", str(good), "--params-file", str(typo)])
    with pytest.raises(ConfigError, match=r"^-p deadline_ms:=-5.0: parameter 'deadline_ms': -5.0 is out of range"):
        _early_parameters(["--ros-args", "--params-file", str(good), "-p", "deadline_ms:=-5.0"])


def test_a_node_prefixed_override_is_read_where_rcl_applies_it_and_warned_of_elsewhere(capsys):
    """``-p tiny_node:realtime_priority:=0`` under /ego: rcl applies it to /tiny_node only, yet the
    start command ran without real-time scheduling; renamed ``front``, ``-p front:...`` was applied
    by rcl and ignored here (the threads ran SCHED_FIFO 20). Both seen by a ROS-integration review."""
    pytest.importorskip("rclpy")
    from tiny_node.ros.node import _early_parameters

    assert _early_parameters(["--ros-args", "-p", "tiny_node:realtime_priority:=0"]) == {"realtime_priority": 0}
    assert capsys.readouterr().err == ""
    assert _early_parameters(["--ros-args", "-r", "__ns:=/ego", "-p", "tiny_node:realtime_priority:=0"]) == {}
    assert ("warning: -p tiny_node:realtime_priority:=0: rcl applies it to /tiny_node only, and this node is "
            "/ego/tiny_node: not applied") in capsys.readouterr().err
    assert _early_parameters(["--ros-args", "-r", "__node:=front", "-p", "front:realtime_priority:=0",
                              "-p", "tiny_node:lock_memory:=true"]) == {"realtime_priority": 0}
    assert "-p tiny_node:lock_memory:=true: rcl applies it to /tiny_node only, and this node is /front" in \
        capsys.readouterr().err
    assert _early_parameters(["--ros-args", "-p", "other:robot_radius:=0.4"]) == {}  # another node's: no word
    assert capsys.readouterr().err == ""


def test_a_rule_rcl_cannot_parse_is_one_line_naming_it(capsys):
    """``-p /ego/tiny_node:deadline_ms:=40.0`` gave an RCLInvalidROSArgsError traceback."""
    pytest.importorskip("rclpy")
    from tiny_node.ros.node import main

    assert main(["tiny_node", "--ros-args", "-p", "/ego/tiny_node:deadline_ms:=40.0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tiny_node: refusing to start: Failed to parse ROS arguments: Couldn't parse parameter "
                          "override rule: '-p /ego/tiny_node:deadline_ms:=40.0' (a -p rule is name:=value")
    assert "Traceback" not in err and "arguments.c" not in err and len(err.splitlines()) == 1


def test_a_parameter_or_section_given_twice_is_refused(tmp_path):
    """rcl takes the last of two equal keys (80 ms here), yaml.safe_load too: the author's
    first value, or a whole first section of the same name, was dropped without a word."""
    f = tmp_path / "p.yaml"
    f.write_text("/**/tiny_node:\n  ros__parameters:\n    deadline_ms: 40.0\n    deadline_ms: 80.0\n")
    with pytest.raises(ConfigError, match=r"p.yaml: invalid YAML: line 4, column 5: found the key 'deadline_ms' twice"):
        config_from_file(f)
    f.write_text("/**:\n  ros__parameters:\n    deadline_ms: 40.0\n/**:\n  ros__parameters:\n    brake_hold_s: 1.0\n")
    with pytest.raises(ConfigError, match="found the key '/\\*\\*' twice"):
        load_params_file(f)


def test_the_range_sensors_noise_floor_cannot_be_zero():
    """Two scans fit exactly: with no floor a young track would read as certain (and lift brakes)."""
    with pytest.raises(ConfigError, match=r"rules.range_noise_m"):
        make_config({"rules.range_noise_m": 0.0})
    assert make_config({"rules.range_noise_m": 0.001, "rules.range_noise_frac": 0.0}).rules.range_noise_m == 0.001


@pytest.mark.parametrize(
    "text",
    [
        "a: &x {p: 1, q: 2}\nb:\n  <<: *x\n  q: 3\n",  # a key given here overrides the merged one
        "a: &x {p: 1}\nb: &y {p: 2, r: 3}\nc:\n  <<: [*x, *y]\n",  # the first mapping merged wins
        "- &o {kind: car, name: a, x_m: 1}\n- <<: *o\n  name: b\n",
        "a: &x {p: {q: 1}}\nb:\n  <<: *x\n",
        "=: 1\n",  # the YAML 1.1 value key, which PyYAML's flatten_mapping turns into a plain string
        # an anchor that merges another, merged in turn: PyYAML rewrote it in place before it was
        # checked, and its merged x read as written twice (diff review)
        "base: &base {x: 1}\ndeep: {a: &a {<<: *base, x: 5}}\ntop: {<<: *a}\n",
    ],
)
def test_yaml_merge_keys_read_as_safe_load_reads_them(text):
    """``<<: *a`` was refused: the duplicate check built every key, ``<<`` included, before the merge."""
    import yaml

    from tiny_node.strict_yaml import safe_load_unique

    assert safe_load_unique(text) == yaml.safe_load(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: &x {p: 1}\nb:\n  <<: *x\n  q: 3\n  q: 4\n", "line 5, column 3: found the key 'q' twice"),
        ("a: &x {p: 1, p: 2}\nb:\n  <<: *x\n", "line 1, column 14: found the key 'p' twice"),
        ("a: &x {p: 1}\nb: &y {r: 1}\nc:\n  <<: *x\n  <<: *y\n",
         "line 5, column 3: found the merge key '<<' twice (merge several mappings with <<: [*a, *b])"),
        ("x: " + "1" * 5000 + "\n", "line 1, column 4: an integer of 5000 characters, too long to read"),
        ("a: {<<: {x: 1, x: 2}}\n", "line 1, column 16: found the key 'x' twice"),  # in a mapping merged inline
    ],
)
def test_a_key_given_twice_beside_a_merge_and_an_unreadable_integer_are_yaml_errors(text, problem):
    """A key written twice is still refused with a merge about; an integer past Python's 4300 digits
    raised a bare ValueError (a traceback naming no file) out of the loader."""
    import yaml

    from tiny_node.strict_yaml import safe_load_unique, yaml_problem

    with pytest.raises(yaml.YAMLError) as exc:
        safe_load_unique(text)
    assert yaml_problem(exc.value).startswith(problem)


def test_a_remap_rule_that_rewrites_none_of_the_nodes_topics_is_named():
    """rcl remaps whole names and says nothing of a rule that matches none: ``camera:=/front/image`` left the
    node on camera/image_raw, every decision a camera timeout's."""
    from tiny_node.ros.node import _unmatched_remaps

    rules = ["camera:=/front", "camera/image_raw:=/x", "/ego/range:=/r", "/range:=/q", "tiny_node:odom:=/o",
             "front:imu:=/i", "other:foo:=/b", "/clock:=/sim/clock", "~/get_state:=/g", "decision/:=/d",
             "__node:=front", "/ego/front/transition_event:=/t", "front/get_state:=/g", "rosservice://x:=/y",
             "rostopic://camera:=/c", "front:rostopic://brake:=/b"]
    args = ["--ros-args", "-r", "__ns:=/ego", *[a for r in rules for a in ("-r", r)]]
    # a rule prefixed with the old name is not applied once the node is renamed (rcl matches the new one)
    warned = dict(_unmatched_remaps(args))
    assert list(warned) == ["camera:=/front", "/range:=/q", "tiny_node:odom:=/o", "rostopic://camera:=/c"]
    assert warned["camera:=/front"].startswith("rewrites none of this node's topics (camera/image_raw, ")
    assert warned["tiny_node:odom:=/o"] == ("is for node 'tiny_node', which a __node rule renamed 'front': rcl "
                                            "applies it to no node (prefix it with 'front:')")
    assert _unmatched_remaps(["--ros-args", "-r", "imu:=/x"]) == []
    renamed = ["--ros-args", "-r", "tiny_node:__node:=front", "-r", "tiny_node:__ns:=/ego", "-r", "front:__ns:=/x"]
    assert [rule for rule, _ in _unmatched_remaps(renamed)] == ["tiny_node:__ns:=/ego"]


def test_a_remap_of_the_camera_topic_the_transport_does_not_subscribe_is_named():
    """``-r camera/image_raw:=/front/image_raw`` under camera_transport compressed (the image_transport
    habit) counted as one of the node's topics: it stayed on the default topic without a word (review)."""
    from tiny_node.ros.node import _unmatched_remaps

    args = ["--ros-args", "-r", "__ns:=/rm", "-r", "camera/image_raw:=/front/image_raw",
            "-r", "/rm/camera/image_raw/compressed:=/front/image_raw/compressed"]
    assert dict(_unmatched_remaps(args, "compressed")) == {"camera/image_raw:=/front/image_raw": (
        "rewrites camera/image_raw, which this node does not subscribe (camera_transport compressed: it "
        "subscribes camera/image_raw/compressed): remap that")}
    assert [rule for rule, _ in _unmatched_remaps(args, "raw")] == [
        "/rm/camera/image_raw/compressed:=/front/image_raw/compressed"]


@pytest.mark.parametrize(("rules", "expected"), [
    (["__node:=front", "front:__ns:=/ego"], ("front", "/ego")),  # __ns rules match the new name
    (["__node:=front", "tiny_node:__ns:=/ego"], ("front", "/")),  # warned of (below)
    (["__ns:=/a", "__ns:=/b"], ("tiny_node", "/a")),  # the first rule that matches wins
    (["__name:=aeb", "__node:=other", "__ns:=/ego"], ("aeb", "/ego")),
])
def test_the_nodes_name_and_namespace_are_read_from_the_remap_rules_as_rcl_applies_them(rules, expected):
    from tiny_node.ros.node import _name_and_namespace

    assert _name_and_namespace(["--ros-args", *[a for r in rules for a in ("-r", r)]]) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # an alias: rcl refuses the whole file ("Will not support aliasing"), the node did not start
        ("/**/tiny_node:\n  ros__parameters:\n    deadline_ms: 40.0\n    camera_timeout_s: &d 0.5\n"
         "    odom_timeout_s: *d\n", r"line 5, column 21: an alias \(\*d\): ROS 2 refuses aliases"),
        ("base: &b\n  deadline_ms: 40.0\n/**/tiny_node:\n  ros__parameters:\n    <<: *b\n",
         r"line 5, column 9: an alias \(\*b\)"),
        # a tag: Kilted reads !!float 40 as an integer, later versions as a double
        ("/**/tiny_node:\n  ros__parameters:\n    deadline_ms: !!float 40\n", r"the tag !!float on '40'"),
        ("/**/tiny_node:\n  ros__parameters:\n    model_bundle: !!str 2024\n", r"the tag !!str on '2024'"),
    ],
)
def test_a_params_file_with_an_alias_or_a_tag_rcl_reads_differently_is_refused(tmp_path, text, problem):
    """rcl refuses an alias (a merge <<: *b with it), in any node's section: the offline tools ran
    the file the vehicle refused (an RCLError traceback at start)."""
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=rf"params file {f}: invalid YAML: .*{problem}"):
        config_from_file(f)


def test_a_params_file_is_refused_where_rcl_refuses_it_in_any_section(tmp_path):
    """rcl refuses a whole file for a value it cannot read in another node's section; what it reads
    otherwise than written is refused in this node's section only (another node's is its own: a
    shared file was refused for it, which rcl starts with)."""
    f = tmp_path / "p.yaml"
    good = "/**/tiny_node:\n  ros__parameters:\n    deadline_ms: 40.0\n"
    for other, problem in [
        ("other:\n  ros__parameters:\n    a: [1, 2.0]\n", r"'a': a list of mixed types \(float, int\)"),
        ("other:\n  ros__parameters:\n    a:\n", r"'a' has no value"),
        ("extra: 1\n", r"'extra' is not a mapping: ROS 2 refuses a value outside"),
        ("/tiny_node:\n  ros__parameters:\n    rules: {sub: {}}\n", r"'rules.sub' is an empty mapping: rcl reads"),
        ("/tiny_node:\n  ros__parameters:\n    rules.x: [[1], [2]]\n", r"'rules.x': a list of lists"),
        # rcl refuses these in any section ("Cannot have a value", "must not be empty")
        ("other:\n  ros__parameters:\n    qos_overrides: {}\n    rate_hz: 30\n", r"'qos_overrides' is an empty"),
        ("other:\n  ros__parameters:\n    qos_overrides: {/tf: {publisher: {}}}\n    x: 1\n",
         r"'qos_overrides./tf.publisher' is an empty mapping before 'x'"),
        ("/**:\n  /:\n    ros__parameters:\n      x: 1\n", r"an empty node name|a node name with an empty part"),
        ("/**/tiny_node/:\n  ros__parameters:\n    x: 1\n", r"a node name ending in '/'"),
        ("/**:\n  /tiny_node:\n    ros__parameters:\n      x: 1\n", r"a node name with an empty part"),
        ("ego//:\n  tiny_node:\n    ros__parameters:\n      x: 1\n", r"a node name with an empty part"),
    ]:
        f.write_text(good + other)
        with pytest.raises(ConfigError, match=problem):
            load_params_file(f, namespace="/")
    for other in ("other:\n  ros__parameters:\n    a: 1\n    rules: {}\n",  # a trailing {} is read
                  "other:\n  ros__parameters:\n    m: [[0.5, 0.3]]\n    n: [{a: 1}, {b: 2}]\n",  # rcl reads them
                  "other:\n  ros__parameters:\n    x: 1\n/other:\n  ros__parameters:\n    x: 2\n",
                  "other:\n  ros__parameters:\n    a.b: 1\n    a: {b: 2}\n"):
        f.write_text(good + other)
        assert load_params_file(f, namespace="/") == {"deadline_ms": 40.0}, other
    # an anchor without an alias, a tag that changes nothing: rcl reads them
    f.write_text("/**/tiny_node:\n  ros__parameters:\n    deadline_ms: &d 40.0\n    operator_context: !!str abc\n")
    assert load_params_file(f, namespace="/") == {"deadline_ms": 40.0, "operator_context": "abc"}


def test_nested_node_namespaces_read_as_rcl_reads_them(tmp_path):
    """``ego: {tiny_node: {ros__parameters: ...}}`` is /ego/tiny_node to rcl, which applied it; the
    start command said "no section" and ran SCHED_FIFO with mlockall, which the file turned off."""
    f = tmp_path / "p.yaml"
    for key, ns in (("/ego/", "/ego"), ("ego/", "/ego"), ("/**/", "/ego"), ('"/"', "/")):  # a key's end slash
        f.write_text(f"{key}:\n  tiny_node:\n    ros__parameters:\n      realtime_priority: 0\n")
        assert load_params_file(f, namespace=ns) == {"realtime_priority": 0}, key
    f.write_text("ego:\n  tiny_node:\n    ros__parameters:\n      realtime_priority: 0\n      lock_memory: false\n")
    assert load_params_file(f, namespace="/ego") == {"realtime_priority": 0, "lock_memory": False}
    assert load_params_file(f, namespace="/", require_section=False) == {}  # /ego/tiny_node only
    assert config_from_file(f)["realtime_priority"] == 0
    f.write_text("/**:\n  tiny_node:\n    ros__parameters:\n      deadline_ms: 40.0\n"
                 "/ego:\n  aeb_front:\n    ros__parameters:\n      deadline_ms: 30.0\n"
                 "  tiny_node:\n    ros__parameters:\n      brake_hold_s: 1.5\n")
    assert load_params_file(f, namespace="/a/b") == {"deadline_ms": 40.0}
    assert load_params_file(f, namespace="/ego") == {"deadline_ms": 40.0, "brake_hold_s": 1.5}
    assert load_params_file(f, "aeb_front", namespace="/ego") == {"deadline_ms": 30.0}
    assert config_from_file(f)["brake_hold_s"] == 1.5
    pytest.importorskip("rclpy")
    from tiny_node.ros.node import _early_parameters

    f.write_text("ego:\n  tiny_node:\n    ros__parameters:\n      realtime_priority: 0\n      lock_memory: false\n")
    assert _early_parameters(["--ros-args", "-r", "__ns:=/ego", "--params-file", str(f)]) == {
        "realtime_priority": 0, "lock_memory": False}


def test_numbers_read_as_rcl_reads_them(tmp_path):
    """``5e-3`` (no dot) is a double to rcl and was a string here ("expected float, got '5e-3'"),
    in a file and in ``-p``; ``1_0`` is a string to rcl and was an integer here."""
    f = tmp_path / "p.yaml"
    f.write_text("/**/tiny_node:\n  ros__parameters:\n    rules:\n      range_noise_frac: 5e-3\n"
                 "    deadline_ms: 4E1\n")
    assert load_params_file(f, namespace="/") == {"rules.range_noise_frac": 0.005, "deadline_ms": 40.0}
    f.write_text("/**/tiny_node:\n  ros__parameters:\n    realtime_priority: 1_0\n")
    with pytest.raises(ConfigError, match=r"'realtime_priority': expected int, got '1_0' \(str\)"):
        config_from_file(f)
    pytest.importorskip("rclpy")
    from tiny_node.ros.node import _early_parameters

    assert _early_parameters(["--ros-args", "-p", "deadline_ms:=1e2"]) == {"deadline_ms": 100.0}
    assert _early_parameters(["--ros-args", "-p", "operator_context:=1_0"]) == {"operator_context": "1_0"}


@pytest.mark.parametrize(
    ("text", "value"),
    [  # as Kilted's rcl read each (measured with a node reading its overrides back)
        ("1e2", 100.0), ("5e-3", 0.005), ("1.0e5", 100000.0), ("1_0", "1_0"), ("0x10", 16), ("010", 8),
        ("08", 8.0), ("0o10", "0o10"), ("0b101", "0b101"), ("1:30", "1:30"), (".5", 0.5), ("1.", 1.0),
        ("+1", 1), ("y", True), ("n", False), ("off", False), ("null", "null"), ("~", "~"), ("-.inf", -math.inf),
        ("Infinity", math.inf), ("0x1p3", 8.0), ("1e999", "1e999"), ("1e-400", "1e-400"), ("4e-320", "4e-320"),
        ("99999999999999999999", 1e20), ("9223372036854775807", 2**63 - 1), ("2024-01-01", "2024-01-01"),
        ("1e", "1e"), ("'1.0'", "1.0"), ('"true"', "true"), ("|\n  40\n", "40\n"),
    ],
)
def test_a_scalar_is_typed_as_rcl_types_it(text, value):
    from tiny_node.strict_yaml import load_ros_params

    got = load_ros_params(text)
    assert type(got) is type(value) and got == value


def test_one_parameter_given_twice_in_a_section_spelt_two_ways_is_refused(tmp_path):
    """``rules.ttc_brake_s: 2.0`` and ``rules: {ttc_brake_s: 3.0}``: rcl took the last without a word."""
    f = tmp_path / "p.yaml"
    f.write_text("/**/tiny_node:\n  ros__parameters:\n    rules.ttc_brake_s: 2.0\n    rules:\n      ttc_brake_s: 3.0\n")
    with pytest.raises(ConfigError, match=r"section '/\*\*/tiny_node': parameter 'rules.ttc_brake_s' given twice"):
        config_from_file(f)
    # one node's section spelt twice (rcl merges them): one parameter in both is refused too
    f.write_text("/ego:\n  tiny_node:\n    ros__parameters:\n      deadline_ms: 40.0\n"
                 "/ego/tiny_node:\n  ros__parameters:\n    deadline_ms: 30.0\n")
    with pytest.raises(ConfigError, match=r"parameter 'deadline_ms' given twice for node '/ego/tiny_node'"):
        load_params_file(f, namespace="/ego")


def test_an_empty_params_file_is_no_parameters_as_for_rcl(tmp_path, capsys):
    """rcl reads an empty or comments-only file as no parameters; it was refused ("top level must be a
    mapping"). Like a file without the node's section: the start command warns, the offline tools refuse."""
    f = tmp_path / "p.yaml"
    for text in ("", "# nothing here\n"):
        f.write_text(text)
        assert load_params_file(f, namespace="/", require_section=False) == {}
        with pytest.raises(ConfigError, match=r"no section for node 'tiny_node' \(or '/\*\*'; its sections: none, "
                                              r"the file holds no parameters\)"):
            config_from_file(f)
    pytest.importorskip("rclpy")
    from tiny_node.ros.node import _early_parameters

    assert _early_parameters(["--ros-args", "--params-file", str(f)]) == {}
    assert "warning: params file" in capsys.readouterr().err


def test_a_params_file_that_is_a_device_is_refused_at_the_bound():
    # --params-file /dev/zero was read whole, without bound
    with pytest.raises(ConfigError, match=r"^params file /dev/zero: cannot read: over 1 MiB, too large for a file of settings"):
        config_from_file("/dev/zero")


_YAML_CASES = [
    "a: 1\nb: [1, 2.5, true, null, '3', 0x10, 1_000, .inf, 1e3]\n",
    "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n",  # a merge, one key overridden
    "a: 1\na: 2\n",  # a key twice
    "m: {k: 1, k: 2}\n",
    "d:\n  <<: *nowhere\n",  # an undefined alias
    "? [a, b]\n: 1\n",  # an unhashable key
    "x: 123456789012345678901234567890\nwhen: 2024-01-01\n",
    "n: " + "9" * 5000 + "\n",  # more digits than int() reads
    "a: [unclosed\nb: 1\n",
    "- !!python/object/apply:os.system ['true']\n",
    "%YAML 1.1\n---\na: 1\n",
    "a: 1\n---\nb: 2\n",  # two documents
    "",
    "# only a comment\n",
    'a: "\\u263a \\t"\nb: |\n  two\n  lines\n',
]  # not "a:<tab>b": libyaml reads {a: b} (a tab separates, as YAML says), PyYAML refuses the tab


@pytest.mark.parametrize("text", _YAML_CASES)
def test_yaml_composed_by_libyaml_reads_as_pyyaml_composes_it(text, monkeypatch):
    """safe_load_unique composes with libyaml where PyYAML has it (5x as fast on a bag's long
    metadata.yaml): the same values, and errors at the same place, as PyYAML's own composer."""
    import yaml

    from tiny_node import strict_yaml

    def read() -> tuple[str, object]:
        try:
            return "value", strict_yaml.safe_load_unique(text, "f.yaml")
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            return "error", None if mark is None else (mark.line, mark.column)

    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML without libyaml: its own composer only")
    assert type(strict_yaml._loader(text, "f.yaml")).__name__ == "_CUniqueKeyLoader"
    with_libyaml = read()
    monkeypatch.setattr(strict_yaml, "_CParser", None)
    assert type(strict_yaml._loader(text, "f.yaml")).__name__ == "_UniqueKeyLoader"
    assert read() == with_libyaml


def test_a_document_of_too_many_values_is_refused_before_any_is_built():
    """``[1,1,...]`` at the 16 MiB bound took 67 s and 3.2 GB with libyaml, before any check (review
    2026-12-08): the values are counted on the parser's events first, 500 000 at most."""
    import yaml

    from tiny_node.strict_yaml import MAX_WRITTEN_NODES, safe_load_unique

    assert len(safe_load_unique("[" + "1," * (MAX_WRITTEN_NODES - 2) + "1]")) == MAX_WRITTEN_NODES - 1
    with pytest.raises(yaml.YAMLError, match=f"^more than {MAX_WRITTEN_NODES} values: too many for a file of settings$"):
        safe_load_unique("[" + "1," * MAX_WRITTEN_NODES + "1]")
    with pytest.raises(yaml.YAMLError, match="line 3, column 1"):  # a syntax error in the count: as the load says it
        safe_load_unique("a: 1\nb: [\n")


def test_a_long_document_without_aliases_is_no_alias_bomb():
    """The cap counted every node: a bag's metadata.yaml of 8 000 split files (no alias at all) was refused as
    "a YAML alias bomb" (review). Aliases may add MAX_EXPANDED_NODES beyond what is written."""
    import yaml

    from tiny_node.strict_yaml import MAX_EXPANDED_NODES, safe_load_unique

    files = "".join(f"  - {{path: x_{i}.mcap, starting_time: {{nanoseconds_since_epoch: {i}}}, message_count: 1}}\n"
                    for i in range(12000))
    assert len(safe_load_unique("files:\n" + files)["files"]) == 12000
    bomb = "a0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 7))
    with pytest.raises(yaml.YAMLError, match=f"aliases expand to more than {MAX_EXPANDED_NODES} nodes"):
        safe_load_unique(bomb)  # 10^6 nodes from a few hundred bytes
    assert safe_load_unique(bomb.rsplit("\n", 3)[0])["a3"][0][0][0] == ["x"]  # 10^3: aliases may add that


def test_the_start_parameters_are_rcls_over_every_order_of_files_and_overrides(tmp_path, ros_env):
    """rcl keeps one table of sections by name, each where its name first came (``-p x:=v`` the section
    ``/**``); a later value for a name there changes that entry in place, and the node takes every matching
    section in the table's order. Read in command-line order instead, the start command set SCHED_FIFO off
    where rcl gave 20, and on where it gave 0 (review 2026-12-08). Judged against rclpy itself."""
    import rclpy
    from rclpy.node import Node

    from tiny_node.ros.node import _early_parameters

    made: list[str] = []

    def section(name: str, **values: object) -> str:
        path = tmp_path / f"section_{len(made)}.yaml"  # one file each (an id() was reused: three were one)
        body = "".join(f"    {k}: {str(v).lower() if isinstance(v, bool) else v}\n" for k, v in values.items())
        path.write_text(f"{name}:\n  ros__parameters:\n{body}")
        made.append(str(path))
        return str(path)

    shipped = str(REPO / "config" / "tiny_node.yaml")  # /**/tiny_node: realtime_priority 20, lock_memory true
    t0, t5 = section("/tiny_node", realtime_priority=0), section("/tiny_node", realtime_priority=5)
    plain0 = section("tiny_node", realtime_priority=0)
    w20, every1 = section("/**/tiny_node", realtime_priority=20), section("/**", realtime_priority=1)
    cases = [
        ["-p", "realtime_priority:=0", "-p", "lock_memory:=false", "--params-file", shipped],
        ["-p", "use_sim_time:=true", "--params-file", shipped, "-p", "realtime_priority:=0"],
        ["-p", "lock_memory:=true", "--params-file", t0, "-p", "realtime_priority:=20"],
        ["--params-file", t5, "--params-file", w20, "--params-file", t0],
        ["--params-file", shipped, "--param", "realtime_priority:=4", "--params-file", shipped],
        ["-p", "tiny_node:realtime_priority:=5", "--params-file", w20, "-p", "tiny_node:realtime_priority:=0"],
        ["-p", "tiny_node:realtime_priority:=5", "--params-file", plain0, "-p", "tiny_node:realtime_priority:=3"],
        ["--params-file", every1, "--params-file", w20, "-p", "realtime_priority:=7"],
        ["--params-file", shipped, "-p", "realtime_priority:=0", "--ros-args", "--params-file", t5],
        ["--params-file", shipped, "-p", "realtime_priority:=0"],
        ["--params-file", t5, "--params-file", plain0, "--params-file", t0],
        ["-p", "realtime_priority:=3", "--params-file", every1, "--params-file", t5, "-p", "realtime_priority:=9"],
    ]
    assert len(set(made)) == 5 and len({Path(f).read_text() for f in made}) == 5
    # one section name written twice, flat and nested: rcl merges it where it first came (the offline
    # reader merged in file order and ran another deadline than the node; review 2026-12-08)
    twice = tmp_path / "twice.yaml"
    twice.write_text("/tiny_node:\n  ros__parameters:\n    realtime_priority: 3\n"
                     "/**:\n  ros__parameters:\n    realtime_priority: 6\n"
                     "/:\n  tiny_node:\n    ros__parameters:\n      lock_memory: false\n")
    assert load_params_file(twice, namespace="/")["realtime_priority"] == 6
    cases.append(["--params-file", str(twice)])
    for case in cases:
        args = ["--ros-args", *case]
        context = rclpy.context.Context()
        rclpy.init(args=args, context=context)
        try:
            node = Node("tiny_node", context=context, automatically_declare_parameters_from_overrides=True)
            rcl = {k: node.get_parameter(k).value for k in ("realtime_priority", "lock_memory")
                   if node.has_parameter(k)}
            node.destroy_node()
        finally:
            rclpy.shutdown(context=context)
        early = _early_parameters(args, [])
        assert {k: early[k] for k in rcl} == rcl, case


def test_start_parameters_are_judged_and_blamed_on_the_values_in_effect(tmp_path):
    """Judged per section, an integer ``/**`` value that the node's own section replaces with a double
    refused a start rclpy allows; and an error blamed the first file giving the value, one a later
    entry had replaced, or no file at all (review 2026-12-08)."""
    pytest.importorskip("rclpy")
    from tiny_node.ros.node import _early_parameters

    shared = tmp_path / "shared.yaml"
    shared.write_text("/**:\n  ros__parameters:\n    deadline_ms: 40\n"
                      "/**/tiny_node:\n  ros__parameters:\n    deadline_ms: 40.0\n")
    assert _early_parameters(["--ros-args", "--params-file", str(shared)])["deadline_ms"] == 40.0
    assert load_params_file(shared)["deadline_ms"] == 40.0
    reverse = tmp_path / "reverse.yaml"  # the integer last: in effect, refused
    reverse.write_text("/**/tiny_node:\n  ros__parameters:\n    deadline_ms: 40.0\n"
                       "/**:\n  ros__parameters:\n    deadline_ms: 40\n")
    with pytest.raises(ConfigError, match=rf"^params file {reverse}: deadline_ms: 40 is an integer"):
        _early_parameters(["--ros-args", "--params-file", str(reverse)])
    a = tmp_path / "a.yaml"
    a.write_text("/**:\n  ros__parameters:\n    deadline_ms: 2000.0\n")
    c = tmp_path / "c.yaml"  # its /tiny_node's 2000.0 is in effect; its /** replaces a's in place
    c.write_text("/tiny_node:\n  ros__parameters:\n    deadline_ms: 2000.0\n/**:\n  ros__parameters:\n"
                 "    deadline_ms: 40.0\n")
    common = tmp_path / "common.yaml"
    common.write_text("/**:\n  ros__parameters:\n    use_sim_time: true\n")
    for first in (a, common):
        with pytest.raises(ConfigError, match=rf"^params file {c}: parameter 'deadline_ms': 2000.0 is out of range"):
            _early_parameters(["--ros-args", "--params-file", str(first), "--params-file", str(c)])
