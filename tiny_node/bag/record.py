"""Record a run (simulated or replayed) as a standard rosbag2: sensors, decisions, ground truth.

Log time: ``t`` is seconds of sim time; it is written as ``epoch_ns + round(t * 1e9)`` with a
fixed epoch (:data:`EPOCH_NS`, 2025-01-01T00:00:00Z), not the wall clock, so the same run gives
a byte-identical bag and the bag shows plausible dates in Foxglove.  The epoch is stored in
``metadata.yaml`` ``custom_data`` (``tiny_node.epoch_ns``); replay maps log times back to the
same ``t``.  Calls may come in any time order: rosbag2 readers (rosbags, mcap, ros2 bag) read
in log-time order.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rosbags.interfaces import Connection, Qos
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

from tiny_node.bag import msgs
from tiny_node.bag.errors import BagError
from tiny_node.bag.settings import COMPLETE, CUT_SHORT, DRIVE_KEY, SETTINGS_KEY, settings_doc, settings_json
from tiny_node.config import NodeConfig
from tiny_node.decision import Decision

#: Sim time 0 in the bag: 2025-01-01T00:00:00Z.
EPOCH_NS = 1_735_689_600 * 1_000_000_000
#: metadata.yaml custom_data key holding the epoch.
EPOCH_KEY = "tiny_node.epoch_ns"

STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

CAMERA_TOPIC = "/camera/image_raw"
RANGE_TOPIC = "/range"
ODOM_TOPIC = "/odom"
IMU_TOPIC = "/imu"
#: The run's decisions, under the names a replay gives its own (``replay.OUT_TOPICS``), not the
#: node's ``/decision`` and ``/brake``: a recording played with ``ros2 bag play`` beside a node or a
#: vehicle interface sent its old brake commands on the topic the vehicle acts on (review 2026-12-08).
DECISION_TOPIC = "/tiny_node/decision"
BRAKE_TOPIC = "/tiny_node/brake"
TRUTH_TOPIC = "/sim/ground_truth"


def open_writer(path: Path, storage: str, custom: dict[str, str] | None = None) -> Writer:
    """An open rosbag2 :class:`Writer` or a :class:`BagError` saying why not.

    Format version 8: the newest Humble's rosbag2 parses (QoS profiles as a string of integers);
    Jazzy and Kilted read it as they read their own 9. Version 9's QoS list with names failed on
    Humble with "yaml-cpp: bad conversion", and rosbag2's `reindex` workaround finds no file of
    rosbags' naming (review 2026-12-08).
    """
    plugin = STORAGES.get(storage)
    if plugin is None:
        raise BagError(f"unknown storage '{storage}' (known: {', '.join(STORAGES)})")
    if path.exists():
        raise BagError(f"{path} exists already; a bag is never overwritten (choose another path)")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        writer = Writer(path, version=8, storage_plugin=plugin)
        for key, value in (custom or {}).items():
            writer.set_custom_data(key, value)
        writer.open()
    except (WriterError, OSError) as exc:
        raise BagError(f"cannot create bag {path}: {exc}") from exc
    return writer


class Recorder:
    """Writes a rosbag2 (mcap by default, sqlite3 on request) with standard message types.

    Topics are created on first use, so the bag holds only what the run produced.  Use as a
    context manager, or call :meth:`close`: only a closed bag has its index and
    ``metadata.yaml``.
    """

    def __init__(self, path: Path, storage: str = "mcap", *, epoch_ns: int = EPOCH_NS,
                 hardware_id: str = "tiny_node@lockstep") -> None:
        self.path = Path(path)
        self.storage = storage
        self.epoch_ns = epoch_ns
        self.hardware_id = hardware_id
        self._writer: Writer | None = open_writer(self.path, storage, {EPOCH_KEY: str(epoch_ns)})
        self._conns: dict[str, Connection] = {}
        self.counts: dict[str, int] = {}

    # --- time -----------------------------------------------------------------------------
    def rebase(self, epoch_ns: int) -> None:
        """Sim time 0 is ``epoch_ns``, before anything is written (the bag's recorded epoch too).

        Why: a real-time drive stamps its messages on the wall clock from its start; logged on
        the default epoch, its bag's frames were stamped a year after their log times, and a
        replay refused every one as "in the future" (review).
        """
        if self._writer is None or any(self.counts.values()):
            raise BagError(f"recorder for {self.path}: the epoch can change only before the first message")
        self.epoch_ns = epoch_ns
        self._writer.set_custom_data(EPOCH_KEY, str(epoch_ns))

    def note_settings(self, cfg: NodeConfig, bundle: Path | None, budget_ms: float | None, *, clock: str) -> None:
        """Keep what decides the run in the bag (:mod:`tiny_node.bag.settings`): a replay names what differs.

        The drive is marked cut short until :meth:`note_complete`: a recording stopped by Ctrl-C
        is closed readable and shorter than its drive, and a replay says so.
        """
        if self._writer is None:
            raise BagError(f"recorder for {self.path} is closed")
        self._writer.set_custom_data(SETTINGS_KEY, settings_json(settings_doc(cfg, bundle, budget_ms, clock=clock)))
        self._writer.set_custom_data(DRIVE_KEY, CUT_SHORT)

    def note_complete(self) -> None:
        """The drive ran to its end: everything it produced is in the bag."""
        if self._writer is None:
            raise BagError(f"recorder for {self.path} is closed")
        self._writer.set_custom_data(DRIVE_KEY, COMPLETE)

    def to_ns(self, t: float) -> int:
        """Bag time (ns) of sim time ``t`` (s); also a good header stamp for simulated sensors."""
        if not math.isfinite(t):
            raise ValueError(f"log time must be finite, got {t}")
        ns = self.epoch_ns + round(t * 1e9)
        if ns < 0:
            raise ValueError(f"log time {t} s is before 1970 with epoch {self.epoch_ns} ns")
        return ns

    # --- writing --------------------------------------------------------------------------
    def write(self, topic: str, t: float, msg: Any, qos: Qos = msgs.SENSOR_QOS) -> None:
        """Any rosbags message object (e.g. a CompressedImage, a hand-made bad frame) on ``topic``."""
        writer = self._writer
        if writer is None:
            raise BagError(f"recorder for {self.path} is closed")
        conn = self._conns.get(topic)
        if conn is None:
            conn = writer.add_connection(topic, msg.__msgtype__, typestore=msgs.TYPESTORE,
                                         offered_qos_profiles=[qos])
            self._conns[topic] = conn
            self.counts[topic] = 0
        writer.write(conn, self.to_ns(t), msgs.serialize(msg))
        self.counts[topic] += 1

    def image(self, t: float, stamp_ns: int, rgb: np.ndarray) -> None:
        """``/camera/image_raw``: sensor_msgs/Image, rgb8."""
        self.write(CAMERA_TOPIC, t, msgs.image_msg(stamp_ns, rgb), msgs.SENSOR_QOS)

    def range(self, t: float, stamp_ns: int, range_m: float, min_range: float = 0.2,
              max_range: float = 150.0) -> None:
        """``/range``: sensor_msgs/Range (REP-117 infinities as given)."""
        self.write(RANGE_TOPIC, t, msgs.range_msg(stamp_ns, range_m, min_range, max_range), msgs.SENSOR_QOS)

    def odom(self, t: float, stamp_ns: int, speed: float, yaw_rate: float = 0.0) -> None:
        """``/odom``: nav_msgs/Odometry, forward speed in twist.linear.x, yaw rate in twist.angular.z."""
        self.write(ODOM_TOPIC, t, msgs.odom_msg(stamp_ns, speed, yaw_rate), msgs.SENSOR_QOS)

    def imu(self, t: float, stamp_ns: int, accel: float) -> None:
        """``/imu``: sensor_msgs/Imu, longitudinal acceleration in linear_acceleration.x."""
        self.write(IMU_TOPIC, t, msgs.imu_msg(stamp_ns, accel), msgs.SENSOR_QOS)

    def decision(self, t: float, decision: Decision) -> None:
        """``/decision`` (the node's DiagnosticArray, stamp = the frame's) and ``/brake`` (Bool)."""
        self.write(DECISION_TOPIC, t, msgs.decision_msg(decision, self.hardware_id), msgs.RELIABLE_QOS)
        self.write(BRAKE_TOPIC, t, msgs.bool_msg(decision.brake), msgs.RELIABLE_QOS)

    def truth(self, t: float, truth: Any, stamp_ns: int | None = None) -> None:
        """``/sim/ground_truth``: the fields of a ground-truth dataclass (or mapping) as key-values."""
        stamp = self.to_ns(t) if stamp_ns is None else stamp_ns
        self.write(TRUTH_TOPIC, t, msgs.truth_msg(stamp, truth), msgs.RELIABLE_QOS)

    def close(self) -> None:
        """Write the index and ``metadata.yaml``; idempotent."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close()
        except (WriterError, OSError) as exc:
            raise BagError(f"cannot finish bag {self.path}: {exc}") from exc

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # Closed even when the run failed: what was recorded up to the failure is the
        # evidence, and an unclosed mcap has no index.
        self.close()
