"""The start command (``tiny-node run``): what it refuses, in one line, before the node starts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.ros

QUIET = "    realtime_priority: 0\n    lock_memory: false\n"  # no SCHED_FIFO / mlockall if it did start


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # rcl refuses a node name with a '-' (the whole file): read by rcl at rclpy.init, a traceback
        ("/**/tiny_node:\n  ros__parameters:\n" + QUIET + "bad-name:\n  ros__parameters:\n    x: 1\n",
         "refusing to start: Failed to parse ROS arguments: Couldn't parse params file: '--params-file {f}'. "
         "Error: node name must not contain characters other than alphanumerics or '_'"),
        # an alias: rcl's "Will not support aliasing"; both refuse it, and ours names line and column
        ("/**/tiny_node:\n  ros__parameters:\n" + QUIET + "    camera_timeout_s: &d 0.5\n    odom_timeout_s: *d\n",
         "params file {f}: invalid YAML: line 6, column 21: an alias (*d): ROS 2 refuses aliases"),
    ],
)
@pytest.mark.parametrize("form", ["option", "ros-args"])
def test_a_params_file_rcl_refuses_is_refused_in_one_line(ros_env, tmp_path, text, problem, form):
    """``tiny-node run --params-file F`` with a file rcl cannot parse ended in an RCLError traceback
    from rclpy.init (exit 1); ``--ros-args --params-file F`` was refused in one line."""
    f = tmp_path / "p.yaml"
    f.write_text(text)
    args = ["--params-file", str(f)] if form == "option" else ["--ros-args", "--params-file", str(f)]
    proc = subprocess.run([sys.executable, "-m", "tiny_node", "run", *args],
                          env=ros_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and ".c:" not in proc.stderr and len(proc.stderr.splitlines()) == 1, \
        proc.stderr
    if form == "option" or "alias" not in problem:  # --ros-args: rcl reads the user's arguments first
        assert problem.format(f=f) in proc.stderr


@pytest.mark.parametrize("path", ["1.0", "2024", "true", "", "a b:c", "it's \"q\""])
def test_a_model_bundle_option_is_the_nodes_value_as_given_over_every_params_file(monkeypatch, ros_env, tmp_path,
                                                                                  path):
    """``tiny-node run --model-bundle 1.0`` (a directory 1.0) was refused: "-p: parameter 'model_bundle':
    expected str, got 1.0 (float)": the path went into ``-p model_bundle:=1.0`` bare. As a ``-p`` it went
    into rcl's section /**, which a params file's /**/tiny_node after it in rcl's table overrode: the node
    loaded the file's bundle (review 2026-12-08). It is the node's own parameter override now."""
    from tiny_node.config import ConfigError
    from tiny_node.ros import node

    seen: list[tuple[list[str], object]] = []

    def stop(ros_args: list[str], warnings: list[str] | None = None, last: object = None) -> dict[str, object]:
        seen.append((ros_args, last))
        raise ConfigError("stopped here")

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("/**/tiny_node:\n  ros__parameters:\n    model_bundle: from_the_file\n")
    real = node._early_parameters
    monkeypatch.setattr(node, "_early_parameters", stop)
    assert node.main(["tiny_node", "--model-bundle", path, "--ros-args", "-p", "use_sim_time:=true",
                      "--params-file", str(cfg)]) == 2
    ((ros_args, last),) = seen
    assert last == {"model_bundle": path} and real(ros_args, [], last)["model_bundle"] == path
    # and rclpy gives the node that string, over the file's section (as the start command passes it)
    script = textwrap.dedent("""
        import json, sys
        import rclpy
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        rclpy.init(args=["x", *json.loads(sys.argv[1])])
        node = Node("tiny_node", automatically_declare_parameters_from_overrides=True,
                    parameter_overrides=[Parameter("model_bundle", value=sys.argv[2])])
        print(json.dumps(node.get_parameter("model_bundle").value))
        node.destroy_node()
        rclpy.try_shutdown()
    """)
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(ros_args), path],
                          env=ros_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == path
    assert real(ros_args, [])["model_bundle"] == "from_the_file"  # without it: the file's, as rcl gives it


def test_the_params_file_reader_types_values_as_the_installed_rcl_does(ros_env, tmp_path):
    """The offline tools and the start command read a file as rcl will (here: this ROS 2's rcl)."""
    from tiny_node.strict_yaml import load_ros_params

    texts = ["1e2", "5e-3", "1.0e5", "1_0", "0x10", "010", "08", "0b101", "1:30", ".5", "1.", "+1", "y", "n", "off",
             "null", "~", "-.inf", "0x1p3", "1e999", "1e-400", "99999999999999999999", "2024-01-01", "'1.0'",
             '"true"', "!!str abc"]
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n" + "".join(f"    v{i}: {t}\n" for i, t in enumerate(texts)))
    script = textwrap.dedent("""
        import json, math, sys
        import rclpy
        from rclpy.node import Node
        rclpy.init(args=["x", "--ros-args", "--params-file", sys.argv[1]])
        node = Node("tiny_node", automatically_declare_parameters_from_overrides=True)
        print(json.dumps({k: [type(p.value).__name__, repr(p.value)] for k, p in node._parameters.items()}))
        node.destroy_node()
        rclpy.try_shutdown()
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(f)], env=ros_env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    rcl = json.loads(proc.stdout)
    ours = load_ros_params(f.read_text())["/**"]["ros__parameters"]
    for i, text in enumerate(texts):
        assert rcl[f"v{i}"] == [type(ours[f"v{i}"]).__name__, repr(ours[f"v{i}"])], text


def test_a_p_value_rcl_refuses_keeps_rcls_reason(ros_env):
    """Every refused -p rule got the syntax hint, rcl's reason cut off: `-p deadline_ms:=[1.0, 2]` said
    "a -p rule is name:=value" for a rule whose syntax was right and whose list mixed types."""
    proc = subprocess.run([sys.executable, "-m", "tiny_node", "run", "--ros-args", "-p", "deadline_ms:=[1.0, 2]"],
                          env=ros_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Error: Sequence should be of same type" in proc.stderr, proc.stderr
    assert "a -p rule is name:=value" not in proc.stderr and ".c:" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "tiny_node", "run", "--ros-args", "-p", "bad rule"],
                          env=ros_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "a -p rule is name:=value" in proc.stderr and "lexeme" not in proc.stderr


def test_where_rcl_and_the_start_command_both_refuse_a_file_ours_names_it(ros_env, tmp_path):
    """With rcl's reading first, a missing file said "Error opening YAML file", a YAML error "Error
    parsing a event near line 4": the start command's own words say which file and what."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**/tiny_node:\n  ros__parameters:\n    deadline_ms: 40.0\n   x: [\n")
    for path, words in ((tmp_path / "none.yaml", "params file not found"), (bad, "invalid YAML: line 4")):
        proc = subprocess.run([sys.executable, "-m", "tiny_node", "run", "--params-file", str(path)],
                              env=ros_env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and words in proc.stderr and str(path) in proc.stderr, proc.stderr


def test_a_p_value_rcl_cannot_read_is_named_as_the_value(ros_env):
    """`-p deadline_ms:=[1.0, 2.0` got the hint that a rule is name:=value, which it was."""
    proc = subprocess.run([sys.executable, "-m", "tiny_node", "run", "--ros-args", "-p", "deadline_ms:=[1.0, 2.0"],
                          env=ros_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "its value is not YAML rcl reads" in proc.stderr, proc.stderr
    assert "a -p rule is name:=value" not in proc.stderr


def _gone(pid: int) -> bool:
    """No such process, or a zombie waiting for a reaper that is not us."""
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


@pytest.mark.parametrize("when", ["running", "starting"])
def test_a_node_started_by_a_command_killed_outright_ends_with_it(ros_env, tmp_path, when):
    """A demo, bench or hil killed by SIGKILL (the OOM killer, a CI job's timeout) left its node,
    in a session of its own, running on and publishing brake decisions on the domain."""
    import os
    import signal
    import time

    log = tmp_path / "node.log"
    script = textwrap.dedent("""
        import json, sys, time
        from pathlib import Path
        from tiny_node.tools.nodeproc import NodeProcess
        node = NodeProcess(json.loads(sys.argv[1]), params={"model_bundle": "''", "realtime_priority": 0,
                           "lock_memory": False}, log_path=Path(sys.argv[2])).start()
        print(node.pid, flush=True)
        time.sleep(300)
    """)
    starter = subprocess.Popen([sys.executable, "-c", script, json.dumps(ros_env), str(log)], env=ros_env,
                               stdout=subprocess.PIPE, text=True)
    assert starter.stdout is not None
    pid = int(starter.stdout.readline())
    try:
        end = time.monotonic() + 60
        # "starting": killed while the node imports, before it could ask for the signal
        while when == "running" and "active: deciding" not in log.read_text() and time.monotonic() < end:
            time.sleep(0.1)
        assert when == "starting" or "active: deciding" in log.read_text(), log.read_text()
        starter.kill()
        starter.wait()
        end = time.monotonic() + 60
        while not _gone(pid) and time.monotonic() < end:
            time.sleep(0.1)
        assert _gone(pid), f"the node (pid {pid}) outlived the command that started it; its log:\n{log.read_text()}"
        assert "Traceback" not in log.read_text()
    finally:
        if not _gone(pid):
            os.killpg(pid, signal.SIGKILL)


def test_a_node_process_model_bundle_wins_over_a_params_file_with_a_shared_section(ros_env, tmp_path):
    """``sim --realtime``'s rules run passes ``model_bundle ''`` over the user's params file; as a ``-p`` (rcl's
    section /**) a file with a /** section before its /**/tiny_node kept the file's model, and the rules run
    ran the model (review 2026-12-08). NodeProcess passes it as --model-bundle, the node's own override."""
    import rclpy
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from tiny_node.tools.nodeproc import NodeProcess

    f = tmp_path / "user.yaml"
    f.write_text("/**:\n  ros__parameters:\n    use_sim_time: false\n"
                 "/**/tiny_node:\n  ros__parameters:\n    model_bundle: default\n")
    # another node command (`hil --node-cmd`) gets the -p any ROS node takes (a strict parser refused
    # --model-bundle, and another node ran without the model it was given; review 2026-12-08)
    other = NodeProcess(ros_env, params={"model_bundle": "/b"}, command=["my_node"]).cmd
    assert "--model-bundle" not in other and other[other.index("model_bundle:=/b") - 1] == "-p"
    for given, wanted in (("''", ""), ("/some/bundle", "/some/bundle")):
        cmd = NodeProcess(ros_env, params={"model_bundle": given, "realtime_priority": 0}, params_file=f).cmd
        assert cmd[cmd.index("--model-bundle") + 1] == wanted and not any("model_bundle" in a for a in cmd)
        # what the node's start command does with it: rclpy's own answer (parameter_overrides over the file)
        ros_args = cmd[cmd.index("--ros-args"):]
        context = rclpy.context.Context()
        rclpy.init(args=["x", "--ros-args", "--params-file", str(f), *ros_args], context=context)
        try:
            node = Node("tiny_node", context=context, automatically_declare_parameters_from_overrides=True,
                        parameter_overrides=[Parameter("model_bundle", value=wanted)])
            assert node.get_parameter("model_bundle").value == wanted
            node.destroy_node()
        finally:
            rclpy.shutdown(context=context)
