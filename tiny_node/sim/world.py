"""The world: actors and the ego advanced together, ground truth, and contact.

``step`` moves the actors (their triggers see the ego at ``t``), then the ego, then checks
contact between the ego's footprint and every actor box that reaches into the ego's height
(markings are flat, a gantry is overhead).  At contact the run is frozen: ``collided``, the
ego's impact speed and the relative impact speed (ego speed minus the actor's velocity along
the road, what Euro NCAP scores as v_rel_impact) are kept, and further steps do nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tiny_node.sim.kinds import EGO_HEIGHT_M, KINDS
from tiny_node.sim.motion import ActorMotion
from tiny_node.sim.scenario import Scenario, protocol_family
from tiny_node.sim.vehicle import Ego

#: protocols whose target is ahead of the ego in its lane (car to car rear, pedestrian and cyclist
#: longitudinal): they share the end rules of ``World.done``
FOLLOWING_FAMILIES = frozenset({"CCRs", "CCRm", "CCRb", "CPLA", "CBLA"})
#: how long a run still closing on something in its path at ``duration_s`` may go on (``World.done``)
OVERTIME_S = 30.0


@dataclass(frozen=True)
class ActorState:
    """An actor now, road frame: (x, y) is its centre; ``heading`` rad, 0 along the road."""

    kind: str
    x: float
    y: float
    length: float
    width: float
    height: float
    vx: float
    vy: float
    heading: float = 0.0
    z: float = 0.0  # bottom above the road
    name: str = ""
    phase: float = 0.0  # gait / pedal cycles (renderer pose)
    lights_on: bool = False
    colour: tuple[int, int, int] | None = None

    def extent(self) -> tuple[float, float, float, float]:
        """Axis-aligned footprint (x_min, x_max, y_min, y_max) of the rotated box."""
        c, s = abs(math.cos(self.heading)), abs(math.sin(self.heading))
        hx = 0.5 * (self.length * c + self.width * s)
        hy = 0.5 * (self.length * s + self.width * c)
        return self.x - hx, self.x + hx, self.y - hy, self.y + hy

    def corners(self) -> list[tuple[float, float]]:
        """Footprint corners, counter-clockwise from rear right."""
        c, s = math.cos(self.heading), math.sin(self.heading)
        out = []
        for lx, ly in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)):
            dx, dy = lx * self.length, ly * self.width
            out.append((self.x + dx * c - dy * s, self.y + dx * s + dy * c))
        return out

    @property
    def solid(self) -> bool:
        """An obstacle the ego can hit: not flat, and not above the ego's roof."""
        return self.height > 0.05 and self.z < EGO_HEIGHT_M


@dataclass(frozen=True)
class GroundTruth:
    """What really is, at time ``t`` (the reference the decisions are judged against)."""

    t: float
    ego_x: float  # front bumper
    ego_speed: float
    ego_accel: float
    in_path_distance: float  # ego bumper to the nearest solid actor overlapping its corridor; inf if none
    ttc: float  # in_path_distance / closing speed; inf if not closing
    collided: bool
    impact_speed_kmh: float | None
    relative_impact_speed_kmh: float | None
    nearest_kind: str | None  # kind of that nearest in-path actor (of the one hit, after contact)
    nearest_name: str | None = None
    closing_speed: float = 0.0  # ego speed minus the in-path actor's vx (m/s)


def _overlap_1d(a0: float, a1: float, b0: float, b1: float) -> bool:
    return a0 < b1 and b0 < a1


def boxes_touch(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    """Separating-axis test of two convex footprints given as corner lists."""
    for poly in (a, b):
        n = len(poly)
        for i in range(n):
            x0, y0 = poly[i]
            x1, y1 = poly[(i + 1) % n]
            ax, ay = y0 - y1, x1 - x0
            pa = [ax * x + ay * y for x, y in a]
            pb = [ax * x + ay * y for x, y in b]
            if max(pa) <= min(pb) or max(pb) <= min(pa):
                return False
    return True


def relative_impact_speed(ego_mps: float, actor_vx: float, actor_vy: float) -> float:
    """The speed an impact is scored by (m/s): the ego's closing speed on the actor, as Euro NCAP's.

    When the ego does not close on it (standing, or an actor faster from behind), the actor ran
    into the ego, and the whole relative speed counts: closing alone scored a standing ego hit
    by a pedestrian, or a car rear-ended at 30 km/h, as 0 km/h, green, full points.
    """
    closing = ego_mps - actor_vx
    return closing if closing > 0.0 else math.hypot(closing, actor_vy)


class World:
    """Actors plus ego in virtual time; ``t`` is the simulation time in seconds."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.t = 0.0
        self.ego = Ego(speed=scenario.ego_speed_kmh / 3.6, delay_s=scenario.brake_delay_s,
                       max_decel=scenario.max_decel_mps2)
        self._motions = [ActorMotion(a) for a in scenario.actors]
        self._night = scenario.environment.light == "night"
        self.collided = False
        self.impact_speed_kmh: float | None = None
        self.relative_impact_speed_kmh: float | None = None
        self.contact_kind: str | None = None
        self.contact_name: str | None = None
        self._actors_cache: tuple[float, list[ActorState]] | None = None

    # -- stepping ----------------------------------------------------------------------------

    def step(self, dt: float, brake: bool) -> None:
        """Advance ``dt`` seconds with the brake request ``brake``; no-op after contact."""
        if self.collided or dt <= 0.0:
            return
        front, speed = self.ego.position, self.ego.speed
        for m in self._motions:
            m.step(dt, self.t, front, speed)
        self.ego.step(dt, self.t, brake)
        self.t += dt
        self._actors_cache = None
        self._check_contact()

    def _ego_footprint(self) -> list[tuple[float, float]]:
        x1 = self.ego.position
        x0 = x1 - self.ego.length_m
        hw = 0.5 * self.ego.width_m
        return [(x0, -hw), (x1, -hw), (x1, hw), (x0, hw)]

    def _check_contact(self) -> None:
        hit = self._touching()
        if hit is not None:
            self.collided = True
            self.impact_speed_kmh = self.ego.speed * 3.6
            self.relative_impact_speed_kmh = relative_impact_speed(self.ego.speed, hit.vx, hit.vy) * 3.6
            self.contact_kind, self.contact_name = hit.kind, hit.name

    def _touching(self) -> ActorState | None:
        """The solid actor whose footprint touches the ego's now, the rearmost of several (None: none)."""
        # Cheap reject on the motion state first: building ActorStates every 1 ms step costs.
        front = self.ego.position
        rear = front - self.ego.length_m
        hw = 0.5 * self.ego.width_m
        near = False
        for m in self._motions:
            spec = m.spec
            if spec.height_m <= 0.05 or spec.z_m >= EGO_HEIGHT_M:
                continue
            reach = 0.5 * math.hypot(spec.length_m, spec.width_m)
            if m.x - reach < front and m.x + reach > rear and abs(m.y) - reach < hw:
                near = True
                break
        if not near:
            return None
        ego = self._ego_footprint()
        hit: ActorState | None = None
        for a in self.actors():
            if not a.solid:
                continue
            x0, x1, y0, y1 = a.extent()
            if not (_overlap_1d(x0, x1, ego[0][0], ego[1][0]) and _overlap_1d(y0, y1, ego[0][1], ego[2][1])):
                continue
            if boxes_touch(ego, a.corners()) and (hit is None or a.x < hit.x):
                hit = a
        return hit

    def touching_at_start(self) -> str | None:
        """The actor the ego touches before anything has moved (None: none).

        Why: such a drive is a collision at its first step, before the first camera frame, and
        would be scored as the system's failure; the scenario loader refuses it instead.
        """
        if self.t != 0.0:
            raise RuntimeError("touching_at_start: the world has already stepped")
        hit = self._touching()
        return None if hit is None else hit.name

    # -- views -------------------------------------------------------------------------------

    def _state(self, m: ActorMotion) -> ActorState:
        spec = m.spec
        heading = math.atan2(m.vy, m.vx) if m.speed > 0.05 else m.heading
        lights = spec.lights_on
        if lights is None:
            lights = self._night and spec.kind == "car"
        return ActorState(
            kind=spec.kind, x=m.x, y=m.y, length=spec.length_m, width=spec.width_m, height=spec.height_m,
            vx=m.vx, vy=m.vy, heading=heading, z=spec.z_m, name=spec.name, phase=m.phase, lights_on=lights,
            colour=spec.colour or KINDS[spec.kind].colour,
        )

    def actors(self) -> list[ActorState]:
        """Every actor now (fresh immutable states)."""
        if self._actors_cache is not None and self._actors_cache[0] == self.t:
            return self._actors_cache[1]
        out = [self._state(m) for m in self._motions]
        self._actors_cache = (self.t, out)
        return out

    def distance_to_stop(self, name: str) -> float:
        """How far the actor ``name`` still moves before its trajectory stops it (inf: never).

        Privileged: the scenario's plan, which no sensor shows. Why: a label can then tell a
        pedestrian who will stop at the kerb from one who will walk on (``scenes.label_frame``'s
        ``intent``). An actor with a turn or lane change ahead is never said to stop.
        """
        for m in self._motions:
            if m.spec.name != name:
                continue
            tr = m.spec.trajectory
            if tr.stop_after_m is None or tr.turn is not None or tr.lane_change is not None:
                return math.inf
            return 0.0 if m.stopped else max(0.0, tr.stop_after_m - m.travelled)
        raise KeyError(f"no actor named {name!r} in scenario {self.scenario.name!r}")

    def in_path(self) -> tuple[float, ActorState | None]:
        """Distance from the ego bumper to the nearest solid actor overlapping its corridor."""
        best, who = self._in_path_motion()
        return best, (None if who is None else self._state(who))

    def _in_path_motion(self) -> tuple[float, ActorMotion | None]:
        front = self.ego.position
        rear = front - self.ego.length_m
        hw = 0.5 * self.ego.width_m
        best, who = math.inf, None
        for m in self._motions:
            spec = m.spec
            if spec.height_m <= 0.05 or spec.z_m >= EGO_HEIGHT_M:
                continue  # not solid: flat, or overhead
            heading = math.atan2(m.vy, m.vx) if m.speed > 0.05 else m.heading
            c, s = abs(math.cos(heading)), abs(math.sin(heading))
            hx = 0.5 * (spec.length_m * c + spec.width_m * s)
            hy = 0.5 * (spec.length_m * s + spec.width_m * c)
            if m.x + hx <= rear or not _overlap_1d(m.y - hy, m.y + hy, -hw, hw):
                continue
            d = max(0.0, m.x - hx - front)
            if d < best:
                best, who = d, m
        return best, who

    def truth(self) -> GroundTruth:
        """Ground truth now."""
        d, who = self.in_path()
        closing = self.ego.speed - who.vx if who is not None else 0.0
        ttc = d / closing if who is not None and closing > 1e-6 else math.inf
        kind = self.contact_kind if self.collided else (who.kind if who is not None else None)
        name = self.contact_name if self.collided else (who.name if who is not None else None)
        return GroundTruth(
            t=self.t, ego_x=self.ego.position, ego_speed=self.ego.speed, ego_accel=self.ego.accel,
            in_path_distance=d, ttc=0.0 if self.collided else ttc, collided=self.collided,
            impact_speed_kmh=self.impact_speed_kmh, relative_impact_speed_kmh=self.relative_impact_speed_kmh,
            nearest_kind=kind, nearest_name=name, closing_speed=closing,
        )

    def first_set_off_t(self) -> float:
        """When the first actor set off (:attr:`ActorMotion.set_off_t`; inf: none did)."""
        return min((m.set_off_t for m in self._motions if m.set_off_t is not None), default=math.inf)

    def unstarted(self) -> list[str]:
        """Actors whose start trigger never fired: their part of the drive never began."""
        return [m.spec.name for m in self._motions if not m.started]

    def still_closing(self) -> str:
        """What the ego is still closing on in its path ("" if nothing).

        At the end of an avoid run: a contact the clock ran out before, no avoidance (a brake
        released with the ego crawling on).
        """
        if self.collided:
            return ""
        d, who = self._in_path_motion()  # a stopped ego too: a wrong-way car may still come at it
        if who is None or self.ego.speed <= who.vx + 1e-6:
            return ""
        return (f"still closing on {who.spec.name} at {(self.ego.speed - who.vx) * 3.6:.1f} km/h, {d:.1f} m ahead, "
                f"when the run's time ran out ({self.t:.1f} s)")

    def _closing_on_ego(self) -> bool:
        """An actor in the ego's corridor comes towards it (a wrong-way car): a stop avoids nothing yet."""
        _, who = self._in_path_motion()
        return who is not None and who.vx < -1e-6

    def done(self) -> bool:
        """End of the run (Euro NCAP end conditions, reference).

        Contact, the ego stopped after braking (unless an actor in its corridor still comes
        towards it: a car driving at the stopped ego was scored "avoided" 6 m away), or (CCR,
        CPLA and CBLA protocols: a target ahead in the lane) the ego slower than the target it
        follows once the target's speed is settled; else ``duration_s``. A run of those
        protocols, or any ``expect: avoid`` drive, still closing on something in its path then
        goes on until one of those, for at most ``OVERTIME_S``: the protocol has no timeout,
        and a brake released too early (a cyclist ridden away from at 60 km/h, the ego left at
        31 km/h) or a ``duration_s`` shorter than the drive (a pedestrian 2 m ahead, the ego
        unbraked) must not count as avoided because the clock ran out before the contact.
        """
        if self.collided:
            return True
        if self.ego.speed <= 0.0 and self.ego.first_request_t is not None and not self._closing_on_ego():
            return True
        limit = self.scenario.duration_s
        following = protocol_family(self.scenario.protocol or "") in FOLLOWING_FAMILIES
        if not following and self.t < limit - 1e-9:
            return False
        _, who = self._in_path_motion()
        if following and who is not None and who.vx > 0.0 and who.speed_settled and self.ego.speed < who.vx - 1e-6:
            return True
        if (following or self.scenario.expect == "avoid") and who is not None and self.ego.speed > who.vx + 1e-6:
            limit += OVERTIME_S
        return self.t >= limit - 1e-9
