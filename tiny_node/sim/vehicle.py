"""Longitudinal ego dynamics: what a brake request does to speed and position, and when.

The brake acts on the request as it was an actuation delay earlier (pressure build-up, 0.2-0.3 s
in the reference ``../shared/reference/aeb-test-protocols.md``; default 0.2 s): a latency, on
the apply and on the release alike, so a request shorter than the delay still brakes, for as
long as it was held. The deceleration ramps up at a limited jerk towards the maximum (default
9 m/s^2, ~0.9 g on a dry road, same reference), and back to zero once the release has come
through.  Without a request the ego holds its speed.
The step integrates the piecewise-linear acceleration exactly, so the stopping distance
matches the hand formula (delay + jerk ramp + constant deceleration) to millimetres.

This is the one source of the model: the simulator and the real-time demo drive
(``tiny_node/tools/drive.py``) both import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tiny_node.sim.kinds import EGO_LENGTH_M, EGO_WIDTH_M

_EPS = 1e-9


@dataclass
class Ego:
    """The ego (VUT): ``position`` is the x of its front bumper in the road frame."""

    speed: float
    position: float = 0.0
    accel: float = 0.0
    delay_s: float = 0.2
    max_decel: float = 9.0
    jerk: float = 30.0  # m/s^3, for both the brake ramp and its release
    length_m: float = EGO_LENGTH_M
    width_m: float = EGO_WIDTH_M
    requested_since: float | None = None  # time the current brake request began (None: not requested now)
    first_request_t: float | None = None  # time of the first brake request of the run
    stopped_by_brake: bool = False  # came to a standstill while braking
    #: (time, request) at each change of the request, oldest first; pruned to what the delay still needs
    changes: list[tuple[float, bool]] = field(default_factory=list, repr=False)

    @property
    def braking(self) -> bool:
        """A brake request is pending or acting, or its release has not come through yet."""
        return self.requested_since is not None or any(on for _, on in self.changes)

    def active(self, t: float) -> bool:
        """The brake acts at ``t``: the request as it was ``delay_s`` earlier."""
        acting = False
        for when, on in self.changes:
            if when > t - self.delay_s + _EPS:
                break
            acting = on
        return acting

    def step(self, dt: float, t: float, brake: bool) -> None:
        """Advance from ``t`` to ``t + dt`` with the brake request ``brake`` held meanwhile."""
        if brake and self.requested_since is None:
            self.requested_since = t
            if self.first_request_t is None:
                self.first_request_t = t
        elif not brake:
            self.requested_since = None
        if brake != (self.changes[-1][1] if self.changes else False):
            self.changes.append((t, brake))
        through = t - self.delay_s + _EPS  # a change made by then acts now
        while len(self.changes) > 1 and self.changes[1][0] <= through:
            del self.changes[0]  # the change after it has come through: it no longer decides
        if len(self.changes) == 1 and not self.changes[0][1] and self.changes[0][0] <= through:
            self.changes.clear()  # a release come through, nothing after it: as never requested
        if self.speed <= 0.0:
            self.speed = 0.0
            self.accel = 0.0
            return
        target = -self.max_decel if self.active(t) else 0.0
        a0 = self.accel
        a1 = a0 + max(-self.jerk * dt, min(self.jerk * dt, target - a0))
        v1 = self.speed + 0.5 * (a0 + a1) * dt
        if v1 <= 0.0:
            # Stops within the step: cover the remaining distance at the mean deceleration.
            a_mean = 0.5 * (a0 + a1)
            if a_mean < 0.0:
                self.position += self.speed * self.speed / (-2.0 * a_mean)
            self.speed = 0.0
            self.accel = 0.0
            self.stopped_by_brake = self.braking
            return
        self.position += self.speed * dt + a0 * dt * dt / 2.0 + (a1 - a0) * dt * dt / 6.0
        self.speed = v1
        self.accel = a1


def stopping_distance(v0: float, delay_s: float = 0.2, max_decel: float = 9.0, jerk: float = 30.0) -> float:
    """Distance (m) from the brake request to standstill from ``v0`` m/s (closed form).

    Delay at constant speed, then a jerk-limited ramp to ``max_decel`` (if the car is still
    moving when the ramp ends), then constant deceleration.
    """
    d = v0 * delay_s
    t_ramp = max_decel / jerk
    dv_ramp = 0.5 * jerk * t_ramp * t_ramp
    if v0 <= dv_ramp:  # stops during the ramp: v0 = j t^2 / 2
        t = math.sqrt(2.0 * v0 / jerk)
        return d + v0 * t - jerk * t**3 / 6.0
    d += v0 * t_ramp - jerk * t_ramp**3 / 6.0
    v1 = v0 - dv_ramp
    return d + v1 * v1 / (2.0 * max_decel)
