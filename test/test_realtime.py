"""The deadline thread against the real monotonic clock (no ROS): it must react to frames at once.

Bounds here are an order of magnitude wider than the thread's measured jitter (a few ms,
docs/BENCHMARKS.md); they catch a loop that sleeps through a frame, not scheduling noise.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tiny_node import realtime
from tiny_node.clock import ManualClock, MonotonicClock
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
    clock, sensors, wd, out = _core(params)
    loop = RealtimeLoop(wd, out, clock)
    loop.start()
    return loop, out, sensors, clock


@contextlib.contextmanager
def _running(*args: Any, **kw: Any) -> Iterator[RealtimeLoop]:
    """A started ``RealtimeLoop(*args, **kw)``, closed however the test ends."""
    loop = RealtimeLoop(*args, **kw)
    loop.start()
    try:
        yield loop
    finally:
        loop.close()


def _core(params: dict | None = None, model=None) -> tuple[MonotonicClock, SensorState, Watchdog, _Collector]:
    """A watchdog on the real clock with ``params`` (and ``model``), and a collector for a loop's decisions."""
    clock = MonotonicClock()
    cfg = make_config(params or {})
    sensors = SensorState(cfg.rules)
    return clock, sensors, Watchdog(cfg, sensors, clock, model), _Collector()


def _fresh(sensors: SensorState, clock: MonotonicClock, i: int) -> None:
    now = clock.now()
    sensors.update_range(RangeReading(40.0 + 0.01 * (i % 3), 0.2, 150.0, round(now * 1e9), now))
    sensors.update_odometry(10.0, now)


def _push_fresh(loop: RealtimeLoop, sensors: SensorState, clock: MonotonicClock, n: int) -> None:
    """Frames 1..n, 10 ms apart, each after fresh range and odometry; each must be taken."""
    for i in range(1, n + 1):
        _fresh(sensors, clock, i)
        assert loop.push_frame(Frame(i, clock.now(), IMG))
        time.sleep(0.01)


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


class _Fatal(BaseException):
    """Not an Exception: what no guard catches (the thread ends)."""


def _failing_once(fn, on_call: int, exc: BaseException):
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == on_call:
            raise exc
        return fn(*args, **kwargs)

    return wrapped


def test_an_error_in_a_step_is_survived_and_costs_no_decision():
    """One unexpected exception in the core killed the thread: no decisions, frames piling up."""
    reports: list[str] = []
    clock, sensors, wd, out = _core()
    wd.on_frame = _failing_once(wd.on_frame, 3, ValueError("simulated core bug"))
    with _running(wd, out, clock, report=reports.append) as loop:
        _push_fresh(loop, sensors, clock, 6)
        out.wait_for(lambda g: len(g) == 6)
        assert loop.alive and loop.step_errors == 1 and loop.last_error == "ValueError: simulated core bug"
        by_stamp = {d.stamp_ns: d for _, d in out.got}
        assert sorted(by_stamp) == [1, 2, 3, 4, 5, 6]  # each frame once, the failing one too
        assert by_stamp[3].brake and by_stamp[3].reason.startswith("fail-safe brake: deadline thread error")
        assert "simulated core bug" in by_stamp[3].frame_fault and by_stamp[3].rules is not None
        assert not by_stamp[1].brake and not by_stamp[2].brake
        # the fail-safe went through the watchdog: a frame id, counted, and held like any brake
        assert by_stamp[3].frame_id > 0 and wd.stats.decisions == 6 and wd.stats.brakes == 4
        assert all(by_stamp[s].hold and "holding brake" in by_stamp[s].reason for s in (4, 5, 6))
        assert len(reports) == 1 and "Traceback" in reports[0] and "simulated core bug" in reports[0]


class _SilentModel:
    """A model port that takes every frame and never answers (cycles stay open to the deadline)."""

    busy_seq = None

    def submit(self, seq, image, features, frame_time_s) -> bool:
        self.busy_seq = seq
        return True

    def cancel(self, seq) -> None:
        self.busy_seq = None


def test_an_error_with_cycles_open_decides_them_at_once_by_the_fallback():
    reports: list[str] = []
    clock, sensors, wd, out = _core({"deadline_ms": 500.0}, _SilentModel())
    with _running(wd, out, clock, report=reports.append) as loop:
        _fresh(sensors, clock, 0)
        assert loop.push_frame(Frame(1, clock.now(), IMG))
        time.sleep(0.05)
        assert out.got == [] and wd.open_cycles == 1  # waiting for the model, deadline 0.5 s away

        def boom() -> None:
            raise RuntimeError("bad parameter hand-over")

        wd.on_tick = _failing_once(wd.on_tick, 1, RuntimeError("tick failed"))
        loop.run_in_loop(boom)  # a failing call is counted, and does not stop the step
        out.wait_for(lambda g: len(g) == 1, timeout=0.3)  # at once, not at the deadline
        d = out.got[0][1]
        assert d.stamp_ns == 1 and d.model_state.value == "unavailable" and "tick failed" in d.reason
        # the failing call and the failing tick are two steps of the loop, in either order: the
        # decision may be out before the call's error is counted (seen once under a loaded CPU)
        end = time.monotonic() + 0.3
        while loop.step_errors < 2 and time.monotonic() < end:
            time.sleep(0.005)
        assert loop.alive and loop.step_errors == 2 and wd.open_cycles == 0
        _fresh(sensors, clock, 1)
        assert loop.push_frame(Frame(2, clock.now(), IMG))  # and it goes on
        # at its 0.5 s deadline (the model is silent); camera-timeout decisions may follow it
        out.wait_for(lambda g: any(d.stamp_ns == 2 for _, d in g), timeout=3.0)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread's death, on purpose
def test_the_mailbox_is_bounded_and_a_dead_thread_takes_no_frames():
    from tiny_node.realtime import MAILBOX_MAX

    clock, sensors, wd, _ = _core()
    release = threading.Event()
    got: list[Decision] = []

    def slow_publish(d: Decision) -> None:
        release.wait(5.0)  # the deadline thread stuck in a publish
        got.append(d)

    reports: list[str] = []
    loop = RealtimeLoop(wd, slow_publish, clock, report=reports.append)
    loop.start()
    try:
        _fresh(sensors, clock, 0)
        assert loop.push_frame(Frame(0, clock.now(), IMG))
        time.sleep(0.05)  # the thread takes frame 0 and blocks publishing it
        taken = [loop.push_frame(Frame(i, clock.now(), IMG)) for i in range(1, MAILBOX_MAX + 5)]
        assert taken == [True] * MAILBOX_MAX + [False] * 4 and loop.frames_refused == 4
        release.set()
        end = time.monotonic() + 3
        while len(got) < MAILBOX_MAX + 1 and time.monotonic() < end:
            time.sleep(0.01)
        assert sorted(d.stamp_ns for d in got) == list(range(MAILBOX_MAX + 1))  # every frame taken, decided

        # now the thread dies (an error no guard catches): it decides what it holds, takes nothing more
        wd.on_frame = _failing_once(wd.on_frame, 1, _Fatal("dead"))
        got.clear()
        assert loop.push_frame(Frame(100, clock.now(), IMG))
        end = time.monotonic() + 3
        while loop.alive and time.monotonic() < end:
            time.sleep(0.01)
        assert not loop.alive and loop.running and loop.died_of == "_Fatal: dead"
        assert [d.stamp_ns for d in got] == [100] and got[0].reason.startswith("fail-safe brake: deadline thread ended")
        assert not loop.push_frame(Frame(101, clock.now(), IMG)) and loop.frames_refused == 5
        assert "deadline thread ended" in reports[-1]
    finally:
        release.set()
        loop.close()


def test_a_recurring_error_does_not_spin_the_thread():
    """A no-frame decision failing at every try: the thread retried at once (36,000 errors in 0.5 s at FIFO 30)."""
    clock, sensors, wd, _ = _core({"camera_timeout_s": 0.1})

    def bad(now):
        raise KeyError("camera-timeout bug")

    wd._decide_without_frame = bad
    with _running(wd, _Collector(), clock, report=lambda s: None) as loop:
        _fresh(sensors, clock, 0)
        loop.push_frame(Frame(1, clock.now(), IMG))
        time.sleep(0.6)
        assert loop.alive and 1 <= loop.step_errors <= 12, loop.step_errors  # one per frame period (0.1 s)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread's death, on purpose
def test_a_step_failing_every_time_backs_off_then_the_thread_declares_itself_dead():
    from tiny_node.realtime import MAX_CONSECUTIVE_ERRORS, RETRY_WAIT_S

    reports: list[str] = []
    clock, sensors, wd, out = _core({"deadline_ms": 500.0, "camera_timeout_action": "none"}, _SilentModel())
    with _running(wd, out, clock, report=reports.append) as loop:
        _fresh(sensors, clock, 0)
        assert loop.push_frame(Frame(1, clock.now(), IMG))
        time.sleep(0.05)

        def broken(frames_waiting=False):
            raise RuntimeError("tick bug")

        wd.on_tick = broken
        started = time.monotonic()
        loop.run_in_loop(lambda: None)
        end = started + 15  # a bound, not a figure: it ends when the thread does (3 s was short under load)
        while loop.alive and time.monotonic() < end:
            time.sleep(0.01)
        assert not loop.alive and loop.step_errors == MAX_CONSECUTIVE_ERRORS
        assert time.monotonic() - started >= MAX_CONSECUTIVE_ERRORS * RETRY_WAIT_S
        assert "steps failed in a row" in loop.died_of and "tick bug" in loop.died_of
        assert [d.stamp_ns for _, d in out.got] == [1]  # the open cycle decided once, at the first error
        assert not loop.push_frame(Frame(2, clock.now(), IMG))


class _Answer:
    brake, confidence, p_brake, label, conflict_s, conflict_brake, tracks = False, 0.9, 0.1, "go", 9.0, False, ""


class _Result:
    def __init__(self, seq: int) -> None:
        self.seq, self.output, self.error, self.cancelled = seq, _Answer(), None, False


class _ScriptedWorker:
    """Model port and loop worker: answers when told; the submits listed in ``fail_submits`` raise."""

    def __init__(self, fail_submits=()) -> None:
        self.busy_seq = None
        self.submits = 0
        self.fail_submits = set(fail_submits)
        self.results: list[_Result] = []
        self.submitted: list[int] = []

    def submit(self, seq, image, features, frame_time_s) -> bool:
        self.submits += 1
        self.submitted.append(seq)
        if self.submits in self.fail_submits:
            raise OSError(28, "No space left on device (shm write)")
        self.busy_seq = seq
        return True

    def cancel(self, seq) -> None:
        self.busy_seq = None

    def wait_handles(self) -> list:
        return []

    def poll(self) -> list[_Result]:
        out, self.results = self.results, []
        if out:
            self.busy_seq = None
        return out


def test_a_result_and_a_newer_frame_in_one_step_give_the_model_the_newer_frame():
    """The step read the result first and fed the model the frame waiting since before, and the newer
    frame taken in the same step found the model busy: the model ran on an outdated frame, and the
    newest got the rules (review). In arrival order the watchdog gives the model the newest."""
    w = _ScriptedWorker()
    clock, sensors, wd, out = _core({"deadline_ms": 500.0, "camera_timeout_action": "none"}, w)
    loop = RealtimeLoop(wd, out, clock, w, report=lambda s: None)  # stepped by hand: one step, both inputs
    _fresh(sensors, clock, 0)
    for stamp in (1, 2):  # 1 to the model, 2 waits
        loop._mailbox.append(Frame(stamp, clock.now(), IMG))
        loop._step()
    w.results.append(_Result(1))
    loop._mailbox.append(Frame(3, clock.now(), IMG))
    loop._step()
    assert w.submitted == [1, 3] and w.busy_seq == 3
    assert [d.stamp_ns for _, d in out.got] == [1] and out.got[0][1].model_state.value == "on_time"
    assert "a newer frame was given to the model" in wd._open[2].unavailable_why


def test_a_decision_taken_by_a_call_that_then_raises_is_published():
    """on_model_result decided frame 1 on time, then its feed_model raised: the decision was lost."""
    w = _ScriptedWorker(fail_submits={2})
    clock, sensors, wd, out = _core({"deadline_ms": 500.0, "camera_timeout_action": "none"}, w)
    with _running(wd, out, clock, w, report=lambda s: None) as loop:
        _fresh(sensors, clock, 0)
        loop.push_frame(Frame(1, clock.now(), IMG))  # to the model
        time.sleep(0.05)
        loop.push_frame(Frame(2, clock.now(), IMG))  # waits: the model is busy
        time.sleep(0.05)
        w.results.append(_Result(1))
        loop.run_in_loop(lambda: None)  # wake: the answer, then frame 2's submit raises
        out.wait_for(lambda g: len(g) == 2, timeout=0.3)
        time.sleep(0.05)
        by_stamp = {d.stamp_ns: d for _, d in out.got}
        assert len(out.got) == 2 and loop.step_errors == 1
        assert by_stamp[1].model_state.value == "on_time" and by_stamp[2].model_state.value == "unavailable"


def test_an_error_closing_one_due_cycle_loses_neither_it_nor_the_one_before():
    clock, sensors, wd, out = _core({"deadline_ms": 200.0, "camera_timeout_action": "none"}, _SilentModel())
    wd._close = _failing_once(wd._close, 2, ArithmeticError("close bug"))
    with _running(wd, out, clock, report=lambda s: None) as loop:
        _fresh(sensors, clock, 0)
        now = clock.now()
        loop.push_frame(Frame(1, now, IMG))
        loop.push_frame(Frame(2, now, IMG))
        out.wait_for(lambda g: len(g) == 2, timeout=1.0)
        time.sleep(0.05)
        assert sorted(d.stamp_ns for _, d in out.got) == [1, 2] and wd.stats.decisions == 2


class _CancelFails(_SilentModel):
    def cancel(self, seq) -> None:
        raise RuntimeError("cancel bug")


def test_a_recurring_cancel_error_costs_no_decision_and_does_not_kill_the_thread():
    """cancel raised before the close, in on_tick and again in the recovery's close_all: the thread died, the cycle unanswered."""
    clock, sensors, wd, out = _core({"deadline_ms": 100.0, "camera_timeout_action": "none"}, _CancelFails())
    with _running(wd, out, clock, report=lambda s: None) as loop:
        _fresh(sensors, clock, 0)
        loop.push_frame(Frame(1, clock.now(), IMG))
        out.wait_for(lambda g: len(g) == 1, timeout=1.0)
        time.sleep(0.1)
        assert loop.alive and [d.stamp_ns for _, d in out.got] == [1] and wd.open_cycles == 0
        assert out.got[0][1].model_state.value == "late" and "cancel bug" in loop.last_error


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread's death, on purpose
def test_the_last_words_answer_the_cycles_still_open_even_when_closing_them_fails():
    clock, sensors, wd, out = _core({"deadline_ms": 500.0, "camera_timeout_action": "none"}, _SilentModel())
    with _running(wd, out, clock, report=lambda s: None) as loop:
        _fresh(sensors, clock, 0)
        loop.push_frame(Frame(1, clock.now(), IMG))
        time.sleep(0.05)
        assert wd.open_cycles == 1

        def close_fails(seq, why):
            raise RuntimeError("close bug")

        def die() -> None:
            raise _Fatal("gone")

        wd.close_cycle = close_fails
        loop.run_in_loop(die)
        out.wait_for(lambda g: len(g) == 1, timeout=1.0)
        end = time.monotonic() + 2
        while loop.alive and time.monotonic() < end:
            time.sleep(0.01)
        d = out.got[0][1]
        assert not loop.alive and len(out.got) == 1 and d.stamp_ns == 1 and d.brake and d.frame_id == 1
        assert d.reason.startswith("fail-safe brake: deadline thread ended") and wd.open_cycles == 0


def test_an_error_outside_on_frame_gives_no_frame_a_fail_safe():
    """A failing tick gave the first frame taken a fail-safe brake it never earned (unheld, uncounted, frame_id 0)."""
    clock, sensors, wd, out = _core()
    armed = {"on": False}
    tick = wd.on_tick

    def on_tick(frames_waiting=False):
        if armed["on"]:
            armed["on"] = False
            raise ZeroDivisionError("tick bug")
        return tick(frames_waiting)

    wd.on_tick = on_tick
    with _running(wd, out, clock, report=lambda s: None) as loop:
        for i in range(1, 5):
            _fresh(sensors, clock, i)
            armed["on"] = i == 3
            loop.push_frame(Frame(i, clock.now(), IMG))
            time.sleep(0.03)
        out.wait_for(lambda g: len(g) == 4)
        assert loop.step_errors == 1
        assert [(d.stamp_ns, d.brake, d.frame_id) for _, d in out.got] == [(i, False, i) for i in range(1, 5)]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread's death, on purpose
def test_a_frame_pushed_while_the_dying_thread_publishes_its_last_words_is_refused():
    """It was taken (True) into a mailbox no one would read again: never decided."""
    clock, sensors, wd, out = _core({"camera_timeout_action": "none"})
    in_last_words = threading.Event()

    def publish(d: Decision) -> None:  # publishing the last words takes a moment (DDS)
        out(d)
        if "deadline thread ended" in d.reason:
            in_last_words.set()
            time.sleep(0.2)

    wd.on_frame = _failing_once(wd.on_frame, 1, _Fatal("gone"))
    with _running(wd, publish, clock, report=lambda s: None) as loop:
        _fresh(sensors, clock, 0)
        assert loop.push_frame(Frame(1, clock.now(), IMG))
        assert in_last_words.wait(2)
        assert not loop.push_frame(Frame(2, clock.now(), IMG))  # the thread still runs, but is dying
        assert loop.frames_refused == 1
        time.sleep(0.3)
        assert [d.stamp_ns for _, d in out.got] == [1]
        loop.stop()
        loop.start()  # a new thread takes frames again
        assert loop.push_frame(Frame(3, clock.now(), IMG))
        out.wait_for(lambda g: len(g) == 2)


def test_publish_errors_are_counted_and_reported_through_the_loops_logger_rate_limited():
    clock, sensors, wd, _ = _core({"camera_timeout_action": "none"})
    reports: list[str] = []

    def broken(d: Decision) -> None:
        raise RuntimeError("publisher gone")

    with _running(wd, broken, clock, report=reports.append) as loop:
        for i in range(3):
            _fresh(sensors, clock, i)
            loop.push_frame(Frame(i + 1, clock.now(), IMG))
            time.sleep(0.02)
        time.sleep(0.05)
        assert loop.publish_errors == 3 and loop.last_publish_error == "RuntimeError: publisher gone"
        assert len(reports) == 1 and "publisher gone" in reports[0] and "Traceback" in reports[0]


def test_a_report_callback_that_raises_costs_no_decision_and_does_not_kill_the_thread(caplog):
    """The node's logger can raise (rclpy after shutdown) while the thread reports an error."""
    clock, sensors, wd, out = _core()
    wd.on_frame = _failing_once(wd.on_frame, 2, ValueError("simulated core bug"))

    def broken_report(text: str) -> None:
        raise RuntimeError("logger gone")

    with _running(wd, out, clock, report=broken_report) as loop:
        _push_fresh(loop, sensors, clock, 4)
        out.wait_for(lambda g: len(g) == 4)
        assert loop.alive and loop.step_errors == 1
        assert sorted(d.stamp_ns for _, d in out.got) == [1, 2, 3, 4]
        # the report is not lost: it reaches this module's logger, with why the callback failed
        failed = [r for r in caplog.records if "reporting a deadline-thread error failed" in r.getMessage()]
        assert failed and "simulated core bug" in failed[0].getMessage() and failed[0].exc_info is not None


def test_a_frame_put_back_after_a_transient_error_is_decided_at_once(monkeypatch):
    """Review 3, finding 1: the untried frame went back to the mailbox without a wake-up, so the
    next step slept up to MAX_SLEEP_S (50 ms) first: a deadline miss for a lone frame."""
    # A long capped sleep: without a wake-up the put-back frame waits for it (not scheduling noise).
    monkeypatch.setattr(realtime, "MAX_SLEEP_S", 1.0)
    clock, sensors, wd, out = _core({"camera_timeout_action": "none"})  # deadline 50 ms
    loop = RealtimeLoop(wd, out, clock, report=lambda s: None)
    tick = wd.on_tick
    armed = {"on": True}

    def on_tick(frames_waiting=False):
        if armed["on"] and loop._taken:  # fails once, in the step that took the frame
            armed["on"] = False
            raise ZeroDivisionError("transient tick bug")
        return tick(frames_waiting)

    wd.on_tick = on_tick
    loop.start()
    try:
        _fresh(sensors, clock, 0)
        time.sleep(0.06)  # the thread settles into a capped wait
        _fresh(sensors, clock, 1)
        assert loop.push_frame(Frame(1, clock.now(), IMG))
        out.wait_for(lambda g: len(g) == 1)
        [(_, d)] = out.got
        assert loop.step_errors == 1 and not armed["on"]
        assert not d.brake and d.frame_id == 1 and wd.stats.deadline_misses == 0
        assert d.latency_ms < 50, d.latency_ms
    finally:
        loop.close()


class _PollBreaks(_ScriptedWorker):
    """A worker whose result pipe breaks for good once told (every poll raises)."""

    broken = False

    def poll(self) -> list[_Result]:
        if self.broken:
            raise EOFError("result pipe")
        return super().poll()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # it may give up at the end
def test_frames_taken_by_steps_failing_in_a_row_before_on_frame_are_decided_at_once_by_the_rules():
    """Review 3, finding 2: each failing step took the put-back frames and put them back untried,
    so none was decided until the thread gave up 50 steps later (all fail-safe brakes, 0.3-0.65 s late)."""
    worker = _PollBreaks()
    clock, sensors, wd, out = _core(None, worker)  # deadline 50 ms
    with _running(wd, out, clock, worker, report=lambda s: None) as loop:
        for i in range(1, 9):  # 30 Hz
            _fresh(sensors, clock, i)
            if i == 3:
                worker.broken = True
            assert loop.push_frame(Frame(i, clock.now(), IMG))
            time.sleep(1 / 30)
        out.wait_for(lambda g: len(g) == 8)
        time.sleep(0.05)
        by_stamp = {d.stamp_ns: d for _, d in out.got}
        assert sorted(by_stamp) == list(range(1, 9)) and len(out.got) == 8
        assert loop.step_errors >= 6
        # at once: the bug's were 300-650 ms late; not "no deadline miss" on a 50 ms real-time deadline,
        # which a loaded CPU misses by a few ms (review: 50.6-63.5 ms)
        assert all(d.latency_ms < 250 for _, d in out.got), [(d.stamp_ns, round(d.latency_ms, 1)) for _, d in out.got]
        for s in range(3, 9):  # by the rules (clear road), not the fail-safe
            assert not by_stamp[s].brake and not by_stamp[s].reason.startswith("fail-safe"), by_stamp[s].reason


def test_a_transient_error_in_the_last_step_at_stop_gives_no_frame_a_fail_safe():
    """Review 3, finding 4: the frame taken by the last step went back to the mailbox untried, then
    got rules.failsafe (a brake it never earned, and its hold) as the node stopped."""
    clock, sensors, wd, out = _core({"camera_timeout_action": "none"})
    loop = RealtimeLoop(wd, out, clock, report=lambda s: None)
    tick = wd.on_tick
    stopping = threading.Event()

    def on_tick(frames_waiting=False):
        if stopping.is_set() and not loop._running and loop._taken:  # the last step, with a frame taken
            raise ZeroDivisionError("transient tick bug")
        return tick(frames_waiting)

    wd.on_tick = on_tick
    loop.start()
    try:
        _fresh(sensors, clock, 0)
        time.sleep(0.02)  # the thread's first steps are over: it waits (no frame, no tick due)
        with loop._lock:  # the frame arrives as stop() is called: taken by the last step
            loop._running = False
            loop._mailbox.append(Frame(1, clock.now(), IMG))
        loop._running = True
        stopping.set()
        loop.stop()
        [(_, d)] = out.got
        # the step woken by stop() fails (frame put back), then the last one (frame opened by recovery)
        assert loop.step_errors in (1, 2) and loop.last_error == "ZeroDivisionError: transient tick bug"
        assert d.stamp_ns == 1 and d.frame_id == 1 and not d.brake, d.reason
        assert not d.reason.startswith("fail-safe") and wd._hold_until < clock.now()
        assert wd.stats.cycles == 1 and wd.stats.decisions == 1 and wd.open_cycles == 0
    finally:
        loop.close()


def test_start_refuses_while_the_thread_a_timed_out_stop_left_behind_still_runs(monkeypatch):
    """Review 3, finding 5: stop() gave up on a thread stuck in a publish and forgot it; start()
    then ran a second deadline thread beside it, both stepping the same watchdog."""
    monkeypatch.setattr(realtime, "STOP_TIMEOUT_S", 0.1)
    clock, sensors, wd, out = _core({"camera_timeout_action": "none"})
    release = threading.Event()

    def publish(d: Decision) -> None:
        if d.stamp_ns == 1:
            release.wait(3.0)  # a DDS publish blocked
        out(d)

    reports: list[str] = []
    loop = RealtimeLoop(wd, publish, clock, report=reports.append)
    loop.start()
    try:
        _fresh(sensors, clock, 0)
        assert loop.push_frame(Frame(1, clock.now(), IMG))
        time.sleep(0.05)
        loop.stop()  # deactivate: the thread is stuck publishing frame 1
        assert loop.alive and any("did not stop" in r for r in reports)
        with pytest.raises(RuntimeError, match="has not ended"):
            loop.start()  # activate again: refused, not a second thread
        assert not loop.running and not loop.push_frame(Frame(2, clock.now(), IMG))
        assert [t.name for t in threading.enumerate()].count("tiny_node-deadline") == 1
        release.set()
        end = time.monotonic() + 2
        while loop.alive and time.monotonic() < end:
            time.sleep(0.01)
        assert not loop.alive and [d.stamp_ns for _, d in out.got] == [1]
        loop.start()  # the old thread ended: a new one starts
        _fresh(sensors, clock, 3)
        assert loop.push_frame(Frame(3, clock.now(), IMG))
        out.wait_for(lambda g: len(g) == 2)
        assert [d.stamp_ns for _, d in out.got] == [1, 3]
        assert [t.name for t in threading.enumerate()].count("tiny_node-deadline") == 1
    finally:
        release.set()
        loop.close()


@pytest.mark.parametrize("action", ["failsafe", "rules"])
@pytest.mark.parametrize("reached_after_s", [0.015, 0.55])
def test_a_frame_received_before_the_camera_timeout_is_not_preceded_by_a_camera_out_decision(action, reached_after_s):
    """A step that opened its frames after the tick decided "camera: no frame" for a frame already
    taken, received 10 ms before the timeout: with failsafe a brake held 2 s over a live camera,
    with rules a decision stamped after the frame's that followed it. Driven as the thread drives it."""
    clock = ManualClock(100.0)
    cfg = make_config({"camera_timeout_s": 0.5, "camera_timeout_action": action})
    sensors = SensorState(cfg.rules)
    out: list[Decision] = []
    loop = RealtimeLoop(Watchdog(cfg, sensors, clock, None), out.append, clock)
    try:
        for t, stamp in ((100.0, 100_000_000_000), (100.49, 100_490_000_000)):
            sensors.update_range(RangeReading(60.0 + t - 100.0, 0.2, 150.0, round(t * 1e9), t))
            sensors.update_odometry(10.0, t)
            loop._mailbox.append(Frame(stamp, t, IMG))
            clock.set(t + reached_after_s)  # decoded and woken for (or a stall) after its receipt
            loop._step()
        assert [(d.stamp_ns, d.brake, d.hold, d.no_frame) for d in out] == [
            (100_000_000_000, False, False, False), (100_490_000_000, False, False, False)]
        clock.set(101.7)  # the camera out for real: decided without a frame, as before
        sensors.update_range(RangeReading(61.7, 0.2, 150.0, 101_700_000_000, 101.7))
        sensors.update_odometry(10.0, 101.7)
        loop._step()
        assert out[-1].no_frame and out[-1].brake == (action == "failsafe")
    finally:
        loop.close()


def test_a_frame_being_decoded_across_the_camera_timeout_is_not_preceded_by_a_camera_out_decision():
    """Received 10 ms before the timeout, a 1080p JPEG is decoded for 13 ms on the executor thread:
    the deadline thread woke at the timeout with an empty mailbox and decided "camera out" (a
    fail-safe brake held 2 s) before it. Driven as the node and the thread do, on a manual clock."""
    clock = ManualClock(100.0)
    cfg = make_config({"camera_timeout_s": 0.5, "camera_timeout_action": "failsafe"})
    sensors = SensorState(cfg.rules)
    out: list[Decision] = []
    loop = RealtimeLoop(Watchdog(cfg, sensors, clock, None), out.append, clock)
    try:
        for t in (100.0, 100.49):
            sensors.update_range(RangeReading(60.0 + t - 100.0, 0.2, 150.0, round(t * 1e9), t))
            sensors.update_odometry(10.0, t)
        loop._mailbox.append(Frame(100_000_000_000, 100.0, IMG))
        loop._step()
        loop.frame_in_flight(100.49)  # the executor decodes it
        clock.set(100.501)
        loop._step()  # the thread woke at the timeout
        assert len(out) == 1
        assert loop.watchdog.next_tick_at() > clock.now()  # looked at again later, not in a spin
        clock.set(100.503)
        loop.frame_in_flight(None)  # decoded: handed in (by hand, as the loop is not started)
        loop._mailbox.append(Frame(100_490_000_000, 100.49, IMG))
        loop._step()
        assert [(d.stamp_ns, d.brake, d.no_frame) for d in out] == [
            (100_000_000_000, False, False), (100_490_000_000, False, False)]
        # a decode that never ends (an executor wedged in it) holds the camera out off for one
        # camera timeout from the frame's receipt, not for ever
        loop.frame_in_flight(100.6)
        steps = 0
        while not out[-1].no_frame and steps < 100:
            clock.set(max(clock.now(), loop.watchdog.next_tick_at() or clock.now()) + 0.001)
            loop._step()
            steps += 1
        # within a camera timeout of its receipt (101.1), and the half frame period the check waits
        assert out[-1].no_frame and out[-1].brake and 101.1 <= out[-1].decided_at <= 101.1 + 0.5 * 0.49 + 0.01
        loop.frame_in_flight(None)
        # a frame received after the timeout, still being decoded, leaves the camera out
        loop.frame_in_flight(101.2)
        n = len(out)
        clock.set(max(clock.now(), loop.watchdog.next_tick_at()) + 0.001)
        loop._step()
        assert len(out) == n + 1 and out[-1].no_frame and out[-1].brake
    finally:
        loop.close()
