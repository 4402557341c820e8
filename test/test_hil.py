"""HIL harness: matching and checks without ROS, then the short CI run over real DDS.

The CI run is ``tiny-node hil`` in its own process (as a test engineer runs it): one scenario,
every fault class once, each fault's check asserted as its own test.  The node runs in its
own process; the three node configurations (main, sim time + compressed, corrupt bundle) are
three node runs.  Timing is judged with the project's tolerance (``JITTER_MS``, see
test_node_dds.py and docs/BENCHMARKS.md).  The two-host run (network namespaces) needs root
and is skipped with the reason otherwise.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO

from tiny_node.hil import faults as F  # noqa: N812  (short: used on every line)
from tiny_node.hil.harness import global_failures
from tiny_node.hil.record import (
    JITTER_MS,
    BrakeRec,
    DecisionRec,
    DiagRec,
    FrameRec,
    Published,
    RunRecord,
    match,
    timing_failures,
)

CI_SCENARIO = REPO / "tiny_node" / "sim" / "scenarios" / "ccrs_30kmh.yaml"


# --- without ROS ------------------------------------------------------------------------------
def _rec(**kw) -> RunRecord:
    base = {"group": "main", "t0": 0.0, "deadline_ms": 50.0, "camera_timeout_s": 0.5, "diag_period_s": 0.2,
            "has_model": True, "transport": "raw", "sim_time": False}
    base.update(kw)
    return RunRecord(**base)


def _decision(at: float, latency: float = 5.0, **values) -> DecisionRec:
    return DecisionRec(at, {"latency_ms": f"{latency}", "deadline_ms": "50.0", "source": "model",
                            "model_state": "on_time", "reason": "", **values})


def test_tolerance_is_the_projects():
    from test_node_dds import JITTER_MS as PROJECT_JITTER

    assert JITTER_MS == PROJECT_JITTER


def test_match_pairs_repeated_stamps_in_order_and_counts_duplicates_and_strangers():
    frames = [FrameRec(0, 100, 0.0, 1.0), FrameRec(1, 100, 0.033, 1.033), FrameRec(2, 200, 0.066, 1.066)]
    decisions = {100: [_decision(1.040), _decision(1.010)], 200: [_decision(1.07), _decision(1.08)],
                 999: [_decision(1.1)]}
    results, unknown = match(frames, decisions)
    assert [r.decision.received_at for r in results] == [1.010, 1.040, 1.07]
    assert [r.duplicates for r in results] == [0, 0, 1]
    assert unknown == 1
    assert math.isclose(results[0].e2e_ms, 10.0)


def test_timing_failures_use_node_clock_with_jitter_and_harness_clock_with_allowance():
    frames = [FrameRec(i, i, i / 30, 1.0 + i / 30) for i in range(20)]
    ok = {i: [_decision(1.0 + i / 30 + 0.01)] for i in range(20)}
    fails, _ = timing_failures(match(frames, ok)[0])
    assert fails == []
    late = dict(ok)
    late[3] = [_decision(1.0 + 3 / 30 + 0.01, latency=50.0 + JITTER_MS + 1)]
    fails, _ = timing_failures(match(frames, late)[0])
    assert any("after its deadline" in f for f in fails)
    missing = {k: v for k, v in ok.items() if k != 5}
    fails, _ = timing_failures(match(frames, missing)[0])
    assert any("without a decision" in f for f in fails)
    slow_wire = {i: [_decision(1.0 + i / 30 + 0.2)] for i in range(20)}  # 200 ms e2e
    fails, _ = timing_failures(match(frames, slow_wire)[0])
    assert any("harness clock" in f for f in fails)


class _Ctx:
    has_model = True
    transport = "raw"
    sim_time = False
    attach = False
    node_pid: int | None = None

    def __init__(self) -> None:
        self.params: list[tuple[str, float]] = []
        self.shift = 0

    def now(self) -> float:
        return 0.0

    def worker_pid(self, exclude=None):
        return None

    def set_param(self, name, value, done=None):
        self.params.append((name, value))
        if done is not None:
            done(None)

    def shift_stamps(self, delta_ns):
        self.shift += delta_ns

    def spawn(self, cmd):
        raise AssertionError("not in unit tests")

    def note(self, text):
        pass


def _frames(n: int) -> list[F.OutFrame]:
    return [F.OutFrame(1000 + i, i / 30, np.zeros((48, 64, 3), np.uint8)) for i in range(n)]


def test_camera_faults_rewrite_hold_and_release_frames():
    ctx = _Ctx()
    frozen = F.FrozenCamera()
    out = [g for f in _frames(4) for g in frozen.on_camera(ctx, f)]
    assert [g.stamp_ns for g in out] == [1000] * 4
    swap = F.StampsOutOfOrder()
    out = [g.stamp_ns for f in _frames(4) for g in swap.on_camera(ctx, f)]
    assert out == [1001, 1000, 1003, 1002]
    burst = F.BurstyDelivery(burst=3)
    burst.begin(ctx)
    sizes = [len(burst.on_camera(ctx, f)) for f in _frames(7)]
    assert sizes == [0, 0, 3, 0, 0, 3, 0]
    assert len(burst.end(ctx)) == 1
    assert ctx.params == [("test_hook_model_delay_ms", 15.0), ("test_hook_model_delay_ms", 0.0)]
    fut = F.FutureStamps()
    assert fut.on_camera(ctx, _frames(1)[0])[0].stamp_ns == 1000 + fut.ahead_ns
    assert F.CameraDropout().on_camera(ctx, _frames(1)[0]) == []


def test_corrupt_frames_name_each_field():
    pytest.importorskip("sensor_msgs.msg")
    from tiny_node.frames import FrameError, decode_compressed, decode_raw

    ctx = _Ctx()
    for transport, table in (("raw", F.CorruptFrames.RAW), ("compressed", F.CorruptFrames.COMPRESSED)):
        ctx.transport = transport
        fault = F.CorruptFrames()
        for f in _frames(len(table)):
            (out,) = fault.on_camera(ctx, f)
            kind = out.note.split(": ", 1)[1]
            m = out.raw
            with pytest.raises(FrameError) as err:
                if transport == "raw":
                    decode_raw(m.encoding, m.width, m.height, m.step, bytes(m.data))
                else:
                    decode_compressed(m.format, bytes(m.data))
            assert table[kind] in str(err.value), (kind, str(err.value))


def test_range_and_odometry_faults():
    ctx = _Ctx()
    assert math.isnan(F.RangeFault("nan").on_sensor(ctx, "range", 1, 20.0)[1])
    assert F.RangeFault("-inf").on_sensor(ctx, "range", 1, 20.0)[1] == -math.inf
    stuck = F.RangeFault("stuck")
    assert [stuck.on_sensor(ctx, "range", i, 20.0 - i)[1] for i in range(3)] == [20.0, 20.0, 20.0]
    assert stuck.duration_s >= 2.0  # outlasts the node's range_stuck_s (1 s)
    assert not stuck.known_gap  # the node detects it now
    assert F.RangeFault("nan").on_sensor(ctx, "odom", 1, 5.0) == (1, 5.0)
    assert F.StaleOdometry().on_sensor(ctx, "odom", 1, 5.0) is None
    with pytest.raises(ValueError, match="range fault kind"):
        F.RangeFault("purple")


def _dropout_record(frameless_times: list[float], level: int = 2) -> tuple[RunRecord, F.CameraDropout]:
    """30 Hz frames except during a dropout at [2.0, 3.5) s; decisions without a frame at the given times."""
    fault = F.CameraDropout(duration_s=1.5, recovery_s=2.0)
    fault.start = 2.0
    rec = _rec()
    ts = [i / 30 for i in range(int(5.5 * 30)) if not 2.0 <= i / 30 < 3.5]
    rec.frames = [FrameRec(i, 1000 + i, t, t) for i, t in enumerate(ts)]
    rec.decisions = {1000 + i: [_decision(t + 0.005)] for i, t in enumerate(ts)}
    rec.frameless = [DecisionRec(t, {"frame": "none (camera timeout)", "level": level, "source": "fallback",
                                     "reason": "clear [camera: no frame for 0.52 s]"}) for t in frameless_times]
    for name, lvl in (("camera", 2), ("camera", 0)):
        at = 2.8 if lvl == 2 else 3.8
        rec.diags.append(DiagRec(at, f"tiny_node: {name}", lvl, "", {}))
    rec.windows["camera_dropout"] = fault.window
    return rec, fault


def test_camera_dropout_check_wants_decisions_without_a_frame_at_the_camera_period():
    last = max(t for t in (i / 30 for i in range(200)) if t < 2.0)
    steady = [last + 0.5 + k / 30 for k in range(int((3.5 - last - 0.5) * 30))]
    rec, fault = _dropout_record(steady)
    res = fault.check(rec)
    assert res.passed, res.failures
    assert global_failures(rec) == []
    # the reasons observed, whole (they were cut to 40 characters, the one a reader needs lost)
    assert any("reasons 'clear [camera: no frame for 0.52 s]'" in o for o in res.observed), res.observed
    for times, level, why in ((steady[:2], 2, "only 2 decisions without a frame"),
                              (steady[::4], 2, "gap between decisions without a frame"),
                              (steady[:4], 2, "gap between decisions without a frame"),  # quiet before frames return
                              (steady, 1, "not at level ERROR"),
                              ([t + 0.3 for t in steady], 2, "first decision without a frame 0.80 s")):
        rec, fault = _dropout_record(times, level)
        res = fault.check(rec)
        assert any(why in f for f in res.failures), (why, res.failures)
    rec, _ = _dropout_record([*steady, 4.5])
    assert any("although a frame had been sent" in f for f in global_failures(rec))
    # A harness stall is a camera outage too: decisions without a frame in it are expected.
    rec, _ = _dropout_record(steady)
    rec.frames = [f for f in rec.frames if not 4.5 <= f.sent_at < 5.2]
    rec.decisions = {f.stamp_ns: rec.decisions[f.stamp_ns] for f in rec.frames}
    rec.frameless.append(DecisionRec(5.05, {"frame": "none (camera timeout)", "level": 2}))
    assert global_failures(rec) == []


def _stale_odometry_run(calm: Callable[[float], tuple[int, str]]) -> tuple[F.StaleOdometry, RunRecord]:
    """A stale_odometry fault at 2.0-3.5 s, the node healthy; ``calm(t)``: its sensors diagnostic outside."""
    fault = F.StaleOdometry(duration_s=1.5, recovery_s=2.5)
    fault.start = 2.0
    w = fault.window
    rec = _rec()
    ts = [i / 30 for i in range(int(6.5 * 30))]
    rec.frames = [FrameRec(i, 1000 + i, t, t) for i, t in enumerate(ts)]
    stale = lambda t: w.start + rec.odom_timeout_s <= t < w.end  # noqa: E731
    rec.decisions = {1000 + i: [_decision(t + 0.005, decision="brake" if stale(t) else "no_brake",
                                          level=2 if stale(t) else 0, source="rules" if stale(t) else "model",
                                          rules_reason="fail-safe brake: odom: stale (0.60 s > 0.5 s)" if stale(t)
                                          else "clear: object at 40.0 m > safe distance 10.0 m")]
                     for i, t in enumerate(ts)}
    for k in range(int(6.5 / 0.2)):
        at = k * 0.2
        level, message = (2, "odom: stale (0.60 s > 0.5 s)") if stale(at) else calm(at)
        rec.diags.append(DiagRec(at, "tiny_node: sensors", level, message, {}))
    rec.windows[fault.name] = w
    return fault, rec


@pytest.mark.parametrize("imu", [True, False])
def test_stale_odometry_wants_the_sensors_diagnostic_back_at_its_level_before_the_fault(imu):
    """Without an IMU the sensors diagnostic is WARN throughout ("imu missing (optional)"): a healthy
    node failed, "no 'sensors' diagnostic at level 0 ... (odometry back)" (review 2026-12-08)."""
    calm = (0, "") if imu else (1, "imu missing (optional)")
    fault, rec = _stale_odometry_run(lambda t: calm)
    res = fault.check(rec)
    assert res.passed, res.failures
    assert any(f"'sensors' level {calm[0]} at t=3.6" in o for o in res.observed), res.observed
    rec.diags = [d for d in rec.diags if not (d.level == calm[0] and d.at > fault.window.end)]  # never back
    assert any("no 'sensors' diagnostic at level" in f and "odometry back" in f for f in fault.check(rec).failures)


def test_the_sensors_diagnostic_is_back_at_ok_or_a_warning_it_had_before_for_the_same_causes():
    """The one sample before the fault set the level to come back to: a short WARN there failed a node
    back at OK, and a WARN for a new cause after the fault passed (review 2026-12-08)."""
    blip = lambda t: (1, "range: 3 scans timed by their receipt") if 1.7 < t < 2.0 else (0, "ok")  # noqa: E731
    fault, rec = _stale_odometry_run(blip)
    res = fault.check(rec)
    assert res.passed and any("'sensors' level 0 at t=3.6" in o for o in res.observed), (res.failures, res.observed)
    # the same cause with another count comes back as it was: back
    imu = lambda t: (1, f"imu missing (optional); range: {int(t * 10)} scans timed by their receipt")  # noqa: E731
    fault, rec = _stale_odometry_run(imu)
    assert fault.check(rec).passed, fault.check(rec).failures
    # after the fault, a WARN for a cause not seen before: not back
    new = lambda t: (1, "imu missing (optional)") if t < 3.5 else (1, "imu missing (optional); odom: speed NaN")  # noqa: E731
    fault, rec = _stale_odometry_run(new)
    [f] = fault.check(rec).failures
    assert f == ("no 'sensors' diagnostic at level 0 or at level 1 as before the fault ('imu missing (optional)') "
                 "in [3.60, 6.00) s (odometry back; last: level 1, 'imu missing (optional); odom: speed NaN')"), f


def test_range_stuck_on_no_return_is_a_documented_gap_not_a_failure():
    fault = F.RangeFault("stuck")
    fault.start = 2.0
    ctx = _Ctx()
    assert fault.on_sensor(ctx, "range", 1, math.inf) == (1, math.inf)  # a no-return goes out as it is
    rec = _rec()
    res = fault.check(rec)
    assert "no object in range" in res.known_gap and not any("range: stuck" in f for f in res.failures)
    # the first object seen is frozen: a missed scan when the window opens no longer leaves nothing to judge
    assert fault.on_sensor(ctx, "range", 2, 20.0) == (2, 20.0)
    assert fault.on_sensor(ctx, "range", 3, 19.5) == (3, 20.0) and fault.info["frozen_m"] == 20.0


def _stuck_record(restart_at: float, *, truth: bool = True, detect_at: float = 3.1,
                  speed: Callable[[float], float] | None = None) -> tuple[RunRecord, F.RangeFault]:
    """A range stuck at 20 m from 2.0 s for 2 s, detected by the node at 3.1 s while its odometry says moving.

    The ego brakes to a stop by 3.6 s and the next episode starts at ``restart_at`` at 8.3 m/s (or
    moves at ``speed(t)``); the node judges "moving" on the last odometry it got (sent 5 ms before),
    as the node does.
    """
    fault = F.RangeFault("stuck")
    fault.start = 2.0
    ctx = _Ctx()
    ctx.now = lambda: 2.0
    assert fault.on_sensor(ctx, "range", 1, 20.0) == (1, 20.0)

    def braking(t: float) -> float:
        return 8.3 if t >= restart_at else 8.0 if t < 3.3 else max(0.0, 8.0 * (3.6 - t) / 0.3)

    speed = speed or braking

    rec = _rec()
    rec.odom = [(k * 0.02, speed(k * 0.02)) for k in range(int(6.5 / 0.02))]
    ts = [i / 30 for i in range(int(6.5 * 30))]
    rec.frames = [FrameRec(i, 1000 + i, t, t) for i, t in enumerate(ts)]
    rec.truth = [(t, 20.0, speed(t) if truth else math.nan, False) for t in ts]
    for i, t in enumerate(ts):
        known = [v for at, v in rec.odom if at <= t - 0.005]
        if detect_at <= t < 4.0 and known and known[-1] > 1.0:
            reason, level, decision = "fail-safe brake: range: stuck at 20.00 m (identical readings ...)", 2, "brake"
        else:
            reason, level, decision = "clear: object at 20.0 m not closing (0.0 m/s)", 0, "no_brake"
        rec.decisions[1000 + i] = [_decision(t + 0.005, rules_reason=reason, level=level, decision=decision)]
    rec.diags.append(DiagRec(3.2, "tiny_node: sensors", 2, "", {}))
    rec.windows[fault.name] = fault.window
    return rec, fault


def test_range_stuck_is_judged_on_the_odometry_the_node_had_not_the_simulated_speed():
    # The next episode starts 10 ms before a frame: the node's last odometry is still 0 m/s, so it
    # rightly judges no stuck range on that frame (a CI failure under Python 3.10: "16/17 fail-safe").
    rec, fault = _stuck_record(restart_at=3.69)
    res = fault.check(rec)
    assert res.passed, res.failures
    # A recording has no simulated speed: its odometry still says the ego moves.
    rec, fault = _stuck_record(restart_at=3.69, truth=False)
    res = fault.check(rec)
    assert res.passed, res.failures
    # The judge still fails a node that misses the stuck range while its odometry says moving.
    rec, fault = _stuck_record(restart_at=3.69)
    miss = next(f for f in rec.frames if f.t >= 3.85)
    rec.decisions[miss.stamp_ns][0].values.update(rules_reason="clear: object at 20.0 m", level=0)
    res = fault.check(rec)
    assert any("not every frame after range_stuck_s" in f for f in res.failures), res.failures


def test_range_stuck_fails_a_fail_safe_that_does_not_brake():
    """rules.failsafe:=no_brake passed range_stuck: the check read the reason, never the decision."""
    rec, fault = _stuck_record(restart_at=3.69)
    for ds in rec.decisions.values():
        if ds[0].values["rules_reason"].startswith("fail-safe"):
            ds[0].values.update(decision="no_brake", rules_reason="fail-safe no_brake: range: stuck at 20.00 m")
    assert any("frames not braking under fail-safe" in f for f in fault.check(rec).failures)


def test_range_stuck_is_timed_from_when_the_ego_had_moved_range_stuck_s():
    """The ego stood for 0.65 s as the range froze (an episode's restart): the node, timing a stuck
    value while moving only, found it at 3.67 s; the check wanted it from 3.1 s and failed it."""
    def speed(t: float) -> float:
        return 0.0 if 2.0 <= t < 2.65 else 8.0

    rec, fault = _stuck_record(restart_at=99.0, detect_at=3.67, speed=speed)
    res = fault.check(rec)
    assert res.passed, res.failures
    assert any("the ego stood 0.66 s of the window, 2 frames left" in n for n in res.not_judged), res.not_judged
    rec, fault = _stuck_record(restart_at=99.0, detect_at=3.9, speed=speed)  # later than that: still a failure
    assert any("not every frame after range_stuck_s" in f for f in fault.check(rec).failures)
    rec, fault = _stuck_record(restart_at=99.0, detect_at=99.0,  # never moved range_stuck_s: not judged
                               speed=lambda t: 0.0 if 2.0 <= t < 3.5 else 8.0)
    res = fault.check(rec)
    assert res.passed and any("for less than range_stuck_s" in n for n in res.not_judged), res.failures


def test_range_stuck_with_the_ego_at_a_crawl_is_not_judged_nor_failed():
    """A fail-safe before released the brake at 0.7 m/s and the ego (no accelerator) crawls on: the
    node rightly times no stuck range below its 1 m/s, so the run could not exercise the check."""
    rec, fault = _stuck_record(restart_at=99.0, detect_at=99.0)
    rec.odom = [(k * 0.02, 0.7) for k in range(int(6.5 / 0.02))]
    res = fault.check(rec)
    assert res.passed and any("above 1.0 m/s for less than range_stuck_s" in n for n in res.not_judged), res.failures
    rec.odom = [(k * 0.02, 1.3) for k in range(int(6.5 / 0.02))]  # above the node's 1 m/s: still a failure
    assert any("only 0 frames to judge" in f for f in fault.check(rec).failures)


def test_range_stuck_allows_one_more_reading_at_the_range_rate_sent():
    # A 10 Hz recorded radar: the node can only see the value repeat at 10 Hz, so it may find
    # the stuck range a 10 Hz reading later (3.19 s) than at the simulated sensor's 20 Hz.
    rec, fault = _stuck_record(restart_at=3.69, detect_at=3.19)
    rec.range_sent = [k * 0.1 for k in range(65)]
    assert rec.range_period_s == pytest.approx(0.1)
    assert fault.check(rec).passed, fault.check(rec).failures
    # The same late detection with a 20 Hz range fails: the node had the readings to find it.
    rec, fault = _stuck_record(restart_at=3.69, detect_at=3.19)
    rec.range_sent = [k * 0.05 for k in range(130)]
    assert any("not every frame after range_stuck_s" in f for f in fault.check(rec).failures)


def _invalid_record(timeout_s: float, *, at_once: bool = False) -> tuple[RunRecord, F.RangeFault]:
    """NaN range from 2.0 s for 1.5 s; the node warns until its range_timeout_s, then fails safe
    (``at_once``: fails safe on the first NaN, as before 2026-12-06)."""
    fault = F.RangeFault("nan")
    fault.start = 2.0
    rec = _rec(range_timeout_s=timeout_s)
    rec.range_sent = [k * 0.05 for k in range(130)]
    ts = [i / 30 for i in range(int(6.5 * 30))]
    rec.frames = [FrameRec(i, 1000 + i, t, t) for i, t in enumerate(ts)]
    for i, t in enumerate(ts):
        if 2.05 <= t < 3.55 and (at_once or t >= 2.0 + timeout_s):
            values = {"rules_reason": "fail-safe brake: range: NaN reading (sensor error) for 0.51 s: ...",
                      "level": 2, "decision": "brake"}
        elif 2.05 <= t < 3.55:
            values = {"rules_reason": "clear: object at 20.0 m not closing (0.0 m/s)", "level": 1,
                      "sensor_warnings": "range: NaN reading (sensor error) for 0.10 s: the last valid reading ..."}
        else:
            values = {"rules_reason": "clear: object at 20.0 m not closing (0.0 m/s)", "level": 0}
        rec.decisions[1000 + i] = [_decision(t + 0.005, **values)]
    rec.diags += [DiagRec(2.1, "tiny_node: sensors", 1, "", {}), DiagRec(2.1 + timeout_s, "tiny_node: sensors", 2, "", {})]
    rec.windows[fault.name] = fault.window
    return rec, fault


def test_an_invalid_range_is_judged_a_warning_until_the_nodes_range_timeout_then_a_fault():
    rec, fault = _invalid_record(0.5)
    res = fault.check(rec)
    assert res.passed and not res.not_judged, res.failures
    assert "6/6 last valid reading used under a 'NaN reading' warning" in res.observed
    rec, fault = _invalid_record(0.5, at_once=True)  # one NaN a fail-safe: the node this replaced
    assert any("not every frame before range_timeout_s" in f for f in fault.check(rec).failures)
    # range_timeout_s 0.2 at a 20 Hz range leaves no frame surely under the warning: not judged, not failed
    rec, fault = _invalid_record(0.2)
    res = fault.check(rec)
    assert res.passed and any(n.startswith("the frames under the warning") for n in res.not_judged), res.failures


def test_range_resent_sends_the_windows_first_valid_scan_again_stamp_and_value():
    ctx = _Ctx()
    ctx.now = lambda: 2.02
    fault = F.RangeFault("resent")
    assert fault.name == "range_resent" and fault.duration_s > 0.5  # outlasts the node's range_timeout_s
    # a NaN (or negative) reading is no scan to resend: it goes out as it is, the first valid one is resent
    assert math.isnan(fault.on_sensor(ctx, "range", 4, math.nan)[1])
    assert fault.on_sensor(ctx, "range", 5, -3.0) == (5, -3.0)
    assert [fault.on_sensor(ctx, "range", k, 20.0 - k) for k in (6, 7, 8)] == [(6, 14.0)] * 3
    assert fault.on_sensor(ctx, "odom", 9, 8.0) == (9, 8.0)
    assert fault.info["copies"] == 2 and fault.info["resent_at"] == 2.02
    # +Inf (a clear road) and -Inf are valid REP-117 scans: resent like any other
    for v in (math.inf, -math.inf):
        fault = F.RangeFault("resent")
        assert [fault.on_sensor(ctx, "range", k, v if k == 6 else 30.0) for k in (6, 7)] == [(6, v)] * 2


def _resent_record(*, stale: bool = True, first: float = math.inf) -> tuple[RunRecord, F.RangeFault]:
    """The scan stamped 2.02 s resent from 2.0 s for 1.5 s; the node stale 0.5 s after its receipt
    (``stale`` False: the node before dd4258a, a resent clear road "fresh" for ever)."""
    fault = F.RangeFault("resent")
    fault.start = 2.0
    ctx = _Ctx()
    for k in range(30):  # 1.5 s at 20 Hz
        ctx.now = lambda k=k: 2.02 + k * 0.05
        assert fault.on_sensor(ctx, "range", 2_020_000_000 + k * 50_000_000, first) == (2_020_000_000, first)
    rec = _rec(range_timeout_s=0.5)
    rec.range_sent = [k * 0.05 for k in range(130)]
    ts = [i / 30 for i in range(int(6.5 * 30))]
    rec.frames = [FrameRec(i, 1000 + i, t, t) for i, t in enumerate(ts)]
    for i, t in enumerate(ts):
        if stale and 2.02 + 0.5 + 0.01 <= t < 3.52:
            values = {"rules_reason": "fail-safe brake: range: stale (0.51 s > 0.5 s): the scan stamped 2.020 s "
                                      "republished 10 times since, no new one", "level": 2, "decision": "brake"}
        else:
            values = {"rules_reason": "clear: nothing within max_range 150.00 m", "level": 0, "decision": "no_brake"}
        rec.decisions[1000 + i] = [_decision(t + 0.005, **values)]
    if stale:
        rec.diags.append(DiagRec(2.6, "tiny_node: sensors", 2, "range: stale", {}))
    rec.windows[fault.name] = fault.window
    return rec, fault


def test_range_resent_is_judged_stale_from_range_timeout_after_the_scans_first_receipt():
    rec, fault = _resent_record()
    res = fault.check(rec)
    assert res.passed and res.status == "PASS", (res.failures, res.not_judged)
    assert any("fail-safe 'range: stale … republished' after range_timeout_s" in o for o in res.observed), res.observed
    # the node before dd4258a: the resent clear road stayed "fresh", no fail-safe, no sensors ERROR
    rec, fault = _resent_record(stale=False)
    failures = fault.check(rec).failures
    assert any("not every frame after range_timeout_s fail-safe with 'range: stale … republished'" in f
               for f in failures), failures
    assert any("no 'sensors' diagnostic at level 2" in f for f in failures), failures
    # stale too early (the resent scan aged from before its first receipt): a failure too
    rec, fault = _resent_record()
    early = next(f for f in rec.frames if f.t >= 2.1)
    rec.decisions[early.stamp_ns][0].values.update(rules_reason="fail-safe brake: range: stale (0.55 s > 0.5 s)")
    assert any("'range: stale' before range_timeout_s" in f for f in fault.check(rec).failures)


def test_range_resent_with_no_valid_reading_in_its_window_is_not_judged():
    fault = F.RangeFault("resent")
    fault.start = 2.0
    for k in range(30):
        assert math.isnan(fault.on_sensor(_Ctx(), "range", 5_000 + k, math.nan)[1])
    rec = _rec()
    rec.frames = [FrameRec(i, i, i / 30, i / 30) for i in range(200)]
    rec.decisions = {i: [_decision(i / 30 + 0.008)] for i in range(200)}
    res = fault.check(rec)
    assert res.passed and res.status == "PASS (not all judged)", res.failures
    assert any("no valid range reading in the window: 30 NaN" in n for n in res.not_judged), res.not_judged


def test_range_resent_from_a_radar_slower_than_the_node_can_judge_is_not_judged():
    """A 3 Hz recorded radar (or range_timeout_s 0.15 s at 10 Hz): the node rightly does not age a
    repeated stamp from a driver stamping that seldom, and the check FAILed instead of saying so."""
    rec, fault = _resent_record(stale=False)
    rec.range_sent = [k / 3 for k in range(20)]
    res = fault.check(rec)
    assert res.passed and res.status == "PASS (not all judged)", res.failures
    assert any("range period 0.333 s over 0.5 x range_timeout_s 0.5 s" in n for n in res.not_judged), res.not_judged


def test_fault_registry_and_schedule():
    faults = F.make_faults(["all"])
    assert {f.name for f in faults} == set(F.FAULTS)
    assert all(f.expected for f in faults), "every fault writes down its expected behaviour"
    assert {f.group for f in faults} == {"main", "simtime", "bundle"}
    end = F.schedule(faults, lead_in_s=2.0)
    starts = [f.start for f in faults]
    assert starts == sorted(starts) and starts[0] == 2.0
    for a, b in itertools.pairwise(faults):
        assert b.start >= a.window.until, "a fault starts only after the previous one recovered"
    assert end > faults[-1].window.until
    with pytest.raises(ValueError, match="unknown fault"):
        F.make_faults(["nope"])


def test_docs_table_lists_every_fault():
    text = (REPO / "docs" / "HIL.md").read_text()
    for name in F.FAULTS:
        assert f"`{name}`" in text, f"docs/HIL.md has no row for {name}"


def test_harness_sends_only_the_newest_late_camera_frame_after_a_stall():
    from tiny_node.hil.harness import LATE_FRAME_S, skip_late_frames
    from tiny_node.hil.source import Event

    on_time = [Event("range", 1.00, value=5.0), Event("camera", 1.00)]
    assert skip_late_frames(on_time, 1.002) == (on_time, 0)
    # The harness stalled 0.3 s: nine frames fell due; only the newest goes out, every sensor event does.
    backlog = [Event("camera", 0.7 + i / 30) for i in range(9)] + [Event("range", 0.7 + i / 20) for i in range(6)]
    backlog.sort(key=lambda e: e.t)
    sent, skipped = skip_late_frames(backlog, 1.0)
    assert skipped == 8 and [e.t for e in sent if e.kind == "camera"] == [0.7 + 8 / 30]
    assert sum(e.kind == "range" for e in sent) == 6
    # A frame just inside the limit still goes out.
    near = [Event("camera", 1.0 - LATE_FRAME_S + 0.001), Event("camera", 1.0)]
    assert skip_late_frames(near, 1.0) == (near, 0)


def test_report_files_without_ros(tmp_path):
    pytest.importorskip("matplotlib")
    from tiny_node.hil.record import CheckResult
    from tiny_node.hil.report import write_report

    rec = _rec()
    rec.frames = [FrameRec(i, i, i / 30, 1.0 + i / 30) for i in range(30)]
    rec.decisions = {i: [_decision(1.0 + i / 30 + 0.008)] for i in range(30)}
    rec.truth = [(i / 30, 50 - i, 10.0, False) for i in range(30)]
    checks = [CheckResult("x", "main", "exp", True, observed=["a", "b", "c"]),
              CheckResult("y", "main", "exp", True, skipped="needs root")]
    rec.skipped_late = 3
    summary = write_report(tmp_path, [rec], checks, {"source": "test"}, {"main": []})
    assert summary["passed"] and summary["totals"]["decisions"] == 30
    assert summary["runs"][0]["frames_skipped_by_harness"] == 3
    assert "3 camera frames skipped by the harness" in (tmp_path / "report.md").read_text()
    for name in ("summary.json", "report.md", "latency_hist.png", "timeline_main.png", "frames_main.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert "| y | main | SKIP |" in (tmp_path / "report.md").read_text()


def test_netns_reason_without_root(monkeypatch):
    from tiny_node.hil import netns

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "root" in netns.unavailable_reason()


# --- over real DDS ------------------------------------------------------------------------
def _source_args() -> list[str]:
    return ["--scenario", str(CI_SCENARIO)] if CI_SCENARIO.is_file() else []


def _run_hil(out: Path, *args: str, timeout: int = 400) -> tuple[int, dict, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    proc = subprocess.run([sys.executable, "-m", "tiny_node", "hil", "--out", str(out), *args],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    summary_path = out / "summary.json"
    if not summary_path.exists():
        pytest.fail(f"tiny-node hil wrote no summary (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.returncode, json.loads(summary_path.read_text()), proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    pytest.importorskip("rclpy")
    out = tmp_path_factory.mktemp("hil")
    code, summary, log = _run_hil(out, *_source_args(), "--lead-in", "4", "--faults", "all")
    if not summary.get("passed"):
        # Known, open: the node alone overruns a deadline by tens of ms in about 1 run of 6 on
        # this shared 2-vCPU VM (docs/RELIABILITY.md, finding 5). One full re-run keeps CI from
        # flaking on it; the first run's failures are printed so they are never hidden.
        failed = [c["fault"] for c in summary.get("faults", []) if not c.get("passed") and not c.get("skipped")]
        print(f"HIL run 1 failed ({failed}); re-running once. Its report: {out}", file=sys.stderr)
        out = tmp_path_factory.mktemp("hil_rerun")
        code, summary, log = _run_hil(out, *_source_args(), "--lead-in", "4", "--faults", "all")
    return code, summary, log, out


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize("fault", list(F.FAULTS))
def test_ci_fault_check(ci_run, fault):
    _, summary, log, _ = ci_run
    checks = {c["fault"]: c for c in summary["faults"]}
    assert fault in checks, f"{fault} was not run:\n{log[-2000:]}"
    c = checks[fault]
    if c["skipped"]:
        pytest.skip(c["skipped"])
    assert c["passed"], f"{fault}: {c['failures']}\nexpected: {c['expected']}\nobserved: {c['observed']}"


@pytest.mark.ros
@pytest.mark.slow
def test_ci_run_every_frame_decided_once_node_alive_report_written(ci_run):
    code, summary, log, out = ci_run
    for run in summary["runs"]:
        assert run["node_alive"], run["group"]
        assert not run["failures"], f"{run['group']}: {run['failures']}"
        assert run["unknown_decisions"] == 0
        assert run["duplicates"] == 0
        # over real DDS the brake output is paired by sequence number (rclpy >= Iron has the message info)
        assert run["brake_output"]["paired_by"] == "sequence" and run["brake_output"]["messages"] > 100, run["brake_output"]
    groups = {r["group"] for r in summary["runs"]}
    assert groups == {"main", "simtime", "bundle"}
    assert summary["outcome"]["clean"]["episodes"] >= 1
    assert summary["outcome"]["clean"]["collisions"] == 0, summary["outcome"]["episodes"]
    for name in ("summary.json", "report.md", "latency_hist.png", "timeline_main.png", "timeline_simtime.png"):
        assert (out / name).stat().st_size > 0
    assert code == 0, log[-3000:]


@pytest.mark.ros
@pytest.mark.slow
def test_two_hosts_in_network_namespaces(tmp_path):
    pytest.importorskip("rclpy")
    from tiny_node.hil import netns

    why = netns.unavailable_reason()
    if why:
        pytest.skip(why)
    code, summary, log = _run_hil(tmp_path, "--netns", *_source_args(), "--lead-in", "3",
                                  "--faults", "corrupt_frames,worker_sigkill", timeout=200)
    assert summary["two_hosts"] is True
    (run,) = summary["runs"]
    assert run["transport"] == "compressed"
    assert run["node_counters"]["frames_received"] >= run["frames"] - 2, run["node_counters"]
    assert code == 0, log[-3000:]
    assert all(c["passed"] for c in summary["faults"]), summary["faults"]
    import re

    names = re.search(r"harness in (\S+) .*node in (\S+) ", log)
    assert names, log[:500]
    for ns in names.groups():
        assert not netns.exists(ns), f"namespace {ns} left behind"


def test_bag_stream_replays_a_recording_in_time_order_and_loops(tmp_path):
    pytest.importorskip("rosbags")
    from tiny_node.bag.record import Recorder
    from tiny_node.hil.source import BagStream

    rgb = np.full((48, 64, 3), 120, np.uint8)
    with Recorder(tmp_path / "b", epoch_ns=1_000_000_000) as rec:
        for i in range(6):
            t = i / 30
            rec.odom(t, rec.to_ns(t), 8.0, 0.05)
            rec.range(t, rec.to_ns(t), 30.0 - i)
            rec.image(t, rec.to_ns(t), rgb)
    stream = BagStream(tmp_path / "b")
    events = stream.advance(0.09, False)  # frames at 0, 1/30, 2/30 s
    kinds = [e.kind for e in events]
    assert kinds.count("camera") == 3 and kinds.count("range") == 3
    assert {(e.value, e.yaw_rate) for e in events if e.kind == "odom"} == {(8.0, 0.05)}  # a recording turns
    assert [e.t for e in events] == sorted(e.t for e in events)
    cam = next(e for e in events if e.kind == "camera")
    assert cam.image is not None and cam.image.shape == (48, 64, 3)
    more = stream.advance(1.0, False)  # past the end: the bag starts again
    assert sum(e.kind == "camera" for e in more) >= 3
    assert len(stream.episodes) >= 2 and not stream.closed_loop


def test_bag_stream_notes_messages_a_damaged_bag_holds_but_cannot_give(tmp_path):
    """Once, after its first pass: the HIL report said nothing of frames the recording lost."""
    pytest.importorskip("rosbags")
    from test_bag import drive, spoil_largest_message

    from tiny_node.hil.source import BagStream

    drive(tmp_path / "b", seconds=0.5)
    spoil_largest_message(tmp_path / "b")
    stream = BagStream(tmp_path / "b")
    stream.notes.clear()
    stream.advance(0.6, False)
    assert stream.notes == [f"{tmp_path / 'b'}: /camera/image_raw: 14 of its 15 messages could be read: the "
                            "others are in a damaged part of the bag and were not replayed"]
    stream.advance(3.0, False)  # more passes: no second note
    assert len(stream.notes) == 1 and len(stream.episodes) >= 3
    stream.close()


@pytest.mark.parametrize("gap_m,ends", [(60.0, True), (17.0, False)])
def test_an_episode_left_crawling_after_a_released_brake_ends_unless_a_collision_is_near(gap_m, ends):
    """Without a request the ego holds its speed: a fail-safe brake released at 0.7 m/s left it
    crawling to the scenario's end, and the faults that followed met an ego too slow to judge.
    Near the object (time to collision within CRAWL_TTC_S) the node must still stop it."""
    from tiny_node.hil.source import CRAWL_S, CRAWL_TTC_S, BuiltinApproach, ClosedLoopStream

    stream = ClosedLoopStream("approach", (BuiltinApproach(gap_m=gap_m, width=64, height=48, max_s=8.0)
                                           for _ in itertools.count()))
    t, brake, released_at = 0.0, True, None
    while len(stream.episodes) == 1 and t < 6.0:
        t += 0.02
        stream.advance(t, brake)
        tr = stream.truth() if len(stream.episodes) == 1 else None
        if brake and tr is not None and tr.ego_speed_mps < 4.5:  # the brake acts 0.2 s on: left at ~1.3 m/s
            brake, released_at = False, t
            assert (tr.ttc_s > CRAWL_TTC_S) is ends
    first = stream.episodes[0]
    assert released_at is not None
    if ends:
        # the crawl is timed from below CRAWL_FRACTION, which the brake, acting 0.2 s past its release, reaches
        assert not first.collided and released_at + CRAWL_S - 0.03 <= first.t_end <= released_at + CRAWL_S + 0.23
        assert first.ended_early.startswith("crawling at ") and len(stream.episodes) == 2
        assert stream.truth().ego_speed_mps == pytest.approx(50 / 3.6)  # the next episode drives
    else:
        # not cut short: the crawl into the car (no brake came again) is the episode's outcome
        assert first.ended_early == "" and first.collided and first.impact_speed_kmh > 3.0
    stream.close()


@pytest.mark.parametrize("release_after_s,began_braked", [(1.0, False), (None, True)])
def test_a_stopped_episode_waits_for_the_node_to_let_go_before_the_next_drive(release_after_s, began_braked):
    """The node is not restarted between episodes: the next drive began under the hold of the last
    stop (7 of 8 ccrs_30kmh episodes stopped 26 m short). The stopped ego now waits up to
    RELEASE_WAIT_S for the release, as a test driver would."""
    from tiny_node.hil.source import RELEASE_WAIT_S, BuiltinApproach, ClosedLoopStream

    stream = ClosedLoopStream("approach", (BuiltinApproach(gap_m=60.0, width=64, height=48, max_s=30.0)
                                           for _ in itertools.count()))
    t, done_at = 0.0, None
    while len(stream.episodes) == 1 and t < 20.0:
        t += 0.02
        released = done_at is not None and release_after_s is not None and t >= done_at + release_after_s
        stream.advance(t, not released)
        if done_at is None and stream._world.done():
            done_at = t
    stream.close_episode()
    first, second = stream.episodes[:2]
    assert done_at is not None and first.final_speed_kmh == 0.0
    waited = RELEASE_WAIT_S if release_after_s is None else release_after_s
    assert first.release_wait_s == pytest.approx(waited, abs=0.03)
    assert second.t_start == pytest.approx(done_at + waited, abs=0.03)
    assert first.t_end == pytest.approx(done_at, abs=0.03)  # the wait is between episodes
    assert second.began_braked is began_braked


def test_an_episode_that_began_under_the_last_ones_brake_is_marked_and_reported():
    """The node is not restarted between episodes: its 2 s hold from the last stop braked the next
    drive from its first frame (stopped 26 m short), and the report read it as a clean result."""
    from tiny_node.hil.report import outcome
    from tiny_node.hil.source import BuiltinApproach, ClosedLoopStream

    stream = ClosedLoopStream("approach", (BuiltinApproach(gap_m=30.0, width=64, height=48, max_s=1.0)
                                           for _ in itertools.count()))
    t = 0.0
    while len(stream.episodes) < 3:
        t += 0.02
        stream.advance(t, len(stream.episodes) == 1)  # braking through the first episode's end only
    stream.close_episode()
    assert [e.began_braked for e in stream.episodes] == [False, True, False]
    rec = _rec(episodes=[e.as_dict() for e in stream.episodes])
    assert outcome([rec])["clean"]["began_braked"] == 1


def test_late_decision_excused_only_by_a_machine_stall_as_long_as_the_overrun():
    from tiny_node.hil.stallprobe import Stall

    frames = [FrameRec(i, i, i / 30, 1.0 + i / 30) for i in range(20)]
    decisions = {i: [_decision(1.0 + i / 30 + 0.01)] for i in range(20)}
    decisions[4] = [_decision(1.0 + 4 / 30 + 0.12, latency=110.0)]  # 60 ms over the deadline
    results = match(frames, decisions)[0]
    assert timing_failures(results)[0], "a 60 ms overrun fails without a probe"
    short = [Stall(1.0 + 4 / 30 + 0.02, 1.0 + 4 / 30 + 0.03)]  # 10 ms: does not explain 54 ms
    assert timing_failures(results, stalls=short)[0]
    long = [Stall(1.0 + 4 / 30 + 0.02, 1.0 + 4 / 30 + 0.10)]  # 80 ms: the machine stood still
    fails, obs = timing_failures(results, stalls=long)
    assert fails == [] and any("excused" in o for o in obs)
    elsewhere = [Stall(5.0, 5.2)]
    assert timing_failures(results, stalls=elsewhere)[0]


def test_stall_probe_file_round_trip(tmp_path):
    from tiny_node.hil.stallprobe import read

    f = tmp_path / "stalls.txt"
    f.write_text("# scheduling SCHED_FIFO 50\n100.500000 120.000\n")
    scheduling, stalls = read(f)
    assert scheduling == "SCHED_FIFO 50"
    assert len(stalls) == 1 and math.isclose(stalls[0].ms, 120.0) and math.isclose(stalls[0].end, 100.5)
    assert read(tmp_path / "missing.txt") == ("not run", [])


def test_namespaces_are_deleted_when_the_run_fails(tmp_path):
    from tiny_node.hil import netns

    why = netns.unavailable_reason()
    if why:
        pytest.skip(why)
    made = []
    with pytest.raises(RuntimeError, match="boom"), netns.two_hosts(tmp_path, tag=f"t{os.getpid() % 100000}") as hosts:
        made += [hosts.hil_ns, hosts.node_ns]
        assert all(netns.exists(ns) for ns in made)
        out = subprocess.run([*hosts.hil_prefix(), "ip", "-o", "addr", "show"], capture_output=True, text=True, check=True)
        assert f"{netns.HIL_ADDR}/{netns.PREFIX_LEN}" in out.stdout
        raise RuntimeError("boom")
    assert made and not any(netns.exists(ns) for ns in made)


_OUTER = """
import argparse, contextlib, sys
from pathlib import Path
from tiny_node.hil import cli, netns

out, inner = Path(sys.argv[1]), sys.argv[2]

class Hosts(netns.Hosts):
    def hil_prefix(self):
        return [sys.executable, inner]  # the inner harness: a script counting its SIGINTs

@contextlib.contextmanager
def two_hosts(work_dir, tag=None):
    yield Hosts("tnhil", "tnnode", out / "profile.xml")

netns.unavailable_reason = lambda: ""
netns.two_hosts = two_hosts
sys.exit(cli._netns_outer(argparse.Namespace(out=out), ["--netns"]))
"""

_INNER = """
import signal, sys, time
from pathlib import Path
got = Path(__file__).parent / "sigints"
def on_int(signum, frame):
    got.write_text(got.read_text() + "x" if got.exists() else "x")
    raise KeyboardInterrupt
signal.signal(signal.SIGINT, on_int)
(got.parent / "ready").write_text("")
try:
    time.sleep(30)
except KeyboardInterrupt:
    time.sleep(1.0)  # its clean-up: stopping the node, undoing the fault; a second SIGINT would cut it short
"""


def test_ctrl_c_on_two_hosts_reaches_the_inner_harness_once(tmp_path):
    """Ctrl-C reaches the whole foreground group: the inner harness got it, then the outer's own SIGINT cut
    its clean-up short (a KeyboardInterrupt inside stopping the node). It must get exactly one."""
    inner = tmp_path / "inner.py"
    inner.write_text(_INNER)
    outer = subprocess.Popen([sys.executable, "-c", _OUTER, str(tmp_path), str(inner)], cwd=REPO,
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 30
    while not (tmp_path / "ready").exists() and time.monotonic() < end:
        time.sleep(0.05)
    os.killpg(outer.pid, signal.SIGINT)  # as a terminal's Ctrl-C: SIGINT to the foreground process group
    outer.wait(timeout=30)
    assert (tmp_path / "sigints").read_text() == "x"


def _four_frames(path: Path, frame: Callable[[Any, int, float, np.ndarray], None]) -> Path:
    """A bag of 4 camera frames at 30 Hz with a range each, the simulator's recorder's; ``frame`` writes each."""
    from tiny_node.bag.record import Recorder

    rgb = np.full((48, 64, 3), 120, np.uint8)
    with Recorder(path, epoch_ns=1_000_000_000) as rec:
        for i in range(4):
            t = i / 30
            rec.range(t, rec.to_ns(t), 30.0 - i)
            frame(rec, i, t, rgb)
    return path


def test_bag_stream_reads_as_replay_does_and_notes_frames_it_cannot_send(tmp_path):
    pytest.importorskip("rosbags")
    from tiny_node.bag import BagError
    from tiny_node.bag import msgs as bm
    from tiny_node.hil.source import BagStream

    def frame(rec, i, t, rgb):
        if i == 1:  # a frame the node cannot take (its data cut short)
            msg = bm.image_msg(rec.to_ns(t), rgb)
            msg.data = msg.data[:100]
            rec.write("/camera/image_raw", t, msg)
        else:
            rec.image(t, rec.to_ns(t), rgb)

    stream = BagStream(_four_frames(tmp_path / "b", frame))
    events = stream.advance(0.2, False)
    assert sum(e.kind == "camera" and not e.unsent for e in events) == 3
    odom, = stream.notes  # replay's warning (this bag has no odometry)
    assert "no odom topic" in odom
    bad, = [e for e in events if e.unsent]  # the frame, for the harness to count (not to send)
    assert bad.kind == "camera" and bad.image is None and bad.t == pytest.approx(1 / 30)
    assert "/camera/image_raw not sent" in bad.unsent and "truncated" in bad.unsent, bad.unsent
    with pytest.raises(BagError, match="bag not found"):
        BagStream(tmp_path / "nowhere")


def test_hil_params_are_typed_as_the_nodes_rcl_types_them():
    """PyYAML read ``null`` as None, passed on to the node as the string ``None``, and ``5e-3`` as a
    string where rcl reads a double (review 2026-12-08)."""
    from tiny_node.hil.cli import _params
    from tiny_node.tools.nodeproc import ros_param_arg

    got = _params(["deadline_ms:=5e-3", "name:=null", "flag:=y", "limit:=40.0", "ids:=[1, 2]"])
    assert got == {"deadline_ms": 0.005, "name": "null", "flag": True, "limit": 40.0, "ids": [1, 2]}
    assert [ros_param_arg(k, v) for k, v in got.items()] == [
        "deadline_ms:=0.005", "name:=null", "flag:=true", "limit:=40.0", "ids:=[1, 2]"]


def test_hil_takes_a_bags_topics_by_role_as_replay_does(tmp_path, capsys):
    """A vehicle's recording with two cameras was refused, "choose one with --camera", an option hil did
    not have (review 2026-12-08): --camera / --range / --odom / --imu name the bag's topics."""
    pytest.importorskip("rosbags")
    from tiny_node.bag import msgs as bm
    from tiny_node.cli import main
    from tiny_node.hil import cli as hil_cli

    def frame(rec, i, t, rgb):
        rec.image(t, rec.to_ns(t), rgb)
        rec.write("/rear/image_raw", t, bm.image_msg(rec.to_ns(t), rgb))

    _four_frames(tmp_path / "b", frame)
    out = ["hil", "--out", str(tmp_path / "out"), "--bag", str(tmp_path / "b")]
    assert main(out) == 2
    assert "choose one with --camera" in capsys.readouterr().err
    assert main([*out, "--camera", "/nowhere"]) == 2
    assert "--camera /nowhere: no such topic in" in capsys.readouterr().err
    args = argparse.Namespace(scenario=None, suite=None, bag=tmp_path / "b", camera="/rear/image_raw", range=None,
                              odom=None, imu=None)
    make, label = hil_cli._stream_factory(args)
    stream = make()
    try:
        assert label == f"bag {tmp_path / 'b'}" and stream.roles["camera"] == "/rear/image_raw"
    finally:
        stream.close()


def test_hil_refuses_bad_inputs_before_anything_starts(tmp_path, capsys):
    from tiny_node.cli import main

    for argv, expected in (
        (["--bag", str(tmp_path / "nowhere")], "bag not found"),
        (["--faults", "worker_sigkil"], "unknown fault(s) worker_sigkil"),
        (["--soak", "60", "--faults", "none"], "--soak needs faults"),
        (["--model", str(tmp_path / "no_bundle")], "--model: "),
        (["--faults", "all,range_nan"], "all stands alone"),  # was a traceback from make_faults
        (["--faults", "range_nan,range_nan"], "named twice: range_nan"),
        (["--soak", "60", "--faults", "bundle_corrupt"], "not bundle_corrupt"),  # ran, and failed a good node
        (["--node-pid", "4242"], "--node-pid names an attached node"),
        (["--lead-in", "0"], "--lead-in 0: at least the warm-up"),  # faults judged frames lost in DDS matching
        (["--param", "deadline_ms:=[4"], "--param 'deadline_ms:=[4': the value is not valid YAML"),  # a traceback
        (["--faults", ""], "--faults '' names no fault; give 'none'"),  # an unset CI variable: nothing run, PASS
        (["--faults", ","], "--faults ',' names no fault"),
        (["--namespace", "bad-ns"], "--namespace /bad-ns: namespace must not contain characters other than "
                                    "alphanumerics"),  # the node started, then the harness's traceback
        (["--camera", "/front/image_raw", "--odom", "/odom"], "--camera --odom: a bag's topic, with --bag only"),
        (["--param", "deadline_ms:="], "--param 'deadline_ms:=' has no value"),  # went on as the string None
    ):
        assert main(["hil", "--out", str(tmp_path / "out"), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, err
    for option in ("--lead-in", "--duration", "--soak"):  # nan streamed until killed
        for value in ("nan", "inf"):
            with pytest.raises(SystemExit):
                main(["hil", "--out", str(tmp_path / "out"), option, value])
            assert f"{option}: must be a finite number of seconds, got {value}" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nego_speed_kmh: -5\n")
    assert main(["hil", "--out", str(tmp_path / "out"), "--scenario", str(bad)]) == 2
    assert "ego_speed_kmh" in capsys.readouterr().err


def test_a_node_that_exits_at_once_fails_at_once_and_the_other_runs_still_report(monkeypatch):
    """A node refusing its arguments exited within a second, and the harness waited a minute for it, then
    raised: the report of the runs before it (a whole main run) was lost with a traceback."""
    from tiny_node.hil import harness

    class Feeder:  # as the real one: the wait ends when the started node's process has exited
        def wait_for_node(self, timeout_s: float, alive=None) -> bool:
            if alive is not None and not alive():
                return False
            time.sleep(timeout_s)
            return False

    class Exited:
        def alive(self) -> bool:
            return False

    t = time.monotonic()
    assert not harness._wait_for_node(Feeder(), Exited(), 60.0)
    assert time.monotonic() - t < 2.0
    main_check = F.CheckResult("range_nan", "main", "x", True)

    def run_group(cfg, group, faults, *, extra_s=0.0):
        if group == "simtime":
            raise harness.NodeUnavailableError("hil simtime: the node exited with status 2 before it came up\nlog")
        return _rec(), [main_check]

    monkeypatch.setattr(harness, "run_group", run_group)
    cfg = harness.HarnessConfig(out_dir=Path("."), stream_factory=lambda: None, progress=lambda s: None)
    records, checks = harness.run_all(cfg, F.make_faults(["range_nan", "clock_jump"]))
    assert [r.group for r in records] == ["main"]
    failed = {c.fault: c.failures for c in checks if not c.passed}
    assert failed == {"node run 'simtime'": ["hil simtime: the node exited with status 2 before it came up"],
                      "clock_jump": ["not run: hil simtime: the node exited with status 2 before it came up"]}


def test_a_relative_namespace_is_made_fully_qualified(tmp_path, monkeypatch):
    """``--namespace robot1``: rcl refuses ``__ns:=robot1``, the node exited at once and the harness waited a minute."""
    from tiny_node.cli import main
    from tiny_node.hil import harness

    seen: list[str] = []

    def run_all(cfg, faults, *, clean_s=0.0):
        seen.append(cfg.namespace)
        return [], []

    monkeypatch.setattr(harness, "run_all", run_all)
    for given, expected in (("robot1", "/robot1"), ("/robot1/", "/robot1"), ("/", ""), ("", "")):
        assert main(["hil", "--out", str(tmp_path), "--scenario", str(CI_SCENARIO), "--model", "none",
                     "--faults", "none", "--namespace", given]) == 0
        assert seen.pop() == expected, given


def test_a_load_fault_fails_when_the_load_never_ran():
    """stress-ng exiting at once (a bad option, a missing binary's wrapper) left the machine idle:
    the timing checks then proved nothing, and the check passed."""
    fault = F.CpuLoad()
    fault.start = 1.0
    frames = [FrameRec(i, i, 1.0 + i / 30, 1.0 + i / 30) for i in range(180)]
    rec = _rec(frames=frames, decisions={i: [_decision(1.0 + i / 30 + 0.005)] for i in range(180)})
    fault.info.update(exit_status=0, cpu_busy=0.97)
    assert fault.check(rec).passed, fault.check(rec).failures
    fault.info.update(exit_status=1, cpu_busy=0.03)
    failures = " ".join(fault.check(rec).failures)
    assert "the load did not run" in failures and "busy 0.03" in failures
    # and a model that stops deciding under load fails it too
    fault.info.update(exit_status=None, cpu_busy=0.97)
    late = {i: [_decision(1.0 + i / 30 + 0.045, source="fallback", model_state="late")] for i in range(180)}
    rec = _rec(frames=frames, decisions=late)
    assert any("model on time for 0%" in f for f in fault.check(rec).failures)


def test_model_checks_leave_out_the_frames_the_model_was_not_asked_while_the_rules_brake():
    """A slow_model window over a rule brake: 25 of 33 frames 'skipped' (not asked) counted as the model's
    misses, and the node, right, failed "model_state 'late' not reported"; cpu_load's share the same."""
    frames = [FrameRec(i, i, 1.0 + i / 30, 1.0 + i / 30) for i in range(180)]

    def decided(i: int, late: str) -> DecisionRec:
        t = 1.0 + i / 30
        if 1.5 <= t < 2.5:  # the rules brake: the model is not asked
            return _decision(t + 0.002, source="rules", model_state="skipped", decision="brake")
        return _decision(t + 0.045, source="fallback", model_state=late) if late else _decision(t + 0.005)

    slow = F.SlowModel()
    slow.start = 1.0
    slow.info.update(set="ok", reset="ok")
    rec = _rec(frames=frames, decisions={i: [decided(i, "late" if 1.0 <= 1.0 + i / 30 < 2.5 else "")]
                                         for i in range(180)})
    res = slow.check(rec)
    assert res.passed, res.failures
    assert any("model_state late (" in o and "not asked: the rules braked" in o for o in res.observed), res.observed
    rec = _rec(frames=frames, decisions={i: [decided(i, "")] for i in range(180)})  # the slowed model on time
    assert any("decided by the slowed model on time" in f for f in slow.check(rec).failures)
    load = F.CpuLoad()
    load.start = 1.0
    load.info.update(exit_status=0, cpu_busy=0.97)
    rec = _rec(frames=frames, decisions={i: [decided(i, "")] for i in range(180)})
    assert load.check(rec).passed, load.check(rec).failures


def test_every_frame_of_a_run_is_held_to_its_deadline_not_only_those_in_fault_windows():
    """Lead-in, the gaps between faults and the tail were never judged: all-late runs passed."""
    from tiny_node.hil.harness import global_failures

    rec = _rec()
    rec.frames = [FrameRec(i, 10_000 + i, i / 30, i / 30) for i in range(300)]
    rec.decisions = {10_000 + i: [_decision(i / 30 + 0.5, latency=500.0)] for i in range(300)}
    assert any("whole run: 300/300 decisions after their deadline" in f for f in global_failures(rec))
    on_time = _rec(frames=rec.frames, decisions={10_000 + i: [_decision(i / 30 + 0.005)] for i in range(300)})
    assert global_failures(on_time) == []


def test_the_harness_clock_caps_every_decision_and_a_stall_excuses_only_what_it_overlapped():
    from tiny_node.hil.stallprobe import Stall

    frames = [FrameRec(i, i, i / 30, 1.0 + i / 30) for i in range(60)]
    decisions = {i: [_decision(1.0 + i / 30 + 0.005)] for i in range(60)}
    for i in range(0, 60, 10):  # 6 of 60 (within the late share) received 1.5 s after publish
        decisions[i] = [_decision(1.0 + i / 30 + 1.5)]
    fails, _ = timing_failures(match(frames, decisions)[0])
    assert any("received 1500.0 ms after its frame was published" in f for f in fails)

    sent = 1.0 + 4 / 30
    decisions = {i: [_decision(1.0 + i / 30 + 0.01)] for i in range(60)}
    decisions[4] = [_decision(sent + 0.16, latency=150.0)]  # the node itself 100 ms over
    results = match(frames, decisions)[0]
    assert timing_failures(results, stalls=[Stall(sent - 0.2, sent)])[0]  # a stall before the frame
    assert timing_failures(results, stalls=[Stall(sent + 0.159, sent + 0.4)])[0]  # 1 ms of its life
    assert not timing_failures(results, stalls=[Stall(sent + 0.01, sent + 0.15)])[0]  # 140 ms of it


def test_a_decision_without_a_readable_latency_fails_instead_of_hiding_the_late_ones():
    frames = [FrameRec(i, i, i / 30, 1.0 + i / 30) for i in range(20)]
    decisions = {i: [_decision(1.0 + i / 30 + 0.01)] for i in range(20)}
    decisions[0] = [DecisionRec(1.01, {"latency_ms": "nan", "deadline_ms": "50.0", "source": "model"})]
    decisions[5] = [_decision(1.0 + 5 / 30 + 0.01, latency=250.0)]
    fails, _ = timing_failures(match(frames, decisions)[0])
    assert any("without a readable latency_ms" in f for f in fails)
    assert any("200.0 ms after its deadline" in f for f in fails)


def test_a_run_wide_fault_leaves_no_clean_episode_in_its_run():
    """The corrupt bundle holds from start to end: a rules-only collision there is not a clean-scenario result."""
    from tiny_node.hil.report import outcome

    fault = F.FAULTS["bundle_corrupt"]()
    assert fault.run_wide and not F.FAULTS["camera_dropout"]().run_wide
    rec = _rec(group="bundle", episodes=[{"t_start": 0.0, "t_end": 3.5, "collided": True, "impact_speed_kmh": 21.0,
                                          "min_ttc_s": 0.0}])
    fault.start = 4.0
    rec.windows[fault.name] = fault.window
    assert outcome([rec])["clean"]["episodes"] == 1  # what the window alone said
    rec.run_wide.append(fault.name)
    assert outcome([rec])["clean"]["episodes"] == 0


def test_a_hang_must_be_found_within_the_nodes_hang_timeout():
    fault = F.FAULTS["worker_sigstop"]()
    fault.start = 10.0
    fault.info["pid"] = 123
    frames = [FrameRec(i, i, 9.0 + i / 30, 9.0 + i / 30) for i in range(200)]
    decisions = {i: [_decision(9.0 + i / 30 + 0.045, source="fallback", model_state="late")] for i in range(60)}
    decisions |= {i: [_decision(9.0 + i / 30 + 0.005)] for i in range(60, 200)}

    def run(found_at: float) -> list[str]:
        rec = _rec(frames=frames, decisions=decisions, diag_period_s=0.2, model_hang_timeout_ms=500.0)
        rec.diags += [DiagRec(9.5, "tiny_node: model", 0, "ready", {"restarts": "0"}),
                      DiagRec(found_at, "tiny_node: model", 2, "restarting", {"restarts": "0"}),
                      DiagRec(found_at + 1.0, "tiny_node: model", 1, "starting", {"restarts": "1"})]
        return fault.check(rec).failures

    assert not [f for f in run(10.7) if "hang was found" in f]
    assert any("hang was found 3.60 s after the signal" in f for f in run(13.6))


def test_a_decision_sent_twice_does_not_stand_in_for_a_repeated_frame_never_decided():
    """Frozen camera: three frames of one stamp; the node answered cycle 7 twice and never answered the third."""
    frames = [FrameRec(i, 500, 1.0 + i / 30, 1.0 + i / 30) for i in range(3)]
    decisions = {500: [_decision(1.005 + i / 30, frame_id=str(7 + min(i, 1))) for i in range(2)]
                 + [_decision(1.04, frame_id="8")]}
    results, unknown = match(frames, decisions)
    assert unknown == 0 and sum(r.decision is None for r in results) == 1 and sum(r.duplicates for r in results) == 1


WRAPPER = '''"""Runs its arguments as a child and waits, as `ros2 run` does (ros2run.api.run_executable)."""
import signal
import subprocess
import sys
import time

child = subprocess.Popen(sys.argv[1:])
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda n, _f: child.send_signal(n))
sys.exit(child.wait())
'''


def test_the_node_pid_is_the_reported_one_only_under_the_started_process(tmp_path):
    from tiny_node.hil.harness import node_pid

    (tmp_path / "wrapper.py").write_text(WRAPPER)
    wrapper = subprocess.Popen([sys.executable, str(tmp_path / "wrapper.py"), sys.executable, "-c",
                                "import time; time.sleep(30)"])
    try:
        child = None
        for _ in range(100):
            kids = Path(f"/proc/{wrapper.pid}/task/{wrapper.pid}/children").read_text().split()
            if kids:
                child = int(kids[0])
                break
            time.sleep(0.05)
        assert child is not None
        notes: list[str] = []
        assert node_pid(wrapper.pid, child, notes.append) == child
        assert f"pid {child} under the started command's pid {wrapper.pid}" in notes[-1]
        # a pid that is not the started process's descendant (another pid namespace) is not taken
        assert node_pid(wrapper.pid, os.getpid(), notes.append) == wrapper.pid
        assert "not the started process" in notes[-1]
        assert node_pid(wrapper.pid, None, notes.append) == wrapper.pid and len(notes) == 2
    finally:
        wrapper.terminate()
        wrapper.wait(10)


@pytest.mark.ros
@pytest.mark.slow
def test_a_node_started_by_a_wrapper_is_measured_and_its_worker_faulted(tmp_path):
    """``--node-cmd "ros2 run ..."`` runs the node as a child of ``ros2``: the worker faults need
    the node's pid, which the node reports in /diagnostics, not the wrapper's."""
    pytest.importorskip("rclpy")
    (tmp_path / "wrapper.py").write_text(WRAPPER)
    cmd = f"{sys.executable} {tmp_path / 'wrapper.py'} {sys.executable} -m tiny_node run"
    code, summary, log = _run_hil(tmp_path / "out", "--node-cmd", cmd, *_source_args(), "--lead-in", "3",
                                  "--faults", "worker_sigkill", timeout=200)
    assert "the node runs as pid" in log, log[-2000:]
    (check,) = summary["faults"]
    assert not check["skipped"] and check["passed"], check
    assert code == 0, log[-3000:]


def test_a_diagnostic_state_shorter_than_the_diagnostics_period_may_go_unsampled():
    """Attached to a node publishing diagnostics at 1 Hz, a 0.85 s range fault can fall between
    two samples: noted, not failed; at the harness's 0.2 s period it must be seen."""
    from tiny_node.hil.faults import _diag_level
    from tiny_node.hil.record import CheckResult

    def failures(period: float, lasts: float) -> tuple[list[str], list[str]]:
        rec = _rec(diag_period_s=period)
        rec.diags += [DiagRec(9.0, "tiny_node: sensors", 0, "ok", {}), DiagRec(11.0, "tiny_node: sensors", 0, "ok", {})]
        res = CheckResult("range_nan", "main", "", False)
        _diag_level(rec, res, "sensors", 2, t_from=10.0, t_to=10.0 + lasts + period + 0.1, what="range fault",
                    lasts_s=lasts)
        return res.failures, res.not_judged

    fails, seen = failures(1.0, 0.85)
    assert not fails and "not sampled: it lasted 0.85 s, diagnostics every 1.0 s" in seen[0]
    fails, _ = failures(0.2, 0.85)
    assert fails and "no 'sensors' diagnostic at level 2" in fails[0]


def test_bundle_corrupt_copies_the_shipped_bundle_with_its_graphs_in_a_subfolder(tmp_path):
    """The shipped bundle keeps its graphs in onnx/: bundle_corrupt must find one (it raised
    IndexError, and `hil --model default` lost every result of the run)."""
    from tiny_node.hil.harness import corrupt_copy
    from tiny_node.model.bundle import DEFAULT_BUNDLE_DIR, BundleError, load_bundle

    if not (DEFAULT_BUNDLE_DIR / "manifest.yaml").is_file():
        pytest.skip("no shipped bundle")
    bad = corrupt_copy(DEFAULT_BUNDLE_DIR, tmp_path / "corrupt")
    with pytest.raises(BundleError, match="checksum mismatch"):
        load_bundle(bad)
    load_bundle(DEFAULT_BUNDLE_DIR)  # the original untouched


# --- review D (2026-12-06): a model that never ran, checks never exercised, the node's own error ----
def _checksum_broken_bundle(tmp_path: Path) -> Path:
    import shutil

    from tiny_node.model.bundle import DEFAULT_BUNDLE_DIR

    if not (DEFAULT_BUNDLE_DIR / "manifest.yaml").is_file():
        pytest.skip("no shipped bundle")
    bad = tmp_path / "mod_bundle"
    shutil.copytree(DEFAULT_BUNDLE_DIR, bad)
    graph = sorted(bad.rglob("*.onnx"))[0]
    graph.write_bytes(graph.read_bytes() + b"x")  # no longer its manifest's SHA-256
    return bad


def test_a_bundle_that_fails_its_checksum_is_refused_before_anything_starts(tmp_path, capsys, monkeypatch):
    """The node ran such a bundle on the rules alone, said so only in its log, and the run passed
    ("PASS: 318/318 frames decided", report "model: mod_bundle")."""
    from tiny_node.cli import main
    from tiny_node.hil import harness

    def run_all(cfg, faults, *, clean_s=0.0):
        raise AssertionError("a node run was started")

    monkeypatch.setattr(harness, "run_all", run_all)
    bad = _checksum_broken_bundle(tmp_path)
    args = ["hil", "--out", str(tmp_path / "out"), "--scenario", str(CI_SCENARIO), "--faults", "range_nan"]
    assert main([*args, "--model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "manifest expects sha256" in err and "file has" in err, err
    assert ".onnx" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    # --model does nothing to a node already running: refused, not ignored (and named in the report)
    assert main([*args, "--attach", "--model", "default"]) == 2
    assert "no effect on an attached node" in capsys.readouterr().err
    # nor past the check as a parameter (ignored beside --model, unverified without it)
    assert main([*args, "--model", "none", "--param", f"model_bundle:={bad}"]) == 2
    assert "--param model_bundle: give the bundle with --model" in capsys.readouterr().err


def test_without_message_info_a_decisions_brake_is_matched_by_receipt():
    """The ``brake`` topic, the one the vehicle acts on, was never checked: a node with it remapped away
    passed, exit 0, its drives colliding at full speed (review 2026-12-08). Where rclpy gives no message
    info (Humble), each decision (with a frame or without) wants a ``brake`` message of its value within
    BRAKE_PAIR_S."""
    from tiny_node.hil.harness import BRAKE_PAIR_S, brake_failures

    def run(brakes):
        rec = _rec(warmup_s=1.0, duration_s=6.0, brakes=[BrakeRec(*b) for b in brakes] if brakes is not None else None)
        rec.frames = [FrameRec(i, 10_000 + i, i / 30, i / 30) for i in range(120)]
        rec.decisions = {10_000 + i: [_decision(i / 30 + 0.005, decision="brake" if i >= 60 else "no_brake")]
                         for i in range(120)}
        rec.frameless = [DecisionRec(4.5, {"frame": "none (camera timeout)", "decision": "brake"})]
        return rec

    paired = [(i / 30 + 0.004, i >= 60) for i in range(120)] + [(4.4999, True)]
    assert run(paired).brake_pairing == "receipt" and run(None).brake_pairing is None
    assert brake_failures(run(paired)) == [] and global_failures(run(paired)) == []
    assert brake_failures(run(None)) == []  # a record made without the feeder: not recorded, not judged
    [dead] = global_failures(run([]))
    assert dead == ("91 of 91 decisions without a `brake` message of their value within 1 s (first at t=1.00 s, "
                    "no_brake; 0 `brake` messages in all): the topic the vehicle acts on, remapped away or "
                    "not published?"), dead
    [never] = brake_failures(run([(at, False) for at, _ in paired]))  # a brake output stuck at false
    assert never.startswith("61 of 91 decisions without") and "first at t=2.00 s, brake;" in never, never
    # in the warm-up, or the last BRAKE_PAIR_S before the record's end (collected apart): not judged
    assert brake_failures(run([b for b in paired if b[0] >= 0.9])) == []
    late = run(paired)
    late.frameless.append(DecisionRec(6.0 - BRAKE_PAIR_S + 0.1, {"frame": "none (camera timeout)", "decision": "brake"}))
    assert brake_failures(late) == []
    assert brake_failures(run([b for b in paired if b[0] < 4.45]))[0].startswith("1 of 91 decisions without")
    one_lost = [b for b in paired if abs(b[0] - 3.004) > 1e-6]
    assert brake_failures(run(one_lost))[0].startswith("1 of 91 decisions without")


NODE_DECISION, NODE_BRAKE = b"node/decision", b"node/brake"


def _sequenced_run(brakes: list[BrakeRec]) -> RunRecord:
    """120 frames at 30 Hz, braking from frame 60, and one decision without a frame at 4.5 s: each
    decision published by the node's decision publisher as message i + 1, 1 ms after its brake."""
    rec = _rec(warmup_s=1.0, duration_s=6.0, brakes=brakes)
    rec.frames = [FrameRec(i, 10_000 + i, i / 30, i / 30) for i in range(120)]
    sent = [i / 30 for i in range(120)] + [4.5]
    for i, t in enumerate(sent):
        d = _decision(t + 0.005, decision="brake" if t >= 2.0 else "no_brake")
        d.published = Published(NODE_DECISION, i + 1, int((t + 0.003) * 1e9))
        if i < 120:
            rec.decisions[10_000 + i] = [d]
        else:
            d.values["frame"] = "none (camera timeout)"
            rec.frameless.append(d)
    return rec


def _node_brakes(delay_s: float = 0.0) -> list[BrakeRec]:
    """The node's brake message of each decision of :func:`_sequenced_run`, published 1 ms before it."""
    sent = [i / 30 for i in range(120)] + [4.5]
    return [BrakeRec(t + 0.004 + delay_s, t >= 2.0, Published(NODE_BRAKE, i + 1, int((t + 0.002 + delay_s) * 1e9)))
            for i, t in enumerate(sent)]


def test_a_decisions_brake_is_the_one_of_its_sequence_number_published_before_it():
    """Matched by receipt within a second, a brake 0.8 s late passed, and so did extra brake messages of
    the other value (review 2026-12-08): with the message info (rclpy >= Iron) each decision goes with the
    brake of its publication sequence number from the brake publisher made with it, published no later,
    of its value; a brake message that answers no decision fails the run, as does a second publisher."""
    from tiny_node.hil.harness import brake_failures

    good = _sequenced_run(_node_brakes())
    assert good.brake_pairing == "sequence"
    assert brake_failures(good) == [] and global_failures(good) == []
    # the receipt order does not matter: the harness's executor may take the brake after its decision
    swapped = _sequenced_run([BrakeRec(b.received_at + 0.002, b.value, b.published) for b in _node_brakes()])
    assert brake_failures(swapped) == []
    # a brake published 0.8 s after its decision (within the old second): the vehicle acts late
    [late] = brake_failures(_sequenced_run(_node_brakes(delay_s=0.8)))
    assert late.startswith("91 of 91 `brake` messages published after their decision (first at t=1.00 s, "
                           "799 ms after; the node publishes the brake first)"), late
    # an extra brake message of the other value after each, from the node's own publisher: its sequence
    # numbers run twice as fast, so its decisions find the wrong ones
    doubled = []
    for b in _node_brakes():
        assert b.published is not None
        n = 2 * b.published.seq - 1
        doubled += [BrakeRec(b.received_at, b.value, Published(NODE_BRAKE, n, b.published.source_ns)),
                    BrakeRec(b.received_at + 1e-4, not b.value, Published(NODE_BRAKE, n + 1, b.published.source_ns + 1))]
    fails = brake_failures(_sequenced_run(doubled))
    assert any(f.startswith("45 of 91 decisions with a `brake` message of the other value") for f in fails), fails
    assert any(f.startswith("121 `brake` messages that answer no decision") for f in fails), fails
    # ... or from another publisher: something else commands the vehicle
    other = [BrakeRec(b.received_at + 1e-4, not b.value, Published(b"relay", b.published.seq, b.published.source_ns))
             for b in _node_brakes() if b.published is not None]
    fails = brake_failures(_sequenced_run(_node_brakes() + other))
    assert fails[0] == ("`brake` came from 2 publishers, decisions from 1: something besides the node commands "
                        "the vehicle's brake"), fails
    assert "90 `brake` messages that answer no decision (first at t=1.04 s, true)" in fails[1], fails
    # a brake output stuck at false; one brake message lost; none at all
    stuck = [BrakeRec(b.received_at, False, b.published) for b in _node_brakes()]
    [f] = brake_failures(_sequenced_run(stuck))
    assert f == "61 of 91 decisions with a `brake` message of the other value (first at t=2.00 s: brake, brake false)"
    lost = [b for b in _node_brakes() if b.published is not None and b.published.seq != 90]
    [f] = brake_failures(_sequenced_run(lost))
    assert f.startswith("1 of 91 decisions without their `brake` message (first at t=2.97 s, brake; 120 `brake`"), f
    [f] = brake_failures(_sequenced_run([]))
    assert f.startswith("91 of 91 decisions without their `brake` message"), f
    # one phantom brake between two decisions, from the node's publisher (a number no decision has)
    phantom = [*_node_brakes(), BrakeRec(3.02, True, Published(NODE_BRAKE, 500, int(3.02e9)))]
    assert brake_failures(_sequenced_run(phantom)) == [
        "1 `brake` messages that answer no decision (first at t=3.02 s, true): the vehicle was commanded what no "
        "decision said"]
    # a brake in the warm-up or after the last judged decision: not judged
    early = [*_node_brakes(), BrakeRec(0.5, True, Published(NODE_BRAKE, 501, int(0.5e9)))]
    assert brake_failures(_sequenced_run(early)) == []
    # Jazzy's message info has no publisher gid: still by sequence, unless a number repeats (a node
    # restarted mid-run, a second publisher): then by receipt, as without message info
    def anonymous(rec: RunRecord) -> RunRecord:
        for d in [*rec.frameless, *(d for ds in rec.decisions.values() for d in ds)]:
            assert d.published is not None
            d.published = Published(b"", d.published.seq, d.published.source_ns)
        rec.brakes = [BrakeRec(b.received_at, b.value, Published(b"", b.published.seq, b.published.source_ns))
                      for b in rec.brakes or [] if b.published is not None]
        return rec

    jazzy = anonymous(_sequenced_run(_node_brakes()))
    assert jazzy.brake_pairing == "sequence" and brake_failures(jazzy) == []
    [late] = brake_failures(anonymous(_sequenced_run(_node_brakes(delay_s=0.8))))
    assert "published after their decision" in late
    restarted = anonymous(_sequenced_run(_node_brakes()))
    assert restarted.brakes is not None
    restarted.brakes.append(BrakeRec(3.5, True, Published(b"", 1, int(3.5e9))))
    assert restarted.brake_pairing == "receipt"


def _model_run(states: list[str], diag_state: str | None = None, **kw) -> RunRecord:
    rec = _rec(**kw)
    rec.warmup_s = 1.0
    rec.frames = [FrameRec(i, i, i / 30, 1.0 + i / 30) for i in range(90)]
    rec.decisions = {i: [_decision(1.0 + i / 30 + 0.008, model_state=states[i % len(states)])] for i in range(90)}
    if diag_state is not None:
        err = "files.vru_detector: checksum mismatch for x.onnx" if diag_state == "failed" else ""
        rec.diags.append(DiagRec(3.5, "tiny_node: model", 2 if diag_state == "failed" else 0, diag_state,
                                 {"state": diag_state, "last_error": err}))
    return rec


def test_a_run_whose_model_never_worked_fails_with_the_reason():
    failed = global_failures(_model_run(["unavailable", "skipped"], "failed"))
    assert len(failed) == 1 and "model failed" in failed[0] and "checksum mismatch for x.onnx" in failed[0], failed
    from tiny_node.hil.harness import model_failures

    # no diagnostic seen (an attached node at 1 Hz, a short run): the decisions say it
    never = model_failures(_model_run(["unavailable", "unavailable", "skipped"]))
    assert len(never) == 1 and "answered no frame in time" in never[0] and "unavailable 40" in never[0], never
    # the model answered in time once, the run has no model, the corrupt-bundle run, the rules braked throughout
    assert model_failures(_model_run(["unavailable", "on_time"] * 45, "ready")) == []
    assert model_failures(_model_run(["unavailable"], has_model=False)) == []
    assert model_failures(_model_run(["unavailable"], "failed", model_expected=False)) == []
    assert model_failures(_model_run(["skipped"])) == []


def test_a_run_whose_model_was_always_late_fails():
    """``--param test_hook_model_delay_ms:=200.0 --faults none`` passed: late 91, skipped 29, no on_time.

    The watchdog closes every frame the model was asked as ``late`` at its publish time, answered
    or not (the worker had 0 results, 151 cancels), so ``late`` shows no answer that decided.
    """
    from tiny_node.hil.harness import model_failures

    rec = _model_run(["late", "late", "unavailable", "skipped"], "ready")
    rec.diags[-1].values.update({"results": "0", "cancels": "151", "errors": "0"})
    failed = global_failures(rec)
    assert len(failed) == 1 and "answered no frame in time" in failed[0], failed
    assert "late 30, unavailable 15, skipped 15" in failed[0] and "results 0, cancels 151" in failed[0], failed
    # ... but not one in the warm-up only (DDS matching, not judged)
    rec = _model_run(["on_time"] + ["late"] * 89, "ready")
    assert len(model_failures(rec)) == 1


def test_a_run_whose_model_was_mostly_late_outside_the_faults_fails():
    """The first fix took one frame in time for a tested model: 2 of 120 passed (review). Outside the faults'
    windows and recovery the model must be in time for at least half the frames it was asked; the worst
    model status is quoted (the last, once the frames stopped, said "ready")."""
    from tiny_node.hil.harness import model_failures
    from tiny_node.hil.record import Window

    rec = _model_run(["late"] * 89 + ["on_time"], "ready")
    rec.diags.insert(0, DiagRec(2.0, "tiny_node: model", 1, "the model answered 1 of the 30 frames it was asked "
                                "in time since the last report (29 late, 0 failed): the rules decided the rest", {}))
    (failed,) = model_failures(rec)
    assert "answered 1 of the 60 frames it was asked in time outside the faults' windows" in failed, failed
    assert "its model diagnostic: the model answered 1 of the 30 frames" in failed, failed
    mostly = ["late"] * 75 + ["on_time"] * 15  # frames 0..89 at t = i / 30: late until 2.5 s
    assert len(model_failures(_model_run(mostly, "ready"))) == 1
    rec = _model_run(mostly, "ready")
    rec.windows["slow_model"] = Window(1.0, 2.0, 0.5)  # the late frames were the fault's
    assert model_failures(rec) == []
    assert model_failures(_model_run(["late", "on_time"] * 45, "ready")) == []  # half in time


def test_a_worker_restarting_where_no_fault_was_injected_fails_and_a_faults_own_error_is_not_quoted():
    """A worker SIGKILLed 5 times outside any fault passed (its frames unavailable, which the share does not
    count); the failure quoted a fault's own injected ERROR, and the worker's counts of a mid-run status
    (review of the second fix)."""
    from tiny_node.hil.harness import model_failures
    from tiny_node.hil.record import Window

    def status(at: float, restarts: int, level: int = 0, message: str = "ready", **kw: str) -> DiagRec:
        return DiagRec(at, "tiny_node: model", level, message, {"state": "ready", "restarts": str(restarts), **kw})

    rec = _model_run(["on_time", "unavailable", "unavailable"])
    rec.diags = [status(1.2, 0), status(1.6, 0, 2, "restarting"), status(1.8, 1, 2, "the worker restarted 1 "
                 "time(s) since the last report, ready again"), status(2.4, 1)]
    (failed,) = model_failures(rec)
    assert failed.startswith("the model worker restarted outside every fault's window and recovery (1 by 1.8 s)")
    assert "its model diagnostic: restarting" in failed, failed
    rec.windows["worker_sigkill"] = Window(1.5, 1.6, 0.5)  # the fault's own restart
    assert model_failures(rec) == []
    # the worst status quoted is one outside the faults; the worker's counts are the last status's
    rec = _model_run(["late"])
    rec.windows["worker_sigkill"] = Window(1.5, 1.6, 0.5)
    rec.diags = [status(1.6, 0, 2, "restarting"), status(2.5, 1, 1, "the model answered 0 of the 6 frames it was "
                 "asked in time since the last report (6 late, 0 failed): the rules decided the rest"),
                 status(3.5, 1, results="0", cancels="150", errors="0")]
    (failed,) = model_failures(rec)
    assert "results 0, cancels 150, errors 0" in failed, failed
    assert "its model diagnostic: the model answered 0 of the 6 frames" in failed, failed


def test_a_check_that_did_not_judge_everything_says_so_on_every_report(tmp_path):
    """``range_stuck PASS frozen at inf: not judged as stuck`` read as a tested check on the terminal."""
    pytest.importorskip("matplotlib")
    from tiny_node.hil.faults import _diag_level
    from tiny_node.hil.record import CheckResult
    from tiny_node.hil.report import console_table, write_report

    stuck = F.RangeFault("stuck")
    stuck.start = 2.0
    stuck.on_sensor(_Ctx(), "range", 1, math.inf)  # no object in range while it lasts
    run = _rec()
    run.frames = [FrameRec(i, i, i / 30, 1.0 + i / 30) for i in range(210)]
    run.decisions = {i: [_decision(1.0 + i / 30 + 0.008, rules_reason="clear: nothing within max_range 150.00 m")]
                     for i in range(210)}
    gap = stuck.check(run)
    assert gap.passed and gap.status == "PASS (known gap)" and gap.not_judged, gap
    unsampled = CheckResult("range_nan", "main", "", True)
    rec = _rec(diag_period_s=1.0)
    _diag_level(rec, unsampled, "sensors", 2, t_from=10.0, t_to=11.2, what="range fault", lasts_s=0.85)
    assert unsampled.status == "PASS (not all judged)"
    full = CheckResult("range_posinf", "main", "", True, observed=["15/15 clear"])
    lines = dict(zip(("range_stuck", "range_nan", "range_posinf"),
                     console_table([gap, unsampled, full]).splitlines(), strict=True))
    assert "PASS (known gap)" in lines["range_stuck"] and "known gap: no object in range" in lines["range_stuck"]
    assert "PASS (not all judged)" in lines["range_nan"]
    assert "not judged: 'sensors' level 2 not sampled" in lines["range_nan"]
    assert lines["range_posinf"].split()[1] == "PASS" and "15/15 clear" in lines["range_posinf"]
    summary = write_report(tmp_path, [_rec()], [gap, unsampled, full], {"source": "test"}, {"main": []})
    assert summary["passed"]  # what passes overall does not change
    assert summary["not_fully_judged"] == ["range_stuck", "range_nan"]
    assert [c["status"] for c in summary["faults"]] == ["PASS (known gap)", "PASS (not all judged)", "PASS"]
    md = (tmp_path / "report.md").read_text()
    assert "| range_nan | main | PASS (not all judged) |" in md and "not judged: 'sensors' level 2" in md


def test_worker_faults_on_an_attached_node_without_a_model_name_the_node_not_model():
    """``worker_sigkill SKIP needs a model bundle (--model)``: --model has no effect on an attached node."""
    ctx = _Ctx()
    ctx.has_model, ctx.attach, ctx.node_pid = False, True, 4242
    why = F.make_faults(["worker_sigkill"])[0].skip_reason(ctx)
    assert "attached node runs without a model" in why and "--model" not in why, why
    ctx.attach = False
    assert "--model" in F.make_faults(["worker_sigkill"])[0].skip_reason(ctx)
    ctx.has_model, ctx.attach, ctx.node_pid = True, True, None
    assert "--node-pid" in F.make_faults(["worker_sigkill"])[0].skip_reason(ctx)


def test_a_node_that_exits_at_once_has_its_own_error_line_in_the_failure(tmp_path, monkeypatch):
    """``--param deadline_mss:=40.0``: the failure said "exited with status 2"; the node's line naming the
    parameter and the one meant was only in node-main.log."""
    import types

    from tiny_node.hil import harness

    said = ("tiny_node: -p: unknown parameter 'deadline_mss' (did you mean deadline_ms?) (known: "
            + ", ".join(f"param_{i}" for i in range(60)) + ")")

    class Node:
        def __init__(self, env, **kw) -> None:
            self.proc = types.SimpleNamespace(returncode=2)
            self.pid = 4242

        def start(self):
            return self

        def alive(self) -> bool:
            return False

        def output(self) -> str:
            return f"[INFO] [1.0] [tiny_node]: starting\n{said}\n\n"

        def stop(self) -> int:
            return 2

    class Feeder:
        def __init__(self, **kw) -> None:
            pass

        def wait_for_node(self, timeout_s: float, alive=None) -> bool:
            return False

        def close(self) -> None:
            pass

    monkeypatch.setattr(harness, "NodeProcess", Node)
    monkeypatch.setitem(sys.modules, "tiny_node.tools.feeder", types.SimpleNamespace(Feeder=Feeder))
    cfg = harness.HarnessConfig(out_dir=tmp_path, stream_factory=lambda: None, progress=lambda s: None,
                                env={"ROS_DOMAIN_ID": "18"}, node_params={"deadline_mss": 40.0})
    records, checks = harness.run_all(cfg, [])
    assert records == [] and len(checks) == 1 and not checks[0].passed
    why = checks[0].failures[0]
    assert why.startswith("hil main: the node exited with status 2 before it came up on ROS_DOMAIN_ID=18: "), why
    assert "unknown parameter 'deadline_mss' (did you mean deadline_ms?)" in why and why.endswith("..."), why
    assert len(why) < 400
    # a traceback's last line, an rclpy ERROR; a log saying nothing of an error: its last line only if it exited
    assert harness.node_error("Traceback (most recent call last):\n  File x\nValueError: bad\n") == "ValueError: bad"
    assert harness.node_error("[ERROR] [1.0] [tiny_node]: no\n[INFO] [2.0] [tiny_node]: bye\n") == \
        "[ERROR] [1.0] [tiny_node]: no"
    assert harness.node_error("[INFO] a\n[INFO] b\n") == "[INFO] b"
    assert harness.node_error("[INFO] a\n[INFO] b\n", fallback_last=False) == ""


@pytest.mark.parametrize(("reason", "passed"), [
    ("clear: nothing within max_range 150.00 m", True),
    ("clear: no object within range", True),  # a recorded sensor's max_range 0 or NaN: none
    ("clear: object at 20.0 m not closing (0.0 m/s)", False),
])
def test_range_posinf_is_judged_on_either_clear_reason(reason, passed):
    posinf = F.RangeFault("+inf")
    posinf.start = 2.0
    run = _rec()
    run.frames = [FrameRec(i, i, i / 30, 1.0 + i / 30) for i in range(210)]
    run.decisions = {i: [_decision(1.0 + i / 30 + 0.008, rules_reason=reason)] for i in range(210)}
    assert posinf.check(run).passed is passed


# --- user-acceptance review of `tiny-node hil` (2027-01): findings 1-11 -----------------------------
def _free_pid() -> int:
    """A pid no process has on this host."""
    pid = 4_000_000
    while Path(f"/proc/{pid}").exists():
        pid -= 1
    return pid


def test_an_attached_node_pid_that_is_not_the_node_is_refused(tmp_path, capsys, monkeypatch):
    """``--attach --node-pid PID`` with a wrong pid was accepted with a console warning only: another
    node's model worker was SIGKILLed, and a `sleep`'s memory was reported as the node's (PASS, rc 0)."""
    from tiny_node.cli import main
    from tiny_node.hil import harness

    sleeper = subprocess.Popen(["sleep", "30"])
    # stands in for another tiny_node process (its command line names it)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "tiny_node", "run"])
    try:
        for _ in range(100):  # until the child has exec'd
            if b"tiny_node" in Path(f"/proc/{other.pid}/cmdline").read_bytes():
                break
            time.sleep(0.02)
        assert "not a tiny_node process" in harness.attached_pid_problem(sleeper.pid)
        assert "no such process" in harness.attached_pid_problem(_free_pid())
        assert harness.attached_pid_problem(other.pid) == ""
        notes: list[str] = []
        # the node reports a pid that runs here (the same pid namespace) and is not the given one
        with pytest.raises(harness.NodePidError) as err:
            harness.attached_pid(other.pid, os.getpid(), notes.append)
        assert f"--node-pid {other.pid}" in str(err.value) and f"reports pid {os.getpid()}" in str(err.value)
        with pytest.raises(harness.NodePidError, match="not a tiny_node process"):
            harness.attached_pid(sleeper.pid, sleeper.pid, notes.append)
        assert harness.attached_pid(other.pid, other.pid, notes.append) == other.pid and not notes
        # only a reported pid that does not exist here (another pid namespace) is taken, with a warning
        gone = _free_pid()
        assert harness.attached_pid(other.pid, gone, notes.append) == other.pid
        assert notes[-1].startswith("warning:") and "another pid namespace" in notes[-1]
        # refused before anything starts (a `sleep`), or once the node answered (exit 2, one line)
        args = ["hil", "--out", str(tmp_path), "--scenario", str(CI_SCENARIO), "--attach", "--faults", "worker_sigkill"]
        assert main([*args, "--node-pid", str(sleeper.pid)]) == 2
        err_text = capsys.readouterr().err
        assert f"--node-pid {sleeper.pid} is not a tiny_node process" in err_text and "Traceback" not in err_text

        def run_all(cfg, faults, *, clean_s=0.0):
            harness.attached_pid(cfg.node_pid, os.getpid(), print)

        monkeypatch.setattr(harness, "run_all", run_all)
        assert main([*args, "--node-pid", str(other.pid)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and str(other.pid) in lines[0] and str(os.getpid()) in lines[0], lines
    finally:
        for p in (sleeper, other):
            p.kill()
            p.wait(10)


def test_a_wrapper_with_the_node_under_it_is_a_valid_node_pid_and_a_mention_is_not(tmp_path):
    """The fix's review: a start script or bringup launch file (no "tiny_node" in its own command line)
    was refused before anything started, though the node runs under it; and a command that merely
    mentioned a package file (``sh -c "sleep 20 # vim tiny_node/ros/node.py"``) was taken."""
    from tiny_node.hil import harness

    script = tmp_path / "start_vehicle.sh"
    script.write_text(f"#!/bin/sh\n{sys.executable} -c 'import time; time.sleep(30)' tiny_node run\n")
    script.chmod(0o755)
    wrapper = subprocess.Popen([str(script)])
    mention = subprocess.Popen(["sh", "-c", "sleep 30 # vim tiny_node/ros/node.py"])
    try:
        for _ in range(100):  # until the script's child has exec'd
            if any(harness.is_tiny_node_argv(harness._argv(k) or []) for k in harness._children(wrapper.pid)):
                break
            time.sleep(0.02)
        assert harness.attached_pid_problem(wrapper.pid) == ""
        assert "not a tiny_node process" in harness.attached_pid_problem(mention.pid)
        node = next(k for k in harness._children(wrapper.pid) if harness.is_tiny_node_argv(harness._argv(k) or []))
        notes: list[str] = []
        assert harness.attached_pid(wrapper.pid, node, notes.append) == node  # the node under it is measured
        # a reported pid that is some other process here: the node's own pid in a container
        with pytest.raises(harness.NodePidError, match="another pid namespace, a container"):
            harness.attached_pid(wrapper.pid, mention.pid, notes.append)
    finally:
        for k in harness._children(wrapper.pid):  # the script's child outlives the script
            os.kill(k, signal.SIGKILL)
        for p in (wrapper, mention):
            p.kill()
            p.wait(10)


def test_an_attached_node_is_alive_by_its_pid_when_known():
    """A live node (deadline 1000 ms) was reported as "the node process exited": its last frames
    were not decided within the drain, and --node-pid was ignored."""
    from tiny_node.hil.harness import attached_alive

    rec = _rec(deadline_ms=1000.0, duration_s=20.0)
    rec.frames = [FrameRec(i, i, i / 30, i / 30) for i in range(570)]
    rec.decisions = {i: [_decision(i / 30 + 0.9)] for i in range(500)}  # the last 70 frames undecided
    assert attached_alive(rec, os.getpid())
    done = subprocess.Popen(["true"])
    done.wait(10)
    assert not attached_alive(rec, done.pid)
    # without a pid: what the node still sent (a decision 2.6 s before the end) shows it alive
    rec.decisions[600] = [_decision(17.4)]
    assert attached_alive(rec, None)
    assert not attached_alive(_rec(duration_s=20.0, decisions={1: [_decision(3.0)]}), None)


def test_range_unstamped_with_nothing_in_range_is_not_judged_not_failed():
    """All +Inf in the window ('clear: nothing within max_range'), or one constant range (a standing
    ego, a bag): the node counts a repeated range as a copy, no evidence of an unset stamp, so no WARN
    can come; the check failed on the missing diagnostic (HIL UAT, then the fix's review)."""
    def run(value: float, step: float = 0.0):
        fault = F.RangeFault("unstamped")
        fault.start = 2.0
        for k in range(30):  # 1.5 s at 20 Hz
            v = value - step * k
            assert fault.on_sensor(_Ctx(), "range", 5_000 + k, v) == (0, v)
        rec = _rec()
        rec.range_sent = [k * 0.05 for k in range(130)]
        rec.frames = [FrameRec(i, i, i / 30, i / 30) for i in range(200)]
        rec.decisions = {i: [_decision(i / 30 + 0.008, rules_reason="clear: nothing within max_range 150.00 m")]
                         for i in range(200)}
        rec.diags.append(DiagRec(2.5, "tiny_node: sensors", 0, "ok", {}))
        return fault.check(rec)

    for res in (run(math.inf), run(20.0)):
        assert res.passed and res.status == "PASS (not all judged)", res.failures
        assert any("1 of 30 readings in the window were new ranges" in n for n in res.not_judged), res.not_judged
    # new ranges and no warning: still a failure
    assert any("no 'sensors' diagnostic at level 1" in f for f in run(20.0, step=0.1).failures)


def test_an_invalid_range_is_judged_only_inside_its_window_and_no_negative_time_is_printed():
    """range_timeout_s 10 s beside a 1.5 s NaN window: frames after the window (valid readings again)
    were judged as under the warning (FAIL 40/154), and "it lasted -8.50 s" was printed."""
    rec, fault = _invalid_record(10.0)
    res = fault.check(rec)
    assert res.passed, res.failures
    text = " ".join(res.not_judged + res.observed)
    assert "-8.50" not in text and "lasted -" not in text, text
    assert any("closed before range_timeout_s (10.0 s)" in n for n in res.not_judged), res.not_judged


def test_a_node_with_use_sim_time_in_a_wall_clock_run_fails_up_front(tmp_path, capsys, monkeypatch):
    """An attached node with use_sim_time true and no /clock passed almost everything: its ROS time
    stayed 0, so its stamps went unjudged. The harness read use_sim_time and did nothing with it."""
    import types

    from tiny_node.cli import main
    from tiny_node.hil import harness

    assert "use_sim_time true" in harness.sim_time_problem(harness.GROUPS["main"], True, attach=True)
    assert harness.sim_time_problem(harness.GROUPS["simtime"], True, attach=False) == ""
    assert harness.sim_time_problem(harness.GROUPS["main"], False, attach=True) == ""

    class Feeder:
        compressed = False

        def __init__(self, **kw) -> None:
            pass

        def wait_for_node(self, timeout_s: float, alive=None) -> bool:
            return True

        def get_parameters(self, service, names, timeout_s=5.0):
            return {"use_sim_time": True, "camera_transport": "raw"}

        def close(self) -> None:
            pass

    monkeypatch.setitem(sys.modules, "tiny_node.tools.feeder", types.SimpleNamespace(Feeder=Feeder))
    cfg = harness.HarnessConfig(out_dir=tmp_path, stream_factory=lambda: None, progress=lambda s: None,
                                attach=True, env={"ROS_DOMAIN_ID": "87"})
    records, checks = harness.run_all(cfg, F.make_faults(["range_nan"]))
    assert records == [] and [c.passed for c in checks] == [False, False]
    assert "use_sim_time true" in checks[0].failures[0] and "no /clock" in checks[0].failures[0]
    assert checks[1].failures[0].startswith("not run: ")
    # and the harness's own node: refused as an argument (the harness sets it per node run)
    assert main(["hil", "--out", str(tmp_path), "--param", "use_sim_time:=true"]) == 2
    assert "--param use_sim_time" in capsys.readouterr().err


def test_a_fault_needing_another_transport_than_the_forced_one_is_skipped_or_refused(tmp_path, capsys):
    """``--transport raw --faults corrupt_frames_compressed`` passed on raw corruptions."""
    from tiny_node.cli import main

    ctx = _Ctx()
    ctx.transport = "raw"
    fault, = F.make_faults(["corrupt_frames_compressed"])
    assert "needs the compressed camera transport" in fault.skip_reason(ctx)
    ctx.transport = "compressed"
    assert fault.skip_reason(ctx) == ""
    ctx.transport = "raw"
    assert F.make_faults(["corrupt_frames"])[0].skip_reason(ctx) == ""  # either transport
    assert main(["hil", "--out", str(tmp_path), "--transport", "raw", "--faults", "corrupt_frames_compressed"]) == 2
    assert "corrupt_frames_compressed needs the compressed transport" in capsys.readouterr().err


def test_a_soak_counts_skips_apart_with_their_reason_and_refuses_a_negative_length(tmp_path, capsys):
    from tiny_node.cli import main
    from tiny_node.hil.record import CheckResult
    from tiny_node.hil.soak import fault_counts

    why = "stress-ng not installed (apt-get install -y stress-ng)"
    counts = fault_counts([CheckResult("cpu_load#0", "main", "", True, skipped=why),
                           CheckResult("cpu_load#1", "main", "", True, skipped=why),
                           CheckResult("range_nan#0", "main", "", True),
                           CheckResult("range_nan#1", "main", "", False)])
    assert counts["cpu_load"] == {"pass": 0, "fail": 0, "skip": 2, "not_run": 0, "skipped_why": [why]}
    assert counts["range_nan"] == {"pass": 1, "fail": 1, "skip": 0, "not_run": 0, "skipped_why": []}
    assert main(["hil", "--out", str(tmp_path), "--soak", "-5"]) == 2
    assert "--soak -5" in capsys.readouterr().err


def _decided_run() -> RunRecord:
    rec = _rec()
    rec.frames = [FrameRec(i, i, i / 30, 1.0 + i / 30) for i in range(60)]
    rec.decisions = {i: [_decision(1.0 + i / 30 + 0.008)] for i in range(60)}
    return rec


def test_a_run_that_injected_nothing_does_not_exit_0_and_names_the_skipped(tmp_path, capsys, monkeypatch):
    """``--faults cpu_load,memory_pressure`` without stress-ng: "hil: PASS", rc 0, nothing injected."""
    pytest.importorskip("matplotlib")
    from tiny_node.cli import main
    from tiny_node.hil import harness
    from tiny_node.hil.record import CheckResult
    from tiny_node.hil.report import EXIT_NOTHING_INJECTED, verdict

    why = "stress-ng not installed (apt-get install -y stress-ng)"
    skipped = [CheckResult(n, "main", "", True, skipped=why) for n in ("cpu_load", "memory_pressure")]
    ran = CheckResult("range_nan", "main", "", True)
    assert verdict(skipped, {"main": []}) == "SKIP"
    assert verdict([*skipped, ran], {"main": []}) == "PASS"
    assert verdict([], {"main": []}) == "PASS"  # --faults none: a clean latency run
    assert verdict(skipped, {"main": ["node exited"]}) == "FAIL"
    result: list[CheckResult] = skipped

    monkeypatch.setattr(harness, "run_all", lambda cfg, faults, *, clean_s=0.0: ([_decided_run()], result))
    args = ["hil", "--out", str(tmp_path), "--scenario", str(CI_SCENARIO), "--model", "none",
            "--faults", "cpu_load,memory_pressure"]
    assert main(args) == EXIT_NOTHING_INJECTED != 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("hil: SKIP") and f"skipped: cpu_load, memory_pressure ({why})" in last, last
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["verdict"] == "SKIP" and not summary["passed"]
    result = [*skipped, ran]
    assert main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("hil: PASS") and "skipped: cpu_load, memory_pressure (stress-ng" in last, last


def test_an_attached_node_not_found_says_where_it_was_looked_for_and_what_is_there():
    """A node in another namespace, one started --no-autostart with its right pid, and none at all
    all read "the node did not come up on ROS_DOMAIN_ID=83 (--attach: is it running there?)"."""
    import types

    from tiny_node.hil.harness import attach_failure

    def feeder(*nodes: tuple[str, str]):
        return types.SimpleNamespace(node=types.SimpleNamespace(get_node_names_and_namespaces=lambda: list(nodes)),
                                     unmatched=lambda: None)

    none = attach_failure(feeder(("tiny_node_feeder", "/")), "", "83", None)
    assert none == "no active tiny_node in namespace / on ROS_DOMAIN_ID=83", none
    other = attach_failure(feeder(("tiny_node", "/robot1")), "", "83", None)
    assert "namespace / on ROS_DOMAIN_ID=83" in other and "a tiny_node runs in namespace /robot1" in other, other
    inactive = attach_failure(feeder(("tiny_node", "/")), "", "83", os.getpid())
    assert f"process {os.getpid()} exists, but its node never became active" in inactive, inactive
    assert "unconfigured" in inactive and "another namespace" in inactive
    assert "never became active" in attach_failure(feeder(("tiny_node", "/")), "", "83", None)


@pytest.mark.ros
def test_a_node_on_another_camera_topic_is_named_not_called_down_or_inactive(ros_env):
    """A node with its camera remapped (-r camera/image_raw:=/front/image_raw) came up and went active,
    and hil said "the node did not come up" / "never became active" after a minute (review 2026-12-08).
    The graph says what is wrong: a decision publisher, no reader of the harness's camera topic."""
    import rclpy  # ros_env: a private domain, and the DDS profile set before this process's first participant
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from sensor_msgs.msg import Image

    from tiny_node.hil.harness import attach_failure
    from tiny_node.tools.feeder import Feeder

    ctx = Context()
    rclpy.init(args=[], context=ctx)
    node = rclpy.create_node("tiny_node", context=ctx)  # as the node: its name, decision out, images in
    node.create_publisher(DiagnosticArray, "decision", 10)
    node.create_subscription(Image, "/front/image_raw", lambda _: None, 10)
    feeder = Feeder()
    try:
        end = time.monotonic() + 10.0
        while time.monotonic() < end and (feeder.node.count_publishers("/decision") == 0
                                          or feeder.unmatched() is None or "/front" not in feeder.unmatched()):
            time.sleep(0.05)
        assert feeder.unmatched() == ("a node publishes /decision, but nothing subscribes /camera/image_raw, where the "
                                      "harness sends its frames (tiny_node subscribes images on /front/image_raw: "
                                      "remapped?)")
        why = attach_failure(feeder, "", "83", os.getpid())
        assert why.startswith("a node publishes /decision, but nothing subscribes /camera/image_raw") and \
            why.endswith(", in namespace / on ROS_DOMAIN_ID=83") and "never became active" not in why, why
    finally:
        feeder.close()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_the_report_states_the_nodes_settings_and_no_outcome_for_a_recording(tmp_path):
    """A bag replay printed "Outcome (episodes without a fault): 2 episodes, 0 collisions" though it
    is open loop; the report never said the deadline_ms / camera_timeout_s the node ran with."""
    pytest.importorskip("matplotlib")
    from tiny_node.hil.record import CheckResult
    from tiny_node.hil.report import console_table, cut, write_report

    rec = _decided_run()
    rec.deadline_ms, rec.camera_timeout_s = 40.0, 0.3
    rec.episodes = [{"t_start": 0.0, "t_end": 1.0, "collided": False, "impact_speed_kmh": 0.0, "min_ttc_s": None}]
    summary = write_report(tmp_path, [rec], [], {"source": "scenario"}, {"main": []})
    md = (tmp_path / "report.md").read_text()
    assert "deadline_ms 40, camera_timeout_s 0.3" in md
    assert "Outcome (episodes without a fault; informational, not part of the verdict)" in md
    assert summary["outcome"]["clean"]["episodes"] == 1
    rec.closed_loop = False
    summary = write_report(tmp_path, [rec], [], {"source": "bag"}, {"main": []})
    assert "Outcome" not in (tmp_path / "report.md").read_text() and summary["outcome"] is None
    # a detail too long for the terminal is cut at a word, with an ellipsis
    assert cut("model on time for 57/57 frames", 20) == "model on time for…"
    long = CheckResult("range_stuck", "main", "", True, known_gap="no object in range while the fault lasted: "
                       "a sensor stuck on 'no object' reads like an empty road and is not detected")
    line = console_table([long])
    assert line.endswith("…") and not line.endswith(" a…") and "road a" not in line, line


@pytest.mark.parametrize(("signame", "status", "how"), [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_a_signal_stops_hil_with_one_line_after_its_clean_up(tmp_path, signame, status, how):
    """Ctrl-C ended in a KeyboardInterrupt traceback, SIGTERM in silence: the other commands that start a
    node say in one line how they were stopped."""
    script = f"""
import os, signal, sys, time
import tiny_node.hil.cli as hc
from tiny_node.cli import main

def run_hil(args, argv):
    try:
        os.kill(os.getpid(), signal.{signame})
        time.sleep(10)
        raise AssertionError("the signal did not stop the run")
    finally:
        print("NODE STOPPED", flush=True)

hc.run_hil = run_hil
sys.exit(main(["hil", "--out", {str(tmp_path / "out")!r}]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO)),
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert "NODE STOPPED" in done.stdout and done.returncode == status, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"tiny-node hil: {how} (a node it started is stopped)"


@pytest.mark.ros
def test_the_harness_feeder_does_not_read_the_command_line_as_ros_arguments(ros_env, monkeypatch):
    """rclpy.init() without args parsed sys.argv: `hil --param a:=b` was taken as a remap rule (a deprecation
    warning on the terminal), and a `--ros-args` there would have moved the feeder's topics."""
    pytest.importorskip("rclpy")
    from tiny_node.tools.feeder import Feeder

    monkeypatch.setattr(sys, "argv", ["tiny-node", "hil", "--ros-args", "-r", "__ns:=/elsewhere"])
    feeder = Feeder(namespace="/robot1")
    try:
        assert feeder.node.get_namespace() == "/robot1"
        assert feeder.pub_range.topic_name == "/robot1/range"
    finally:
        feeder.close()


# --- review (2026-12-07): stopped runs, node counters, soak length, strict JSON, refusals ---------
def _old_run_in(out: Path) -> None:
    """A finished PASS run's files in ``out``, a simtime run's among them, and files the harness does not own."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("summary.json", "report.md", "frames_main.csv", "frames_simtime.csv", "timeline_simtime.png",
                 "node-simtime.log", "stalls-main-cpu0.txt", "latency_hist.png", "soak.json"):
        (out / name).write_text('{"verdict": "PASS", "passed": true}' if name.endswith(".json") else "old")
    for name in ("notes.txt", "frames_mine.csv", "fastdds_udp.xml"):
        (out / name).write_text("mine")


def test_a_run_removes_only_the_files_an_earlier_run_wrote():
    """A run interrupted in a finished PASS run's folder left that PASS in place, and a run without the
    simtime node run left an earlier one's frames_simtime.csv beside its own files."""
    import tempfile

    from tiny_node.hil.report import clear_outputs

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        _old_run_in(out)
        gone = {p.name for p in clear_outputs(out)}
        assert {"summary.json", "frames_simtime.csv", "node-simtime.log", "stalls-main-cpu0.txt", "soak.json"} <= gone
        assert sorted(p.name for p in out.iterdir()) == ["fastdds_udp.xml", "frames_mine.csv", "notes.txt"]


def _stopped_main(tmp_path: Path, monkeypatch, stop: KeyboardInterrupt) -> tuple[int, dict]:
    """``tiny-node hil`` whose main node run streams, then whose simtime run is stopped by ``stop``."""
    from tiny_node.cli import main
    from tiny_node.hil import harness

    def run_group(cfg, group, faults, *, extra_s=0.0):
        if group == "simtime":
            raise stop
        return _decided_run(), [F.CheckResult(f.name, group, f.expected, True) for f in faults]

    monkeypatch.setattr(harness, "run_group", run_group)
    _old_run_in(tmp_path)
    code = main(["hil", "--out", str(tmp_path), "--scenario", str(CI_SCENARIO), "--model", "none",
                 "--faults", "range_nan,clock_jump,bundle_corrupt"])
    return code, json.loads((tmp_path / "summary.json").read_text())


@pytest.mark.parametrize(("stop", "status", "how"), [("KeyboardInterrupt", 130, "interrupted (SIGINT)"),
                                                     ("Terminated", 143, "terminated (SIGTERM)")])
def test_a_stopped_run_writes_a_partial_report_naming_what_it_did_not_run(tmp_path, monkeypatch, capsys,
                                                                          stop, status, how):
    """Ctrl-C or SIGTERM skipped the report: summary.json and report.md still held the previous run's PASS."""
    pytest.importorskip("matplotlib")
    from tiny_node.stopping import Terminated

    exc = Terminated(signal.SIGTERM) if stop == "Terminated" else KeyboardInterrupt()
    code, summary = _stopped_main(tmp_path, monkeypatch, exc)
    err = capsys.readouterr().err
    assert code == status
    assert summary["verdict"] == "INTERRUPTED" and not summary["passed"], summary["verdict"]
    assert summary["interrupted"] == f"{how} before node run 'simtime' streamed"
    assert summary["not_run"] == ["clock_jump", "bundle_corrupt"]
    assert [f["status"] for f in summary["faults"]] == ["PASS", "NOT RUN", "NOT RUN"]
    assert not (tmp_path / "frames_simtime.csv").exists() and (tmp_path / "frames_mine.csv").exists()
    md = (tmp_path / "report.md").read_text()
    assert "**INTERRUPTED**" in md and "Not run (interrupted): clock_jump, bundle_corrupt" in md
    last = err.strip().splitlines()[-1]
    assert last == (f"tiny-node hil: {how.split()[0]} (a node it started is stopped); partial report (verdict "
                    f"INTERRUPTED, before node run 'simtime' streamed) in {tmp_path}/ (summary.json, report.md)"), last


def test_a_stopped_attached_run_says_the_node_runs_on_and_names_an_unset_domain(tmp_path, monkeypatch, capsys):
    """Interrupting --attach said "a node it started is stopped" (it started none, and the node runs on);
    with ROS_DOMAIN_ID unset the start line said "ROS_DOMAIN_ID=None"."""
    pytest.importorskip("matplotlib")
    from tiny_node.cli import main
    from tiny_node.hil import harness

    def run_all(cfg, faults, *, clean_s=0.0):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness, "run_all", run_all)
    monkeypatch.delenv("ROS_DOMAIN_ID", raising=False)
    assert main(["hil", "--out", str(tmp_path), "--scenario", str(CI_SCENARIO), "--attach",
                 "--faults", "range_nan"]) == 130
    got = capsys.readouterr()
    assert "ROS_DOMAIN_ID unset (domain 0)" in got.out and "None" not in got.out, got.out
    assert "(the attached node was not started by it and keeps running); partial report" in got.err, got.err
    assert json.loads((tmp_path / "summary.json").read_text())["not_run"] == ["range_nan"]


def test_an_interrupted_run_judges_the_faults_it_finished_and_leaves_out_its_last_frames():
    """The partial record: frames of the last DRAIN_S before the stop have had no time to be answered."""
    import threading
    import types

    from tiny_node.hil import harness

    log = types.SimpleNamespace(decisions={}, diagnostics=[], diagnostics_at=[], brake_msgs=[])
    feeder = types.SimpleNamespace(log=log, _lock=threading.Lock())
    cfg = harness.HarnessConfig(out_dir=Path("."), stream_factory=lambda: None)
    runner = harness._Runner(cfg, harness.GROUPS["main"], feeder, node_pid=None, params={}, faults=[],
                             duration_s=10.0)
    now = time.monotonic()
    runner.t0 = runner.rec.t0 = now - 5.0
    runner.started = True
    runner.rec.frames = [FrameRec(i, i, i / 30, runner.t0 + i / 30) for i in range(150)]
    log.decisions = {i: [types.SimpleNamespace(received_at=runner.t0 + i / 30 + 0.01,
                                               values={"latency_ms": "5", "deadline_ms": "50"},
                                               published=(b"decision", i + 1, 10**9 + i * 10**6))]
                     for i in range(140)}  # the last 10 sent not answered yet
    log.brake_msgs = [(runner.t0 + i / 30 + 0.009, False, (b"brake", i + 1, 10**9 + i * 10**6 - 1))
                      for i in range(140)]
    rec = runner.partial(None)
    assert len(rec.frames) < 125 and all(f.sent_at <= now - harness.DRAIN_S for f in rec.frames)
    assert not global_failures(rec), global_failures(rec)  # none missing, none unknown
    assert any("left out, with their decisions" in n for n in rec.notes), rec.notes
    done, inside, later = F.make_faults(["range_posinf", "range_neginf", "stale_odometry"])
    rec.windows = {done.name: F.Window(1.0, 1.8, 1.0), inside.name: F.Window(3.0, 3.8, 1.0)}
    checks = harness.interrupted_checks([done, inside, later], rec)
    assert [c.status for c in checks][1:] == ["NOT RUN", "NOT RUN"]
    assert not checks[0].interrupted  # judged: its window and recovery ended before the cut
    assert "before every frame of its window and recovery" in checks[1].skipped, checks[1].skipped
    assert checks[2].skipped.startswith("not run: ")


def test_an_interrupted_soak_writes_its_partial_report(tmp_path, monkeypatch, capsys):
    """A soak stopped early wrote no soak.json: an earlier soak's PASS stood in the folder."""
    from tiny_node.cli import main
    from tiny_node.hil import soak

    def run_group(cfg, group, faults, *, extra_s=0.0):
        raise KeyboardInterrupt

    monkeypatch.setattr(soak, "run_group", run_group)
    _old_run_in(tmp_path)
    assert main(["hil", "--out", str(tmp_path), "--scenario", str(CI_SCENARIO), "--model", "none",
                 "--faults", "camera_dropout", "--soak", "19"]) == 130
    summary = json.loads((tmp_path / "soak.json").read_text())
    assert summary["verdict"] == "INTERRUPTED" and summary["not_run"] == ["camera_dropout#0"], summary
    assert not (tmp_path / "summary.json").exists()
    assert f"in {tmp_path}/ (soak.json, soak.md)" in capsys.readouterr().err


def _diag(at: float, name: str, **values) -> DiagRec:
    return DiagRec(at, f"tiny_node: {name}", 0, "", {k: str(v) for k, v in values.items()})


def test_the_nodes_counters_are_this_runs_and_a_dead_node_is_not_lost_transport():
    """The node's lifetime counters were set against this run's frames ("the node received 574 of 240
    frames sent"), and frames sent to a node killed mid-run were "lost in transport"."""
    frames = [FrameRec(i, i, i / 30, 1.0 + i / 30) for i in range(240)]
    decided = {i: [_decision(1.0 + i / 30 + 0.008)] for i in range(230)}
    attached = _rec(frames=frames, decisions=decided, t0=1.0, duration_s=9.0, diags=[
        _diag(0.5, "camera", frames=334), _diag(0.5, "watchdog", decisions=334),  # before this run
        _diag(9.5, "camera", frames=574), _diag(9.5, "watchdog", decisions=564)])
    missing, = [f for f in global_failures(attached) if "without a decision" in f]
    assert "the node received 240 of 240 frames sent; it published 230 decisions" in missing, missing
    assert "lost in transport" not in missing
    dead = _rec(frames=frames, decisions={i: decided[i] for i in range(83)}, t0=1.0, duration_s=9.0,
                node_alive=False, node_exit_status=-9,
                diags=[_diag(0.8, "camera", frames=0), _diag(3.7, "camera", frames=82)])
    fails = global_failures(dead)
    missing, = [f for f in fails if "without a decision" in f]
    assert "lost in transport" not in missing, missing
    assert "of them sent after the node exited at t≈2.7 s" in missing and "status -9" in missing, missing
    assert "until its last camera status the node received 82 of 82 frames sent" in missing, missing
    assert "node exited at t≈2.7 s (its last decision or diagnostic), status -9" in fails, fails


def test_a_soak_too_short_for_one_cycle_is_refused_naming_the_shortest(tmp_path, capsys):
    """``--soak 12 --faults camera_dropout`` planned no fault, streamed 22 s and passed with status 0."""
    from tiny_node.cli import main
    from tiny_node.hil.soak import soak_min_s, soak_plan

    assert main(["hil", "--out", str(tmp_path), "--soak", "12", "--faults", "camera_dropout"]) == 2
    err = capsys.readouterr().err
    assert "--soak 12: too short for one cycle of camera_dropout: at least 19 s" in err, err
    assert main(["hil", "--out", str(tmp_path), "--soak", "90"]) == 2
    assert f"one cycle of the faults: at least {soak_min_s()} s" in capsys.readouterr().err
    for names in (None, ["camera_dropout"], ["range_nan", "worker_sigkill"]):
        shortest = soak_min_s(names)
        assert soak_plan(shortest, names) and not soak_plan(shortest - 1, names), names


def test_the_json_reports_hold_no_bare_nan(tmp_path):
    """A node gone before the end, or a run without a model worker, wrote ``NaN`` into summary.json and
    soak.json: not JSON (most readers refuse it)."""
    pytest.importorskip("matplotlib")
    from tiny_node.hil.report import write_report

    def strict(path: Path) -> dict:
        return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path.name}: bare {c}"))

    rec = _decided_run()
    rec.resources = [{"t": float(t), "node_rss_kib": math.nan if t else 1000.0, "worker_pid": math.nan,
                      "worker_rss_kib": math.inf} for t in range(3)]
    write_report(tmp_path, [rec], [], {"source": "test"}, {"main": []})
    assert strict(tmp_path / "summary.json")["runs"][0]["resources"][1]["node_rss_kib"] is None
    from tiny_node.hil.soak import write_soak  # run_soak's files, written apart since the review

    write_soak(tmp_path, rec, [])
    assert strict(tmp_path / "soak.json")["duration_s"] == 0.0


def test_a_node_command_that_cannot_start_fails_its_node_run_not_the_harness(tmp_path):
    """FileNotFoundError from the node's start escaped run_all: no report, the other node runs not run."""
    pytest.importorskip("rclpy")
    from tiny_node.hil import harness

    cfg = harness.HarnessConfig(out_dir=tmp_path, stream_factory=lambda: None, node_cmd=[str(tmp_path / "nope")],
                                progress=lambda s: None)
    records, checks = harness.run_all(cfg, F.make_faults(["range_nan"]))
    assert not records
    assert checks[0].failures == [f"hil main: cannot start the node command '{tmp_path / 'nope'}': "
                                  "No such file or directory"], checks[0].failures
    assert checks[1].failures[0].startswith("not run: hil main: cannot start the node command")


def test_hil_refuses_more_bad_inputs_in_one_line(tmp_path, capsys):
    """Tracebacks (--out under a file, an unbalanced quote, a command not found) and silent fallbacks
    (an empty --suite / --node-cmd / --model, a negative --duration, --faults none with a fault)."""
    from tiny_node.cli import main

    for argv, expected in (
        (["--out", "/dev/null/x"], "hil: cannot make output folder /dev/null/x: Not a directory"),
        (["--node-cmd", '"abc'], "hil: --node-cmd '\"abc': No closing quotation"),
        (["--node-cmd", "/nonexistent_cmd --x"], "/nonexistent_cmd: no such command"),
        (["--node-cmd", ""], "--node-cmd '' names no command"),
        (["--suite", ""], "--suite '' names no suite"),
        (["--model", ""], "--model '' names no bundle"),
        (["--duration", "-5"], "--duration -5: a run streams a non-negative number of seconds"),
        (["--faults", "none,camera_dropout"], "none stands alone"),
    ):
        args = argv if argv[0] == "--out" else ["--out", str(tmp_path / "out"), *argv]
        assert main(["hil", *args]) == 2, argv
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for value in ("100", "-1"):  # 0 is normal scheduling, 1..99 SCHED_FIFO
        with pytest.raises(SystemExit) as stop:
            main(["hil", "--out", str(tmp_path / "out"), "--harness-priority", value])
        assert stop.value.code == 2
        assert f"0 (normal scheduling) or a SCHED_FIFO priority 1..99, got {value}" in capsys.readouterr().err


def test_two_hosts_keep_a_transport_given_with_an_equals_sign(tmp_path, monkeypatch):
    """``--netns --transport=raw`` ran compressed: only ``--transport raw`` was seen in the command line."""
    started: list[list[str]] = []

    class Popen(_Inner):
        def __init__(self, cmd, **kw):
            super().__init__(cmd)
            started.append(cmd)

    outer = _netns_fakes(monkeypatch, tmp_path, Popen)
    for given, expected in ((["--transport=raw"], "raw"), ([], "compressed")):
        transport = given[0].split("=")[1] if given else None
        assert outer(transport, ["--netns", *given]) == 0
        cmd = started.pop()
        assert cmd.count("--transport") + sum(a.startswith("--transport=") for a in cmd) == 1, cmd
        assert f"--transport={expected}" in cmd or cmd[cmd.index("--transport") + 1] == expected, cmd


_TERM_INNER = """
import signal, sys, time
from pathlib import Path
got = Path(__file__).parent / "got"
def on(signum, frame):
    got.write_text(signal.Signals(signum).name)
    sys.exit(128 + signum)
signal.signal(signal.SIGINT, on)
signal.signal(signal.SIGTERM, on)
(got.parent / "ready").write_text("")
time.sleep(30)
"""


def test_sigterm_on_two_hosts_reaches_the_inner_harness_as_sigterm(tmp_path):
    """SIGTERM was passed on as SIGINT: the line said "interrupted" while the command exited 143."""
    inner = tmp_path / "inner.py"
    inner.write_text(_TERM_INNER)
    outer = subprocess.Popen([sys.executable, "-c", _OUTER, str(tmp_path), str(inner)], cwd=REPO,
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 30
    while not (tmp_path / "ready").exists() and time.monotonic() < end:
        time.sleep(0.05)
    outer.send_signal(signal.SIGTERM)
    assert outer.wait(timeout=30) == 143
    assert (tmp_path / "got").read_text() == "SIGTERM"


# --- review of 9257b41: stops during clean-up and report writing, --netns statuses, partial content ---
def _signal_self(signum: int) -> None:
    """Deliver ``signum`` to this process now, as a user's Ctrl-C / a CI's SIGTERM would."""
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # the handler runs here (the sleep is cut short by the signal)


def _stopped_in_clean_up(monkeypatch, tmp_path) -> tuple[BaseException | None, RunRecord, list[str]]:
    """run_all over a node run ``main`` (faked: no ROS) that streams whole; SIGINT lands in the feeder's close."""
    import types

    from tiny_node.hil import harness

    rec, calls = _decided_run(), []

    class Feeder:
        def __init__(self, namespace="", compressed=False):
            self.compressed = compressed

        def wait_for_node(self, timeout_s, alive=None):
            return True

        def get_parameters(self, service, names):
            return {}

        def close(self):
            _signal_self(signal.SIGINT)
            calls.append("feeder closed")

    class Node:
        cmd, pid, proc = ["node"], 4242, None

        def __init__(self, env, **kw):
            pass

        def start(self):
            return self

        def alive(self):
            return True

        def stop(self):
            calls.append("node stopped")

    class Runner:
        def __init__(self, cfg, spec, feeder, *, node_pid, params, faults, duration_s):
            self.cfg, self.spec, self.node_pid, self.faults = cfg, spec, node_pid, faults
            self.has_model, self.transport, self.started, self.rec = False, "raw", False, rec

        def prepare(self):
            pass

        def run(self, stream):
            self.started = True
            return rec

    monkeypatch.setitem(sys.modules, "tiny_node.tools.feeder", types.SimpleNamespace(Feeder=Feeder))
    monkeypatch.setattr(harness, "NodeProcess", Node)
    monkeypatch.setattr(harness, "_Runner", Runner)
    monkeypatch.setattr(harness, "reported_pid", lambda *a, **k: None)
    monkeypatch.setattr(harness, "node_pid", lambda *a: None)
    monkeypatch.setattr(harness, "Probe", lambda *a, **k: types.SimpleNamespace(stop=lambda: ("not run", [])))
    cfg = harness.HarnessConfig(out_dir=tmp_path, stream_factory=lambda: types.SimpleNamespace(close=lambda: None),
                                progress=lambda text: None)
    try:
        harness.run_all(cfg, F.make_faults(["clock_jump"]))
    except KeyboardInterrupt as exc:  # caught here: a bare one would end the test session
        return exc, rec, calls
    return None, rec, calls


def test_a_stop_in_a_node_runs_clean_up_keeps_the_run_it_finished(monkeypatch, tmp_path):
    """A stop while the node run was cleaned up (feeder closed, node stopped) threw the finished run away
    ("not run ... before it streamed", runs []) and skipped stopping the node."""
    from tiny_node.hil.harness import Interrupted

    stop, rec, calls = _stopped_in_clean_up(monkeypatch, tmp_path)
    assert isinstance(stop, Interrupted), repr(stop)
    assert calls == ["feeder closed", "node stopped"]  # the clean-up finished first
    assert stop.records == [rec] and stop.where == "after node run 'main'", stop.where
    check, = stop.checks
    assert check.fault == "clock_jump" and check.status == "NOT RUN", check
    assert check.skipped == "not run: the run was interrupted after node run 'main'", check.skipped


def _report_writer_stopped_by(monkeypatch, module, signum: int) -> None:
    """The report's first plot sends ``signum`` (a stop while the report is written); no plots drawn (fast)."""
    def histogram(path, results):
        _signal_self(signum)
        path.write_text("plot")

    monkeypatch.setattr(module, "plot_histogram", histogram)
    monkeypatch.setattr(module, "plot_timeline", lambda path, rec: path.write_text("plot"))


def test_a_soak_stopped_while_its_report_is_written_keeps_its_results(tmp_path, monkeypatch, capsys):
    """SIGTERM while a finished soak wrote soak.json / soak.md: overwritten with a stub "before the first node
    run" (its results lost); now finished first, the stop said after the stream, exit 143."""
    from tiny_node.cli import main
    from tiny_node.hil import soak
    from tiny_node.hil.record import CheckResult

    monkeypatch.setattr(soak, "run_group", lambda cfg, group, faults, *, extra_s=0.0: (
        _decided_run(), [CheckResult(f.name, group, f.expected, True) for f in faults]))
    _report_writer_stopped_by(monkeypatch, soak, signal.SIGTERM)
    monkeypatch.setattr(soak, "_plot_soak", lambda path, rec, minutes: path.write_text("plot"))
    assert main(["hil", "--out", str(tmp_path), "--scenario", str(CI_SCENARIO), "--model", "none",
                 "--faults", "camera_dropout", "--soak", "19"]) == 143
    summary = json.loads((tmp_path / "soak.json").read_text())
    assert summary["verdict"] == "PASS" and summary["faults"]["camera_dropout"]["pass"] == 1, summary
    assert (tmp_path / "frames_soak.csv").exists() and (tmp_path / "soak.png").exists()  # written whole
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == ("tiny-node hil: terminated (SIGTERM) after the soak streamed, while its report was written "
                    "(a node it started is stopped); the runs had ended, and the report was finished first: "
                    f"verdict PASS, in {tmp_path}/ (soak.json, soak.md)"), last


def test_a_stop_while_a_finished_run_writes_its_report_is_said_after_it_is_finished(tmp_path, monkeypatch, capsys):
    """SIGTERM while the report was written left it half-written (no frames CSV) with verdict PASS, exit 143,
    and a last line naming no report (and a node stopped, under --attach)."""
    from tiny_node.cli import main
    from tiny_node.hil import harness, report
    from tiny_node.hil.record import CheckResult

    monkeypatch.setattr(harness, "run_all", lambda cfg, faults, *, clean_s=0.0: (
        [_decided_run()], [CheckResult("range_nan", "main", "", True)]))
    _report_writer_stopped_by(monkeypatch, report, signal.SIGTERM)
    assert main(["hil", "--out", str(tmp_path), "--scenario", str(CI_SCENARIO), "--attach",
                 "--faults", "range_nan"]) == 143
    assert json.loads((tmp_path / "summary.json").read_text())["verdict"] == "PASS"
    assert (tmp_path / "frames_main.csv").exists()  # the report was finished, not cut at its first plot
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == ("tiny-node hil: terminated (SIGTERM) after the last node run, while its report was written (the "
                    "attached node was not started by it and keeps running); the runs had ended, and the report was "
                    f"finished first: verdict PASS, in {tmp_path}/ (summary.json, report.md)"), last


def test_a_stop_before_the_run_began_says_nothing_started(tmp_path, monkeypatch, capsys):
    """A stop before the run's try (checking the arguments) said "a node it started is stopped", under --attach too."""
    from tiny_node.cli import main
    from tiny_node.hil import cli

    def stopped(args):  # Ctrl-C while the scenario is loaded
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_stream_factory", stopped)
    assert main(["hil", "--out", str(tmp_path), "--scenario", str(CI_SCENARIO), "--attach"]) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == "tiny-node hil: interrupted (SIGINT) before the run began: nothing started, no report written", last


def _netns_fakes(monkeypatch, tmp_path, popen: type) -> Callable[[], object]:
    """``_netns_outer`` with two fake hosts and ``popen`` as the inner harness's process; its status or stop."""
    import argparse
    import contextlib
    import types

    from tiny_node.hil import cli, netns

    @contextlib.contextmanager
    def two_hosts(work_dir, tag=None):
        yield netns.Hosts("tnhil", "tnnode", work_dir / "profile.xml")

    monkeypatch.setattr(netns, "unavailable_reason", lambda: "")
    monkeypatch.setattr(netns, "two_hosts", two_hosts)
    monkeypatch.setattr(cli, "subprocess", types.SimpleNamespace(Popen=popen, TimeoutExpired=TimeoutError))

    def outer(transport: str | None = "raw", argv: Sequence[str] = ("--netns",)) -> object:
        try:
            return cli._netns_outer(argparse.Namespace(out=tmp_path, transport=transport), list(argv))
        except KeyboardInterrupt as exc:  # a bare one would end the test session
            return exc
    return outer


class _Inner:
    """The inner harness's process, as far as ``_netns_outer`` uses it: ends with 128 + the signal it was sent."""

    def __init__(self, cmd, **kw):
        self.sent: list[int] = []

    def send_signal(self, sig):
        self.sent.append(sig)

    def wait(self, timeout=None):
        return 128 + self.sent[-1] if self.sent else 0

    def poll(self):
        return 0


def test_two_hosts_a_stop_as_the_inner_harness_starts_stops_it(tmp_path, monkeypatch):
    """A stop inside Popen exited the outer (namespaces deleted) while the inner harness ran on, unknown: it
    later cleared the folder and wrote a FAIL summary after the command had returned."""
    started: list[_Inner] = []

    class StoppedAsItStarts(_Inner):
        def __init__(self, cmd, **kw):
            super().__init__(cmd)
            started.append(self)
            _signal_self(signal.SIGTERM)  # as Popen forks

    status = _netns_fakes(monkeypatch, tmp_path, StoppedAsItStarts)()
    assert status == 143 and started[0].sent == [signal.SIGTERM], (status, started[0].sent)


def test_two_hosts_a_second_ctrl_c_while_the_inner_harness_stops_is_the_same_request(tmp_path, monkeypatch, capsys):
    """Unheld, a second Ctrl-C while the harness inside wrote its partial report printed "before the run began:
    nothing started", and a third deleted the namespaces under it, still running (review)."""
    class StoppedTwice(_Inner):
        def wait(self, timeout=None):
            if not self.sent:  # running: the first Ctrl-C
                _signal_self(signal.SIGINT)
            else:  # writing its report: a second and a third
                _signal_self(signal.SIGINT)
                _signal_self(signal.SIGINT)
            return super().wait(timeout)

    assert _netns_fakes(monkeypatch, tmp_path, StoppedTwice)() == 130
    assert "before the run began" not in capsys.readouterr().err


def test_two_hosts_an_inner_harness_ended_by_the_signal_exits_128_plus_it_with_a_line(tmp_path, monkeypatch, capsys):
    """An inner harness ended by the signal before its handlers (its first ~0.4 s) returned -2 / -15: exit
    254 / 241, and no line."""
    class DiedOfIt(_Inner):
        def wait(self, timeout=None):
            return -signal.SIGINT

    assert _netns_fakes(monkeypatch, tmp_path, DiedOfIt)() == 130
    assert "tiny-node hil: interrupted (SIGINT): the harness inside tnhil was ended by it: it wrote no report" \
           in capsys.readouterr().err


def _finished_report(out: Path, verdict: str = "PASS") -> None:
    (out / "summary.json").write_text(json.dumps({"verdict": verdict}))


def test_two_hosts_a_stop_as_the_inner_harness_ends_is_said_with_its_report(tmp_path, monkeypatch, capsys):
    """A stop in the harness inside's last moments (its handlers given back) was lost, exit 0, when it
    exited 0, or said "before it had started a node or written a report" beside its PASS report (review)."""
    class EndsAsStopped(_Inner):
        def wait(self, timeout=None):
            if not self.sent:  # it finishes: report written, then the user's Ctrl-C
                _finished_report(tmp_path)
                _signal_self(signal.SIGINT)
            return 0

    assert _netns_fakes(monkeypatch, tmp_path, EndsAsStopped)() == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"tiny-node hil: interrupted (SIGINT) as the harness inside ended (status 0): its report stands, verdict "
        f"PASS, in {tmp_path}/ (summary.json)")


def test_two_hosts_a_stop_while_the_namespaces_are_deleted_is_said_after_it(tmp_path, monkeypatch, capsys):
    """Unheld, a stop during the namespaces' deletion left them behind and said "before the run began: nothing
    started" beside the finished report (review)."""
    import contextlib

    from tiny_node.hil import netns

    deleted: list[str] = []

    @contextlib.contextmanager
    def two_hosts(work_dir, tag=None):
        try:
            yield netns.Hosts("tnhil", "tnnode", work_dir / "profile.xml")
        finally:
            _signal_self(signal.SIGTERM)  # as `ip netns del` runs
            deleted.append("tnhil")

    class Ends(_Inner):
        def wait(self, timeout=None):
            _finished_report(tmp_path, "FAIL")
            return 1

    outer = _netns_fakes(monkeypatch, tmp_path, Ends)
    monkeypatch.setattr(netns, "two_hosts", two_hosts)
    assert outer() == 143 and deleted == ["tnhil"]
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"tiny-node hil: terminated (SIGTERM) after the harness inside had ended (status 1): its report stands, "
        f"verdict FAIL, in {tmp_path}/ (summary.json)")


def test_a_run_stopped_in_its_first_second_is_not_said_to_have_sent_no_frame(tmp_path):
    """Stopped before t≈1 s: "no camera frame was sent (the stream handed over 12 camera frames)": the partial
    record had left out the frames of its last second, and the check counted those left."""
    import threading
    import types

    from tiny_node.hil import harness

    log = types.SimpleNamespace(decisions={}, diagnostics=[], diagnostics_at=[], brake_msgs=[])
    runner = harness._Runner(harness.HarnessConfig(out_dir=tmp_path, stream_factory=lambda: None), harness.GROUPS["main"],
                             types.SimpleNamespace(log=log, _lock=threading.Lock()), node_pid=None, params={},
                             faults=[], duration_s=10.0)
    runner.t0 = runner.rec.t0 = time.monotonic() - 0.5
    runner.started, runner.rec.camera_from_stream = True, 12
    runner.rec.frames = [FrameRec(i, i, i / 30, runner.t0 + i / 30) for i in range(12)]
    rec = runner.partial(None)
    assert not [f for f in global_failures(rec) if "camera frame" in f], global_failures(rec)
    assert rec.frames == []  # still left out, counted as sent
    rec.camera_from_stream, rec.frames_cut = 12, 0  # a run that truly sent none still fails
    assert "no camera frame was sent (the stream handed over 12 camera frames)" in global_failures(rec)


def test_an_episode_the_stop_cut_off_is_not_a_clean_episode():
    """The episode running when the run was stopped (no t_end) counted in the Outcome as a clean one
    ("1 episodes, 0 collisions, min TTC 3.6 s")."""
    from tiny_node.hil.report import outcome

    rec = _rec(episodes=[{"name": "a", "t_start": 0.0, "t_end": 9.0, "collided": True, "impact_speed_kmh": 20.0,
                          "min_ttc_s": 0.5},
                         {"name": "a", "t_start": 9.0, "t_end": None, "collided": False, "impact_speed_kmh": 0.0,
                          "min_ttc_s": 3.6}])
    got = outcome([rec])
    assert got["clean"]["episodes"] == 1 and got["clean"]["min_ttc_s"] == 0.5, got["clean"]
    assert got["cut_off"] == 1 and [e["cut_off"] for e in got["episodes"]] == [False, True]


def test_a_stopped_soak_says_how_and_counts_its_instances_not_run_apart(tmp_path, monkeypatch):
    """soak.json's `interrupted` said where, not how (docs/HIL.md: how and where); the pass / fail / skip
    table counted the NOT RUN instances as skips."""
    from tiny_node.hil import harness, soak
    from tiny_node.hil.record import CheckResult
    from tiny_node.stopping import Terminated

    def stopped(cfg, group, faults, *, extra_s=0.0):
        raise harness.Interrupted(Terminated(signal.SIGTERM), [], harness.not_run(faults, group, "not run"),
                                  "in node run 'main' at t=0.5 s")

    monkeypatch.setattr(soak, "run_group", stopped)
    with pytest.raises(harness.Interrupted):
        soak.run_soak(harness.HarnessConfig(out_dir=tmp_path, stream_factory=lambda: None), 19, ["camera_dropout"])
    summary = json.loads((tmp_path / "soak.json").read_text())
    assert summary["interrupted"] == "terminated (SIGTERM) in node run 'main' at t=0.5 s", summary
    counts = soak.fault_counts([CheckResult("range_nan#0", "main", "", True),
                                *harness.not_run(F.make_faults(["range_nan"]), "main", "not run: interrupted")])
    assert counts["range_nan"] == {"pass": 1, "fail": 0, "skip": 0, "not_run": 1, "skipped_why": []}, counts


def test_an_out_no_file_can_be_made_in_is_refused_as_the_file_system_says(tmp_path, monkeypatch, capsys):
    """``os.access`` lets root pass where no file can be made (sysfs, a read-only mount): a node was started,
    then its log could not be opened ("cannot start the node command"), then a traceback (review)."""
    from tiny_node import writable
    from tiny_node.cli import main

    monkeypatch.setattr(writable, "write_problem", lambda folder: "Read-only file system")
    assert main(["hil", "--out", str(tmp_path), "--scenario", str(CI_SCENARIO)]) == 2
    assert capsys.readouterr().err == f"hil: cannot write in output folder {tmp_path}: Read-only file system\n"


def test_a_stop_before_the_first_node_run_says_no_node_was_started(tmp_path, monkeypatch, capsys):
    """Stopped while the test bundle was made, the line said "a node it started is stopped" (review)."""
    pytest.importorskip("matplotlib")
    from tiny_node.cli import main
    from tiny_node.model import testmodels

    def stopped(root: Path) -> Path:
        raise KeyboardInterrupt

    monkeypatch.setattr(testmodels, "make_fast_bundle", stopped)
    assert main(["hil", "--out", str(tmp_path), "--scenario", str(CI_SCENARIO), "--faults", "range_nan"]) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (f"tiny-node hil: interrupted (no node was started); partial report (verdict INTERRUPTED, before "
                    f"the first node run) in {tmp_path}/ (summary.json, report.md)"), last


def test_a_stop_as_the_node_starts_is_raised_once_it_is_known(monkeypatch):
    """A Ctrl-C inside Popen, after the fork, left the node running in its own session, unknown: the harness
    said "a node it started is stopped" while it ran on (review). Held until ``proc`` is set, then raised
    once the node is stopped: demo, bench and sim start it outside their clean-up's try (review)."""
    from tiny_node.tools import nodeproc

    real = subprocess.Popen

    def forked(cmd: list[str], **kw: object) -> subprocess.Popen[bytes]:
        proc = real(["sleep", "60"], start_new_session=True)  # the node, in a session of its own
        _signal_self(signal.SIGINT)
        return proc

    monkeypatch.setattr(nodeproc.subprocess, "Popen", forked)
    node = nodeproc.NodeProcess({})
    with pytest.raises(KeyboardInterrupt):
        node.start()
    assert node.proc is not None and node.proc.poll() == -signal.SIGINT  # stopped as the caller's clean-up would


def test_a_soak_stopped_before_its_node_run_lists_only_the_faults_a_soak_runs(tmp_path):
    """Its not_run listed clock_jump, corrupt_frames_compressed and bundle_corrupt, which a soak never runs."""
    from tiny_node.hil import cli
    from tiny_node.hil.soak import SOAK_FAULTS

    stop = cli._before_any_run(KeyboardInterrupt(), F.make_faults(["all"]), True, tmp_path)
    assert {c.fault for c in stop.checks} == set(SOAK_FAULTS)


def _ip_calls(monkeypatch, stop_on: str, signum: int = signal.SIGINT) -> list[str]:
    """``netns._ip`` recorded (no namespace made); the first call starting with ``stop_on`` is stopped by ``signum``."""
    from tiny_node.hil import netns

    calls: list[str] = []

    def ip(*args: str) -> str:
        calls.append(" ".join(args))
        if " ".join(args).startswith(stop_on) and not any(c.startswith("stopped") for c in calls):
            calls.append("stopped")
            _signal_self(signum)
        return ""

    monkeypatch.setattr(netns, "_ip", ip)
    monkeypatch.setattr(netns, "exists", lambda name: False)
    return calls


def test_a_stop_while_the_namespaces_are_made_is_raised_once_all_are_and_all_are_deleted(monkeypatch, tmp_path):
    """A Ctrl-C killed an `ip netns add` under way (a namespace made, never recorded, never deleted)."""
    from tiny_node.hil import netns

    calls = _ip_calls(monkeypatch, "netns add")
    with pytest.raises(KeyboardInterrupt), netns.two_hosts(tmp_path, tag="t1"):
        raise AssertionError("the run must not begin after a stop")
    made = calls.index("-n tnnodet1 route add 224.0.0.0/4 dev tnnt1")  # the last step of the making
    assert calls.index("netns del tnhilt1") > made and "netns del tnnodet1" in calls


def test_a_stop_while_the_namespaces_are_deleted_is_raised_after_both_are(monkeypatch, tmp_path):
    """Unheld, a stop killed the deletion under way: a namespace left behind, a traceback, exit 1 (review)."""
    from tiny_node.hil import netns

    calls = _ip_calls(monkeypatch, "netns del")
    with pytest.raises(KeyboardInterrupt), netns.two_hosts(tmp_path, tag="t2"):
        pass
    assert calls[-3:] == ["netns del tnhilt2", "stopped", "netns del tnnodet2"]


def test_a_stop_during_the_permission_probe_deletes_the_probe_then_is_raised(monkeypatch):
    """A Ctrl-C between the probe's add and del left tnprobe<pid> behind, said to have started nothing (review)."""
    from tiny_node.hil import netns

    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda name: "/sbin/ip")
    calls = _ip_calls(monkeypatch, "netns add")
    with pytest.raises(KeyboardInterrupt):
        netns.unavailable_reason()
    assert calls == [f"netns add tnprobe{os.getpid()}", "stopped", f"netns del tnprobe{os.getpid()}"]


def test_ip_runs_in_a_session_of_its_own(monkeypatch):
    """In the terminal's process group a Ctrl-C killed `ip netns del` under way (review)."""
    from tiny_node.hil import netns

    seen: dict[str, object] = {}

    def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        seen.update(kw)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(netns.subprocess, "run", run)
    netns._ip("netns", "list")
    assert seen.get("start_new_session") is True


def test_processes_left_in_the_namespaces_are_ended_before_they_are_deleted(monkeypatch, tmp_path, capsys):
    """An inner harness killed outright left its node and model worker running in a deleted namespace (review)."""
    from tiny_node.hil import netns

    why = netns.unavailable_reason()
    if why:
        pytest.skip(why)
    monkeypatch.setattr(netns, "LEFT_GRACE_S", 0.3)
    with netns.two_hosts(tmp_path, tag=f"l{os.getpid() % 100000}") as hosts:
        # a process that outlives what started it, as a node whose harness was SIGKILLed
        left = subprocess.Popen([*hosts.node_prefix(), "sleep", "60"], start_new_session=True)
        end = time.monotonic() + 10
        while not netns._pids(hosts.node_ns) and time.monotonic() < end:
            time.sleep(0.05)
    assert left.wait(timeout=10) == -signal.SIGTERM
    assert not netns.exists(hosts.node_ns)
    err = capsys.readouterr().err
    assert (f"hil --netns: process(es) still running 0.3 s after the harness inside ended, sent SIGTERM: "
            f"{hosts.node_ns}: {left.pid} (sleep)") in err


def test_a_namespace_of_the_same_name_already_there_is_not_this_runs_to_empty_or_delete(monkeypatch, tmp_path):
    """A failed `ip netns add` (File exists: a leftover or another run's) was recorded as made: its processes were
    SIGTERMed and SIGKILLed and it was deleted (review)."""
    from tiny_node.hil import netns

    calls: list[str] = []

    def ip(*args: str) -> str:
        calls.append(" ".join(args))
        if args[:2] == ("netns", "add") and args[2].startswith("tnnode"):
            raise RuntimeError(f"ip netns add {args[2]}: Cannot create namespace file: File exists")
        return ""

    monkeypatch.setattr(netns, "_ip", ip)
    with pytest.raises(RuntimeError, match="File exists"), netns.two_hosts(tmp_path, tag="c1"):
        pass
    assert not any(c.endswith("tnnodec1") and not c.startswith("netns add") for c in calls), calls
    assert "netns del tnhilc1" in calls  # the one it made goes


def test_processes_left_are_ended_when_stderr_is_gone(monkeypatch):
    """After a hang-up the line naming them raised EIO before any signal or deletion: all left behind (review)."""
    from tiny_node.hil import netns

    left = subprocess.Popen(["sleep", "60"])

    class Gone:
        def write(self, text: str) -> int:
            raise OSError(errno.EIO, "Input/output error")

        def flush(self) -> None:
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(netns, "LEFT_GRACE_S", 0.2)
    monkeypatch.setattr(netns, "_pids", lambda ns: [left.pid] if left.poll() is None else [])
    monkeypatch.setattr(netns.sys, "stderr", Gone())
    try:
        netns._end_left_processes(["tnnodex"])
        assert left.wait(timeout=10) == -signal.SIGTERM
    finally:
        left.kill()


def test_ip_starts_with_the_stop_signals_blocked(monkeypatch):
    """Between the fork and its setsid() the child was in the terminal's group with default handlers: a Ctrl-C
    killed it there, 535 of 5432 times under a signal storm (review). Blocked, it stays pending for this process."""
    from tiny_node.hil import netns

    seen: list[set[int]] = []

    def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        seen.append(set(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(netns.subprocess, "run", run)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    netns._ip("netns", "list")
    assert {signal.SIGINT, signal.SIGTERM, signal.SIGHUP} <= seen[0]
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before  # and unblocked after
