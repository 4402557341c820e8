"""Real-time scheduling for the node process, where the OS allows it.

Measured on the 2-core target: a Python thread waking for 30 Hz deadlines next to a GIL-busy
thread under ``stress-ng --cpu 2`` was late by p99 3.5-5.9 ms; SCHED_FIFO on that thread
alone did not help because the GIL holder was preempted.  So the design is:

- the *whole* node process goes to SCHED_FIFO ``realtime_priority`` before ``rclpy.init``,
  so every thread created later (DDS, executor) inherits it and a GIL holder is not
  preempted by other processes' load;
- the deadline thread sets itself :data:`DEADLINE_PRIORITY_BOOST` levels higher (explicitly,
  not relative to what it inherited), so no other thread of ours (the executor decoding an
  image, a busy DDS thread) keeps it off a CPU;
- nothing the node forks runs real-time: the model worker is spawned from a thread at
  SCHED_OTHER (:func:`normal_scheduling`) and drops to SCHED_OTHER itself on start
  (``worker_main.reset_scheduling``); the deadline thread also sets SCHED_RESET_ON_FORK.

Why not SCHED_RESET_ON_FORK on the process: the kernel applies it to every new *thread*
too (``sched_fork`` runs for threads and processes alike), so every thread created after it
started SCHED_OTHER and only the main thread was real-time.

The GIL switch interval is shortened so the deadline thread gets the GIL within ~0.5 ms.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Iterator

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.0005
#: The deadline thread runs this many SCHED_FIFO levels above the rest of the node.
DEADLINE_PRIORITY_BOOST = 10
_RESET_ON_FORK = getattr(os, "SCHED_RESET_ON_FORK", 0)


def make_realtime(priority: int) -> str:
    """Put this process on SCHED_FIFO ``priority`` (0 = leave as is); return what happened.

    Threads created afterwards inherit it (no SCHED_RESET_ON_FORK: see the module docstring).
    Never raises: without the privilege (no root / no CAP_SYS_NICE / RLIMIT_RTPRIO 0) the
    node keeps normal scheduling and says so in its diagnostics.
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if priority <= 0:
        return "normal scheduling (realtime_priority = 0)"
    if not hasattr(os, "sched_setscheduler"):
        return "normal scheduling (no sched_setscheduler on this OS)"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (PermissionError, OSError) as exc:
        return f"normal scheduling (SCHED_FIFO {priority} refused: {exc.strerror or exc})"
    return f"SCHED_FIFO priority {priority}"


def fifo_priority(tid: int = 0) -> int:
    """The SCHED_FIFO priority of thread ``tid`` (0: the caller), or 0 if it is not on SCHED_FIFO."""
    if not hasattr(os, "sched_getscheduler"):
        return 0
    try:
        if os.sched_getscheduler(tid) & ~_RESET_ON_FORK != os.SCHED_FIFO:
            return 0
        return int(os.sched_getparam(tid).sched_priority)
    except OSError:  # the thread has ended
        return 0


def deadline_priority(process_priority: int) -> int:
    """The deadline thread's SCHED_FIFO priority for a node process at ``process_priority`` (0: none)."""
    if process_priority <= 0 or not hasattr(os, "sched_get_priority_max"):
        return 0
    return min(process_priority + DEADLINE_PRIORITY_BOOST, os.sched_get_priority_max(os.SCHED_FIFO))


def set_thread_priority(priority: int) -> str:
    """Put the calling thread on SCHED_FIFO ``priority`` (0 = leave as is); return what happened.

    Set explicitly rather than raised from what the thread inherited, so the result does not
    depend on which thread created it.  SCHED_RESET_ON_FORK: a thread or process this one
    creates must not inherit the top priority.  Never raises.
    """
    if priority <= 0:
        return "unchanged (normal scheduling requested)"
    if not hasattr(os, "sched_setscheduler"):
        return "unchanged (no sched_setscheduler on this OS)"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | _RESET_ON_FORK, os.sched_param(priority))
    except OSError as exc:
        return f"unchanged (SCHED_FIFO {priority} refused: {exc.strerror or exc})"
    return f"SCHED_FIFO priority {priority}"


def thread_policy(tid: int = 0) -> str:
    """What thread ``tid`` (0: the caller) runs at now, e.g. ``SCHED_FIFO 30`` (for diagnostics)."""
    if not hasattr(os, "sched_getscheduler"):
        return "unknown"
    try:
        policy = os.sched_getscheduler(tid) & ~_RESET_ON_FORK
        prio = os.sched_getparam(tid).sched_priority
    except OSError as exc:
        return f"unknown ({exc.strerror or exc})"
    names = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_FIFO: "SCHED_FIFO", os.SCHED_RR: "SCHED_RR",
             getattr(os, "SCHED_BATCH", -1): "SCHED_BATCH", getattr(os, "SCHED_IDLE", -2): "SCHED_IDLE"}
    name = names.get(policy, f"policy {policy}")
    return f"{name} {prio}" if policy in (os.SCHED_FIFO, os.SCHED_RR) else name


@contextlib.contextmanager
def normal_scheduling() -> Iterator[None]:
    """Run the calling thread at SCHED_OTHER inside the block, then restore its policy.

    Why: threads and processes created in the block inherit SCHED_OTHER, e.g. the model
    worker's spawner thread and the processes it starts (the worker, multiprocessing's
    resource tracker), which must not run real-time beside the node.  A failure to switch or
    to restore is logged, never raised: scheduling is best effort.
    """
    if not hasattr(os, "sched_getscheduler"):
        yield
        return
    policy = os.sched_getscheduler(0)
    param = os.sched_getparam(0)
    changed = False
    if policy & ~_RESET_ON_FORK != os.SCHED_OTHER:
        try:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            changed = True
        except OSError as exc:
            log.warning("could not drop to SCHED_OTHER for child threads: %s", exc.strerror or exc)
    try:
        yield
    finally:
        if changed:
            try:
                os.sched_setscheduler(0, policy, param)
            except OSError as exc:
                log.warning("could not restore scheduling policy %d priority %d: %s",
                            policy, param.sched_priority, exc.strerror or exc)


MCL_CURRENT, MCL_FUTURE = 1, 2  # <sys/mman.h> on Linux


def lock_memory() -> str:
    """``mlockall`` the node process so memory pressure cannot page it out.

    Measured under ``stress-ng --vm``: without it a fallback decision went out 25 ms late
    (page faults on evicted code pages of the node).  Never raises; without the privilege
    (RLIMIT_MEMLOCK / CAP_IPC_LOCK) the node runs unlocked and says so.
    """
    name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or name is None:
        return "not locked (mlockall needs Linux)"
    libc = ctypes.CDLL(name, use_errno=True)
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
        err = ctypes.get_errno()
        return f"not locked (mlockall: {os.strerror(err)})"
    return "locked (mlockall)"


#: Default stack of threads created from here on (DDS, executor, deadline thread).  glibc's
#: default is RLIMIT_STACK (8 MiB), and under ``mlockall`` every stack is resident and locked:
#: 20 threads held 160 MiB.  2 MiB is still 16x what musl gives a thread by default.
THREAD_STACK_BYTES = 2 * 1024 * 1024


def small_thread_stacks(size: int = THREAD_STACK_BYTES) -> str:
    """Make ``size`` the default stack of threads created later (``pthread_setattr_default_np``).

    Call before ``rclpy.init`` so the DDS threads get it too.  Never raises.
    """
    name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or name is None:
        return "default thread stacks (not Linux)"
    libc = ctypes.CDLL(name, use_errno=True)
    if not hasattr(libc, "pthread_setattr_default_np"):
        return "default thread stacks (no pthread_setattr_default_np)"
    attr = ctypes.create_string_buffer(128)  # >= sizeof(pthread_attr_t) (56 on x86-64 / arm64 glibc)
    if libc.pthread_attr_init(attr) != 0:
        return "default thread stacks (pthread_attr_init failed)"
    try:
        err = libc.pthread_attr_setstacksize(attr, ctypes.c_size_t(size)) or libc.pthread_setattr_default_np(attr)
    finally:
        libc.pthread_attr_destroy(attr)
    if err:
        return f"default thread stacks ({os.strerror(err)})"
    return f"thread stacks {size // 1024} KiB"
