"""Multi-object tracker of VRUs on the road plane: positions in, lateral velocities out.

Why: whether a person beside the lane needs a brake turns on their lateral velocity, which one
frame does not show (docs/MODEL_CARD.md, *What a tracked VRU input would add*). A tracker
measures it from a few frames of positions.

Each track is a constant-velocity Kalman filter in the ego frame: state ``dx, y, vx, vy``
(metres from the front bumper, left +; velocities relative to the ego, m/s), measured
``dx, y``. Monocular range is poor and gets worse with distance, so the measurement noise
grows with ``dx``. Detections are assigned to tracks greedily by Mahalanobis distance inside a
chi-square gate; an unassigned detection starts a tentative track, which is reported once it
has been seen ``min_hits`` times in a row (a miss before that drops it: one-frame clutter never
becomes a track), and a confirmed track is dropped when not seen for ``max_coast_s``. Time is the caller's
(frame stamps): the tracker reads no clock, so lockstep replays give the same tracks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

#: fields of one track record, as ``factory.tracks.vru_tracks`` writes the ground truth
RECORD_FIELDS = ("present", "dx", "y", "vy", "vx_rel")
_H = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])


@dataclass(frozen=True)
class Detection:
    """One VRU seen in one frame: road-plane position relative to the ego's front bumper."""

    dx: float
    y: float
    score: float = 1.0
    #: 2x2 covariance of (dx, y), m^2, if the detector knows it (a monocular detection is
    #: long along the line of sight); else the config's range-dependent sigmas
    cov: tuple[tuple[float, float], tuple[float, float]] | None = None


@dataclass(frozen=True)
class TrackerConfig:
    """Noise and life-cycle settings (defaults for a 30 Hz camera and a monocular detector)."""

    accel_x: float = 3.0  # m/s^2, process noise along the road (ego and actor speed changes)
    # m/s^2, lateral: a person starting or stopping. 4 rather than 2: the filter then sees a
    # pedestrian stop at the kerb sooner (the shipped model's highest benign P(brake) fell from
    # 0.95 to 0.77 and its closed-loop threshold from 0.97 to 0.91), at a slightly larger
    # lateral-velocity error while walking (docs/MODEL_CARD.md, *Tracked VRUs*)
    accel_y: float = 4.0
    range_sigma: float = 0.3  # m at 0 m ...
    range_sigma_per_m: float = 0.06  # ... plus this per metre of range
    lateral_sigma: float = 0.08  # m at 0 m ...
    lateral_sigma_per_m: float = 0.008  # ... plus this per metre of range
    init_vy_sigma: float = 1.5  # m/s: a new track may be walking or riding either way
    gate: float = 13.8  # chi-square, 2 dof, 99.9 %
    min_hits: int = 3
    max_coast_s: float = 0.35
    max_gap_s: float = 0.5  # a longer gap between frames (or time going back) resets the tracker
    min_score: float = 0.5


@dataclass
class Track:
    """One tracked VRU (state and covariance in the ego frame)."""

    id: int
    x: NDArray[np.float64]
    p: NDArray[np.float64]
    hits: int = 1
    last_t: float = 0.0

    @property
    def dx(self) -> float:
        """Range along the road to the front bumper, m."""
        return float(self.x[0])

    @property
    def y(self) -> float:
        """Lateral position, m (left +)."""
        return float(self.x[1])

    @property
    def vx_rel(self) -> float:
        """Longitudinal velocity relative to the ego, m/s."""
        return float(self.x[2])

    @property
    def vy(self) -> float:
        """Lateral velocity, m/s (left +)."""
        return float(self.x[3])


class VruTracker:
    """Tracks VRUs over frames; :meth:`update` once per frame, in time order."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.cfg = config or TrackerConfig()
        self.tracks: list[Track] = []
        self._t: float | None = None
        self._next_id = 1
        self.resets = 0

    def reset(self) -> None:
        """Forget every track (a new drive, a bag loop, a clock jump)."""
        self.tracks.clear()
        self._t = None

    def update(self, time_s: float, detections: Sequence[Detection], ego_speed: float) -> list[Track]:
        """Advance to ``time_s``, fold in this frame's detections; the confirmed tracks.

        ``ego_speed`` (m/s) sets a new track's initial relative velocity: most things on and
        beside the road stand still or walk, so a new track starts at ``-ego_speed``.
        """
        if self._t is not None and not 0.0 <= time_s - self._t <= self.cfg.max_gap_s:
            self.reset()
            self.resets += 1
        dt = 0.0 if self._t is None else time_s - self._t
        self._t = time_s
        for tr in self.tracks:
            self._predict(tr, dt)
        dets = [d for d in detections if d.score >= self.cfg.min_score and math.isfinite(d.dx + d.y)]
        unused = self._associate(dets, time_s)
        for d in unused:
            self._start(d, time_s, ego_speed)
        self.tracks = [t for t in self.tracks if t.dx > -2.0 and (
            t.last_t == time_s or (t.hits >= self.cfg.min_hits and time_s - t.last_t <= self.cfg.max_coast_s))]
        return self.confirmed()

    def confirmed(self) -> list[Track]:
        """Tracks seen at least ``min_hits`` times, nearest the ego's path (smallest |y|) first."""
        return sorted((t for t in self.tracks if t.hits >= self.cfg.min_hits), key=lambda t: abs(t.y))

    def records(self, n: int) -> NDArray[np.float32]:
        """``[n, len(RECORD_FIELDS)]`` of the first ``n`` confirmed tracks; empty slots are 0."""
        out = np.zeros((n, len(RECORD_FIELDS)), np.float32)
        for k, t in enumerate(self.confirmed()[:n]):
            out[k] = (1.0, t.dx, t.y, t.vy, t.vx_rel)
        return out

    # -- filter --------------------------------------------------------------------------
    def _r(self, dx: float, det: Detection | None = None) -> NDArray[np.float64]:
        if det is not None and det.cov is not None:
            return np.asarray(det.cov, np.float64)
        c, d = self.cfg, max(dx, 0.0)
        return np.diag([(c.range_sigma + c.range_sigma_per_m * d) ** 2,
                        (c.lateral_sigma + c.lateral_sigma_per_m * d) ** 2])

    def _predict(self, tr: Track, dt: float) -> None:
        if dt <= 0.0:
            return
        f = np.eye(4)
        f[0, 2] = f[1, 3] = dt
        q = np.zeros((4, 4))
        for i, a in ((0, self.cfg.accel_x), (1, self.cfg.accel_y)):  # white-noise acceleration
            q[i, i], q[i, i + 2], q[i + 2, i], q[i + 2, i + 2] = (dt**4 / 4, dt**3 / 2, dt**3 / 2, dt**2)
            q[i::2, i::2] *= a * a
        tr.x = f @ tr.x
        tr.p = f @ tr.p @ f.T + q

    def _associate(self, dets: list[Detection], time_s: float) -> list[Detection]:
        """Greedy nearest-first assignment inside the gate; returns the unassigned detections."""
        pairs: list[tuple[float, int, int]] = []
        for ti, tr in enumerate(self.tracks):
            p_z = _H @ tr.p @ _H.T
            for di, d in enumerate(dets):
                r = np.array([d.dx, d.y]) - tr.x[:2]
                m = float(r @ np.linalg.solve(p_z + self._r(d.dx, d), r))
                if m <= self.cfg.gate:
                    pairs.append((m, ti, di))
        used_t: set[int] = set()
        used_d: set[int] = set()
        for _, ti, di in sorted(pairs):
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            self._correct(self.tracks[ti], dets[di], time_s)
        return [d for i, d in enumerate(dets) if i not in used_d]

    def _correct(self, tr: Track, d: Detection, time_s: float) -> None:
        s = _H @ tr.p @ _H.T + self._r(d.dx, d)
        k = tr.p @ _H.T @ np.linalg.inv(s)
        tr.x = tr.x + k @ (np.array([d.dx, d.y]) - _H @ tr.x)
        tr.p = (np.eye(4) - k @ _H) @ tr.p
        tr.hits += 1
        tr.last_t = time_s

    def _start(self, d: Detection, time_s: float, ego_speed: float) -> None:
        p = np.zeros((4, 4))
        p[:2, :2] = self._r(d.dx, d)
        p[2, 2], p[3, 3] = 2.0**2, self.cfg.init_vy_sigma**2
        self.tracks.append(Track(self._next_id, np.array([d.dx, d.y, -ego_speed, 0.0]), p, last_t=time_s))
        self._next_id += 1
