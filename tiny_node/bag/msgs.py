"""Standard ROS 2 messages as rosbags objects, so bags are written and read without rclpy.

Every type here is a stock ROS 2 message (sensor_msgs, nav_msgs, std_msgs, diagnostic_msgs,
rosgraph_msgs) from the rosbags Kilted type store: ``ros2 bag``, the ``mcap`` tools and
Foxglove know them all, and the definitions written into a bag hash (RIHS01) like the real
ones.  The decision message is built exactly as the node builds it
(``tiny_node/ros/convert.py``), from the same core values (``tiny_node/decision.py``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.stores.ros2_kilted import (
    builtin_interfaces__msg__Time as Time,
)
from rosbags.typesys.stores.ros2_kilted import (
    diagnostic_msgs__msg__DiagnosticArray as DiagnosticArray,
)
from rosbags.typesys.stores.ros2_kilted import (
    diagnostic_msgs__msg__DiagnosticStatus as DiagnosticStatus,
)
from rosbags.typesys.stores.ros2_kilted import (
    diagnostic_msgs__msg__KeyValue as KeyValue,
)
from rosbags.typesys.stores.ros2_kilted import (
    geometry_msgs__msg__Point as Point,
)
from rosbags.typesys.stores.ros2_kilted import (
    geometry_msgs__msg__Pose as Pose,
)
from rosbags.typesys.stores.ros2_kilted import (
    geometry_msgs__msg__PoseWithCovariance as PoseWithCovariance,
)
from rosbags.typesys.stores.ros2_kilted import (
    geometry_msgs__msg__Quaternion as Quaternion,
)
from rosbags.typesys.stores.ros2_kilted import (
    geometry_msgs__msg__Twist as Twist,
)
from rosbags.typesys.stores.ros2_kilted import (
    geometry_msgs__msg__TwistWithCovariance as TwistWithCovariance,
)
from rosbags.typesys.stores.ros2_kilted import (
    geometry_msgs__msg__Vector3 as Vector3,
)
from rosbags.typesys.stores.ros2_kilted import (
    nav_msgs__msg__Odometry as Odometry,
)
from rosbags.typesys.stores.ros2_kilted import (
    rosgraph_msgs__msg__Clock as Clock,
)
from rosbags.typesys.stores.ros2_kilted import (
    sensor_msgs__msg__Image as Image,
)
from rosbags.typesys.stores.ros2_kilted import (
    sensor_msgs__msg__Imu as Imu,
)
from rosbags.typesys.stores.ros2_kilted import (
    sensor_msgs__msg__Range as Range,
)
from rosbags.typesys.stores.ros2_kilted import (
    std_msgs__msg__Bool as Bool,
)
from rosbags.typesys.stores.ros2_kilted import (
    std_msgs__msg__Header as Header,
)

from tiny_node.decision import DECISION_STATUS_NAME, Decision, decision_level, decision_values
from tiny_node.frames import decode_compressed, decode_raw, encode_raw

#: The type store bags are written with, and read with when a bag carries no definitions.
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
#: definitions for a bag that carries none, newest first (``BagSource.typestore_for``): message
#: types the node reads changed between distros (Humble's ``sensor_msgs/Range`` has no variance)
OLDER_STORES = (TYPESTORE, get_typestore(Stores.ROS2_HUMBLE))

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
RANGE = "sensor_msgs/msg/Range"
ODOMETRY = "nav_msgs/msg/Odometry"
IMU = "sensor_msgs/msg/Imu"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
BOOL = "std_msgs/msg/Bool"
CLOCK = "rosgraph_msgs/msg/Clock"

TRUTH_STATUS_NAME = "sim: ground_truth"

_INF_TIME = QosTime(sec=0, nsec=0)


def _qos(reliable: bool, depth: int) -> Qos:
    return Qos(
        history=QosHistory.KEEP_LAST, depth=depth,
        reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        durability=QosDurability.VOLATILE, deadline=_INF_TIME, lifespan=_INF_TIME,
        liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=_INF_TIME,
        avoid_ros_namespace_conventions=False,
    )


#: Offered QoS recorded with each topic, so ``ros2 bag play`` republishes as the node expects:
#: sensor data best effort (rclpy ``qos_profile_sensor_data``), decisions reliable.
SENSOR_QOS = _qos(reliable=False, depth=5)
RELIABLE_QOS = _qos(reliable=True, depth=10)


def ns_to_time(ns: int) -> Time:
    """Integer nanoseconds to builtin_interfaces/Time."""
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def time_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (any object with sec, nanosec) to integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def header(stamp_ns: int, frame_id: str) -> Header:
    """A std_msgs/Header."""
    return Header(stamp=ns_to_time(stamp_ns), frame_id=frame_id)


def image_msg(stamp_ns: int, rgb: np.ndarray, frame_id: str = "camera") -> Image:
    """An rgb8 sensor_msgs/Image from an HxWx3 uint8 array."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}")
    w, h, step, data = encode_raw(rgb, "rgb8")
    return Image(header=header(stamp_ns, frame_id), height=h, width=w, encoding="rgb8", is_bigendian=0,
                 step=step, data=np.frombuffer(data, np.uint8))


def range_msg(stamp_ns: int, range_m: float, min_range: float, max_range: float, *,
              field_of_view: float = 0.05, frame_id: str = "radar") -> Range:
    """A sensor_msgs/Range (REP-117: +Inf clear, -Inf closer than min_range)."""
    return Range(header=header(stamp_ns, frame_id), radiation_type=Range.INFRARED,
                 field_of_view=field_of_view, min_range=min_range, max_range=max_range,
                 range=float(range_m), variance=0.0)


def odom_msg(stamp_ns: int, speed_mps: float, yaw_rate_rps: float = 0.0) -> Odometry:
    """A nav_msgs/Odometry carrying the forward speed and yaw rate (twist in base_link, as the node reads it)."""
    pose = Pose(position=Point(x=0.0, y=0.0, z=0.0), orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0))
    twist = Twist(linear=Vector3(x=float(speed_mps), y=0.0, z=0.0),
                  angular=Vector3(x=0.0, y=0.0, z=float(yaw_rate_rps)))
    return Odometry(
        header=header(stamp_ns, "odom"), child_frame_id="base_link",
        pose=PoseWithCovariance(pose=pose, covariance=np.zeros(36, np.float64)),
        twist=TwistWithCovariance(twist=twist, covariance=np.zeros(36, np.float64)),
    )


def imu_msg(stamp_ns: int, accel_x: float) -> Imu:
    """A sensor_msgs/Imu with the longitudinal acceleration; orientation marked unknown (REP-145)."""
    orientation_cov = np.zeros(9, np.float64)
    orientation_cov[0] = -1.0
    zero3 = Vector3(x=0.0, y=0.0, z=0.0)
    return Imu(
        header=header(stamp_ns, "imu"), orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
        orientation_covariance=orientation_cov, angular_velocity=zero3,
        angular_velocity_covariance=np.zeros(9, np.float64),
        linear_acceleration=Vector3(x=float(accel_x), y=0.0, z=0.0),
        linear_acceleration_covariance=np.zeros(9, np.float64),
    )


def _kv(values: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=str(k), value=str(v)) for k, v in values.items()]


def decision_msg(d: Decision, hardware_id: str) -> DiagnosticArray:
    """The node's ``decision`` message: one status, header stamp = the answered frame's stamp."""
    status = DiagnosticStatus(level=decision_level(d), name=DECISION_STATUS_NAME, message=d.label,
                              hardware_id=hardware_id, values=_kv(decision_values(d)))
    return DiagnosticArray(header=header(d.stamp_ns, ""), status=[status])


def bool_msg(value: bool) -> Bool:
    """A std_msgs/Bool."""
    return Bool(data=bool(value))


def clock_msg(ns: int) -> Clock:
    """A rosgraph_msgs/Clock."""
    return Clock(clock=ns_to_time(ns))


def _text(value: Any) -> str:
    """Lossless, readable text for one ground-truth value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, enum.Enum):
        return _text(value.value)
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return json.dumps([v if isinstance(v, int | float | str | bool) or v is None else str(v) for v in value])
    return str(value)


def flatten_fields(obj: Any, prefix: str = "") -> dict[str, str]:
    """Fields of a dataclass (or mapping) as flat ``a.b`` -> text key-values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items: Mapping[str, Any] = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    elif isinstance(obj, Mapping):
        items = obj
    else:
        raise TypeError(f"ground truth must be a dataclass instance or a mapping, got {type(obj).__name__}")
    out: dict[str, str] = {}
    for key, value in items.items():
        name = f"{prefix}{key}"
        if (dataclasses.is_dataclass(value) and not isinstance(value, type)) or isinstance(value, Mapping):
            out.update(flatten_fields(value, f"{name}."))
        else:
            out[name] = _text(value)
    return out


def truth_msg(stamp_ns: int, truth: Any) -> DiagnosticArray:
    """``/sim/ground_truth``: one OK status whose values are the truth's fields."""
    kind = type(truth).__name__ if not isinstance(truth, Mapping) else "ground_truth"
    status = DiagnosticStatus(level=0, name=TRUTH_STATUS_NAME, message=kind, hardware_id="tiny_node_sim",
                              values=_kv(flatten_fields(truth)))
    return DiagnosticArray(header=header(stamp_ns, ""), status=[status])


def parse_decision(msg: Any) -> dict[str, Any] | None:
    """Key-values of a deserialized ``decision`` DiagnosticArray, with stamp; None if not one.

    The same flat dict as ``tiny_node.ros.convert.parse_decision`` (``decision``, ``stamp_ns``,
    ``level`` plus the status values), so tools compare node and replay output directly.
    """
    st = next((s for s in getattr(msg, "status", []) if s.name == DECISION_STATUS_NAME), None)
    if st is None:
        return None
    out: dict[str, Any] = {kv.key: kv.value for kv in st.values}
    out["decision"] = st.message
    out["stamp_ns"] = time_to_ns(msg.header.stamp)
    out["level"] = st.level[0] if isinstance(st.level, bytes | bytearray) else int(st.level)
    return out


def serialize(msg: Any) -> bytes:
    """CDR bytes of a rosbags message object."""
    return bytes(TYPESTORE.serialize_cdr(msg, msg.__msgtype__))


def camera_rgb(msg: Any, msgtype: str, *, max_width: int = 4096, max_height: int = 4096) -> np.ndarray:
    """RGB of a deserialized ``Image`` or ``CompressedImage`` as the node decodes it (``tiny_node.frames``).

    Raises ``FrameError`` naming the field that is wrong. One decoder for replay and the HIL's
    bag stream, so a recorded frame is the same frame to both.
    """
    if msgtype == COMPRESSED_IMAGE:
        return decode_compressed(msg.format, msg.data, max_width=max_width, max_height=max_height)
    return decode_raw(msg.encoding, msg.width, msg.height, msg.step, msg.data, max_width=max_width,
                      max_height=max_height, is_bigendian=bool(msg.is_bigendian))
