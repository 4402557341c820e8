"""Shared fixtures: isolated DDS graphs, the node in its own process, generated bundles."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _rclpy_available() -> bool:
    try:
        import rclpy  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The generated test bundles (fast, slow), real ONNX graphs."""
    from tiny_node.model.testmodels import write_test_bundles

    return write_test_bundles(tmp_path_factory.mktemp("bundles"))


@pytest.fixture
def ros_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private ROS graph for this test: random domain, localhost discovery, DDS profile."""
    if not _rclpy_available():
        pytest.skip("rclpy not installed (pip install -e '.[ros]' or source a ROS 2 distro)")
    from tiny_node.dds import isolated_ros_env

    env = isolated_ros_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def start_node(ros_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., object]]:
    """Start ``tiny-node run`` as a child process; stopped (and checked) at teardown."""
    from tiny_node.tools.nodeproc import NodeProcess

    started: list[NodeProcess] = []

    def start(params: dict[str, object] | None = None, **kw: object) -> NodeProcess:
        node = NodeProcess(ros_env, params=params, log_path=tmp_path / f"node{len(started)}.log", **kw)  # type: ignore[arg-type]
        started.append(node.start())
        return node

    yield start
    for node in started:
        node.stop()


@pytest.fixture
def feeder(ros_env: dict[str, str]) -> Iterator[object]:
    """A DDS peer publishing the node's inputs and collecting its decisions."""
    from tiny_node.tools.feeder import Feeder

    f = Feeder()
    yield f
    f.close()


def stream(feeder: object, n: int, *, rate_hz: float = 30.0, gap_m: float = 80.0,
           speed: float = 10.0, closing: bool = False, image: np.ndarray | None = None,
           between: Callable[[int], None] | None = None,
           frame: Callable[[int, int], None] | None = None) -> list[int]:
    """Send ``n`` frames at ``rate_hz`` with fresh range/odom before each; return the stamps.

    With ``closing`` the range shrinks at ``speed`` (a stationary object ahead).
    """
    img = image if image is not None else np.full((120, 160, 3), 90, np.uint8)
    stamps = []
    base = time.time_ns()
    feeder.send_odom(base - 10_000_000, speed)  # type: ignore[attr-defined]
    feeder.send_range(base - 10_000_000, gap_m + (speed * 0.01 if closing else 0.0))  # type: ignore[attr-defined]
    time.sleep(0.05)  # sensors first, so the first frame is not judged without them
    t0 = time.monotonic()
    for i in range(n):
        stamp = base + int(i / rate_hz * 1e9)
        feeder.send_odom(stamp, speed)  # type: ignore[attr-defined]
        # A real radar never repeats a reading bit for bit (the node flags that as stuck); 1 mm of
        # noise keeps every printed figure the same.
        gap = gap_m - (speed * i / rate_hz if closing else 0.0) + 0.001 * (i % 3 - 1)
        feeder.send_range(stamp, gap if math.isfinite(gap) else math.inf)  # type: ignore[attr-defined]
        if frame is not None:
            frame(i, stamp)
        else:
            feeder.send_frame(stamp, img)  # type: ignore[attr-defined]
        stamps.append(stamp)
        if between is not None:
            between(i)
        delay = t0 + (i + 1) / rate_hz - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return stamps


def collect(feeder: object, stamps: list[int], timeout_s: float = 5.0) -> dict[int, list[object]]:
    """Wait until every stamp has a decision (or the timeout); return all received per stamp."""
    end = time.monotonic() + timeout_s
    log = feeder.log  # type: ignore[attr-defined]
    while time.monotonic() < end and not all(s in log.decisions for s in stamps):
        time.sleep(0.05)
    time.sleep(0.2)  # duplicates, if any, would arrive now
    return {s: list(log.decisions.get(s, [])) for s in stamps}


@pytest.fixture
def bag_temp_dirs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every temporary folder the bag reader makes (copies, unpacked files), in order, as it makes them."""
    from tiny_node.bag import topics

    made: list[Path] = []
    real = topics.TemporaryDirectory

    def recorded(*args: object, **kwargs: object) -> object:
        d = real(*args, **kwargs)  # type: ignore[call-overload]
        made.append(Path(d.name))
        return d

    monkeypatch.setattr(topics, "TemporaryDirectory", recorded)
    return made
