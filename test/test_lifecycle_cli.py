"""``tiny-node lifecycle``: what it refuses before it joins a ROS graph, and how it stops.

No node and no DDS: the lifecycle client is replaced (test_node_dds.py drives a real node).
"""

from __future__ import annotations

import argparse

import pytest

pytest.importorskip("rclpy")  # the names are checked by rclpy's own rules


class _NoClient:
    """Stands for the lifecycle client: a command that should have stopped before it made one."""

    def __init__(self, node: str, timeout_s: float) -> None:
        raise AssertionError(f"a client was made for --node {node!r} --timeout {timeout_s}")


@pytest.mark.parametrize(("node", "why"), [
    ("/ego/tiny-node", "node name must not contain characters other than alphanumerics or '_'"),
    ("ego tiny", "node name must not contain characters other than alphanumerics or '_'"),
    ("/ego/1node", "node name must not start with a number"),
    ("", "node name must not be empty"),
    ("/1ego/tiny_node", "namespace must not have a token that starts with a number"),
])
def test_a_bad_node_name_is_one_line_and_status_2(node: str, why: str, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # Before: rclpy's InvalidServiceNameException traceback when the client was made.
    from tiny_node.tools import lifecycle

    monkeypatch.setattr(lifecycle, "_Client", _NoClient)
    args = argparse.Namespace(node=node, timeout=1.0, transitions=["configure"])
    assert lifecycle.lifecycle_command(args) == 2
    assert capsys.readouterr().err == f"tiny-node lifecycle: --node {node!r}: not a node's full name: {why}\n"


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf"])
def test_a_timeout_that_is_not_a_positive_time_is_a_usage_error(timeout: str, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # Before: taken, the wait gave up at once, and the message blamed the node.
    from tiny_node.cli import main
    from tiny_node.tools import lifecycle

    monkeypatch.setattr(lifecycle, "_Client", _NoClient)
    with pytest.raises(SystemExit) as stop:
        main(["lifecycle", "--timeout", timeout])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "tiny-node lifecycle: error: argument --timeout: must be ")


def test_ctrl_c_while_waiting_for_the_node_is_one_line_and_status_130(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: a raw KeyboardInterrupt traceback.
    from tiny_node.tools import lifecycle

    closed: list[bool] = []

    class Waiting:
        target = "/tiny_node"

        def __init__(self, node: str, timeout_s: float) -> None:
            pass

        def change(self, transition: str) -> bool:
            raise KeyboardInterrupt

        def close(self) -> None:
            closed.append(True)

    monkeypatch.setattr(lifecycle, "_Client", Waiting)
    try:
        status = lifecycle.lifecycle_command(argparse.Namespace(node="/tiny_node", timeout=5.0,
                                                                transitions=["configure"]))
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C came out as a KeyboardInterrupt traceback")
    assert status == 130 and closed == [True]
    assert capsys.readouterr().err.strip().splitlines() == ["tiny-node lifecycle: interrupted"]
