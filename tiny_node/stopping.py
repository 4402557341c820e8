"""How a command was stopped, and its exit status: Ctrl-C, or SIGTERM / SIGHUP raised as it.

Why a module: the CLI raises these signals as :class:`Terminated` (``cli._sigterm_as_interrupt``),
and every command that reports its stop (the CLI's own, ``sim``'s runner) words it and picks its
status the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``kill``, a supervisor) or SIGHUP (the terminal closed), raised as Ctrl-C.

    The run cleans up the same way.
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = signum


def stopped_by(exc: KeyboardInterrupt) -> tuple[str, int]:
    """How the run was stopped and its exit status: SIGTERM 143, SIGHUP 129, Ctrl-C 130 (128 + the signal)."""
    if isinstance(exc, Terminated):
        return ("hung up", 129) if exc.signum == signal.SIGHUP else ("terminated", 143)
    return ("interrupted", 130)


class EarlyStop:
    """A SIGINT / SIGTERM that came while the node's start command was still importing it."""

    signum: int | None = None


def hold_stop_signals() -> None:
    """Note SIGINT / SIGTERM in :class:`EarlyStop` until the node's ``main`` installs its own handlers.

    Why: importing the node (OpenCV, rclpy) takes 0.3-0.5 s, and a signal in it ended the node with
    a KeyboardInterrupt traceback (exit 130) or by SIGTERM (143) where the README says exit 0
    (review). ``main`` reads the note and stops at its first checkpoint.
    """
    def note(signum: int, frame: object) -> None:
        EarlyStop.signum = signum

    signal.signal(signal.SIGINT, note)
    signal.signal(signal.SIGTERM, note)


#: Set by the commands that start a node for a run of their own (demo, bench, hil, sim --realtime,
#: tests): their pid, which the node's start command follows (:func:`end_with_parent`).
PARENT_ENV = "TINY_NODE_PARENT_PID"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def end_with_parent() -> str | None:
    """Have the kernel send SIGTERM when the command that started this node dies; a note if it cannot.

    Why: those commands start the node in a session of its own and stop it in their clean-up, so
    one killed outright (SIGKILL by the OOM killer or a CI job's timeout) left the node running,
    still publishing brake decisions on its DDS domain. Only for a direct child of the pid in
    :data:`PARENT_ENV` (a ``ros2 run`` between them is that command's business); a parent already
    gone before the request stops the node at once, through the held SIGTERM. Linux only.
    """
    value = os.environ.get(PARENT_ENV, "")
    if not value.isdigit():
        return None
    parent = int(value)
    if os.getppid() != parent:
        from tiny_node.tools.nodeproc import process_running

        if not process_running(parent):  # gone while this process started: no one will stop it
            signal.raise_signal(signal.SIGTERM)
        return None
    if not sys.platform.startswith("linux"):
        return f"{PARENT_ENV}: no parent-death signal on {sys.platform}; a parent killed outright leaves this node"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        return f"{PARENT_ENV}: prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}"
    if os.getppid() != parent:  # died between the check and the request: the signal will never come
        signal.raise_signal(signal.SIGTERM)
    return None


# Stop signals held while a command finishes something that must not be cut short: a Ctrl-C,
# SIGTERM or SIGHUP that landed while the HIL harness cleaned a node run up (the feeder closed, the
# node stopped) or wrote a report threw the finished run away, left a half-written report, or a
# PASS report behind an exit 143 (review). Held, the stop is noted and the work finished; the
# caller then raises it (Held.stop) where it can say what was finished.

#: The signals a command stops on (SIGINT as KeyboardInterrupt, SIGTERM / SIGHUP as Terminated).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Held:
    """The first stop signal that came while held (None: none came)."""

    signum: int | None = None

    def stop(self) -> KeyboardInterrupt:
        """That stop as the command raises it: KeyboardInterrupt for SIGINT, Terminated for SIGTERM / SIGHUP."""
        assert self.signum is not None, "no stop was held"
        return KeyboardInterrupt() if self.signum == signal.SIGINT else Terminated(self.signum)


@contextlib.contextmanager
def stops_held(held: Held | None = None) -> Iterator[Held]:
    """Note the stop signals in ``held`` (a new one if None) instead of raising them, until the block ends.

    Python runs signal handlers in the main thread only, so this holds whatever threads the
    process has (not so ``pthread_sigmask``); elsewhere it holds nothing. A signal the process
    ignores (SIGHUP under ``nohup``, SIGINT in a background job) stays ignored.
    """
    held = held if held is not None else Held()
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def note(signum: int, frame: object) -> None:
        if held.signum is None:
            held.signum = signum

    # not one ignored, nor one whose handler Python did not install (it could not be put back);
    # swapped inside the try: a stop between two swaps is raised as usual, the first put back (review)
    previous: dict[int, Any] = {}
    try:
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) not in (signal.SIG_IGN, None):
                previous[sig] = signal.signal(sig, note)
        yield held
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def children_start_without_sigint() -> Iterator[None]:
    """SIGINT blocked in this thread meanwhile, so a process started here starts with it blocked.

    Why: a child process (the model worker, a simulation worker) imports for 0.1 s to a second or
    more before it can ignore SIGINT, and a terminal's Ctrl-C, which reaches the whole process
    group, printed a KeyboardInterrupt traceback from it (a signal mask survives exec). The child
    calls :func:`ignore_sigint` once it can. The resource tracker is started first: starting it
    unblocks SIGINT in the calling thread. Python runs handlers in the main thread: a Ctrl-C
    meanwhile is this process's once unblocked.
    """
    from multiprocessing import resource_tracker  # here: the node's start command imports this module first

    resource_tracker.ensure_running()
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def ignore_sigint() -> None:
    """In a child started by :func:`children_start_without_sigint`: ignore Ctrl-C, then unblock it.

    In that order, so a Ctrl-C held since the child's start is dropped, not raised: its parent
    stops it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
