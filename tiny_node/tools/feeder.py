"""A DDS peer of the node: publishes its inputs, collects its decisions.

It measures on its own clock.  Used by the demo, the benchmark and the integration tests (and the HIL harness):
nothing but DDS passes between it and the node under test.
"""

from __future__ import annotations

import array
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, Imu, Range
from std_msgs.msg import Bool

from tiny_node.frames import encode_raw
from tiny_node.ros.convert import ns_to_stamp, parse_decision
from tiny_node.ros.message_info import publication, with_info

DECISION_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


@dataclass
class Received:
    """A decision as the feeder saw it: content plus its own receipt time."""

    received_at: float  # time.monotonic() in the feeder process
    values: dict[str, Any]
    #: (publisher gid, publication sequence number, source timestamp ns), where rclpy says (Iron on)
    published: tuple[bytes, int, int] | None = None


@dataclass
class FeederLog:
    """Frames sent (stamp -> monotonic send time) and decisions received (by stamp)."""

    sent: dict[int, float] = field(default_factory=dict)
    decisions: dict[int, list[Received]] = field(default_factory=dict)
    diagnostics: list[DiagnosticArray] = field(default_factory=list)
    diagnostics_at: list[float] = field(default_factory=list)  # monotonic receipt, parallel to diagnostics
    #: every ``brake`` message (monotonic receipt, value, as :attr:`Received.published`), in the order received
    brake_msgs: list[tuple[float, bool, tuple[bytes, int, int] | None]] = field(default_factory=list)


class Feeder:
    """Publishes camera / range / odom / imu to a tiny_node and records what comes back.

    Owns its own rclpy context and executor thread, so it can live in a process beside other
    rclpy users (tests, simulator) without sharing their executor.
    """

    def __init__(self, namespace: str = "", compressed: bool = False) -> None:
        self.context = Context()
        rclpy.init(args=[], context=self.context)  # not sys.argv: `hil --param a:=b` read as a remap rule
        self.node = Node("tiny_node_feeder", namespace=namespace, context=self.context)
        ns = namespace.rstrip("/") + "/" if namespace else ""
        self.compressed = compressed
        cam_type = CompressedImage if compressed else Image
        cam_topic = f"{ns}camera/image_raw" + ("/compressed" if compressed else "")
        self.pub_camera = self.node.create_publisher(cam_type, cam_topic, qos_profile_sensor_data)
        self.pub_range = self.node.create_publisher(Range, f"{ns}range", qos_profile_sensor_data)
        self.pub_odom = self.node.create_publisher(Odometry, f"{ns}odom", qos_profile_sensor_data)
        self.pub_imu = self.node.create_publisher(Imu, f"{ns}imu", qos_profile_sensor_data)
        self.log = FeederLog()
        self._lock = threading.Lock()
        self.latest_brake = False
        # with the message info: which brake message goes with which decision (publication sequence numbers)
        self.node.create_subscription(DiagnosticArray, f"{ns}decision", with_info(self._on_decision), DECISION_QOS)
        self.node.create_subscription(Bool, f"{ns}brake", with_info(self._on_brake), DECISION_QOS)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self._pub_clock: Any = None
        self._clock_type: Any = None
        self._ns = ns
        self._closing = False
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self._spin_forever, daemon=True)
        self._spin.start()

    def _spin_forever(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # context shut down (or the node destroyed) while closing
            if self.context.ok() and not self._closing:
                raise

    # --- receiving ------------------------------------------------------------------------
    def _on_decision(self, msg: DiagnosticArray, info: Any) -> None:
        now = time.monotonic()
        values = parse_decision(msg)
        with self._lock:
            self.log.decisions.setdefault(values["stamp_ns"], []).append(Received(now, values, publication(info)))

    def _on_brake(self, msg: Bool, info: Any) -> None:
        now = time.monotonic()
        self.latest_brake = bool(msg.data)
        with self._lock:
            self.log.brake_msgs.append((now, bool(msg.data), publication(info)))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        now = time.monotonic()
        with self._lock:
            self.log.diagnostics.append(msg)
            self.log.diagnostics_at.append(now)

    def decision_for(self, stamp_ns: int) -> Received | None:
        """The first decision received for a frame stamp."""
        with self._lock:
            got = self.log.decisions.get(stamp_ns)
            return got[0] if got else None

    # --- sending --------------------------------------------------------------------------
    def wait_for_node(self, timeout_s: float = 30.0, alive: Callable[[], bool] | None = None) -> bool:
        """Block until the node subscribes the camera and publishes decisions to us.

        ``alive``: whether the node process started for it still runs; False ends the wait at once.
        Why: a node that refuses its parameters exits within a second, and the demo and the bench
        said so only after the whole minute.
        """
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if (self.pub_camera.get_subscription_count() > 0
                    and self.node.count_publishers(self._topic("decision")) > 0):
                time.sleep(0.3)  # let the reliable decision reader match too
                return True
            if alive is not None and not alive():
                return False
            time.sleep(0.05)
        return False

    def unmatched(self) -> str | None:
        """Which of the node's topics the harness talks to has no one at the other end, or None.

        Why: a node whose camera was remapped (``-r camera/image_raw:=/front/image_raw``) came up
        and went active, and the harness said "the node did not come up" or "never became
        active" (review 2026-12-08): a wrong topic is the common rig mistake, so it is named.
        """
        camera, decision = self.pub_camera.topic_name, self._topic("decision")
        readers, writers = self.pub_camera.get_subscription_count(), self.node.count_publishers(decision)
        if readers and writers:
            return None
        if not readers and not writers:
            return None  # no node at all, or not active: the caller says which
        if writers:
            images = self._image_subscriptions()
            return (f"a node publishes {decision}, but nothing subscribes {camera}, where the harness sends its "
                    "frames" + (f" (tiny_node subscribes images on {', '.join(images)}: remapped?)" if images
                                else " (the node's camera remapped, or another camera_transport?)"))
        return f"{camera} has a subscriber, but nothing publishes {decision} (the node's decision topic remapped?)"

    def _image_subscriptions(self) -> list[str]:
        """The image topics tiny_node subscribes in the feeder's namespace (empty if the graph says none)."""
        from rclpy._rclpy_pybind11 import NodeNameNonExistentError

        try:
            subs = self.node.get_subscriber_names_and_types_by_node("tiny_node", self.node.get_namespace())
        except NodeNameNonExistentError:  # no tiny_node of that name here: nothing to name
            return []
        return sorted(t for t, types in subs if any(x.endswith(("/Image", "/CompressedImage")) for x in types))

    def _topic(self, rel: str) -> str:
        ns = self.node.get_namespace().rstrip("/")
        return f"{ns}/{rel}"

    def send_frame(self, stamp_ns: int, rgb: np.ndarray | None = None, *,
                   encoding: str = "rgb8", raw: Image | CompressedImage | None = None) -> None:
        """Publish one frame (or a hand-made, possibly corrupt, message) and log its send time."""
        if raw is not None:
            msg = raw
        elif self.compressed:
            import cv2

            assert rgb is not None
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            assert ok
            msg = CompressedImage(format="jpeg", data=array.array("B", buf.tobytes()))
        else:
            assert rgb is not None
            w, h, step, data = encode_raw(rgb, encoding)
            # array.array, not bytes: rosidl's setter validates a bytes value element by
            # element in Python (~50 ms for a 640x480 frame); an 'B' array is taken as is.
            msg = Image(width=w, height=h, step=step, encoding=encoding, data=array.array("B", data))
        msg.header.stamp = ns_to_stamp(stamp_ns)
        msg.header.frame_id = "camera"
        with self._lock:
            self.log.sent[stamp_ns] = time.monotonic()
        self.pub_camera.publish(msg)

    def send_range(self, stamp_ns: int, range_m: float, min_range: float = 0.2,
                   max_range: float = 150.0) -> None:
        """Publish a forward range reading (REP-117 values, +inf = clear)."""
        msg = Range(radiation_type=Range.INFRARED, field_of_view=0.05, min_range=min_range,
                    max_range=max_range, range=float(range_m))
        msg.header.stamp = ns_to_stamp(stamp_ns)
        msg.header.frame_id = "radar"
        self.pub_range.publish(msg)

    def send_odom(self, stamp_ns: int, speed_mps: float, yaw_rate_rps: float = 0.0) -> None:
        """Publish ego odometry (forward speed and yaw rate, left +, in base_link)."""
        msg = Odometry()
        msg.header.stamp = ns_to_stamp(stamp_ns)
        msg.header.frame_id = "odom"
        msg.child_frame_id = "base_link"
        msg.twist.twist.linear.x = float(speed_mps)
        msg.twist.twist.angular.z = float(yaw_rate_rps)
        self.pub_odom.publish(msg)

    def send_imu(self, stamp_ns: int, accel_x: float) -> None:
        """Publish IMU longitudinal acceleration."""
        msg = Imu()
        msg.header.stamp = ns_to_stamp(stamp_ns)
        msg.header.frame_id = "imu"
        msg.linear_acceleration.x = float(accel_x)
        self.pub_imu.publish(msg)

    def send_clock(self, ns: int) -> None:
        """Publish ``/clock`` (ROS time for a node started with ``use_sim_time:=true``).

        The publisher is created on first use, so feeders that never drive sim time do not
        advertise a clock other nodes could pick up.
        """
        if self._pub_clock is None:
            from rclpy.qos import DurabilityPolicy
            from rosgraph_msgs.msg import Clock

            self._clock_type = Clock
            # Reliable matches both a reliable and a best-effort /clock subscription.
            qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)
            self._pub_clock = self.node.create_publisher(Clock, "/clock", qos)
        self._pub_clock.publish(self._clock_type(clock=ns_to_stamp(ns)))

    def send_raw(self, kind: str, msg: Any) -> None:
        """Publish a hand-made message on ``camera``, ``range``, ``odom`` or ``imu`` as is.

        For fault injection: nothing is logged or validated, the message goes out unchanged.
        """
        pub = {"camera": self.pub_camera, "range": self.pub_range, "odom": self.pub_odom,
               "imu": self.pub_imu}[kind]
        pub.publish(msg)

    # --- the node's services -----------------------------------------------------------------
    def call(self, srv_type: Any, service: str, requests: list[Any], timeout_s: float) -> list[Any]:
        """Call ``service`` with each request in turn, blocking (the executor answers on its thread).

        Returns the answers in order, stopping at the first that does not come in ``timeout_s``
        (none at all when the service is not found in ``timeout_s``).
        """
        client: Any = self.node.create_client(srv_type, service)
        answers: list[Any] = []
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                return answers
            for request in requests:
                fut = client.call_async(request)
                end = time.monotonic() + timeout_s
                while not fut.done() and time.monotonic() < end:
                    time.sleep(0.01)
                if not fut.done():
                    break
                answers.append(fut.result())
            return answers
        finally:
            self.node.destroy_client(client)

    def get_parameters(self, service: str, names: list[str], timeout_s: float = 5.0) -> dict[str, Any]:
        """The node's values of ``names`` over its GetParameters ``service`` ({} when it does not answer).

        A parameter the node does not have (type NOT_SET) comes back as None.
        """
        from rcl_interfaces.srv import GetParameters

        answers = self.call(GetParameters, service, [GetParameters.Request(names=names)], timeout_s)
        if not answers or answers[0] is None:
            return {}
        return {name: {1: v.bool_value, 2: v.integer_value, 3: v.double_value, 4: v.string_value}.get(v.type)
                for name, v in zip(names, answers[0].values, strict=False)}

    def change_state(self, *transitions: str, timeout_s: float = 60.0) -> None:
        """Run lifecycle ``transitions`` (``configure``, ``activate``, ...) on the node, in order.

        Raises RuntimeError naming the transition that failed or got no answer. Asked by label:
        Humble's and Jazzy's lifecycle service answers a label the current state lacks with
        success false, but raises out of the node's executor on such an id.
        """
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        service = f"{self._ns}tiny_node/change_state"
        for name in transitions:
            request = ChangeState.Request(transition=Transition(label=name))
            answers = self.call(ChangeState, service, [request], timeout_s)
            if not answers or answers[0] is None or not answers[0].success:
                raise RuntimeError(f"tiny_node lifecycle transition {name} failed"
                                   + ("" if answers else f" (no answer from {service} in {timeout_s:.0f} s)"))

    def restart_node(self, timeout_s: float = 60.0) -> None:
        """Deactivate, clean up, configure and activate the node: a fresh start, as for a new drive.

        Why: a node left running between drives keeps deciding while nothing comes (camera
        timeout: the fail-safe brake, then its hold) and carries sensor tracks over; each drive
        must meet the node as a vehicle's first drive does. Raises RuntimeError naming the
        transition that failed.
        """
        self.change_state("deactivate", "cleanup", "configure", "activate", timeout_s=timeout_s)
        self.latest_brake = False  # nothing decided since: the last drive's brake is not this one's
        if not self.wait_for_node(timeout_s):
            raise RuntimeError("tiny_node did not come back after its restart")

    def close(self) -> None:
        """Stop spinning, then destroy the node and shut the context down.

        In that order: a node destroyed under the spinning executor raised in its thread.
        """
        self._closing = True
        self.executor.shutdown(timeout_sec=1.0)
        self._spin.join(timeout=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
