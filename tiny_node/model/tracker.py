"""Multi-object tracker of VRUs on the road plane: positions in, lateral velocities out.

Why: whether a person beside the lane needs a brake turns on their lateral velocity, which one
frame does not show (docs/MODEL_HISTORY.md, *Tracked VRUs*). A tracker
measures it from a few frames of positions.

Each track is an interacting-multiple-model (IMM) filter in the ego frame: state ``dx, y, vx,
vy`` (metres from the front bumper, left +; velocities over ground, m/s), measured ``dx, y``;
the ego's speed and yaw rate are known inputs of each prediction: on a straight road its travel
comes off the range; on a curve every track is carried into the new ego frame by the ego's rigid
turn about its rear axle (:func:`ego_motion`), else a person standing at the inner kerb would
read as walking into the lane (docs/MODEL_CARD.md, *Limits*). People
stand, walk steadily, and start or stop; one constant-velocity filter must pick a single
lateral process noise for all three: low noise reads a steady walker's lateral velocity well
but sees a stop at the kerb late; high noise the reverse (docs/MODEL_HISTORY.md, *IMM tracker*).
So each track runs one Kalman filter per motion model (``TrackerConfig.models``: standing,
walking steadily, starting or stopping), mixed every frame by how well each explained the
detections (Blom & Bar-Shalom's IMM). A standing model holds lateral velocity at zero, so a
person waiting at the kerb reads as still. Monocular range is poor and gets worse with
distance, so the measurement noise grows with ``dx``. Detections are assigned to tracks
greedily by Mahalanobis distance (to the mixture) inside a chi-square gate; an unassigned
detection starts a tentative track, which is reported once it has been seen ``min_hits`` times
in a row (a miss before that drops it: one-frame clutter never becomes a track), and a
confirmed track is dropped when not seen for ``max_coast_s``. Close to the bumper a person's
feet leave the detector's window (and are found less often just before), so a track seen for a
while that is predicted nearer than ``near_m`` coasts longer (``near_coast_s``): the person about
to be hit stays in the prompt. Time is the caller's (frame stamps): the tracker reads no clock,
so lockstep replays give the same tracks.

The records (:meth:`VruTracker.records`) are what the language model and the conflict test
(``model.conflict``) read; both were made for a straight road, where the ego frame is the road
frame. On a curve each record is relative to the ego's predicted path instead (:func:`along_path`),
so the straight corridor test on them is a test against the curved corridor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

#: fields of one track record, as ``factory.tracks.vru_tracks`` writes the ground truth
RECORD_FIELDS = ("present", "dx", "y", "vy", "vx_rel")
_H = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
#: below this ego speed (m/s) records stay Cartesian: speed over yaw rate is a gyro's noise there
#: (0.005 rad/s at 0.3 m/s is a 60 m "curve"), and no standing person is reached by the conflict
#: test below ``ConflictSpec.min_closing_mps`` (0.5 m/s) anyway
PATH_MIN_SPEED_MPS = 0.5
#: a path radius beyond this (m) is a straight road: a 10 km arc leaves its tangent by 0.125 m
#: in 50 m, a tenth of the corridor's half width, and its yaw rate at 10 m/s (0.001 rad/s) is a
#: gyro's bias
PATH_MAX_RADIUS_M = 10_000.0


@dataclass(frozen=True)
class Detection:
    """One VRU seen in one frame: road-plane position relative to the ego's front bumper."""

    dx: float
    y: float
    score: float = 1.0
    #: 2x2 covariance of (dx, y), m^2, if the detector knows it (a monocular detection is
    #: long along the line of sight); else the config's range-dependent sigmas
    cov: tuple[tuple[float, float], tuple[float, float]] | None = None


def _usable(d: Detection) -> bool:
    """A finite position, and a covariance (if any) with finite entries and no negative variance.

    Why: a NaN or infinite covariance, from a foot point at the horizon, makes a track's
    covariance NaN through its update (and its gate test say nothing).
    """
    if not math.isfinite(d.dx + d.y):
        return False
    if d.cov is None:
        return True
    (a, b), (c, e) = d.cov
    return all(math.isfinite(v) for v in (a, b, c, e)) and a >= 0.0 and e >= 0.0


def _sinc(x: float) -> float:
    """sin(x) / x, 1 at 0 (exact for small x: sin keeps full relative precision there)."""
    return math.sin(x) / x if x != 0.0 else 1.0


def ego_motion(travel: float, turn: float, rear_axle_m: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The ego frame's rigid motion over one step: ``(g, offset)``.

    A point ``p`` (metres from the old front bumper) is at ``g @ p + offset`` in the new frame, a
    velocity ``v`` over ground is ``g @ v``. The rear axle (``rear_axle_m`` behind the bumper:
    a car turns about it) drives ``travel`` metres along an arc while the heading turns by ``turn``
    (rad, left +), so it moves by ``(R sin turn, R (1 - cos turn))``, ``R = travel / turn``,
    written ``travel * sinc(turn)`` and ``travel * sin(turn / 2) * sinc(turn / 2)``: exact as
    ``turn`` goes to 0, with no division by it. The new frame is the old one moved there and turned
    by ``turn``: points are moved back, turned by ``-turn`` about the axle, and read from the bumper.
    """
    c, s = math.cos(turn), math.sin(turn)
    g = np.array([[c, s], [-s, c]])  # rotation by -turn
    axle = np.array([-rear_axle_m, 0.0])
    moved = np.array([travel * _sinc(turn), travel * math.sin(0.5 * turn) * _sinc(0.5 * turn)])
    return g, axle - g @ (axle + moved)


def along_path(x: NDArray[np.float64], ego_speed: float, yaw_rate: float,
               rear_axle_m: float) -> tuple[float, float, float, float]:
    """``(dx, y, vy, vx_rel)`` of state ``x`` (dx, y, vx, vy; ego frame) relative to the ego's path.

    Why: the records' straight-road meaning (range ahead, offset from the path, speed across it,
    closing speed) is what the model and the conflict test know. On a steady turn the ego turns
    about C = (-L, R) (bumper coordinates, ``L = rear_axle_m``, ``R = ego_speed / yaw_rate``, left
    turn R > 0); the front bumper runs on the circle about C of radius ``rb = sqrt(R^2 + L^2)``:
    the path. With ``r = p - C``, ``rho = |r|``, ``s = sign(R)``:

    - ``y = s (rb - rho)``, left of that circle +; as ``s (rb^2 - rho^2) / (rb + rho)`` with
      ``rb^2 - rho^2 = 2 R y - x^2 - 2 L x - y^2``: no cancellation of two radii of kilometres.
    - ``dx = rb * theta``, ``theta = s atan2(b x r, b . r)`` the angle about C from the bumper
      (``b = (L, -R)``) to the point in the direction of travel: the arc the bumper drives to be
      level with it.
    - ``vy = n . v``, ``n = -s r / rho`` the path's left normal at the point: ``d y / dt``, since C
      stands still in the world on a steady turn (the ego's own turn moves nothing towards it).
    - ``vx_rel = rb (t . v / rho - |yaw_rate|)``, ``t = s z x r / rho`` the direction of travel:
      ``d dx / dt``, the point's angular rate about C less the ego's, on the bumper's circle; a
      standing person reads ``-rb |yaw_rate|``, the bumper's speed along its arc, negated.

    As R goes to infinity these are ``x, y, vy, vx - ego_speed``: the straight road's records.
    """
    big_r, lx = ego_speed / yaw_rate, rear_axle_m
    px, py, vx, vy = (float(v) for v in x)
    s = math.copysign(1.0, big_r)
    rx, ry = px + lx, py - big_r
    # a point on C has no direction from it; tracks are dropped 2 m behind the bumper, so only a
    # rear_axle_m under 2 m can put one there: read it from a micrometre away
    rho, rb = max(math.hypot(rx, ry), 1e-6), math.hypot(lx, big_r)
    y_path = s * (2.0 * big_r * py - px * px - 2.0 * lx * px - py * py) / (rb + rho)
    dx_path = rb * s * math.atan2(big_r * px + lx * py, lx * rx - big_r * ry)
    vy_path = -s * (rx * vx + ry * vy) / rho
    vt = s * (rx * vy - ry * vx) / rho
    return dx_path, y_path, vy_path, rb * (vt / rho - abs(yaw_rate))


@dataclass(frozen=True)
class MotionModel:
    """One motion hypothesis of an IMM track; velocities over ground, m/s.

    ``accel_x`` / ``accel_y``: white-noise acceleration along / across the road, m/s^2 (how
    fast that velocity may change). ``vx_sigma``: a new track's longitudinal speed spread.
    ``still``: lateral velocity is zero (a person standing); ``accel_y`` is then the jitter
    of the foot point.

    Why the longitudinal terms matter: the ego's own motion is a known input (``update``'s
    ego speed), so a model that holds a person's ground speed along the road near zero makes
    range follow the ego's travel. Left free, range follows the detections' range trend
    instead: a monocular range error that grows with distance reads as a slower closing
    speed, and through the line of sight the lateral position inherits it, so a crossing
    person's lateral speed came out 25-35 % low (docs/MODEL_HISTORY.md, *IMM tracker*).
    """

    name: str
    accel_y: float
    accel_x: float = 0.1
    vx_sigma: float = 0.5
    still: bool = False


#: standing; crossing or walking steadily; starting or stopping. None lets a person's ground
#: speed along the road run free: one that did took up the range error's trend instead
#: (docs/MODEL_HISTORY.md, *IMM tracker*)
IMM_MODELS = (MotionModel("stand", 0.3, still=True), MotionModel("walk", 1.0), MotionModel("manoeuvre", 4.0))


@dataclass(frozen=True)
class TrackerConfig:
    """Noise and life-cycle settings (defaults for a 30 Hz camera and a monocular detector)."""

    #: the IMM's motion models; one model is a plain constant-velocity Kalman filter (the first
    #: shipped tracker was ``(MotionModel("cv", 4.0, accel_x=3.0, vx_sigma=2.0),)`` with the
    #: longitudinal velocity relative to the ego)
    models: tuple[MotionModel, ...] = IMM_MODELS
    switch_per_s: float = 0.3  # rate of leaving a motion model (mode switches per second)
    range_sigma: float = 0.3  # m at 0 m ...
    range_sigma_per_m: float = 0.06  # ... plus this per metre of range
    lateral_sigma: float = 0.08  # m at 0 m ...
    lateral_sigma_per_m: float = 0.008  # ... plus this per metre of range
    init_vy_sigma: float = 1.5  # m/s: a new track may be walking or riding either way
    gate: float = 13.8  # chi-square, 2 dof, 99.9 %
    min_hits: int = 3
    max_coast_s: float = 0.35
    #: a track seen ``near_coast_hits`` times and predicted nearer than ``VruTracker.near_m``
    #: (the detector window's nearest ground point + ``near_margin_m``) coasts up to ``near_coast_s``.
    #: Why the hits: a short-lived track is as often a false detection; coasted for a second it
    #: drives its phantom lateral velocity into the lane (docs/MODEL_HISTORY.md, *Near coasting*)
    near_coast_s: float = 1.0
    near_coast_hits: int = 10
    near_margin_m: float = 2.5
    max_gap_s: float = 0.5  # a longer gap between frames (or time going back) resets the tracker
    #: m, added in quadrature to a detection's own range error (its pixel error through the camera
    #: geometry): the foot point may fall anywhere along the person's footprint, and a bicycle is
    #: 1.8 m long. Without it a near cyclist's foot point jumping to the other wheel falls outside
    #: the gate and starts a second track with a made-up lateral velocity (docs/MODEL_HISTORY.md,
    #: *Footprint*)
    footprint_sigma_m: float = 0.3
    min_score: float = 0.5
    #: m from the front bumper (the frame's origin) back to the rear axle, the axis a car turns
    #: about: used only with a yaw rate. Set it for the vehicle. 3.6 m fits the simulator's car,
    #: which has no wheelbase of its own (longitudinal dynamics only): its 4.36 m length
    #: (``sim.kinds.EGO_LENGTH_M``) less a compact car's rear overhang of about 0.8 m
    rear_axle_m: float = 3.6


@dataclass
class Track:
    """One tracked VRU in the ego frame.

    Per motion model a state and covariance, the models' probabilities ``mu``, and their
    mixture (``x``, ``p``): what association and the records read.
    """

    id: int
    xs: list[NDArray[np.float64]]
    ps: list[NDArray[np.float64]]
    mu: NDArray[np.float64]
    hits: int = 1
    last_t: float = 0.0
    ego_speed: float = 0.0  # at the last update: what ``vx_rel`` is relative to
    x: NDArray[np.float64] = field(init=False)
    p: NDArray[np.float64] = field(init=False)

    def __post_init__(self) -> None:
        self.combine()

    def combine(self) -> None:
        """The moment-matched mixture of the models' estimates."""
        self.x = sum((m * x for m, x in zip(self.mu, self.xs, strict=True)), np.zeros(4))
        self.p = sum((m * (p + np.outer(x - self.x, x - self.x))
                      for m, x, p in zip(self.mu, self.xs, self.ps, strict=True)), np.zeros((4, 4)))

    @property
    def dx(self) -> float:
        """Range along the road to the front bumper, m."""
        return float(self.x[0])

    @property
    def y(self) -> float:
        """Lateral position, m (left +)."""
        return float(self.x[1])

    @property
    def vx(self) -> float:
        """Longitudinal velocity over ground, m/s (the state's; ego motion taken out)."""
        return float(self.x[2])

    @property
    def vx_rel(self) -> float:
        """Longitudinal velocity relative to the ego, m/s."""
        return self.vx - self.ego_speed

    @property
    def vy(self) -> float:
        """Lateral velocity, m/s (left +)."""
        return float(self.x[3])


class VruTracker:
    """Tracks VRUs over frames; :meth:`update` once per frame, in time order."""

    def __init__(self, config: TrackerConfig | None = None, *, window_near_m: float = 0.0) -> None:
        """``window_near_m``: see :meth:`set_window`."""
        self.cfg = config or TrackerConfig()
        #: added to every detection's own covariance (``TrackerConfig.footprint_sigma_m``); built
        #: once here, not in each gate test of each track-detection pair
        self._footprint = np.diag([self.cfg.footprint_sigma_m**2, 0.0])
        self.set_window(window_near_m)
        self.tracks: list[Track] = []
        self._t: float | None = None
        self._ego = 0.0  # ego speed at the last update, m/s
        self._yaw = 0.0  # ego yaw rate at the last update, rad/s (left +)
        self._next_id = 1
        self.resets = 0

    def set_window(self, window_near_m: float) -> None:
        """The range (m from the bumper) of the detector window's nearest ground point.

        No foot point nearer than that can be found; 0 = unknown (no longer coasting near the bumper).
        """
        self.near_m = window_near_m + self.cfg.near_margin_m if window_near_m > 0.0 else 0.0

    def reset(self) -> None:
        """Forget every track (a new drive, a bag loop, a clock jump)."""
        self.tracks.clear()
        self._t = None

    def update(self, time_s: float, detections: Sequence[Detection], ego_speed: float,
               yaw_rate: float = 0.0) -> list[Track]:
        """Advance to ``time_s``, fold in this frame's detections; the confirmed tracks.

        ``ego_speed`` (m/s) and ``yaw_rate`` (rad/s, left +; odometry) are the known inputs of
        the prediction: between two frames the ego travels the mean of the two frames' speeds
        times the interval and turns by the mean of their yaw rates times it. Without a turn
        every track's range shrinks by that travel (plus the VRU's own motion), exactly as before
        the yaw rate was an input; with one, :func:`ego_motion` carries every track into the new
        ego frame. 0 (the default) is a straight road.
        """
        if not (math.isfinite(time_s) and math.isfinite(ego_speed) and math.isfinite(yaw_rate)) or time_s == self._t:
            # no time, speed or turn to predict with, or a repeated frame (its detections are in
            # the tracks already: fused again they would count twice, and three copies of one frame
            # would confirm a one-frame false detection): the tracks stay as they are
            return self.confirmed()
        if self._t is not None and not 0.0 <= time_s - self._t <= self.cfg.max_gap_s:
            self.reset()
            self.resets += 1
        dt = 0.0 if self._t is None else time_s - self._t
        travel = 0.5 * (self._ego + ego_speed) * dt
        turn = 0.5 * (self._yaw + yaw_rate) * dt
        self._t, self._ego, self._yaw = time_s, ego_speed, yaw_rate
        # no turn: the straight road's arithmetic, float for float (a build's tracks stay what they were)
        motion: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None
        if turn != 0.0:
            g, offset = ego_motion(travel, turn, self.cfg.rear_axle_m)
            # once per frame, for every track: the state is (dx, y, vx, vy), both pairs turn alike
            motion = (np.asarray(np.kron(np.eye(2), g), np.float64), offset)
        for tr in self.tracks:
            self._predict(tr, dt, travel, motion)
            tr.ego_speed = ego_speed
        dets = [d for d in detections if d.score >= self.cfg.min_score and _usable(d)]
        unused = self._associate(dets, time_s)
        for d in unused:
            self._start(d, time_s, ego_speed)
        self.tracks = [t for t in self.tracks if t.dx > -2.0 and (t.last_t == time_s or self._coasts(t, time_s))]
        return self.confirmed()

    def _coasts(self, t: Track, time_s: float) -> bool:
        """Whether confirmed track ``t``, unseen this frame, is kept (module docstring)."""
        if t.hits < self.cfg.min_hits:
            return False
        unseen = time_s - t.last_t
        near = t.hits >= self.cfg.near_coast_hits and t.dx < self.near_m
        return unseen <= (self.cfg.near_coast_s if near else self.cfg.max_coast_s)

    def curved(self) -> bool:
        """Whether the ego's path at the last update is a curve (records relative to it).

        Not below ``PATH_MIN_SPEED_MPS`` nor beyond ``PATH_MAX_RADIUS_M``: a straight road there.
        """
        return self._ego >= PATH_MIN_SPEED_MPS and abs(self._yaw) * PATH_MAX_RADIUS_M >= self._ego

    def sweep_widening(self) -> tuple[float, float]:
        """Metres the ego's sweep reaches beyond the bumper's arc, on the left and on the right.

        Why: on a curve the records are relative to the front bumper's arc, but the body turns
        about the rear axle, so its inner side runs inside that arc by ``sqrt(L^2 + R^2) - |R|``
        (off-tracking): 0.1 m on a 67 m curve, 0.63 m on a 10 m junction turn, where a person
        standing there is hit by the side of the car. The conflict test widens the corridor by
        that on the inner side (``conflict.conflict_times``). A straight road: none.
        """
        if not self.curved():
            return 0.0, 0.0
        big_r = self._ego / self._yaw
        off = math.hypot(self.cfg.rear_axle_m, big_r) - abs(big_r)
        return (off, 0.0) if big_r > 0.0 else (0.0, off)

    def record(self, t: Track) -> tuple[float, float, float, float]:
        """``(dx, y, vy, vx_rel)`` of track ``t``: its own on a straight road, else :func:`along_path`."""
        if not self.curved():
            return t.dx, t.y, t.vy, t.vx_rel
        return along_path(t.x, self._ego, self._yaw, self.cfg.rear_axle_m)

    def _ranked(self) -> list[tuple[Track, tuple[float, float, float, float]]]:
        """The confirmed tracks with their :meth:`record`, nearest the ego's path (smallest |y|) first."""
        rows = [(t, self.record(t)) for t in self.tracks if t.hits >= self.cfg.min_hits]
        return sorted(rows, key=lambda row: abs(row[1][1]))

    def confirmed(self) -> list[Track]:
        """Tracks seen at least ``min_hits`` times, nearest the ego's path (smallest |y| of :meth:`record`) first."""
        return [t for t, _ in self._ranked()]

    def records(self, n: int, *, every: bool = False) -> NDArray[np.float32]:
        """``[n, len(RECORD_FIELDS)]`` of the first ``n`` confirmed tracks (:meth:`record`); empty slots are 0.

        ``every``: all confirmed tracks, ``n`` rows at least (the conflict test reads them all,
        the prompt the first ``n``).
        """
        ranked = self._ranked() if every else self._ranked()[:n]
        out = np.zeros((max(n, len(ranked)), len(RECORD_FIELDS)), np.float32)
        for k, (_, rec) in enumerate(ranked):
            out[k] = (1.0, *rec)
        return out

    # -- filter --------------------------------------------------------------------------
    def _r(self, dx: float, det: Detection | None = None) -> NDArray[np.float64]:
        if det is not None and det.cov is not None:
            return np.asarray(det.cov, np.float64) + self._footprint
        c, d = self.cfg, max(dx, 0.0)
        return np.diag([(c.range_sigma + c.range_sigma_per_m * d) ** 2,
                        (c.lateral_sigma + c.lateral_sigma_per_m * d) ** 2])

    def _transition(self, model: MotionModel, dt: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """State transition and process noise of one motion model over ``dt``."""
        f = np.eye(4)
        f[0, 2] = dt
        if model.still:
            f[3, 3] = 0.0  # lateral velocity is zero, whatever it was
        else:
            f[1, 3] = dt
        q = np.zeros((4, 4))
        for i, a in ((0, model.accel_x), (1, model.accel_y)):  # white-noise acceleration
            q[i, i], q[i, i + 2], q[i + 2, i], q[i + 2, i + 2] = (dt**4 / 4, dt**3 / 2, dt**3 / 2, dt**2)
            q[i::2, i::2] *= a * a
        return f, q

    def _predict(self, tr: Track, dt: float, travel: float,
                 motion: tuple[NDArray[np.float64], NDArray[np.float64]] | None) -> None:
        """IMM mixing, then each model's prediction in the old ego frame, then into the new one.

        Into the new frame: without a turn (``motion`` None) the ego's ``travel`` (m) is taken off
        the range; with one, ``motion`` (:func:`ego_motion`'s turn for the whole state, and its
        offset) moves and turns each model's state, and turns its covariance with it
        (``G P G^T``). ``tr.mu`` becomes the predicted mode probabilities.
        """
        if dt <= 0.0:
            return
        n = len(self.cfg.models)
        if n > 1:
            stay = math.exp(-self.cfg.switch_per_s * dt)
            pi = np.full((n, n), (1.0 - stay) / (n - 1))
            np.fill_diagonal(pi, stay)
            c = tr.mu @ pi  # predicted mode probabilities
            w = pi * tr.mu[:, None] / np.maximum(c, 1e-300)[None, :]  # w[i, j] = P(was i | now j)
            xs = [sum((w[i, j] * tr.xs[i] for i in range(n)), np.zeros(4)) for j in range(n)]
            ps = [sum((w[i, j] * (tr.ps[i] + np.outer(tr.xs[i] - xs[j], tr.xs[i] - xs[j])) for i in range(n)),
                      np.zeros((4, 4))) for j in range(n)]
            tr.xs, tr.ps, tr.mu = xs, ps, c
        for j, model in enumerate(self.cfg.models):
            f, q = self._transition(model, dt)
            tr.xs[j] = f @ tr.xs[j]
            tr.ps[j] = f @ tr.ps[j] @ f.T + q
            if motion is None:
                tr.xs[j][0] -= travel
            else:
                g, offset = motion
                tr.xs[j] = g @ tr.xs[j]
                tr.xs[j][:2] += offset
                tr.ps[j] = g @ tr.ps[j] @ g.T
        tr.combine()

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
        """Each model's Kalman update; the mode probabilities by how likely each found ``d``."""
        z, r = np.array([d.dx, d.y]), self._r(d.dx, d)
        like = np.empty(len(tr.xs))
        for j, (x, p) in enumerate(zip(tr.xs, tr.ps, strict=True)):
            s = _H @ p @ _H.T + r
            innov = z - _H @ x
            k = p @ _H.T @ np.linalg.inv(s)
            tr.xs[j] = x + k @ innov
            tr.ps[j] = (np.eye(4) - k @ _H) @ p
            like[j] = math.exp(-0.5 * float(innov @ np.linalg.solve(s, innov))) / math.sqrt(
                max(float(np.linalg.det(s)), 1e-300))
        mu = tr.mu * like
        if mu.sum() > 0.0:  # else the detection was equally unlikely under every model: keep mu
            tr.mu = mu / mu.sum()
        tr.combine()
        tr.hits += 1
        tr.last_t = time_s

    def _start(self, d: Detection, time_s: float, ego_speed: float) -> None:
        x = np.array([d.dx, d.y, 0.0, 0.0])  # most things beside the road stand or walk
        ps = []
        for m in self.cfg.models:
            p = np.zeros((4, 4))
            p[:2, :2] = self._r(d.dx, d)
            p[2, 2], p[3, 3] = m.vx_sigma**2, self.cfg.init_vy_sigma**2
            ps.append(p)
        n = len(self.cfg.models)
        self.tracks.append(Track(self._next_id, [x.copy() for _ in range(n)], ps, np.full(n, 1.0 / n),
                                 last_t=time_s, ego_speed=ego_speed))
        self._next_id += 1
