"""The hardware-in-the-loop harness: a scenario streamed in real time into a node over DDS.

The node under test is its own process (started here with :class:`NodeProcess`, a custom
command, another network namespace) or one already running on the ROS domain (attach);
nothing but DDS passes between them.  The harness publishes the camera (30 Hz, 640x480),
range (20 Hz), odometry and IMU (50 Hz) of a closed-loop drive, applies the node's ``brake``
to the simulated ego, injects faults (:mod:`tiny_node.hil.faults`), and records on its own
monotonic clock when each frame went out and when its decision (matched by stamp) and each
``/diagnostics`` array came back.  The checks and the report work on that record only.

Faults that need a different node configuration run in their own node *group*:
``main`` (wall time, raw frames), ``simtime`` (``use_sim_time`` with ``/clock`` from the
harness, compressed frames), ``bundle`` (a corrupted copy of the bundle).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiny_node.config import SPECS
from tiny_node.decision import FRAME_NONE, MODEL_ON_TIME_SHARE, diagnostic_prefix
from tiny_node.hil.faults import Fault, OutFrame, schedule
from tiny_node.hil.record import (
    WARMUP_S,
    BrakeRec,
    CheckResult,
    DecisionRec,
    DiagRec,
    FrameRec,
    Published,
    RunRecord,
    timing_failures,
)
from tiny_node.hil.source import Event, Stream
from tiny_node.hil.stallprobe import Probe
from tiny_node.stopping import stopped_by, stops_held
from tiny_node.tools.nodeproc import NodeProcess, proc_stat, read_rss_kib

#: Sim-time epoch of ``simtime`` runs: stamps and ``/clock`` start here (s).
SIM_EPOCH_S = 100.0
#: ``/clock`` publish period in ``simtime`` runs.
CLOCK_PERIOD_S = 0.01
#: Loop period of the streaming thread (sensor events are stamped with their due time).
TICK_S = 0.002
#: Shortest sleep per loop iteration (see the loop).
MIN_SLEEP_S = 0.0005
#: A loop iteration longer than this is noted (events then go out late, in a burst).
STALL_S = 0.05
#: Time allowed for the last decisions to come back after the stream stops.
DRAIN_S = 1.0
#: A camera frame due longer ago than this when the harness gets to it is skipped (unless it is
#: the newest): after a harness stall, a camera driver with a small buffer ring hands over its
#: newest frame, not a backlog burst that would overflow the node's depth-5 sensor-data queue.
LATE_FRAME_S = 0.05


def skip_late_frames(events: list[Event], now: float, late_s: float = LATE_FRAME_S) -> tuple[list[Event], int]:
    """The events to publish at run time ``now``, and how many camera frames were too late.

    Why: a frame published 0.5 s after its due time is a harness artefact (the stream stalled),
    and a burst of them makes the node lose frames in transport, which would be charged to the
    node.  The newest camera frame always goes out; sensor events are small and all go out.
    """
    cams = [i for i, ev in enumerate(events) if ev.kind == "camera"]
    newest = cams[-1] if cams else -1
    drop = {i for i in cams if i != newest and now - events[i].t > late_s}
    return [ev for i, ev in enumerate(events) if i not in drop], len(drop)


@dataclass(frozen=True)
class GroupSpec:
    """A node configuration some faults need."""

    name: str
    params: dict[str, object]
    transport: str = "raw"
    sim_time: bool = False
    corrupt_bundle: bool = False


GROUPS: dict[str, GroupSpec] = {
    "main": GroupSpec("main", {}),
    "simtime": GroupSpec("simtime", {"use_sim_time": True, "camera_transport": "compressed"},
                         transport="compressed", sim_time=True),
    "bundle": GroupSpec("bundle", {}, corrupt_bundle=True),
}


@dataclass
class HarnessConfig:
    """How to reach (or start) the node and what to stream."""

    out_dir: Path
    stream_factory: Callable[[], Stream]
    model: Path | None = None  # bundle for the node (None: rules only)
    env: dict[str, str] = field(default_factory=dict)  # ROS env of the harness (and node)
    node_env: dict[str, str] | None = None  # env of the node if different (two hosts)
    node_cmd: list[str] | None = None  # default: python -m tiny_node run
    node_prefix: list[str] | None = None  # e.g. ip netns exec NS
    attach: bool = False
    node_pid: int | None = None  # attach: the node's pid, for the worker faults
    namespace: str = ""
    transport: str | None = None  # force raw / compressed in every group (two hosts: compressed)
    diag_period_s: float = 0.2  # diagnostics period the harness starts the node with
    node_params: dict[str, object] = field(default_factory=dict)
    lead_in_s: float = 2.0
    tail_s: float = 1.0
    progress: Callable[[str], None] = print


def find_worker(node_pid: int, exclude: set[int] | None = None) -> int | None:
    """The model worker among the node's children (the one running ``spawn_main``)."""
    kids: list[int] = []
    for task in Path(f"/proc/{node_pid}/task").glob("*"):
        try:
            kids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    for k in kids:
        if k in (exclude or set()):
            continue
        try:
            if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes():
                return k
        except OSError:
            continue
    return None


def reported_pid(feeder: Any, namespace: str = "", timeout_s: float = 3.0) -> int | None:
    """The pid the node reports in its watchdog diagnostics (``pid``), None if none came."""
    end = time.monotonic() + timeout_s
    watchdog = f"{diagnostic_prefix(namespace)}: watchdog"
    while True:
        for arr in reversed(feeder.log.diagnostics):
            for st in arr.status:
                if st.name == watchdog:
                    pid = {kv.key: kv.value for kv in st.values}.get("pid")
                    return int(pid) if pid and pid.isdigit() else None
        if time.monotonic() > end:
            return None
        time.sleep(0.05)


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether ``pid`` is ``ancestor`` or one of its descendants (walking /proc's parent links)."""
    while pid > 1:
        if pid == ancestor:
            return True
        fields = proc_stat(pid)
        if fields is None:
            return False
        pid = int(fields[1])  # the state, then the parent pid
    return False


def node_pid(started: int | None, reported: int | None, note: Callable[[str], None]) -> int | None:
    """The pid to measure and signal: the node process itself, not a wrapper that started it.

    ``started``: the harness's command, or ``--node-pid`` given with ``--attach``. Why:
    ``--node-cmd "ros2 run tiny_node tiny_node"`` starts ``ros2``, which runs the node as its
    child; its memory and children (the model worker) are the node's, not the wrapper's. A
    reported pid is taken only when it is the started process or its descendant (the node may
    run in another pid namespace, where its own pid names some other process here).
    """
    if started is None or reported is None or reported == started:
        return started
    if _descends_from(reported, started):
        note(f"the node runs as pid {reported} under the started command's pid {started}: measuring {reported}")
        return reported
    note(f"the node reports pid {reported}, not the started process {started} or a child of it "
         "(another pid namespace?): measuring the started process")
    return started


class NodePidError(ValueError):
    """``--node-pid`` names another process than the attached node: refused before streaming (exit 2)."""


def _argv(pid: int) -> list[str] | None:
    """A process's arguments (None when there is no such process)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _cmdline(pid: int) -> str | None:
    """A process's command line, arguments joined by spaces (None when there is no such process)."""
    argv = _argv(pid)
    return None if argv is None else " ".join(argv)


def is_tiny_node_argv(argv: list[str]) -> bool:
    """A tiny_node process: an argument named ``tiny_node`` / ``tiny-node`` (its last path part).

    That covers ``python -m tiny_node run``, the ``tiny-node`` script, ``ros2 run tiny_node
    tiny_node`` and its ``lib/tiny_node/tiny_node``; not a command that merely mentions a file
    of the package (``vim tiny_node/ros/node.py``).
    """
    return any(a.rstrip("/").rsplit("/", 1)[-1] in ("tiny_node", "tiny-node") for a in argv)


def attached_pid_problem(pid: int) -> str:
    """Why ``--node-pid`` cannot be the attached node ('' when it may be), checked before anything starts.

    It may be when it, or a process under it, is a tiny_node process: a wrapper (a bringup
    launch file, a start script, ``timeout``) is taken, and :func:`attached_pid` then finds the
    node under it by the pid the node reports. Why: a wrong pid was accepted; the worker faults
    then signalled that process's children (another node's model worker was SIGKILLed) and its
    memory was reported as the node's.
    """
    argv = _argv(pid)
    if argv is None:
        return f"--node-pid {pid}: no such process on this host"
    if any(is_tiny_node_argv(_argv(p) or []) for p in _tree(pid)):
        return ""
    cmd = " ".join(argv)
    return (f"--node-pid {pid} is not a tiny_node process, nor a wrapper with one under it (its command line: "
            f"{cmd if len(cmd) <= 120 else cmd[:117] + '...'!r})")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return kids


def _tree(pid: int) -> Iterator[int]:
    """``pid`` and every process under it, each once (read from /proc as they are walked)."""
    family, seen = [pid], set()
    while family:
        p = family.pop()
        if p not in seen:
            seen.add(p)
            yield p
            family += _children(p)


def _inner_pid(pid: int) -> int | None:
    """The pid a process has in its own (innermost) pid namespace (``NSpid``), None if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def attached_pid(given: int, reported: int | None, note: Callable[[str], None]) -> int:
    """The attached node's pid to measure and signal, from ``--node-pid`` and the pid the node reports.

    Raises :class:`NodePidError` when ``given`` is not the node: not a tiny_node process, or the
    node reports a pid that runs on this host (the same pid namespace) and is neither ``given``
    nor a descendant of it. Only a reported pid that does not exist here (the node runs in
    another pid namespace, where its pid names nothing or something else here) is taken with a
    warning, which ``note`` records (in the report's notes too).
    """
    why = attached_pid_problem(given)
    if why:
        raise NodePidError(why)
    if reported is None:
        note(f"the node reported no pid (no watchdog diagnostic in 3 s): --node-pid {given} "
             f"({_cmdline(given)}) taken as the node")
        return given
    if reported == given:
        return given
    if _descends_from(reported, given):
        note(f"the node runs as pid {reported} under --node-pid {given}: measuring {reported}")
        return reported
    # another pid namespace (a container): the node's own pid there is what it reports
    for pid in _tree(given):
        if _inner_pid(pid) == reported and pid != reported:
            note(f"the node reports pid {reported}, its pid in its own pid namespace: it is pid {pid} here")
            return pid
    if Path(f"/proc/{reported}").exists() and is_tiny_node_argv(_argv(reported) or []):
        raise NodePidError(f"--node-pid {given} is not the attached node: the node reports pid {reported}, a tiny_node "
                           f"process on this host (the same pid namespace) that is neither {given} nor under it; "
                           f"give --node-pid {reported}")
    if Path(f"/proc/{reported}").exists():  # here, something else: the node's pid in its own namespace
        raise NodePidError(f"--node-pid {given} is not the attached node: the node reports pid {reported}, which is "
                           f"no tiny_node process here (it runs in another pid namespace, a container?); give the "
                           f"pid of the node, or of its container's process, as this host sees it")
    note(f"warning: the node reports pid {reported}, which does not exist on this host (another pid namespace?): "
         f"measuring and signalling --node-pid {given} as given")
    return given


def pid_alive(pid: int) -> bool:
    """A process of that pid exists and has not exited (a zombie has)."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def sim_time_problem(spec: GroupSpec, use_sim_time: bool, *, attach: bool) -> str:
    """Why the node's ``use_sim_time`` does not fit this node run ('' when it does).

    The ``main`` and ``bundle`` runs stamp with the wall clock and publish no ``/clock``; a node
    with ``use_sim_time`` true then has ROS time 0 and leaves stamps in the future and stale range
    stamps unjudged, and the run passed almost everything. It fails the run up front (the node
    run's check, its faults "not run") rather than refusing the arguments: the arguments are
    fine, the node under test is misconfigured (on a vehicle, the bug itself), and a CI gate
    must go red with that reason, not pass a run that could not judge it. The ``simtime`` run
    owns ``/clock`` and needs it true.
    """
    if use_sim_time == spec.sim_time:
        return ""
    who = "the attached node" if attach else "the node"
    if use_sim_time:
        return (f"{who} runs with use_sim_time true, and this run streams wall-clock stamps and publishes no "
                "/clock: its ROS time stays 0, so future and stale stamps would go unjudged; set use_sim_time "
                f"false{' on it' if attach else ''} (the harness's simtime run tests sim time with its own /clock)")
    return f"{who} runs with use_sim_time false, and this run ({spec.name}) drives the node's clock through /clock"


class _Context:
    """The fault-facing side of a running group (see :class:`tiny_node.hil.faults.Context`)."""

    def __init__(self, runner: _Runner) -> None:
        self.r = runner
        self.has_model = runner.has_model
        self.transport = runner.transport
        self.sim_time = runner.spec.sim_time
        self.attach = runner.cfg.attach
        self.node_pid = runner.node_pid

    def now(self) -> float:
        return time.monotonic() - self.r.t0

    def worker_pid(self, exclude: set[int] | None = None) -> int | None:
        pid = self.r.node_pid
        if pid is None or not self.has_model:
            return None
        end = time.monotonic() + (2.0 if exclude else 0.5)
        while True:
            w = find_worker(pid, exclude)
            if w is not None or time.monotonic() > end:
                return w
            time.sleep(0.05)

    def set_param(self, name: str, value: float, done: Callable[[str | None], None] | None = None) -> None:
        self.r.set_param(name, value, done)

    def shift_stamps(self, delta_ns: int) -> None:
        self.r.stamp_offset_ns += delta_ns

    def spawn(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        self.r.helpers.append(proc)
        return proc

    def note(self, text: str) -> None:
        self.r.note(text)


class _Runner:
    """Streams one group's run against one node and records it."""

    def __init__(self, cfg: HarnessConfig, spec: GroupSpec, feeder: Any, *, node_pid: int | None,
                 params: dict[str, Any], faults: list[Fault], duration_s: float) -> None:
        self.cfg = cfg
        self.spec = spec
        self.feeder = feeder
        self.node_pid = node_pid
        self.params = params

        def param(name: str) -> Any:
            """The node's value of a parameter, else its default (``config.SPECS``, one table)."""
            return params.get(name, SPECS[name].default)

        self.has_model = bool(param("model_bundle"))
        self.transport = str(param("camera_transport"))
        self.faults = faults
        self.duration_s = duration_s
        self.stamp_offset_ns = 0
        self.helpers: list[subprocess.Popen[bytes]] = []
        self.t0 = time.monotonic()
        self.rec = RunRecord(
            group=spec.name, t0=self.t0, deadline_ms=float(param("deadline_ms")),
            camera_timeout_s=float(param("camera_timeout_s")),
            camera_timeout_action=str(param("camera_timeout_action")),
            range_stuck_s=float(param("range_stuck_s")),
            range_stuck_min_speed_mps=float(param("range_stuck_min_speed_mps")),
            range_timeout_s=float(param("range_timeout_s")),
            odom_timeout_s=float(param("odom_timeout_s")),
            diag_period_s=float(param("diagnostics_period_s")),
            has_model=self.has_model, transport=self.transport, sim_time=spec.sim_time,
            model_hang_timeout_ms=float(param("model_hang_timeout_ms")),
            diag_prefix=diagnostic_prefix(cfg.namespace),
            model_bundle=str(param("model_bundle") or ""), model_expected=not spec.corrupt_bundle,
        )
        self._param_client: Any = None
        self._index = 0
        self.started = False  # streaming began: an interruption has a record to report
        self.collected = False  # the record holds the node's answers (after the drain, or cut short)

    # --- node access -----------------------------------------------------------------------
    def _service(self, name: str) -> str:
        ns = self.cfg.namespace.rstrip("/")
        return f"{ns}/tiny_node/{name}"

    def set_param(self, name: str, value: float, done: Callable[[str | None], None] | None = None) -> None:
        """SetParameters over the node's service (as ``ros2 param set``), without blocking.

        The result comes back on the feeder's executor thread: noted, and handed to ``done``.
        """
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters

        if self._param_client is None:
            self._param_client = self.feeder.node.create_client(SetParameters, self._service("set_parameters"))
        client = self._param_client
        if not client.service_is_ready():
            why = "set_parameters service not available"
            self.note(f"set {name}={value}: {why}")
            if done is not None:
                done(why)
            return
        req = SetParameters.Request(parameters=[Parameter(name=name, value=ParameterValue(
            type=ParameterType.PARAMETER_DOUBLE, double_value=float(value)))])
        sent = time.monotonic()

        def finished(fut: Any) -> None:
            try:
                result = fut.result().results[0]
                err = None if result.successful else str(result.reason)
            except Exception as exc:  # the call failed: report it, never lose it
                err = f"set_parameters failed: {exc}"
            self.note(f"set {name}={value}: {err or 'ok'} ({(time.monotonic() - sent) * 1e3:.0f} ms)")
            if done is not None:
                done(err)

        client.call_async(req).add_done_callback(finished)

    def prepare(self) -> None:
        """Create the parameter client before streaming (its discovery must not stall the stream)."""
        from rcl_interfaces.srv import SetParameters

        self._param_client = self.feeder.node.create_client(SetParameters, self._service("set_parameters"))
        if not self._param_client.wait_for_service(timeout_sec=5.0):
            self.note("set_parameters service not found: test-hook faults will fail")

    def note(self, text: str) -> None:
        """A timestamped event in the record."""
        self.rec.notes.append(f"t={time.monotonic() - self.t0:.2f}s {text}")

    # --- streaming -------------------------------------------------------------------------
    def stamp(self, t: float) -> int:
        """Header stamp of an event due at run time ``t``."""
        return self.base_ns + self.stamp_offset_ns + round(t * 1e9)

    def _send_frame(self, f: OutFrame) -> None:
        sent_at = time.monotonic()
        if f.raw is not None:
            f.raw.header.stamp = _ns_to_stamp(f.stamp_ns)
            f.raw.header.frame_id = "camera"
            self.feeder.send_raw("camera", f.raw)
        else:
            self.feeder.send_frame(f.stamp_ns, f.image)
        self.rec.frames.append(FrameRec(self._index, f.stamp_ns, f.t, sent_at, tuple(f.faults), f.note))
        self._index += 1

    def _publish(self, ev: Event, active: list[Fault], ctx: _Context) -> None:
        stamp = self.stamp(ev.t)
        if ev.kind == "camera":
            frames = [OutFrame(stamp, ev.t, ev.image)]
            for fault in active:
                nxt: list[OutFrame] = []
                for f in frames:
                    for g in fault.on_camera(ctx, f):
                        g.faults = [*g.faults, fault.name]
                        nxt.append(g)
                frames = nxt
            for f in frames:
                self._send_frame(f)
            return
        value: float = ev.value
        for fault in active:
            out = fault.on_sensor(ctx, ev.kind, stamp, value)
            if out is None:
                return
            stamp, value = out
        if ev.kind == "range":
            self.rec.range_sent.append(ev.t)
            if ev.range_limits is None:  # the simulated sensor: the feeder's limits
                self.feeder.send_range(stamp, value)
            else:  # a recording's radar: its own limits, as recorded
                self.feeder.send_range(stamp, value, *ev.range_limits)
        elif ev.kind == "odom":
            self.feeder.send_odom(stamp, value, ev.yaw_rate)
            self.rec.odom.append((time.monotonic() - self.t0, value))
        else:
            self.feeder.send_imu(stamp, value)

    def _unsent(self, ev: Event) -> None:
        """Count a message the stream could not send; note a reason the first time it comes.

        Why count: a bag loops, and the same undecodable frame noted on every pass buried the
        report's notes (243 copies of one reason in an 8 s run).
        """
        reasons = self.rec.unsent.setdefault(ev.kind, {})
        seen = reasons.get(ev.unsent, 0)
        reasons[ev.unsent] = seen + 1
        if not seen:
            self.note(f"{ev.unsent} (first at t={ev.t:.3f} s; repeats are counted in 'unsent', not noted)")

    def run(self, stream: Stream) -> RunRecord:
        """Stream for ``duration_s`` with the faults at their times; then collect."""
        ctx = _Context(self)
        self.base_ns = int(SIM_EPOCH_S * 1e9) if self.spec.sim_time else time.time_ns()
        pending = sorted(self.faults, key=lambda f: f.start)
        active: list[Fault] = []
        self.t0 = self.rec.t0 = time.monotonic()
        self.started = True
        self.rec.warmup_s = WARMUP_S
        self.rec.closed_loop = stream.closed_loop
        next_clock = 0.0
        next_sample = 0.0
        try:
            while True:
                t = time.monotonic() - self.t0
                if t >= self.duration_s:
                    break
                while pending and pending[0].start <= t:
                    f = pending.pop(0)
                    self.note(f"begin {f.name}")
                    f.begin(ctx)
                    active.append(f)
                    self.rec.windows[f.name] = f.window
                    if f.run_wide:
                        self.rec.run_wide.append(f.name)
                for f in [f for f in active if f.window.end <= t]:
                    active.remove(f)
                    for out in f.end(ctx):
                        out.faults = [*out.faults, f.name]
                        self._send_frame(out)
                    self.note(f"end {f.name}")
                if self.spec.sim_time and t >= next_clock:
                    self.feeder.send_clock(self.stamp(t))
                    next_clock = t + CLOCK_PERIOD_S
                brake = bool(self.feeder.latest_brake) if stream.closed_loop else False
                due = stream.advance(t, brake)
                for ev in due:
                    if ev.unsent:
                        self._unsent(ev)
                    elif ev.kind == "camera":
                        self.rec.camera_from_stream += 1
                events, skipped = skip_late_frames([ev for ev in due if not ev.unsent], t)
                while stream.notes:
                    self.note(stream.notes.pop(0))
                if skipped:
                    self.rec.skipped_late += skipped
                    self.note(f"harness late: {skipped} camera frame(s) skipped, the newest sent")
                for ev in events:
                    self._publish(ev, active, ctx)
                    if ev.kind == "camera":
                        tr = stream.truth()
                        self.rec.truth.append((ev.t, tr.gap_m, tr.ego_speed_mps, brake))
                if t >= next_sample:
                    self._sample(t)
                    next_sample = t + 1.0
                took = time.monotonic() - self.t0 - t
                if took > STALL_S:
                    self.note(f"harness loop stalled {took * 1e3:.0f} ms (events published late)")
                # Always yield a little: the harness may run SCHED_FIFO, and a loop catching up
                # after a stall must not starve the model worker or other processes.
                time.sleep(max(TICK_S - took, MIN_SLEEP_S))
        except BaseException:
            stream.close()  # a failed run: a bag's temporary copy goes now (close_episode does it otherwise)
            raise
        finally:
            for f in active:  # interrupted: still undo what the fault did
                f.end(ctx)
            for proc in self.helpers:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=10)
        stream.close_episode()
        end = time.monotonic() + DRAIN_S
        while time.monotonic() < end:
            if self.spec.sim_time:
                self.feeder.send_clock(self.stamp(time.monotonic() - self.t0))
            time.sleep(0.02)
        self.rec.duration_s = time.monotonic() - self.t0
        self._collect(stream)
        return self.rec

    def partial(self, stream: Stream | None) -> RunRecord:
        """The record of a run stopped early (Ctrl-C, SIGTERM), as far as it went.

        What came in its last :data:`DRAIN_S` is left out (the frames with their decisions, noted;
        the diagnostics): those frames' answers had no time to come back, and would read as frames
        the node never decided.
        """
        if self.collected:
            return self.rec
        self.rec.duration_s = time.monotonic() - self.t0
        self._collect(stream)
        cut = self.t0 + self.rec.duration_s - DRAIN_S
        kept = [f for f in self.rec.frames if f.sent_at <= cut]
        if len(kept) < len(self.rec.frames):
            stamps = {f.stamp_ns for f in kept}
            self.note(f"interrupted: the {len(self.rec.frames) - len(kept)} frame(s) sent in the last {DRAIN_S:g} s "
                      "before it are left out, with their decisions (no time to answer)")
            self.rec.frames_cut = len(self.rec.frames) - len(kept)
            self.rec.frames = kept
            self.rec.decisions = {k: v for k, v in self.rec.decisions.items() if k in stamps}
            self.rec.frameless = [d for d in self.rec.frameless if d.received_at <= cut]
            self.rec.diags = [d for d in self.rec.diags if d.at <= cut]  # its counters, against the frames kept
            self.rec._results = None
        return self.rec

    def _sample(self, t: float) -> None:
        if self.node_pid is None:
            return
        node = read_rss_kib(self.node_pid)
        worker = find_worker(self.node_pid) if self.has_model else None
        self.rec.resources.append({
            "t": t, "node_rss_kib": float(node) if node is not None else math.nan,
            "worker_pid": float(worker) if worker else math.nan,
            "worker_rss_kib": float(read_rss_kib(worker) or math.nan) if worker else math.nan,
        })

    def _collect(self, stream: Stream | None) -> None:
        self.collected = True
        log = self.feeder.log
        with self.feeder._lock:
            decisions: dict[int, list[DecisionRec]] = {}
            for stamp, got in log.decisions.items():
                for r in got:
                    rec = DecisionRec(r.received_at, r.values, _published(r.published))
                    if r.values.get("frame") == FRAME_NONE:
                        self.rec.frameless.append(rec)
                    else:
                        decisions.setdefault(stamp, []).append(rec)
            diags = list(zip(log.diagnostics_at, log.diagnostics, strict=False))
            self.rec.brakes = [BrakeRec(at, value, _published(pub)) for at, value, pub in log.brake_msgs]
        self.rec.frameless.sort(key=lambda d: d.received_at)
        self.rec.decisions = decisions
        for at, arr in diags:
            for st in arr.status:
                level = st.level[0] if isinstance(st.level, bytes | bytearray) else int(st.level)
                self.rec.diags.append(DiagRec(at, st.name, int(level), st.message,
                                              {kv.key: kv.value for kv in st.values}))
        self.rec.episodes = [e.as_dict() for e in stream.episodes] if stream is not None else []


def _published(pub: tuple[bytes, int, int] | None) -> Published | None:
    return Published(*pub) if pub is not None else None


def _ns_to_stamp(ns: int) -> Any:
    from tiny_node.ros.convert import ns_to_stamp

    return ns_to_stamp(ns)


def corrupt_copy(bundle: Path, dest: Path) -> Path:
    """A copy of ``bundle`` with one byte of an ONNX file flipped (checksum mismatch).

    The graphs may sit in a subfolder (the shipped bundle's ``onnx/``): any ONNX file the
    bundle holds will do, the first by path.
    """
    shutil.copytree(bundle, dest)
    graphs = sorted(dest.rglob("*.onnx"))
    if not graphs:
        raise ValueError(f"{bundle}: no ONNX file to corrupt for bundle_corrupt")
    onnx_file = graphs[0]
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    return dest


QUERY_PARAMS = ["deadline_ms", "camera_timeout_s", "camera_timeout_action", "range_stuck_s",
                "diagnostics_period_s", "model_bundle", "camera_transport", "use_sim_time",
                "odom_timeout_s", "model_hang_timeout_ms", "range_stuck_min_speed_mps", "range_timeout_s"]


def run_group(cfg: HarnessConfig, group: str, faults: list[Fault], *,
              extra_s: float = 0.0) -> tuple[RunRecord, list[CheckResult]]:
    """Start (or attach to) the node for ``group``, stream the faults' schedule, check them."""
    from tiny_node.tools.feeder import Feeder

    spec = GROUPS[group]
    transport = cfg.transport or spec.transport
    params: dict[str, object] = {"diagnostics_period_s": cfg.diag_period_s, **spec.params, **cfg.node_params}
    params["camera_transport"] = transport
    tmp = tempfile.TemporaryDirectory(prefix="tiny_node_hil_")
    if cfg.model is not None:
        bundle = corrupt_copy(cfg.model, Path(tmp.name) / "corrupt") if spec.corrupt_bundle else cfg.model
        params["model_bundle"] = str(bundle)
    duration = schedule(faults, lead_in_s=cfg.lead_in_s) + cfg.tail_s + extra_s
    os.environ.update(cfg.env)  # the feeder's rclpy context reads it (domain, discovery, profile)
    node: NodeProcess | None = None
    feeder: Any = None
    runner: _Runner | None = None
    stream: Stream | None = None
    checks: list[CheckResult] = []
    seen_by_probe: tuple[str, list[Any]] | None = None
    done: RunRecord | None = None  # the run's whole record, once it is checked
    stopping = False  # a stop came during the run: one more in the clean-up is the same request
    try:
        if not cfg.attach:
            cfg.out_dir.mkdir(parents=True, exist_ok=True)
            node = NodeProcess(cfg.node_env or cfg.env, params=params, command=cfg.node_cmd,
                               prefix=cfg.node_prefix, namespace=cfg.namespace,
                               log_path=cfg.out_dir / f"node-{group}.log")
            try:
                node.start()
            except OSError as exc:  # not found, not executable: this node run fails, the others still run
                raise NodeUnavailableError(f"hil {group}: cannot start the node command {node.cmd[0]!r}: "
                                           f"{exc.strerror or exc}") from exc
        feeder = Feeder(namespace=cfg.namespace, compressed=transport == "compressed")
        if not _wait_for_node(feeder, node, 60.0):
            log = node.output() if node is not None else ""
            exited = node is not None and not node.alive()
            domain = cfg.env.get("ROS_DOMAIN_ID", os.environ.get("ROS_DOMAIN_ID", "0"))
            if cfg.attach:
                why = attach_failure(feeder, cfg.namespace, domain, cfg.node_pid)
                raise NodeUnavailableError(f"hil {group}: {why}")
            unmatched = None if exited else feeder.unmatched()
            why = (f"exited with status {node.proc.returncode if node and node.proc else '?'} before it came up"
                   if exited else f"did not come up ({unmatched})" if unmatched else "did not come up")
            said = node_error(log, fallback_last=exited)  # its own words, where the run's failure is shown
            raise NodeUnavailableError(f"hil {group}: the node {why} on ROS_DOMAIN_ID={domain}"
                                       f"{': ' + said if said else ''}\n{log[-3000:]}")
        ns = cfg.namespace.rstrip("/")
        service = f"{ns}/tiny_node/get_parameters"
        actual = feeder.get_parameters(service, QUERY_PARAMS)
        if actual:
            params.update({k: v for k, v in actual.items() if v is not None})
        else:  # the checks then assume the values the harness started the node with (or the defaults)
            unread = f"no answer from {service} in 5 s: judging with the parameters the node was started with"
            cfg.progress(f"hil {group}: {unread}")
        if cfg.attach and bool(params.get("camera_transport") == "compressed") != feeder.compressed:
            feeder.close()
            feeder = Feeder(namespace=cfg.namespace, compressed=params.get("camera_transport") == "compressed")
            feeder.wait_for_node(30.0)
        sim = actual.get("use_sim_time") if actual else params.get("use_sim_time", spec.sim_time)
        if sim is not None and (why := sim_time_problem(spec, bool(sim), attach=cfg.attach)):
            raise NodeUnavailableError(f"hil {group}: {why}")
        pid_notes: list[str] = []

        def pid_note(text: str) -> None:  # on the terminal and in the report's notes
            cfg.progress(text)
            pid_notes.append(text)

        if node is not None:
            pid: int | None = node_pid(node.pid, reported_pid(feeder, cfg.namespace), pid_note)
        elif cfg.node_pid is not None:  # --node-pid may name a wrapper too; a wrong one is refused (NodePidError)
            pid = attached_pid(cfg.node_pid, reported_pid(feeder, cfg.namespace), pid_note)
        else:
            pid = None
        runner = _Runner(cfg, spec, feeder, node_pid=pid, params=params, faults=faults, duration_s=duration)
        runner.rec.notes += pid_notes
        runner.rec.warnings += [n for n in pid_notes if n.startswith("warning:")]
        if not actual:
            runner.rec.notes.append(unread)
        runner.prepare()
        ctx = _Context(runner)
        runnable = []
        for f in faults:
            why = f.skip_reason(ctx)
            if why:
                checks.append(CheckResult(f.name, group, f.expected, True, skipped=why))
            else:
                runnable.append(f)
        runner.faults = runnable
        cfg.progress(f"hil {group}: streaming {duration:.0f} s, faults: "
                     f"{', '.join(f.name for f in runnable) or 'none'}")
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        probe = Probe(cfg.out_dir / f"stalls-{group}.txt", max_s=duration + 120.0)
        try:
            stream = cfg.stream_factory()
            try:
                rec = runner.run(stream)
            finally:
                stream.close()  # a bag's temporary copy goes, on an error too
        finally:
            seen_by_probe = probe.stop()
        rec.probe, rec.stalls = seen_by_probe
        node_state(rec, node, pid)
        checks += [f.check(rec) for f in runnable]
        done = rec
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: report what this run collected, then stop
        stopping = True
        if runner is None or not runner.started:
            raise  # nothing streamed yet: run_all names its faults as not run
        with stops_held():  # a second stop is the same request: the partial record is made whole
            rec = runner.partial(stream)
            if seen_by_probe is not None:
                rec.probe, rec.stalls = seen_by_probe
            node_state(rec, node, runner.node_pid)
            stop = Interrupted(exc, [rec], checks + interrupted_checks(runner.faults, rec),
                               f"in node run '{group}' at t={rec.duration_s:.1f} s")
        raise stop from exc
    finally:
        # held: a stop here cut the clean-up short (the node left running) and replaced the finished
        # run's record with a bare KeyboardInterrupt, read as "before it streamed" (review)
        with stops_held() as held:
            if feeder is not None:
                feeder.close()
            if node is not None:
                node.stop()
            tmp.cleanup()
        if held.signum is not None and not stopping:
            if done is None:  # an error ended the run (the node did not come up): the stop goes before it
                raise held.stop()
            raise Interrupted(held.stop(), [done], checks, f"after node run '{group}'")
    return done, checks


class NodeUnavailableError(RuntimeError):
    """The node of a group never answered (it exited, or nothing runs on the domain)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP during the runs, with what was collected before it.

    Why: the report was written only when nothing was raised, so a stopped run left the previous
    run's verdict in the output folder; now a partial report (verdict ``INTERRUPTED``) is written
    from ``records`` and ``checks``, whose faults not run are marked :attr:`CheckResult.interrupted`.
    A KeyboardInterrupt still, so whatever does not look for it unwinds as before.
    """

    def __init__(self, cause: KeyboardInterrupt, records: list[RunRecord], checks: list[CheckResult],
                 where: str = "", *, finished: str = "") -> None:
        super().__init__()
        self.cause = cause  # the KeyboardInterrupt itself (a Terminated for SIGTERM / SIGHUP: the exit status)
        self.records = records
        self.checks = checks
        self.where = where  # e.g. "in node run 'main' at t=12.3 s"
        #: The verdict of a whole report written before this stop was raised (it came while the report
        #: was written, which was finished first: :mod:`tiny_node.stopping`); '' for a partial report.
        self.finished = finished

    @property
    def how(self) -> str:
        """How and where it was stopped, as the reports' ``interrupted`` says it ("terminated (SIGTERM) in ...")."""
        how, status = stopped_by(self.cause)
        return f"{how} ({signal.Signals(status - 128).name}) {self.where}"


def not_run(faults: list[Fault], group: str, why: str) -> list[CheckResult]:
    """The checks of faults an interruption kept from running, each saying why."""
    return [CheckResult(f.name, group, f.expected, True, skipped=why, interrupted=True) for f in faults]


def interrupted_checks(faults: list[Fault], rec: RunRecord) -> list[CheckResult]:
    """The checks of a run stopped early: a fault whose window and recovery ended before judged, the others not run.

    The partial record ends :data:`DRAIN_S` before the stop (:meth:`_Runner.partial`). A check that
    cannot be made on it is a failure naming the error, never dropped.
    """
    end = rec.duration_s - DRAIN_S
    out: list[CheckResult] = []
    for f in faults:
        w = rec.windows.get(f.name)
        if w is None:
            out += not_run([f], rec.group, f"not run: the run was interrupted at t={rec.duration_s:.1f} s")
        elif w.until > end:
            out += not_run([f], rec.group, f"interrupted at t={rec.duration_s:.1f} s, before every frame of its "
                                           f"window and recovery (to t={w.until:.1f} s) was answered: not judged")
        else:
            try:
                out.append(f.check(rec))
            except Exception as exc:  # the partial record lacks what it needs: say so in its row
                out.append(CheckResult(f.name, rec.group, f.expected, False,
                                       failures=[f"could not be judged on the interrupted run: {exc!r}"]))
    return out


def node_state(rec: RunRecord, node: NodeProcess | None, pid: int | None) -> None:
    """Whether the node is alive at the end of the run, and a started node's exit status if not."""
    rec.node_alive = node.alive() if node is not None else attached_alive(rec, pid)
    if node is not None and not rec.node_alive and node.proc is not None:
        rec.node_exit_status = node.proc.returncode


#: How much of the node's own error line a failure relays (a refused parameter lists every known one).
NODE_ERROR_CHARS = 240
#: A line the node (rclpy's logger, its CLI, a traceback's last line) writes when something fails.
_ERROR_LINE = re.compile(r"\[(ERROR|FATAL)\]|^tiny_node: |\b\w*(Error|Exception)\b|\berror\b", re.IGNORECASE)


def node_error(log: str, *, fallback_last: bool = True, limit: int = NODE_ERROR_CHARS) -> str:
    """The node's last error line in its log, cut to ``limit`` characters ('' when there is none).

    Why: a node that refuses its arguments exits with one line saying why (an unknown parameter
    and the likely one meant); the run's failure said only "exited with status 2", and the reason
    was in ``node-<run>.log``. ``fallback_last``: with no line that looks like an error, the
    log's last line (a node that exited said its last word there); not for a node still running.
    """
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    errors = [ln for ln in lines if _ERROR_LINE.search(ln)]
    line = errors[-1] if errors else (lines[-1] if lines and fallback_last else "")
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _wait_for_node(feeder: Any, node: NodeProcess | None, timeout_s: float) -> bool:
    """The feeder's wait for the node, given up as soon as the started node has exited.

    Why: a node that refuses its arguments (a parameter, a namespace) exits within a second; waiting
    the full minute for it only delays the error.
    """
    return bool(feeder.wait_for_node(timeout_s, alive=node.alive if node is not None else None))


def attached_alive(rec: RunRecord, pid: int | None) -> bool:
    """Attach mode: whether the node is still running at the end of the run.

    By its pid when known (``--node-pid``). Without one, by what it still sent: a decision (with
    or without a frame) or a diagnostic in the run's last seconds. Why not "the last second's
    frames were all decided", as before: a live node whose deadline is longer than the drain
    (1000 ms) was reported as "the node process exited", its pid alive.
    """
    if pid is not None:
        return pid_alive(pid)
    got = [d.received_at for d in rec.every_decision()] + [d.at for d in rec.diags]
    if not got:
        return False
    quiet = rec.duration_s - rec.rt(max(got))
    return quiet <= DRAIN_S + max(1.0, rec.deadline_ms * 1e-3, rec.diag_period_s) + 0.5


def attach_failure(feeder: Any, namespace: str, domain: str, pid: int | None) -> str:
    """Why an attached node was not found, naming where it was looked for and what the graph holds.

    Why: a node in another namespace, a node started ``--no-autostart`` (alive, unconfigured) and
    no node at all all read "the node did not come up ... is it running there?".
    """
    where = f"namespace {namespace or '/'} on ROS_DOMAIN_ID={domain}"
    if unmatched := feeder.unmatched():  # up and active, on another topic: not a lifecycle matter
        return f"{unmatched}, in {where}"
    try:
        nodes = feeder.node.get_node_names_and_namespaces()
    except Exception:  # the graph could not be read: say what was looked for only
        nodes = []
    own = "/" + namespace.strip("/") if namespace.strip("/") else "/"
    here = [ns for name, ns in nodes if name == "tiny_node" and ("/" + ns.strip("/") if ns.strip("/") else "/") == own]
    elsewhere = sorted({ns for name, ns in nodes if name == "tiny_node"} - set(here))
    parts: list[str] = []
    if pid is not None and pid_alive(pid):
        parts.append(f"process {pid} exists, but its node never became active in {where} "
                     "(unconfigured, e.g. started with --no-autostart? in another namespace?)")
    elif here:
        parts.append(f"a tiny_node is on the graph in {where} but never became active "
                     "(unconfigured, e.g. started with --no-autostart? configure and activate it)")
    else:
        parts.append(f"no active tiny_node in {where}" + (f" (--node-pid {pid}: no such process)" if pid else ""))
    if elsewhere:
        parts.append(f"a tiny_node runs in namespace {', '.join(elsewhere)} (give --namespace)")
    return "; ".join(parts)


def _attach_skips(faults: list[Fault], group: str) -> list[CheckResult]:
    return [CheckResult(f.name, group, f.expected, True,
                        skipped=f"needs its own node run ({group}); not possible with --attach") for f in faults]


def run_all(cfg: HarnessConfig, faults: list[Fault], *,
            clean_s: float = 0.0) -> tuple[list[RunRecord], list[CheckResult]]:
    """Every group that has faults (``main`` always, for the clean scenario run)."""
    by_group: dict[str, list[Fault]] = {}
    for f in faults:
        by_group.setdefault(f.group, []).append(f)
    by_group.setdefault("main", [])
    records: list[RunRecord] = []
    checks: list[CheckResult] = []
    order = ("main", "simtime", "bundle")
    for group in order:
        if group not in by_group:
            continue
        if cfg.attach and group != "main":
            checks += _attach_skips(by_group[group], group)
            continue
        try:
            rec, ch = run_group(cfg, group, by_group[group], extra_s=clean_s if group == "main" else 0.0)
        except KeyboardInterrupt as exc:  # this run's record so far, and every fault not run, named
            where = f"before node run '{group}' streamed"
            if isinstance(exc, Interrupted):
                records += exc.records
                checks += exc.checks
                where = exc.where
            else:
                checks += not_run(by_group[group], group, f"not run: interrupted {where}")
            for g in order[order.index(group) + 1:]:
                later = by_group.get(g, [])
                checks += (_attach_skips(later, g) if cfg.attach
                           else not_run(later, g, f"not run: the run was interrupted {where}"))
            raise Interrupted(exc.cause if isinstance(exc, Interrupted) else exc, records, checks, where) from exc
        except NodeUnavailableError as exc:  # the other groups' results still make the report
            why = str(exc).split("\n", 1)[0]
            cfg.progress(str(exc))
            checks.append(CheckResult(f"node run '{group}'", group, "the node comes up", False, failures=[why]))
            checks += [CheckResult(f.name, group, f.expected, False, failures=[f"not run: {why}"])
                       for f in by_group[group]]
            continue
        records.append(rec)
        checks += ch
    return records, checks


#: Least share of the stream's camera messages the harness must have been able to send: fewer,
#: and the node saw another camera than the one streamed (its rate, its gaps), so the run does
#: not test it. A few unreadable frames in a recording (a truncated last message) pass, counted.
MIN_SENDABLE_SHARE = 0.9


def sending_failures(rec: RunRecord) -> list[str]:
    """No camera frame sent, or too few of the stream's: the run tested nothing, or not the stream.

    Why: a bag whose frames could not be decoded sent no frame at all, so no frame went
    undecided and the run passed ("0/0 frames decided"). The reasons come from what the
    stream said of the frames it could not send (:attr:`RunRecord.unsent`), most frequent first.
    Frames a stopped run's record left out (:attr:`RunRecord.frames_cut`) were sent: a run stopped
    in its first second read "no camera frame was sent (the stream handed over 12 camera frames)".
    """
    unsent = rec.unsent.get("camera", {})
    n_unsent = sum(unsent.values())
    total = rec.camera_from_stream + n_unsent
    why = "; ".join(f"{n}x {reason}" for reason, n in sorted(unsent.items(), key=lambda kv: -kv[1])[:3])
    more = f" (+{len(unsent) - 3} more reasons)" if len(unsent) > 3 else ""
    if not rec.frames and not rec.frames_cut:  # frames sent, then left out of a stopped run's record: sent
        detail = (f": {n_unsent} of the stream's {total} camera messages could not be sent: {why}{more}"
                  if n_unsent else f" (the stream handed over {total} camera frames)")
        return [f"no camera frame was sent{detail}"]
    if total and rec.camera_from_stream < MIN_SENDABLE_SHARE * total:
        return [f"only {rec.camera_from_stream} of the stream's {total} camera messages could be sent "
                f"(at least {MIN_SENDABLE_SHARE:.0%} needed): {why}{more}"]
    return []


#: The model state of a decision the model answered in time: the only one in which it decided.
#: Why not ``late`` too: the watchdog closes every frame the model was asked and had not answered
#: by its publish time as ``late``, answer or none (the run cancelled), so a model that is always
#: too slow, or a worker hanging on every job, gave only late / unavailable, and a run in which the
#: model decided not one frame passed as "model: test".
MODEL_ANSWERED = ("on_time",)
#: Outside every fault's window and recovery, the model must answer in time at least
#: ``decision.MODEL_ON_TIME_SHARE`` of the frames it was asked (``on_time`` + ``late``), once it was
#: asked this many: a model in time for 2 frames of 120 passed as tested (review).
MODEL_MIN_ASKED = 10


def model_failures(rec: RunRecord) -> list[str]:
    """A run meant to test the model whose model never worked: it tested the rules only.

    Why: with a bundle that failed its checksum the node logged an ERROR (in its log file only),
    decided every frame by the rules, and the run passed as if the model had been validated.
    Judged on what the node says, so it holds for an attached node too: its last ``model``
    diagnostic in state ``failed`` (a bad bundle, a worker that cannot start), or not one decision
    after warm-up the model answered in time (``model_state`` ``on_time``) while the model was
    asked, or could not be (anything but ``skipped`` throughout: the rules braked on every frame,
    so the model was never asked and proves nothing either way). Judged on the decisions, not on
    the worker's ``results`` count: a result that comes after the fallback was published decided
    nothing, and the decisions are there whatever an attached node's diagnostics period. Not for
    the corrupt-bundle run, whose model must fail (``bundle_corrupt`` judges that).
    """
    if not rec.has_model or not rec.model_expected:
        return []
    diags = rec.diag("model")
    last = diags[-1] if diags else None

    def quiet_t(t: float) -> bool:  # outside every fault's window and recovery
        return not any(w.start <= t < w.until for w in rec.windows.values())

    # quoted: the worst status after warm-up outside the faults (the last, published once the frames
    # stopped, said "ready"; one in a fault's window is the fault's own, e.g. its injected kill)
    quiet_diags = [d for d in rec.diag("model", rec.warmup_s) if quiet_t(rec.rt(d.at))]
    shown = last
    if last is not None and last.values.get("state", last.message) != "failed":
        shown = max(quiet_diags, key=lambda d: d.level, default=last)
    said = ""
    if shown is not None:
        err = shown.values.get("last_error", "")
        said = f"; its model diagnostic: {shown.message}{': ' + err if err else ''}"
        # room for a checksum error's file and both hashes
        said = said if len(said) <= 2 * NODE_ERROR_CHARS else said[:2 * NODE_ERROR_CHARS - 3] + "..."
    if last is not None and last.values.get("state", last.message) == "failed":
        return [f"the node's model failed: the rules alone decided from then on, the model was not tested{said}"]
    judged = [r for r in rec.results() if r.decision is not None and r.frame.t >= rec.warmup_s]
    states = Counter(str(r.values.get("model_state", "")) for r in judged)
    if judged and not any(states[s] for s in MODEL_ANSWERED) and set(states) != {"skipped"}:
        seen = ", ".join(f"{s} {n}" for s, n in states.most_common())
        worker = ""
        if last is not None and "results" in last.values:  # the run's end: lifetime counts
            worker = (f"; the worker's counts: results {last.values['results']}, "
                      f"cancels {last.values.get('cancels', '?')}, errors {last.values.get('errors', '?')}")
        return [f"the model answered no frame in time: model_state over the {len(judged)} frames after warm-up: "
                f"{seen} (late: no answer by the frame's publish time, the fallback decided; skipped: the rules "
                f"braked, the model was not asked); the run tested the rules only{worker}{said}"]
    out = []
    # a worker that restarted where no fault was injected (a crash loop): its frames are unavailable,
    # which the share below does not count (review: 5 crashes, the model in time for 29 %, PASS)
    restarts, seen_restarts = [], None
    for d in diags:
        try:
            r = int(d.values.get("restarts", ""))
        except ValueError:
            continue
        if seen_restarts is not None and r > seen_restarts and rec.rt(d.at) >= rec.warmup_s and quiet_t(rec.rt(d.at)):
            restarts.append(f"{r - seen_restarts} by {rec.rt(d.at):.1f} s")
        seen_restarts = r
    if restarts:
        out.append(f"the model worker restarted outside every fault's window and recovery ({', '.join(restarts)}): "
                   f"the rules decided meanwhile{said}")
    quiet = [r for r in judged if quiet_t(r.frame.t)]
    asked = Counter(str(r.values.get("model_state", "")) for r in quiet if r.values.get("model_state")
                    in ("on_time", "late"))
    n = asked["on_time"] + asked["late"]
    if n >= MODEL_MIN_ASKED and asked["on_time"] < MODEL_ON_TIME_SHARE * n:
        out.append(f"the model answered {asked['on_time']} of the {n} frames it was asked in time outside the "
                   f"faults' windows and recovery (at least {MODEL_ON_TIME_SHARE:.0%} needed; late: the fallback "
                   f"decided): the run tested the rules mostly{said}")
    return out


def global_failures(rec: RunRecord) -> list[str]:
    """Whole-run invariants: frames sent, each decided once, no unknown stamps, node alive, model worked."""
    out = sending_failures(rec)
    out += model_failures(rec)
    judged = [r for r in rec.results() if r.frame.t >= rec.warmup_s]
    missing = sum(r.decision is None for r in judged)
    dups = sum(r.duplicates for r in judged)
    if missing:
        out.append(f"{missing} frames without a decision{_missing_why(rec, judged)}")
    if dups:
        out.append(f"{dups} duplicate decisions")
    if rec.unknown_decisions:
        out.append(f"{rec.unknown_decisions} decisions for stamps never sent")
    # every frame in time, not only those inside a fault's window: the gaps between faults, the tail,
    # any --duration. From the first fault on: the lead-in is the start-up's settling time (DDS
    # matching over UDP between two hosts took > 1 s); a run without faults is judged after warm-up.
    settled = min((w.start for w in rec.windows.values()), default=rec.warmup_s)
    late, _ = timing_failures([r for r in judged if r.decision is not None and r.frame.t >= settled],
                              stalls=rec.stalls if rec.probe_trusted else None)
    out += [f"whole run: {f}" for f in late]
    out += brake_failures(rec)
    stray = rec.stray_frameless()
    if stray:
        out.append(f"{len(stray)} decisions without a frame although a frame had been sent within "
                   f"camera_timeout_s (first at t={rec.rt(stray[0].received_at):.2f} s)")
    if not rec.node_alive:
        out.append(node_exit(rec))
    return out


#: Where rclpy gives no message info (Humble): how far apart a decision and its ``brake`` message may
#: be received (the harness's executor may take them apart under load). Also the record's tail in
#: which decisions are not judged (a pair taken apart by the collection).
BRAKE_PAIR_S = 1.0
#: How much later than its decision a ``brake`` message may be published, on the node's clock: the
#: node publishes it first, so only a system clock set back between two calls makes it later.
BRAKE_ORDER_TOL_MS = 1.0


def brake_failures(rec: RunRecord) -> list[str]:
    """Every judged decision's ``brake`` message, with its value, published no later; no brake besides.

    Why: ``brake`` is the one output the vehicle acts on. It was never checked: a node with it
    remapped away passed, exit 0, while its drives collided at full speed; then, matched to
    decisions by receipt within a second, a brake 0.8 s late passed, and so did extra brake
    messages of the other value (reviews 2026-12-08). With the message info (rclpy >= Iron) each
    decision is paired with the brake of its publication sequence number
    (:func:`_brake_failures_by_sequence`); without it, by receipt (:func:`_brake_failures_by_receipt`).
    Judged: decisions (with or without a frame) from the warm-up to :data:`BRAKE_PAIR_S` before
    the record's end.
    """
    if rec.brakes is None:
        return []
    end = rec.duration_s - BRAKE_PAIR_S if rec.duration_s > 0.0 else math.inf
    every = rec.every_decision()
    judged = sorted((d for d in every if rec.warmup_s <= rec.rt(d.received_at) <= end), key=lambda d: d.received_at)
    if rec.brake_pairing == "sequence":
        return _brake_failures_by_sequence(rec, every, judged)
    return _brake_failures_by_receipt(rec, judged)


def _writers(pubs: list[tuple[float, Published]]) -> list[bytes]:
    """Publishers in the order they began publishing (their first message; receipt where no source time)."""
    first: dict[bytes, tuple[int, float]] = {}
    for at, p in pubs:
        key = (p.source_ns, at) if p.source_ns else (2**63, at)
        if p.writer not in first or key < first[p.writer]:
            first[p.writer] = key
    return sorted(first, key=first.__getitem__)


def _brake_failures_by_sequence(rec: RunRecord, every: list[DecisionRec], judged: list[DecisionRec]) -> list[str]:
    """Pair each decision with the ``brake`` of its sequence number, from the brake publisher made with it.

    The node's two publishers are made together and publish together (brake first), so the n-th
    publisher of decisions (a reconfigured node makes new ones) goes with the n-th of brakes.
    """
    assert rec.brakes is not None
    brakes = rec.brakes
    d_writers = _writers([(d.received_at, d.published) for d in every if d.published is not None])
    b_writers = _writers([(b.received_at, b.published) for b in brakes if b.published is not None])
    out: list[str] = []
    if len(b_writers) > len(d_writers):
        out.append(f"`brake` came from {len(b_writers)} publishers, decisions from {len(d_writers)}: something "
                   "besides the node commands the vehicle's brake")
    partner = dict(zip(d_writers, b_writers, strict=False))
    by_seq = {(b.published.writer, b.published.seq): b for b in brakes if b.published is not None}
    missing: list[DecisionRec] = []
    other: list[tuple[DecisionRec, BrakeRec]] = []
    later: list[tuple[DecisionRec, float]] = []
    for d in judged:
        assert d.published is not None
        b = by_seq.get((partner.get(d.published.writer, b""), d.published.seq))
        if b is None:
            missing.append(d)
            continue
        assert b.published is not None
        if b.value != (d.values.get("decision") == "brake"):
            other.append((d, b))
        if b.published.source_ns and d.published.source_ns:
            lag_ms = (b.published.source_ns - d.published.source_ns) * 1e-6
            if lag_ms > BRAKE_ORDER_TOL_MS:
                later.append((d, lag_ms))
    n = len(judged)
    if missing:
        head = missing[0]
        out.append(f"{len(missing)} of {n} decisions without their `brake` message (first at "
                   f"t={rec.rt(head.received_at):.2f} s, {head.values.get('decision')}; {len(brakes)} `brake` "
                   "messages in all): the topic the vehicle acts on, remapped away or not published?")
    if other:
        d, b = other[0]
        out.append(f"{len(other)} of {n} decisions with a `brake` message of the other value (first at "
                   f"t={rec.rt(d.received_at):.2f} s: {d.values.get('decision')}, brake {str(b.value).lower()})")
    if later:
        d, lag = later[0]
        out.append(f"{len(later)} of {n} `brake` messages published after their decision (first at "
                   f"t={rec.rt(d.received_at):.2f} s, {lag:.0f} ms after; the node publishes the brake first): "
                   "the vehicle acts later than the decisions say")
    if judged:
        paired = {(partner.get(d.published.writer, b""), d.published.seq) for d in every if d.published is not None}
        lo, hi = judged[0].received_at, judged[-1].received_at
        stray = [b for b in brakes if b.published is not None and lo <= b.received_at <= hi
                 and (b.published.writer, b.published.seq) not in paired]
        if stray:
            out.append(f"{len(stray)} `brake` messages that answer no decision (first at "
                       f"t={rec.rt(stray[0].received_at):.2f} s, {str(stray[0].value).lower()}): the vehicle "
                       "was commanded what no decision said")
    return out


def _brake_failures_by_receipt(rec: RunRecord, judged: list[DecisionRec]) -> list[str]:
    """Without message info: each decision to the next unmatched ``brake`` of its value received near it.

    In receipt order, within :data:`BRAKE_PAIR_S`. Weaker: a brake up to that late passes, and
    extra brake messages are not judged.
    """
    assert rec.brakes is not None
    pending = sorted((b.received_at, b.value) for b in rec.brakes)  # each matched once
    used = [False] * len(pending)
    first = 0  # every message before it is used or too early for the decisions to come
    unmatched: list[DecisionRec] = []
    for d in judged:
        want = d.values.get("decision") == "brake"
        while first < len(pending) and (used[first] or pending[first][0] < d.received_at - BRAKE_PAIR_S):
            first += 1
        for i in range(first, len(pending)):
            at, value = pending[i]
            if at > d.received_at + BRAKE_PAIR_S:
                unmatched.append(d)
                break
            if not used[i] and value == want:
                used[i] = True
                break
        else:
            unmatched.append(d)
    if not unmatched:
        return []
    head = unmatched[0]
    return [f"{len(unmatched)} of {len(judged)} decisions without a `brake` message of their value within "
            f"{BRAKE_PAIR_S:g} s (first at t={rec.rt(head.received_at):.2f} s, {head.values.get('decision')}; "
            f"{len(rec.brakes)} `brake` messages in all): the topic the vehicle acts on, remapped away or "
            "not published?"]


def last_heard(rec: RunRecord) -> float | None:
    """Run time of the node's last decision or diagnostic received (None: nothing came)."""
    got = [d.received_at for d in rec.every_decision()] + [d.at for d in rec.diags]
    return rec.rt(max(got)) if got else None


def node_exit(rec: RunRecord) -> str:
    """When the node exited, as near as the harness can tell, and how (a started node's exit status).

    The time is its last answer's (a decision or a diagnostic): the harness does not see the exit
    itself. Why: the report said only "node exited", and charged the frames sent to the dead node
    to transport.
    """
    t = last_heard(rec)
    when = f" at t≈{t:.1f} s (its last decision or diagnostic)" if t is not None else " before it answered anything"
    how = f", status {rec.node_exit_status}" if rec.node_exit_status is not None else ""
    return f"node exited{when}{how}"


def _missing_why(rec: RunRecord, judged: list[Any]) -> str:
    """Where the frames without a decision went: after the node was gone, or lost before it got them."""
    parts = []
    if not rec.node_alive:
        t = last_heard(rec)
        after = sum(r.decision is None and (t is None or rec.rt(r.frame.sent_at) > t) for r in judged)
        parts.append(f"{after} of them sent after the {node_exit(rec)}")
    c = node_counters(rec)
    if "frames_received" in c:
        lost = c["frames_sent"] - c["frames_received"]
        parts.append(f"{'until its last camera status ' if not rec.node_alive else ''}the node received "
                     f"{c['frames_received']} of {c['frames_sent']} frames sent"
                     f"{': ' + str(lost) + ' lost in transport' if lost > 0 else ''}")
    if "decisions" in c:
        parts.append(f"it published {c['decisions']} decisions")
    return f" ({'; '.join(parts)})" if parts else ""


def node_counters(rec: RunRecord) -> dict[str, Any]:
    """The node's own counts over this run: its last statuses' counters less those it had before.

    Why differences: the counters are the node's lifetime ones, so an attached node that had run
    before reported "the node received 574 of 240 frames sent". The base is the last status
    received before streaming began; with none, the first in the run (``since_s``, its run time).
    ``frames_sent``: the frames the harness sent in the span the camera counts cover (to the last
    camera status's receipt), so that a node that died mid-run is not said to have lost the rest.
    """
    out: dict[str, Any] = {}

    def span(name: str) -> tuple[DiagRec, DiagRec] | None:
        got = rec.diag(name)
        if not got:
            return None
        before = [d for d in got if d.at < rec.t0]
        return (before[-1] if before else got[0]), got[-1]

    def count(base: DiagRec, last: DiagRec, key: str) -> int:
        now, was = int(last.values.get(key, "0")), int(base.values.get(key, "0"))
        return now - was if now >= was else now  # fewer than before: the node started over, counts since then

    try:
        if cam := span("camera"):
            base, last = cam
            since = base.at if base.at >= rec.t0 else -math.inf
            out["frames_received"] = count(base, last, "frames")
            out["dropped_in_transport"] = count(base, last, "dropped_in_transport")
            out["frames_sent"] = sum(since <= f.sent_at <= last.at for f in rec.frames)
            out["since_s"] = rec.rt(base.at) if base.at >= rec.t0 else None
        if wd := span("watchdog"):
            out["decisions"] = count(*wd, "decisions")
            out["deadline_misses"] = count(*wd, "deadline_misses")
    except ValueError as exc:
        rec.notes.append(f"unreadable node counters: {exc}")
    return out


def threads_alive() -> int:
    """For debugging leaks in long runs."""
    return threading.active_count()
