"""The real-time driver of the watchdog: one dedicated thread owns all timing.

The ROS executor (or any other producer) only hands frames in through :meth:`push_frame`;
it never decides.  The deadline thread sleeps in ``multiprocessing.connection.wait`` on the
model worker's result pipe, its process sentinel and a wake-up pipe, with the timeout set to
the earliest publish time, so a model result, a worker crash, a new frame or a deadline each
wake it at once.  Timing therefore does not ride on the rclpy executor or on callbacks.

An unexpected exception in a step does not end the thread: it is reported (the node's
logger), counted, decisions already taken are published (the watchdog's sink), every open
cycle is decided at once (fallback; the fail-safe for a frame whose cycle could not be opened
or whose close fails), untried frames go back to the mailbox (opened at once instead when the
step before failed too), and after a short wait the thread carries on.  After
:data:`MAX_CONSECUTIVE_ERRORS` failed steps in a row, or an error the guard cannot handle, it
decides what it holds, takes no more frames, and the node's diagnostics report ERROR
(docs/RELIABILITY.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from tiny_node.clock import Clock
from tiny_node.decision import Decision, ModelState, Source
from tiny_node.rt import set_thread_priority
from tiny_node.watchdog import Frame, Watchdog

log = logging.getLogger(__name__)

# Upper bound on one sleep so worker supervision (restart backoff, hang detection) runs
# even when no frame arrives.
MAX_SLEEP_S = 0.05
EPOLL_SLACK_S = 0.0015
# Frames waiting for the deadline thread.  It empties the mailbox at every wake-up, so more
# than a burst means it is stuck: further frames are refused (counted), not queued without
# end under mlockall.
MAILBOX_MAX = 16
# An error repeated at every step is logged at most this often (each one is counted).
ERROR_LOG_INTERVAL_S = 1.0
# After a failed step the thread waits this long before the next one: an error that recurs at
# once (a due time the failing call never moved on) must not become a SCHED_FIFO busy loop.
RETRY_WAIT_S = 0.005
# This many failed steps in a row (no step succeeding between them, >= 0.25 s with the wait
# above) and the thread declares itself dead: it decides what it holds and refuses frames.
MAX_CONSECUTIVE_ERRORS = 50
# stop() waits this long for the thread; one still running after it is kept (start() refuses).
STOP_TIMEOUT_S = 2.0
# The thread wakes at least every MAX_SLEEP_S; one that has not finished a wake-up for this long
# is stuck in a step (a publish that blocks, a call that hangs): it decides nothing meanwhile.
STUCK_S = 0.5


def _guarded(report: Callable[[str], object]) -> Callable[[str], None]:
    """``report`` that never raises: a failure goes to this module's logger with the message.

    Why: the deadline thread reports its errors from inside its recovery; a logger that raises
    there (an rclpy logger after its context shut down) would end the thread before it decides
    the frames it holds.
    """

    def say(text: str) -> None:
        try:
            report(text)
        except Exception:
            log.exception("reporting a deadline-thread error failed; the report was:\n%s", text)

    return say


class _Throttled:
    """Logs through ``report``, the same error at most once per :data:`ERROR_LOG_INTERVAL_S`.

    Why: an error repeated at every step (or every publish) is counted each time, but a log
    line per frame would flood the node's log.
    """

    def __init__(self, report: Callable[[str], object], now: Callable[[], float]) -> None:
        self._report, self._now = report, now
        self._last: tuple[float, str] = (-float("inf"), "")

    def __call__(self, error: str, text: Callable[[], str]) -> None:
        """Log ``text()`` unless ``error`` was logged less than the interval ago."""
        now = self._now()
        if error != self._last[1] or now - self._last[0] >= ERROR_LOG_INTERVAL_S:
            self._last = (now, error)
            self._report(text())


class RealtimeLoop:
    """Runs a :class:`Watchdog` against the wall clock in its own thread."""

    def __init__(
        self,
        watchdog: Watchdog,
        publish: Callable[[Decision], None],
        clock: Clock,
        worker: Any | None = None,
        *,
        priority: int = 0,
        report: Callable[[str], object] | None = None,
    ) -> None:
        """``priority``: the deadline thread's SCHED_FIFO priority (0: as inherited), see tiny_node.rt.

        ``report``: where errors of the deadline thread are logged (the node's logger; default
        this module's), since a traceback on stderr alone goes unseen.
        """
        self.watchdog = watchdog
        self.worker = worker
        self.priority = priority
        self._publish = publish
        self._clock = clock
        self._report = _guarded(report or log.error)
        self._lock = threading.Lock()
        self._mailbox: list[Frame] = []
        self._in_flight: float | None = None  # receipt time of a frame a driver is decoding
        self._calls: list[Callable[[], None]] = []
        # State of the step in progress, so that a failure mid-step loses nothing: frames taken
        # from the mailbox and not opened yet, and decisions taken and not published yet.
        self._taken: list[Frame] = []
        self._opening: Frame | None = None  # only while ``on_frame`` runs for it
        self._unsent: list[Decision] = []
        # Every decision the watchdog takes lands here at once: one taken by a call that then
        # raises is published all the same.
        watchdog.sink = self._unsent
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)  # a full pipe already holds a wake-up: never block a caller
        self._running = False
        # Set (under the lock) by the dying thread as it takes its last frames: a frame pushed
        # after that would never be decided, so it is refused.
        self._dead = False
        self._thread: threading.Thread | None = None
        self.publish_errors = 0
        self.step_errors = 0  # unexpected exceptions in the deadline thread, each survived
        self.last_error = ""
        self.died_of = ""  # why the deadline thread ended while it should run ("" while it runs)
        self.frames_refused = 0  # not taken while running: mailbox full or thread dead
        # decisions published after their deadline, the publish itself having blocked past it:
        # the watchdog judged them in time when it took them
        self.late_publishes = 0
        self._beat_at: float | None = None  # the end of the thread's last wake-up (clock seconds)
        self._error_log = _Throttled(self._report, clock.now)
        self._publish_log = _Throttled(self._report, clock.now)
        self.last_publish_error = ""
        self.thread_scheduling = "not started"

    @property
    def native_id(self) -> int | None:
        """The deadline thread's kernel thread id while it runs (diagnostics read its policy)."""
        t = self._thread
        return t.native_id if t is not None and t.is_alive() else None

    @property
    def running(self) -> bool:
        """Whether frames are taken: between :meth:`start` and :meth:`stop`."""
        return self._running

    @property
    def alive(self) -> bool:
        """Whether the deadline thread runs (False after :meth:`stop`, or if it ended on its own)."""
        t = self._thread
        return t is not None and t.is_alive()

    def start(self) -> None:
        """Start the deadline thread (idempotent).

        Raises RuntimeError while the thread of the last run is still alive (a :meth:`stop` that
        timed out): a second thread would drive the same watchdog at once. The old one ends
        when it gets out of what holds it (it sees it is not running), and start() works again.
        """
        if self._running:
            return
        old = self._thread
        if old is not None and old.is_alive():
            raise RuntimeError(
                f"the deadline thread of the last run has not ended (stop() gave up after {STOP_TIMEOUT_S:g} s: "
                "it is stuck in a step, e.g. a blocked publish); not starting a second one on the same watchdog")
        with self._lock:
            self._mailbox = []  # nothing from before: a frame is decided by its deadline or not taken
            self._in_flight = None
            self._dead = False
        self.watchdog.on_start()  # the deadline thread is not running: the watchdog is ours here
        self.died_of = ""
        self._beat_at = self._clock.now()  # a thread that never finishes its first wake-up is stuck too
        thread = threading.Thread(target=self._run, name="tiny_node-deadline", daemon=True)
        self._running = True  # before start(): the thread runs while it is set
        try:
            thread.start()
        except BaseException:  # no thread (e.g. "can't start new thread"): not running, nothing to join
            self._running = False
            raise
        self._thread = thread

    def stop(self) -> None:
        """Stop the thread; open cycles are decided (fallback) before it returns.

        A thread still alive after :data:`STOP_TIMEOUT_S` is reported and kept: :meth:`start` refuses to start
        another beside it, and :meth:`close` leaves the wake-up pipe open for it.
        """
        if not self._running:
            return
        self._running = False
        self._wake(b"x")
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=STOP_TIMEOUT_S)
            if self._thread.is_alive():
                self._report(f"deadline thread did not stop within {STOP_TIMEOUT_S:g} s: it is stuck in a step; "
                             "the loop cannot start again until it ends")
                return
        self._thread = None

    def close(self) -> None:
        """Release the wake-up pipe (kept open while a thread that did not stop still uses it)."""
        self.stop()
        if self.alive:  # its fd numbers could be reused by another file under the thread
            self._report("deadline thread still running at close: its wake-up pipe is left open")
            return
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def frame_in_flight(self, received_at: float | None) -> None:
        """A driver is decoding a frame received at ``received_at`` (None: done, pushed or not).

        Why: a frame received just before the camera timeout and decoded across it (13 ms for a
        1080p JPEG) was preceded by a "camera out" decision: a fail-safe brake held 2 s with
        camera_timeout_action failsafe. :meth:`push_frame` ends it too.
        """
        with self._lock:
            self._in_flight = received_at

    def push_frame(self, frame: Frame) -> bool:
        """Hand a frame to the deadline thread (thread-safe, never blocks).

        False: not taken (not running; or the thread is dead or the mailbox full, counted in
        ``frames_refused``): no decision will come for it.
        """
        with self._lock:
            self._in_flight = None
            if not self._running:
                return False
            if len(self._mailbox) >= MAILBOX_MAX or self._dead or not self.alive:
                self.frames_refused += 1
                return False
            self._mailbox.append(frame)
        self._wake(b"f")
        return True

    def run_in_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the deadline thread (e.g. change a test hook on the worker)."""
        with self._lock:
            self._calls.append(fn)
        self._wake(b"c")

    def _wake(self, why: bytes) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full: the thread is due to wake anyway
            os.write(self._wake_w, why)

    def _run(self) -> None:
        self.thread_scheduling = set_thread_priority(self.priority)
        failures = 0
        try:
            while self._running:
                try:
                    self._wait()
                    self._step()
                    self._beat_at = self._clock.now()
                    failures = 0
                except Exception as exc:
                    failures += 1
                    self._recover(exc, put_back=failures == 1)
                    if failures >= MAX_CONSECUTIVE_ERRORS:
                        raise RuntimeError(f"{failures} steps failed in a row, the last: {self.last_error}") from exc
                    time.sleep(RETRY_WAIT_S)
            # Stopping: frames taken and not yet opened are opened, and nothing opened stays unanswered.
            try:
                self._step()
            except Exception as exc:  # no step follows: recovery opens the untried frames itself
                self._recover(exc, put_back=False)
            with self._lock:  # none is left unless one slipped in: opened too (the fail-safe only if that raises)
                left, self._mailbox = self._mailbox, []
            self._close_everything("node shutting down", self._open_each(left))
        except BaseException as exc:  # even the recovery failed: say so; the node reports ERROR
            self.died_of = f"{type(exc).__name__}: {exc}"
            self._report(f"deadline thread ended: no more decisions\n{traceback.format_exc()}")
            self._last_words(f"deadline thread ended: {self.died_of}")
            raise

    def _wait(self) -> None:
        """Sleep until a frame, a model result, a worker event or the next publish time."""
        handles: list[Any] = [self._wake_r]
        if self.worker is not None:
            handles.extend(self.worker.wait_handles())
        wake_at = self.watchdog.next_tick_at()
        timeout = MAX_SLEEP_S
        if wake_at is not None:
            # epoll rounds its timeout up to whole milliseconds: wake a little early and
            # sleep the rest with nanosecond resolution.
            timeout = min(timeout, max(0.0, wake_at - self._clock.now() - EPOLL_SLACK_S))
        if not wait(handles, timeout=timeout) and wake_at is not None:
            # Sleep the rest only when the wait was aimed at ``wake_at`` (the last
            # millisecond or so), never across a capped wait: a frame arriving meanwhile
            # would wait for it.
            rest = wake_at - self._clock.now()
            if 0 < rest <= 2 * EPOLL_SLACK_S:
                time.sleep(rest)
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _step(self) -> None:
        wd = self.watchdog
        with self._lock:
            frames, self._mailbox = self._mailbox, []
            calls, self._calls = self._calls, []
            in_flight = self._in_flight
        self._taken = frames
        for fn in calls:
            try:
                fn()
            except Exception as exc:  # one call's failure touches no cycle: count it, run the rest
                self._count(exc, "a call in the deadline thread failed")
        if self.worker is not None:
            # decisions reach self._unsent through the watchdog's sink. Not fed here: the frames
            # taken are newer than the one waiting, so the first of them gets the model (the result
            # taken as come before them, as the watchdog fed in that order would decide); the one
            # waiting is superseded, and fed below only if no frame came (review: it got the model,
            # and the newer frame fell back). With several frames in one step the first takes the
            # model and the newest waits for it, as in that same order.
            for r in self.worker.poll():
                wd.on_model_result(r.seq, r.output, error=r.error, cancelled=r.cancelled, feed=False)
        # Frames taken re-arm the camera timeout, and the tick decides no "camera out" before them:
        # a frame received in time but reached after the timeout (decoding, a wake-up, a stall) is
        # no camera out (a fail-safe brake held 2 s with camera_timeout_action failsafe; a
        # decision stamped after the frame's otherwise).
        for frame in frames:
            wd.frame_arrived(frame)
        due = wd.next_camera_timeout_at()
        # a frame received before the timeout and being decoded holds it off, for a camera timeout
        # from its receipt at most (and the half frame period a held-off check waits): an executor
        # wedged in a decode is a camera out all the same
        decoding = (in_flight is not None and due is not None and in_flight <= due
                    and self._clock.now() < in_flight + wd.cfg.float("camera_timeout_s"))
        wd.on_tick(frames_waiting=bool(frames) or decoding)
        self._flush()
        while self._taken:
            self._opening = self._taken.pop(0)
            wd.on_frame(self._opening)
            self._opening = None
        wd.feed_model()
        self._flush()

    def _flush(self) -> None:
        while self._unsent:
            self._emit(self._unsent.pop(0))

    def _count(self, exc: Exception, what: str) -> None:
        """Count an error and log it with its traceback (the same one at most once a second)."""
        self.step_errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        self._error_log(self.last_error, lambda: f"{what} (error {self.step_errors}):\n{traceback.format_exc()}")

    def _recover(self, exc: Exception, *, put_back: bool) -> None:
        """After a failed step: decide everything open now, so nothing is lost, and carry on.

        Decisions already taken go out (the watchdog's sink); every open cycle is closed with
        the rule verdict; only a frame whose ``on_frame`` failed before its cycle was opened
        gets the fail-safe (its rule verdict is not to be trusted), through the watchdog so
        it is held and counted. Frames not tried yet: an error elsewhere (a tick, a poll) says
        nothing about them. With ``put_back`` (a first failure) they go back to the mailbox
        (with a wake-up) and are decided normally at the next step; without it (the step
        before failed too, or no step follows: stopping) they are opened here, one try each,
        and decided now by the rules: an error that recurs before ``on_frame`` would otherwise
        hold them until the thread gives up.
        """
        self._count(exc, "deadline thread step failed; open cycles decided by the fallback")
        opening, self._opening = self._opening, None
        untried, self._taken = self._taken, []
        failed = [] if opening is None else [opening]
        if put_back:
            with self._lock:
                self._mailbox[:0] = untried
            if untried:  # they are due at the next step: it must not sleep up to MAX_SLEEP_S first
                self._wake(b"r")
        else:
            failed += self._open_each(untried)
        self._close_everything(f"deadline thread error: {self.last_error}", failed)

    def _open_each(self, frames: list[Frame]) -> list[Frame]:
        """Open a cycle for each frame (one try each); returns the frames whose ``on_frame`` raised.

        Their decisions (if any) are in the sink; a frame returned gets the fail-safe from
        :meth:`_close_everything` unless its cycle was opened before the error.
        """
        failed = []
        for frame in frames:
            try:
                self.watchdog.on_frame(frame)
            except Exception as exc:
                self._count(exc, "opening a frame's cycle in recovery failed; it gets the fail-safe")
                failed.append(frame)
        return failed

    def _last_words(self, why: str) -> None:
        """The thread is ending on an error: decide every cycle and frame it holds (best effort)."""
        opening, self._opening = self._opening, None
        with self._lock:  # in the same block as the mailbox is taken: no frame slips in after it
            frames, self._mailbox = ([] if opening is None else [opening]) + self._taken + self._mailbox, []
            self._dead = True
        self._taken = []
        self._close_everything(why, frames)  # the frames of cycles still open are answered too

    def _close_everything(self, why: str, frames: list[Frame]) -> None:
        """Publish what is taken, close every open cycle, and the fail-safe for ``frames`` not opened.

        Never raises: each cycle is closed on its own, and one whose close fails gets the
        fail-safe instead, so a recurring error cannot leave a cycle unanswered.
        """
        self._flush()
        wd = self.watchdog
        try:
            held = wd.open_frames()
        except Exception as exc:
            self._count(exc, "listing the open cycles failed")
            held = []
        for seq, frame in held:
            try:
                wd.close_cycle(seq, why)
            except Exception as exc:  # a decision taken before the error is in the sink
                self._count(exc, f"closing cycle {seq} failed")
                if wd.is_open(seq):
                    self._decide_failsafe(frame, why, seq)
            self._flush()
        opened = {id(frame) for _, frame in held}
        for frame in frames:
            if id(frame) not in opened:
                self._decide_failsafe(frame, why)

    def _decide_failsafe(self, frame: Frame, why: str, seq: int | None = None) -> None:
        """The fail-safe through the watchdog (hold, counts); if even that fails, one of our own."""
        try:
            self.watchdog.close_failsafe(frame, why, seq)
        except Exception as exc:
            self._count(exc, "the watchdog's fail-safe failed; publishing one without it")
            self._unsent.append(self._failsafe(frame, why))
        self._flush()

    def _failsafe(self, frame: Frame, why: str) -> Decision:
        """The last resort when the watchdog cannot decide at all: ``rules.failsafe``, frame_id 0."""
        verdict = self.watchdog.failsafe_verdict(why)
        return Decision(
            frame_id=0, stamp_ns=frame.stamp_ns, brake=verdict.brake,
            source=Source.RULES if self.worker is None else Source.FALLBACK,
            model_state=ModelState.DISABLED if self.worker is None else ModelState.UNAVAILABLE,
            confidence=1.0, reason=verdict.reason, received_at=frame.received_at,
            deadline_at=self.watchdog.frame_deadline(frame), decided_at=self._clock.now(), frame_fault=why,
            rules=verdict,
        )

    def stuck_s(self) -> float:
        """How long the running thread has been inside one wake-up past :data:`STUCK_S` (0: not stuck).

        Why: a thread blocked in a publish is alive, errs nothing and misses no deadline it has
        judged: the diagnostic said "all frames decided in time" while no decision went out and
        frames were refused.
        """
        beat = self._beat_at
        if not self._running or not self.alive or beat is None:
            return 0.0
        since = self._clock.now() - beat
        return since if since > STUCK_S else 0.0

    def _emit(self, decision: Decision) -> None:
        try:
            self._publish(decision)
            # judged in time when taken (one taken late is the watchdog's miss already), sent late
            if decision.decided_at <= decision.deadline_at < self._clock.now():
                self.late_publishes += 1
        except Exception as exc:  # a publisher failure must not kill the deadline thread; counted, logged
            self.publish_errors += 1
            self.last_publish_error = f"{type(exc).__name__}: {exc}"
            self._publish_log(self.last_publish_error, lambda: (
                f"publishing the decision for frame {decision.frame_id} failed (publish error "
                f"{self.publish_errors}): the decision is lost\n{traceback.format_exc()}"))
