"""The built-in scenarios: a Euro NCAP-style AEB suite and benign drives where braking is wrong.

Geometry and timing follow ``../shared/reference/aeb-test-protocols.md``:

- Car-to-Car: the test starts at TTC 4 s (CCRs gap = 4 v); CCRm target at 20 km/h; CCRb both
  at 50 km/h, gap 12 or 40 m, the target braking at 2 or 6 m/s^2 to 2 km/h.  Overlap p % puts
  the target's centre (p/100 - 1) * W_VUT towards the nearside (100 % = centred; 50 % = the
  2026 impact location 0 %, offset -W_VUT/2, reference formula).
- Pedestrians / cyclists: the ego starts at TTC 6 s from the conflict point and the VRU is
  triggered by the ego's position so it reaches the impact point (x % of the VUT width from
  the nearside) when the ego arrives: CPNA 5 km/h from 4 m nearside with 1 m to reach speed;
  CPFA 8 km/h from 6 m farside with 1.5 m; CPNCO child 5 km/h from 4 m behind two parked cars
  (4.4 x 1.8 m); CBNA 15 km/h from 17 m, CBFA 20 km/h from 22 m, both at constant speed;
  CPLA / CBLA walking / riding away in the lane at 5 / 15 km/h.
- Night (street lights) for CPNA, CPFA, CPNCO, CPLA, as Euro NCAP 2026.

Subset, to keep a full run to a few minutes: CCRs at 10..50 km/h step 10 with overlaps 100 and
50 % (the two that load the range sensor's corridor differently), CCRm 30..80 step 10 at 100 %,
CCRb all four combinations, and each VRU scenario on the ladder 20 / 40 / 60 km/h (CBLA
30 / 40 / 60: its range starts at 25 km/h), day and night where the protocol has night.  Seeds
are a hash of the name, so adding a scenario does not change the others'.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Any

from tiny_node.sim.kinds import EGO_WIDTH_M, KINDS
from tiny_node.sim.road import (
    LEFT_KERB_Y,
    LEFT_LANE_Y,
    LEFT_SIDEWALK_Y,
    RIGHT_KERB_Y,
    RIGHT_SIDEWALK_Y,
    RIGHT_STRIP_Y,
)
from tiny_node.sim.scenario import (
    ActorSpec,
    Braking,
    Environment,
    LaneChange,
    Scenario,
    Trajectory,
    Trigger,
    Turn,
)

DAY = Environment()
NIGHT = Environment(light="night", street_lights=True)
CCR_TTC_S = 4.0  # reference: CCR test starts at TTC 4 s
VRU_TTC_S = 6.0  # reference: pedestrian placed at TTC ~6 s
VRU_LADDER_KMH = (20, 40, 60)
CCRS_SPEEDS_KMH = (10, 20, 30, 40, 50)  # 2026: 10-50 step 10
CCRM_SPEEDS_KMH = (30, 40, 50, 60, 70, 80)  # reference: 30-80
CCRM_TARGET_KMH = 20.0
CCRB_SPEED_KMH = 50.0
CCRB_FINAL_KMH = 2.0
PARKED_CAR_INNER_GAP_M = 1.0  # obstruction cars' inner side 1 m beside the VUT's path (assumed)


def _seed(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _scn(name: str, ego_kmh: float, actors: list[ActorSpec], *, env: Environment = DAY, duration_s: float,
         expect: str = "avoid", protocol: str | None = None, impact_pct: float | None = None,
         description: str = "") -> Scenario:
    return Scenario(name=name, ego_speed_kmh=float(ego_kmh), actors=tuple(actors), environment=env,
                    seed=_seed(name), duration_s=duration_s, expect=expect, protocol=protocol,
                    impact_pct=impact_pct, description=description)


# ---------------------------------------------------------------------------------------------
# Car-to-Car rear


def _target_y(overlap_pct: float) -> float:
    """The target's lateral offset for a C2C v4.3.1 overlap: +p % to the right, -p % the same to the left.

    100 % is centred; 50 % puts the target's centreline on the ego's edge (an offset of half the
    ego's width: the 2026 impact location 0 %, whose formula loc/100 * W - W/2 gives the same
    offset), so the 1.712 m target overlaps 0.856 m, 47 % of the 1.82 m ego.
    """
    return math.copysign((1.0 - abs(overlap_pct) / 100.0) * EGO_WIDTH_M, -overlap_pct) + 0.0  # never -0.0


def ccrs(vut_kmh: float, overlap_pct: float = 100.0) -> Scenario:
    """Car-to-Car Rear stationary: stopped target car, start at TTC 4 s."""
    v = vut_kmh / 3.6
    gap = CCR_TTC_S * v
    car = ActorSpec("car", Trajectory(x_m=gap + KINDS["car"].length_m / 2, y_m=_target_y(overlap_pct)), name="target")
    return _scn(f"CCRs_{vut_kmh:g}kmh_{overlap_pct:g}pct", vut_kmh, [car], duration_s=CCR_TTC_S + 2.0,
                protocol="CCRs", impact_pct=overlap_pct,
                description=f"stationary target car {gap:.1f} m ahead (TTC 4 s), {overlap_pct:g} % overlap")


def ccrm(vut_kmh: float, overlap_pct: float = 100.0) -> Scenario:
    """Car-to-Car Rear moving: target at 20 km/h, start at TTC 4 s."""
    closing = (vut_kmh - CCRM_TARGET_KMH) / 3.6
    gap = CCR_TTC_S * closing
    car = ActorSpec("car", Trajectory(x_m=gap + KINDS["car"].length_m / 2, y_m=_target_y(overlap_pct),
                                      speed_kmh=CCRM_TARGET_KMH), name="target")
    return _scn(f"CCRm_{vut_kmh:g}kmh", vut_kmh, [car], duration_s=CCR_TTC_S + 2.0, protocol="CCRm",
                impact_pct=overlap_pct, description=f"target at 20 km/h {gap:.1f} m ahead (TTC 4 s)")


def ccrb(decel_mps2: float, gap_m: float) -> Scenario:
    """Car-to-Car Rear braking: both at 50 km/h, the target brakes after 1 s to 2 km/h."""
    car = ActorSpec("car", Trajectory(
        x_m=gap_m + KINDS["car"].length_m / 2, y_m=0.0, speed_kmh=CCRB_SPEED_KMH,
        braking=Braking(Trigger("time_s", 1.0), decel_mps2, CCRB_FINAL_KMH)), name="target")
    return _scn(f"CCRb_{decel_mps2:g}mps2_{gap_m:g}m", CCRB_SPEED_KMH, [car], duration_s=10.0, protocol="CCRb",
                impact_pct=100.0, description=f"lead car {gap_m:g} m ahead brakes at {decel_mps2:g} m/s^2 at t=1 s")


# ---------------------------------------------------------------------------------------------
# Vulnerable road users


def _crossing(protocol: str, kind: str, vut_kmh: float, env: Environment, *, farside: bool, impact_frac: float,
              speed_kmh: float, start_m: float, accel_m: float | None, occluded: bool = False) -> Scenario:
    """A VRU crossing the ego's path, synchronised to meet the ego at the impact point."""
    v = vut_kmh / 3.6
    vp = speed_kmh / 3.6
    info = KINDS[kind]
    half_x = info.width_m / 2  # crossing: the actor's width lies along the road
    y_imp = -EGO_WIDTH_M / 2 + impact_frac * EGO_WIDTH_M
    y0 = y_imp + start_m if farside else y_imp - start_m
    x_c = VRU_TTC_S * v + half_x  # the ego's bumper reaches the actor at TTC 6 s
    if accel_m:
        walk_s = 2.0 * accel_m / vp + (start_m - accel_m) / vp
        accel = vp * vp / (2.0 * accel_m)
    else:
        walk_s, accel = start_m / vp, None
    actors = [ActorSpec(kind, Trajectory(
        x_m=x_c, y_m=y0, heading_deg=-90.0 if farside else 90.0, speed_kmh=speed_kmh,
        start=Trigger("ego_distance_m", round(v * walk_s + half_x, 3)), accel_mps2=accel), name="vru")]
    if occluded:
        pc = KINDS["parked_car"]
        y_pc = -EGO_WIDTH_M / 2 - PARKED_CAR_INNER_GAP_M - pc.width_m / 2
        front = x_c - 1.0
        for i, name in enumerate(("parked_near", "parked_far")):
            cx = front - pc.length_m / 2 - i * (pc.length_m + 1.0)
            actors.insert(i, ActorSpec("parked_car", Trajectory(x_m=round(cx, 3), y_m=round(y_pc, 3)), name=name))
    light = "night" if env.light == "night" else "day"
    suffix = f"_{light}" if protocol.startswith("CP") else ""
    side = "farside" if farside else "nearside"
    return _scn(f"{protocol}_{vut_kmh:g}kmh{suffix}", vut_kmh, actors, env=env, duration_s=VRU_TTC_S + 2.5,
                protocol=protocol, impact_pct=round(impact_frac * 100.0, 6),
                description=f"{kind} {speed_kmh:g} km/h from {start_m:g} m {side}"
                            + (", hidden behind two parked cars" if occluded else "")
                            + f", impact at {impact_frac * 100:g} % of the VUT width")


def _longitudinal(protocol: str, kind: str, vut_kmh: float, env: Environment, *, impact_frac: float,
                  speed_kmh: float) -> Scenario:
    """A VRU ahead in the lane moving away, reached at TTC 6 s."""
    info = KINDS[kind]
    closing = (vut_kmh - speed_kmh) / 3.6
    y = -EGO_WIDTH_M / 2 + impact_frac * EGO_WIDTH_M
    actor = ActorSpec(kind, Trajectory(x_m=round(VRU_TTC_S * closing + info.length_m / 2, 3), y_m=y,
                                       speed_kmh=speed_kmh), name="vru")
    light = "night" if env.light == "night" else "day"
    suffix = f"_{light}" if protocol.startswith("CP") else ""
    return _scn(f"{protocol}_{vut_kmh:g}kmh{suffix}", vut_kmh, [actor], env=env, duration_s=VRU_TTC_S + 2.5,
                protocol=protocol, impact_pct=round(impact_frac * 100.0, 6),
                description=f"{kind} moving away at {speed_kmh:g} km/h in the lane, {impact_frac * 100:g} % offset")


def cpna(vut_kmh: float, impact_pct: int, env: Environment = DAY) -> Scenario:
    """Adult crossing from the nearside, 5 km/h, 4 m, 1 m to reach speed (reference)."""
    return _crossing(f"CPNA-{impact_pct}", "adult", vut_kmh, env, farside=False, impact_frac=impact_pct / 100,
                     speed_kmh=5.0, start_m=4.0, accel_m=1.0)


def cpfa(vut_kmh: float, env: Environment = DAY) -> Scenario:
    """Adult running from the farside, 8 km/h, 6 m, 1.5 m to reach speed (reference)."""
    return _crossing("CPFA-50", "adult", vut_kmh, env, farside=True, impact_frac=0.5, speed_kmh=8.0,
                     start_m=6.0, accel_m=1.5)


def cpnco(vut_kmh: float, env: Environment = DAY) -> Scenario:
    """Child stepping out from behind parked cars, 5 km/h, 4 m nearside (reference)."""
    return _crossing("CPNCO-50", "child", vut_kmh, env, farside=False, impact_frac=0.5, speed_kmh=5.0,
                     start_m=4.0, accel_m=1.0, occluded=True)


def cpla(vut_kmh: float, impact_pct: int, env: Environment = DAY) -> Scenario:
    """Adult walking away in the lane at 5 km/h (reference)."""
    return _longitudinal(f"CPLA-{impact_pct}", "adult", vut_kmh, env, impact_frac=impact_pct / 100, speed_kmh=5.0)


def cbna(vut_kmh: float) -> Scenario:
    """Cyclist crossing from the nearside at 15 km/h from 17 m (reference)."""
    return _crossing("CBNA-50", "cyclist", vut_kmh, DAY, farside=False, impact_frac=0.5, speed_kmh=15.0,
                     start_m=17.0, accel_m=None)


def cbfa(vut_kmh: float) -> Scenario:
    """Cyclist crossing from the farside at 20 km/h from 22 m (reference)."""
    return _crossing("CBFA-50", "cyclist", vut_kmh, DAY, farside=True, impact_frac=0.5, speed_kmh=20.0,
                     start_m=22.0, accel_m=None)


def cbla(vut_kmh: float) -> Scenario:
    """Cyclist riding away in the lane at 15 km/h (reference)."""
    return _longitudinal("CBLA-50", "cyclist", vut_kmh, DAY, impact_frac=0.5, speed_kmh=15.0)


def ncap_suite() -> list[Scenario]:
    """The Euro NCAP-style AEB scenarios (see the module docstring for the subset)."""
    out = [ccrs(v, ov) for v in CCRS_SPEEDS_KMH for ov in (100.0, 50.0)]
    out += [ccrm(v) for v in CCRM_SPEEDS_KMH]
    out += [ccrb(a, g) for a in (2.0, 6.0) for g in (12.0, 40.0)]
    for env in (DAY, NIGHT):
        for v in VRU_LADDER_KMH:
            out += [cpna(v, 25, env), cpna(v, 75, env), cpfa(v, env), cpnco(v, env), cpla(v, 25, env), cpla(v, 50, env)]
    out += [cbna(v) for v in VRU_LADDER_KMH]
    out += [cbfa(v) for v in VRU_LADDER_KMH]
    out += [cbla(v) for v in (30, 40, 60)]
    return out


# ---------------------------------------------------------------------------------------------
# Benign: braking would be a false activation


def _b(name: str, ego_kmh: float, actors: list[ActorSpec], description: str, *, env: Environment = DAY,
       duration_s: float = 10.0) -> Scenario:
    return _scn(f"benign_{name}", ego_kmh, actors, env=env, duration_s=duration_s, expect="no_brake",
                description=description)


def _a(kind: str, name: str, x: float, y: float, *, width_m: float = math.nan, **kw: Any) -> ActorSpec:
    return ActorSpec(kind, Trajectory(x_m=x, y_m=y, **kw), name=name, width_m=width_m)


def benign_suite() -> list[Scenario]:
    """Drives with something to see but nothing to brake for."""
    car_l = KINDS["car"].length_m
    kerb_walker = [_a("adult", "ped", 60.0, RIGHT_KERB_Y - 2.25, heading_deg=90.0, speed_kmh=5.0,
                      start=Trigger("ego_distance_m", 35.0), stop_after_m=2.0)]
    crossing_far = [_a("adult", "ped", 120.0, RIGHT_KERB_Y - 0.75, heading_deg=90.0, speed_kmh=5.0,
                       stop_after_m=11.0)]
    parked = [_a("parked_car", f"parked{i}", x, RIGHT_STRIP_Y + 0.0) for i, x in enumerate((40.0, 46.0, 60.0, 75.0))]
    cyclist = [_a("cyclist", "cyclist", 40.0, RIGHT_STRIP_Y, speed_kmh=15.0)]
    oncoming = [_a("car", "oncoming", 150.0, LEFT_LANE_Y, heading_deg=180.0, speed_kmh=50.0)]
    return [
        _b("ped_sidewalk_along", 50, [_a("adult", "ped", 40.0, RIGHT_SIDEWALK_Y, speed_kmh=5.0)],
           "pedestrian walking along the right sidewalk, same direction"),
        _b("ped_sidewalk_towards", 50, [_a("adult", "ped", 90.0, LEFT_SIDEWALK_Y, heading_deg=180.0, speed_kmh=5.0)],
           "pedestrian walking towards the ego on the left sidewalk"),
        _b("ped_stops_at_kerb", 40, kerb_walker,
           "pedestrian walks towards the road as the ego approaches and stops on the kerb"),
        _b("ped_stops_at_kerb_night", 40, kerb_walker, "the same at night under street lights", env=NIGHT),
        _b("ped_crossing_clears", 50, crossing_far,
           "pedestrian crosses 120 m ahead, clear of the lane 4.5 s before the ego arrives"),
        _b("ped_crossing_clears_night", 50, crossing_far, "the same at night under street lights", env=NIGHT),
        _b("ped_waiting_left_kerb_rain", 50, [_a("adult", "ped", 70.0, LEFT_SIDEWALK_Y - 0.9)],
           "pedestrian standing at the far kerb in the rain", env=Environment(weather="rain")),
        _b("adjacent_car_overtaken", 60, [_a("car", "slow_car", 30.0, LEFT_LANE_Y, speed_kmh=30.0)],
           "slower car in the adjacent lane, overtaken"),
        _b("adjacent_car_passing", 50, [_a("car", "fast_car", -15.0, LEFT_LANE_Y, speed_kmh=80.0)],
           "faster car in the adjacent lane passes the ego"),
        _b("oncoming_car", 50, oncoming, "oncoming car in its own lane"),
        _b("oncoming_car_night_glare", 50, oncoming, "oncoming car at night, its headlights glaring",
           env=Environment(light="night", glare=True)),
        _b("lead_car_accelerates", 50, [_a("car", "lead", 25.0 + car_l / 2, 0.0, speed_kmh=80.0,
                                           initial_speed_kmh=50.0, start=Trigger("time_s", 1.0), accel_mps2=2.0)],
           "lead car 25 m ahead at the same speed accelerates away"),
        _b("lead_car_turns_away", 40, [_a("car", "lead", 50.0 + car_l / 2, 0.0, speed_kmh=40.0,
                                          braking=Braking(Trigger("time_s", 1.0), 2.0, 20.0),
                                          turn=Turn(Trigger("time_s", 3.8), -90.0, 40.0))],
           "lead car 50 m ahead slows to 20 km/h and turns off to the right"),
        _b("lead_car_cut_out", 50, [_a("car", "lead", 30.0 + car_l / 2, 0.0, speed_kmh=50.0,
                                       lane_change=LaneChange(Trigger("time_s", 1.5), LEFT_LANE_Y, 3.0))],
           "lead car at the same speed changes to the left lane"),
        *[_b(f"follow_{v}kmh_{h:g}s{'_night' if env is NIGHT else ''}".replace(".", "_"), v,
             [_a("car", "lead", v / 3.6 * h + car_l / 2, 0.0, speed_kmh=float(v))],
             f"following a car at the same speed, {h:g} s behind ({v / 3.6 * h:.1f} m)"
             + (" at night" if env is NIGHT else ""), env=env, duration_s=20.0)
          for v, h, env in ((30, 1.0, DAY), (50, 1.0, DAY), (80, 1.2, NIGHT), (100, 1.5, DAY))],
        _b("gantry", 80, [_a("gantry", "gantry", 120.0, 1.0)], "overhead sign bridge, 5.2 m clearance",
           duration_s=7.0),
        _b("gantry_fog", 60, [_a("gantry", "gantry", 90.0, 1.0)], "overhead sign bridge in fog",
           env=Environment(weather="fog"), duration_s=7.0),
        _b("parked_cars", 50, parked, "cars parked along the right kerb"),
        _b("road_markings", 50, [_a("road_marking", "zebra", 60.0, 1.75, width_m=7.0),
                                 _a("manhole", "manhole", 90.0, 0.3)],
           "zebra crossing (nobody on it) and a manhole cover in the lane"),
        _b("manholes_rain", 50, [_a("manhole", "manhole1", 50.0, -0.4), _a("manhole", "manhole2", 80.0, 0.5)],
           "manhole covers in the lane, wet road", env=Environment(weather="rain")),
        _b("cyclist_bike_lane", 50, cyclist, "cyclist in the bike lane, overtaken with 1.5 m clearance"),
        _b("cyclist_bike_lane_night", 50, cyclist, "the same at night under street lights", env=NIGHT),
        _b("static_off_road", 50, [_a("static", "crate_walk", 45.0, RIGHT_SIDEWALK_Y),
                                   _a("static", "crate_strip", 70.0, RIGHT_STRIP_Y - 0.3)],
           "obstacles on the sidewalk and in the parking strip"),
        _b("glare_empty_road", 50, [_a("car", "far_lead", 200.0, 0.0, speed_kmh=70.0)],
           "low sun ahead, a car far ahead pulling away", env=Environment(glare=True)),
    ]


# ---------------------------------------------------------------------------------------------
# Tuning: a closed-loop validation suite for choosing a model's operating point
#
# Why a suite of its own: a model's threshold chosen on the scored suite would be tuned on its
# own test.  These drives are kept apart from ``ncap`` and ``benign``: other speeds (30 / 50 km/h,
# not the 20 / 40 / 60 ladder), other impact points, other look-alikes (people who walk up to
# the kerb and stop, wait between parked cars, cross far ahead and clear), other seeds.
TUNE_SPEEDS_KMH = (30, 50)


def _tuned(sc: Scenario) -> Scenario:
    """A scenario renamed ``tune_<name>`` (and seeded from the new name)."""
    name = f"tune_{sc.name}"
    return dataclasses.replace(sc, name=name, seed=_seed(name))


def tune_lookalike_suite() -> list[Scenario]:
    """Benign drives that look like the start of a crossing: any brake is a false activation."""
    def walker(x: float, y: float, heading: float, *, trigger_m: float, stop_m: float,
               kind: str = "adult") -> ActorSpec:
        return _a(kind, "ped", x, y, heading_deg=heading, speed_kmh=5.0,
                  start=Trigger("ego_distance_m", trigger_m), stop_after_m=stop_m)

    parked = [_a("parked_car", f"parked{i}", x, RIGHT_STRIP_Y) for i, x in enumerate((35.0, 40.5, 52.0))]
    rain, fog = Environment(weather="rain"), Environment(weather="fog")
    out = [
        _b("kerb_stop_right_30", 30, [walker(45.0, RIGHT_KERB_Y - 2.0, 90.0, trigger_m=28.0, stop_m=1.6)],
           "pedestrian walks to the right kerb and stops (30 km/h)"),
        _b("kerb_stop_right_50_night", 50, [walker(70.0, RIGHT_KERB_Y - 2.0, 90.0, trigger_m=40.0, stop_m=1.7)],
           "the same at 50 km/h at night", env=NIGHT),
        _b("kerb_stop_left_50_rain", 50, [walker(65.0, LEFT_KERB_Y + 2.2, -90.0, trigger_m=40.0, stop_m=1.9)],
           "pedestrian walks to the far kerb and stops, rain", env=rain),
        _b("child_kerb_stop_30", 30, [walker(44.0, RIGHT_KERB_Y - 1.8, 90.0, trigger_m=25.0, stop_m=1.4, kind="child")],
           "child walks to the kerb and stops (30 km/h)"),
        _b("child_between_parked_cars", 40, [*parked, _a("child", "child", 46.0, RIGHT_KERB_Y + 0.2)],
           "child standing between parked cars at the kerb, not stepping out"),
        _b("child_between_parked_cars_night", 30, [*parked, _a("child", "child", 46.0, RIGHT_KERB_Y + 0.2)],
           "the same at night, 30 km/h", env=NIGHT),
        _b("adult_at_kerb_fog", 50, [_a("adult", "ped", 60.0, RIGHT_KERB_Y - 0.3)],
           "adult standing at the right kerb edge in fog", env=fog),
        _b("kerb_edge_walker_night", 40, [_a("adult", "ped", 80.0, RIGHT_KERB_Y - 0.4, heading_deg=180.0,
                                             speed_kmh=5.0)],
           "adult walking towards the ego along the kerb edge at night", env=NIGHT),
        _b("cyclist_waits_at_kerb", 40, [_a("cyclist", "cyclist", 55.0, RIGHT_KERB_Y - 0.8, heading_deg=90.0)],
           "cyclist waiting at the kerb to cross, facing the road"),
        _b("crossing_clears_80m", 30, [_a("adult", "ped", 80.0, RIGHT_KERB_Y - 0.5, heading_deg=90.0,
                                          speed_kmh=5.0, stop_after_m=11.0)],
           "pedestrian crosses 80 m ahead and is clear long before the ego arrives"),
        _b("cyclist_crossing_clears", 50, [_a("cyclist", "cyclist", 110.0, RIGHT_KERB_Y - 0.5, heading_deg=90.0,
                                              speed_kmh=15.0, stop_after_m=14.0)],
           "cyclist crosses 110 m ahead and clears"),
        _b("two_waiting_rain_night", 50, [_a("adult", "ped1", 60.0, RIGHT_KERB_Y - 0.5),
                                          _a("child", "ped2", 61.0, RIGHT_KERB_Y - 0.9)],
           "an adult and a child waiting at the kerb, rain at night",
           env=Environment(light="night", weather="rain", street_lights=True)),
    ]
    return [_tuned(s) for s in out]


def tune_vru_suite() -> list[Scenario]:
    """Crossing people and cyclists at speeds and impact points the scored suite does not use."""
    out: list[Scenario] = []
    for v in TUNE_SPEEDS_KMH:
        for env in (DAY, NIGHT):
            out += [cpna(v, 50, env), cpfa(v, env), cpnco(v, env)]
        out += [cbna(v), cbfa(v)]
    return [_tuned(s) for s in out]


def tune_suite() -> list[Scenario]:
    """The closed-loop validation suite (look-alikes + crossings); see ``tiny-node model operating-point``."""
    return tune_vru_suite() + tune_lookalike_suite()


SMOKE = ("CCRs_30kmh_100pct", "CPNA-25_40kmh_day", "CPNCO-50_40kmh_night", "benign_ped_stops_at_kerb")


def suite(name: str) -> list[Scenario]:
    """A named suite: ``ncap``, ``benign``, ``all``, ``smoke`` (a few for demos and CI) or ``tune``.

    ``tune`` (closed-loop validation for operating points) is not part of ``all``: it is what a
    threshold is chosen on, so the scored suite stays a test.
    """
    if name == "ncap":
        return ncap_suite()
    if name == "benign":
        return benign_suite()
    if name == "all":
        return ncap_suite() + benign_suite()
    if name == "smoke":
        by_name = {s.name: s for s in ncap_suite() + benign_suite()}
        return [by_name[n] for n in SMOKE]
    if name == "tune":
        return tune_suite()
    raise ValueError(f"unknown suite {name!r}: one of {', '.join(SUITES)}")


SUITES = ("ncap", "benign", "all", "smoke", "tune")
