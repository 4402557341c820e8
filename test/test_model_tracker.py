"""The VRU tracker: lateral velocity from noisy positions, track life cycle, explicit time."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from tiny_node.model import tracker as tracker_module
from tiny_node.model.conflict import ConflictSpec, conflict_times
from tiny_node.model.tracker import (
    PATH_MAX_RADIUS_M,
    RECORD_FIELDS,
    Detection,
    MotionModel,
    TrackerConfig,
    VruTracker,
    along_path,
    ego_motion,
)

#: the first shipped tracker: one constant-velocity filter, longitudinal speed free
ONE_FILTER = TrackerConfig(models=(MotionModel("cv", 4.0, accel_x=3.0, vx_sigma=2.0),))

DT = 1.0 / 30.0


def _los_cov(dx: float, y: float, range_sigma: float,
             bearing_sigma: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Covariance of a monocular detection: long along the line of sight, thin across it."""
    r, a = math.hypot(dx, y), math.atan2(y, dx)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = rot @ np.diag([range_sigma**2, (r * bearing_sigma) ** 2]) @ rot.T
    return ((float(c[0, 0]), float(c[0, 1])), (float(c[1, 0]), float(c[1, 1])))


def _crossing(tracker: VruTracker, rng: np.random.Generator, seconds: float, *, vy: float = 1.4,
              ego: float = 10.0) -> list[float]:
    """A person 30 m ahead, 4 m to the right, walking left at ``vy``; the tracked vy per frame."""
    out = []
    for i in range(round(seconds / DT)):
        t = i * DT
        dx, y = 30.0 - ego * t, -4.0 + vy * t
        rs, bs = 0.02 * dx, 0.003  # 2 % range, 0.17 degrees bearing
        cov = _los_cov(dx, y, rs, bs)
        noisy = rng.multivariate_normal([dx, y], cov)
        tracks = tracker.update(t, [Detection(float(noisy[0]), float(noisy[1]), cov=cov)], ego)
        out.append(tracks[0].vy if tracks else math.nan)
    return out


def test_a_crossing_persons_lateral_velocity_is_measured() -> None:
    vy = _crossing(VruTracker(), np.random.default_rng(0), 1.5)
    assert math.isnan(vy[0]) and math.isnan(vy[1]) and not math.isnan(vy[2])  # confirmed on the 3rd hit
    late = np.asarray(vy[15:])  # after 0.5 s
    assert abs(float(late.mean()) - 1.4) < 0.15 and float(late.std()) < 0.25
    standing = np.asarray(_crossing(VruTracker(), np.random.default_rng(1), 1.5, vy=0.0)[15:])
    assert abs(float(standing.mean())) < 0.15  # a person waiting at the kerb is not "moving"


def _walk_then_stop(tracker: VruTracker, rng: np.random.Generator, stop_at: float = 2.0,
                    ego: float = 10.0) -> list[tuple[float, float]]:
    """A person walking left at 1.4 m/s who stops (4 m/s^2) at ``stop_at``; (t, tracked vy)."""
    y, out = -5.0, []
    for i in range(round(4.0 / DT)):
        t = i * DT
        vy = 1.4 if t < stop_at else max(0.0, 1.4 - 4.0 * (t - stop_at))
        y += vy * DT
        dx = 40.0 - ego * t
        cov = _los_cov(dx, y, 0.03 * dx, 0.004)
        z = rng.multivariate_normal([dx, y], cov)
        tracks = tracker.update(t, [Detection(float(z[0]), float(z[1]), cov=cov)], ego)
        out.append((t, tracks[0].vy if tracks else math.nan))
    return out


def test_a_person_stopping_at_the_kerb_reads_as_still_sooner_than_with_one_filter() -> None:
    def settled(series: list[tuple[float, float]]) -> float:
        """When |vy| falls below 0.3 m/s for good, after the stop (standing from 2.35 s)."""
        return next(t for t, _ in series if t > 2.0 and all(abs(v) < 0.3 for u, v in series if u >= t))

    imm = [settled(_walk_then_stop(VruTracker(), np.random.default_rng(s))) for s in range(8)]
    one = [settled(_walk_then_stop(VruTracker(ONE_FILTER), np.random.default_rng(s))) for s in range(8)]
    assert max(imm) < 2.35 + 0.3  # the standing model takes over within 0.3 s, every time
    assert float(np.median(one)) > float(np.median(imm)) + 0.3  # one filter must trade this off


def test_a_range_error_trend_does_not_slow_a_crossing_persons_lateral_speed() -> None:
    """Monocular range reads short far away and long near (a foot point a pixel off); the
    detection sits on the true line of sight. Ego motion as a known input keeps the range, and
    with it the lateral position, on track; a filter free to fit a closing speed is slowed."""
    ego, vy_true = 16.7, 1.39

    def tracked_vy(cfg: TrackerConfig, seed: int) -> float:
        tr, rng, got = VruTracker(cfg), np.random.default_rng(seed), []
        for i in range(round(2.0 / DT)):
            t = i * DT
            dx, y = 45.0 - ego * t, -4.2 + vy_true * t
            scale = 1.0 + 0.12 * (25.0 - dx) / 20.0  # -12 % at 45 m ... +12 % at 5 m
            cov = _los_cov(dx, y, 1.25 * dx * dx / 360.0, 0.004)  # 1.25 px of row, 1.3 m camera height
            noise = rng.multivariate_normal([0.0, 0.0], cov)
            tracks = tr.update(t, [Detection(dx * scale + float(noise[0]), y * scale + float(noise[1]), cov=cov)], ego)
            if t > 1.0 and tracks:
                got.append(tracks[0].vy)
        return float(np.mean(got))

    imm = float(np.mean([tracked_vy(TrackerConfig(), s) for s in range(5)]))
    one = float(np.mean([tracked_vy(ONE_FILTER, s) for s in range(5)]))
    assert imm > 0.9 * vy_true  # measured 0.94
    assert one < 0.88 * vy_true  # measured 0.83: the range trend read as a closing speed


def test_records_are_nearest_the_path_first_and_clutter_is_not_reported() -> None:
    tr = VruTracker()
    for i in range(10):
        t = i * DT
        dets = [Detection(20.0 - 10 * t, 5.0), Detection(25.0 - 10 * t, -1.5)]
        if i == 4:
            dets.append(Detection(8.0, 0.5))  # a one-frame false detection in the lane
        tr.update(t, dets, 10.0)
    rec = tr.records(3)
    assert rec.shape == (3, len(RECORD_FIELDS))
    assert rec[0, 0] == 1.0 and abs(rec[0, 2] - (-1.5)) < 0.2 and abs(rec[0, 4] - (-10.0)) < 1.0
    assert rec[1, 0] == 1.0 and abs(rec[1, 2] - 5.0) < 0.2
    assert not rec[2].any()  # the clutter never got the hits to be reported (and is dropped)
    assert len(tr.tracks) == 2
    np.testing.assert_array_equal(tr.records(1, every=True), rec[:2])  # every confirmed track, beyond n
    np.testing.assert_array_equal(tr.records(3, every=True), rec)  # n rows at least


def test_records_of_every_track_reach_a_third_vru_beyond_the_prompts_slots() -> None:
    """Two people at the kerb are nearest the path; a third VRU further out is still recorded (the
    conflict test reads it), after them, and ``records(2)`` alone leaves it out."""
    tr = VruTracker()
    for i in range(10):
        t = i * DT
        tr.update(t, [Detection(12.0 - 8 * t, 2.4), Detection(14.0 - 8 * t, -2.6), Detection(9.0 - 8 * t, 5.5)], 8.0)
    shown, every = tr.records(2), tr.records(2, every=True)
    assert every.shape == (3, len(RECORD_FIELDS)) and (every[:, 0] == 1.0).all()
    np.testing.assert_array_equal(every[:2], shown)
    assert abs(every[2, 2] - 5.5) < 0.2 and not (np.abs(shown[:, 2] - 5.5) < 0.2).any()


def test_tracks_coast_then_drop_and_time_going_back_resets() -> None:
    cfg = TrackerConfig()
    tr = VruTracker(cfg)
    for i in range(5):
        tr.update(i * DT, [Detection(20.0, 3.0)], 0.0)
    assert len(tr.confirmed()) == 1
    t = 4 * DT
    tr.update(t + cfg.max_coast_s * 0.9, [], 0.0)  # missed for a while: still reported
    assert len(tr.confirmed()) == 1
    tr.update(t + cfg.max_coast_s * 1.2, [], 0.0)  # missed too long: gone
    assert tr.confirmed() == []
    for i in range(5):
        tr.update(1.0 + i * DT, [Detection(20.0, 3.0)], 0.0)
    tr.update(0.5, [Detection(20.0, 3.0)], 0.0)  # a stamp from the past: a new stream
    assert tr.resets >= 1 and tr.confirmed() == [] and len(tr.tracks) == 1
    tr.update(0.5 + 2 * cfg.max_gap_s, [Detection(20.0, 3.0)], 0.0)  # a gap: stale tracks go too
    assert tr.tracks[0].hits == 1


def test_low_scores_and_non_finite_detections_are_ignored() -> None:
    tr = VruTracker()
    for i in range(5):
        tr.update(i * DT, [Detection(20.0, 3.0, score=0.2), Detection(math.nan, 1.0)], 0.0)
    assert tr.tracks == []


def test_an_odometry_error_of_ten_percent_leaves_the_lateral_speed_within_ten_percent() -> None:
    """The ego's speed is an input of every prediction: a wheel-speed scale error (tyre wear,
    slip) must not turn into a lateral-speed error the way a free closing speed did."""
    for told in (9.0, 11.0):  # the ego drives at 10 m/s
        tr, rng, got = VruTracker(), np.random.default_rng(0), []
        for i in range(round(2.5 / DT)):
            t = i * DT
            dx, y = 35.0 - 10.0 * t, -4.0 + 1.4 * t
            cov = _los_cov(dx, y, 1.25 * dx * dx / 360.0, 0.004)
            z = rng.multivariate_normal([dx, y], cov)
            tracks = tr.update(t, [Detection(float(z[0]), float(z[1]), cov=cov)], told)
            if t > 0.5 and tracks:
                got.append(tracks[0].vy)
        assert len(got) > 50 and abs(float(np.mean(got)) - 1.4) < 0.14  # measured 1.32 / 1.46
        assert tr._next_id == 2  # one track throughout: the range prediction stays inside the gate


def _approach(tracker: VruTracker, seen: int, last_seen_dx: float = 5.5, ego: float = 6.0) -> list[float]:
    """A person standing in the lane, detected in ``seen`` frames down to ``last_seen_dx``, then
    never again (feet below the window); the ranges at which a track is still reported."""
    step = ego * DT
    reported = []
    for i in range(seen + round(10.0 / step)):
        dx = last_seen_dx + (seen - 1 - i) * step
        if dx < -2.5:
            break
        tracks = tracker.update(i * DT, [Detection(dx, 0.0)] if i < seen else [], ego)
        reported += [t.dx for t in tracks]
    return reported


def test_a_well_seen_track_coasts_to_the_bumper_once_its_feet_leave_the_window() -> None:
    cfg = TrackerConfig()
    windowed = _approach(VruTracker(cfg, window_near_m=3.6), seen=30)
    # still reported as it reaches the bumper: the person about to be hit stays in the prompt
    assert min(windowed) < 0.5
    # without a window (or a track seen only a few times: as often a false detection) the
    # ordinary coast drops it 0.35 s (2.1 m at 6 m/s) after the last detection
    assert min(_approach(VruTracker(cfg), seen=30)) > 5.5 - 6.0 * (cfg.max_coast_s + DT)
    short = _approach(VruTracker(cfg, window_near_m=3.6), seen=cfg.near_coast_hits - 2)
    assert min(short) > 5.5 - 6.0 * (cfg.max_coast_s + DT)
    # far from the bumper nothing changes: a lost track 20 m ahead coasts max_coast_s only
    far = VruTracker(cfg, window_near_m=3.6)
    assert far.near_m == 3.6 + cfg.near_margin_m
    seen_far = [len(far.update(i * DT, [Detection(20.0, 3.0)] if i < 30 else [], 0.0)) for i in range(60)]
    assert seen_far.index(0, 30) - 29 == math.floor(cfg.max_coast_s / DT) + 1  # frames after the last detection


def _overtaken_cyclist(cfg: TrackerConfig, jump_at_dx: float = 5.5,
                       jump_m: float = 0.65) -> tuple[list[list[float]], int]:
    """A cyclist riding along the bike lane (y -2.7 m) at 5 m/s, overtaken at 50 km/h; from
    ``jump_at_dx`` on the detector's foot point sits on the other wheel, ``jump_m`` farther.
    The lateral velocities of the confirmed tracks per frame, and the first frame after the jump."""
    rng, ego, tracker, out, jump = np.random.default_rng(3), 13.9, VruTracker(cfg), [], -1
    for i in range(round(3.5 / DT)):
        dx = 30.0 - (ego - 5.0) * i * DT
        if dx < 3.7:  # below the detector's window
            break
        cov = _los_cov(dx, -2.7, 0.0035 * dx * dx, 0.004)  # a pixel of row error, through the geometry
        if dx < jump_at_dx and jump < 0:
            jump = len(out)
        noisy = rng.multivariate_normal([dx + (jump_m if jump >= 0 else 0.0), -2.7], cov)
        out.append([t.vy for t in tracker.update(i * DT, [Detection(float(noisy[0]), float(noisy[1]), cov=cov)],
                                                 ego)])
    return out, jump


def test_an_overtaken_cyclist_keeps_one_track_without_a_lateral_speed() -> None:
    """The footprint term. Near, a pixel of row error is a few centimetres of range, so without it
    the range residual of a rider moving away at 5 m/s leaks into the lateral speed through the
    line-of-sight covariance, and the foot point jumping to the other wheel starts a second track:
    the bike-lane phantom of docs/MODEL_HISTORY.md, *Footprint*."""
    near = 30  # the last second: 12.6 m down to the window's edge
    frames, jump = _overtaken_cyclist(TrackerConfig())
    assert jump > 0 and max(len(f) for f in frames) == 1
    assert max(abs(v) for f in frames[-near:] for v in f) < 0.35
    bare, _ = _overtaken_cyclist(TrackerConfig(footprint_sigma_m=0.0))
    assert max(len(f) for f in bare[-near:]) == 2
    assert max(abs(v) for f in bare[-near:] for v in f) > 0.9


def test_a_repeated_frame_is_not_fused_twice() -> None:
    """Three copies of one frame (a repeated stamp) confirmed a one-frame false detection."""
    tr = VruTracker()
    for _ in range(3):
        assert tr.update(1.0, [Detection(10.0, 3.0)], 5.0) == []
    assert [t.hits for t in tr.tracks] == [1]
    # a real track is left as it was by a repeat of its frame
    tr = VruTracker()
    for i in range(5):
        tr.update(i * DT, [Detection(10.0 - 0.3 * i, 3.0)], 9.0)
    (before,) = tr.confirmed()
    x, p, hits = before.x.copy(), before.p.copy(), before.hits
    (after,) = tr.update(4 * DT, [Detection(8.8, 3.0)], 9.0)
    assert after.hits == hits and np.array_equal(after.x, x) and np.array_equal(after.p, p)


def test_a_frame_without_a_finite_time_or_ego_speed_leaves_the_tracks_alone() -> None:
    """A NaN time or speed reset the tracker (and a NaN speed made every track NaN, then dropped)."""
    tr = VruTracker()
    for i in range(5):
        tr.update(i * DT, [Detection(10.0, 3.0)], 0.0)
    assert len(tr.confirmed()) == 1
    assert len(tr.update(5 * DT, [Detection(10.0, 3.0)], math.nan)) == 1
    assert len(tr.update(math.nan, [Detection(10.0, 3.0)], 0.0)) == 1
    assert len(tr.update(math.inf, [Detection(10.0, 3.0)], 0.0)) == 1
    (t,) = tr.update(5 * DT, [Detection(10.0, 3.0)], 0.0)
    assert tr.resets == 0 and t.hits == 6 and np.all(np.isfinite(t.p))


def test_a_detection_with_a_non_finite_covariance_is_ignored() -> None:
    """A NaN / infinite covariance (a foot point at the horizon) made a track's covariance NaN."""
    tr = VruTracker()
    for i in range(5):
        bad = Detection(30.0, 3.0, cov=((math.inf, 0.0), (0.0, 1.0)))
        nan = Detection(20.0, -3.0, cov=((1.0, math.nan), (math.nan, 1.0)))
        neg = Detection(15.0, 0.0, cov=((-1.0, 0.0), (0.0, 1.0)))
        tr.update(i * DT, [Detection(10.0, 3.0), bad, nan, neg], 0.0)
        assert len(tr.tracks) == 1 and all(np.all(np.isfinite(t.p)) for t in tr.tracks)
    assert len(tr.confirmed()) == 1


# -- curves: the ego's yaw rate ---------------------------------------------------------------
AXLE = TrackerConfig().rear_axle_m
CONFLICT = ConflictSpec(brake_within_s=1.5)  # the shipped bundle's: corridor half width 1.35 m


def _ego_pose(t: float, speed: float, radius: float) -> tuple[NDArray[np.float64], float]:
    """Front bumper and heading at ``t`` of an ego whose rear axle drives the circle about
    ``(0, radius)`` (left turn > 0) from the origin, heading +x at 0."""
    psi = speed / radius * t
    axle = np.array([radius * math.sin(psi), radius * (1.0 - math.cos(psi))])
    return axle + AXLE * np.array([math.cos(psi), math.sin(psi)]), psi


def _in_ego(p: NDArray[np.float64], v: NDArray[np.float64], t: float, speed: float,
            radius: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A world position and velocity in the ego frame at ``t``."""
    bumper, psi = _ego_pose(t, speed, radius)
    turn = np.array([[math.cos(psi), math.sin(psi)], [-math.sin(psi), math.cos(psi)]])
    return turn @ (p - bumper), turn @ v


def _beside_path(radius: float, offset: float, ahead: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The world point ``offset`` m left of the bumper's circle, ``ahead`` m along it from the start,
    and the path's left normal there."""
    s, rb = math.copysign(1.0, radius), math.hypot(AXLE, radius)
    a = s * ahead / rb
    out = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) @ np.array([AXLE, -radius]) / rb
    return np.array([0.0, radius]) + (rb - s * offset) * out, -s * out


def _drive_curve(radius: float, offset: float, *, walk: float = 0.0, seconds: float = 2.0, seed: int = 0,
                 speed: float = 10.0, yaw: bool = True) -> list[tuple[float, NDArray[np.float32]]]:
    """A person ``offset`` m beside the ego's circle 30 m ahead, walking ``walk`` m/s along the path's
    left normal, seen every frame by a monocular detector (a pixel of row error, 0.23 degrees of
    bearing); the tracker's records per frame. ``yaw`` False: the yaw rate is not given (as before)."""
    start, left = _beside_path(radius, offset, 30.0)
    tr, rng, out = VruTracker(), np.random.default_rng(seed), []
    for i in range(round(seconds / DT)):
        t = i * DT
        p, _ = _in_ego(start + walk * left * t, walk * left, t, speed, radius)
        cov = _los_cov(float(p[0]), float(p[1]), 1.25 * float(p[0]) ** 2 / 360.0, 0.004)
        z = rng.multivariate_normal(p, cov)
        dets = [Detection(float(z[0]), float(z[1]), cov=cov)]
        if yaw:
            tr.update(t, dets, speed, speed / radius)
        else:
            tr.update(t, dets, speed)
        out.append((t, tr.records(2)))
    return out


@pytest.mark.parametrize("radius", [67.0, -67.0])
def test_without_the_yaw_rate_a_person_at_the_inner_kerb_walks_in_and_brakes(radius: float) -> None:
    """The review's case (docs/MODEL_CARD.md, *Limits*): the ego's turn taken for the person's walk."""
    inner = math.copysign(2.5, radius)
    frames = _drive_curve(radius, inner, yaw=False)
    late = np.array([r[0] for t, r in frames if t >= 1.0])
    assert -math.copysign(1.0, inner) * float(late[:, 3].mean()) > 2.0  # measured 3.0 m/s towards the path
    assert min(float(conflict_times(r, CONFLICT)) for _, r in frames) < 1.5  # measured 1.04 s


@pytest.mark.parametrize(("radius", "offset"), [(67.0, 2.5), (67.0, -2.5), (-67.0, -2.5), (-67.0, 2.5)])
def test_a_person_standing_beside_a_curve_reads_as_still_beside_the_path(radius: float, offset: float) -> None:
    """Inner and outer kerb of a left and a right turn, 10 m/s on 67 m: the review's case with the yaw rate."""
    for seed in range(3):
        frames = _drive_curve(radius, offset, seed=seed)
        late = np.array([r[0] for t, r in frames if t >= 0.5])
        assert late[:, 0].all()
        assert abs(float(late[:, 3].mean())) < 0.1 and float(np.abs(late[:, 3]).max()) < 0.4  # vy, measured < 0.24
        assert float(np.abs(late[:, 2] - offset).max()) < 0.3  # y off the path, not off the ego's axis
        bumper_speed = 10.0 * math.hypot(AXLE, radius) / abs(radius)
        assert abs(float(late[:, 4].mean()) + bumper_speed) < 0.3  # closing at the bumper's speed on its arc
        assert min(float(conflict_times(r, CONFLICT)) for _, r in frames) >= 1.5


def _true_conflict(radius: float, offset: float, walk: float, t0: float, speed: float = 10.0) -> float:
    """When the person of :func:`_drive_curve` is first both level with the ego and within the
    corridor's half width of its path (s after ``t0``), from the exact motion of both."""
    start, left = _beside_path(radius, offset, 30.0)
    for k in range(1, 5000):
        t = t0 + k * 1e-3
        p, v = _in_ego(start + walk * left * t, walk * left, t, speed, radius)
        dx, y, _, _ = along_path(np.array([*p, *v]), speed, speed / radius, AXLE)
        if abs(y) < CONFLICT.half_width_m and -CONFLICT.ego_length_m <= dx <= 0.0:
            return t - t0
    return math.inf


@pytest.mark.parametrize(("radius", "offset", "walk"), [(67.0, -4.0, 1.4), (-67.0, -4.0, 1.4), (-67.0, 4.0, -1.4)])
def test_a_person_crossing_into_a_curved_path_conflicts_when_the_geometry_says(radius: float, offset: float,
                                                                                walk: float) -> None:
    """4 m beside the path 30 m ahead, crossing it at 1.4 m/s: in the corridor 2.3 s on, the ego level then."""
    truth: dict[int, float] = {}
    for seed in range(3):
        frames = _drive_curve(radius, offset, walk=walk, seconds=1.8, seed=seed)
        for i, (t, rec) in enumerate(frames):
            if t >= 1.0:  # a second of track: the lateral speed is known
                truth[i] = truth[i] if i in truth else _true_conflict(radius, offset, walk, t)
                got = float(conflict_times(rec, CONFLICT))
                assert abs(got - truth[i]) < 0.3, (t, got, truth[i])  # measured within 0.24 s
                assert got < 1.5 or truth[i] > 1.3  # the brake comes in time


def test_ego_motion_is_the_rigid_turn_about_the_rear_axle() -> None:
    """Steps of :func:`ego_motion` carry a still point as the exact circle does; a tiny turn is the straight road."""
    point, speed, radius, steps = np.array([25.0, -3.0]), 10.0, -40.0, 90
    p = point - _ego_pose(0.0, speed, radius)[0]
    for _ in range(steps):
        g, offset = ego_motion(speed * DT, speed / radius * DT, AXLE)
        p = g @ p + offset
    exact, _ = _in_ego(point, np.zeros(2), steps * DT, speed, radius)
    assert np.allclose(p, exact, atol=1e-9)
    g, offset = ego_motion(0.5, 1e-12, AXLE)
    assert np.allclose(g, np.eye(2), atol=1e-12) and np.allclose(offset, [-0.5, 0.0], atol=1e-10)


def test_along_path_is_the_straight_record_far_from_any_curve_and_a_still_person_only_closes() -> None:
    x = np.array([20.0, -1.5, 0.3, 1.2])
    for yaw in (1e-6, -1e-6):  # a 10,000 km radius
        assert np.allclose(along_path(x, 10.0, yaw, AXLE), (20.0, -1.5, 1.2, 0.3 - 10.0), atol=1e-4)
    dx, y, vy, vx_rel = along_path(np.array([20.0, 6.0, 0.0, 0.0]), 10.0, 10.0 / 67.0, AXLE)
    rb = math.hypot(AXLE, 67.0)
    assert vy == pytest.approx(0.0, abs=1e-12) and vx_rel == pytest.approx(-10.0 * rb / 67.0)
    assert y == pytest.approx(rb - math.hypot(20.0 + AXLE, 6.0 - 67.0))  # left: nearer the centre of a left turn
    turned = math.atan2(6.0 - 67.0, 20.0 + AXLE) - math.atan2(-67.0, AXLE)  # about the centre, from the bumper
    assert dx == pytest.approx(rb * turned)


def test_a_curve_ranks_the_tracks_by_their_offset_from_the_path() -> None:
    """Radius 30 m to the left: a person on the path 15 m ahead stands 5.5 m to the left of the ego's
    axis, and one on the axis 12 m ahead is 4 m outside the curve. The path decides which is nearest."""
    speed, radius = 8.0, 30.0
    on_path, _ = _beside_path(radius, 0.0, 15.0)
    tr = VruTracker()
    for i in range(10):
        t = i * DT
        p, _ = _in_ego(on_path, np.zeros(2), t, speed, radius)
        axis, _ = _in_ego(_ego_pose(0.0, speed, radius)[0] + [12.0, 0.0], np.zeros(2), t, speed, radius)
        tr.update(t, [Detection(float(axis[0]), float(axis[1])), Detection(float(p[0]), float(p[1]))],
                  speed, speed / radius)
    (first, second) = tr.records(2)
    assert abs(first[2]) < 0.2 and second[2] < -3.5
    assert abs(tr.confirmed()[0].y) > abs(tr.confirmed()[1].y)  # by the ego's axis the other way round


@pytest.mark.parametrize(("speed", "yaw"), [(0.4, 0.3), (10.0, 0.9 * 10.0 / PATH_MAX_RADIUS_M)])
def test_a_crawl_or_an_almost_straight_road_keeps_the_ego_frame_records(speed: float, yaw: float) -> None:
    """Below 0.5 m/s speed over yaw rate is noise; beyond a 10 km radius the road is straight."""
    tr = VruTracker()
    for i in range(5):
        tr.update(i * DT, [Detection(10.0, 3.0)], speed, yaw)
    (t,) = tr.confirmed()
    assert not tr.curved() and tr.records(1)[0].tolist() == list(np.float32([1.0, t.dx, t.y, t.vy, t.vx_rel]))


def _straight_run(tracker: VruTracker, **yaw: float) -> NDArray[np.float32]:
    """A crossing and a standing person on a straight road, noise drawn without a matrix
    factorisation (the same on any machine); the records at the end."""
    rng = np.random.default_rng(7)
    for i in range(45):
        t = i * DT
        dets = []
        for dx, y in ((30.0 - 10.0 * t, -4.0 + 1.4 * t), (22.0 - 10.0 * t, 3.0)):
            a, (along, across) = math.atan2(y, dx), rng.standard_normal(2)
            n_r, n_b = 0.02 * dx * along, math.hypot(dx, y) * 0.003 * across
            dets.append(Detection(dx + math.cos(a) * n_r - math.sin(a) * n_b, y + math.sin(a) * n_r + math.cos(a) * n_b))
        tracker.update(t, dets, 10.0, **yaw)
    return tracker.records(2)


def test_a_yaw_rate_of_zero_is_the_straight_road_arithmetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Essential: a build's tracks (and every straight-road figure) stay bit for bit what they were."""
    def no_turn(*_: object) -> None:
        raise AssertionError("the turning path ran on a straight road")

    before = _straight_run(VruTracker())  # the yaw rate not given: the call of every caller before it existed
    monkeypatch.setattr(tracker_module, "ego_motion", no_turn)
    for zero in (0.0, -0.0):
        assert _straight_run(VruTracker(), yaw_rate=zero).tobytes() == before.tobytes()
    # the records the code before the yaw rate gave (8ccccbb)
    old = [[1.0, 15.231765747070312, -1.9615694284439087, 1.335268259048462, -9.947345733642578],
           [1.0, 7.3351359367370605, 2.990279197692871, -0.005427288357168436, -9.954545021057129]]
    assert np.allclose(before, old, rtol=0.0, atol=1e-5)
    with pytest.raises(AssertionError, match="turning path"):
        _straight_run(VruTracker(), yaw_rate=1e-9)  # any turn at all takes the other path


def test_a_non_finite_yaw_rate_leaves_the_tracks_alone() -> None:
    tr = VruTracker()
    for i in range(5):
        tr.update(i * DT, [Detection(10.0, 3.0)], 5.0, 0.1)
    (before,) = tr.confirmed()
    x = before.x.copy()
    for bad in (math.nan, math.inf, -math.inf):
        (t,) = tr.update(5 * DT, [Detection(9.8, 3.0)], 5.0, bad)
        assert t.hits == 5 and np.array_equal(t.x, x)
    (t,) = tr.update(5 * DT, [Detection(9.8, 3.0)], 5.0, 0.1)
    assert t.hits == 6 and np.all(np.isfinite(t.p))


def test_the_sweep_widens_the_corridor_on_the_inner_side_of_a_curve_only() -> None:
    """Off-tracking: the body turns about the rear axle and runs inside the bumper's arc by
    sqrt(L^2 + R^2) - |R| on the inner side; on a straight road the test is the labels' own."""
    tr = VruTracker()
    assert tr.sweep_widening() == (0.0, 0.0)
    tr.update(0.0, [], 5.0, 0.5)  # a 10 m left turn
    left, right = tr.sweep_widening()
    assert math.isclose(left, math.hypot(tr.cfg.rear_axle_m, 10.0) - 10.0) and right == 0.0  # 0.63 m
    tr.update(DT, [], 5.0, -0.5)  # the mean turn is 0 here, the path now a right turn
    assert tr.sweep_widening()[0] == 0.0 and math.isclose(tr.sweep_widening()[1], left)
    standing = np.array([[1.0, 4.6, 1.63, 0.0, -5.3], [1.0, 4.6, -1.63, 0.0, -5.3]])
    assert [float(conflict_times(r[None], CONFLICT, (left, 0.0))) < 1.0 for r in standing] == [True, False]
    assert all(float(conflict_times(r[None], CONFLICT)) == math.inf for r in standing)  # as before
