"""Real-time replay: play a bag over DDS to a running node, like ``ros2 bag play --clock``.

The camera / range / odometry / IMU messages are published unchanged (their CDR bytes, header
stamps kept; a type whose definition in the bag differs from the installed distro's is decoded and
sent as the installed type) on the node's input topics under ``namespace`` at their original pacing, with
``/clock`` carrying the bag's log time, so a node started with ``use_sim_time:=true`` sees the
bag's time as ROS time.  The node still measures its deadlines on its own monotonic clock: in
real time, deadlines are real.  Its ``decision`` / ``brake`` messages are recorded, as
received, into the output bag.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from tiny_node.bag import msgs
from tiny_node.bag.errors import BagError
from tiny_node.bag.replay import MAX_LOG_GAP_S, OUT_BRAKE, OUT_DECISION, OUT_DIAGNOSTICS, log_gap_warning
from tiny_node.bag.report import DecisionRecord
from tiny_node.bag.topics import BagSource

CLOCK_PERIOD_S = 0.01  # /clock at 100 Hz between messages (ros2 bag play's default is 40 Hz)
DRAIN_TIMEOUT_S = 2.0  # after the last frame, wait this long for its decision

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
        self.context = Context()
        rclpy.init(context=self.context)
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
            "in the same ROS_DOMAIN_ID, with camera_transport matching the bag's camera type"
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


def run_realtime(source: BagSource, feeder: Any, out: Any, roles: Mapping[str, str], *, namespace: str,
                 wait_s: float, progress: Callable[[float, float], None] | None,
                 warnings: list[str]) -> tuple[list[DecisionRecord], int]:
    """Play the bag to the node; return its decisions and how many arrived past their deadline.

    A log-time gap over ``MAX_LOG_GAP_S`` is not waited out (after a clock jump it would be
    decades): ``/clock`` steps over it, and the messages after it follow at once.
    """
    typed = {role: (topic, source.topics[topic].msgtype) for role, topic in roles.items()}
    player = Player(typed, namespace)
    forms = {role: installed_form(source, msgtype) for role, (_, msgtype) in typed.items()}
    records: list[DecisionRecord] = []
    try:
        player.wait_for_node(wait_s, source.start_ns)
        wall0 = time.monotonic() + 0.05
        bag0 = source.start_ns

        def bag_ns(mono: float) -> int:
            # Never before the bag's start: /clock went out at start_ns while waiting for the
            # node, and the first 50 ms lead-in must not step ROS time backwards.
            return bag0 + max(0, round((mono - wall0) * 1e9))

        def record_received() -> None:
            for mono, topic, raw in player.drain():
                ns = bag_ns(mono)
                if topic == player.decision_topic:
                    out.add_raw(OUT_DECISION, msgs.DIAGNOSTIC_ARRAY, ns, raw)
                    values = msgs.parse_decision(msgs.TYPESTORE.deserialize_cdr(raw, msgs.DIAGNOSTIC_ARRAY))
                    if values is not None:
                        records.append(DecisionRecord.from_values(values, feeder.t(ns)))
                elif topic == "/diagnostics":
                    out.add_raw(OUT_DIAGNOSTICS, msgs.DIAGNOSTIC_ARRAY, ns, raw)
                else:
                    out.add_raw(OUT_BRAKE, msgs.BOOL, ns, raw)

        def wait_until(due: float) -> None:
            while (now := time.monotonic()) < due:
                player.clock(bag_ns(now))
                record_received()
                time.sleep(min(CLOCK_PERIOD_S, due - now))

        span = max(1, source.end_ns - bag0)
        last_ns: int | None = None
        for conn, ns, raw in source.messages():
            if last_ns is not None and ns - last_ns > MAX_LOG_GAP_S * 1e9:
                wall0 -= (ns - last_ns) * 1e-9 - CLOCK_PERIOD_S  # bag_ns() follows: /clock jumps
                warnings.append(log_gap_warning(feeder, last_ns, ns))
            last_ns = ns
            wait_until(wall0 + (ns - bag0) * 1e-9)
            player.clock(ns)
            role = feeder.role_of.get(conn.topic)
            if role is not None:
                form = forms[role]
                player.pubs[role].publish(bytes(raw) if form is None else form(raw))
                if role == "camera":
                    feeder.frame(conn, ns, raw)  # its stamp, to match the node's decision to it
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
        stamps = {s for _, s in feeder.series.frames}
        end = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < end and not stamps <= {r.stamp_ns for r in records}:
            wait_until(time.monotonic() + 0.05)
        wait_until(time.monotonic() + 0.2)  # late duplicates, if any, would arrive now
    finally:
        player.close()
    misses = sum(1 for r in records if r.latency_ms > r.deadline_ms)
    return records, misses
