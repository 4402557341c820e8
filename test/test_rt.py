"""Process set-up of the node that shrinks its locked memory (checked in fresh interpreters)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

STACKS = """
import threading
from tiny_node.rt import small_thread_stacks
print(small_thread_stacks(1024 * 1024))
ev = threading.Event()
ts = [threading.Thread(target=ev.wait) for _ in range(3)]
[t.start() for t in ts]
sizes = []
for line in open('/proc/self/maps'):
    a, b = line.split()[0].split('-')
    if len(line.split()) < 6:  # anonymous
        sizes.append((int(b, 16) - int(a, 16)) // 1024)
ev.set()
print(sizes.count(1024))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc / procfs")
def test_threads_created_after_small_thread_stacks_get_the_small_stack():
    out = subprocess.run([sys.executable, "-c", STACKS], capture_output=True, text=True, check=True).stdout.split()
    assert out[:4] == ["thread", "stacks", "1024", "KiB"]
    assert int(out[4]) >= 3  # one 1 MiB stack mapping per new thread (none that size before)


@pytest.mark.parametrize(("preset", "expected"), [(None, "1"), ("4", "4")])
def test_the_ros_layer_pins_openblas_to_one_thread_unless_set(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    code = "import os, tiny_node.ros; print(os.environ['OPENBLAS_NUM_THREADS'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == expected


# --- scheduling ----------------------------------------------------------------------------

CAP_SYS_NICE = 23


def can_set_fifo(priority: int) -> bool:
    """Whether this process may put a thread on SCHED_FIFO ``priority`` (root, CAP_SYS_NICE, RLIMIT_RTPRIO)."""
    if not sys.platform.startswith("linux"):
        return False
    import resource

    with open("/proc/self/status") as f:
        caps = next((int(line.split()[1], 16) for line in f if line.startswith("CapEff:")), 0)
    return bool(caps >> CAP_SYS_NICE & 1) or resource.getrlimit(resource.RLIMIT_RTPRIO)[0] >= priority


needs_rt = pytest.mark.skipif(not can_set_fifo(30), reason="setting SCHED_FIFO 30 needs root, CAP_SYS_NICE "
                              "or RLIMIT_RTPRIO >= 30; the policy-flag tests above still run")


def test_make_realtime_asks_for_plain_fifo_so_new_threads_inherit_it(monkeypatch):
    """SCHED_RESET_ON_FORK on the process left every thread created later (DDS, deadline) at SCHED_OTHER."""
    from tiny_node import rt

    calls = []
    monkeypatch.setattr(sys, "setswitchinterval", lambda s: None)
    monkeypatch.setattr(os, "sched_setscheduler", lambda pid, policy, param: calls.append((pid, policy, param)))
    assert rt.make_realtime(20) == "SCHED_FIFO priority 20"
    assert [(pid, policy, p.sched_priority) for pid, policy, p in calls] == [(0, os.SCHED_FIFO, 20)]
    calls.clear()
    assert rt.make_realtime(0).startswith("normal scheduling") and calls == []


def test_the_deadline_thread_sets_its_priority_explicitly(monkeypatch):
    """Not 'raise if already FIFO': a thread that inherited SCHED_OTHER stayed there, silently.

    SCHED_RESET_ON_FORK on this one thread only: nothing it creates inherits the top priority.
    """
    from tiny_node import rt

    calls = []
    monkeypatch.setattr(os, "sched_getscheduler", lambda pid: os.SCHED_OTHER)
    monkeypatch.setattr(os, "sched_setscheduler", lambda pid, policy, param: calls.append((pid, policy, param)))
    assert rt.set_thread_priority(30) == "SCHED_FIFO priority 30"
    assert [(pid, policy, p.sched_priority) for pid, policy, p in calls] == [
        (0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, 30)]
    calls.clear()
    assert rt.set_thread_priority(0).startswith("unchanged") and calls == []
    assert rt.deadline_priority(20) == 20 + rt.DEADLINE_PRIORITY_BOOST and rt.deadline_priority(0) == 0
    assert rt.deadline_priority(95) == os.sched_get_priority_max(os.SCHED_FIFO)


def test_a_refused_priority_is_reported_not_raised(monkeypatch):
    from tiny_node import rt

    def refuse(pid, policy, param):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    assert rt.set_thread_priority(30) == "unchanged (SCHED_FIFO 30 refused: Operation not permitted)"


THREADS = """
import json, os, subprocess, sys, threading, time
from tiny_node.clock import MonotonicClock
from tiny_node.config import make_config
from tiny_node.model.spawner import Spawner
from tiny_node.realtime import RealtimeLoop
from tiny_node.rt import deadline_priority, fifo_priority, make_realtime, normal_scheduling, thread_policy
from tiny_node.sensors import SensorState
from tiny_node.watchdog import Watchdog
import multiprocessing as mp

out = {"process": make_realtime(20), "main": thread_policy()}
seen = {}
t = threading.Thread(target=lambda: seen.update(new=thread_policy())); t.start(); t.join()
out["new_thread"] = seen["new"]
clock = MonotonicClock(); cfg = make_config({})
loop = RealtimeLoop(Watchdog(cfg, SensorState(cfg.rules), clock), lambda d: None, clock,
                    priority=deadline_priority(fifo_priority()))
loop.start()
end = time.monotonic() + 5
while loop.thread_scheduling == "not started" and time.monotonic() < end:
    time.sleep(0.01)
out["deadline_thread"] = thread_policy(loop.native_id)
out["deadline_status"] = loop.thread_scheduling
loop.close()
with normal_scheduling():
    spawner = Spawner()  # as ModelWorker.start() under the node's normal_scheduling()
    out["inside"] = thread_policy()
out["main_after"] = thread_policy()
proc = mp.get_context("spawn").Process(target=time.sleep, args=(3.0,))
req = spawner.submit(proc)  # submitted from the SCHED_FIFO main thread, as the deadline thread does
req.done.wait(10)
out["worker_child"] = thread_policy(proc.pid)
proc.kill(); proc.join(); spawner.close()
print(json.dumps(out))
"""


@needs_rt
def test_threads_inherit_the_node_priority_the_deadline_thread_runs_above_and_children_do_not():
    """As root: every new thread SCHED_FIFO 20, the deadline thread 30, a spawned worker SCHED_OTHER.

    Before: new threads (DDS, deadline) started SCHED_OTHER and the deadline thread stayed there.
    """
    import json

    res = subprocess.run([sys.executable, "-c", THREADS], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.splitlines()[-1])
    assert out == {
        "process": "SCHED_FIFO priority 20", "main": "SCHED_FIFO 20", "new_thread": "SCHED_FIFO 20",
        "deadline_thread": "SCHED_FIFO 30", "deadline_status": "SCHED_FIFO priority 30",
        "inside": "SCHED_OTHER", "main_after": "SCHED_FIFO 20", "worker_child": "SCHED_OTHER",
    }, res.stderr
