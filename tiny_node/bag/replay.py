"""Replay any rosbag2 through the decision core, and write what it decided beside the inputs.

Lockstep (default): every message is handed to :class:`tiny_node.lockstep.Lockstep` in log-time
order, at its log time, as the node would receive it; deterministic and as fast as the CPU
allows.  Real time (``realtime=True``): the bag is published over DDS with a ``/clock``, as
``ros2 bag play --clock`` does, to a separately started node, and its decisions are recorded
(:mod:`tiny_node.bag.realtime`).  Either way the output folder holds a bag with the inputs
copied through plus ``/tiny_node/decision`` and ``/tiny_node/brake``, ``summary.json`` and
``replay.png``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.interfaces import Connection, ConnectionExtRosbag2, Qos
from rosbags.rosbag2 import Writer, WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from tiny_node.bag import msgs
from tiny_node.bag.errors import BagError
from tiny_node.bag.record import EPOCH_KEY, open_writer
from tiny_node.bag.report import (
    DecisionRecord,
    Series,
    bad_frame_warning,
    sensor_end_warnings,
    silent_sensor_warnings,
    startup_warning,
    summarize,
    undecided_warning,
    write_plot,
)
from tiny_node.bag.settings import DRIVE_KEY, cut_short_warning, read_settings, settings_warnings
from tiny_node.bag.topics import BagSource, detect_topics, in_bag_folder
from tiny_node.config import NodeConfig
from tiny_node.decision import Decision, ModelState, model_asked
from tiny_node.frames import FrameError
from tiny_node.sensors import range_stamp_warning
from tiny_node.tools.nodeproc import process_running
from tiny_node.watchdog import future_stamp_fault

OUT_DECISION = "/tiny_node/decision"
OUT_BRAKE = "/tiny_node/brake"
OUT_DIAGNOSTICS = "/tiny_node/diagnostics"  # real time only: the node's /diagnostics
OUT_TOPICS = (OUT_DECISION, OUT_BRAKE, OUT_DIAGNOSTICS)
OUT_BAG = "bag"
OUTPUTS = (OUT_BAG, "summary.json", "replay.png")
PARTIAL = "replay.partial"  # a run's outputs until it succeeded
PARTIAL_MARK = ".tiny_node-replay"  # in PARTIAL: the pid of the replay writing it
PREVIOUS = "previous"  # in PARTIAL: the previous replay's outputs while commit() swaps
ALL_MOVED = ".all-moved"  # in PREVIOUS: every previous output is aside; <out> holds the new ones
TOOL_KEY = "tiny_node.tool"

Progress = Callable[[float, float], None]  # (fraction done, log time s)
#: A log-time gap with no message on any topic longer than this is a pause in the recording or a
#: jump of its clock (``ros2 bag record --use-sim-time`` logs at 0 until the first /clock), not
#: a time the sensors went silent: replay goes on after it, as the node would after a restart.
MAX_LOG_GAP_S = 60.0


@dataclass(frozen=True)
class ReplayResult:
    """Where the outputs are, and what was decided."""

    out_dir: Path
    bag: Path
    summary_path: Path
    plot_path: Path | None
    summary: dict[str, Any]
    decisions: list[DecisionRecord]
    topics: dict[str, str]

    @property
    def speed_x_realtime(self) -> float | None:
        """Played time / wall time of a lockstep replay (None in real time: the bag's own pace)."""
        speed = self.summary["timing"]["speed_x_realtime"]
        return None if speed is None else float(speed)


#: The definition written for a type neither the input bag nor rosbags' type stores define (a
#: vendor's message in a bag recorded without definitions): no fields, and this comment.
UNDEFINED_MSGDEF = ("# tiny_node replay: the input bag had no definition of this type (recorded without message\n"
                    "# definitions) and none was known: the messages are copied unchanged, undescribed\n")


def undefined_msgdef(msgtype: str, comment: str = UNDEFINED_MSGDEF) -> tuple[str, str]:
    """(definition, RIHS01 hash) of ``msgtype`` with no fields, only ``comment``: what rosbags' readers check."""
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg(comment, msgtype))
    return comment, store.hash_rihs01(msgtype)


def unread_msgdef(msgtype: str, original: str) -> tuple[str, str]:
    """(definition, RIHS01 hash) of a type whose input definition rosbags cannot read, nor hash.

    For one recorded without its type hash: no fields, the input's definition as comments. Why:
    rosbags writes a definition only with its hash, and cannot hash one it cannot read; a made-up
    hash would be a lie about the type. The bytes are copied all the same.
    """
    lines = "".join(f"# {line}\n" for line in original.splitlines())
    return undefined_msgdef(msgtype, "# tiny_node replay: the input bag's definition of this type (below) is one the\n"
                                     "# rosbags library cannot read, recorded without its type hash: the messages are\n"
                                     "# copied unchanged, under this empty definition\n" + lines)


class OutputBag:
    """The output bag: input connections copied through, decisions added."""

    def __init__(self, path: Path, storage: str, source: BagSource, custom: dict[str, str],
                 warnings: list[str]) -> None:
        self.path = path
        self.writer: Writer = open_writer(path, storage, custom)
        # keyed by (reader, connection id): ids restart in each file of a split bag
        self._map: dict[tuple[int, int], Connection] = {}
        self._own: dict[str, Connection] = {}
        self.hardware_id = "tiny_node@replay"
        by_key: dict[tuple[str, str, tuple[Qos, ...]], Connection] = {}
        skipped: set[str] = set()
        for c in source.connections:
            if c.topic in OUT_TOPICS:  # a recording's or an earlier replay's decisions: replaced, the normal
                continue                # path (a warning on every replay of a recording taught to ignore them)
            store = source.typestore_for(c.msgtype)
            qos: tuple[Qos, ...] = ()
            fmt = "cdr"
            if isinstance(c.ext, ConnectionExtRosbag2):
                qos, fmt = tuple(c.ext.offered_qos_profiles), c.ext.serialization_format
            key = (c.topic, c.msgtype, qos)
            if key not in by_key:
                try:
                    msgdef = rihs01 = None
                    if source.definition_error(c):  # one rosbags cannot read, valid ROS 2 all the same: kept
                        msgdef, rihs01 = c.msgdef.data, source.recorded_hash(c)
                        if not rihs01:
                            msgdef, rihs01 = unread_msgdef(c.msgtype, c.msgdef.data)
                            skipped.add(f"{c.topic}: copied unchanged, under an empty definition of {c.msgtype} "
                                        "holding the bag's own as comments (recorded without its type hash, which "
                                        "rosbags cannot compute for a definition it cannot read)")
                    elif store is None:  # copied all the same: its bytes, under an empty definition that says why
                        msgdef, rihs01 = undefined_msgdef(c.msgtype)
                        skipped.add(f"{c.topic}: no definition of {c.msgtype} in the bag: copied unchanged, with "
                                    "an empty definition (tools that decode it need the package's own)")
                    by_key[key] = self.writer.add_connection(c.topic, c.msgtype, typestore=store, msgdef=msgdef,
                                                             rihs01=rihs01, serialization_format=fmt,
                                                             offered_qos_profiles=list(qos))
                except Exception as exc:  # a type rosbags cannot describe: say so, go on
                    skipped.add(f"{c.topic}: cannot copy {c.msgtype}: {exc}")
                    continue
            self._map[(id(c.owner), c.id)] = by_key[key]
        warnings += sorted(skipped)

    def copy(self, conn: Connection, ns: int, raw: bytes) -> None:
        """An input message, unchanged."""
        out = self._map.get((id(conn.owner), conn.id))
        if out is not None:
            self.writer.write(out, ns, raw)

    def add(self, topic: str, ns: int, msg: Any) -> None:
        """One of our own messages (reliable QoS, like the node's decision topics)."""
        self.add_raw(topic, msg.__msgtype__, ns, msgs.serialize(msg))

    def add_raw(self, topic: str, msgtype: str, ns: int, raw: bytes) -> None:
        """One of our own messages, already CDR (as received from the node)."""
        conn = self._own.get(topic)
        if conn is None:
            conn = self.writer.add_connection(topic, msgtype, typestore=msgs.TYPESTORE,
                                              offered_qos_profiles=[msgs.RELIABLE_QOS])
            self._own[topic] = conn
        self.writer.write(conn, ns, raw)

    def decision(self, ns: int, d: Decision) -> None:
        """``/tiny_node/decision`` + ``/tiny_node/brake`` for a core decision."""
        self.add(OUT_DECISION, ns, msgs.decision_msg(d, self.hardware_id))
        self.add(OUT_BRAKE, ns, msgs.bool_msg(d.brake))

    def close(self) -> None:
        """Index and metadata.yaml."""
        try:
            self.writer.close()
        except (WriterError, OSError) as exc:
            raise BagError(f"cannot finish output bag {self.path}: {exc}") from exc

    def abort(self) -> None:
        """Drop the partial output (the run failed: a half bag would mislead)."""
        try:
            self.writer.abort()
        finally:
            shutil.rmtree(self.path, ignore_errors=True)


class Feeder:
    """Turns input messages into core inputs exactly as the node's callbacks do."""

    def __init__(self, source: BagSource, roles: Mapping[str, str], cfg: NodeConfig, series: Series,
                 origin_ns: int) -> None:
        self.source = source
        self.role_of = {topic: role for role, topic in roles.items()}
        #: role topic -> type -> its messages of another type than the topic's (:meth:`role`): not read
        self.not_read: dict[str, dict[str, int]] = {}
        self.max_w, self.max_h = cfg.int("max_frame_width"), cfg.int("max_frame_height")
        self.future_tolerance_s = cfg.float("future_stamp_tolerance_s")
        self.series = series
        self.origin_ns = origin_ns

    def t(self, ns: int) -> float:
        """Replay time (s) of a log time (ns)."""
        return (ns - self.origin_ns) * 1e-9

    def ns(self, t: float) -> int:
        """Log time (ns) of a replay time (s)."""
        return self.origin_ns + round(t * 1e9)

    def role(self, conn: Connection) -> str | None:
        """The role ``conn``'s messages go to; None for no role, and (counted) for a type not its topic's.

        Why the type: a topic recorded under two types (a merged or converted bag: a camera topic
        with a ``std_msgs/String`` note) is read as one (:class:`~tiny_node.bag.topics.BagSource`);
        the note fed to the camera was a traceback. The other type's messages are only copied.
        """
        role = self.role_of.get(conn.topic)
        if role is None or conn.msgtype == self.source.topics[conn.topic].msgtype:
            return role
        by_type = self.not_read.setdefault(conn.topic, {})
        by_type[conn.msgtype] = by_type.get(conn.msgtype, 0) + 1
        return None

    def frame(self, conn: Connection, ns: int, raw: bytes) -> tuple[int, Any, str | None]:
        """(stamp, rgb or None, fault or None); an undecodable message is a bad frame too.

        The log time stands in for the node's ROS clock (what the recording node's clock read
        at receipt), so a stamp too far ahead of it is refused as the node refuses it.
        """
        t = self.t(ns)
        rgb = None
        fault: str | None = None
        try:
            msg = self.source.deserialize(raw, conn.msgtype)
            stamp = msgs.time_to_ns(msg.header.stamp)
        except ValueError as exc:
            stamp, fault = ns, f"camera message unreadable ({exc}); stamp = log time"
        else:
            try:
                rgb = msgs.camera_rgb(msg, conn.msgtype, max_width=self.max_w, max_height=self.max_h)
            except FrameError as exc:
                fault = str(exc)
            else:
                fault = future_stamp_fault(stamp, ns, self.future_tolerance_s)
        self.series.frames.append((t, stamp))
        return stamp, rgb, fault

    def sensor(self, role: str, conn: Connection, raw: bytes) -> Any | None:
        """The deserialized message, or None (counted) if it cannot be read."""
        try:
            return self.source.deserialize(raw, conn.msgtype)
        except ValueError as exc:
            self.series.undecodable[conn.topic] += 1
            self.series.undecodable_why.setdefault(conn.topic, str(exc))
            return None


def _range_args(msg: Any) -> tuple[float, int, float, float]:
    """As ``tiny_node.ros.convert.range_reading``: max_range <= 0 means unlimited."""
    max_range = float(msg.max_range) if msg.max_range > 0 else math.inf
    return float(msg.range), msgs.time_to_ns(msg.header.stamp), float(msg.min_range), max_range


def log_gap_warning(feeder: Feeder, before_ns: int, after_ns: int, *, realtime: bool = False) -> str:
    """The warning for a log-time gap over :data:`MAX_LOG_GAP_S`.

    Lockstep starts a fresh core there; in real time the node is restarted through its lifecycle
    with ``/clock`` at the time after the gap, so neither decides after it on readings from before.
    """
    how = ("replayed on from there with /clock moved on and the node restarted through its lifecycle, as "
           "lockstep starts afresh" if realtime else "replayed on from there as after a node restart")
    return (f"log time jumps from {feeder.t(before_ns):.3f} s to {feeder.t(after_ns):.3f} s "
            f"({(after_ns - before_ns) * 1e-9:.1f} s without any message; over {MAX_LOG_GAP_S:.0f} s is a pause "
            f"in the recording or a jump of its clock): {how}, the gap itself not decided")


def startup_roles(roles: Mapping[str, str], cfg: NodeConfig) -> tuple[str, ...]:
    """The sensor roles of the bag whose first message ends a start-up.

    Range and odometry, and the IMU when ``imu_required`` (without it, the core judges frames
    the same with or without one).
    """
    return tuple(r for r in required_roles(cfg) if r in roles)


def required_roles(cfg: NodeConfig) -> tuple[str, ...]:
    """The sensor roles the core needs a reading of: range, odometry, the IMU with ``imu_required``."""
    return ("range", "odom") + (("imu",) if cfg.bool("imu_required") else ())


def startup_bounds(cfg: NodeConfig) -> dict[str, float]:
    """Per sensor role: how long after a start-up opens its silence is still start-up (s).

    Its staleness timeout (``range_timeout_s``, ``odom_timeout_s``, ``imu_timeout_s``). Why: that
    is when the core calls the same silence a fault in steady state (a sensor that had spoken at
    the opening and then gone quiet is judged "stale" from then on); a sensor that has not spoken
    by then is absent, not late, and its fail-safes are the drive's (``first_brake``). Without a
    bound, a radar that never reports (at the start, or after a log-time gap) hid every brake.
    Per sensor and configurable, unlike a fixed second: a slow sensor has its own timeout.
    """
    return {role: cfg.float(f"{role}_timeout_s") for role in ("range", "odom", "imu")}


#: real time: the node receives a message a little after the replay publishes it; a decision that
#: says a sensor had delivered no reading yet is start-up up to this long after the lockstep bound
#: (that sensor's first message, or its :func:`startup_bounds` after the bag's start if earlier)
REALTIME_STARTUP_SLACK_S = 1.0


def realtime_startup(records: list[DecisionRecord], roles: Mapping[str, str], series: Series, *,
                     bounds: Mapping[str, float], open_t: float) -> list[DecisionRecord]:
    """Real time: ``records`` with their start-up roles, from the node's own reasons.

    The node says a sensor never delivered ("range: no reading received"); lockstep knows when
    each frame was judged, here only the node does. Its reason for the frame itself counts (a
    held decision's ``| now:`` part), not the brake it holds. The rule is lockstep's: start-up
    lasts until the sensor's first message (a decodable one: the replay does not time the
    others; :data:`REALTIME_STARTUP_SLACK_S` added for its delivery) or its bound after the
    bag's first camera frame (``open_t``), whichever is first; later, the node's "no reading"
    is a fault. A frame whose reason names a sensor past its bound, or one the bag lacks, is
    not start-up: the node brakes for that fault anyway.
    """
    first = {"range": series.range_t[0] if series.range_t else math.inf,
             "odom": series.speed_t[0] if series.speed_t else math.inf}
    until = {role: min(first.get(role, math.inf) + REALTIME_STARTUP_SLACK_S, open_t + bounds[role])
             for role in ("range", "odom", "imu")}
    out = []
    for r in records:
        own = r.reason.rpartition(" | now: ")[2] if r.hold else r.reason
        named = tuple(role for role in ("range", "odom", "imu") if f"{role}: no reading received" in own)
        startup = bool(named) and all(role in roles and r.t <= until[role] for role in named)
        out.append(replace(r, startup=named) if startup else r)
    return out


def _run_lockstep(source: BagSource, feeder: Feeder, out: OutputBag, cfg: NodeConfig, *, bundle: Path | None,
                  budget_ms: float | None, progress: Progress | None, startup: tuple[str, ...],
                  warnings: list[str], recorded: Mapping[str, Any] | None) -> tuple[list[DecisionRecord], int]:
    from tiny_node.clock import ManualClock
    from tiny_node.lockstep import Lockstep, late_budget_warning, model_from_bundle

    clock = ManualClock()
    model = None
    if bundle is not None:
        from tiny_node.model.bundle import BundleError

        try:
            model = model_from_bundle(bundle, clock, budget_ms=budget_ms)
        except BundleError as exc:
            raise BagError(f"model bundle {bundle}: {exc}") from exc
        whose = "its latency_budget_ms" if budget_ms is None else "--budget-ms"
        if late := late_budget_warning(round(model.budget_s * 1e3, 9), whose, cfg):
            warnings.append(late)
    if recorded is not None:
        warnings += settings_warnings(recorded, cfg, bundle, None if model is None else model.budget_s)
    ls = Lockstep(cfg, model, clock)
    records: list[DecisionRecord] = []
    series = feeder.series
    span = max(1, source.end_ns - source.start_ns)
    next_report = 0.0
    misses = 0
    last_ns: int | None = None
    # Start-up (see report.startup_summary): the roles of ``startup`` that have not yet sent a
    # message to this core, each with the log time its bound runs out (startup_bounds), and the
    # frames the core judged meanwhile (receipt time -> the roles missing then).
    bounds = startup_bounds(cfg)
    waiting: dict[str, float] = {}
    judged_waiting: dict[float, tuple[str, ...]] = {}
    unstamped: set[str] = set()  # why the range driver's scans were timed by receipt, each said once

    # roles whose bound ran out in this window and not yet heard, and required roles the bag lacks:
    # a fault, for which the core brakes anyway (not start-up)
    faulted: set[str] = set()
    absent = set(required_roles(cfg)) - set(startup)

    def still_missing(t: float) -> tuple[str, ...]:
        if faulted or absent:
            return ()
        return tuple(role for role in startup if t <= waiting.get(role, -math.inf))

    def start_up(t: float) -> None:
        waiting.update({role: math.inf for role in startup})  # bounds run from the window's first frame
        faulted.clear()
        judged_waiting.clear()
        series.startup_windows.append({"from_s": round(t, 6), "until_s": None, "missing": list(startup),
                                       "silent": [], "decisions": 0, "first_frame_s": None})

    def expire(t: float) -> None:
        """End the start-up of the roles whose bound ran out before ``t``: from then on, a fault."""
        gone = [role for role in startup if waiting.get(role, math.inf) < t]
        if not gone:
            return
        window = series.startup_windows[-1]
        window["silent"] += gone
        faulted.update(gone)
        end = max(waiting.pop(role) for role in gone)
        if not waiting:
            window["until_s"] = round(end, 6)

    def emit(decisions: list[Decision]) -> None:
        for d in decisions:
            missing = still_missing(d.decided_at) if d.no_frame else judged_waiting.get(d.received_at, ())
            if missing:
                series.startup_windows[-1]["decisions"] += 1
            out.decision(feeder.ns(d.decided_at), d)
            records.append(DecisionRecord.from_decision(d, d.decided_at, missing))

    start_up(feeder.t(source.start_ns))
    for conn, ns, raw in source.messages():
        t = feeder.t(ns)
        if last_ns is not None and ns - last_ns > MAX_LOG_GAP_S * 1e9:
            # decided through, the gap would be camera timeouts at the frame rate: billions of them
            # after a jump of the clock. The open cycles are decided, and a fresh core goes on.
            emit(ls.finish())
            if model is not None and model.busy_seq is not None:
                model.cancel(model.busy_seq)
            misses += ls.watchdog.stats.deadline_misses
            ls = Lockstep(cfg, model, clock)
            expire(t)  # the last start-up's bounds ran out in the gap (each is well under it)
            start_up(t)  # a fresh core has no reading either
            warnings.append(log_gap_warning(feeder, last_ns, ns))
            series.gaps.append((feeder.t(last_ns), t))
        last_ns = ns
        emit(ls.advance_to(t))  # decisions due before this message go first in the bag
        expire(t)  # after them: they were decided while the roles were still waited for
        out.copy(conn, ns, raw)
        role = feeder.role(conn)
        if role == "camera":
            for r, until in waiting.items():
                if until == math.inf:  # the window's first frame: its bounds run from here
                    waiting[r] = t + bounds[r]
            if series.startup_windows[-1]["first_frame_s"] is None:
                series.startup_windows[-1]["first_frame_s"] = round(t, 6)
            stamp, rgb, fault = feeder.frame(conn, ns, raw)
            if missing_now := still_missing(t):
                judged_waiting[t] = missing_now
            emit(ls.frame(t, stamp, rgb, fault))
        elif role is not None and (msg := feeder.sensor(role, conn, raw)) is not None:
            if role == "range":
                rng, stamp, lo, hi = _range_args(msg)
                series.range_t.append(t)
                series.range_m.append(rng)
                emit(ls.range(t, rng, stamp, lo, hi, stamp_warning=range_stamp_warning(
                    stamp, ns, feeder.future_tolerance_s, ls.watchdog.cfg.rules.range_timeout_s)))
                if (why := ls.sensors.range_timed_by_receipt) is not None and why not in unstamped:
                    unstamped.add(why)  # said once: the node's sensors diagnostic says it every period
                    warnings.append(f"{conn.topic}: {why}: its scans are timed by their log time (the node: "
                                    f"their receipt) from {t:.2f} s; the closing speed carries that jitter")
            elif role == "odom":
                speed = float(msg.twist.twist.linear.x)
                series.speed_t.append(t)
                series.speed_mps.append(speed)
                emit(ls.odom(t, speed, float(msg.twist.twist.angular.z)))  # a real drive turns
            else:
                emit(ls.imu(t, float(msg.linear_acceleration.x)))
        faulted.discard(role)
        if role in waiting:  # its first message, decodable or not: one that is not is a fault, not start-up
            del waiting[role]
            if not waiting:
                series.startup_windows[-1]["until_s"] = round(t, 6)
        if progress is not None and (done := (ns - source.start_ns) / span) >= next_report:
            progress(done, t)
            next_report = done + 0.02
    emit(ls.finish())
    if last_ns is not None:
        expire(feeder.t(last_ns))  # a bound that ran out before the bag's last message; later ones never did
    series.startup_windows[:] = [w for w in series.startup_windows if w["decisions"] or w["silent"]]
    if progress is not None:
        progress(1.0, feeder.t(source.end_ns))
    return records, misses + ls.watchdog.stats.deadline_misses


#: The longest name a real-time replay makes under the node's namespace: a parameter service of
#: the node that restarts it through its lifecycle (tools/feeder.py, in that namespace).
_LONGEST_NAME = "tiny_node_feeder/set_parameters_atomically"


def namespace_problem(namespace: str) -> str:
    """Why a real-time replay cannot use ``namespace`` ('' when it can), by rcl's rules, in one line.

    Why up front: rclpy refused it only once the replay had begun, with an InvalidTopicNameException
    traceback. As the replay does, the namespace is made fully qualified first ('a/b' is '/a/b').
    """
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if not ns:
        return ""
    from tiny_node.ros_names import namespace_problem as rcl_namespace_problem
    from tiny_node.ros_names import topic_name_problem

    if why := rcl_namespace_problem(ns):
        return why
    if why := topic_name_problem(f"{ns}/{_LONGEST_NAME}"):
        return f"too long: names under it would break rcl's limit ({why})"
    return ""


def replay(bag: Path, *, out_dir: Path, cfg: NodeConfig, bundle: Path | None,
           topics: dict[str, str] | None = None, realtime: bool = False, budget_ms: float | None = None,
           storage: str | None = None, namespace: str = "", wait_s: float = 30.0,
           progress: Progress | None = None, plot: bool = True) -> ReplayResult:
    """Replay ``bag`` through the decision core (or a live node with ``realtime``); see module doc.

    ``bundle`` None = rules only (lockstep; in real time the node's own parameters decide).
    ``budget_ms`` overrides the bundle's lockstep latency budget.  ``storage`` of the output
    bag defaults to the input's.  Raises :class:`BagError` for any unusable input.
    """
    wall0 = time.perf_counter()
    out_dir = Path(out_dir)
    with BagSource(Path(bag)) as source, _Staging(out_dir) as staging:
        roles, found = detect_topics(source.topics, topics, bag=str(source.path))
        warnings = [*source.warnings, *found]
        recorded, unreadable = read_settings(source.custom)
        warnings += [w for w in (unreadable, cut_short_warning(source.custom)) if w]
        if "imu" not in roles and cfg.bool("imu_required") and not realtime:
            warnings.append("imu_required is set and the bag has no IMU topic in use: every frame is judged "
                            "fail-safe (imu missing), as the node would")
        if realtime and bundle is not None:
            warnings.append(f"model {bundle} not used in real time: the running node's own model_bundle decides")
        if budget_ms is not None and (realtime or bundle is None):  # else dropped without a word
            warnings.append(f"--budget-ms {budget_ms:g} not used: " + (
                "in real time the running node's model takes the time it takes" if realtime
                else "no model runs (rules only)"))
        if not realtime and cfg.str("deadline_reference") == "stamp":
            warnings.append("deadline_reference 'stamp' is not modelled in lockstep: deadlines run from the "
                            "log (receipt) time")
        out_path = out_dir / OUT_BAG
        staging.open(source.path)  # refusals first; the previous replay's outputs stay until this one succeeds
        epoch = source.custom.get(EPOCH_KEY, "")
        origin_ns = min(int(epoch), source.start_ns) if epoch.isdigit() else source.start_ns
        custom = {TOOL_KEY: "replay", EPOCH_KEY: str(origin_ns), "tiny_node.input": str(source.path)}
        out = OutputBag(staging.bag, storage or source.storage, source, custom, warnings)
        series = Series()
        feeder = Feeder(source, roles, cfg, series, origin_ns)
        try:
            if realtime:
                from tiny_node.bag.realtime import run_realtime

                records, misses = run_realtime(source, feeder, out, roles, namespace=namespace,
                                               wait_s=wait_s, progress=progress, warnings=warnings)
                records = realtime_startup(records, roles, series, bounds=startup_bounds(cfg),
                                           open_t=series.frames[0][0] if series.frames else feeder.t(source.start_ns))
            else:
                records, misses = _run_lockstep(source, feeder, out, cfg, bundle=bundle, budget_ms=budget_ms,
                                                 progress=progress, startup=startup_roles(roles, cfg),
                                                 warnings=warnings, recorded=recorded)
        except BaseException:
            out.abort()
            raise
        out.close()
        warnings += source.unread_warnings()
        warnings += [f"{topic}: {n} message(s) could not be decoded and went to no decision "
                     f"(first: {series.undecodable_why[topic]})" for topic, n in sorted(series.undecodable.items())]
        decided = summarize(records, series, deadline_misses=misses)
        states = decided["by_model_state"]
        if model_asked(states) and not states.get(ModelState.ON_TIME.value):
            late, unavailable = states.get(ModelState.LATE.value, 0), states.get(ModelState.UNAVAILABLE.value, 0)
            warnings.append(f"the model decided none of the {model_asked(states)} frame(s) it could have: "
                            f"{late} late, {unavailable} "
                            "unavailable (not loaded, its worker down, or the frame unusable): every decision is the "
                            "rules' (by_model_state)")
        if note := startup_warning(decided["startup_failsafe"], decided["first_brake"]):
            warnings.append(note)
        warnings += silent_sensor_warnings(decided["startup_failsafe"]["windows"], startup_bounds(cfg))
        if note := bad_frame_warning(roles["camera"], decided["frames"], decided["bad_frames"]):
            warnings.append(note)
        if note := undecided_warning(roles["camera"], records, series):
            warnings.append(note)
        last_t = {role: ts[-1] for role, ts in (("range", series.range_t), ("odom", series.speed_t))
                  if role in roles and ts}
        warnings += sensor_end_warnings(roles, last_t, [t for t, _ in series.frames], startup_bounds(cfg))
        replay_s = time.perf_counter() - wall0
        duration_s = (source.end_ns - source.start_ns) * 1e-9
        # what was played: the gaps over MAX_LOG_GAP_S are not (a clock that jumped by decades made
        # the replay "2266024335x real time")
        played_s = duration_s - sum(after - before for before, after in series.gaps)
        summary: dict[str, Any] = {
            "input": {
                "bag": str(source.path), "storage": source.storage, "duration_s": round(duration_s, 6),
                "played_s": round(played_s, 6),
                "log_gaps": [{"from_s": round(a, 6), "to_s": round(b, 6)} for a, b in series.gaps],
                "messages": source.message_count,
                "topics": {role: _topic_summary(source, name, feeder.not_read.get(name, {}))
                           for role, name in roles.items()},
                "recorded_with": recorded, "recorded_drive": source.custom.get(DRIVE_KEY),
            },
            "mode": "realtime" if realtime else "lockstep",
            "model": ("node parameters" if realtime else (str(bundle) if bundle is not None else "rules-only")),
            **decided,
            "output": {"bag": str(out_path), "storage": storage or source.storage,
                       "topics_added": list(OUT_TOPICS if realtime else OUT_TOPICS[:2])},
            "warnings": warnings,
        }
        plot_path: Path | None = None
        if plot:
            plot_path = out_dir / "replay.png"
            try:
                write_plot(staging.plot, records, series, f"{source.path.name}: {summary['mode']}, {summary['model']}")
            except ImportError as exc:
                warnings.append(f"no plot: {exc} (pip install matplotlib)")
                plot_path = None
        summary["output"]["plot"] = str(plot_path) if plot_path else None
        wall_s = time.perf_counter() - wall0
        # In real time the bag plays at its own pace: a speed over the whole command (the wait for
        # the node, its lifecycle restart, the drain) read as playback 3.5x too slow (review 2026-12-07)
        summary["timing"] = {"wall_s": round(wall_s, 3), "replay_s": round(replay_s, 3),
                             "speed_x_realtime": round(played_s / wall_s, 2) if wall_s > 0 and not realtime else None}
        summary_path = out_dir / "summary.json"
        staging.summary.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        staging.commit()
        return ReplayResult(out_dir, out_path, summary_path, plot_path, summary, records, roles)


def _topic_summary(source: BagSource, name: str, not_read: Mapping[str, int]) -> dict[str, Any]:
    """A used topic in summary.json: its messages read, and those the bag holds but could not be read.

    ``not_read``: by type, its messages of another type than the topic's, copied only (:meth:`Feeder.role`).
    """
    info = source.topics[name]
    read = source.read.get(name, info.count)
    return {"topic": name, "type": info.msgtype, "messages": read,
            **({"unread": info.count - read} if read < info.count else {}),
            **({"not_read": dict(not_read)} if not_read else {})}


def _refuse_overlap(bag: Path, out_path: Path) -> None:
    """Refuse an output bag that is, holds or lies inside the input bag: it would be cleared while read.

    A storage file given alone stands for its folder when that is a bag's (its metadata.yaml or
    its other splits beside it): the outputs were written into the user's recording.
    """
    a, b = bag.resolve(), out_path.resolve()
    if a.is_file() and in_bag_folder(a):
        a = a.parent
    if a == b or a in b.parents or b in a.parents:
        raise BagError(f"output bag {out_path} overlaps the input bag {bag}: choose another --out")


def _check_previous(out_path: Path) -> None:
    """Refuse an existing output bag that is not an earlier replay's: only those are ever replaced."""
    if not out_path.exists():
        return
    meta = out_path / "metadata.yaml"
    ours = False
    if meta.is_file():
        try:
            ours = "tiny_node.tool: replay" in meta.read_text(encoding="utf-8")
        except OSError as exc:
            raise BagError(f"cannot read {meta}: {exc}") from exc
    if not ours:
        raise BagError(f"{out_path} exists and is not the output of an earlier replay; choose another --out")


def _check_reports(out_dir: Path) -> None:
    """Refuse a summary.json or replay.png in ``out_dir`` without an earlier replay's bag beside them.

    Why: commit() renamed this run's report onto them whatever they were, e.g. the summary.json
    of a ``sim`` report folder. A replay's report is known by its bag (:func:`_check_previous`),
    not by its content: a replay.png says nothing of who drew it.
    """
    if (out_dir / OUT_BAG).exists():
        return  # an earlier replay's (checked by _check_previous): its report goes with it
    for name in OUTPUTS[1:]:
        if (out_dir / name).exists() or (out_dir / name).is_symlink():
            raise BagError(f"{out_dir / name} exists and is not an earlier replay's (no replay bag "
                           "beside it); choose another --out")


class _Staging:
    """A run's outputs, written in ``<out>/replay.partial`` and moved into place only when it succeeded.

    Why: a run that fails (a typo'd ``--model``, no node in real time, an interrupt, SIGTERM)
    must not cost the previous replay's outputs, nor leave anything that looks like its own.
    ``replay.partial`` holds the pid of its replay; one left by a replay that was killed (no
    longer running) is removed by the next run into the same ``--out``.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.dir = out_dir / PARTIAL
        self.bag, self.summary, self.plot = (self.dir / name for name in OUTPUTS)
        self._opened = False
        self._made: list[Path] = []  # the folders open() created, deepest first: a failed run removes them
        self._moves: list[tuple[Path, Path]] = []  # renames of commit(), undone if it is interrupted

    def __enter__(self) -> _Staging:
        return self

    def open(self, source: Path) -> None:
        """Refuse what must not be touched, remove a killed run's leftovers, create the folder."""
        for path in (self.out_dir / OUT_BAG, self.dir):  # the output bag, and where it is written first
            _refuse_overlap(source, path)
        _check_previous(self.out_dir / OUT_BAG)
        if self.dir.exists() or self.dir.is_symlink():
            mark = self.dir / PARTIAL_MARK
            try:
                pid = int(mark.read_text(encoding="utf-8").strip())
            except (OSError, ValueError) as exc:
                raise BagError(f"{self.dir} exists and is not a replay's partial output; choose another --out") from exc
            if pid != os.getpid() and process_running(pid):
                raise BagError(f"{self.dir}: another replay (pid {pid}) is writing into {self.out_dir}; "
                               "wait for it, or choose another --out")
            self._restore_previous()  # a replay killed while it swapped its outputs in
            shutil.rmtree(self.dir)  # a killed replay's
        _check_reports(self.out_dir)  # after the restore: a killed swap may have had the bag aside
        self._made = [p for p in (self.out_dir, *self.out_dir.parents) if not p.exists()]
        self.dir.mkdir(parents=True)
        self._opened = True
        (self.dir / PARTIAL_MARK).write_text(f"{os.getpid()}\n", encoding="utf-8")

    def commit(self) -> None:
        """Replace the previous replay's outputs, all of them, by this run's (renames only)."""
        previous = self.dir / PREVIOUS
        previous.mkdir()
        _check_reports(self.out_dir)  # written meanwhile by another tool: still not ours to replace
        if (self.out_dir / OUT_BAG).exists():
            _check_previous(self.out_dir / OUT_BAG)
            for name in OUTPUTS:  # never leave the old run's report beside the new one
                if (self.out_dir / name).exists():
                    self._move(self.out_dir / name, previous / name)
        (previous / ALL_MOVED).touch()  # from here on, what is in <out> is this run's
        for name in OUTPUTS:
            if (self.dir / name).exists():
                self._move(self.dir / name, self.out_dir / name)
        self._moves.clear()  # done: nothing to undo

    def _restore_previous(self) -> None:
        """Put back the outputs a replay killed inside :meth:`commit` had moved aside.

        Why: they are the only copy of the previous replay's outputs; removed with the killed
        run's folder, a SIGKILL at the wrong moment would cost them. Once every old output had
        moved aside (``ALL_MOVED``), what is in ``<out>`` is the killed run's (unfinished) and goes.
        """
        previous = self.dir / PREVIOUS
        if not previous.is_dir():
            return
        swapped_in = (previous / ALL_MOVED).exists()
        for name in OUTPUTS:
            old, dst = previous / name, self.out_dir / name
            if swapped_in and dst.is_dir():
                shutil.rmtree(dst)
            elif swapped_in and dst.exists():
                dst.unlink()
            if old.exists():
                os.replace(old, dst)

    def _move(self, src: Path, dst: Path) -> None:
        self._moves.append((src, dst))  # first: an interrupt right after the rename still finds it
        os.replace(src, dst)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for src, dst in reversed(self._moves):  # commit() interrupted (SIGTERM): back as it was
            if dst.exists() and not src.exists():
                with contextlib.suppress(OSError):
                    os.replace(dst, src)
        if self._opened:  # a failed run's partial outputs, or the replaced ones
            shutil.rmtree(self.dir, ignore_errors=True)
        if exc_type is not None:
            for made in self._made:  # created for this run (newa/newb/newc: all three), empty
                try:
                    made.rmdir()
                except OSError:
                    break  # not empty (someone else's since) or gone: its parents stay too


def read_decisions(bag: Path, topic: str = OUT_DECISION) -> dict[int, dict[str, Any]]:
    """The decisions on ``topic`` of a bag, by frame stamp (last one wins), as flat key-values.

    Also the log time (``log_ns``) of each.  For tests and tools comparing runs.
    """
    out: dict[int, dict[str, Any]] = {}
    with BagSource(Path(bag)) as source:
        for conn, ns, raw in source.messages({topic}):
            values = msgs.parse_decision(source.deserialize(raw, conn.msgtype))
            if values is not None:
                values["log_ns"] = ns
                out[int(values["stamp_ns"])] = values
    return out
