"""Real-time scheduling for the node process, where the OS allows it.

Measured on the 2-core target: a Python thread waking for 30 Hz deadlines next to a GIL-busy
thread under ``stress-ng --cpu 2`` was late by p99 3.5-5.9 ms; SCHED_FIFO on that thread
alone did not help because the GIL holder was preempted.  So the *whole* node process
(every thread, DDS's included, which is why this must run before ``rclpy.init``) goes to
SCHED_FIFO, with SCHED_RESET_ON_FORK so the model worker process does not inherit it, and
the GIL switch interval is shortened so the deadline thread gets the GIL within ~0.5 ms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

SWITCH_INTERVAL_S = 0.0005


def make_realtime(priority: int) -> str:
    """Put this process on SCHED_FIFO ``priority`` (0 = leave as is); return what happened.

    Never raises: without the privilege (no root / no CAP_SYS_NICE / RLIMIT_RTPRIO 0) the
    node keeps normal scheduling and says so in its diagnostics.
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if priority <= 0:
        return "normal scheduling (realtime_priority = 0)"
    if not hasattr(os, "sched_setscheduler"):
        return "normal scheduling (no sched_setscheduler on this OS)"
    policy = os.SCHED_FIFO | getattr(os, "SCHED_RESET_ON_FORK", 0)
    try:
        os.sched_setscheduler(0, policy, os.sched_param(priority))
    except (PermissionError, OSError) as exc:
        return f"normal scheduling (SCHED_FIFO {priority} refused: {exc.strerror or exc})"
    return f"SCHED_FIFO priority {priority}"


def raise_thread_priority(boost: int) -> str:
    """Lift the calling thread ``boost`` levels above the process's SCHED_FIFO priority.

    Used by the deadline thread: among equal SCHED_FIFO threads there is no preemption, so a
    busy DDS or executor thread could otherwise keep it off the CPU.
    """
    if not hasattr(os, "sched_getscheduler"):
        return "unchanged"
    try:
        if os.sched_getscheduler(0) & ~getattr(os, "SCHED_RESET_ON_FORK", 0) != os.SCHED_FIFO:
            return "unchanged (not SCHED_FIFO)"
        prio = min(os.sched_getparam(0).sched_priority + boost, os.sched_get_priority_max(os.SCHED_FIFO))
        policy = os.SCHED_FIFO | getattr(os, "SCHED_RESET_ON_FORK", 0)
        os.sched_setscheduler(0, policy, os.sched_param(prio))
    except OSError as exc:
        return f"unchanged ({exc.strerror or exc})"
    return f"SCHED_FIFO priority {prio}"


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
