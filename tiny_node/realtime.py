"""The real-time driver of the watchdog: one dedicated thread owns all timing.

The ROS executor (or any other producer) only hands frames in through :meth:`push_frame`;
it never decides.  The deadline thread sleeps in ``multiprocessing.connection.wait`` on the
model worker's result pipe, its process sentinel and a wake-up pipe, with the timeout set to
the earliest publish time, so a model result, a worker crash, a new frame or a deadline each
wake it at once.  Timing therefore does not ride on the rclpy executor or on callbacks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from tiny_node.clock import Clock
from tiny_node.decision import Decision
from tiny_node.rt import set_thread_priority
from tiny_node.watchdog import Frame, Watchdog

log = logging.getLogger(__name__)

# Upper bound on one sleep so worker supervision (restart backoff, hang detection) runs
# even when no frame arrives.
MAX_SLEEP_S = 0.05
EPOLL_SLACK_S = 0.0015


class RealtimeLoop:
    """Runs a :class:`Watchdog` against the wall clock in its own thread."""

    def __init__(
        self,
        watchdog: Watchdog,
        publish: Callable[[Decision], None],
        clock: Clock,
        worker: Any | None = None,
        priority: int = 0,
    ) -> None:
        """``priority``: the deadline thread's SCHED_FIFO priority (0: as inherited), see tiny_node.rt."""
        self.watchdog = watchdog
        self.worker = worker
        self.priority = priority
        self._publish = publish
        self._clock = clock
        self._lock = threading.Lock()
        self._mailbox: list[Frame] = []
        self._calls: list[Callable[[], None]] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)  # a full pipe already holds a wake-up: never block a caller
        self._running = False
        self._thread: threading.Thread | None = None
        self.publish_errors = 0
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

    def start(self) -> None:
        """Start the deadline thread (idempotent)."""
        if self._running:
            return
        with self._lock:
            self._mailbox = []  # nothing from before: a frame is decided by its deadline or not taken
        self.watchdog.on_start()  # the deadline thread is not running: the watchdog is ours here
        self._running = True
        self._thread = threading.Thread(target=self._run, name="tiny_node-deadline", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; open cycles are decided (fallback) before it returns."""
        if not self._running:
            return
        self._running = False
        self._wake(b"x")
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._thread = None

    def close(self) -> None:
        """Release the wake-up pipe."""
        self.stop()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def push_frame(self, frame: Frame) -> bool:
        """Hand a frame to the deadline thread (thread-safe, never blocks); False: not running, not taken."""
        with self._lock:
            if not self._running:
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
        wd = self.watchdog
        while self._running:
            handles: list[Any] = [self._wake_r]
            if self.worker is not None:
                handles.extend(self.worker.wait_handles())
            wake_at = wd.next_tick_at()
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
            self._step()
        # Stopping: frames taken and not yet opened are opened, and nothing opened stays unanswered.
        self._step()
        for d in wd.close_all("node shutting down"):
            self._emit(d)

    def _step(self) -> None:
        wd = self.watchdog
        decisions: list[Decision] = []
        with self._lock:
            frames, self._mailbox = self._mailbox, []
            calls, self._calls = self._calls, []
        for fn in calls:
            fn()
        if self.worker is not None:
            for r in self.worker.poll():
                decisions += wd.on_model_result(
                    r.seq, r.output, error=r.error, cancelled=r.cancelled
                )
        decisions += wd.on_tick()
        for d in decisions:
            self._emit(d)
        decisions = []
        for frame in frames:
            decisions += wd.on_frame(frame)
        wd.feed_model()
        for d in decisions:
            self._emit(d)

    def _emit(self, decision: Decision) -> None:
        try:
            self._publish(decision)
        except Exception:  # a publisher failure must not kill the deadline thread
            self.publish_errors += 1
            log.exception("publishing decision for frame %d failed", decision.frame_id)
