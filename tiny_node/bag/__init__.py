"""rosbag2 record and replay without rclpy (rosbags): see docs/BAGS.md.

- :class:`Recorder`: a run's sensors, decisions and ground truth as a standard rosbag2.
- :func:`replay`: any rosbag2 through the decision core (lockstep) or a live node (real time).
"""

from __future__ import annotations

from tiny_node.bag.errors import BagError
from tiny_node.bag.record import EPOCH_NS, Recorder
from tiny_node.bag.replay import OUT_BRAKE, OUT_DECISION, ReplayResult, read_decisions, replay
from tiny_node.bag.topics import BagSource, detect_topics

__all__ = [
    "EPOCH_NS",
    "OUT_BRAKE",
    "OUT_DECISION",
    "BagError",
    "BagSource",
    "Recorder",
    "ReplayResult",
    "detect_topics",
    "read_decisions",
    "replay",
]
