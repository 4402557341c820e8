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
