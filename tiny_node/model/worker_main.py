"""Inside the model worker process: load, verify, warm up, then serve jobs one at a time.

Two threads: the main thread runs jobs; a control thread reads the control pipe so a
``Cancel`` can set ``RunOptions.terminate`` on the run in flight (ORT checks it between
nodes). Every job gets exactly one reply. Real time (``time.monotonic``) is used here only
to measure the worker's own work; deadlines and hang detection live in the parent.

A ``vlm`` bundle: after the reply, the main thread decodes the rationale from the decision's
KV cache and sends a ``Rationale``. A new job (or a cancel) arriving meanwhile terminates it
at once, between decoding steps or inside one, so the next frame never waits behind a
rationale; the ``aborted`` notice is sent after that job's reply, not before it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import queue
import resource
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NoReturn

import cv2
import onnxruntime as ort

from tiny_node.model.bundle import BundleError, load_bundle
from tiny_node.model.frames import FrameSlots
from tiny_node.model.protocol import (
    EXIT_MISSING_PACKAGE,
    EXIT_OUT_OF_MEMORY,
    Cancel,
    Fatal,
    Job,
    ModelResult,
    Rationale,
    Ready,
    SetDelay,
    Stop,
    WorkerConfig,
    missing_package,
)
from tiny_node.model.runtime import CONTENT_ERRORS, Runtime, load_runtime
from tiny_node.model.vlm import RationaleAbortedError, VlmRuntime

EXIT_BAD_BUNDLE = 3
EXIT_INIT_FAILED = 4
EXIT_PARENT_GONE = 5
# EXIT_MISSING_PACKAGE (6, protocol.py): a runtime package cannot be imported
MAX_TEXT = 1500  # keeps every reply below PIPE_BUF (4096), so it is written atomically


def clip(text: str) -> str:
    """Bound an error text (ORT messages can be long) so a reply stays one atomic write."""
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 15] + " ...[truncated]"


def reset_scheduling(nice: int = 0) -> str:
    """Drop to SCHED_OTHER at ``nice``: the worker may inherit the deadline thread's RT policy.

    Returns a note for the parent when the kernel refuses (EPERM); the worker still runs.
    """
    notes = []
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except PermissionError as exc:
        notes.append(f"sched_setscheduler(SCHED_OTHER): {exc}")
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) != nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    except PermissionError as exc:
        notes.append(f"setpriority({nice}): {exc}")
    return "; ".join(notes)


#: glibc's mallopt parameter for the number of malloc arenas (malloc.h M_ARENA_MAX)
M_ARENA_MAX = -8


def limit_memory(limit_mb: int) -> str:
    """Cap this process's address space at ``limit_mb`` MiB (0: no cap); a note when it cannot be.

    Why: a model that allocates without end (a leaking export, a runaway sequence) must fail its
    own allocation here, to be restarted, before the kernel's OOM killer picks a process on the
    vehicle computer (the node, or another stack's). RLIMIT_AS: what every mapping reserves. So
    glibc's malloc arenas go down to two: each onnxruntime pool thread reserved a 64 MiB arena,
    and a second intra-op thread no longer fitted 512 MiB (``pthread_create`` refused).
    """
    if limit_mb <= 0:
        return ""
    notes = []
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not libc.mallopt(M_ARENA_MAX, 2):
            notes.append("mallopt(M_ARENA_MAX) refused")
    except (OSError, AttributeError) as exc:  # not glibc: the limit holds, arenas as they come
        notes.append(f"mallopt(M_ARENA_MAX): {exc}")
    want = limit_mb << 20
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ValueError, OSError) as exc:
        return f"model_memory_limit_mb {limit_mb}: setrlimit(RLIMIT_AS): {exc}"
    if cap != want:
        notes.append(f"the hard limit {hard >> 20} MiB applies")
    return f"model_memory_limit_mb {limit_mb}: " + "; ".join(notes) if notes else ""


#: What an allocation that failed says: numpy's MemoryError aside, onnxruntime's arena, OpenCV's
#: ``Insufficient memory``
_ALLOCATION = ("Failed to allocate memory", "bad_alloc", "Insufficient memory")
#: ... and what a refused resource says, which under a cap is the cap's: onnxruntime's thread pool
#: (``pthread_create failed, error code: 11``, glibc's EAGAIN for a stack it cannot map), ENOMEM;
#: without one, a container's pids.max or vm.max_map_count says the same
_RESOURCE = ("pthread_create failed", "Cannot allocate memory")


def _says(exc: BaseException, texts: tuple[str, ...], *, memory_error: bool) -> bool:
    """Whether ``exc``, or an error it was raised from (a BundleError wrapping onnxruntime's), says one of ``texts``."""
    seen: BaseException | None = exc
    chain: set[int] = set()
    while seen is not None and id(seen) not in chain:  # `raise e from e` makes a cycle
        if (memory_error and isinstance(seen, MemoryError)) or any(t in str(seen) for t in texts):
            return True
        chain.add(id(seen))
        seen = seen.__cause__
    return False


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation, or a thread or mapping, the process could not get."""
    return _says(exc, _ALLOCATION + _RESOURCE, memory_error=True)


def over_the_cap(exc: BaseException, limit_mb: int, margin_mb: int = 64) -> bool:
    """Whether ``exc`` is the cap's doing: a failed allocation, or a refused resource near the cap.

    Why near: a refused thread or mapping far below the cap (VmPeak) is a container's limit, which a
    restart may get past; a failed allocation is the cap's wherever it came (one 1 GiB request).
    """
    if _says(exc, _ALLOCATION, memory_error=True):
        return True
    if not _says(exc, _RESOURCE, memory_error=False):
        return False
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return True  # no way to tell: the cap is the likely cause
    peak = next((int(line.split()[1]) >> 10 for line in status.splitlines() if line.startswith("VmPeak:")), None)
    return peak is None or peak >= limit_mb - margin_mb


@dataclass
class _Run:
    seq: int
    options: ort.RunOptions
    cancelled: threading.Event
    rationale: bool = False  # a rationale, not a job: a new job terminates it


class _Server:
    """Job loop (main thread) plus control loop (its own thread)."""

    def __init__(self, runtime: Runtime, slots: FrameSlots, res: Connection,
                 delay_ms: float, rationale_max_tokens: int | None = None, *, memory_limit_mb: int = 0) -> None:
        self._runtime = runtime
        self._memory_limit_mb = memory_limit_mb
        self._exit: int | None = None  # set when the process must end after its reply (out of memory)
        self._slots = slots
        self._res = res
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._current: _Run | None = None
        self._early_cancel: int | None = None  # cancel that came before its job started
        self._delay_ms = delay_ms  # TEST HOOK (fault injection), see SetDelay
        self._vlm = runtime if isinstance(runtime, VlmRuntime) else None
        # The bundle says how long its rationales run (its tokens, its eos); the node's parameter
        # may only shorten them (0: none), never make the worker decode past the bundle's limit.
        limit = rationale_max_tokens
        if self._vlm is not None:
            own = self._vlm.spec.max_rationale_tokens
            limit = own if limit is None else min(limit, own)
        # Only a language-model bundle can explain itself; a classifier never generates.
        self._rationale_tokens = (limit or 0) if self._vlm is not None else 0
        self._deferred: Rationale | None = None  # an aborted notice, sent after the next reply

    def control_loop(self, ctl: Connection) -> None:
        """Read control messages until Stop or until the parent goes away."""
        while True:
            try:
                msg = ctl.recv()
            except (EOFError, OSError):
                print("tiny_node model worker: control pipe closed, exiting", file=sys.stderr)
                self._shutdown()
                return
            if isinstance(msg, Job):
                self._jobs.put(msg)  # queued first: an aborted rationale finds it waiting
                self._abort_rationale()
            elif isinstance(msg, Cancel):
                self._cancel(msg.seq)
            elif isinstance(msg, SetDelay):
                self._delay_ms = float(msg.ms)
            elif isinstance(msg, Stop):
                self._shutdown()
                return
            else:
                print(f"tiny_node model worker: unknown message {msg!r}", file=sys.stderr)

    def _abort_rationale(self) -> None:
        with self._lock:
            run = self._current
            if run is not None and run.rationale:
                run.options.terminate = True
                run.cancelled.set()

    def _cancel(self, seq: int) -> None:
        with self._lock:
            run = self._current
            if run is not None and run.seq == seq:
                run.options.terminate = True
                run.cancelled.set()
            else:  # queued, not started yet (or already answered: then harmless)
                self._early_cancel = seq

    def _shutdown(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current.options.terminate = True
                self._current.cancelled.set()
        self._jobs.put(None)

    def serve(self) -> None:
        """Answer jobs until shutdown; after a vlm decision, generate its rationale."""
        while (job := self._jobs.get()) is not None:
            result = self._run(job)
            self._res.send(result)
            if self._deferred is not None:
                self._res.send(self._deferred)
                self._deferred = None
            if result.rationale:
                self._explain(job.seq)
            if self._exit is not None:  # a fresh process, not one whose heap is exhausted
                raise SystemExit(self._exit)

    def _failed(self, exc: Exception) -> str:
        """The reply's error text for ``exc``; an allocation that failed also ends the process after it."""
        text = f"{type(exc).__name__}: {exc}"
        if out_of_memory(exc):
            self._exit = EXIT_OUT_OF_MEMORY
            limit = f"model_memory_limit_mb {self._memory_limit_mb}" if self._memory_limit_mb else "no limit set"
            text = f"out of memory ({limit}); the worker restarts: {text}"
        return clip(text)

    def _explain(self, seq: int) -> None:
        """Decode the rationale of ``seq`` unless a job or cancel is already waiting."""
        assert self._vlm is not None
        run = _Run(seq, ort.RunOptions(), threading.Event(), rationale=True)
        with self._lock:  # with _abort_rationale: a job queued from now on terminates it
            self._current = run
            if not self._jobs.empty() or self._early_cancel == seq:
                run.options.terminate = True
            if self._early_cancel == seq:  # a cancel for the waiting job is that job's to honour
                self._early_cancel = None
        t0 = time.monotonic()
        try:
            ids = self._vlm.generate_ids(self._rationale_tokens, run_options=run.options)
            msg = Rationale(seq, clip(self._vlm.text(ids)), (time.monotonic() - t0) * 1e3,
                            len(ids))
        except RationaleAbortedError as exc:
            msg = Rationale(seq, "", (time.monotonic() - t0) * 1e3, exc.tokens, aborted=True)
        except Exception as exc:
            msg = Rationale(seq, "", (time.monotonic() - t0) * 1e3, 0, error=self._failed(exc))
        finally:
            with self._lock:
                self._current = None
        if msg.aborted and not self._jobs.empty():
            self._deferred = msg  # the waiting job's reply goes first
        else:
            self._res.send(msg)

    def _run(self, job: Job) -> ModelResult:
        run = _Run(job.seq, ort.RunOptions(), threading.Event())  # fresh options per run
        with self._lock:
            self._current = run
            if self._early_cancel == job.seq:  # one job in flight at a time: one slot
                run.options.terminate = True
                run.cancelled.set()
            self._early_cancel = None
        try:
            if self._delay_ms > 0:  # TEST HOOK: injected latency, cut short by a cancel
                run.cancelled.wait(self._delay_ms / 1e3)
            t0 = time.monotonic()
            if run.cancelled.is_set():
                return ModelResult(job.seq, None, 0.0, cancelled=True)
            try:
                image = self._slots.read(job.slot, job.seq)
                out = self._runtime.decide(image, job.features, job.context, run.options,
                                           time_s=job.time_s)
                del image  # drop the shared-memory view before replying
            except Exception as exc:
                ms = (time.monotonic() - t0) * 1e3
                if run.options.terminate and not out_of_memory(exc):
                    return ModelResult(job.seq, None, ms, cancelled=True)
                return ModelResult(job.seq, None, ms, error=self._failed(exc))
            # no rationale for a run cancelled as it finished: its decision was the fallback's
            explain = self._rationale_tokens > 0 and self._jobs.empty() and not run.cancelled.is_set()
            return ModelResult(job.seq, out, (time.monotonic() - t0) * 1e3, rationale=explain)
        finally:
            with self._lock:
                self._current = None


def worker_main(ctl: Connection, res: Connection, cfg: WorkerConfig) -> None:
    """Process entry point (spawned). Replies go on ``res``; commands come on ``ctl``."""
    note = "; ".join(n for n in (reset_scheduling(cfg.nice), limit_memory(cfg.memory_limit_mb)) if n)
    cv2.setNumThreads(1)  # preprocessing must not fan out over the cores the node needs
    t0 = time.monotonic()
    try:
        bundle = load_bundle(cfg.bundle_dir)
        runtime = load_runtime(bundle, cfg.threads)
        load_ms = (time.monotonic() - t0) * 1e3
    except Exception as exc:
        _init_failed(res, cfg, exc)
    try:
        warm = runtime.warm_up(cfg.warmup_runs, cfg.rationale_max_tokens)
    except Exception as exc:
        # The bundle's own graphs on its own input shapes, after every load-time check passed: the
        # same at every start, so no restart loop (it restarted every 10 s, review 2026-12-07). Out of
        # memory (onnxruntime's own words for it too, and a thread it could not start) and a failure
        # of the OS may be of this start only.
        if isinstance(exc, OSError) or out_of_memory(exc):
            _init_failed(res, cfg, exc)
        _init_failed(res, cfg, BundleError(f"bundle {cfg.bundle_dir}: its warm-up on its own input shapes "
                                           f"failed ({type(exc).__name__}: {exc})"))
    try:
        slots = FrameSlots.attach(list(cfg.shm_names), cfg.max_frame_shape)
    except Exception as exc:
        _init_failed(res, cfg, exc)
    server = _Server(runtime, slots, res, cfg.test_delay_ms, cfg.rationale_max_tokens,
                     memory_limit_mb=cfg.memory_limit_mb)
    control = threading.Thread(target=server.control_loop, args=(ctl,), daemon=True,
                               name="model-control")
    control.start()
    res.send(Ready(os.getpid(), load_ms, tuple(warm), note))
    try:
        server.serve()
    except (BrokenPipeError, EOFError) as exc:
        print(f"tiny_node model worker: parent gone ({exc}), exiting", file=sys.stderr)
        sys.exit(EXIT_PARENT_GONE)
    finally:
        slots.close()


def _init_failed(res: Connection, cfg: WorkerConfig, exc: Exception) -> NoReturn:
    """Tell the parent why the worker could not start, permanent or not, and exit with its status."""
    if cfg.memory_limit_mb and over_the_cap(exc, cfg.memory_limit_mb):  # the same at every start
        res.send(Fatal(clip(f"the model does not load within model_memory_limit_mb {cfg.memory_limit_mb} MiB "
                            f"(raise it, or 0 for none): {type(exc).__name__}: {exc}"), permanent=True))
        sys.exit(EXIT_OUT_OF_MEMORY)
    if isinstance(exc, BundleError):
        res.send(Fatal(clip(str(exc)), permanent=True))
        sys.exit(EXIT_BAD_BUNDLE)
    if isinstance(exc, ImportError):  # a package a bundle's runtime imports late: no restart brings it
        res.send(Fatal(clip(missing_package(exc)), permanent=True))
        sys.exit(EXIT_MISSING_PACKAGE)
    if isinstance(exc, CONTENT_ERRORS):  # a restart would re-hash the bundle for ever
        res.send(Fatal(clip(f"bundle {cfg.bundle_dir}: {type(exc).__name__}: {exc}"), permanent=True))
        sys.exit(EXIT_BAD_BUNDLE)
    res.send(Fatal(clip(f"worker init failed: {type(exc).__name__}: {exc}"), permanent=False))
    sys.exit(EXIT_INIT_FAILED)
