"""A message's receipt, back-dated by its DDS queueing, and the wall clock DDS stamps it on."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tiny_node.clock import MAX_QUEUED_S, ManualClock, WallSteps

WALL0_NS = 1_750_000_000 * 10**9


def test_queueing_is_counted_and_a_wall_clock_step_is_not(monkeypatch):
    """The review's case: the wall clock stepped 0.7 s forward while a range reading waited 0.2 ms in the
    executor; it was back-dated 0.7 s, judged stale at once, and the next frame got a fail-safe brake."""
    from tiny_node.ros import node

    clock, wall = ManualClock(1000.0), [WALL0_NS]
    monkeypatch.setattr(node.time, "time_ns", lambda: wall[0])
    fake = SimpleNamespace(clock=clock, _wall=WallSteps())

    def receipt(queued_ns: int) -> float:
        return node.TinyNode._received_at(fake, {"received_timestamp": wall[0] - queued_ns})

    def advance(s: float, step_s: float = 0.0) -> None:
        clock.advance(s)
        wall[0] += round((s + step_s) * 1e9)

    assert receipt(2_000_000) == pytest.approx(1000.0 - 0.002)  # queued 2 ms: counted
    advance(0.033)
    assert receipt(5_000_000) == pytest.approx(1000.033 - 0.005)
    advance(0.033, step_s=0.7)  # the wall clock stepped 0.7 s forward while a message waited 0.2 ms
    assert receipt(700_200_000) == pytest.approx(1000.066, abs=1e-9)  # not back-dated
    advance(0.5)
    assert receipt(200_200_000) == pytest.approx(1000.566, abs=1e-9)  # another one queued across the step
    advance(MAX_QUEUED_S)
    assert receipt(3_000_000) == pytest.approx(clock.now() - 0.003)  # steady again: counted


def test_a_slewed_wall_clock_is_no_step():
    steps = WallSteps()
    assert steps.steady(1.0e9, 10.0)
    assert steps.steady(1.0e9 + 60.0 + 0.03, 70.0)  # 500 ppm over a minute: a slew (NTP), not a step
    assert not steps.steady(1.0e9 + 60.033 + 0.01, 70.033)  # 10 ms in 33 ms: a step
