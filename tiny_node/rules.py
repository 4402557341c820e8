"""Rule-based safety path: RSS-style stopping distance and time-to-collision braking.

It decides in microseconds from range and ego speed, so a decision is always ready before
the model's.  The formula is Autoware's autonomous_emergency_braking RSS distance for a lead
(v_obj >= 0); for an oncoming object (v_obj < 0) RSS's opposite-direction distance, the object
reacting as late as the ego and braking no harder than it::

    d_safe = v_ego * t_response + v_ego^2 / (2 a_ego) - v_obj^2 / (2 a_obj) + margin          (lead)
    d_safe = v_ego * t_response + v_ego^2 / (2 a_ego) + |v_obj| * t_response
             + v_obj^2 / (2 a_ego) + margin                                                  (oncoming)

    brake  if  (closing > noise and range <= d_safe)   or   TTC = range / closing < ttc_brake

    range = the last scan's distance - max(closing, 0) * its age (the distance at the decision)

With ``rules.rss_max_ttc_s`` > 0 (off by default) the RSS part beyond ``d_equal`` (the RSS
distance were the object to brake no harder than the ego, a_obj = a_ego) also needs TTC under it.
Why it exists: with a_obj > a_ego the RSS distance brakes on a car 1.5 m/s slower 50 m ahead at
108 km/h (TTC 33 s), a full stop for an everyday approach. Why off: safety reviews measured it
braking leads that brake harder than the ego late (docs/ARCHITECTURE.md, *Rule path*).

with ``v_obj = v_ego - closing_speed``; the closing speed comes from the range rate when the
range track has one, else the object is assumed stationary (``closing = v_ego``), the
conservative choice, but a brake on that assumption is provisional
(``Verdict.provisional_track``): held only until the object's track refutes it, so a car
cutting in at the ego's speed brakes for a few scans, not for ``brake_hold_s``. A range rate
(or its standard error) that is not finite is taken as none: a NaN in a comparison reads as
"not closing" and cleared every rule.  ``noise`` is 0 for the assumed closing, and for a
measured one the larger of ``closing_min_mps`` and ``closing_sigmas`` standard errors of the
range rate (at least the sensor's own, ``range_rate_se_sensor``): with a_obj > a_ego a lead at
the ego's speed is inside d_safe at a normal gap, and a "closing" that is only the sensor's
noise must not brake there.  Sources: Autoware AEB (d formula, margin), Shalev-Shwartz et al.
2017 RSS (a_brake_max 8 m/s^2 for a lead; opposite directions), UN R152 (braking demand
>= 5 m/s^2); see ``../shared/reference/aeb-test-protocols.md``.  Inputs that are stale or invalid (per-topic
timeouts, NaN, negative speeds) give the configured fail-safe with the fault as the reason; so
does a non-finite ego speed or a NaN distance that reaches the rule without a fault.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tiny_node.config import RuleConfig
from tiny_node.decision import Verdict

if TYPE_CHECKING:  # only for annotations: sensors.py imports rss_distance from here
    from tiny_node.sensors import SensorSnapshot


def rss_distance(v_ego: float, v_obj: float, cfg: RuleConfig, a_obj: float | None = None) -> float:
    """Distance (m) the ego needs to stay clear of an object moving at ``v_obj`` (m/s).

    ``a_obj``: a lead's braking (default ``cfg.a_obj_brake_mps2``). An oncoming object's travel is
    added: its response distance and a stop at ``a_ego`` (RSS, opposite directions). Why not
    ``a_obj``: the hardest braking is the cautious guess for a lead, the most hopeful for an
    oncoming object; assumed to stop at 8 m/s^2 at once, one at 50 km/h towards the ego at 50 km/h
    was "clear" at 46 m (TTC 1.7 s), where RSS asks 53.5 m (review 2026-12-07).
    """
    v_ego = max(v_ego, 0.0)
    ego = v_ego * cfg.t_response_s + v_ego * v_ego / (2.0 * cfg.a_ego_brake_mps2) + cfg.margin_m
    if v_obj < 0.0:
        return ego - v_obj * cfg.t_response_s + v_obj * v_obj / (2.0 * cfg.a_ego_brake_mps2)
    a = cfg.a_obj_brake_mps2 if a_obj is None else a_obj
    return ego - v_obj * v_obj / (2.0 * a)


def rss_distance_equal_braking(v_ego: float, v_obj: float, cfg: RuleConfig) -> float:
    """The RSS distance were the object to brake no harder than the ego (never more than the full one).

    Why: within it even a lead braking as hard as the ego can is hit, so the RSS rule brakes there
    at any time to collision; with ``rss_max_ttc_s`` set, only the band a_obj > a_ego adds beyond it
    waits for that TTC. A standing object's is its full RSS distance (no object term).
    """
    equal = rss_distance(v_ego, v_obj, cfg, a_obj=min(cfg.a_obj_brake_mps2, cfg.a_ego_brake_mps2))
    return min(equal, rss_distance(v_ego, v_obj, cfg))


def time_to_collision(distance: float, closing_speed: float) -> float:
    """Seconds until contact at constant closing speed; ``inf`` when not closing."""
    if closing_speed <= 1e-6 or not math.isfinite(distance):
        return math.inf
    return max(distance, 0.0) / closing_speed


def closes_slower_than_standing(snap: SensorSnapshot, closing: float, cfg: RuleConfig) -> bool:
    """The range track shows the object closes slower than a standing one (it moves with us, or away).

    That is what refutes a brake taken on a standing object: measured ``closing`` below the
    ego's speed beyond its noise (an oncoming object closes faster, and refutes nothing).

    Its error is at least the sensor's own (``range_rate_se_sensor``): a young track's residuals
    can be ~0, and 2-3 scans (5 standard errors: 7-35 m/s at 20 Hz and 5 cm + 0.5 %) cannot tell
    a standing child from a lead at the ego's speed at low speed. No ``closing_min_mps`` here:
    that floor is against braking on noise, not for judging the object.
    """
    v_ego = snap.ego_speed or 0.0
    return snap.track_id > 0 and closing + cfg.closing_sigmas * rate_se(snap) < v_ego


def rate_se(snap: SensorSnapshot) -> float:
    """The range rate's standard error, never under the sensor's own (``range_rate_se_sensor``).

    Why the floor: two scans fit exactly (error 0), a few scans' residuals under-read it, and a
    lead at the ego's 130 km/h "closed" at 8 m/s +- 0 on its second scan in half the seeds: a final
    brake, held 2 s (review 2026-12-07). Unknown (inf, a hand-built snapshot): the measured error alone.
    """
    floor = snap.range_rate_se_sensor if math.isfinite(snap.range_rate_se_sensor) else 0.0
    return max(snap.range_rate_se, floor)


class RulePath:
    """Stateless evaluation of the rule; every constant comes from :class:`RuleConfig`."""

    def __init__(self, cfg: RuleConfig) -> None:
        self.cfg = cfg

    def decide(self, snap: SensorSnapshot) -> tuple[Verdict, dict[str, str]]:
        """Return the rule verdict and the figures behind it (for the decision's values).

        Inputs used under a warning (an invalid range sample, the last valid one standing) are
        named in ``sensor_warnings``, so a decision says what it stood on.
        """
        verdict, figures = self._decide(snap)
        if snap.warnings:
            figures["sensor_warnings"] = "; ".join(snap.warnings)
        return verdict, figures

    def _decide(self, snap: SensorSnapshot) -> tuple[Verdict, dict[str, str]]:
        cfg = self.cfg
        distance = snap.object_distance
        v_ego = snap.ego_speed
        faults = list(snap.faults)
        if not faults:
            assert distance is not None and v_ego is not None  # no faults => both present
            # Why here too: every comparison with NaN is False, so a NaN that got past the sensor
            # checks (another snapshot source) read as "clear" on every rule below.
            if not math.isfinite(v_ego):
                faults.append(f"odom: non-finite speed {v_ego!r} m/s reached the rule path")
            if math.isnan(distance):
                faults.append("range: NaN distance reached the rule path")
        if faults:
            brake = cfg.failsafe == "brake"
            reason = "fail-safe " + ("brake" if brake else "no_brake") + ": " + "; ".join(faults)
            # only sensors not heard from yet (each one such fault): a start-up, braked but not held
            awaiting = bool(snap.unreceived) and len(faults) == len(snap.unreceived)
            return Verdict(brake, 1.0, reason, awaiting_inputs=awaiting), {"faults": "; ".join(faults)}
        assert distance is not None and v_ego is not None
        if snap.reverse_mps > 0.0:  # a forward AEB stands aside while the ego reverses
            return Verdict(False, 1.0, f"inactive: reversing at {snap.reverse_mps:.2f} m/s (forward AEB)"), {
                "range_m": f"{distance:.2f}",
                "ego_speed_mps": f"{-snap.reverse_mps:.2f}",
            }
        if distance == math.inf:
            # +Inf clears only up to max_range: a sensor too short for the speed is a sensor warning
            reach = snap.range.reach_m if snap.range is not None else None
            figures = {"range_m": "inf", "ego_speed_mps": f"{v_ego:.2f}"}
            if reach is None:
                return Verdict(False, 1.0, "clear: no object within range"), figures
            return Verdict(False, 1.0, f"clear: nothing within max_range {reach:.2f} m"), figures
        rate = snap.range_rate
        if rate is not None and not (math.isfinite(rate) and math.isfinite(snap.range_rate_se)):
            rate = None  # no usable track: the object taken as stationary, as without one
        # A closing speed measured from the range track counts for the RSS rule only beyond its
        # noise (its error at least the sensor's own, rate_se): behind a lead at our own speed it
        # scatters around 0, and half the frames braked.
        measured_noise = 0.0 if rate is None else max(cfg.closing_min_mps, cfg.closing_sigmas * rate_se(snap))
        # A track timed by receipt (a driver that does not stamp) counts only once it shows the
        # object closes slower than a standing one: until then the object is taken as standing, or
        # closing as measured if that is faster beyond the noise (an oncoming car). A second publisher's
        # late copies made such a track read a child 30 m ahead as closing at 14 +- 40 m/s:
        # "within the noise", no brake. A young stamped track (under range_rate_window_s, the
        # longest a provisional brake lasts) counts once it shows either: the object closing beyond
        # the noise, or slower than a standing one. Until then (two scans 10 ms apart: +- 78 m/s) the
        # object is taken as standing, a provisional brake as without a track: "within the noise",
        # a child standing 12 m ahead at 36 km/h was no brake for the frames its first scans took
        # (CI, 2026-12-07). Not an older one: at walking pace, or with a noisy radar, a track may
        # never tell, and a lead at the ego's speed was braked for frame after frame to a stop.
        refutes = rate is not None and closes_slower_than_standing(snap, -rate, cfg)
        receipt = snap.range_timed_by_receipt is not None
        age = snap.range_track_age_s
        young = age is not None and age < cfg.range_rate_window_s
        doubt = rate is not None and not refutes and (receipt or (young and not -rate > measured_noise))
        standing = rate is None or (doubt and not -rate > v_ego + measured_noise)
        closing = v_ego if standing or rate is None else -rate
        noise = 0.0 if doubt else measured_noise
        v_obj = v_ego - closing
        d_safe = rss_distance(v_ego, v_obj, cfg)
        d_equal = rss_distance_equal_braking(v_ego, v_obj, cfg)
        # The TTC rule acts on any closing: a young track that cannot tell is at least standing, and
        # closing as measured if faster (an oncoming car at 30 km/h, 15 m ahead: 18 +- 43 m/s was
        # "clear" two frames, where its TTC was 0.8 s; review 2026-12-07).
        ttc_closing = max(closing, -rate) if rate is not None and doubt and not receipt else closing
        # The distance now, not where the last scan saw the object: the reading is range_age old (up
        # to range_timeout_s through a dropout), and the RSS distance's t_response_s leaves no room
        # for that. Held as seen, 0.45 s of lost scans at 50 km/h braked 6 m late, a 19 km/h impact
        # under the rule's own 5 m/s² (review 2026-12-08). Not moved away: a receding object's old
        # distance is the safe side.
        measured = distance
        held_s = max(snap.range_age or 0.0, 0.0)
        distance = measured - max(closing, 0.0) * held_s
        ttc = time_to_collision(measured - max(ttc_closing, 0.0) * held_s, ttc_closing)
        figures = {
            "range_m": f"{measured:.2f}",
            "range_age_s": f"{held_s:.3f}",
            "range_now_m": f"{distance:.2f}",
            "ego_speed_mps": f"{v_ego:.2f}",
            "closing_speed_mps": f"{closing:.2f}",
            "closing_noise_mps": f"{noise:.2f}",
            "closing_from": (f"{'ego_speed' if standing else 'range_rate'}: the track, timed by receipt, "
                             f"does not show the object slower than a standing one (range rate {rate:+.2f} m/s)"
                             if doubt and rate is not None and receipt else
                             f"ego_speed: the track cannot tell yet (range rate {rate:+.2f} +- "
                             f"{measured_noise:.2f} m/s; TTC on the faster closing)" if doubt and rate is not None else
                             "range_rate" + ("" if snap.range_timed_by_receipt is None else
                                             f" (scans timed by receipt: {snap.range_timed_by_receipt})")
                             if rate is not None else
                             "ego_speed" if snap.range_rate is None else
                             f"ego_speed (range rate {snap.range_rate!r} +- {snap.range_rate_se!r} not finite)"),
            "object_speed_mps": f"{v_obj:.2f}",
            "rss_distance_m": f"{d_safe:.2f}",
            "rss_distance_equal_braking_m": f"{d_equal:.2f}",
            "ttc_s": "inf" if ttc == math.inf else f"{ttc:.2f}",
        }
        # No track: the brake is taken now (a child stepping out must not wait for a second scan)
        # but is provisional, since its closing speed is an assumption the next scans may refute.
        # A brake is final when a track stands behind it: also a track timed by receipt that shows the
        # object closing beyond its noise, so a standing child's brake is held brake_hold_s, not 0.5 s.
        tracked = rate is not None and (not doubt or -rate > measured_noise)
        assumed = ("" if not standing else ", assumed stationary: no range track yet" if rate is None
                   else ", taken as standing: its range track, timed by receipt, cannot tell" if receipt
                   else ", taken as standing: its range track cannot tell yet")
        provisional_track = None if tracked else snap.track_id
        # At most range_rate_window_s from the track's first scan, whenever its first brake came: a
        # brake first taken on a noisy scan of an older track was held into the time its track was
        # what it measured (a car at walking pace braked from 10.8 to 1.1 km/h; review 2026-12-07)
        # (its age at its newest scan, and the time since that scan's receipt: the frame comes later)
        left = None if age is None or receipt else max(0.0, cfg.range_rate_window_s - age - held_s)
        if distance <= 0.0:  # contact: a brake whatever the closing speed
            if snap.range is not None and snap.range.range_m == -math.inf:
                return Verdict(True, 1.0, f"object closer than min_range {snap.range.min_range:.2f} m "
                                          "(range -inf, REP-117)"), {**figures, "range_m": "-inf"}
            if measured > 0.0:  # reached by now on the closing taken: provisional as that closing is
                return Verdict(True, 1.0, f"object at 0.00 m by now: {measured:.2f} m {held_s:.2f} s ago, "
                                          f"closing at {closing:.2f} m/s{assumed}",
                               provisional_track=provisional_track, provisional_left_s=left), figures
            return Verdict(True, 1.0, "object at 0.00 m"), figures
        # With rss_max_ttc_s set, beyond the distance a lead braking as hard as the ego would need, the
        # RSS distance (a_obj > a_ego) brakes only near a collision (a slower car far ahead braked at
        # TTC 15-33 s). Off by default: a lead braking harder than the ego closes slowly at first, and
        # the limit braked it late (wet roads, cut-ins: more and harder collisions).
        near = cfg.rss_max_ttc_s <= 0.0 or distance <= d_equal or ttc < cfg.rss_max_ttc_s
        if distance <= d_safe and closing > noise and near:
            return Verdict(
                True, 1.0,
                f"RSS: object at {distance:.1f} m <= safe distance {d_safe:.1f} m "
                f"(ego {v_ego:.1f} m/s, object {v_obj:.1f} m/s{assumed})", provisional_track=provisional_track,
                provisional_left_s=left,
            ), figures
        if cfg.ttc_brake_s > 0.0 and ttc < cfg.ttc_brake_s:
            how = (f", closing at {ttc_closing:.1f} m/s as measured: its range track cannot tell yet"
                   if ttc_closing > closing else assumed)
            return Verdict(
                True, 1.0, f"TTC {ttc:.2f} s < {cfg.ttc_brake_s:.2f} s at {distance:.1f} m{how}",
                provisional_track=provisional_track, provisional_left_s=left,
            ), figures
        # Clear on a track that shows the object is not stationary: what lifts a provisional brake on it.
        refutes_track = snap.track_id if tracked and closes_slower_than_standing(snap, closing, cfg) else None
        if closing <= 0.0:  # inside the safe distance perhaps, but not closing: say so, not the opposite
            return Verdict(
                False, 1.0, f"clear: object at {distance:.1f} m not closing ({closing + 0.0:.1f} m/s)",
                refutes_track=refutes_track,
            ), figures
        if distance <= d_safe and closing <= noise:
            return Verdict(
                False, 1.0, f"clear: object at {distance:.1f} m closing at {closing:.2f} m/s, within the "
                f"range-rate noise ({noise:.2f} m/s)", refutes_track=refutes_track,
            ), figures
        if distance <= d_safe:
            return Verdict(
                False, 1.0, f"clear: object at {distance:.1f} m inside the safe distance {d_safe:.1f} m "
                f"({d_equal:.1f} m were it to brake no harder than the ego) but TTC {ttc:.1f} s >= "
                f"{cfg.rss_max_ttc_s:.1f} s (closing at {closing:.2f} m/s)",
                refutes_track=refutes_track,
            ), figures
        return Verdict(
            False, 1.0, f"clear: object at {distance:.1f} m > safe distance {d_safe:.1f} m",
            refutes_track=refutes_track,
        ), figures
