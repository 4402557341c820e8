"""The deadline thread against the real monotonic clock (no ROS): it must react to frames at once.

Bounds here are an order of magnitude wider than the thread's measured jitter (a few ms,
docs/BENCHMARKS.md); they catch a loop that sleeps through a frame, not scheduling noise.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from tiny_node.clock import MonotonicClock
from tiny_node.config import make_config
from tiny_node.decision import Decision
from tiny_node.realtime import RealtimeLoop
from tiny_node.sensors import RangeReading, SensorState
from tiny_node.watchdog import Frame, Watchdog

IMG = np.zeros((4, 4, 3), np.uint8)


class _Collector:
    def __init__(self) -> None:
        self.got: list[tuple[float, Decision]] = []
        self.cond = threading.Condition()

    def __call__(self, d: Decision) -> None:
        with self.cond:
            self.got.append((time.monotonic(), d))
            self.cond.notify_all()

    def wait_for(self, pred, timeout: float = 2.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.got), timeout), self.got


def _loop(**params) -> tuple[RealtimeLoop, _Collector, SensorState, MonotonicClock]:
    clock = MonotonicClock()
    cfg = make_config(params)
    sensors = SensorState(cfg.rules)
    out = _Collector()
    loop = RealtimeLoop(Watchdog(cfg, sensors, clock), out, clock)
    loop.start()
    return loop, out, sensors, clock


def _fresh(sensors: SensorState, clock: MonotonicClock, i: int) -> None:
    now = clock.now()
    sensors.update_range(RangeReading(40.0 + 0.01 * (i % 3), 0.2, 150.0, round(now * 1e9), now))
    sensors.update_odometry(10.0, now)


def test_a_frame_after_a_quiet_spell_is_decided_at_once():
    loop, out, sensors, clock = _loop(camera_timeout_s=0.5)
    try:
        _fresh(sensors, clock, 0)
        loop.push_frame(Frame(1, clock.now(), IMG))
        out.wait_for(lambda g: len(g) == 1)
        time.sleep(0.12)  # longer than one capped wait, shorter than the camera timeout
        _fresh(sensors, clock, 1)
        sent = time.monotonic()
        loop.push_frame(Frame(2, clock.now(), IMG))
        out.wait_for(lambda g: len(g) == 2)
        assert out.got[1][1].stamp_ns == 2
        assert out.got[1][0] - sent < 0.1  # a loop sleeping towards the camera timeout takes ~0.4 s
    finally:
        loop.close()


def test_camera_timeout_decisions_come_from_the_deadline_thread_at_the_frame_period():
    loop, out, sensors, clock = _loop(camera_timeout_s=0.3)
    try:
        for i in range(6):  # 20 Hz
            _fresh(sensors, clock, i)
            loop.push_frame(Frame(1000 + i, clock.now(), IMG))
            time.sleep(0.05)
        last = time.monotonic() - 0.05
        end = time.monotonic() + 0.7
        i = 6
        while time.monotonic() < end:  # range and odometry go on, the camera does not
            _fresh(sensors, clock, i)
            i += 1
            time.sleep(0.02)
        frameless = [(t, d) for t, d in out.got if d.no_frame]
        assert 6 <= len(frameless) <= 14, len(frameless)  # (0.75 - 0.3) s at 20 Hz = 9
        assert frameless[0][0] - last >= 0.3 - 0.01
        assert all("camera: no frame" in d.reason and not d.brake for _, d in frameless)
    finally:
        loop.close()


def test_frames_are_taken_only_while_running_and_none_goes_unanswered_at_stop():
    """A stopped loop (an inactive node) takes no frame; a frame taken before stop is still decided."""
    loop, out, sensors, clock = _loop()
    try:
        _fresh(sensors, clock, 0)
        loop.stop()
        assert not loop.running
        assert not loop.push_frame(Frame(1, clock.now(), IMG))
        for _ in range(70_000):  # more wake-ups than a pipe holds: the caller must never block
            loop.run_in_loop(lambda: None)
        loop.start()
        assert loop.push_frame(Frame(2, clock.now(), IMG))
        loop.stop()  # at once: the frame is decided (rules) before stop returns
        assert [d.stamp_ns for _, d in out.got] == [2]
        loop.start()
        _fresh(sensors, clock, 1)
        assert loop.push_frame(Frame(3, clock.now(), IMG))
        out.wait_for(lambda g: len(g) == 2)
        assert [d.stamp_ns for _, d in out.got] == [2, 3]  # frame 1 never came back
    finally:
        loop.close()


def test_the_benchmark_fails_on_a_frame_not_decided_once_and_names_late_cases():
    from tiny_node.bench import verdict

    def case(name, decisions=600, duplicates=0, late=0):
        return {"case": name, "frames": 600, "decisions": decisions, "duplicates": duplicates,
                "after_deadline": late, "lateness_max_ms": 2.95 if late else -1.5}

    notes, failures = verdict([case("fast"), case("slow+stress", late=4)])
    assert failures == [] and notes == ["bench: slow+stress: 4 of 600 decisions after their deadline, "
                                        "the latest 3.0 ms after it"]
    notes, failures = verdict([case("fast", decisions=599), case("slow", duplicates=1)])
    assert [f.split(":")[1].strip() for f in failures] == ["FAIL fast", "FAIL slow"] and notes == []
