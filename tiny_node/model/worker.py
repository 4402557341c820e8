"""The model in its own process, driven without blocking from the node's deadline thread.

Why a process: a crash, hang or runaway allocation in onnxruntime must cost model
decisions, never the node. Why 'spawn': the parent has DDS threads, and fork would copy
their locks. Frames go through shared memory (frames.py); the pipes carry only small
messages (protocol.py).

Threading contract: every method is called from ONE thread (the deadline thread) and,
apart from ``start``, ``wait_ready`` and ``stop``, returns without blocking:
``Process.start()`` (tens of ms for spawn) runs on a helper thread (spawner.py).
Time comes from the injected clock; ``stats()`` may also be read from another thread.

States: DISABLED -start-> STARTING -ready-> READY <-submit/reply-> BUSY. A crash (process
exit), a hang (a job unanswered ``hang_timeout_s`` after submit, cancelled or not: SIGKILL)
or a startup that never reports ready -> RESTARTING, respawned after an exponential
backoff (``backoff_initial_s``, then doubling, from at least ``MIN_RESTART_BACKOFF_S``, to
``backoff_max_s``; reset once a process has served ``backoff_max_s`` without dying) ->
STARTING -> READY. A bad bundle (checksum, schema, graph I/O) -> FAILED with
``last_error``: a restart cannot fix a bad file.
An idle worker that is stopped (SIGSTOP) is only noticed by its next job.

A ``vlm`` bundle also explains its decisions: after the ``ModelResult`` of a frame the worker
decodes a rationale (off the deadline path; the worker is READY meanwhile, and a new job
aborts it at once). Finished rationales arrive through ``poll()`` like results and are
collected with ``take_rationales()``.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import signal
import stat
import time
from collections import deque
from collections.abc import Mapping
from enum import Enum
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tiny_node.clock import Clock
from tiny_node.config import MAX_CONTEXT_CHARS
from tiny_node.model.bundle import MAX_DATA_BYTES, BundleError, read_manifest
from tiny_node.model.frames import N_SLOTS, FrameSlots
from tiny_node.model.protocol import (
    EXIT_MISSING_PACKAGE,
    EXIT_OUT_OF_MEMORY,
    Cancel,
    Fatal,
    FromWorker,
    Job,
    ModelResult,
    Rationale,
    Ready,
    SetDelay,
    Stop,
    ToWorker,
    WorkerConfig,
    missing_package,
)
from tiny_node.model.replies import ReplyError, ReplyReader
from tiny_node.model.spawner import Spawner, SpawnRequest

__all__ = ["ModelResult", "ModelWorker", "WorkerState"]

MAX_PENDING_RATIONALES = 64  # untaken rationales beyond this drop the oldest (counted)
#: Least restart delay after the first: the delay doubles from at least this. Why: with
#: ``backoff_initial_s`` 0 (allowed: "restart at once") the delay stayed 0 for ever, and a worker
#: that dies on every start respawned at once in a loop, each respawn importing onnxruntime on
#: the node's cores.
MIN_RESTART_BACKOFF_S = 0.1


class WorkerState(str, Enum):
    """Where the worker is in its life; only READY accepts a job."""

    DISABLED = "disabled"
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    RESTARTING = "restarting"
    FAILED = "failed"


def describe_exit(code: int | None) -> str:
    """Human text for a process exit code (negative = killed by that signal)."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code == EXIT_OUT_OF_MEMORY:
        return f"exited with code {code} (out of memory: model_memory_limit_mb reached)"
    return f"exited with code {code}"


def _child_main(ctl: Connection, res: Connection, cfg: WorkerConfig) -> None:
    """Spawn target. The import is here so the node process never loads onnxruntime/cv2."""
    # Ctrl-C in a terminal goes to the whole process group: the node stops the worker itself
    # (Stop, then SIGKILL), so the worker must not die of it first with a traceback mid-job.
    from tiny_node.stopping import ignore_sigint

    ignore_sigint()  # blocked since its start (Spawner)
    try:
        from tiny_node.model.worker_main import worker_main
    except ImportError as exc:
        # A missing runtime package is no crash a restart could cure: say which, and fail.
        res.send(Fatal(missing_package(exc), permanent=True))
        raise SystemExit(EXIT_MISSING_PACKAGE) from exc
    worker_main(ctl, res, cfg)


#: a worker's start: imports, session creation and warm-up of a small bundle
STARTUP_BASE_S = 30.0
#: ... plus this per GiB of bundle files: loading and hashing them and building the sessions took
#: about 5 s per GiB here (files in the page cache); twice that, for a cold disk or a slower CPU
STARTUP_PER_GIB_S = 10.0
#: bundle bytes counted at most: two of the largest external data files a bundle may list
MAX_STARTUP_BYTES = 2 * MAX_DATA_BYTES


def startup_budget_s(bundle_dir: Path) -> float:
    """How long a worker may take to come up with the bundle in ``bundle_dir``.

    Why scaled: a fixed 30 s killed a worker loading a multi-GB export (external data) before it
    was ready, and restarted it forever, each time with "not ready" and no word of the size.
    The files its manifest lists, no others: a walk of the whole directory took 11 s for a home
    directory given by mistake, and raised out of configure for /proc (review 2026-12-07). No
    readable manifest, unreadable entries and anything but regular files count as nothing here:
    loading the bundle names them. The total is capped at what a bundle may load (a sparse 4 TB
    file beside the manifest gave a hung start 11 hours; security review).
    """
    total = 0
    with contextlib.suppress(BundleError):  # the worker's own load says what is wrong with it
        for entry in read_manifest(bundle_dir).files.values():
            for e in (entry, *entry.data):
                with contextlib.suppress(OSError):
                    st = e.path.lstat()
                    total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return STARTUP_BASE_S + STARTUP_PER_GIB_S * min(total, MAX_STARTUP_BYTES) / 2**30


class ModelWorker:
    """Parent-side handle of the model worker process (see module docstring)."""

    def __init__(
        self,
        bundle_dir: Path,
        clock: Clock,
        *,
        threads: int = 1,
        warmup_runs: int = 3,
        hang_timeout_s: float = 0.5,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        test_delay_ms: float = 0.0,
        max_frame_shape: tuple[int, int, int] = (1080, 1920, 3),
        startup_timeout_s: float | None = None,
        nice: int = 0,
        rationale_max_tokens: int | None = None,
        memory_limit_mb: int = 0,
    ) -> None:
        if startup_timeout_s is None:
            startup_timeout_s = startup_budget_s(Path(bundle_dir))
        if hang_timeout_s <= 0 or startup_timeout_s <= 0:
            raise ValueError("hang_timeout_s and startup_timeout_s must be > 0")
        if not 0 <= backoff_initial_s <= backoff_max_s or backoff_max_s < MIN_RESTART_BACKOFF_S:
            raise ValueError(f"need 0 <= backoff_initial_s <= backoff_max_s and backoff_max_s >= "
                             f"{MIN_RESTART_BACKOFF_S}")
        self._bundle_dir = Path(bundle_dir)
        self._clock = clock
        self._threads = threads
        self._warmup_runs = warmup_runs
        self._hang_timeout_s = hang_timeout_s
        self._startup_timeout_s = startup_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._backoff_s = backoff_initial_s
        self._test_delay_ms = test_delay_ms
        self._max_frame_shape = max_frame_shape
        self._nice = nice
        self._rationale_max_tokens = rationale_max_tokens
        self._memory_limit_mb = memory_limit_mb
        self._ctx = mp.get_context("spawn")

        self._state = WorkerState.DISABLED
        self._slots: FrameSlots | None = None
        self._proc: BaseProcess | None = None
        self._spawner: Spawner | None = None
        self._spawning: SpawnRequest | None = None
        self._ctl: Connection | None = None  # parent -> worker
        self._res: Connection | None = None  # worker -> parent
        self._replies: ReplyReader | None = None  # reads self._res
        self._child_ends: list[Connection] = []
        self._fatal: str | None = None
        self._out: list[ModelResult] = []
        # deque: take_rationales() may run on another thread than poll() (a ROS timer)
        self._rationales: deque[tuple[int, str]] = deque(maxlen=MAX_PENDING_RATIONALES)
        self._rationale_seq: int | None = None  # its decision is out, its rationale not yet
        # frames cancelled (late): a rationale of theirs, started or sent before the cancel was
        # seen, is dropped (counted aborted); a few suffice, the pipe keeps replies in order
        self._cancelled: deque[int] = deque(maxlen=8)

        self._busy_seq: int | None = None
        self._submit_at = 0.0
        self._cancel_sent = False
        self._next_slot = 0
        self._started_at = 0.0
        self._ready_at: float | None = None
        self._died_at: float | None = None
        self._restart_at = 0.0

        self.last_error: str | None = None
        self.restarts = 0
        self._counts = {"jobs": 0, "results": 0, "cancels": 0, "cancelled": 0, "errors": 0,
                        "crashes": 0, "hangs": 0, "stale": 0, "rejected": 0, "rationales": 0,
                        "rationales_aborted": 0, "rationale_errors": 0, "rationales_dropped": 0}
        self._last_infer_ms = 0.0
        self._last_rationale = (0.0, 0)  # ms, tokens
        self._last_rationale_error = ""
        self._last_run_error = ""  # the last job answered with an error (or failed by a crash / hang)
        self._last_reject = ""
        self._last_restart_s = 0.0
        self._ready_info: Ready | None = None

    # -- read-only views ------------------------------------------------------------
    @property
    def state(self) -> WorkerState:
        """Current state (updated by poll()/supervise())."""
        return self._state

    @property
    def busy_seq(self) -> int | None:
        """Sequence number of the job in flight, if any."""
        return self._busy_seq

    def wait_handles(self) -> list[object]:
        """Objects for ``multiprocessing.connection.wait``; ask again after each wake-up."""
        handles: list[object] = []
        if self._res is not None:
            handles.append(self._res)
        live = (WorkerState.STARTING, WorkerState.READY, WorkerState.BUSY)
        if self._state in live and self._proc is not None and self._spawning is None:
            handles.append(self._proc.sentinel)  # ready when the process dies
        return handles

    def stats(self) -> dict[str, float | int | str]:
        """Figures for diagnostics (read-only: safe from a diagnostics timer thread)."""
        out: dict[str, float | int | str] = {
            "state": self._state.value,
            "restarts": self.restarts,
            "last_error": self.last_error or "",
            "last_reject": self._last_reject,
            "last_run_error": self._last_run_error,
            **self._counts,
            "last_infer_ms": round(self._last_infer_ms, 3),
            "last_restart_s": round(self._last_restart_s, 3),
            "backoff_s": self._backoff_s,
            "test_delay_ms": self._test_delay_ms,
        }
        if self._counts["rationales"] or self._counts["rationale_errors"]:
            ms, tokens = self._last_rationale
            out["last_rationale_ms"] = round(ms, 3)
            out["last_rationale_tokens"] = tokens
            out["last_rationale_error"] = self._last_rationale_error
        if self._ready_info is not None:
            warm = self._ready_info.warmup_ms
            out["pid"] = self._ready_info.pid
            out["load_ms"] = round(self._ready_info.load_ms, 3)
            out["warmup_last_ms"] = round(warm[-1], 3) if warm else 0.0
            out["sched_note"] = self._ready_info.note
        return out

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Spawn the worker (returns at once; state STARTING). No-op unless DISABLED."""
        if self._state is not WorkerState.DISABLED:
            return
        if self._slots is None:
            self._slots = FrameSlots.create(self._max_frame_shape)
        if self._spawner is None:
            self._spawner = Spawner()
        self._backoff_s = self._backoff_initial_s
        self._spawn()

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until READY (True) or FAILED / timeout (False). For configure and tests.

        The timeout is in real seconds: this helper blocks the caller on OS handles.
        """
        end = time.monotonic() + timeout_s
        while True:
            self.tend()
            if self._state in (WorkerState.READY, WorkerState.BUSY):
                return True
            left = end - time.monotonic()
            if self._state in (WorkerState.FAILED, WorkerState.DISABLED) or left <= 0:
                return False
            wait(self.wait_handles(), timeout=min(left, 0.02))  # type: ignore[arg-type]

    def stop(self) -> None:
        """Stop the process (politely, then SIGKILL), close pipes, unlink shared memory."""
        if self._spawning is not None:
            self._spawning.done.wait()
            self._finish_spawn()
        if self._ctl is not None:
            self._send(Stop())
        proc = self._proc
        if proc is not None:
            proc.join(1.0)
            if proc.exitcode is None:
                proc.kill()
                proc.join(1.0)
            if not self._reap_nowait():
                self.last_error = f"worker pid {proc.pid} did not exit after SIGKILL"
        self._close_pipes()
        if self._slots is not None:
            self._slots.close()
            self._slots.unlink()
            self._slots = None
        if self._spawner is not None:
            self._spawner.close()
            self._spawner = None
        self._busy_seq = None
        self._state = WorkerState.DISABLED

    def __enter__(self) -> ModelWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- jobs ------------------------------------------------------------------------
    def submit(self, seq: int, image: NDArray[np.uint8], features: Mapping[str, float],
               context: str = "", *, frame_time_s: float | None = None) -> bool:
        """Copy the frame into a free slot and send the job; False unless READY and idle.

        ``frame_time_s`` is the frame's time (a two-frame model picks its earlier image by
        it); None = this worker's clock now, which is the frame's receipt time when the model
        was idle as the frame came in (the usual case: the model is faster than the camera).

        A frame that is not uint8 or does not fit ``max_frame_shape``, non-numeric
        features, or a ``context`` (vlm prompt text, e.g. "school zone") that is not a str
        of at most MAX_CONTEXT_CHARS, are refused the same way (False, counted as
        ``rejected`` with the reason in ``last_reject``) rather than raised: the caller is
        the deadline thread. A job also aborts the previous frame's rationale, if running.
        """
        if self._state is not WorkerState.READY or self._busy_seq is not None:
            return False
        assert self._slots is not None
        try:
            self._slots.check(image)
            feats = {str(k): float(v) for k, v in features.items()}
            if not isinstance(context, str) or len(context) > MAX_CONTEXT_CHARS:
                raise ValueError(f"context must be a str of at most {MAX_CONTEXT_CHARS} chars")
            when = self._clock.now() if frame_time_s is None else float(frame_time_s)
            if not math.isfinite(when):
                raise ValueError(f"frame_time_s must be finite, got {frame_time_s!r}")
        except (TypeError, ValueError) as exc:
            self._counts["rejected"] += 1
            self._last_reject = f"frame {seq}: {exc}"
            return False
        slot = self._next_slot
        self._slots.write(slot, seq, image)
        if not self._send(Job(seq, slot, feats, context, when)):
            return False
        self._rationale_seq = None  # this job aborts it in the worker
        self._next_slot = (slot + 1) % N_SLOTS
        self._busy_seq = seq
        self._submit_at = self._clock.now()
        self._cancel_sent = False
        self._state = WorkerState.BUSY
        self._counts["jobs"] += 1
        return True

    def cancel(self, seq: int) -> None:
        """Ask the worker to terminate run ``seq``; it stays BUSY until the reply comes.

        After the decision of ``seq`` came back, this aborts its rationale instead (if it is
        still being generated): no Rationale text will be delivered for it, not even one
        already received and not taken yet (the watchdog cancels a result that came too late).
        """
        if self._busy_seq == seq:
            if not self._cancel_sent and self._send(Cancel(seq)):
                self._cancel_sent = True
                self._counts["cancels"] += 1
            self._cancelled.append(seq)
            return
        if self._busy_seq is None and self._rationale_seq == seq and self._send(Cancel(seq)):
            self._rationale_seq = None
        self._cancelled.append(seq)  # one on its way in the pipe is dropped when it comes
        for item in [r for r in list(self._rationales) if r[0] == seq]:  # one here, not taken yet
            with contextlib.suppress(ValueError):  # taken meanwhile by take_rationales' thread
                self._rationales.remove(item)
                self._counts["rationales"] -= 1
                self._counts["rationales_aborted"] += 1

    def take_rationales(self) -> list[tuple[int, str]]:
        """Return and forget the rationales received so far, as ``(seq, text)``, oldest first.

        ``seq`` is the frame's job sequence number (the one given to ``submit``). Filled by
        ``poll()``; safe to call from another thread than ``poll()`` (e.g. a ROS timer).
        Aborted or failed rationales are not returned (they are counted in ``stats()``).
        """
        out: list[tuple[int, str]] = []
        while True:
            try:
                out.append(self._rationales.popleft())
            except IndexError:
                return out

    def set_test_delay_ms(self, ms: float) -> None:
        """TEST HOOK: make every following run sleep ``ms`` first (kept across restarts)."""
        self._test_delay_ms = float(ms)
        if self._ctl is not None:  # queued in the pipe even while the child spawns
            self._send(SetDelay(self._test_delay_ms))

    def tend(self) -> None:
        """Supervise, keeping the results for the next :meth:`poll`.

        For whoever owns the worker while nobody polls it: a node between activations (review: a
        worker killed while inactive read 'ready', OK, a zombie, until activation).
        """
        self._drain()
        self.supervise()

    def poll(self) -> list[ModelResult]:
        """Drain replies without blocking, supervise, and return the results collected."""
        self.tend()
        out, self._out = self._out, []
        return out

    # -- supervision -----------------------------------------------------------------
    def supervise(self) -> None:
        """Detect crash / hang / stuck startup, and restart after backoff when due."""
        st = self._state
        if st is WorkerState.FAILED:
            self._reap_nowait()
        if st in (WorkerState.DISABLED, WorkerState.FAILED):
            return
        now = self._clock.now()
        if self._spawning is not None:
            if not self._spawning.done.is_set():
                return
            if not self._finish_spawn():
                return
        if st is WorkerState.RESTARTING:
            if self._reap_nowait() and now >= self._restart_at:
                self.restarts += 1
                self._spawn()
            return
        proc = self._proc
        if proc is not None and proc.exitcode is not None:
            self._drain()  # a Fatal sent just before exiting
            if self._state is not WorkerState.FAILED:
                self._counts["crashes"] += 1
                why = describe_exit(proc.exitcode)
                self._die(f"{self._fatal} ({why})" if self._fatal else f"worker {why}")
            return
        if st is WorkerState.BUSY and now - self._submit_at > self._hang_timeout_s:
            self._counts["hangs"] += 1
            what = "cancel unacknowledged" if self._cancel_sent else "no reply"
            self._die(f"worker hung: job {self._busy_seq} {what} {now - self._submit_at:.3f} s "
                      f"after submit (> hang_timeout_s {self._hang_timeout_s}); killed")
        elif st is WorkerState.STARTING and now - self._started_at > self._startup_timeout_s:
            self._counts["hangs"] += 1
            limit = (f"; under model_memory_limit_mb {self._memory_limit_mb} onnxruntime hangs when it cannot "
                     "start its threads: raise the limit, or lower model_threads" if self._memory_limit_mb else "")
            self._die(f"worker not ready {self._startup_timeout_s:.0f} s after start (its budget for a "
                      f"bundle of this size){limit}; killed")

    # -- internals -------------------------------------------------------------------
    def _spawn(self) -> None:
        assert self._slots is not None
        ctl_r, ctl_w = self._ctx.Pipe(duplex=False)
        res_r, res_w = self._ctx.Pipe(duplex=False)
        self._proc = self._ctx.Process(
            target=_child_main,
            args=(ctl_r, res_w, WorkerConfig(
                str(self._bundle_dir), tuple(self._slots.names), self._max_frame_shape,
                self._threads, self._warmup_runs, self._test_delay_ms, self._nice,
                self._rationale_max_tokens, self._memory_limit_mb)),
            name="tiny_node-model",
            daemon=True,
        )
        self._ctl, self._res, self._child_ends = ctl_w, res_r, [ctl_r, res_w]
        self._replies = ReplyReader(res_r)
        self._fatal = None
        self._ready_at = None
        self._state = WorkerState.STARTING
        self._started_at = self._clock.now()
        assert self._spawner is not None
        self._spawning = self._spawner.submit(self._proc)

    def _finish_spawn(self) -> bool:
        """Close the child's pipe ends here (so EOF works); False if spawning failed."""
        req, self._spawning = self._spawning, None
        for conn in self._child_ends:
            conn.close()
        self._child_ends = []
        if req is not None and req.error is not None:
            err = req.error
            self._proc = None
            self._die(f"spawn failed: {type(err).__name__}: {err}")
            return False
        return True

    def _send(self, msg: ToWorker) -> bool:
        if self._ctl is None:
            return False
        try:
            self._ctl.send(msg)
        except OSError as exc:  # worker gone; supervise() will see the exit
            self.last_error = f"control pipe: {type(exc).__name__}: {exc}"
            return False
        return True

    def _drain(self) -> None:
        res, reader = self._res, self._replies
        if res is None or reader is None:
            return
        try:
            replies, closed = reader.read()  # never blocks (the deadline thread drains)
        except ReplyError as exc:
            self._die(f"worker reply refused: {exc}; killed")
            return
        for msg in replies:
            if self._res is not res:  # a reply before this one ended the worker
                return
            self._handle(msg)
        if closed and self._res is res:
            # the worker closed its end: it is exiting; supervise() reports how
            res.close()
            self._res = self._replies = None

    def _handle(self, msg: FromWorker) -> None:
        now = self._clock.now()
        if isinstance(msg, ModelResult):
            if msg.seq != self._busy_seq:  # its job was already failed by _die(): one reply only
                self._counts["stale"] += 1
                return
            self._busy_seq = None
            self._state = WorkerState.READY
            if msg.output is not None:
                self._counts["results"] += 1
                self._last_infer_ms = msg.infer_ms
                if msg.rationale and msg.seq not in self._cancelled:
                    self._rationale_seq = msg.seq
            elif msg.cancelled:
                self._counts["cancelled"] += 1
            else:
                self._counts["errors"] += 1
                self._last_run_error = f"frame {msg.seq}: {msg.error or 'no output'}"
            self._out.append(msg)
        elif isinstance(msg, Rationale):
            self._on_rationale(msg)
        elif isinstance(msg, Ready):
            self._ready_info = msg
            self._ready_at = now
            if self._died_at is not None:
                self._last_restart_s = now - self._died_at
                self._died_at = None
            self._state = WorkerState.READY
        elif isinstance(msg, Fatal):
            if msg.permanent:  # the process exits by itself; supervise() collects it
                self.last_error = msg.message
                self._state = WorkerState.FAILED
                self._close_pipes()
            else:
                self._fatal = msg.message

    def _on_rationale(self, msg: Rationale) -> None:
        if self._rationale_seq == msg.seq:
            self._rationale_seq = None
        if msg.aborted or msg.seq in self._cancelled:  # a cancelled frame's: it explains no decision made
            self._counts["rationales_aborted"] += 1
        elif msg.error is not None:
            self._counts["rationale_errors"] += 1
            self._last_rationale_error = f"frame {msg.seq}: {msg.error}"
        else:
            self._counts["rationales"] += 1
            self._last_rationale = (msg.ms, msg.tokens)
            if len(self._rationales) == self._rationales.maxlen:  # nobody takes them
                self._counts["rationales_dropped"] += 1
            self._rationales.append((msg.seq, msg.text))  # a full deque drops its oldest

    def _die(self, reason: str) -> None:
        """Record why, fail the job in flight, kill, and schedule a restart."""
        now = self._clock.now()
        self.last_error = reason
        if self._busy_seq is not None:
            self._out.append(ModelResult(self._busy_seq, None, 0.0, error=reason))
            self._counts["errors"] += 1
            self._last_run_error = f"frame {self._busy_seq}: {reason}"
            self._busy_seq = None
        if self._proc is not None and self._proc.exitcode is None:
            self._proc.kill()
        self._close_pipes()
        if self._ready_at is not None and now - self._ready_at >= self._backoff_max_s:
            self._backoff_s = self._backoff_initial_s  # it had been healthy for a while
        self._restart_at = now + self._backoff_s
        self._backoff_s = min(max(self._backoff_s * 2.0, MIN_RESTART_BACKOFF_S), self._backoff_max_s)
        self._died_at = now
        self._ready_at = None
        self._rationale_seq = None
        self._state = WorkerState.RESTARTING

    def _reap_nowait(self) -> bool:
        """Collect an exited process without blocking; True when none is left."""
        proc = self._proc
        if proc is None:
            return True
        if proc.exitcode is None:
            return False
        proc.close()
        self._proc = None
        return True

    def _close_pipes(self) -> None:
        for conn in (self._ctl, self._res):
            if conn is not None:
                conn.close()
        self._ctl = self._res = None
        self._replies = None
