"""Real-time replay: play a bag over DDS to a running node, like ``ros2 bag play --clock``.

The camera / range / odometry / IMU messages are published unchanged (their CDR bytes, header
stamps kept; a type whose definition in the bag differs from the installed distro's is decoded and
sent as the installed type) on the node's input topics under ``namespace`` at their original pacing, with
``/clock`` carrying the bag's log time, so a node started with ``use_sim_time:=true`` sees the
bag's time as ROS time.  The node still measures its deadlines on its own monotonic clock: in
real time, deadlines are real.  Its ``decision`` / ``brake`` messages are recorded, as
received, into the output bag.

The node is restarted through its lifecycle before the first message (as ``sim --realtime``
restarts it between drives), so a node that ran before (an earlier replay, a drive) meets the
bag as a fresh node; whatever it decides before the first frame goes out answers no frame of
the bag and is left out, counted in a warning. It is restarted again at a log-time gap over
``MAX_LOG_GAP_S``, where lockstep starts a fresh core.
"""

from __future__ import annotations

import importlib
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tiny_node.bag import msgs
from tiny_node.bag.errors import BagError
from tiny_node.bag.replay import MAX_LOG_GAP_S, OUT_BRAKE, OUT_DECISION, OUT_DIAGNOSTICS, log_gap_warning
from tiny_node.bag.report import DecisionRecord, unanswered
from tiny_node.bag.topics import BagSource

CLOCK_PERIOD_S = 0.01  # /clock at 100 Hz between messages (ros2 bag play's default is 40 Hz)
DRAIN_TIMEOUT_S = 2.0  # after the last frame, wait this long for its decision
# Each lifecycle transition's answer: configure waits up to 60 s for the model worker to be ready.
RESTART_TIMEOUT_S = 90.0

# (topic relative to the node's namespace) by role and message type.
_NODE_TOPIC = {
    ("camera", msgs.IMAGE): "camera/image_raw",
    ("camera", msgs.COMPRESSED_IMAGE): "camera/image_raw/compressed",
    ("range", msgs.RANGE): "range",
    ("odom", msgs.ODOMETRY): "odom",
    ("imu", msgs.IMU): "imu",
}


def _rclpy_class(msgtype: str) -> Any:
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _to_rclpy(src: Any, cls: Any) -> Any:
    """``src`` (a rosbags message) as an instance of the installed ``cls``, field by field by name.

    Fields ``src`` lacks keep ``cls``'s defaults (a Humble ``Range`` has no ``variance``).
    """
    msg = cls()
    for name in cls.get_fields_and_field_types():
        if not hasattr(src, name):
            continue
        value, default = getattr(src, name), getattr(msg, name)
        if hasattr(type(default), "get_fields_and_field_types"):
            value = _to_rclpy(value, type(default))
        setattr(msg, name, value)
    return msg


def installed_form(source: BagSource, msgtype: str) -> Callable[[bytes], Any] | None:
    """How to publish ``msgtype`` messages of ``source`` to the installed distro; None: bytes unchanged.

    Why: a bag recorded on another distro may hold another definition of a type (Humble's
    ``sensor_msgs/Range`` lacks Kilted's ``variance``): published unchanged, its bytes would not
    decode in the node. Such messages are decoded with the bag's definition and sent as the
    installed type; an unreadable one is sent unchanged, as the node would receive it from the vehicle.
    """
    store = source.typestore_for(msgtype)
    cls = _rclpy_class(msgtype)
    if store is None or [n for n, _ in store.fielddefs[msgtype][1]] == list(cls.get_fields_and_field_types()):
        return None

    def convert(raw: bytes) -> Any:
        try:
            return _to_rclpy(source.deserialize(raw, msgtype), cls)
        except ValueError:  # counted by the feeder as undecodable
            return bytes(raw)
    return convert


def header_stamp_ns(raw: bytes) -> int | None:
    """The header stamp of a CDR-serialized ``Image`` / ``CompressedImage``; None if not plain CDR.

    Why: both types begin with ``std_msgs/Header``, whose stamp (int32 sec, uint32 nanosec) is
    the first field after the 4-byte encapsulation header, in every distro. Deserializing, or
    decoding, a frame to read it cost the publishing thread 12 ms per 1080p JPEG.
    """
    if len(raw) < 12 or raw[0] != 0 or raw[1] not in (0, 1):  # CDR_BE / CDR_LE only
        return None
    sec, nanosec = struct.unpack_from("<iI" if raw[1] else ">iI", raw, 4)
    return int(sec) * 1_000_000_000 + int(nanosec)


def node_topic(namespace: str, role: str, msgtype: str) -> str:
    """The node's input topic for a role (absolute, under ``namespace``)."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{_NODE_TOPIC[(role, msgtype)]}"


class Player:
    """A DDS participant publishing the node's inputs and /clock, collecting its decisions."""

    def __init__(self, roles: Mapping[str, tuple[str, str]], namespace: str) -> None:
        from tiny_node.dds import configure_dds

        configure_dds()  # large frames need the shared-memory profile, before rclpy.init
        try:
            import rclpy
            from rclpy.context import Context
            from rclpy.executors import SingleThreadedExecutor
            from rclpy.node import Node
            from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        except ImportError as exc:
            raise BagError(f"--realtime needs rclpy (pip install -e '.[ros]' or source ROS 2): {exc}") from exc

        self._rclpy = rclpy
        self.namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
        self.camera_compressed = roles["camera"][1] == msgs.COMPRESSED_IMAGE
        self.context = Context()
        rclpy.init(args=[], context=self.context)  # not sys.argv: the command's own options are no ROS arguments
        self.node = Node("tiny_node_replay", context=self.context)
        ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
        self.clock_pub = self.node.create_publisher(_rclpy_class(msgs.CLOCK), "/clock",
                                                    QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self.pubs: dict[str, Any] = {}
        self.topics: dict[str, str] = {}
        for role, (_, msgtype) in roles.items():
            self.topics[role] = node_topic(namespace, role, msgtype)
            self.pubs[role] = self.node.create_publisher(_rclpy_class(msgtype), self.topics[role],
                                                         qos_profile_sensor_data)
        self.decision_topic = f"{ns}/decision"
        self.received: list[tuple[float, str, bytes]] = []  # (monotonic, topic, cdr)
        self._lock = threading.Lock()
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        # The node's /diagnostics too: its header stamps show the node's ROS time followed /clock.
        for topic, msgtype in ((self.decision_topic, msgs.DIAGNOSTIC_ARRAY), (f"{ns}/brake", msgs.BOOL),
                               ("/diagnostics", msgs.DIAGNOSTIC_ARRAY)):
            self.node.create_subscription(_rclpy_class(msgtype), topic, self._receiver(topic), qos, raw=True)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._closing = False
        self._spin = threading.Thread(target=self._spin_forever, name="replay-spin", daemon=True)
        self._spin.start()

    def _receiver(self, topic: str) -> Callable[[bytes], None]:
        def on_message(raw: bytes) -> None:
            now = time.monotonic()
            with self._lock:
                self.received.append((now, topic, bytes(raw)))
        return on_message

    def _spin_forever(self) -> None:
        try:
            self.executor.spin()
        except Exception:
            if self.context.ok() and not self._closing:  # not a shutdown race: a real failure
                raise

    def drain(self) -> list[tuple[float, str, bytes]]:
        """Messages received since the last call."""
        with self._lock:
            got, self.received = self.received, []
        return got

    def clock(self, ns: int) -> None:
        """Publish ``/clock``."""
        self.clock_pub.publish(bytes(msgs.serialize(msgs.clock_msg(ns))))

    def wait_for_node(self, timeout_s: float, clock_ns: int) -> None:
        """Until the node is there; then restart it through its lifecycle and wait for it again.

        Why the restart: a node that ran before keeps its sensor state, brake hold and camera
        timeout (a replay met it with a fail-safe brake on a range 5.5 s stale, decided at t = 0).
        ``/clock`` goes out at ``clock_ns`` before and after it, so the node's ROS time is the
        bag's start when it configures.
        """
        self._wait_matched(timeout_s, clock_ns)
        self.restart_node(timeout_s, clock_ns, when="before the replay")

    def restart_node(self, timeout_s: float, clock_ns: int, *, when: str) -> None:
        """Restart the node with ``/clock`` at ``clock_ns``; then wait for it again.

        Deactivate, clean up, configure, activate: ``sim --realtime``'s restart, by its feeder.
        """
        from tiny_node.tools.feeder import Feeder

        self.clock(clock_ns)
        lifecycle = Feeder(namespace=self.namespace, compressed=self.camera_compressed)
        try:
            lifecycle.restart_node(timeout_s=RESTART_TIMEOUT_S)
            self.node_sim_time = _uses_sim_time(lifecycle, self.namespace)
        except RuntimeError as exc:
            raise BagError(
                f"could not restart the node through its lifecycle {when} ({exc}): it must be "
                f"active (tiny-node lifecycle --node {self.namespace}/tiny_node, or ros2 lifecycle get "
                f"{self.namespace}/tiny_node)"
            ) from exc
        finally:
            lifecycle.close()
        self._wait_matched(timeout_s, clock_ns)

    #: The node's ``use_sim_time`` after its restart (None: it did not answer the question).
    node_sim_time: bool | None = None

    def _wait_matched(self, timeout_s: float, clock_ns: int) -> None:
        """Until the node subscribes the camera and publishes decisions (with /clock meanwhile)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.clock(clock_ns)
            if (self.pubs["camera"].get_subscription_count() > 0
                    and self.node.count_publishers(self.decision_topic) > 0):
                time.sleep(0.3)  # let the reliable decision reader match too
                return
            time.sleep(0.05)
        raise BagError(
            f"no node subscribed to {self.topics['camera']} and publishing {self.decision_topic} "
            f"within {timeout_s:.0f} s: start one first (tiny-node run --ros-args -p use_sim_time:=true), "
            "in the same ROS_DOMAIN_ID, with camera_transport matching the bag's camera type; a node in "
            "another namespace needs --namespace, and one started with --no-autostart must be configured "
            "(tiny-node lifecycle configure activate --node NS/tiny_node)"
        )

    def close(self) -> None:
        """Stop spinning, then destroy the node and shut the context down.

        In that order (as ``Feeder.close``): a node destroyed under the spinning executor
        raised in its thread.
        """
        self._closing = True
        self.executor.shutdown(timeout_sec=1.0)
        self._spin.join(timeout=2.0)
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


def _uses_sim_time(feeder: Any, namespace: str) -> bool | None:
    """The node's ``use_sim_time`` parameter, asked over its parameter service (None: no answer)."""
    ns = namespace.rstrip("/") + "/" if namespace else ""
    value = feeder.get_parameters(f"{ns}tiny_node/get_parameters", ["use_sim_time"]).get("use_sim_time")
    return None if value is None else bool(value)


def sim_time_warning(node_sim_time: bool | None) -> str | None:
    """Why a node not on sim time is worth a word: it judges the bag's stamps by the wall clock."""
    if node_sim_time is not False:
        return None
    return ("the node runs on wall time (use_sim_time false): it ignores this replay's /clock and times "
            "staleness, stamps and its brake hold by the wall clock, not the bag's time; start it with "
            "-p use_sim_time:=true (the launch file's use_sim_time:=true) for a replay")


@dataclass
class _Drain:
    """The wait after the last message before the bag's end or a log gap (:func:`run_realtime`)."""

    on: bool = False
    brakes: list[tuple[int, bytes]] = field(default_factory=list)  # (bag ns, raw) received, held
    left_out: int = 0  # decisions answering no frame received meanwhile


def run_realtime(source: BagSource, feeder: Any, out: Any, roles: Mapping[str, str], *, namespace: str,
                 wait_s: float, progress: Callable[[float, float], None] | None,
                 warnings: list[str]) -> tuple[list[DecisionRecord], int]:
    """Play the bag to the node; return its decisions and how many arrived past their deadline.

    A log-time gap over ``MAX_LOG_GAP_S`` is not waited out (after a clock jump it would be
    decades): once the frames before it are decided, the node is restarted with ``/clock`` at
    the time after it, as lockstep starts a fresh core there (kept running, the node decided the
    first frames after a 100 s gap on a range track from before it), and the messages after it
    follow.
    """
    typed = {role: (topic, source.topics[topic].msgtype) for role, topic in roles.items()}
    player = Player(typed, namespace)
    forms = {role: installed_form(source, msgtype) for role, (_, msgtype) in typed.items()}
    records: list[DecisionRecord] = []
    before_first_frame: list[DecisionRecord] = []  # the node's, answering no frame of this bag
    first_frame_at: float | None = None  # monotonic, when the first camera frame went out
    # Monotonic (from, to) of each restart at a log gap, to the first frame after it: what the
    # node sends then answers no frame either (to None: that frame has not gone out yet).
    restarts: list[tuple[float, float | None]] = []
    during_restarts: list[DecisionRecord] = []
    # While waiting for the last frames' decisions after the last message before the bag's end or
    # a log gap: the brakes received (bag ns, raw), held until the drain ends, and the decisions
    # answering no frame then, left out, as are the node's diagnostics then. Why: lockstep decides
    # nothing after that message, and the node, fed nothing more, times the camera out: a frame it
    # never decided (damaged, lost) kept the drain listening for 2 s and added its fail-safe brakes
    # to the results (53 to 75).
    drain = _Drain()
    after_last: list[DecisionRecord] = []
    try:
        player.wait_for_node(wait_s, source.start_ns)
        if (why := sim_time_warning(player.node_sim_time)) is not None:
            warnings.append(why)
        wall0 = time.monotonic() + 0.05
        bag0 = floor_ns = source.start_ns

        def bag_ns(mono: float) -> int:
            # Never before the bag's start or a restart's time: /clock went out there while the
            # node restarted, and the 50 ms lead-in after it must not step ROS time backwards.
            return max(floor_ns, bag0 + round((mono - wall0) * 1e9))

        def record_received() -> None:
            for mono, topic, raw in player.drain():
                before = first_frame_at is None or mono < first_frame_at
                if before or any(start <= mono and (end is None or mono < end) for start, end in restarts):
                    if topic == player.decision_topic and (values := msgs.parse_decision(
                            msgs.TYPESTORE.deserialize_cdr(raw, msgs.DIAGNOSTIC_ARRAY))) is not None:
                        (before_first_frame if before else during_restarts).append(
                            DecisionRecord.from_values(values, 0.0))
                    continue  # its brake and /diagnostics too: the node before this replay or restarting
                ns = bag_ns(mono)
                if topic == player.decision_topic:
                    values = msgs.parse_decision(msgs.TYPESTORE.deserialize_cdr(raw, msgs.DIAGNOSTIC_ARRAY))
                    record = None if values is None else DecisionRecord.from_values(values, feeder.t(ns))
                    if drain.on and record is not None and record.no_frame:
                        after_last.append(record)
                        drain.left_out += 1
                        continue
                    out.add_raw(OUT_DECISION, msgs.DIAGNOSTIC_ARRAY, ns, raw)
                    if record is not None:
                        records.append(record)
                elif topic == "/diagnostics":
                    # while draining, the node's state once fed nothing more (sensors stale, the camera
                    # out, whatever its camera_timeout_action): left out, as lockstep has no such time
                    if not drain.on:
                        out.add_raw(OUT_DIAGNOSTICS, msgs.DIAGNOSTIC_ARRAY, ns, raw)
                elif drain.on:
                    drain.brakes.append((ns, raw))
                else:
                    out.add_raw(OUT_BRAKE, msgs.BOOL, ns, raw)

        def wait_until(due: float) -> None:
            while (now := time.monotonic()) < due:
                player.clock(bag_ns(now))
                record_received()
                time.sleep(min(CLOCK_PERIOD_S, due - now))

        def wait_for_decisions(linger_s: float = 0.0) -> None:
            """Until every frame sent has its decision, or ``DRAIN_TIMEOUT_S``; then ``linger_s`` more.

            What the node decides meanwhile answering no frame is left out (``after_last``), with
            the brake message each one was sent with: the latest brakes held, one per such decision
            (the node sends a decision's brake just before it).
            """
            drain.on, drain.brakes, drain.left_out = True, [], 0
            stamps = {s for _, s in feeder.series.frames}
            end = time.monotonic() + DRAIN_TIMEOUT_S
            while time.monotonic() < end and not stamps <= {r.stamp_ns for r in records}:
                wait_until(time.monotonic() + 0.05)
            wait_until(time.monotonic() + linger_s)
            for ns, raw in drain.brakes[:max(0, len(drain.brakes) - drain.left_out)]:
                out.add_raw(OUT_BRAKE, msgs.BOOL, ns, raw)
            drain.on = False

        span = max(1, source.end_ns - bag0)
        last_ns: int | None = None
        for conn, ns, raw in source.messages():
            if last_ns is not None and ns - last_ns > MAX_LOG_GAP_S * 1e9:
                warnings.append(log_gap_warning(feeder, last_ns, ns, realtime=True))
                feeder.series.gaps.append((feeder.t(last_ns), feeder.t(ns)))
                wait_for_decisions()
                restarts.append((time.monotonic(), None))
                player.restart_node(wait_s, ns, when=f"at the log gap before {feeder.t(ns):.3f} s")
                wall0, floor_ns = time.monotonic() + 0.05 - (ns - bag0) * 1e-9, ns
            last_ns = ns
            wait_until(wall0 + (ns - bag0) * 1e-9)
            player.clock(ns)
            role = feeder.role(conn)  # None too for a message of another type than its topic's: copied only
            if role is not None:
                form = forms[role]
                if role == "camera" and first_frame_at is None:
                    first_frame_at = time.monotonic()
                if role == "camera" and restarts and restarts[-1][1] is None:
                    # ends every restart's window still open (two gaps without a frame between):
                    # they close together, so the last one open means some are
                    now = time.monotonic()
                    restarts[:] = [(start, now if end is None else end) for start, end in restarts]
                player.pubs[role].publish(bytes(raw) if form is None else form(raw))
                if role == "camera":  # its stamp, to match the node's decision to it
                    feeder.series.frames.append((feeder.t(ns), _camera_stamp(source, conn.msgtype, ns, raw)))
                elif role in ("range", "odom") and (msg := feeder.sensor(role, conn, raw)) is not None:
                    t = feeder.t(ns)
                    if role == "range":
                        feeder.series.range_t.append(t)
                        feeder.series.range_m.append(float(msg.range))
                    else:
                        feeder.series.speed_t.append(t)
                        feeder.series.speed_mps.append(float(msg.twist.twist.linear.x))
            out.copy(conn, ns, raw)
            if progress is not None:
                progress((ns - bag0) / span, feeder.t(ns))
        wait_for_decisions(linger_s=0.2)  # late duplicates, if any, would arrive in the 0.2 s
    finally:
        player.close()
    if before_first_frame:
        warnings.append(ignored_warning(before_first_frame))
    if during_restarts:
        warnings.append(ignored_warning(during_restarts, "while it restarted at a log gap, before the first "
                                                          "frame after it"))
    if after_last:
        warnings.append(ignored_warning(after_last, "answering no frame after the last message before the bag's "
                                                    "end or a log gap (its camera timed out: lockstep decides "
                                                    "nothing there)", why="they answer no frame of this bag"))
    count_undecodable_frames(source, feeder, roles["camera"], records)
    misses = sum(1 for r in records if r.latency_ms > r.deadline_ms)
    return records, misses


def count_undecodable_frames(source: BagSource, feeder: Any, topic: str, records: list[DecisionRecord]) -> None:
    """Count, as undecodable, the camera messages among the frames the node never answered that are.

    Why: the node's middleware drops a message it cannot deserialize, so in real time a damaged
    frame got no decision and no word (lockstep decides it as a bad frame, named). Checked after
    the play, on the unanswered frames only: deserializing every frame in the publishing loop
    would delay the messages after it.
    """
    missing = {stamp for _, stamp in unanswered(records, feeder.series)}
    if not missing:
        return
    for conn, ns, raw in source.messages({topic}):
        if _camera_stamp(source, conn.msgtype, ns, raw) not in missing:
            continue
        try:
            source.deserialize(raw, conn.msgtype)
        except ValueError as exc:
            feeder.series.undecodable[topic] += 1
            feeder.series.undecodable_why.setdefault(topic, str(exc))


def _camera_stamp(source: BagSource, msgtype: str, ns: int, raw: bytes) -> int:
    """A camera message's header stamp, without decoding its image; its log time if unreadable (as lockstep)."""
    stamp = header_stamp_ns(raw)
    if stamp is not None:
        return stamp
    try:
        return msgs.time_to_ns(source.deserialize(raw, msgtype).header.stamp)
    except ValueError:
        return ns


def ignored_warning(ignored: list[DecisionRecord], when: str = "before the first frame was published", *,
                    why: str = "they answer no frame of this bag (the node's state from before its lifecycle "
                               "restart)") -> str:
    """The warning for decisions the node sent answering no frame (left out of the results).

    Before the replay's first frame, while it restarted at a log gap, or after the last message.
    """
    brakes = sum(r.brake for r in ignored)
    return (f"{len(ignored)} decision(s) from the node {when} were left out "
            f"({brakes} brake(s); the first: {'brake' if ignored[0].brake else 'no_brake'}, '{ignored[0].reason}'): "
            f"{why}")
