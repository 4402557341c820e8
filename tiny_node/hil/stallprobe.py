"""A CPU-stall probe: tells "the node was late" apart from "its CPU did not run".

On a shared VM a virtual CPU is sometimes not run for tens of milliseconds (hypervisor
steal, host contention): whatever thread was on it, the node's deadline thread included,
stops.  A deadline overrun then is not the node's doing, and a test that fails on it is
flaky.  So the harness runs one probe process per CPU, pinned to it, at a SCHED_FIFO
priority above the node's; each sleeps 1 ms at a time and writes every wake-up later than
``--min-gap-ms`` as ``<monotonic end> <gap ms>``.  A thread at that priority that does not
run means nothing of user space ran on that CPU.  A late decision is excused only when a
probe stalled during the frame's life by at least the overrun; a node that is late on its
own (GIL, GC, a blocking call) is still a failure.

Run: ``python -m tiny_node.hil.stallprobe OUT_FILE [--cpu N] [--priority 50] [--min-gap-ms 10]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: Above the node (SCHED_FIFO 20, its deadline thread 30), so only a stall of its CPU itself
#: (hypervisor steal, host contention) stops it, not the node's load.
PROBE_PRIORITY = 50
MIN_GAP_MS = 10.0
PERIOD_S = 0.001


@dataclass(frozen=True)
class Stall:
    """The probe did not run from ``start`` to ``end`` (monotonic seconds)."""

    start: float
    end: float

    @property
    def ms(self) -> float:
        """Length in milliseconds."""
        return (self.end - self.start) * 1e3


def main(argv: list[str] | None = None) -> int:
    """Probe until SIGTERM / SIGINT; first line of the file says how it was scheduled."""
    p = argparse.ArgumentParser(prog="tiny_node.hil.stallprobe")
    p.add_argument("out", type=Path)
    p.add_argument("--priority", type=int, default=PROBE_PRIORITY)
    p.add_argument("--min-gap-ms", type=float, default=MIN_GAP_MS)
    p.add_argument("--max-s", type=float, default=7200.0, help="exit after this long whatever happens")
    p.add_argument("--cpu", type=int, help="pin to this CPU")
    args = p.parse_args(argv)
    parent = os.getppid()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.priority))
        scheduling = f"SCHED_FIFO {args.priority}" + (f" on CPU {args.cpu}" if args.cpu is not None else "")
    except (OSError, AttributeError) as exc:  # no privilege: it still runs, but cannot excuse
        scheduling = f"normal ({exc})"
    running = True

    def stop(signum: int, frame: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    min_gap = args.min_gap_ms * 1e-3
    with args.out.open("w", buffering=1) as fh:
        fh.write(f"# scheduling {scheduling}\n")
        last = start = time.monotonic()
        while running and os.getppid() == parent and last - start < args.max_s:  # never outlive the harness
            time.sleep(PERIOD_S)
            now = time.monotonic()
            if now - last - PERIOD_S > min_gap:
                fh.write(f"{now:.6f} {(now - last) * 1e3:.3f}\n")
            last = now
    return 0


class Probe:
    """One probe process per CPU this process may run on, started and stopped by the harness."""

    def __init__(self, out: Path, priority: int = PROBE_PRIORITY, max_s: float = 7200.0) -> None:
        self.files: list[Path] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        for cpu in sorted(os.sched_getaffinity(0)):
            path = out.with_name(f"{out.stem}-cpu{cpu}{out.suffix}")
            self.files.append(path)
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "tiny_node.hil.stallprobe", str(path), "--cpu", str(cpu),
                 "--priority", str(priority), "--max-s", f"{max_s:.0f}"], start_new_session=True))

    def stop(self) -> tuple[str, list[Stall]]:
        """End the probes; (how they were scheduled, the stalls they saw, by start time).

        The stalls of every CPU are merged into one list, without their CPU: a stall of any one
        CPU may delay the node, whose threads are not pinned (the deadline thread, or the GIL
        holder it waits for, may be on it), so any one excuses a late decision it covered
        (:func:`tiny_node.hil.record.timing_failures`), not only one of every CPU at once.
        """
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        schedulings, stalls = [], []
        for path in self.files:
            sched, found = read(path)
            schedulings.append(sched)
            stalls += found
        return "; ".join(schedulings), sorted(stalls, key=lambda st: st.start)


def read(path: Path) -> tuple[str, list[Stall]]:
    """Parse a probe file: (scheduling, stalls)."""
    scheduling = "not run"
    stalls: list[Stall] = []
    if not path.exists():
        return scheduling, stalls
    for line in path.read_text().splitlines():
        if line.startswith("# scheduling "):
            scheduling = line.removeprefix("# scheduling ")
            continue
        parts = line.split()
        if len(parts) == 2:
            end, gap_ms = float(parts[0]), float(parts[1])
            stalls.append(Stall(end - gap_ms * 1e-3, end))
    return scheduling, stalls


if __name__ == "__main__":
    sys.exit(main())
