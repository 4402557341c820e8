"""The node in its own process over real DDS: every frame answered once, by its deadline."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import REPO, collect, stream

pytestmark = pytest.mark.ros


def one_each(decisions: dict[int, list]) -> list[dict]:
    """Assert exactly one decision per stamp; return their values."""
    missing = [s for s, d in decisions.items() if not d]
    dups = {s: len(d) for s, d in decisions.items() if len(d) > 1}
    assert not missing, f"{len(missing)} frames without a decision"
    assert not dups, f"duplicate decisions: {dups}"
    return [d[0].values for d in decisions.values()]


# Decisions taken at the guarded deadline (fallback for a slow / dead model) have 2 ms of
# margin of the publish guard; on this shared 2-vCPU VM wake-ups of the deadline thread were
# seen up to 4-6 ms late idle and ~8 ms late with other jobs loading both cores
# (docs/BENCHMARKS.md). Tests on that path allow this jitter for a few frames and still fail
# on a systematic miss or a lost frame; the benchmark reports the strict figures.
JITTER_MS = 10.0


def on_time(values: list[dict], jitter_ms: float = 0.0, late_share: float = 0.0) -> None:
    late = [v for v in values if float(v["latency_ms"]) > float(v["deadline_ms"])]
    worst = max((float(v["latency_ms"]) - float(v["deadline_ms"]) for v in values), default=0.0)
    assert len(late) <= late_share * len(values), f"{len(late)} decisions after their deadline, e.g. {late[0]}"
    assert worst <= jitter_ms, f"a decision {worst:.2f} ms after its deadline"


def test_rules_only_one_decision_per_frame_with_its_stamp(start_node, feeder):
    node = start_node()
    assert feeder.wait_for_node(30), node.output()
    stamps = stream(feeder, 60, gap_m=80.0, speed=10.0)
    values = one_each(collect(feeder, stamps))
    on_time(values)
    assert [v["stamp_ns"] for v in values] == stamps
    assert {v["source"] for v in values} == {"rules"}
    assert {v["model_state"] for v in values} == {"disabled"}
    assert {v["decision"] for v in values} == {"no_brake"}
    # a stationary object 12 m ahead at 10 m/s (RSS distance 16 m): the rules brake, and say why
    stamps = stream(feeder, 10, gap_m=12.0, speed=10.0, closing=True)
    values = one_each(collect(feeder, stamps))
    assert {v["decision"] for v in values} == {"brake"}
    assert values[0]["reason"].startswith("RSS")
    assert node.alive()
    # each decision's brake message carries its sequence number, published first, with its value: what
    # the HIL harness pairs them by (hil.harness.brake_failures)
    from tiny_node.ros.message_info import HAS_MSG_INFO

    time.sleep(0.3)
    with feeder._lock:
        got = [r for rs in feeder.log.decisions.values() for r in rs]
        brakes = list(feeder.log.brake_msgs)
    if HAS_MSG_INFO:
        by_seq = {pub[1]: (value, pub) for _, value, pub in brakes}
        assert len(by_seq) == len(brakes) == len(got) >= 70
        for r in got:
            value, pub = by_seq[r.published[1]]
            assert value == (r.values["decision"] == "brake")
            assert 0 < pub[2] <= r.published[2]  # source timestamps: the brake first
    else:  # Humble: no message info
        assert all(pub is None for _, _, pub in brakes) and all(r.published is None for r in got)


def test_bad_frames_get_a_decision_and_a_reason(start_node, feeder):
    from sensor_msgs.msg import Image

    node = start_node()
    assert feeder.wait_for_node(30), node.output()
    good = np.full((48, 64, 3), 80, np.uint8).tobytes()
    bad = {
        "wrong step": Image(width=64, height=48, step=10, encoding="rgb8", data=good),
        "truncated": Image(width=64, height=48, step=192, encoding="rgb8", data=good[:1000]),
        # an invented name: yuv422 is read since fe774d2, as the HIL fault's UNKNOWN_ENCODING says
        "unknown encoding": Image(width=64, height=48, step=192, encoding="not_an_encoding", data=good),
        "zero size": Image(width=0, height=0, step=0, encoding="rgb8", data=b""),
    }
    kinds = list(bad)

    def send(i: int, stamp: int) -> None:
        feeder.send_frame(stamp, raw=bad[kinds[i % len(kinds)]])

    stamps = stream(feeder, 8, frame=send)
    values = one_each(collect(feeder, stamps))
    on_time(values)
    reasons = [v["reason"] for v in values]
    assert "step 10" in reasons[0]
    assert "truncated" in reasons[1]
    assert "'not_an_encoding' not supported" in reasons[2]
    assert "size 0x0" in reasons[3]
    assert node.alive()
    stamps = stream(feeder, 5)  # and it keeps deciding good frames
    assert len(one_each(collect(feeder, stamps))) == 5


def test_garbage_jpeg_on_compressed_transport(start_node, ros_env):
    from sensor_msgs.msg import CompressedImage

    from tiny_node.tools.feeder import Feeder

    node = start_node({"camera_transport": "compressed"})
    feeder = Feeder(compressed=True)
    try:
        assert feeder.wait_for_node(30), node.output()

        def send(i: int, stamp: int) -> None:
            if i % 2:
                feeder.send_frame(stamp, raw=CompressedImage(format="jpeg", data=os.urandom(2000)))
            else:
                feeder.send_frame(stamp, np.full((48, 64, 3), 80, np.uint8))

        stamps = stream(feeder, 6, frame=send)
        values = one_each(collect(feeder, stamps))
        on_time(values)
        assert "could not be decoded" in values[1]["reason"]
        assert "could not be decoded" not in values[0]["reason"]
        assert node.alive()
    finally:
        feeder.close()


def test_invalid_parameter_refuses_to_start_naming_it(ros_env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiny_node:\n  ros__parameters:\n    deadline_ms: 5000.0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tiny_node", "run", "--params-file", str(bad)],
        env=ros_env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "deadline_ms" in proc.stderr and "[5.0, 1000.0]" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "tiny_node", "run", "--ros-args", "-p", "arbitration:=yolo"],
        env=ros_env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "arbitration" in proc.stderr and "'either', 'shadow'" in proc.stderr


def test_a_command_line_parameter_typo_or_integer_double_refuses_to_start():
    """rcl ignores an override of a parameter the node does not declare: -p deadline_msec:=40.0 ran on
    the 50 ms default without a word; -p deadline_ms:=40 got rclpy's bare type error."""
    from tiny_node.config import ConfigError, make_config
    from tiny_node.ros.node import _early_parameters

    with pytest.raises(ConfigError, match=r"unknown parameter 'deadline_msec' \(did you mean deadline_ms\?\)"):
        make_config(_early_parameters(["--ros-args", "-p", "deadline_msec:=40.0"]))
    with pytest.raises(ConfigError, match=r"-p deadline_ms:=40: 40 is an integer.*write 40.0"):
        _early_parameters(["--ros-args", "-p", "deadline_ms:=40"])
    # another node's parameter and ROS's own are not ours to judge
    assert _early_parameters(["--ros-args", "-p", "other:foo:=1", "-p", "use_sim_time:=true",
                              "-p", "tiny_node:deadline_ms:=40.0"]) == {"deadline_ms": 40.0}


def test_runtime_parameter_set_is_validated(start_node, feeder):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    node = start_node()
    assert feeder.wait_for_node(30), node.output()
    client = feeder.node.create_client(SetParameters, "/tiny_node/set_parameters")
    assert client.wait_for_service(timeout_sec=10)

    def set_double(name: str, value: float):
        req = SetParameters.Request(parameters=[Parameter(
            name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value))])
        fut = client.call_async(req)
        end = time.monotonic() + 10
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.02)
        return fut.result().results[0]

    refused = set_double("brake_hold_s", 99.0)
    assert not refused.successful
    assert "brake_hold_s" in refused.reason and "30.0" in refused.reason
    assert set_double("deadline_ms", 40.0).successful
    stamps = stream(feeder, 5)
    values = one_each(collect(feeder, stamps))
    assert {round(float(v["deadline_ms"])) for v in values} == {40}


def test_sigterm_exits_cleanly(start_node, feeder):
    """SIGTERM (systemd, docker stop) is a shutdown like SIGINT: status 0 after the teardown.

    A node killed by the signal would return -SIGTERM and leave its DDS shared memory behind;
    SIGINT is checked with the shared memory in the next test (``NodeProcess.stop`` sends it).
    """
    node = start_node()
    assert feeder.wait_for_node(30), node.output()
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(timeout=15) == 0, node.output()


def test_a_stopped_node_leaves_no_dds_shared_memory(start_node, feeder, ros_env):
    """Fast DDS gives the node's participant a 16 MiB /dev/shm segment; exiting must remove it.

    The node once left it behind at every exit (its frozen start-up objects held the rclpy
    context), and a day of test runs filled /dev/shm until builds were killed for memory.
    """
    from pathlib import Path

    from tiny_node.dds import uses_fastdds

    shm = Path("/dev/shm")
    if not shm.is_dir() or not uses_fastdds(ros_env):
        pytest.skip("Fast DDS shared memory in /dev/shm only")

    def segments() -> set[str]:
        # Fast DDS 3 (Kilted) names them fastdds_*, Fast DDS 2 (Humble, Jazzy) fastrtps_*
        return {p.name for prefix in ("fastdds", "fastrtps") for p in shm.glob(f"{prefix}_*")
                if not p.name.startswith(f"{prefix}_port") and not p.name.endswith("_el")}

    before = segments()  # the feeder's are made already
    node = start_node()
    assert feeder.wait_for_node(30), node.output()  # up and spinning, past its start-up
    # the node's own: made since, and mapped by its process (it maps its peers' too, and other
    # DDS processes on the machine, other tests' on other domains, make theirs meanwhile)
    maps = Path(f"/proc/{node.pid}/maps").read_text(encoding="utf-8")
    mine = {name for name in segments() - before if f"/dev/shm/{name}" in maps}
    assert mine, f"the node made no Fast DDS segment in /dev/shm: {node.output()}"
    assert node.stop() == 0
    assert not mine & segments(), f"left in /dev/shm after the node exited: {sorted(mine & segments())}"


def test_signal_mid_stream_answers_the_open_frames_without_a_traceback(start_node, feeder, bundles):
    """Ctrl-C on ``ros2 launch`` while the slow model runs: the open frames are answered too.

    rclpy's own handler shut the context down before the teardown: the decision of the frame in
    flight failed to publish (an RCLError traceback in the log) and that frame went unanswered.
    The SIGINT comes twice (from the terminal, then from launch): the second one cut the teardown
    short (a KeyboardInterrupt traceback, the worker's shared memory "leaked").
    """
    node = start_node({"model_bundle": str(bundles["slow"])})
    assert feeder.wait_for_node(60), node.output()
    stamps = stream(feeder, 12)
    node.proc.send_signal(signal.SIGINT)  # right after the last frame: its cycle is open
    time.sleep(0.02)
    node.proc.send_signal(signal.SIGINT)
    assert node.proc.wait(timeout=15) == 0, node.output()
    one_each(collect(feeder, stamps, timeout_s=2.0))
    assert "Traceback" not in node.output() and "leaked" not in node.output(), node.output()


def test_sigterm_during_the_model_warm_up_exits_at_once_and_frees_its_memory(start_node, bundles):
    """SIGTERM (systemd, ``docker stop``) while configure waits for the model's warm-up.

    It waited out the warm-up (up to 60 s; docker's SIGKILL comes after 10 s), then exited with
    status 2; a SIGINT there left the frame slots to the resource tracker's "leaked" warning.
    """
    from pathlib import Path

    node = start_node({"model_bundle": str(bundles["slow"]), "model_warmup_runs": 100})  # 20 s
    worker = node.wait_for_worker(30.0)
    maps = Path(f"/proc/{node.pid}/maps")
    end = time.monotonic() + 10.0
    while "/dev/shm/psm_" not in maps.read_text() and time.monotonic() < end:
        time.sleep(0.05)
    slots = {line.split()[-1] for line in maps.read_text().splitlines() if "/dev/shm/psm_" in line}
    assert slots, node.output()
    time.sleep(0.5)  # inside the warm-up
    t0 = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(timeout=15) == 0, node.output()
    assert time.monotonic() - t0 < 5.0
    assert not Path(f"/proc/{worker}").exists() or Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z"
    assert not [s for s in slots if Path(s).exists()], node.output()
    assert "leaked" not in node.output() and "Traceback" not in node.output(), node.output()


def test_help_lists_options():
    out = subprocess.run([sys.executable, "-m", "tiny_node", "run", "--help"], capture_output=True,
                         text=True, timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0
    assert "--params-file" in out.stdout and "--ros-args" in out.stdout
    assert out.stdout.startswith("usage: tiny-node run ")  # as typed, not the executable's tiny_node


def test_a_node_started_unconfigured_is_driven_by_tiny_node_lifecycle(start_node, capsys):
    """Without a ROS install there is no ``ros2 lifecycle``: ``--no-autostart`` was a dead end."""
    from tiny_node.cli import main as cli_main

    node = start_node(extra_args=["--no-autostart"], namespace="/ego")
    assert cli_main(["lifecycle", "--node", "/ego/tiny_node", "--timeout", "30"]) == 0
    assert capsys.readouterr().out.strip().endswith("/ego/tiny_node: unconfigured")
    assert cli_main(["lifecycle", "configure", "activate", "--node", "/ego/tiny_node", "--timeout", "30"]) == 0
    assert capsys.readouterr().out.splitlines() == ["configure: ok", "activate: ok", "/ego/tiny_node: active"]
    assert cli_main(["lifecycle", "activate", "--node", "/ego/tiny_node"]) == 1  # already active
    assert "/ego/tiny_node is active: no activate from there (available: deactivate, shutdown)" in \
        capsys.readouterr().err
    assert cli_main(["lifecycle", "--node", "/ego/nowhere", "--timeout", "1"]) == 1
    assert "no service /ego/nowhere/get_state within 1 s" in capsys.readouterr().err
    assert node.alive()


def test_a_transition_asked_by_id_that_the_state_lacks_does_not_end_the_node(start_node, capsys):
    """Humble's and Jazzy's lifecycle service raises out of the executor on a transition asked by id
    that the current state lacks: a deactivate sent to an unconfigured node ended it (rc 1, a
    traceback), where Kilted answers success false. Either way the node must go on, and the
    tools ask by label, which every distro answers."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    from tiny_node.cli import main as cli_main
    from tiny_node.tools.feeder import Feeder

    node = start_node(extra_args=["--no-autostart"], namespace="/ego")
    feeder = Feeder(namespace="/ego")
    try:
        answers = feeder.call(ChangeState, "/ego/tiny_node/change_state",
                              [ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))], 5.0)
        assert not answers or not answers[0].success, answers
        time.sleep(0.5)
        assert node.alive(), node.output()
        with pytest.raises(RuntimeError, match=r"tiny_node lifecycle transition deactivate failed$"):
            feeder.change_state("deactivate", timeout_s=10.0)  # by label: answered, false
        feeder.change_state("configure", "activate", timeout_s=30.0)
    finally:
        feeder.close()
    assert cli_main(["lifecycle", "--node", "/ego/tiny_node", "--timeout", "30"]) == 0
    assert capsys.readouterr().out.strip().endswith("/ego/tiny_node: active")
    assert node.alive(), node.output()


def test_shutdown_transition_ends_the_process(start_node, capsys):
    """Finalized is terminal: the process used to stay, holding its participant, until SIGINT.
    Its last line counts the frames it took (the shutdown's teardown had reset the count: 0)."""
    from tiny_node.cli import main as cli_main
    from tiny_node.tools.feeder import Feeder

    node = start_node(namespace="/ego")
    feeder = Feeder(namespace="/ego")
    try:
        assert feeder.wait_for_node(30), node.output()
        assert len(one_each(collect(feeder, stream(feeder, 5)))) == 5
    finally:
        feeder.close()
    assert cli_main(["lifecycle", "shutdown", "--node", "/ego/tiny_node", "--timeout", "30"]) == 0
    assert capsys.readouterr().out.splitlines() == ["shutdown: ok", "/ego/tiny_node: finalized"]
    assert node.proc.wait(timeout=15) == 0, node.output()
    assert "finalized (shutdown from active): the process exits" in node.output()
    assert "stopped (5 camera frames received)" in node.output(), node.output()
    assert "Traceback" not in node.output(), node.output()


def test_a_stop_signal_cuts_short_a_configure_asked_over_the_lifecycle_service(ros_env, tmp_path):
    """A configure asked over the service runs in the executor's spin, where a signal only sets a flag:
    the node waited out the model's warm-up (up to 60 s) before it stopped (diff review: 16.8 s with
    a 15 s warm-up), past ros2 launch's SIGKILL. The warm-up wait is now cut short."""
    from tiny_node.tools.nodeproc import NodeProcess

    script = tmp_path / "slow_warmup.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from tiny_node.model import worker
        ready = worker.ModelWorker.wait_ready
        def slow(self, timeout_s):  # a warm-up of 30 s (a large bundle, a slow CPU)
            print("slow warm-up begins", flush=True)
            end = time.monotonic() + 30.0
            while time.monotonic() < end:
                time.sleep(0.02)
            return ready(self, timeout_s)
        worker.ModelWorker.wait_ready = slow
        from tiny_node.ros.node import main
        sys.exit(main(["tiny_node", *sys.argv[1:]]))
    """))
    node = NodeProcess(ros_env, command=[sys.executable, str(script)], extra_args=["--no-autostart"],
                       params={"model_bundle": "default"}, log_path=tmp_path / "node.log").start()
    asker = None
    try:
        end = time.monotonic() + 30
        while "unconfigured, as asked" not in node.output() and time.monotonic() < end:
            time.sleep(0.1)
        asker = subprocess.Popen([sys.executable, "-m", "tiny_node", "lifecycle", "configure", "--node", "/tiny_node",
                                  "--timeout", "60"], env=ros_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 30
        while "slow warm-up begins" not in node.output() and time.monotonic() < end:
            time.sleep(0.1)
        assert "slow warm-up begins" in node.output(), node.output()
        time.sleep(1.0)  # into the warm-up
        t0 = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(timeout=25) == 0, node.output()
        assert time.monotonic() - t0 < 10.0, node.output()  # not the 30 s warm-up
        assert "Traceback" not in node.output(), node.output()
    finally:
        if asker is not None:
            asker.kill()
            asker.wait()
        node.stop()


def test_a_stop_signal_while_spinning_ends_the_spin_loop_instead_of_raising(monkeypatch):
    """SIGINT / SIGTERM raised KeyboardInterrupt wherever the main thread was: inside rclpy's taking of
    a message, pybind11 turned it into RuntimeError, exit status 1 with a traceback (7 of 36 signals
    under a 60 Hz camera, node UAT). It now only asks the loop (or the start-up's next step) to end;
    it raises into a _stoppable wait (the model's warm-up) only."""
    import signal

    from tiny_node.ros import node as node_mod

    handlers: dict[int, object] = {}
    monkeypatch.setattr(signal, "signal", handlers.__setitem__)
    monkeypatch.setattr(node_mod._StopRequest, "requested", False)
    monkeypatch.setattr(node_mod._StopRequest, "raising", False)
    node_mod._stop(signal.SIGINT, None)  # no KeyboardInterrupt
    assert node_mod._StopRequest.requested
    assert handlers == {signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: signal.SIG_IGN}  # later ones ignored
    with pytest.raises(KeyboardInterrupt):
        node_mod._stop_point()  # the start-up's next step
    monkeypatch.setattr(node_mod._StopRequest, "requested", False)
    with pytest.raises(KeyboardInterrupt), node_mod._stoppable():  # the warm-up's wait: cut it short
        node_mod._stop(signal.SIGTERM, None)
    assert not node_mod._StopRequest.raising


def test_lifecycle_in_process_takes_frames_only_while_active(ros_env):
    """Configured but inactive, frames are counted and dropped: activating must not decide a backlog.

    Also: rclpy hands the callbacks the DDS message info (receipt time, sequence numbers), and a
    configure / cleanup cycle leaves no lifecycle publishers behind.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.subscription import Subscription
    from sensor_msgs.msg import Image

    from tiny_node.ros.node import TinyNode

    ok = TransitionCallbackReturn.SUCCESS
    ctx = Context()
    rclpy.init(context=ctx)
    node = TinyNode(context=ctx)
    try:
        managed = len(node._managed_entities)
        assert node.trigger_configure() == ok
        if hasattr(Subscription, "CallbackType"):  # Iron on
            assert {s._callback_type for s in node._subs} == {Subscription.CallbackType.WithMessageInfo}
        assert node.loop is not None
        published = []
        node.loop._publish = published.append
        img = Image(encoding="rgb8", width=64, height=48, step=64 * 3, data=bytes(64 * 48 * 3))
        for _ in range(5):
            img.header.stamp = node.get_clock().now().to_msg()
            node._on_camera(img, None)
        assert (node._frames_inactive, node._frames) == (5, 0)
        assert node.trigger_activate() == ok
        img.header.stamp = node.get_clock().now().to_msg()
        stamp = img.header.stamp.sec * 10**9 + img.header.stamp.nanosec
        node._on_camera(img, None)
        end = time.monotonic() + 2.0
        while not published and time.monotonic() < end:
            time.sleep(0.01)
        time.sleep(0.1)
        assert [d.stamp_ns for d in published] == [stamp]  # the one frame taken while active, alone
        # inactive longer than camera_timeout_s, then active again: nothing is decided before a
        # frame comes (no 'camera out' fail-safe from the last active period's camera clock)
        assert node.trigger_deactivate() == ok
        time.sleep(node.cfg.float("camera_timeout_s") + 0.3)
        assert node.trigger_activate() == ok
        time.sleep(0.3)
        assert [d.stamp_ns for d in published] == [stamp], [d.reason for d in published[1:]]
        assert node.trigger_deactivate() == ok and node.trigger_cleanup() == ok
        assert len(node._managed_entities) == managed and node._frames == node._frames_inactive == 0
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_odometry_brings_its_yaw_rate_to_the_sensor_state(ros_env):
    """nav_msgs/Odometry's twist.angular.z is the yaw rate the model's tracker turns its tracks with;
    a NaN one is an odometry fault naming the field."""
    import rclpy
    from nav_msgs.msg import Odometry
    from rclpy.context import Context
    from rclpy.lifecycle import TransitionCallbackReturn

    from tiny_node.ros.node import TinyNode

    ctx = Context()
    rclpy.init(context=ctx)
    node = TinyNode(context=ctx)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node.sensors is not None
        msg = Odometry()
        msg.twist.twist.linear.x, msg.twist.twist.angular.z = 8.0, -0.2
        node._on_odom(msg, None)
        snap = node.sensors.snapshot(node.clock.now())
        assert snap.ego_speed == 8.0 and snap.features()["ego_yaw_rate"] == -0.2
        msg.twist.twist.angular.z = math.nan
        node._on_odom(msg, None)
        assert node.sensors.snapshot(node.clock.now()).odom_fault == (
            "odom: implausible yaw rate nan rad/s (twist.twist.angular.z)")
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_a_range_driver_that_does_not_stamp_is_a_sensors_warning(ros_env):
    """Its scans are timed by their receipt (a track forms); /diagnostics says so, not each decision."""
    import rclpy
    from nav_msgs.msg import Odometry
    from rclpy.context import Context
    from rclpy.lifecycle import TransitionCallbackReturn
    from sensor_msgs.msg import Range

    from tiny_node.ros.node import TinyNode

    ctx = Context()
    rclpy.init(context=ctx)
    node = TinyNode(context=ctx)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node.sensors is not None
        odom, rng = Odometry(), Range()
        odom.twist.twist.linear.x = 5.0
        rng.min_range, rng.max_range = 0.2, 100.0
        for r in (30.0, 29.8, 29.6, 29.4, 29.2):  # header.stamp left at 0: the 4th is judged unstamped
            rng.range = r
            node._on_odom(odom, None)
            node._on_range(rng, None)
            time.sleep(0.01)
        sent: list = []
        node._pub_diag.publish = sent.append
        node._publish_diagnostics()
        [sensors] = [st for st in sent[0].status if st.name.endswith(": sensors")]
        assert sensors.level == b"\x01", sensors.message
        assert sensors.message.startswith("range: header.stamp unset (0): scans timed by their receipt; ")
        assert {kv.key: kv.value for kv in sensors.values}["range_timed_by"] == "receipt"
        assert node.sensors.snapshot(node.clock.now()).track_id == 1  # the track kept, timed by receipt
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def _diag_status(node: Any, name: str) -> tuple[int, str]:
    """(level, message) of the node's ``name`` diagnostic (camera, sensors, ...), published now."""
    sent: list = []
    node._pub_diag.publish = sent.append
    node._publish_diagnostics()
    [st] = [st for st in sent[0].status if st.name.endswith(f": {name}")]
    return st.level[0], st.message


def test_the_camera_diagnostic_says_when_frames_come_but_cannot_be_used(ros_env):
    """An encoding the model cannot take: every decision said "bad frame", /diagnostics camera said OK."""
    import rclpy
    from rclpy.context import Context
    from rclpy.lifecycle import TransitionCallbackReturn
    from sensor_msgs.msg import Image

    from tiny_node.ros.node import TinyNode

    ok = TransitionCallbackReturn.SUCCESS
    ctx = Context()
    rclpy.init(context=ctx)
    node = TinyNode(context=ctx)

    def camera() -> tuple[int, str]:
        return _diag_status(node, "camera")

    def feed(encoding: str, n: int, publishers: tuple[bytes, ...] = (), back_s: float = 0.0) -> None:
        step = 64 * (3 if encoding == "rgb8" else 1)
        for i in range(n):
            img = Image(encoding=encoding, width=64, height=48, step=step, data=bytes(step * 48))
            img.header.stamp = node.get_clock().now().to_msg()
            info = None
            if publishers:  # as rclpy hands the DDS message info; every other frame from a stale source
                gid = publishers[i % len(publishers)]
                info = {"publisher_gid": {"data": gid}, "publication_sequence_number": i + 1}
                if i % 2:
                    img.header.stamp.sec -= int(back_s)
            node._on_camera(img, info)
            time.sleep(0.02)
        time.sleep(0.2)  # decided

    try:
        assert node.trigger_configure() == ok and node.loop is not None
        node.loop._publish = lambda d: None
        feed("rgb8", 2)
        assert camera() == (1, "node not active, no decisions: 2 frame(s) received")
        assert node.trigger_activate() == ok
        feed("rgb8", 3)
        assert camera() == (0, "ok")
        feed("nv12", 4)
        level, msg = camera()
        assert level == 2 and msg.startswith("every frame since the last report unusable (4), the model not asked: ")
        assert "nv12" in msg
        feed("rgb8", 2)
        feed("nv12", 1)
        level, msg = camera()
        assert level == 1 and msg.startswith("1 of 3 frames since the last report unusable: ") and "nv12" in msg
        feed("rgb8", 2)
        assert camera() == (0, "ok")  # per report: a bad frame once is not WARN for good
        # a second publisher with stamps 10 s old (a bag played beside the camera): each of its
        # frames a "clock reset", decided by the model, and the camera said ok (inputs review)
        feed("rgb8", 4, publishers=(b"live" * 4, b"bag!" * 4), back_s=10.0)
        assert camera() == (1, "frames from 2 publishers on /camera/image_raw since the last report "
                               "(a second camera driver, or a bag played beside it?)")
        feed("rgb8", 4, publishers=(b"bag!" * 4,), back_s=10.0)
        level, msg = camera()
        assert level == 1 and msg.startswith("camera stamps stepped back more than 1 s 2 time(s) since the last report")
        feed("rgb8", 2)
        assert camera() == (0, "ok")
        assert node.trigger_deactivate() == ok and node.trigger_cleanup() == ok
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_parameter_set_is_judged_whole_in_every_lifecycle_state(ros_env):
    """Unconfigured, a deadline at the publish guard was reported set, then failed configure."""
    import rclpy
    from rclpy.context import Context
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from tiny_node.ros.node import TinyNode

    ctx = Context()
    # overrides valid together, not one by one in declaration order: declared without a word
    rclpy.init(context=ctx, args=["x", "--ros-args", "-p", "deadline_ms:=800.0", "-p", "model_hang_timeout_ms:=1000.0"])
    node = TinyNode(context=ctx)
    try:
        assert node.cfg.float("deadline_ms") == 800.0

        def set_double(name: str, value: float):
            return node.set_parameters([Parameter(name, Parameter.Type.DOUBLE, value)])[0]

        refused = set_double("deadline_ms", 5.0)  # unconfigured
        assert not refused.successful and "'publish_guard_ms' (5.0) must be below 'deadline_ms' (5.0)" in refused.reason
        assert node.get_parameter("deadline_ms").value == 800.0
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        refused = set_double("deadline_ms", 5.0)  # configured: judged the same way
        assert not refused.successful and "must be below 'deadline_ms' (5.0)" in refused.reason
        assert set_double("rules.ttc_brake_s", 2.0).successful
        assert node.cfg.rules.ttc_brake_s == 2.0
    finally:
        node._teardown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_an_error_in_a_transition_releases_everything(ros_env, monkeypatch, capfd):
    """A transition that raises (here: no thread for the deadline loop) ends unconfigured, and is.

    rclpy moves the node to unconfigured after an error, and logs nothing of it; the publishers,
    subscriptions and timers of the configure stayed, and the next configure made a second set.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.lifecycle import TransitionCallbackReturn

    from tiny_node.realtime import RealtimeLoop
    from tiny_node.ros.node import TinyNode

    ok = TransitionCallbackReturn.SUCCESS
    ctx = Context()
    rclpy.init(context=ctx)
    node = TinyNode(context=ctx)
    try:
        managed, pubs = len(node._managed_entities), len(list(node.publishers))
        assert node.trigger_configure() == ok

        def no_thread(self: RealtimeLoop) -> None:
            raise RuntimeError("can't start new thread")

        with monkeypatch.context() as m:
            m.setattr(RealtimeLoop, "start", no_thread)
            assert node.trigger_activate() == TransitionCallbackReturn.ERROR
        assert "can't start new thread" in capfd.readouterr().err  # what failed, in the log
        assert node._state_machine.current_state[1] == "unconfigured"
        assert node.loop is None and not node._subs and not node._pubs
        assert (len(node._managed_entities), len(list(node.publishers))) == (managed, pubs)
        assert node.trigger_configure() == ok and node.trigger_activate() == ok
        assert len(node._managed_entities) == managed + 3
    finally:
        node._teardown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_diagnostics_keep_their_period_under_sim_time_without_clock(ros_env):
    """use_sim_time before the bag plays (or paused, or ended): /diagnostics still comes.

    The timers ran on the node's ROS clock: without /clock nothing was published, so the camera
    ERROR of a node deciding camera timeouts at the end of a replay was never reported.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn

    from tiny_node.ros.node import TinyNode

    ctx = Context()
    rclpy.init(context=ctx, args=["x", "--ros-args", "-p", "use_sim_time:=true",
                                  "-p", "diagnostics_period_s:=0.1"])
    node = TinyNode(context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    try:
        calls = []
        publish = node._publish_diagnostics

        def counted() -> None:
            calls.append(time.monotonic())
            publish()

        node._publish_diagnostics = counted  # the timer is made at configure, with this
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.get_clock().now().nanoseconds == 0  # no /clock
        executor.add_node(node)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        assert len(calls) >= 5
    finally:
        executor.shutdown()
        node._teardown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


@contextlib.contextmanager
def _configured(*ros_args: str) -> Iterator[tuple[Any, list]]:
    """A TinyNode in its own context with ``ros_args``, configured; its /diagnostics arrays collected."""
    import rclpy
    from rclpy.context import Context
    from rclpy.lifecycle import TransitionCallbackReturn

    from tiny_node.ros.node import TinyNode

    ctx = Context()
    rclpy.init(context=ctx, args=["x", "--ros-args", *ros_args])
    node = TinyNode(context=ctx)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        sent: list = []
        node._pub_diag.publish = sent.append
        yield node, sent
    finally:
        node._teardown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_the_watchdog_diagnostic_warns_of_sim_time_off_real_time(ros_env):
    """At 0.25x the node's steady-clock timers last 4x as long in sim time: said, not silent."""
    from rclpy.time import Time

    from tiny_node.clock import ManualClock

    with _configured("-p", "use_sim_time:=true") as (node, sent):
        node.clock = steady = ManualClock(100.0)  # what the diagnostics read as steady time

        def watchdog_after(seconds: int, factor: float, sim0_s: float) -> object:
            for i in range(seconds + 1):
                steady.set(steady.now() + (i > 0))
                node.get_clock().set_ros_time_override(Time(nanoseconds=round((sim0_s + factor * i) * 1e9)))
                node._publish_diagnostics()
            return next(st for st in sent[-1].status if st.name.endswith(": watchdog"))

        slow = watchdog_after(4, 0.25, 10.0)
        assert slow.level == b"\x01" and slow.message.startswith("sim time runs at 0.25x real time: ")
        assert {kv.key: kv.value for kv in slow.values}["sim_time_rate"] == "0.250"
        steady.set(steady.now() + 1.0)
        real = watchdog_after(8, 1.0, 20.0)
        assert real.level == b"\x00" and real.message == "all frames decided in time"
        assert watchdog_after(6, 0.25, 40.0).level == b"\x01"
        stepped_back = watchdog_after(0, 1.0, 5.0)  # a bag looping: measured afresh, nothing said meanwhile
        assert stepped_back.level == b"\x00" and {kv.key: kv.value for kv in stepped_back.values}[
            "sim_time_rate"] == "unknown"


def test_the_watchdog_diagnostic_warns_of_sim_time_without_clock(ros_env):
    """use_sim_time set by mistake on a vehicle (no /clock): ROS time stays 0, future and stale stamps go
    unjudged, and every status read OK (node UAT)."""
    from rclpy.time import Time

    with _configured("-p", "use_sim_time:=true") as (node, sent):
        node._publish_diagnostics()
        (wd,) = [st for st in sent[-1].status if st.name.endswith(": watchdog")]
        assert wd.level == b"\x01" and wd.message.startswith("use_sim_time is true and no /clock has come"), wd
        assert {kv.key: kv.value for kv in wd.values}["sim_time_rate"] == "no /clock"
        node.get_clock().set_ros_time_override(Time(nanoseconds=5 * 10**9))  # /clock came
        node._publish_diagnostics()
        (wd,) = [st for st in sent[-1].status if st.name.endswith(": watchdog")]
        assert wd.level == b"\x00" and wd.message == "all frames decided in time"
    with _configured() as (node, sent):  # on wall time: nothing to say
        node._publish_diagnostics()
        (wd,) = [st for st in sent[-1].status if st.name.endswith(": watchdog")]
        assert wd.level == b"\x00" and "sim_time_rate" not in {kv.key for kv in wd.values}


def test_an_empty_model_bundle_option_is_rules_only(start_node, feeder):
    """README: model_bundle empty = rules only; ``--model-bundle ""`` refused to start, blaming a -p the
    user never typed ("-p: parameter 'model_bundle': expected str, got None")."""
    node = start_node(extra_args=["--model-bundle", ""])
    assert feeder.wait_for_node(30), node.output()
    values = one_each(collect(feeder, stream(feeder, 3)))
    assert [v["source"] for v in values] == ["rules"] * 3 and node.alive(), node.output()


def test_diagnostics_name_the_node_with_its_namespace(ros_env):
    """/diagnostics is one topic for the robot: a front and a rear tiny_node overwrote each other's statuses."""
    from tiny_node.decision import diagnostic_prefix

    assert diagnostic_prefix("/") == "tiny_node" and diagnostic_prefix("/robot1/front") == "robot1/front/tiny_node"
    with _configured("-r", "__ns:=/front") as (node, sent):
        node._publish_diagnostics()
        names = [st.name for st in sent[0].status]
        assert names == ["front/tiny_node: watchdog", "front/tiny_node: model", "front/tiny_node: sensors",
                         "front/tiny_node: camera"]
        assert {st.hardware_id for st in sent[0].status} == {f"front/tiny_node@{os.uname().nodename}"}


def test_an_optional_imu_without_acceleration_is_a_sensors_warning(ros_env):
    """NaN acceleration (or covariance[0] = -1) from an optional IMU: sensors said ok, and setting
    imu_required then failed every frame without a word before (inputs review)."""
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import Imu, Range

    with _configured() as (node, sent):
        odom, rng, imu = Odometry(), Range(), Imu()
        odom.twist.twist.linear.x = 5.0
        rng.min_range, rng.max_range, rng.range = 0.2, 100.0, float("inf")
        imu.linear_acceleration_covariance[0] = -1.0
        for _ in range(3):
            node._on_odom(odom, None)
            node._on_range(rng, None)
            node._on_imu(imu, None)
        node._publish_diagnostics()
        [sensors] = [st for st in sent[0].status if st.name.endswith(": sensors")]
        assert sensors.level == b"\x01" and sensors.message == (
            "imu: no usable linear acceleration (optional; imu_required would fail every frame)")


def test_a_parameter_set_while_inactive_is_applied_at_once(ros_env, monkeypatch):
    """Inactive, a change was reported set but queued for the deadline thread, which was stopped: the
    sensors diagnostic judged a 2 s old range by range_timeout_s 0.5 until activation (ERROR)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from tiny_node.realtime import RealtimeLoop
    from tiny_node.ros.node import TinyNode
    from tiny_node.sensors import RangeReading

    ok = TransitionCallbackReturn.SUCCESS
    ctx = Context()
    rclpy.init(context=ctx)
    node = TinyNode(context=ctx)

    def set_double(name: str, value: float) -> bool:
        return bool(node.set_parameters([Parameter(name, Parameter.Type.DOUBLE, value)])[0].successful)

    def sensors_status() -> tuple[int, str]:
        return _diag_status(node, "sensors")

    def applied(name: str) -> float:
        assert node.watchdog is not None and node.sensors is not None
        assert node.sensors._cfg == node.watchdog.cfg.rules  # both parts of the core at one configuration
        return node.watchdog.cfg.float(name)

    try:
        assert node.trigger_configure() == ok and node.loop is not None
        node.loop._publish = lambda d: None
        assert node.trigger_activate() == ok and node.trigger_deactivate() == ok
        now = node.clock.now()
        node.sensors.update_odometry(10.0, now)
        node.sensors.update_range(RangeReading(80.0, 0.2, 200.0, 0, now - 2.0))  # the last scan 2 s ago
        level, msg = sensors_status()
        assert level == 2 and "range: stale" in msg and "> 0.5 s" in msg
        assert set_double("range_timeout_s", 5.0)
        assert applied("range_timeout_s") == 5.0
        level, msg = sensors_status()
        assert "range: stale" not in msg, msg
        # activated, the thread takes changes again; one made as it stops is not lost
        assert node.trigger_activate() == ok
        assert set_double("deadline_ms", 40.0) and node.trigger_deactivate() == ok
        assert applied("deadline_ms") == 40.0
        # a change queued for a thread that then ends before taking it (a race with deactivate)
        # stays queued: taken at the next activation, it must not put back an older configuration
        with monkeypatch.context() as m:
            m.setattr(RealtimeLoop, "alive", property(lambda self: True))
            assert set_double("deadline_ms", 45.0)
        assert len(node.loop._calls) == 1
        assert set_double("deadline_ms", 48.0)  # inactive: at once, with 45 on top
        assert applied("deadline_ms") == 48.0
        assert node.trigger_activate() == ok
        time.sleep(0.2)  # the thread's first steps ran the queued call
        assert not node.loop._calls and applied("deadline_ms") == 48.0
        assert node.trigger_deactivate() == ok and node.trigger_cleanup() == ok
    finally:
        node._teardown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_camera_out_decisions_after_a_future_stamped_frame_are_bounded_by_the_ros_clock(ros_env):
    """The only frame an hour ahead of the node clock (refused for it): the camera-out decisions after
    it were stamped an hour ahead too; now no further ahead of the ROS clock than its tolerance."""
    import rclpy
    from rclpy.context import Context
    from rclpy.lifecycle import TransitionCallbackReturn
    from sensor_msgs.msg import Image

    from tiny_node.ros import convert
    from tiny_node.ros.node import TinyNode

    ok = TransitionCallbackReturn.SUCCESS
    ctx = Context()
    rclpy.init(context=ctx, args=["x", "--ros-args", "-p", "camera_timeout_s:=0.2"])
    node = TinyNode(context=ctx)
    published: list = []
    try:
        assert node.trigger_configure() == ok and node.loop is not None
        node.loop._publish = published.append
        assert node.trigger_activate() == ok
        img = Image(encoding="rgb8", width=64, height=48, step=64 * 3, data=bytes(64 * 48 * 3))
        img.header.stamp = convert.ns_to_stamp(node.get_clock().now().nanoseconds + 3600 * 10**9)
        node._on_camera(img, None)
        time.sleep(0.6)
        assert node.trigger_deactivate() == ok
        first, *out = published
        assert "in the future of the node clock" in first.frame_fault
        assert out and all(d.no_frame for d in out)
        now = node.get_clock().now().nanoseconds
        assert all(now - 10**9 < d.stamp_ns <= now + 500_000_000 for d in out), [d.stamp_ns - now for d in out]
        assert all(a.stamp_ns < b.stamp_ns for a, b in itertools.pairwise(out))
        assert convert.decision_msg(out[0], "hw").header.stamp.sec == out[0].stamp_ns // 10**9
    finally:
        node._teardown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


class _Pub:
    """A publisher that keeps what it was given (a String's text)."""

    def __init__(self) -> None:
        self.msgs: list[Any] = []

    def publish(self, m: Any) -> None:
        self.msgs.append(getattr(m, "data", m))


class _RationaleWorker:
    """The worker's side the rationale timer reads: rationales to hand out."""

    def __init__(self) -> None:
        self.rationales: list[tuple[int, str]] = []

    def stop(self) -> None:
        pass

    def take_rationales(self) -> list[tuple[int, str]]:
        out, self.rationales = self.rationales, []
        return out


@contextlib.contextmanager
def _rationale_node() -> Iterator[Any]:
    """A TinyNode (not configured) whose publishers and worker are stand-ins, for its rationale path."""
    import rclpy
    from rclpy.context import Context

    from tiny_node.ros.node import TinyNode

    ctx = Context()
    rclpy.init(context=ctx, args=["x"])
    node = TinyNode(context=ctx)
    try:
        node._pub_brake, node._pub_decision, node._pub_rationale = _Pub(), _Pub(), _Pub()
        node.worker = _RationaleWorker()
        yield node
    finally:
        node.worker = None
        node._teardown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def _decisions(stamps: list[int], state: str = "on_time") -> list[Any]:
    """One decision per stamp, frames numbered from 1, as a fresh watchdog takes them (``state``: model_state)."""
    import dataclasses

    from tiny_node.clock import ManualClock
    from tiny_node.config import make_config
    from tiny_node.decision import ModelState
    from tiny_node.sensors import RangeReading, SensorState
    from tiny_node.watchdog import Frame, Watchdog

    clock = ManualClock(100.0)
    sensors = SensorState(make_config().rules)
    sensors.update_range(RangeReading(80.0, 0.2, 150.0, 0, clock.now()))
    sensors.update_odometry(10.0, clock.now())
    wd = Watchdog(make_config(), sensors, clock, None)
    out = []
    for stamp in stamps:
        clock.advance(0.033)
        out += wd.on_frame(Frame(stamp, clock.now(), np.zeros((4, 4, 3), np.uint8)))
    return [dataclasses.replace(d, model_state=ModelState(state)) for d in out]


def test_a_new_configuration_never_dates_a_rationale_with_the_last_ones_stamps(ros_env):
    """Frame numbers start at 1 again after cleanup -> configure (a new model_bundle): a rationale taken
    before its decision was published matched the previous configuration's frame of that number."""
    with _rationale_node() as node:
        for d in _decisions([1000 * 10**9 + i * 10**8 for i in range(3)]):  # the first configuration's 1..3
            node._publish(d)
        assert node._stamps[2] == 1000 * 10**9 + 10**8
        node._teardown()
        node._pub_brake, node._pub_decision, node._pub_rationale = _Pub(), _Pub(), _Pub()
        node.worker = _RationaleWorker()
        node.worker.rationales = [(2, "object close ahead")]  # the new configuration's frame 2, not out yet
        node._publish_rationales()
        assert node._pub_rationale.msgs == []  # it waits for its own decision
        for d in _decisions([2000 * 10**9 + i for i in range(2)]):
            node._publish(d)
        node._publish_rationales()
        assert node._pub_rationale.msgs == ["2000.000000001 object close ahead"]


def test_a_rationale_taken_before_its_frame_went_out_late_is_never_published(ros_env):
    """The rationale timer took a late result's rationale before the watchdog cancelled it (the deadline
    thread read both in one poll): once the frame's LATE decision recorded its stamp, it was published."""
    with _rationale_node() as node:
        late = _decisions([1234 * 10**9, 1234 * 10**9 + 1], "late")[0]
        on_time = _decisions([1234 * 10**9, 1234 * 10**9 + 1])[1]
        node.worker.rationales = [(1, "road clear"), (2, "object close ahead")]
        node._publish_rationales()  # taken before either decision went out: waiting
        node._publish(late)
        node._publish(on_time)
        node._publish_rationales()
        assert node._pub_rationale.msgs == ["1234.000000001 object close ahead"]
