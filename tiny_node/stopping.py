"""How a command was stopped, and its exit status: Ctrl-C, or SIGTERM / SIGHUP raised as it.

Why a module: the CLI raises these signals as :class:`Terminated` (``cli._sigterm_as_interrupt``),
and every command that reports its stop (the CLI's own, ``sim``'s runner) words it and picks its
status the same way.
"""

from __future__ import annotations

import signal


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
