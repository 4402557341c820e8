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
