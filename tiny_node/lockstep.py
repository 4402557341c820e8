"""The lockstep driver: the same :class:`Watchdog` in virtual time, as fast as the CPU allows.

The simulator and bag replay feed timestamped inputs; model runs happen inline (the real
onnxruntime session on the real bundle) but their *latency* is a documented, deterministic
budget — the bundle's ``latency_budget_ms`` unless overridden — so the same inputs and seed
give byte-identical decisions whatever the machine's load (and across machines as far as
OpenCV's and onnxruntime's floating-point results agree).  A budget larger than the deadline
makes every frame a fallback, exactly as a slow model does on the vehicle.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tiny_node.clock import ManualClock
from tiny_node.config import NodeConfig
from tiny_node.decision import Decision
from tiny_node.sensors import RangeReading, SensorState
from tiny_node.watchdog import Frame, ModelAnswer, Watchdog

#: (frame, sensor features, frame time in s) -> answer
InferFn = Callable[[np.ndarray, Mapping[str, float], float], ModelAnswer]


@dataclass
class _Job:
    seq: int
    done_at: float
    output: ModelAnswer | None
    error: str | None


def budget_ms_arg(text: str) -> float:
    """``--budget-ms`` (argparse type): a finite latency >= 0 ms, or a one-line usage error.

    Why: a negative budget raised a traceback deep in a run, and a NaN one made every frame a fallback.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of ms >= 0, got {text!r}")
    return value


class LockstepModel:
    """A model port whose runs take exactly ``budget_s`` of virtual time."""

    def __init__(self, infer: InferFn, budget_s: float, clock: ManualClock) -> None:
        if budget_s < 0:
            raise ValueError(f"model latency budget must be >= 0 (got {budget_s})")
        self._infer = infer
        self.budget_s = budget_s
        self._clock = clock
        self._job: _Job | None = None
        self.runs = 0

    @property
    def busy_seq(self) -> int | None:
        """Frame being run, or None."""
        return self._job.seq if self._job is not None else None

    def submit(self, seq: int, image: np.ndarray, features: Mapping[str, float], frame_time_s: float) -> bool:
        """Run the model now; its answer becomes visible ``budget_s`` later.

        ``frame_time_s`` (the frame's stamp) is handed to the model: a two-frame model finds its
        earlier image by it.
        """
        if self._job is not None:
            return False
        self.runs += 1
        try:
            output: ModelAnswer | None = self._infer(image, features, frame_time_s)
            error = None
        except Exception as exc:  # a failing model is a fallback, as in the worker
            output, error = None, f"{type(exc).__name__}: {exc}"
        self._job = _Job(seq, self._clock.now() + self.budget_s, output, error)
        return True

    def cancel(self, seq: int) -> None:
        """Drop the run of ``seq`` (its result will never be delivered)."""
        if self._job is not None and self._job.seq == seq:
            self._job = None

    def next_event(self) -> float | None:
        """When the running job completes."""
        return self._job.done_at if self._job is not None else None

    def take_due(self, now: float) -> _Job | None:
        """The completed job, if its time has come."""
        if self._job is not None and self._job.done_at <= now:
            job, self._job = self._job, None
            return job
        return None


def late_budget_warning(budget_ms: float, whose: str, cfg: NodeConfig) -> str:
    """Why no model answer can come in time in lockstep ("" when one can).

    Why: a budget not under ``deadline_ms - publish_guard_ms`` makes every answer late, so a
    suite or a replay "with the model" decides on the rules alone and looks like a normal run.
    (One equal to it is on time or not by the rounding of the frame's time: not to be relied on.)
    """
    deadline, guard = cfg.float("deadline_ms"), cfg.float("publish_guard_ms")
    if budget_ms < deadline - guard:
        return ""
    return (f"the model's latency budget {budget_ms:g} ms ({whose}) is not under deadline_ms {deadline:g} - "
            f"publish_guard_ms {guard:g}: in lockstep no model answer comes in time")


def model_from_bundle(bundle_dir: Path, clock: ManualClock, budget_ms: float | None = None,
                      threads: int = 1) -> LockstepModel:
    """A :class:`LockstepModel` on a verified bundle (budget from its manifest by default)."""
    from tiny_node.model.bundle import load_bundle
    from tiny_node.model.runtime import load_runtime

    bundle = load_bundle(bundle_dir)
    runtime = load_runtime(bundle, threads=threads)  # classifier or vlm alike

    def infer(image: np.ndarray, features: Mapping[str, float], time_s: float) -> ModelAnswer:
        return runtime.decide(image, features, time_s=time_s)

    budget = bundle.latency_budget_ms if budget_ms is None else budget_ms
    return LockstepModel(infer, budget * 1e-3, clock)


class Lockstep:
    """Feeds a :class:`Watchdog` in virtual time; every call returns the decisions it caused."""

    def __init__(self, cfg: NodeConfig, model: LockstepModel | None = None,
                 clock: ManualClock | None = None) -> None:
        self.clock = clock or ManualClock()
        if model is not None and model._clock is not self.clock:
            raise ValueError("the lockstep model must share the driver's clock")
        self.model = model
        self.sensors = SensorState(cfg.rules)
        self.watchdog = Watchdog(cfg, self.sensors, self.clock, model)

    def advance_to(self, t: float) -> list[Decision]:
        """Run model completions and deadlines up to time ``t``, in time order."""
        out: list[Decision] = []
        wd = self.watchdog
        while True:
            events = [e for e in (wd.next_tick_at(), self.model.next_event() if self.model else None)
                      if e is not None and e <= t]
            if not events:
                break
            self.clock.set(max(self.clock.now(), min(events)))
            job = self.model.take_due(self.clock.now()) if self.model else None
            if job is not None:  # a result at the same instant as a deadline goes first
                out += wd.on_model_result(job.seq, job.output, error=job.error)
            out += wd.on_tick()
            wd.feed_model()
        if t > self.clock.now():
            self.clock.set(t)
        return out

    def range(self, t: float, range_m: float, stamp_ns: int, min_range: float = 0.2,
              max_range: float = 150.0, *, stamp_warning: str | None = None) -> list[Decision]:
        """A range reading received at ``t`` (``stamp_warning``: :func:`~tiny_node.sensors.range_stamp_warning`)."""
        out = self.advance_to(t)
        self.sensors.update_range(RangeReading(range_m, min_range, max_range, stamp_ns, t, stamp_warning))
        return out

    def odom(self, t: float, speed_mps: float, yaw_rate_rps: float = 0.0) -> list[Decision]:
        """Ego speed and yaw rate (rad/s, left +; the simulator's straight road: 0) received at ``t``."""
        out = self.advance_to(t)
        self.sensors.update_odometry(speed_mps, t, yaw_rate_rps)
        return out

    def imu(self, t: float, accel_x: float) -> list[Decision]:
        """Longitudinal acceleration received at ``t``."""
        out = self.advance_to(t)
        self.sensors.update_imu(accel_x, t)
        return out

    def frame(self, t: float, stamp_ns: int, image: np.ndarray | None,
              fault: str | None = None) -> list[Decision]:
        """A camera frame received at ``t``: opens its cycle."""
        out = self.advance_to(t)
        out += self.watchdog.on_frame(Frame(stamp_ns, t, image, fault))
        return out

    def finish(self) -> list[Decision]:
        """Decide every open cycle (advance to the last deadline)."""
        out: list[Decision] = []
        while (wake := self.watchdog.next_wakeup()) is not None:
            out += self.advance_to(wake)
        return out
