"""``tiny-node bench`` / ``demo`` and the DDS throughput tool: arguments, interrupts, clean-up.

The node, the feeder and the drive are replaced by fakes: what is tested is that the commands
stop the node they started whatever happens, and refuse what cannot work before starting it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("rclpy")  # demo and bench import the feeder (rclpy) at module level


class FakeNode:
    """Stands for NodeProcess: records its stop."""

    stopped: ClassVar[list[str]] = []

    def __init__(self, env: Any, **kw: Any) -> None:
        self.pid = 4242

    def start(self) -> FakeNode:
        return self

    def stop(self) -> int:
        FakeNode.stopped.append("stopped")
        return 0

    def alive(self) -> bool:
        return True

    def output(self) -> str:
        return ""


def _child(command: str, signame: str, tmp_path: Path, *, again_on_close: bool = False,
           ) -> subprocess.CompletedProcess[str]:
    """Run ``tiny-node COMMAND`` in a child with fakes; its drive gets ``signame`` from outside.

    ``again_on_close``: a second one comes while the feeder closes (an impatient Ctrl-C).
    """
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import tiny_node.{command} as mod
        import tiny_node.model.testmodels as tm
        from tiny_node.cli import main

        class Node:
            pid = 4242
            def __init__(self, env, **kw): pass
            def start(self): return self
            def stop(self):
                print("NODE STOPPED", flush=True)
                return 0
            def output(self): return ""
            def alive(self): return True

        class Feeder:
            def wait_for_node(self, timeout, alive=None): return True
            def close(self):
                if {again_on_close}:
                    os.kill(os.getpid(), signal.{signame})
                    time.sleep(10)

        def drive(feeder, **kw):
            os.kill(os.getpid(), signal.{signame})  # as a terminal's Ctrl-C or a supervisor would
            time.sleep(10)
            raise AssertionError("the signal did not stop the drive")

        mod.NodeProcess, mod.Feeder, mod.run_drive = Node, Feeder, drive
        tm.write_test_bundles = lambda root: {{"fast": root, "slow": root}}
        sys.exit(main(["{command}", "--out", {str(tmp_path / "out")!r}]))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # SIGINT at its default: a child started from a background job would inherit it ignored
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize(("command", "signame", "status", "how"), [
    ("demo", "SIGTERM", 143, "terminated"),
    ("demo", "SIGINT", 130, "interrupted"),
    ("bench", "SIGTERM", 143, "terminated"),
    ("bench", "SIGINT", 130, "interrupted"),
    # a closed terminal: SIGHUP ended the command at once, its node ran on, adopted by init (review)
    ("demo", "SIGHUP", 129, "hung up"),
    ("bench", "SIGHUP", 129, "hung up"),
])
def test_a_signal_during_the_drive_stops_the_node_with_one_line(command: str, signame: str, status: int,
                                                                   how: str, tmp_path: Path) -> None:
    # Before: SIGTERM killed the command outright and its node (own session) ran on for good;
    # Ctrl-C stopped it but ended in a KeyboardInterrupt traceback.
    done = _child(command, signame, tmp_path)
    assert "NODE STOPPED" in done.stdout, (done.returncode, done.stdout, done.stderr)
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"tiny-node {command}: {how} (a node it started is stopped)"


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_a_second_ctrl_c_while_the_feeder_closes_still_stops_the_node(command: str, tmp_path: Path) -> None:
    # Before: the node was stopped after the feeder's close, which the second Ctrl-C cut short.
    done = _child(command, "SIGINT", tmp_path, again_on_close=True)
    assert "NODE STOPPED" in done.stdout, (done.returncode, done.stdout, done.stderr)
    assert done.returncode == 130 and "Traceback" not in done.stderr


@pytest.mark.parametrize("module", ["demo", "bench"])
def test_the_node_is_stopped_when_the_feeder_cannot_start(module: str, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    import tiny_node.bench as bench
    import tiny_node.demo as demo

    def no_feeder() -> None:
        raise RuntimeError("rclpy init failed")

    mod: Any = demo if module == "demo" else bench
    monkeypatch.setattr(mod, "NodeProcess", FakeNode)
    monkeypatch.setattr(mod, "Feeder", no_feeder)
    FakeNode.stopped.clear()
    with pytest.raises(RuntimeError, match="rclpy init failed"):
        if module == "demo":
            demo.run_demo(tmp_path)
        else:
            bench.run_case("fast", {"fast": tmp_path}, 3, tmp_path)
    assert FakeNode.stopped == ["stopped"]


@pytest.fixture
def cases_run(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """run_bench with its cases recorded instead of run, and no stress-ng on the machine."""
    import tiny_node.bench as bench
    import tiny_node.model.testmodels as tm

    ran: list[str] = []
    summary = {"frames": 3, "decisions": 3, "duplicates": 0, "after_deadline": 0, "model_share": 1.0,
               **dict.fromkeys(bench.COLUMNS[5:], 1.0)}

    def run_case(case: str, bundles: Any, frames: int, out_dir: Path) -> dict[str, Any]:
        ran.append(case)
        return {**summary, "case": case}

    monkeypatch.setattr(bench, "run_case", run_case)
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    monkeypatch.setattr(tm, "write_test_bundles", lambda root: {"fast": root, "slow": root})
    return ran


def test_without_stress_ng_the_default_cases_run_without_load(cases_run: list[str], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # Before: fast and slow ran, then fast+stress raised (traceback) and their figures were lost.
    from tiny_node.cli import main

    assert main(["bench", "--frames", "3", "--out", str(tmp_path)]) == 0
    assert cases_run == ["fast", "slow"]
    assert "stress-ng not found: running without the +stress cases" in capsys.readouterr().out
    assert [r["case"] for r in json.loads((tmp_path / "bench.json").read_text())["results"]] == ["fast", "slow"]


def test_a_stop_during_a_case_keeps_the_cases_measured_before_it(
        cases_run: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: Ctrl-C (or SIGTERM) in the third case of a 10-minute bench lost the two measured.
    import tiny_node.bench as bench
    from tiny_node.cli import main

    measured = bench.run_case

    def stopped_in_slow(case: str, bundles: Any, frames: int, out_dir: Path) -> dict[str, Any]:
        if case == "slow":
            raise KeyboardInterrupt
        return measured(case, bundles, frames, out_dir)

    monkeypatch.setattr(bench, "run_case", stopped_in_slow)
    assert main(["bench", "--frames", "3", "--out", str(tmp_path)]) == 130
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert [r["case"] for r in doc["results"]] == ["fast"] and doc["interrupted_at"] == "slow"
    assert "Interrupted during case slow" in (tmp_path / "bench.md").read_text()
    assert capsys.readouterr().err.strip().splitlines()[-1] == "tiny-node bench: interrupted (a node it started is stopped)"


def test_without_stress_ng_a_named_stress_case_is_refused_before_any_case(
        cases_run: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tiny_node.cli import main

    assert main(["bench", "--frames", "3", "--cases", "fast", "slow+stress", "--out", str(tmp_path)]) == 2
    assert cases_run == []
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tiny-node bench: error: stress-ng not found (needed by the +stress cases): "
                   "apt-get install -y stress-ng"]


@pytest.mark.parametrize("argv", [
    ["bench", "--frames", "0"],  # before: 0 frames, 0 decisions, exit 0 ("every frame decided")
    ["bench", "--frames", "-5"],
    ["demo", "--duration", "0"],
    ["demo", "--duration", "-1"],
    ["demo", "--duration", "inf"],  # ran until killed
    ["demo", "--speed", "nan"],  # drove every frame into a fail-safe, NaN in its JSON
    ["demo", "--speed", "0"],
])
def test_nothing_to_measure_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from tiny_node.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"must be a finite number > 0, got {argv[-1]}")


def test_a_count_that_is_not_a_number_keeps_argparses_message(capsys: pytest.CaptureFixture[str]) -> None:
    from tiny_node.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--frames", "abc"])
    assert exc.value.code == 2
    assert "argument --frames: invalid int value: 'abc'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["--domain-id", "500"],  # before: a ValueError traceback
    ["--width", "0"],  # before: a SystemError traceback from rclpy's publish
    ["--height", "-1"],
    ["-n", "0"],  # before: exit 1
    ["--rate", "0"],
])
def test_dds_throughput_bad_arguments_are_one_line_and_status_2(argv: list[str],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from tiny_node.tools import dds_throughput

    with pytest.raises(SystemExit) as exc:
        dds_throughput.main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err.strip().splitlines()[-1]


def test_dds_throughput_compare_passes_the_subscriber_set_up_and_domain_on(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: --compare silently ran every variant on both sides and on a random domain.
    from tiny_node.tools import dds_throughput

    commands: list[list[str]] = []

    def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        commands.append(cmd)
        result = {"profile": "x", "setup": "x", "sent": 5, "unique": 5, "latency_ms_p50": 1.0,
                  "latency_ms_p99": 1.0}
        return subprocess.CompletedProcess(cmd, 0, json.dumps(result) + "\n", "")

    monkeypatch.setattr(dds_throughput.subprocess, "run", run)
    assert dds_throughput.main(["--compare", "-n", "5", "--sub-profile", "none", "--domain-id", "7"]) == 0
    assert len(commands) == len(dds_throughput.COMPARE)
    for cmd in commands:
        assert cmd[cmd.index("--sub-profile") + 1] == "none" and cmd[cmd.index("--domain-id") + 1] == "7"


@pytest.mark.parametrize("argv", [["demo"], ["bench", "--frames", "3"]])
def test_an_output_folder_that_cannot_be_made_is_one_line_and_status_2(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: a FileExistsError / NotADirectoryError traceback.
    from tiny_node.cli import main

    (tmp_path / "a_file").write_text("")
    assert main([*argv, "--out", str(tmp_path / "a_file")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tiny-node {argv[0]}: error: cannot make output folder {tmp_path / 'a_file'}: File exists"]
    assert main([*argv, "--out", str(tmp_path / "a_file" / "sub")]) == 2
    assert capsys.readouterr().err.strip().endswith("Not a directory")


def _unwritable_folder(tmp_path: Path) -> Path:
    """An existing folder no file can be made in, for root too (sysfs makes no files for anyone)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read_only"
        folder.mkdir(mode=0o500)
        return folder
    if not Path("/sys/kernel").is_dir():
        pytest.skip("running as root without sysfs: no folder root cannot write in")
    return Path("/sys")


@pytest.mark.parametrize("argv", [["demo"], ["bench", "--frames", "3"]])
def test_an_output_folder_that_cannot_be_written_in_is_one_line_and_status_2(
        argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: it passed (it exists), and opening the node's log in it was a traceback, status 1.
    import tiny_node.bench
    import tiny_node.demo
    from tiny_node.cli import main

    def never(**_: object) -> int:
        raise AssertionError("ran with an output folder it cannot write in")

    monkeypatch.setattr(tiny_node.demo, "run_demo", never)
    monkeypatch.setattr(tiny_node.bench, "run_bench", never)
    folder = _unwritable_folder(tmp_path)
    assert main([*argv, "--out", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"tiny-node {argv[0]}: error: cannot write in output folder {folder}: ")


def test_make_test_bundles_in_a_folder_that_cannot_be_made_is_one_line_and_status_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tiny_node.cli import main

    (tmp_path / "a_file").write_text("")
    assert main(["make-test-bundles", str(tmp_path / "a_file" / "bundles")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tiny-node make-test-bundles: error: [Errno 20] Not a directory")


def test_a_case_whose_node_does_not_come_up_fails_and_the_others_are_kept(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: a RuntimeError traceback, and the figures of the cases already measured were lost.
    import tiny_node.bench as bench
    import tiny_node.model.testmodels as tm

    class Feeder:
        def wait_for_node(self, timeout: float, alive: Any = None) -> bool:
            return bool(os.environ.get("UP"))

        def close(self) -> None:
            pass

    row = {"decision": "no_brake", "source": "model", "latency_ms": 5.0, "deadline_ms": 50.0, "e2e_ms": 7.0}

    def drive(feeder: Any, **kw: Any) -> Any:
        monkeypatch.delenv("UP")  # the next case's node does not come up
        return type("R", (), {"rows": [row] * 3})()

    monkeypatch.setenv("UP", "1")
    monkeypatch.setattr(bench, "NodeProcess", FakeNode)
    monkeypatch.setattr(bench, "Feeder", Feeder)
    monkeypatch.setattr(bench, "run_drive", drive)
    monkeypatch.setattr(bench, "isolated_ros_env", lambda: {})
    monkeypatch.setattr(tm, "write_test_bundles", lambda root: {"fast": root, "slow": root})
    assert bench.run_bench(tmp_path, frames=3, cases=["fast", "slow"]) == 1
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == f"bench: FAIL slow: the node did not come up (log: {tmp_path}/node-slow.log)"
    assert [r["case"] for r in json.loads((tmp_path / "bench.json").read_text())["results"]] == ["fast"]
    # each measured case's frames, from which its figures can be recomputed
    assert json.loads((tmp_path / "frames-fast.json").read_text()) == [row] * 3
    assert not (tmp_path / "frames-slow.json").exists()


def test_bench_json_is_strict_json_when_a_case_has_no_decisions(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A case with no decisions has NaN figures; json.dumps wrote NaN, which strict JSON readers refuse.
    import tiny_node.bench as bench
    import tiny_node.model.testmodels as tm

    monkeypatch.setattr(tm, "write_test_bundles", lambda root: {"fast": root, "slow": root})
    empty = {k: math.nan for k in bench.COLUMNS} | {"frames": 3, "decisions": 0, "duplicates": 0, "after_deadline": 0}
    monkeypatch.setattr(bench, "run_case", lambda case, bundles, frames, out: {"case": case, **empty})
    monkeypatch.setattr(bench, "markdown", lambda results: "")
    monkeypatch.setattr(bench, "verdict", lambda results: ([], ["no decisions"]))
    assert bench.run_bench(tmp_path, frames=3, cases=["fast"]) == 1

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    doc = json.loads((tmp_path / "bench.json").read_text(), parse_constant=refuse)
    (row,) = doc["results"]
    assert row["case"] == "fast" and row["decisions"] == 0 and row["latency_p50_ms"] is None and row["e2e_p99_ms"] is None


def test_json_files_hold_null_for_non_finite_figures() -> None:
    """demo wrote NaN into summary.json / timeline.json, which strict JSON readers refuse."""
    import json

    from tiny_node.strict_json import finite_or_none as json_safe

    value = {"p99": math.nan, "rows": [{"ttc": math.inf, "n": 3}, (1.5, -math.inf)], "ok": True}
    assert json.loads(json.dumps(json_safe(value), allow_nan=False)) == {
        "p99": None, "rows": [{"ttc": None, "n": 3}, [1.5, None]], "ok": True}


def test_a_demo_speed_the_node_calls_implausible_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """400 km/h drove every frame into the fail-safe 'odom: implausible speed', exit 0."""
    from tiny_node.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["demo", "--speed", "400"])
    assert exc.value.code == 2
    assert "at most 360 km/h (the node's plausible odometry), got 400" in capsys.readouterr().err


@pytest.mark.parametrize(("collided", "node_code", "status"), [(False, 0, 0), (True, 0, 1), (False, -9, 1)])
def test_a_demo_that_collides_or_whose_node_exits_badly_fails(
        collided: bool, node_code: int, status: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``tiny-node demo --speed 130`` hit the car (gap -17 m) and exited 0; so did a node killed at its stop
    (review)."""
    import tiny_node.demo as demo

    class Node(FakeNode):
        def stop(self) -> int:
            return node_code

    class Feeder:
        def wait_for_node(self, timeout: float, alive: Any = None) -> bool:
            return True

        def close(self) -> None:
            pass

    row = {"t": 0.0, "speed_kmh": 130.0, "gap_m": 60.0, "decision": "no_brake", "source": "model",
           "model_state": "on_time", "latency_ms": 5.0, "deadline_ms": 50.0, "e2e_ms": 7.0, "reason": "x"}
    result = type("R", (), {"rows": [row] * 3, "collided": collided, "min_gap_m": -0.05 if collided else 12.7,
                            "impact_speed": 20.0 if collided else None, "final_speed": 0.0 if collided else 5.0})()
    monkeypatch.setattr(demo, "NodeProcess", Node)
    monkeypatch.setattr(demo, "Feeder", Feeder)
    monkeypatch.setattr(demo, "run_drive", lambda feeder, **kw: result)
    monkeypatch.setattr(demo, "isolated_ros_env", lambda: {"ROS_DOMAIN_ID": "1"})
    assert demo.run_demo(tmp_path, duration_s=1.0, speed_kmh=130.0) == status
    err = capsys.readouterr().err
    assert ("COLLISION with the stopped car at 72.0 km/h" in err) is collided, err
    assert ("more than the 60 m gap" in err) is collided, err
    assert ("the node exited with status -9" in err) is (node_code != 0), err


def test_the_wait_for_a_node_ends_when_its_process_has_exited(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node refusing its parameters exits within a second; the demo and the bench waited the whole minute
    to say so (review)."""
    import time

    from tiny_node.dds import isolated_ros_env
    from tiny_node.tools.feeder import Feeder

    for key, value in isolated_ros_env().items():
        monkeypatch.setenv(key, value)
    feeder = Feeder()
    try:
        started = time.monotonic()
        assert not feeder.wait_for_node(60.0, alive=lambda: False)
        assert time.monotonic() - started < 30.0  # not the minute: at once (no node on this domain)
    finally:
        feeder.close()


class _CountingFeeder:
    """Stands for the DDS feeder of a drive: counts what is sent, never brakes, answers nothing."""

    latest_brake = False

    def __init__(self) -> None:
        self.log = type("Log", (), {"sent": {}})()
        self.counts = {"camera": 0, "range": 0, "odom": 0, "imu": 0}
        self.ranges: list[float] = []

    def send_frame(self, stamp: int, rgb: Any) -> None:
        self.counts["camera"] += 1

    def send_range(self, stamp: int, value: float) -> None:
        self.counts["range"] += 1
        self.ranges.append(value)

    def send_odom(self, stamp: int, speed: float) -> None:
        self.counts["odom"] += 1

    def send_imu(self, stamp: int, accel: float) -> None:
        self.counts["imu"] += 1

    def decision_for(self, stamp: int) -> None:
        return None


def test_a_drive_sends_the_frames_its_duration_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--frames 297`` measured 298: the camera's due times were float sums of 1/30 s (review). The drive
    is timed in whole nanoseconds now, as the simulator is; run here without its real-time waits."""
    import tiny_node.tools.drive as drive

    monkeypatch.setattr(drive.time, "sleep", lambda s: None)
    for frames in (297, 298, 300):
        feeder = _CountingFeeder()
        result = drive.run_drive(feeder, duration_s=frames / 30.0, width=32, height=24, closed_loop=False,
                                 periodic=True, drain_s=0.0)
        assert result.frames == feeder.counts["camera"] == frames
        assert feeder.counts["range"] == math.ceil(frames * 20 / 30)
        assert feeder.counts["odom"] == math.ceil(frames * 50 / 30)


def test_a_drive_into_the_car_stops_there_and_keeps_the_speed_of_the_impact(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 150 km/h the ego drove on through the car (gap -33.7 m), and the demo named the speed at the end of
    the run, 64.6 km/h, as the impact's (108.9 km/h at contact; review)."""
    import tiny_node.tools.drive as drive

    monkeypatch.setattr(drive.time, "sleep", lambda s: None)
    feeder = _CountingFeeder()
    result = drive.run_drive(feeder, duration_s=3.0, speed_kmh=150.0, width=32, height=24, closed_loop=False,
                             drain_s=0.0)
    assert result.collided and result.impact_speed is not None
    assert 150.0 / 3.6 - 0.1 < result.impact_speed <= 150.0 / 3.6  # no brake: contact at 1.44 s, at the speed set
    assert result.final_speed == 0.0 and result.min_gap_m > -1.0  # stopped at the car, not 30 m through it
    assert feeder.ranges[-1] == -math.inf  # the sensor sees it touching (within min_range), to the end


@pytest.mark.parametrize(("signum", "status", "how"), [(signal.SIGTERM, 143, "terminated"),
                                                        (signal.SIGHUP, 129, "hung up")])
def test_sim_stopped_by_a_signal_says_which_with_its_status(signum: int, status: int, how: str,
                                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``sim --realtime`` took SIGTERM / SIGHUP at their default: the command died and its node (own session)
    ran on under init (review). Raised as Ctrl-C now, they unwind to the node's stop."""
    import tiny_node.cli as cli
    import tiny_node.sim.runner as runner

    def suite(*args: Any, **kw: Any) -> Any:
        raise cli._Terminated(signum)

    monkeypatch.setattr(runner, "run_suite", suite)
    assert cli.main(["sim", "--suite", "smoke", "--rules-only", "--plots", "none", "--out", str(tmp_path)]) == status
    assert f"tiny-node sim: {how}; the same command resumes" in capsys.readouterr().err


def test_a_stop_message_to_a_terminal_already_gone_keeps_the_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a hang-up the line to the closed terminal failed (EIO) and the demo exited 1, not 129 (review)."""
    import errno

    import tiny_node.cli as cli

    class Gone:
        def write(self, text: str) -> int:
            raise OSError(errno.EIO, "Input/output error")

        def flush(self) -> None:
            raise OSError(errno.EIO, "Input/output error")

    def hung_up() -> int:
        raise cli._Terminated(signal.SIGHUP)

    monkeypatch.setattr(sys, "stderr", Gone())
    assert cli._stopping_its_node("demo", hung_up) == 129


def test_sim_with_record_stopped_says_how_to_run_it_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Stopped with --record, sim said "the same command resumes", which then refused the bags already there
    (review)."""
    import tiny_node.cli as cli
    import tiny_node.sim.runner as runner

    def suite(*args: Any, **kw: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_suite", suite)
    rec = tmp_path / "bags"
    assert cli.main(["sim", "--suite", "smoke", "--rules-only", "--plots", "none", "--out", str(tmp_path / "o"),
                     "--record", str(rec)]) == 130
    err = capsys.readouterr().err
    assert f"the bags recorded so far are in {rec}" in err and "remove them or choose another --record" in err, err

