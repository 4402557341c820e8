"""The rmw's message info (who published a message, which one, when), where rclpy passes it.

Shared by the node (DDS receipt time, camera losses) and the test harness's feeder (which
``brake`` message goes with which decision).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.subscription import Subscription

# rclpy >= Iron passes MessageInfo (publication sequence numbers) to 2-argument callbacks: Iron to
# Kilted say so with Subscription.CallbackType, rclpy after Kilted with _detect_wants_info instead
# (read by name only: Humble has neither, and its callbacks get the message alone).
HAS_MSG_INFO = hasattr(Subscription, "CallbackType") or hasattr(Subscription, "_detect_wants_info")


def with_info(callback: Callable[[Any, Any], None]) -> Callable[..., None]:
    """``callback(msg, info)`` as rclpy calls it: with the message info where rclpy has it (Iron on).

    Why: rclpy passes the info only to a callback that cannot be called with the message alone;
    without it the node's deadline would run from the executor's callback, not from the DDS
    receipt, and transport losses would go uncounted. Humble's rclpy has no message info: None.
    """
    if HAS_MSG_INFO:
        return callback
    return lambda msg: callback(msg, None)


def publication(info: Any) -> tuple[bytes, int, int] | None:
    """(publisher gid, publication sequence number, source timestamp ns) of a message, or None.

    None where rclpy or the rmw does not say (Humble; an rmw without sequence numbers reports 0
    or the "unsupported" maximum). The gid is ``b""`` where rclpy gives none (Jazzy's message
    info has the sequence number without it). The source timestamp is the publisher's own
    system clock (0: not given): only comparable between messages of one host.
    """
    if not info:
        return None
    seq = info.get("publication_sequence_number")
    if seq is None or not 0 < int(seq) < 2**63 - 1:
        return None
    gid = info.get("publisher_gid")
    writer = b"" if not gid else bytes(gid.get("data", b"")) if isinstance(gid, dict) else bytes(gid)
    return writer, int(seq), int(info.get("source_timestamp") or 0)
