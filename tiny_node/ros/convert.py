"""ROS messages <-> core types.

Thin and total: every message becomes a core value or a reason why it cannot, so the node
never drops a frame on the floor.
"""

from __future__ import annotations

import math
from typing import Any

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CompressedImage, Image, Imu, Range

from tiny_node.decision import DECISION_STATUS_NAME, Decision, decision_values
from tiny_node.decision import decision_level as core_level
from tiny_node.frames import FrameError, decode_compressed, decode_raw
from tiny_node.sensors import RangeReading

OK, WARN, ERROR, STALE = (bytes([i]) for i in range(4))


def stamp_to_ns(stamp: Time) -> int:
    """builtin_interfaces/Time to integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    """Integer nanoseconds to builtin_interfaces/Time."""
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def image_to_rgb(msg: Image | CompressedImage, max_w: int, max_h: int) -> tuple[Any, str | None]:
    """Decode a camera message; returns (rgb array or None, fault or None)."""
    try:
        if isinstance(msg, CompressedImage):
            return decode_compressed(msg.format, msg.data, max_width=max_w, max_height=max_h), None
        return decode_raw(msg.encoding, msg.width, msg.height, msg.step, msg.data,
                          max_width=max_w, max_height=max_h, is_bigendian=bool(msg.is_bigendian)), None
    except FrameError as exc:
        return None, str(exc)


def range_reading(msg: Range, received_at: float, stamp_warning: str | None = None) -> RangeReading:
    """sensor_msgs/Range to the core reading (REP-117 semantics kept as-is)."""
    return RangeReading(
        range_m=float(msg.range),
        min_range=float(msg.min_range),
        max_range=float(msg.max_range) if msg.max_range > 0 else math.inf,
        stamp_ns=stamp_to_ns(msg.header.stamp),
        received_at=received_at,
        stamp_warning=stamp_warning,
    )


def odom_speed(msg: Odometry) -> float:
    """Forward speed of the ego (twist is expressed in child_frame_id, i.e. base_link)."""
    return float(msg.twist.twist.linear.x)


def odom_yaw_rate(msg: Odometry) -> float:
    """Yaw rate of the ego, rad/s, left + (twist.angular.z in base_link, REP-103).

    As it comes: a non-finite one is judged by the sensor state (an odometry fault naming the field).
    """
    return float(msg.twist.twist.angular.z)


def imu_accel_x(msg: Imu) -> float:
    """Longitudinal acceleration of the ego; NaN when the IMU says it has none.

    sensor_msgs/Imu: element 0 of a covariance at -1 means "no estimate, disregard": an
    orientation-only IMU sends zeros there, which must not pass for a measured 0 m/s^2.
    """
    if msg.linear_acceleration_covariance[0] == -1.0:
        return math.nan
    return float(msg.linear_acceleration.x)


def _kv(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=str(k), value=str(v)) for k, v in values.items()]


def decision_level(d: Decision) -> bytes:
    """REP-107 level of a decision (see :func:`tiny_node.decision.decision_level`)."""
    return bytes([core_level(d)])


def decision_msg(d: Decision, hardware_id: str) -> DiagnosticArray:
    """The ``decision`` message: header stamp = the answered frame's stamp."""
    status = DiagnosticStatus(
        level=decision_level(d), name=DECISION_STATUS_NAME, message=d.label,
        hardware_id=hardware_id, values=_kv(decision_values(d)),
    )
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = ns_to_stamp(d.stamp_ns)
    return msg


def status(name: str, level: bytes, message: str, values: dict[str, Any], hardware_id: str) -> DiagnosticStatus:
    """One REP-107 status."""
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=_kv(values))


def parse_decision(msg: DiagnosticArray) -> dict[str, Any]:
    """Inverse of :func:`decision_msg` for tools (bench, demo, HIL): flat dict with stamp."""
    st = next(s for s in msg.status if s.name == DECISION_STATUS_NAME)
    out: dict[str, Any] = {kv.key: kv.value for kv in st.values}
    out["decision"] = st.message
    out["stamp_ns"] = stamp_to_ns(msg.header.stamp)
    out["level"] = st.level[0] if isinstance(st.level, bytes | bytearray) else int(st.level)
    return out
