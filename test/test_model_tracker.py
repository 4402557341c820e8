"""The VRU tracker: lateral velocity from noisy positions, track life cycle, explicit time."""

from __future__ import annotations

import math

import numpy as np

from tiny_node.model.tracker import RECORD_FIELDS, Detection, MotionModel, TrackerConfig, VruTracker

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
