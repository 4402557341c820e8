"""Start processes off the caller's thread.

Why: ``Process.start()`` with the 'spawn' method takes tens of milliseconds (fork/exec,
pickling the arguments), and the caller is the node's deadline thread.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess


@dataclass
class SpawnRequest:
    """One queued ``Process.start()``; ``done`` is set when it returned or raised."""

    proc: BaseProcess
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class Spawner:
    """One long-lived thread that runs ``Process.start()`` (spawn: tens of ms) for the caller.

    Why not a thread per spawn: ``Thread.start()`` itself waits until the new thread runs,
    1-10 ms measured on this 2-core machine under load; a queue put takes ~20 us.
    """

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[SpawnRequest | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="model-spawner", daemon=True)
        self._thread.start()

    def submit(self, proc: BaseProcess) -> SpawnRequest:
        """Queue ``proc.start()``; poll ``done`` on the returned request."""
        req = SpawnRequest(proc)
        self._q.put(req)
        return req

    def _run(self) -> None:
        while (req := self._q.get()) is not None:
            try:
                # The child starts with SIGINT blocked, and ignores it once it can (worker._child_main):
                # a Ctrl-C to the process group in the 0.1-0.3 s a worker takes to import printed a
                # KeyboardInterrupt traceback from it (review).
                from tiny_node.stopping import children_start_without_sigint

                with children_start_without_sigint():
                    req.proc.start()
            except BaseException as exc:  # handed to supervise() on the caller's thread
                req.error = exc
            finally:
                req.done.set()

    def close(self) -> None:
        """Finish queued spawns and end the thread."""
        self._q.put(None)
        self._thread.join()
