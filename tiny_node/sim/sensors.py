"""Simulated range (forward radar), odometry and IMU readings from the world's ground truth.

The range sensor is what the rule path sees, so its weaknesses are modelled on purpose:

- a narrow beam along the ego's corridor: an object counts when part of it is inside both the
  azimuth field of view and the corridor (in-path target selection of a forward radar), and
  inside the vertical field of view (a gantry 5 m up is not a target; markings are flat);
- occlusion: the nearest object whose returns cover a farther one hides it (nearest return);
- pedestrians and cyclists are detected with a lower probability per scan and only at shorter
  range than cars, as radar cross-section goes (range scales with RCS^1/4: car ~10 m^2,
  cyclist ~2, adult ~0.5, child ~0.2 m^2 are typical 77 GHz figures, assumed here);
- Gaussian range noise; optional dropouts reported as NaN (off by default: the node takes a
  NaN range as a missed scan, and fails safe, i.e. brakes, once no valid one came for its
  ``range_timeout_s``).

REP-117 output: +inf when nothing is within range, -inf when something is closer than
``min_range_m``.  All randomness comes from the Generator passed to ``measure``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tiny_node.sim.world import ActorState, World


@dataclass(frozen=True)
class Detectability:
    """Per-scan detection probability and the fraction of the sensor's max range it reaches."""

    p_detect: float
    range_factor: float


# range_factor = (RCS / RCS_car)^(1/4) with the RCS figures in the module docstring.
DEFAULT_DETECTABILITY: dict[str, Detectability] = {
    "car": Detectability(0.99, 1.0),
    "parked_car": Detectability(0.99, 1.0),
    "static": Detectability(0.95, 0.75),
    "gantry": Detectability(0.99, 1.0),
    "cyclist": Detectability(0.80, 0.67),
    "adult": Detectability(0.70, 0.47),
    "child": Detectability(0.55, 0.38),
}


class RangeSensor:
    """A forward radar reduced to one number: the distance to the nearest in-path return."""

    def __init__(
        self,
        *,
        max_range_m: float = 80.0,
        min_range_m: float = 0.3,
        fov_deg: float = 9.0,
        vfov_deg: float = 6.0,
        mount_height_m: float = 0.5,
        corridor_half_width_m: float = 1.2,
        noise_m: float = 0.05,
        noise_frac: float = 0.005,
        dropout_prob: float = 0.0,
        detectability: Mapping[str, Detectability] | None = None,
    ) -> None:
        self.max_range_m = max_range_m
        self.min_range_m = min_range_m
        self.fov_deg = fov_deg
        self.vfov_deg = vfov_deg
        self.mount_height_m = mount_height_m
        self.corridor_half_width_m = corridor_half_width_m
        self.noise_m = noise_m
        self.noise_frac = noise_frac
        self.dropout_prob = dropout_prob
        self.detectability = dict(DEFAULT_DETECTABILITY if detectability is None else detectability)
        self._tan_h = math.tan(math.radians(fov_deg) / 2.0)
        self._tan_v = math.tan(math.radians(vfov_deg) / 2.0)

    def _beam_interval(self, a: ActorState, front: float) -> tuple[float, float, float] | None:
        """(distance, lateral lo, lateral hi) of the part of ``a`` the beam sees, or None."""
        x0, _x1, y0, y1 = a.extent()
        d = x0 - front
        if d < -0.5 or a.height <= 0.05:
            return None
        dd = max(d, 0.05)
        half = min(self.corridor_half_width_m, dd * self._tan_h)
        lo, hi = max(y0, -half), min(y1, half)
        if lo >= hi:
            return None
        beam_lo = self.mount_height_m - dd * self._tan_v
        beam_hi = self.mount_height_m + dd * self._tan_v
        if a.z >= beam_hi or a.z + a.height <= beam_lo:
            return None
        return d, lo / dd, hi / dd  # lateral interval as tan(azimuth)

    def candidates(self, world: World) -> list[tuple[float, ActorState]]:
        """In-beam, unoccluded actors as (distance, actor), nearest first (no randomness)."""
        front = world.ego.position
        seen: list[tuple[float, float, float, ActorState]] = []
        for a in world.actors():
            iv = self._beam_interval(a, front)
            if iv is not None:
                seen.append((iv[0], iv[1], iv[2], a))
        seen.sort(key=lambda s: s[0])
        out: list[tuple[float, ActorState]] = []
        covered: list[tuple[float, float]] = []
        for d, lo, hi, a in seen:
            if any(c_lo <= lo and hi <= c_hi for c_lo, c_hi in covered):
                continue  # fully behind something nearer
            covered.append((lo, hi))
            out.append((d, a))
        return out

    def measure(self, world: World, rng: np.random.Generator) -> float:
        """One scan: metres to the nearest detected return, +inf clear, -inf too close, NaN dropout."""
        if rng.random() < self.dropout_prob:
            return math.nan
        for d, a in self.candidates(world):
            det = self.detectability.get(a.kind, Detectability(0.9, 0.8))
            if d > self.max_range_m * det.range_factor:
                continue
            if rng.random() >= det.p_detect:
                continue  # missed this scan: the beam goes on to what is behind
            if d < self.min_range_m:
                return -math.inf
            r = d + float(rng.normal(0.0, self.noise_m + self.noise_frac * d))
            return min(max(r, self.min_range_m), self.max_range_m)
        return math.inf


class OdometrySensor:
    """Wheel-speed odometry: ego speed plus Gaussian noise; exactly 0 at standstill."""

    def __init__(self, *, noise_mps: float = 0.02) -> None:
        self.noise_mps = noise_mps

    def measure(self, world: World, rng: np.random.Generator) -> float:
        """Forward speed (m/s)."""
        v = world.ego.speed
        n = float(rng.normal(0.0, self.noise_mps))
        return 0.0 if v <= 0.0 else max(0.0, v + n)


class ImuSensor:
    """Longitudinal acceleration plus Gaussian noise and a constant bias."""

    def __init__(self, *, noise_mps2: float = 0.05, bias_mps2: float = 0.0) -> None:
        self.noise_mps2 = noise_mps2
        self.bias_mps2 = bias_mps2

    def measure(self, world: World, rng: np.random.Generator) -> float:
        """Acceleration along x (m/s^2, negative when braking)."""
        return world.ego.accel + self.bias_mps2 + float(rng.normal(0.0, self.noise_mps2))


@dataclass(frozen=True)
class SensorStreams:
    """Independent random streams per sensor.

    Changing one sensor's rate or model then does not shift another sensor's noise.
    """

    camera: np.random.Generator
    range: np.random.Generator
    odom: np.random.Generator
    imu: np.random.Generator


def sensor_streams(seed: int) -> SensorStreams:
    """The four Generators of a run, spawned from the scenario seed."""
    cam, rng_, odom, imu = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    return SensorStreams(cam, rng_, odom, imu)
