"""Random scenes for training data, and their labels from privileged ground truth.

Why privileged labels: the model is there to add what the range sensor misses (a child behind
a parked car, a cyclist at night the radar drops), so the label must come from the world, not
from the sensors. ``conflict_time`` extrapolates every solid actor and the ego at constant
velocity and returns when their footprints first overlap; a frame needs a brake when that is
sooner than ``BRAKE_TTC_S`` (longer for people in a school zone), or when an object already in
the ego's corridor is closer than the stopping distance at the closing speed (UN R152's 5 m/s²
and the rule path's 0.5 s response, ../shared/reference/aeb-test-protocols.md). The ``intent``
labels (``planned_conflict_time``) let each actor stop where its trajectory stops it instead.

Scene families: VRU crossing (nearside / farside, optionally from behind parked cars, some
stopping at the kerb), lead car (stopped, slower, braking), static obstacle, VRU along the lane,
and benign scenes (parked cars, people on the sidewalk, oncoming and adjacent-lane traffic, a
lead car at a steady gap / pulling away / cutting out / turning off, obstacles off the road, a
gantry, road markings). Domain randomisation: light, weather, glare, street lights,
camera pose, actor size and colour, distractors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from tiny_node.factory.vocab import CONTEXTS, KIND_WORDS, distance_word
from tiny_node.sim.kinds import EGO_WIDTH_M, KINDS, VRU_KINDS
from tiny_node.sim.road import LEFT_KERB_Y, LEFT_LANE_Y, LEFT_SIDEWALK_Y, RIGHT_KERB_Y, RIGHT_SIDEWALK_Y, RIGHT_STRIP_Y
from tiny_node.sim.scenario import ActorSpec, Braking, Environment, LaneChange, Scenario, Trajectory, Trigger, Turn
from tiny_node.sim.world import ActorState, World

BRAKE_TTC_S = 2.0
SCHOOL_ZONE_VRU_TTC_S = 2.5
T_RESPONSE_S = 0.5
A_EGO_MPS2 = 5.0
MARGIN_M = 1.0
CORRIDOR_MARGIN_M = 0.2  # each side of the ego's width: a near pass is a conflict
RELEVANT_S = 4.0  # a conflict sooner than this is what the rationale talks about
MISS_FOCUSED = 0.5  # crossing-focused shards: share of crossers that stop at the kerb or clear early
APPROACH_S = 1.8  # crossing-focused shards: this long before the conflict gets 5/8 of the frames
#: (light, weather, main actor kind) never used for train / val / test: the held-out set.
HELDOUT = (("night", "rain", "cyclist"), ("day", "fog", "child"))
FAMILIES = ("vru_cross", "lead_car", "static", "vru_along", "benign")
FAMILY_P = (0.3, 0.2, 0.05, 0.1, 0.35)
FOCUSES = ("crossing", "lookalike", "cleared", "kerb")  # extra training shards (``sample_episode``'s ``focus``)
POSES = tuple((p, h) for p in (-1.5, -0.5, 0.5, 1.5) for h in (1.2, 1.3, 1.45))


@dataclass(frozen=True)
class Look:
    """What a shard shares: environment and camera pose (the renderer caches per look)."""

    env: Environment
    pitch_deg: float
    mount_height_m: float


def sample_look(rng: np.random.Generator, heldout: bool, index: int) -> Look:
    """A random environment and camera pose; held-out shards alternate the held-out pairs."""
    if heldout:
        light, weather, _ = HELDOUT[index % len(HELDOUT)]
    else:
        light = "night" if rng.random() < 0.4 else "day"
        weather = str(rng.choice(("clear", "rain", "fog"), p=(0.55, 0.3, 0.15)))
    env = Environment(light=light, weather=weather, glare=bool(rng.random() < 0.15),
                      street_lights=light == "night" and bool(rng.random() < 0.6))
    pitch, height = POSES[int(rng.integers(len(POSES)))]
    return Look(env, pitch, height)


def heldout_kind(look: Look) -> str | None:
    """The main actor kind a held-out look must show, or None."""
    for light, weather, kind in HELDOUT:
        if look.env.light == light and look.env.weather == weather:
            return kind
    return None


def _allowed(kind: str, look: Look, heldout: bool) -> bool:
    forced = heldout_kind(look)
    if heldout:
        return kind == forced
    return not any(look.env.light == li and look.env.weather == we and kind == k for li, we, k in HELDOUT)


def _colour(rng: np.random.Generator, kind: str) -> tuple[int, int, int]:
    """Car paints anywhere in RGB; clothing mostly dark, sometimes bright."""
    if kind in ("car", "parked_car"):
        return tuple(int(c) for c in rng.integers(20, 236, 3))  # type: ignore[return-value]
    if rng.random() < 0.7:
        return tuple(int(c) for c in rng.integers(15, 90, 3))  # type: ignore[return-value]
    return tuple(int(c) for c in rng.integers(90, 250, 3))  # type: ignore[return-value]


def _actor(rng: np.random.Generator, kind: str, name: str, tr: Trajectory) -> ActorSpec:
    info = KINDS[kind]
    s = float(rng.uniform(0.9, 1.1))
    return ActorSpec(kind=kind, trajectory=tr, name=name, length_m=info.length_m * s,
                     width_m=info.width_m * s, height_m=info.height_m * float(rng.uniform(0.92, 1.08)),
                     colour=_colour(rng, kind))


@dataclass(frozen=True)
class Episode:
    """One random drive: the scenario, its family, when frames are taken, ego braking."""

    scenario: Scenario
    family: str
    context: str
    frame_times: tuple[float, ...]
    ego_brake_at: float | None


def _distractors(rng: np.random.Generator, ego_v: float, n: int, start: int) -> list[ActorSpec]:
    """Things that never need a brake: parked cars, sidewalk people, oncoming cars, markings."""
    out: list[ActorSpec] = []
    for i in range(n):
        name = f"d{start + i}"
        pick = int(rng.integers(7))
        x = float(rng.uniform(8.0, 70.0))
        if pick == 0:
            out.append(_actor(rng, "parked_car", name, Trajectory(x, RIGHT_STRIP_Y + float(rng.uniform(-0.2, 0.2)))))
        elif pick == 1:
            kind = str(rng.choice(("adult", "child")))
            y = float(rng.choice((RIGHT_SIDEWALK_Y, LEFT_SIDEWALK_Y))) + float(rng.uniform(-0.8, 0.8))
            heading = float(rng.choice((0.0, 180.0)))
            out.append(_actor(rng, kind, name, Trajectory(x, y, heading, float(rng.uniform(0.0, 6.0)))))
        elif pick == 2:
            out.append(_actor(rng, "car", name, Trajectory(x + 30.0, LEFT_LANE_Y + float(rng.uniform(-0.3, 0.3)),
                                                          180.0, float(rng.uniform(20.0, 70.0)))))
        elif pick == 3:
            out.append(_actor(rng, str(rng.choice(("road_marking", "manhole"))), name,
                              Trajectory(x, float(rng.uniform(-0.8, 0.8)))))
        elif pick == 4:
            out.append(_actor(rng, "gantry", name, Trajectory(x + 10.0, 1.75)))
        elif pick == 5:  # a pedestrian standing at the kerb, facing the road
            y = float(rng.choice((-3.9, 5.9)))
            kind = str(rng.choice(("adult", "child")))
            out.append(_actor(rng, kind, name, Trajectory(x, y, 90.0 if y < 0 else -90.0)))
        else:  # cyclist in the parking / bike strip, riding along
            out.append(_actor(rng, "cyclist", name, Trajectory(x, RIGHT_STRIP_Y, 0.0,
                                                              min(float(rng.uniform(10.0, 20.0)), ego_v * 3.6))))
    return out


def _benign_traffic(rng: np.random.Generator, v: float, v_kmh: float) -> list[ActorSpec]:
    """Traffic that never needs a brake.

    A lead car at a steady gap, pulling away, cutting out or turning off; cars in the adjacent
    lane; obstacles off the road.
    """
    pick = int(rng.integers(7))
    half = KINDS["car"].length_m / 2
    gap = v * float(rng.uniform(1.5, 5.0)) + 4.0 + half
    y = float(rng.uniform(-0.3, 0.3))
    if pick == 0:  # steady gap
        return [_actor(rng, "car", "lead", Trajectory(gap, y, 0.0, v_kmh))]
    if pick == 1:  # pulls away
        return [_actor(rng, "car", "lead", Trajectory(gap, y, 0.0, v_kmh + float(rng.uniform(15.0, 40.0)),
                                                      initial_speed_kmh=v_kmh, start=Trigger("time_s", 0.5),
                                                      accel_mps2=float(rng.uniform(1.5, 3.0))))]
    if pick == 2:  # cuts out to the left lane
        return [_actor(rng, "car", "lead", Trajectory(gap, y, 0.0, v_kmh, lane_change=LaneChange(
            Trigger("time_s", float(rng.uniform(0.3, 1.5))), LEFT_LANE_Y, float(rng.uniform(2.0, 3.5)))))]
    if pick == 3:  # slows and turns off to the right, far ahead
        return [_actor(rng, "car", "lead", Trajectory(gap + 20.0, y, 0.0, v_kmh, braking=Braking(
            Trigger("time_s", 0.5), 2.0, 20.0), turn=Turn(Trigger("time_s", 2.5), -90.0, 40.0)))]
    if pick == 4:  # adjacent lane, same direction, slower or faster
        return [_actor(rng, "car", "adj", Trajectory(float(rng.uniform(-15.0, 40.0)), LEFT_LANE_Y, 0.0,
                                                     v_kmh * float(rng.uniform(0.5, 1.6))))]
    if pick == 5:  # obstacles on the sidewalk or in the parking strip
        return [_actor(rng, "static", f"crate{j}", Trajectory(float(rng.uniform(15.0, 70.0)), float(
            rng.choice((RIGHT_SIDEWALK_Y, RIGHT_STRIP_Y - 0.3, LEFT_SIDEWALK_Y))))) for j in range(2)]
    return []


def _lookalikes(rng: np.random.Generator, v: float, kinds: Sequence[str]) -> list[ActorSpec]:
    """What looks like the start of a crossing and is not one (``focus="lookalike"``).

    A person standing in the gap between parked cars, one who walks up to the kerb and stops,
    a cyclist waiting at the kerb facing the road, or a crossing far enough ahead to clear.
    ``kinds``: the VRU kinds the look allows (``_allowed``); where it keeps the cyclist out, the
    one waiting at the kerb is a person. Why: the held-out combinations must stay unseen in
    training, look-alike shards included.
    """
    pick = int(rng.integers(4))
    x = float(rng.uniform(12.0, 70.0))
    kind = str(rng.choice([k for k in ("adult", "child") if k in kinds]))
    right = rng.random() < 0.7
    sign = -1.0 if right else 1.0  # side of the road (y sign)
    facing = 90.0 if right else -90.0  # towards the road
    if pick == 0:  # between parked cars, at the kerb side of the strip, not stepping out
        length = KINDS["parked_car"].length_m
        gap = float(rng.uniform(1.2, 3.0))
        cars = [_actor(rng, "parked_car", f"g{j}", Trajectory(x + dx, RIGHT_STRIP_Y))
                for j, dx in enumerate((-(length + gap) / 2, (length + gap) / 2))]
        person = Trajectory(x, float(rng.uniform(RIGHT_KERB_Y + 0.2, RIGHT_STRIP_Y - 0.3)),
                            float(rng.choice((90.0, 0.0, 180.0))))
        return [*cars, _actor(rng, kind, "look", person)]
    if pick == 1:  # walks up to the kerb and stops on it
        kerb = abs(RIGHT_KERB_Y if right else LEFT_KERB_Y)
        start = kerb + float(rng.uniform(1.0, 2.5))
        stop_at = kerb - float(rng.uniform(-0.4, 0.3))  # on the kerb, up to 0.3 m past its edge
        return [_actor(rng, kind, "look", Trajectory(
            x, sign * start, facing, float(rng.uniform(3.0, 6.0)),
            start=Trigger("time_s", float(rng.uniform(0.0, 1.5))), stop_after_m=start - stop_at))]
    if pick == 2:  # a cyclist waiting at the kerb, facing the road
        y = sign * (abs(RIGHT_KERB_Y if right else LEFT_KERB_Y) + float(rng.uniform(0.2, 0.6)))
        return [_actor(rng, "cyclist" if "cyclist" in kinds else kind, "look", Trajectory(x, y, facing))]
    # a crossing far ahead: clear of the corridor >= 2.5 s before the ego gets there
    speed = float(rng.uniform(3.0, 6.0)) / 3.6
    y0 = sign * float(rng.uniform(2.5, 4.0))
    clear_s = (abs(y0) + 1.5) / speed
    return [_actor(rng, kind, "look", Trajectory(v * (clear_s + float(rng.uniform(2.5, 4.0))) + 5.0, y0, facing,
                                                 speed * 3.6, stop_after_m=abs(y0) + 3.5))]


def _cleared(rng: np.random.Generator, v: float, kinds: Sequence[str]) -> tuple[list[ActorSpec], float]:
    """A VRU walking or riding away from the road, as the ego closes in (``focus="cleared"``).

    It starts beside the ego's corridor, on either side but mostly the far one (where a
    crossing that has cleared ends up), and moves outwards for 2-8 m; the ego reaches it 2-5 s
    into the drive, so the frames run from far to beside it. Why: the training data had almost
    no VRU moving away at 15-30 m (a crossing ends at the conflict), so a pedestrian who had
    crossed 120 m ahead and walked on read as a crossing from the left (up to 0.83 to the model
    shipped before, 0.89 to models trained with image dropout, where it set the closed-loop
    threshold; docs/MODEL_HISTORY.md, *Crossings that cleared*).
    Returns the actors and the drive's duration.
    """
    kind = str(rng.choice(kinds))
    speed = float(rng.uniform(10.0, 18.0) if kind == "cyclist" else rng.uniform(3.0, 7.0))
    sign = 1.0 if rng.random() < 0.65 else -1.0  # +1: left of the ego (the far side), moving further left
    y0 = sign * float(rng.uniform(1.8, 5.0))
    t_arrive = float(rng.uniform(2.0, 5.0))
    tr = Trajectory(v * t_arrive + 3.0, y0, 90.0 * sign, speed, stop_after_m=float(rng.uniform(2.0, 8.0)))
    return [_actor(rng, kind, "away", tr)], t_arrive + 0.3


def _kerb(rng: np.random.Generator, v: float, kinds: Sequence[str]) -> tuple[list[ActorSpec], float]:
    """A VRU who heads for the road as the ego comes and stops short of its corridor (``focus="kerb"``).

    Mostly on the near side: from the sidewalk to the kerb edge or into the parking strip
    (stopping 2.2-4.2 m right of the lane's centre, like the crossings ``sample_episode`` lets
    stop); else to the far kerb. They stop 1.5-4 s into the drive, 0.6-2.5 s before the ego
    reaches them. Why: with ``intent`` labels these walks are no brake, so the model learns
    how often such a walk ends at the kerb; the default data holds few of them with the ego
    this close (the drive that set every seed's threshold of ``tracked-cleared`` is one,
    docs/MODEL_HISTORY.md). Returns the actors and the drive's duration.
    """
    kind = str(rng.choice(kinds))
    speed = float(rng.uniform(10.0, 16.0) if kind == "cyclist" else rng.uniform(3.0, 7.0)) / 3.6
    right = rng.random() < 0.75
    y_stop = -float(rng.uniform(2.2, 4.2)) if right else float(rng.uniform(LEFT_KERB_Y - 0.4, LEFT_KERB_Y + 0.5))
    t_stop = float(rng.uniform(1.5, 4.0))
    walk = min(float(rng.uniform(1.0, 3.0)), speed * (t_stop - 0.2))
    sign = 1.0 if right else -1.0  # direction of travel in y: towards the ego's lane
    t_arrive = t_stop + float(rng.uniform(0.6, 2.5))
    tr = Trajectory(v * t_arrive + 3.0, y_stop - sign * walk, 90.0 * sign, speed * 3.6,
                    start=Trigger("time_s", t_stop - walk / speed), stop_after_m=walk)
    return [_actor(rng, kind, "kerb", tr)], min(t_arrive, t_stop + 2.0) + 0.2


def sample_episode(rng: np.random.Generator, look: Look, heldout: bool, seed: int,
                   frames: int, *, focus: str | None = None) -> Episode:
    """One random drive in ``look``; frame times spread up to the conflict (if any).

    ``focus`` (extra training shards only; without it the draws are exactly as before, so
    the shards of the other splits do not change):

    - ``crossing``: always a crossing VRU, half of them stopping at the kerb or clearing
      early, and 5/8 of the frames in the 1.8 s before its conflict time. Why: the frames
      before a crossing person or cyclist enters the lane are where every model loses its
      brake recall (docs/MODEL_HISTORY.md), and a uniform draw gives only ~650 of them.
    - ``lookalike``: a benign drive with one of ``_lookalikes`` (a person waiting between
      parked cars, walking up to the kerb and stopping, ...). Why: those drives set the
      closed-loop operating point (``tiny-node model operating-point``), and the default
      data has few of them: a child beside parked cars is almost always a CPNCO crossing.
    - ``cleared``: a benign drive with a VRU moving away from the road beside the ego's
      corridor (``_cleared``).
    - ``kerb``: a benign drive with a VRU who walks towards the road and stops short of the
      ego's corridor shortly before the ego passes (``_kerb``).
    """
    if focus not in (None, *FOCUSES):
        raise ValueError(f"unknown focus {focus!r}: one of {', '.join(FOCUSES)}")
    crossing_focus = focus == "crossing"
    family = str(rng.choice(FAMILIES, p=FAMILY_P))
    if crossing_focus:
        family = "vru_cross"
    elif focus in ("lookalike", "cleared", "kerb"):
        family = "benign"
    if heldout and family in ("benign", "static", "lead_car"):
        family = str(rng.choice(("vru_cross", "vru_along")))
    v_kmh = float(rng.uniform(15.0, 80.0)) if rng.random() < 0.9 else float(rng.uniform(3.0, 15.0))
    v = v_kmh / 3.6
    actors: list[ActorSpec] = []
    t_c = float(rng.uniform(2.5, 5.5))  # when the main actor's conflict would happen
    duration = t_c + 0.3
    vru = [k for k in ("adult", "child", "cyclist") if _allowed(k, look, heldout)]
    if family == "vru_cross":
        kind = str(rng.choice(vru))
        speed = {"adult": rng.uniform(3.0, 8.0), "child": rng.uniform(3.0, 7.0),
                 "cyclist": rng.uniform(10.0, 20.0)}[kind] / 3.6
        nearside = rng.random() < 0.6
        sign = 1.0 if nearside else -1.0  # +1: starts on the right (y < 0), walks left
        impact_y = float(rng.uniform(-0.7, 0.7)) * EGO_WIDTH_M
        # passes well clear, or stops at the kerb: no conflict (focused shards: as many of these
        # look-alikes as crossings, so the extra positives do not teach "person near lane = brake")
        miss = rng.random() < (MISS_FOCUSED if crossing_focus else 0.25)
        y0 = impact_y - sign * speed * t_c
        y0 = -sign * max(abs(y0), float(rng.uniform(2.5, 4.0))) if abs(y0) < 2.5 else y0
        x = v * t_c + float(rng.uniform(0.0, 1.0))
        stop = None
        if miss:
            if rng.random() < 0.5:
                stop = max(0.3, abs(y0) - 2.2)  # stops ~0.5 m outside the ego lane
            else:
                x += v * float(rng.uniform(1.2, 2.5)) + 3.0  # crosses before the ego arrives
        actors.append(_actor(rng, kind, "main", Trajectory(x, y0, 90.0 * sign, speed * 3.6, stop_after_m=stop)))
        if rng.random() < 0.4 and nearside:  # CPNCO: out from behind parked cars
            for j, dx in enumerate((-5.5, 5.0 + float(rng.uniform(0.0, 2.0)))):
                actors.append(_actor(rng, "parked_car", f"p{j}", Trajectory(x + dx - 2.0, RIGHT_STRIP_Y)))
    elif family == "lead_car":
        mode = int(rng.integers(3))
        y = float(rng.uniform(-0.6, 0.6))
        if mode == 0:  # stopped car
            actors.append(_actor(rng, "car", "main", Trajectory(v * t_c + 2.0, y)))
        elif mode == 1:  # slower car
            vt = v * float(rng.uniform(0.0, 0.6))
            actors.append(_actor(rng, "car", "main", Trajectory((v - vt) * t_c + 2.0, y, 0.0, vt * 3.6)))
        else:  # braking car ahead
            gap = float(rng.uniform(10.0, 40.0))
            actors.append(_actor(rng, "car", "main", Trajectory(gap + 2.0, y, 0.0, v_kmh, braking=Braking(
                Trigger("time_s", float(rng.uniform(0.5, 2.0))), float(rng.uniform(2.0, 7.0))))))
            duration = float(rng.uniform(4.0, 6.5))
    elif family == "static":
        actors.append(_actor(rng, "static", "main", Trajectory(v * t_c + 0.3, float(rng.uniform(-0.6, 0.6)))))
    elif family == "vru_along":
        kind = str(rng.choice(vru))
        vs = (rng.uniform(10.0, 20.0) if kind == "cyclist" else rng.uniform(3.0, 6.0)) / 3.6
        vs = min(vs, 0.7 * v)
        actors.append(_actor(rng, kind, "main", Trajectory((v - vs) * t_c + 0.5, float(rng.uniform(-0.5, 0.5)),
                                                           0.0, vs * 3.6)))
    else:
        duration = float(rng.uniform(3.0, 6.0))
        if focus in ("cleared", "kerb"):
            focused, duration = (_cleared if focus == "cleared" else _kerb)(rng, v, vru)
            actors += focused
        else:
            actors += _lookalikes(rng, v, vru) if focus == "lookalike" else _benign_traffic(rng, v, v_kmh)
    n_distract = int(rng.integers(0, 4)) + (2 if family == "benign" else 0)
    actors += _distractors(rng, v, n_distract, len(actors))
    brake_at = float(rng.uniform(0.5, duration)) if rng.random() < 0.2 else None
    scenario = Scenario(name=f"ep{seed}", ego_speed_kmh=v_kmh, actors=tuple(actors), environment=look.env,
                        seed=seed, duration_s=duration, expect="no_brake" if family == "benign" else "avoid")
    times = np.sort(rng.uniform(0.3, max(0.35, duration - 0.05), frames))
    if crossing_focus:
        near = (5 * frames) // 8
        lo, hi = max(0.3, t_c - APPROACH_S), min(t_c, duration - 0.05)
        kept = rng.choice(times, frames - near, replace=False)
        times = np.sort(np.concatenate([kept, rng.uniform(lo, hi, near)]))
    ctx = str(rng.choice(CONTEXTS, p=(0.6, 0.2, 0.1, 0.1)))
    return Episode(scenario, family, ctx, tuple(round(float(t), 2) for t in times), brake_at)


# -- labels ------------------------------------------------------------------------------
def _interval(p0: float, p1: float, vel: float, lo: float, hi: float) -> tuple[float, float]:
    """Times when [p0, p1] + vel*t overlaps (lo, hi); may be empty (start > end)."""
    if abs(vel) < 1e-9:
        return (-math.inf, math.inf) if (p0 < hi and lo < p1) else (math.inf, -math.inf)
    a, b = (lo - p1) / vel, (hi - p0) / vel
    return (min(a, b), max(a, b))


def _window(world: World, a: ActorState) -> tuple[float, float]:
    """When ``a`` and the ego's corridor box overlap at constant velocities (may be empty)."""
    ego = world.ego
    front, rear = ego.position, ego.position - ego.length_m
    hw = 0.5 * ego.width_m + CORRIDOR_MARGIN_M
    x0, x1, y0, y1 = a.extent()
    tx = _interval(x0 - front, x1 - front, a.vx - ego.speed, rear - front, 0.0)
    ty = _interval(y0, y1, a.vy, -hw, hw)
    return max(tx[0], ty[0]), min(tx[1], ty[1])


def conflict_time(world: World, a: ActorState, horizon: float = 10.0) -> float:
    """When ``a`` and the ego's corridor box first overlap at constant velocities (inf: never)."""
    lo, hi = _window(world, a)
    start, end = max(lo, 0.0), min(hi, horizon)
    return start if start < end else math.inf


def planned_conflict_time(world: World, a: ActorState, horizon: float = 10.0) -> float:
    """``conflict_time`` with the actor stopping where its trajectory stops it.

    The ego still holds its speed; the actor moves at its velocity for
    ``World.distance_to_stop`` metres, then stands. Why: a pedestrian who walks up to the kerb
    and stops is a constant-velocity conflict until the step they stop, yet never a hazard
    (``label_frame``'s ``intent``).
    """
    left = world.distance_to_stop(a.name)
    speed = math.hypot(a.vx, a.vy)
    if not math.isfinite(left) or speed < 0.05:
        return conflict_time(world, a, horizon)
    t_stop = left / speed
    lo, hi = _window(world, a)
    start, end = max(lo, 0.0), min(hi, t_stop, horizon)
    if start < end:
        return start
    stood = replace(a, x=a.x + a.vx * t_stop, y=a.y + a.vy * t_stop, vx=0.0, vy=0.0)
    lo, hi = _window(world, stood)
    start, end = max(lo, t_stop), min(hi, horizon)
    return start if start < end else math.inf


@dataclass(frozen=True)
class Label:
    """The privileged truth of one frame."""

    brake: bool
    ttc: float  # min over actors of the conflict time (inf: none)
    ttc_in_path: float  # the world's in-path TTC (GroundTruth.ttc)
    gap: float  # bumper to the nearest in-path actor (inf: none)
    kind: str  # the relevant actor's kind ("" if none)
    rationale: str


def label_frame(world: World, context: str, hidden: frozenset[str] = frozenset(), *,
                intent: bool = False) -> Label:
    """Brake needed or not, and the sentence that says why.

    ``hidden``: names of actors to leave out (``tracks.hidden_vrus``: people the camera cannot
    see). Why: a label for what the camera can know (``FactoryConfig.labels`` ``seen``); with
    hidden people in it, a model learns to brake for the scene (parked cars) instead.
    ``intent``: conflicts from ``planned_conflict_time`` (the actor stops where the scenario
    stops it) instead of constant velocity (``FactoryConfig.labels`` ``intent``). Why: with
    constant-velocity labels a person walking up to the kerb is a brake until the step they
    stop; a model trained so cannot learn that such walks mostly end at the kerb.
    """
    truth = world.truth()
    v = world.ego.speed
    best: tuple[float, ActorState] | None = None
    brake = False
    actors = [a for a in world.actors() if a.name not in hidden]
    for a in actors:
        if not a.solid:
            continue
        tc = planned_conflict_time(world, a) if intent else conflict_time(world, a)
        limit = SCHOOL_ZONE_VRU_TTC_S if context == "school zone" and a.kind in VRU_KINDS else BRAKE_TTC_S
        if tc < limit:
            brake = True
        if best is None or tc < best[0]:
            best = (tc, a)
    gap = truth.in_path_distance
    closing = truth.closing_speed
    if math.isfinite(gap) and closing > 0.0 and truth.nearest_name not in hidden:
        stop = closing * T_RESPONSE_S + closing**2 / (2 * A_EGO_MPS2) + MARGIN_M
        brake = brake or gap <= stop
    rel: ActorState | None = None
    if best is not None and best[0] < RELEVANT_S:
        rel = best[1]
    elif math.isfinite(gap) and gap < 60.0 and truth.nearest_name not in hidden:
        _, rel = world.in_path()
    text = "clear road"
    if rel is not None:
        text = _sentence(world, rel, brake, in_path=rel.name == truth.nearest_name)
    elif v > 0.0:
        side = _side_vru(actors, world.ego.position)
        if side is not None:
            text = side
    ttc = best[0] if best is not None else math.inf
    kind = rel.kind if rel is not None else ""
    return Label(brake, ttc, truth.ttc, gap, kind, text)


def _sentence(world: World, a: ActorState, brake: bool, in_path: bool) -> str:
    word = KIND_WORDS.get(a.kind, "obstacle")
    d = distance_word(max(0.0, a.extent()[0] - world.ego.position))
    if abs(a.vy) > 0.3:
        side = "right" if a.vy > 0 else "left"  # moving left = coming from the right
        return f"{word} crossing from the {side} , {d} m"
    if a.vx < -0.3:
        return f"{word} oncoming , {d} m"
    if abs(a.vx) <= 0.3:
        return f"{word} stopped ahead , {d} m"
    if in_path and not brake and world.ego.speed - a.vx <= 0.3:
        return f"{word} ahead , {d} m , safe gap"
    return f"{word} ahead , closing , {d} m"


def _side_vru(actors: Sequence[ActorState], front: float) -> str | None:
    """A person near the road ahead but not in the path: worth saying it was seen."""
    for a in sorted(actors, key=lambda s: s.x):
        if a.kind in VRU_KINDS and 0.0 < a.x - front < 30.0 and abs(a.y) < 6.0:
            side = "left" if a.y > 0 else "right"
            return f"{KIND_WORDS[a.kind]} on the {side} , not in path"
    return None
