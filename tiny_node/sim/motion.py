"""Actor motion: a :class:`Trajectory` played out step by step against the ego's position.

Triggers are judged at the start of each step on the state at ``t`` (ego front bumper and
speed), so an actor triggered by the ego's position starts where a test lab's would.  The
speed follows the phases in order: before start, acceleration to the cruise speed, braking to
the final speed (its trigger judged only once the actor has started), stop after a distance.
Heading changes (turns) and lane changes move the actor sideways.  ``phase`` counts gait /
pedal cycles for the renderer's walking pose.
"""

from __future__ import annotations

import math

from tiny_node.sim.scenario import ActorSpec, Trigger

# Stride (m per gait cycle) for the walking / pedalling pose; typical adult 1.4 m, child 1.0 m,
# a bicycle ~5 m per crank turn in a mid gear (assumed figures, drawing only).
STRIDE_M = {"adult": 1.4, "child": 1.0, "cyclist": 5.0}
#: A turn this close to 180 deg (rad) is a U-turn: the heading's float rounding alone (radians(-358)
#: against radians(2)) would choose its side.
U_TURN_TIE_RAD = 1e-9


class ActorMotion:
    """The moving state of one actor."""

    def __init__(self, spec: ActorSpec) -> None:
        tr = spec.trajectory
        self.spec = spec
        self.x = tr.x_m
        self.y = tr.y_m
        self.heading = math.radians(tr.heading_deg)
        self.speed = tr.speed_before_start_kmh / 3.6
        self.travelled = 0.0
        self.started = tr.start is None
        # When it set off: its first scripted event fired (start, braking, turn, lane change), or 0
        # when it moves towards the ego's lane from the start with no start, turn or lane change to
        # come (None: not yet, or never). Why: the judge of a brake "before the hazard began"
        # (sim.closed_loop) counted start triggers only, and an early brake on a car cutting in, or
        # on a pedestrian walking across from t = 0, was scored a brake on nothing (review). Traffic
        # moving along beside the lane sets off no hazard: a brake before the pedestrian it passes
        # is triggered is still a brake on nothing.
        moving = tr.speed_kmh > 0 or tr.speed_before_start_kmh > 0
        # by more than rounding: sin(180 deg) is 1.2e-16, which read an oncoming walker as crossing (review)
        towards = math.sin(self.heading) * math.copysign(1.0, tr.y_m) < -1e-9 and tr.y_m != 0
        self.set_off_t: float | None = (0.0 if moving and towards and tr.start is None and tr.turn is None
                                        and tr.lane_change is None else None)
        self.braking = False
        self.stopped = False
        self.turning = False
        self.lane_change_t: float | None = None  # time since the lane change began
        self.lane_offset = 0.0
        self.vx = self.speed * math.cos(self.heading)
        self.vy = self.speed * math.sin(self.heading)

    @property
    def speed_settled(self) -> bool:
        """Whether the script has no speed change left: started, and a braking actor at its final speed.

        Why: the CCR end rule (the ego slower than the car it follows) means the test is over
        only once the target's speed is what it will stay; in CCRb both start at 50 km/h and a
        brake tap before the lead brakes would end the run as avoided.
        """
        tr = self.spec.trajectory
        if not self.started:
            return False
        if tr.braking is not None:
            return self.braking and self.speed <= tr.braking.final_speed_kmh / 3.6 + 1e-6
        return tr.accel_mps2 is None or self.speed >= tr.speed_kmh / 3.6 - 1e-6

    @property
    def phase(self) -> float:
        """Gait / pedal cycles so far (fractional part = pose)."""
        return self.travelled / STRIDE_M.get(self.spec.kind, 5.0)

    def rear_x(self) -> float:
        """The smallest x of the actor's footprint."""
        c, s = abs(math.cos(self.heading)), abs(math.sin(self.heading))
        return self.x - 0.5 * (self.spec.length_m * c + self.spec.width_m * s)

    def fired(self, trig: Trigger, t: float, ego_front: float, ego_speed: float) -> bool:
        """Whether ``trig`` holds at time ``t`` for an ego front bumper at ``ego_front``."""
        ahead = self.x - ego_front
        if trig.kind == "time_s":
            return t >= trig.value - 1e-9
        if trig.kind == "ego_distance_m":
            return ahead <= trig.value
        if trig.kind == "ttc_s":
            return ego_speed > 0.0 and ahead / ego_speed <= trig.value
        return self.rear_x() - ego_front <= trig.value  # gap_m

    def _set_off(self, t: float) -> None:
        if self.set_off_t is None:
            self.set_off_t = t

    def step(self, dt: float, t: float, ego_front: float, ego_speed: float) -> None:
        """Advance from ``t`` to ``t + dt``."""
        tr = self.spec.trajectory
        # Braking is the phase after the start: its trigger counts from the step after the start
        # fired.  Why: judged before (or in the same step), braking held the speed before start
        # and the start never took effect: the actor reported started but never moved.
        was_started = self.started
        if not self.started and tr.start is not None and self.fired(tr.start, t, ego_front, ego_speed):
            self.started = True
            self._set_off(t)
        if (was_started and not self.braking and tr.braking is not None
                and self.fired(tr.braking.when, t, ego_front, ego_speed)):
            self.braking = True
            self._set_off(t)
        if not self.turning and tr.turn is not None and self.fired(tr.turn.when, t, ego_front, ego_speed):
            self.turning = True
            self._set_off(t)
        if (self.lane_change_t is None and tr.lane_change is not None
                and self.fired(tr.lane_change.when, t, ego_front, ego_speed)):
            self.lane_change_t = 0.0
            self._set_off(t)

        v0 = self.speed
        if self.stopped:
            target, rate = 0.0, math.inf
        elif self.braking and tr.braking is not None:
            target, rate = min(tr.braking.final_speed_kmh / 3.6, v0), tr.braking.decel_mps2
        elif self.started:
            target, rate = tr.speed_kmh / 3.6, (tr.accel_mps2 if tr.accel_mps2 is not None else math.inf)
        else:
            target, rate = tr.speed_before_start_kmh / 3.6, math.inf
        if v0 == target or rate == math.inf:
            v1 = target
            dist = 0.5 * (v0 + v1) * dt if rate != math.inf else v1 * dt
        else:
            dv = max(-rate * dt, min(rate * dt, target - v0))
            v1 = v0 + dv
            dist = 0.5 * (v0 + v1) * dt
        if tr.stop_after_m is not None and self.travelled + dist >= tr.stop_after_m:
            dist = max(0.0, tr.stop_after_m - self.travelled)
            v1 = 0.0
            self.stopped = True

        if self.turning and tr.turn is not None:
            goal = math.radians(tr.turn.to_heading_deg)
            step = math.radians(tr.turn.rate_dps) * dt
            # the shorter way round (a U-turn, to the right): -90 and 270 are one heading, and read as
            # written the second swung an oncoming car 270 deg through the nearside (review 2026-12-08)
            diff = (goal - self.heading + math.pi) % (2 * math.pi) - math.pi
            if abs(diff) > math.pi - U_TURN_TIE_RAD:
                # neither way shorter: to the right, whatever the rounding of the heading's spelling
                # (-178 -> -358 went left, -178 -> 2 right; review 2026-12-08)
                diff = -math.pi
            self.heading += diff if abs(diff) <= step else math.copysign(step, diff)

        dy_lane = 0.0
        if self.lane_change_t is not None and tr.lane_change is not None:
            lc = tr.lane_change
            s1 = min(1.0, (self.lane_change_t + dt) / lc.duration_s)
            # Minimum-jerk-like smooth profile: offset * (s - sin(2 pi s) / (2 pi)).
            new_offset = lc.offset_m * (s1 - math.sin(2.0 * math.pi * s1) / (2.0 * math.pi))
            dy_lane = new_offset - self.lane_offset
            self.lane_offset = new_offset
            self.lane_change_t += dt

        self.x += dist * math.cos(self.heading)
        self.y += dist * math.sin(self.heading) + dy_lane
        self.travelled += dist
        self.speed = v1
        self.vx = v1 * math.cos(self.heading)
        self.vy = v1 * math.sin(self.heading) + (dy_lane / dt if dt > 0 else 0.0)
