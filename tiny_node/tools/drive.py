"""A short built-in drive streamed to the node in real time: the ego approaches a stopped car.

Frames, range, odometry and IMU are generated at their own rates (30 / 20 / 50 / 50 Hz) on
the feeder's clock; in closed loop the node's brake decisions act on a simple longitudinal
model (actuation delay, jerk-limited ramp), so the demo shows the car stopping short of the
target.  The full simulator with actors, occlusion and the NCAP suite is ``tiny_node.sim``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from tiny_node.sim.vehicle import Ego
from tiny_node.tools.feeder import Feeder

CAR_WIDTH_M = 1.712  # Euro NCAP target car
CAR_HEIGHT_M = 1.427


def render_frame(width: int, height: int, distance_m: float, *, hfov_deg: float = 60.0,
                 cam_height_m: float = 1.3, noise: np.random.Generator | None = None) -> np.ndarray:
    """A forward camera view of a straight road with a car ``distance_m`` ahead (pinhole)."""
    img = np.empty((height, width, 3), np.uint8)
    horizon = height // 2
    img[:horizon] = (135, 175, 215)
    img[horizon:] = (70, 72, 75)
    f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    cx = width // 2
    for lane_x in (-1.75, 1.75):  # lane markings at +-1.75 m
        for z0 in np.arange(3.0, 80.0, 6.0):
            z1 = z0 + 3.0
            p0 = (int(cx + f * lane_x / z0), int(horizon + f * cam_height_m / z0))
            p1 = (int(cx + f * lane_x / z1), int(horizon + f * cam_height_m / z1))
            cv2.line(img, p0, p1, (230, 230, 230), max(1, int(f * 0.12 / z0)))
    if math.isfinite(distance_m) and distance_m > 0.5:
        w = f * CAR_WIDTH_M / distance_m
        h = f * CAR_HEIGHT_M / distance_m
        bottom = horizon + f * cam_height_m / distance_m
        x0, x1 = int(cx - w / 2), int(cx + w / 2)
        y0, y1 = int(bottom - h), int(bottom)
        cv2.rectangle(img, (x0, y0), (x1, y1), (150, 20, 25), -1)
        cv2.rectangle(img, (x0, int(y0 + 0.15 * h)), (x1, int(y0 + 0.45 * h)), (40, 50, 60), -1)
        for lx in (x0 + int(0.08 * w), x1 - int(0.18 * w)):  # tail lights
            cv2.rectangle(img, (lx, int(y0 + 0.55 * h)), (lx + int(0.1 * w), int(y0 + 0.65 * h)),
                          (255, 40, 40), -1)
    if noise is not None:
        img = np.asarray(cv2.add(img, noise.integers(0, 8, img.shape, dtype=np.uint8)), np.uint8)
    return img


@dataclass
class DriveResult:
    """What happened, frame by frame, on the feeder's clock."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    frames: int = 0
    min_gap_m: float = math.inf
    collided: bool = False
    impact_speed: float | None = None  # m/s at contact (the ego stops there: a collision ends the approach)
    final_speed: float = 0.0


def run_drive(
    feeder: Feeder,
    *,
    duration_s: float = 6.0,
    speed_kmh: float = 50.0,
    gap_m: float = 60.0,
    width: int = 640,
    height: int = 480,
    closed_loop: bool = True,
    periodic: bool = False,
    drain_s: float = 0.5,
) -> DriveResult:
    """Stream the drive in real time; return per-frame rows once all decisions are in.

    ``periodic`` restarts the approach whenever the gap closes (open-loop benchmarks).
    """
    ego = Ego(speed=speed_kmh / 3.6)
    rng = np.random.default_rng(0)
    rates_hz = {"camera": 30, "range": 20, "odom": 50}
    # in whole nanoseconds, as the simulator schedules: float sums of 1/30 s sent 298 frames for 297
    count = dict.fromkeys(rates_hz, 0)
    t0 = time.monotonic()
    t_ns, dt_ns, end_ns = 0, 2_000_000, round(duration_s * 1e9)
    dt = dt_ns * 1e-9

    def due(kind: str) -> bool:
        return t_ns >= round(count[kind] * 1e9 / rates_hz[kind])
    result = DriveResult()
    frames: list[tuple[int, float, float, float]] = []
    epoch_ns = time.time_ns()
    while t_ns < end_ns:
        t_sim = t_ns * 1e-9
        gap = gap_m - ego.position
        if periodic and gap < 8.0:
            ego.position = 0.0
            gap = gap_m
        result.min_gap_m = min(result.min_gap_m, gap)
        if gap <= 0.0:
            # Stopped at the car: it drove on through it, and the speed at the end of the run was
            # reported as the impact speed (64.6 km/h for a 108.9 km/h impact; review).
            if not result.collided:
                result.collided, result.impact_speed = True, ego.speed
            ego.speed, ego.accel, ego.position = 0.0, 0.0, gap_m
            gap = 0.0
        stamp = epoch_ns + t_ns
        if due("odom"):
            feeder.send_odom(stamp, ego.speed)
            feeder.send_imu(stamp, ego.accel)
            count["odom"] += 1
        if due("range"):
            # REP-117 as the feeder's 0.2-150 m sensor: -Inf within min_range, +Inf beyond max_range
            feeder.send_range(stamp, -math.inf if gap < 0.2 else gap if gap < 150.0 else math.inf)
            count["range"] += 1
        if due("camera"):
            feeder.send_frame(stamp, render_frame(width, height, gap, noise=rng))
            frames.append((stamp, t_sim, ego.speed, gap))
            count["camera"] += 1
        brake = feeder.latest_brake if closed_loop else False
        ego.step(dt, t_sim, brake)
        t_ns += dt_ns
        sleep = t0 + t_ns * 1e-9 - time.monotonic()
        if sleep > 0:
            time.sleep(sleep)
    time.sleep(drain_s)
    result.frames = len(frames)
    result.final_speed = ego.speed
    for stamp, t, speed, gap in frames:
        got = feeder.decision_for(stamp)
        sent = feeder.log.sent.get(stamp)
        row: dict[str, Any] = {"t": t, "stamp_ns": stamp, "speed_kmh": speed * 3.6, "gap_m": gap}
        if got is None:
            row["decision"] = None
        else:
            v = got.values
            row.update(decision=v["decision"], source=v["source"], model_state=v["model_state"],
                       latency_ms=float(v["latency_ms"]), deadline_ms=float(v["deadline_ms"]),
                       e2e_ms=(got.received_at - sent) * 1e3 if sent else math.nan,
                       reason=v["reason"], duplicates=len(feeder.log.decisions[stamp]) - 1)
        result.rows.append(row)
    return result


def latency_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Decisions/frames, latency and lateness percentiles (ms) over a drive's rows."""
    decided = [r for r in rows if r.get("decision") is not None]
    lat = np.array([r["latency_ms"] for r in decided]) if decided else np.array([math.nan])
    late = np.array([r["latency_ms"] - r["deadline_ms"] for r in decided]) if decided else lat
    e2e = np.array([r["e2e_ms"] for r in decided]) if decided else lat
    return {
        "frames": len(rows),
        "decisions": len(decided),
        "duplicates": sum(r.get("duplicates", 0) for r in decided),
        "after_deadline": int(np.sum(late > 0)),
        "latency_p50_ms": float(np.percentile(lat, 50)),
        "latency_p99_ms": float(np.percentile(lat, 99)),
        "latency_max_ms": float(np.max(lat)),
        "lateness_p99_ms": float(np.percentile(late, 99)),
        "lateness_max_ms": float(np.max(late)),
        "e2e_p50_ms": float(np.percentile(e2e, 50)),
        "e2e_p99_ms": float(np.percentile(e2e, 99)),
        "model_share": sum(r.get("source") == "model" for r in decided) / max(1, len(decided)),
    }


