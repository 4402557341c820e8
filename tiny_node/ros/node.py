"""The tiny_node ROS 2 lifecycle node: thin glue between DDS and the decision core.

configure: validate parameters, load + verify + warm up the model bundle in its worker
process, create publishers and subscriptions.  activate: start the deadline thread.  The
executor thread only converts messages and hands them in; it never decides.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import os
import re
import signal
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import cv2
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.clock import Clock, ClockType  # type: ignore[attr-defined]  # Humble defines it there
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image, Imu, Range
from std_msgs.msg import Bool, String

from tiny_node.clock import MAX_QUEUED_S, MonotonicClock, WallSteps
from tiny_node.clock_rate import ClockRate
from tiny_node.config import (
    NODE_NAME,
    PARAMS,
    SPECS,
    ConfigError,
    NodeConfig,
    NoSectionError,
    ParamSpec,
    integer_for_double,
    make_config,
    params_file_sections,
    ros_owned,
    section_regex,
)
from tiny_node.dds import configure_dds
from tiny_node.decision import MODEL_ON_TIME_SHARE, Decision, ModelState, diagnostic_prefix
from tiny_node.gaps import GapCounter
from tiny_node.realtime import RealtimeLoop
from tiny_node.ros import convert
from tiny_node.ros.message_info import publication, with_info
from tiny_node.rt import (
    deadline_priority,
    fifo_priority,
    lock_memory,
    make_realtime,
    normal_scheduling,
    small_thread_stacks,
    thread_policy,
)
from tiny_node.sensors import SensorState, range_stamp_warning
from tiny_node.stopping import EarlyStop
from tiny_node.watchdog import Frame, Watchdog, future_stamp_fault

# Frame stamps kept to publish a rationale (which arrives after its decision) with its stamp.
RATIONALE_STAMPS = 256
# How long a rationale may wait for its decision to be published (the deadline is 50 ms).
RATIONALE_WAIT_S = 1.0
# Longest wait of the executor between looks for SIGINT / SIGTERM (see main()).
SIGNAL_POLL_S = 0.1
#: rclpy errors out of callbacks in a row before the node gives up: one is a bad request, a run
#: of them a broken executor.
MAX_FAILED_CALLBACKS = 20
#: After the shutdown transition the node goes on answering its services this long before the
#: process exits: the lifecycle client's answer (and its state query) must leave first.
FINALIZED_GRACE_S = 1.0


#: The model status is judged on the share of the frames it was asked in a period
#: (``decision.MODEL_ON_TIME_SHARE``) from this many
MODEL_MIN_ASKED = 5


def model_status(worker: Mapping[str, object], on_time: int, late: int, errors: int,
                 restarts: int = 0) -> tuple[bytes, str]:
    """Level and message of the model status: the worker's state, then what the model did in the period.

    ``on_time`` / ``late``: decisions of the period the model answered in time / whose run was
    still out at their publish time; ``errors``: the worker's runs of the period that failed;
    ``restarts``: the worker's restarts in the period. Why the period too: judged on the state
    alone (``ready`` / ``busy``: OK), a model that answered every frame late, or failed every
    run, read OK for hours while the rules decided alone (the watchdog status is OK too: the
    fallback is on time); so did one that answered 1 frame in 30 (review), and a worker that
    crashed and was ready again between two reports. Frames the model was not asked (the rules
    brake, a bad frame, the model busy with an older one) say nothing of it, so a period
    without any is judged on the state alone: a rules-only drive, an idle node. The worker's
    own states stay as they were: ``starting`` WARN (the first warm-up), ERROR when ``failed``,
    ``restarting`` or starting again after a restart.
    """
    state = str(worker.get("state"))
    level = {"ready": convert.OK, "busy": convert.OK, "starting": convert.WARN}.get(state, convert.ERROR)
    if state == "starting" and int(str(worker.get("restarts", 0))):
        level = convert.ERROR
    if level != convert.OK:
        return level, state
    if restarts:
        why = worker.get("last_error") or "no error text"
        return convert.ERROR, (f"the worker restarted {restarts} time(s) since the last report, ready again: "
                               f"{why}")
    asked = on_time + late + errors
    if asked < MODEL_MIN_ASKED or on_time >= MODEL_ON_TIME_SHARE * asked:
        return level, state
    if errors and not late and not on_time:
        why = worker.get("last_run_error") or "no error text"
        return convert.WARN, f"every model run since the last report failed ({errors}), the rules decided: {why}"
    return convert.WARN, (f"the model answered {on_time} of the {asked} frames it was asked in time since the last "
                          f"report ({late} late, {errors} failed): the rules decided the rest")


class _ContextPort:
    """The model worker as the watchdog's port, adding the operator context to each job."""

    def __init__(self, worker: Any, context: Callable[[], str]) -> None:
        self.worker = worker
        self._context = context

    @property
    def busy_seq(self) -> int | None:
        """Frame being run by the worker."""
        return self.worker.busy_seq  # type: ignore[no-any-return]

    def submit(self, seq: int, image: Any, features: Any, frame_time_s: float) -> bool:
        """Submit with the current operator context."""
        return bool(self.worker.submit(seq, image, features, context=self._context(), frame_time_s=frame_time_s))

    def cancel(self, seq: int) -> None:
        """Cancel a run."""
        self.worker.cancel(seq)


# rcl's error type from the C extension, as rclpy itself names it in every distro
# (`rclpy.subscription.RCLError` is a re-export that only Kilted's rclpy has).
RCLError = _rclpy.RCLError
DECISION_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """A ROS parameter descriptor (description, range, read-only) from the config table."""
    d = ParameterDescriptor(
        name=spec.name, description=f"{spec.description} Allowed: {spec.allowed}.",
        read_only=spec.read_only,
    )
    if spec.choices:
        d.additional_constraints = spec.allowed
    if isinstance(spec.default, float) and spec.min is not None and spec.max is not None:
        d.floating_point_range = [FloatingPointRange(from_value=spec.min, to_value=spec.max, step=0.0)]
    elif isinstance(spec.default, int) and not isinstance(spec.default, bool) and spec.min is not None:
        assert spec.max is not None
        d.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=1)]
    return d


_Transition = Callable[[Any, State], TransitionCallbackReturn]


def _logged(transition: _Transition) -> _Transition:
    """Log what a transition raised: rclpy turns it into ERROR without a word of it."""
    @functools.wraps(transition)
    def run(node: Any, state: State) -> TransitionCallbackReturn:
        try:
            return transition(node, state)
        except Exception:
            node.get_logger().error(f"{transition.__name__} failed:\n{traceback.format_exc()}")
            raise
    return run


class TinyNode(LifecycleNode):
    """Brake / no-brake for every camera frame, by its deadline."""

    def __init__(self, rt_status: str = "not requested", rt_priority: int = 0, **kwargs: Any) -> None:
        """``rt_priority``: the process's SCHED_FIFO priority from main() (0: none).

        The deadline thread runs above it (tiny_node.rt).
        """
        super().__init__(NODE_NAME, **kwargs)
        # OpenCV's thread pool is created at the first parallel cvtColor (every raw encoding but
        # rgb8), by whichever thread calls it: the executor at SCHED_FIFO 20, so its workers
        # would inherit FIFO 20. A camera frame's conversion is well under a millisecond on
        # one thread; no pool is made at all.
        cv2.setNumThreads(1)
        self.rt_status = rt_status
        self.rt_priority = rt_priority
        self.clock = MonotonicClock()
        self._wall = WallSteps()
        self.loop: RealtimeLoop | None = None
        self.worker: Any | None = None
        self.watchdog: Watchdog | None = None
        self.sensors: SensorState | None = None
        self._core_cfg: NodeConfig | None = None  # the configuration the core was last given
        self._declared = False  # until every parameter is: only single values can be judged
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for spec in PARAMS:
            self.declare_parameter(spec.name, spec.default, descriptor(spec))
        self._declared = True
        self.cfg: NodeConfig = self._read_config()
        self.gaps = GapCounter()
        self._pubs: list[Any] = []
        self._subs: list[Any] = []
        self._timer: Any | None = None
        self._frames = 0
        self.frames_received = 0  # over the process's life: the stop line's count (teardown resets _frames)
        self._frames_inactive = 0  # received while configured but not active: not decided
        self._last_frame_at: float | None = None
        # Status names and hardware_id carry the node's namespace and name (``ego/tiny_node: watchdog``;
        # ``tiny_node: watchdog`` at the root): two nodes on one /diagnostics must not overwrite each other.
        self._diag = diagnostic_prefix(self.get_namespace(), self.get_name())
        self._hw = f"{self._diag}@{os.uname().nodename}"
        self._stamps: OrderedDict[int, int | None] = OrderedDict()  # frame_id -> stamp (None: no rationale), bounded
        self._unmatched: list[tuple[int, str, float]] = []  # rationales taken before their decision
        self._rationale_timer: Any | None = None
        self._errors_seen = self._misses_seen = self._publish_errors_seen = self._refused_seen = 0
        self._bad_seen = self._frames_seen = 0  # camera counts already reported
        self._jumps_seen = 0
        self._on_time_seen = self._late_seen = self._run_errors_seen = self._restarts_seen = 0  # model counts reported
        self._camera_publishers: set[bytes] = set()  # DDS writers of the frames since the last report
        self._clock_rate = ClockRate()  # /clock against the steady clock, under use_sim_time
        self._rate_warned: str | None = None  # what the log last said of sim time: "rate", "no /clock"
        self.finalized_at: float | None = None  # steady time of the shutdown transition: the process ends

    # --- parameters --------------------------------------------------------------------
    def _read_config(self, changed: Mapping[str, object] | None = None) -> NodeConfig:
        """The configuration of the node's parameters, with ``changed`` (a set not applied yet) on top."""
        return make_config({**{n: self.get_parameter(n).value for n in SPECS}, **(changed or {})})

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        """Refuse a change the configuration as a whole refuses; apply it if configured.

        Why judged whole in every state: a change refused only by the next configure (a guard
        at the deadline) would be reported set, and the configure fail.
        """
        try:
            changed = {p.name: p.value for p in params if p.name in SPECS}
            for name, value in changed.items():
                SPECS[name].check(value)
            if self._declared and changed:
                cfg = self._read_config(changed)
                if self.watchdog is not None:
                    self._apply(cfg)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply(self, cfg: NodeConfig) -> None:
        """Make ``cfg`` the node's configuration, and the core's: through the deadline thread while it runs.

        Why not always through it: its queue drains only while it runs, so a change made while
        inactive was reported set, yet the sensors diagnostic judged by the old value until activation.
        """
        self.cfg = cfg
        loop = self.loop
        if loop is not None and loop.alive:  # the thread owns the core (a stop that timed out too)
            loop.run_in_loop(self._sync_core)
        else:
            self._sync_core()

    def _sync_core(self) -> None:
        """Hand the core (watchdog, sensor state, worker test hook) the newest ``self.cfg``, once.

        Run by the deadline thread while it is alive, else by the executor thread: never both at once
        (see :meth:`_apply`). Always the newest and at most once: a call left queued as the thread
        stopped, and run at the next activation, must not put back an older configuration.
        """
        cfg, wd, sensors, worker = self.cfg, self.watchdog, self.sensors, self.worker
        if cfg is self._core_cfg or wd is None or sensors is None:
            return
        wd.reconfigure(cfg)
        sensors.reconfigure(cfg.rules)
        if worker is not None:
            worker.set_test_delay_ms(cfg.float("test_hook_model_delay_ms"))
        self._core_cfg = cfg

    # --- lifecycle ---------------------------------------------------------------------
    @_logged
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Validate, load and warm up the model, create publishers and subscriptions."""
        try:
            self.cfg = cfg = self._read_config()
        except ConfigError as exc:
            self.get_logger().error(f"configure refused: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.sensors = SensorState(cfg.rules)
        self._start_worker(cfg)
        port = None if self.worker is None else _ContextPort(self.worker, lambda: self.cfg.str("operator_context"))
        self.watchdog = Watchdog(cfg, self.sensors, self.clock, port)
        # decisions while the camera is out, before any frame's stamp was accepted: on the ROS clock
        self.watchdog.stamp_clock = lambda: int(self.get_clock().now().nanoseconds)
        self._core_cfg = cfg
        self._pub_brake = self.create_lifecycle_publisher(Bool, "brake", DECISION_QOS)
        self._pub_decision = self.create_lifecycle_publisher(DiagnosticArray, "decision", DECISION_QOS)
        self._pub_rationale = self.create_lifecycle_publisher(String, "rationale", DECISION_QOS)
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._pubs = [self._pub_brake, self._pub_decision, self._pub_rationale, self._pub_diag]
        qos = qos_profile_sensor_data
        if cfg.str("camera_transport") == "compressed":
            cam = self.create_subscription(CompressedImage, CAMERA_TOPICS["compressed"],
                                           with_info(self._on_camera), qos)
        else:
            cam = self.create_subscription(Image, CAMERA_TOPICS["raw"], with_info(self._on_camera), qos)
        self._subs = [
            cam,
            self.create_subscription(Range, "range", with_info(self._on_range), qos),
            self.create_subscription(Odometry, "odom", with_info(self._on_odom), qos),
            self.create_subscription(Imu, "imu", with_info(self._on_imu), qos),
        ]
        self.loop = RealtimeLoop(self.watchdog, self._publish, self.clock, self.worker,
                                 priority=deadline_priority(self.rt_priority), report=self.get_logger().error)
        # counts already reported
        self._errors_seen = self._misses_seen = self._publish_errors_seen = self._refused_seen = 0
        self._bad_seen = self._frames_seen = self._jumps_seen = 0
        self._on_time_seen = self._late_seen = self._run_errors_seen = self._restarts_seen = 0
        self._camera_publishers.clear()
        # Steady, as the deadline thread: on the ROS clock (use_sim_time) no diagnostics came
        # before the first /clock, nor once a replay paused or ended (camera out unreported).
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._timer = self.create_timer(cfg.float("diagnostics_period_s"), self._publish_diagnostics,
                                        clock=steady)
        if self.worker is not None:
            self._rationale_timer = self.create_timer(0.02, self._publish_rationales, clock=steady)
        self.get_logger().info(
            f"configured: camera={cam.topic_name} deadline={cfg.float('deadline_ms')} ms "
            f"model={'rules only' if self.worker is None else self.worker.state.value} "
            f"scheduling={self.rt_status}"
        )
        return TransitionCallbackReturn.SUCCESS

    def _start_worker(self, cfg: NodeConfig) -> None:
        """Start the model worker as ``self.worker`` and wait for it (up to 60 s).

        Why held before the wait: a SIGINT / SIGTERM during the warm-up ends the node from
        here, and only a worker it holds is stopped and its shared memory unlinked.
        """
        from tiny_node.model.bundle import resolve_bundle_dir

        self.worker = None
        bundle = resolve_bundle_dir(cfg.str("model_bundle"))
        if bundle is None:
            return
        from tiny_node.model.worker import ModelWorker, WorkerState  # onnxruntime only when a model is used

        worker = ModelWorker(
            bundle, self.clock,
            threads=cfg.int("model_threads"),
            warmup_runs=cfg.int("model_warmup_runs"),
            hang_timeout_s=cfg.float("model_hang_timeout_ms") * 1e-3,
            backoff_initial_s=cfg.float("model_restart_backoff_s"),
            backoff_max_s=cfg.float("model_restart_backoff_max_s"),
            test_delay_ms=cfg.float("test_hook_model_delay_ms"),
            rationale_max_tokens=cfg.int("rationale_max_tokens"),
            memory_limit_mb=cfg.int("model_memory_limit_mb"),
            max_frame_shape=(cfg.int("max_frame_height"), cfg.int("max_frame_width"), 3),
        )
        self.worker = worker
        # The spawner thread it creates, and the processes that thread starts (the worker, the
        # shared memory's resource tracker), inherit SCHED_OTHER, not the node's SCHED_FIFO.
        with normal_scheduling():
            worker.start()
        with _stoppable():  # up to a minute: a SIGTERM then must not wait it out
            ready = worker.wait_ready(timeout_s=60.0)
        if not ready:
            failed = worker.state is WorkerState.FAILED  # a bad file: no restart can fix it
            self.get_logger().error(
                f"model bundle {bundle}: {worker.last_error or 'not ready in 60 s'}; "
                + ("the model is failed for good (fix the bundle, then cleanup and configure the node "
                   "again, or restart it): deciding with the rule path only" if failed else
                   "deciding with the rule path only until the model is ready")
            )

    @_logged
    def on_activate(self, state: State) -> TransitionCallbackReturn:
        """Start deciding, once the lifecycle publishers are on (a decision must not go nowhere)."""
        assert self.loop is not None
        result = super().on_activate(state)
        self._last_frame_at = None  # the camera diagnostic too: no frame was taken while inactive
        if not self.loop.alive:
            self._sync_core()  # nothing left pending for the new thread to apply after its first frames
        self.loop.start()
        self.get_logger().info("active: deciding every camera frame")
        return result

    @_logged
    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        """Stop deciding; open cycles are answered first."""
        if self.loop is not None:
            self.loop.stop()
            if not self.loop.alive:  # a change queued as it stopped and not drained is applied now
                self._sync_core()
        return super().on_deactivate(state)

    @_logged
    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        """Release everything configure created."""
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    @_logged
    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        """Release everything, whatever state we are in; the process then ends (see ``main``).

        Why end it: finalized is terminal (no transition leaves it), so the process would hold a
        DDS participant and publish nothing for ever, and ``ros2 launch`` would never see it stop.
        """
        self._teardown()
        self.finalized_at = time.monotonic()
        self.get_logger().info(f"finalized (shutdown from {state.label}): the process exits in "
                               f"{FINALIZED_GRACE_S:g} s")
        return TransitionCallbackReturn.SUCCESS

    @_logged
    def on_error(self, state: State) -> TransitionCallbackReturn:
        """A transition raised: release everything, so that unconfigured is what rclpy says.

        Why: rclpy then moves the node to unconfigured and calls nothing else; the worker, the
        deadline thread (deciding on, camera timeouts included) and the publishers would outlive
        that state, and the next configure would start a second set beside them.
        """
        self.get_logger().error(f"a transition from {state.label} raised; releasing everything (unconfigured)")
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self) -> int:
        """Release everything configure created, each part on its own; returns how many failed.

        Why: a release that raised (a loop whose thread never started) skipped the rest, and
        from on_error it left rclpy's node finalized with the worker and publishers leaked.
        Each failure is logged with its traceback and the part dropped: the node holds nothing
        afterwards either way, so unconfigured is the truthful state.
        """
        failed: list[BaseException] = []

        def release(what: str, fn: Callable[[], object]) -> None:
            try:
                fn()
            except Exception as exc:
                self.get_logger().error(f"releasing {what} failed:\n{traceback.format_exc()}")
                failed.append(exc)

        loop, worker, self.loop, self.worker = self.loop, self.worker, None, None
        if loop is not None:
            release("the deadline loop", loop.close)
        if worker is not None:
            release("the model worker", worker.stop)
        for sub in self._subs:
            release(f"subscription {sub.topic_name}", functools.partial(self.destroy_subscription, sub))
        for pub in self._pubs:
            # lifecycle publishers also leave the managed entities, or they pile up per configure
            destroy = self.destroy_publisher if pub is self._pub_diag else self.destroy_lifecycle_publisher
            release(f"publisher {pub.topic_name}", functools.partial(destroy, pub))
        for timer in (self._timer, self._rationale_timer):
            if timer is not None:
                release("a timer", functools.partial(self.destroy_timer, timer))
        self._subs, self._pubs, self._timer, self._rationale_timer = [], [], None, None
        self.watchdog = None
        # the next configuration's frames are numbered from 1 again: an old stamp would date its rationales
        self._stamps.clear()
        self._unmatched = []
        # what the camera diagnostic reports starts again with the next configuration
        self.gaps = GapCounter()
        self._frames, self._frames_inactive, self._last_frame_at = 0, 0, None
        return len(failed)

    # --- inputs (executor thread) --------------------------------------------------------
    def _received_at(self, info: Any) -> float:
        """Monotonic receipt time, back-dated to the DDS receipt when the rmw reports it.

        So time spent queued in the executor counts against the deadline.
        """
        now = self.clock.now()
        if info and info.get("received_timestamp"):
            wall_ns = time.time_ns()
            queued = (wall_ns - int(info["received_timestamp"])) * 1e-9
            if 0.0 < queued < MAX_QUEUED_S and self._wall.steady(wall_ns * 1e-9, now):
                return now - queued
        return now

    def _on_camera(self, msg: Image | CompressedImage, info: Any) -> None:
        received_at = self._received_at(info)
        if self.loop is None or self.watchdog is None:
            return
        if not self.loop.running:  # inactive: no decision is due, and none may come later for it
            self._frames_inactive += 1
            return
        pub = publication(info)
        if pub is not None and pub[0]:  # by publisher: without its gid (Jazzy), losses go uncounted
            gid, seq, _ = pub
            self._camera_publishers.add(gid)
            lost = self.gaps.observe(gid, seq)
            if lost:
                self.loop.run_in_loop(lambda: self.watchdog.count_dropped(lost) if self.watchdog else None)
        self.loop.frame_in_flight(received_at)  # no "camera out" decided while it is being decoded
        try:
            self._decode_and_push(msg, received_at)
        finally:
            self.loop.frame_in_flight(None)

    def _decode_and_push(self, msg: Image | CompressedImage, received_at: float) -> None:
        """Decode a camera message and hand it to the deadline thread, with its fault if unusable."""
        assert self.loop is not None
        cfg = self.cfg
        rgb, fault = convert.image_to_rgb(msg, cfg.int("max_frame_width"), cfg.int("max_frame_height"))
        stamp_ns = convert.stamp_to_ns(msg.header.stamp)
        # The frame's age and the monotonic time it is counted from, read at one instant. Why
        # not from received_at: that is back-dated to the DDS receipt, and the age (now - stamp)
        # already holds the executor queue wait, which was then counted twice.
        ros_now_ns, mono_now = self.get_clock().now().nanoseconds, self.clock.now()
        if fault is None:
            fault = future_stamp_fault(stamp_ns, ros_now_ns, cfg.float("future_stamp_tolerance_s"))
        deadline_at = None
        if cfg.str("deadline_reference") == "stamp":
            age = (ros_now_ns - stamp_ns) * 1e-9
            deadline_at = mono_now - age + cfg.float("deadline_ms") * 1e-3
        if self.loop.push_frame(Frame(stamp_ns, received_at, rgb, fault, deadline_at)):
            self._frames += 1
            self.frames_received += 1
            self._last_frame_at = received_at
        elif not self.loop.running:  # deactivated meanwhile
            self._frames_inactive += 1
        # else refused by a stuck or dead deadline thread: counted by the loop, ERROR in /diagnostics

    def _on_range(self, msg: Range, info: Any) -> None:
        if self.sensors is not None:
            received_at = self._received_at(info)
            warning = range_stamp_warning(convert.stamp_to_ns(msg.header.stamp), self.get_clock().now().nanoseconds,
                                          self.cfg.float("future_stamp_tolerance_s"), self.cfg.rules.range_timeout_s)
            self.sensors.update_range(convert.range_reading(msg, received_at, warning))

    def _on_odom(self, msg: Odometry, info: Any) -> None:
        if self.sensors is not None:
            self.sensors.update_odometry(convert.odom_speed(msg), self._received_at(info), convert.odom_yaw_rate(msg))

    def _on_imu(self, msg: Imu, info: Any) -> None:
        if self.sensors is not None:
            self.sensors.update_imu(convert.imu_accel_x(msg), self._received_at(info))

    # --- outputs -------------------------------------------------------------------------
    def _publish(self, d: Decision) -> None:
        """Called by the deadline thread, once per frame."""
        if self.worker is not None:  # first: its rationale may already be waiting
            # None: the model did not decide this frame in time, so no rationale of it goes out,
            # whenever it comes (one taken with its late result before the watchdog cancelled it)
            self._stamps[d.frame_id] = d.stamp_ns if d.model_state is ModelState.ON_TIME else None
            while len(self._stamps) > RATIONALE_STAMPS:
                self._stamps.popitem(last=False)
        self._pub_brake.publish(Bool(data=d.brake))
        self._pub_decision.publish(convert.decision_msg(d, self._hw))

    def _publish_rationales(self) -> None:
        """Publish rationales, which come after their decisions (off the deadline path).

        Each is published as ``"<sec>.<nanosec> <text>"``: the stamp of the frame it explains.
        """
        if self.worker is None:
            return
        now = self.clock.now()
        # Why keep unmatched ones a while: the deadline thread may read a result and its
        # rationale in one poll, and this timer take the rationale before that thread has
        # published (and recorded) the decision.
        waiting, self._unmatched = self._unmatched, []
        for seq, text, since in waiting + [(s, t, now) for s, t in self.worker.take_rationales()]:
            if seq in self._stamps and self._stamps[seq] is None:
                continue  # its frame was decided without the model: the text explains nothing published
            stamp = self._stamps.get(seq)
            if stamp is None and now - since < RATIONALE_WAIT_S:
                self._unmatched.append((seq, text, since))
            elif stamp is None:
                self.get_logger().warning(f"rationale for unknown frame {seq} dropped: {text!r}")
            else:
                self._pub_rationale.publish(String(data=f"{stamp // 1_000_000_000}.{stamp % 1_000_000_000:09d} {text}"))

    def _judge_sim_time(self, now: float, level: bytes, msg: str, values: dict[str, object]) -> tuple[bytes, str]:
        """Under ``use_sim_time``: WARN (unless worse) when /clock runs at another rate than real time.

        Why: the node's timers run on the steady clock (tiny_node.clock_rate); a simulator at 0.25x
        saw its 10 Hz sensors judged stale and its brakes held a quarter of brake_hold_s, unannounced.
        And with no /clock at all (``use_sim_time`` set by mistake on a vehicle), ROS time stays 0:
        stamps are not judged against it, and the node looked healthy.
        """
        if not self.get_parameter("use_sim_time").value:
            return level, msg
        ros_ns = self.get_clock().now().nanoseconds
        self._clock_rate.observe(ros_ns, now)
        rate, warning = self._clock_rate.rate(), self._clock_rate.warning()
        values["sim_time_rate"] = "unknown" if rate is None else f"{rate:.3f}"
        if ros_ns <= 0:
            values["sim_time_rate"] = "no /clock"
            warning = ("use_sim_time is true and no /clock has come: ROS time is 0, so stamps in the future "
                       "and stale range stamps go unjudged; start the simulator or play the bag with --clock, "
                       "or set use_sim_time false on a vehicle")
        said = None if warning is None else ("no /clock" if ros_ns <= 0 else "rate")
        if said != self._rate_warned:
            before, self._rate_warned = self._rate_warned, said
            if warning is not None:
                self.get_logger().warning(warning)
            elif before == "no /clock":
                self.get_logger().info("/clock has come: ROS time runs")
            else:  # back to real time, or /clock stepped back and the rate is measured afresh
                self.get_logger().info("sim time no longer judged off real time (rate "
                                       f"{values['sim_time_rate']})")
        if warning is not None and level == convert.OK:
            return convert.WARN, warning
        return level, msg

    def _publish_diagnostics(self) -> None:
        wd, sensors = self.watchdog, self.sensors
        if wd is None or sensors is None:
            return
        loop, worker = self.loop, self.worker
        if worker is not None and (loop is None or not loop.alive):
            # the deadline thread supervises the worker while it runs; between activations nobody
            # did: a worker killed while inactive read 'ready' (OK), a zombie, until activation (review)
            worker.tend()
        now = self.clock.now()
        stats = wd.stats
        values = stats.as_values()
        values["scheduling"] = self.rt_status
        # what the threads run at now, read from the kernel (the executor runs this callback)
        values["executor_thread_scheduling"] = thread_policy()
        tid = None if loop is None else loop.native_id
        values["deadline_thread_scheduling"] = "not running" if tid is None else thread_policy(tid)
        values["pid"] = os.getpid()  # the node process itself (a `ros2 run` wrapper is its parent)
        values["deadline_ms"] = self.cfg.float("deadline_ms")
        # Misses since the last report, not since start: one miss made the status ERROR for good,
        # and a lasting ERROR hides the next one. The lifetime count stays a key-value.
        # a decision whose publish blocked past its deadline is a miss too (the watchdog judged it in time)
        missed = stats.deadline_misses + (loop.late_publishes if loop is not None else 0)
        misses, self._misses_seen = missed - self._misses_seen, missed
        values["deadline_misses_last_period"] = misses
        level = convert.ERROR if misses else convert.OK
        msg = f"{misses} deadline miss(es) since the last report" if misses else "all frames decided in time"
        if loop is not None:
            errors, self._errors_seen = loop.step_errors - self._errors_seen, loop.step_errors
            lost = loop.publish_errors - self._publish_errors_seen
            self._publish_errors_seen = loop.publish_errors
            refused, self._refused_seen = loop.frames_refused - self._refused_seen, loop.frames_refused
            stuck = loop.stuck_s()
            values.update({"deadline_thread_errors": loop.step_errors, "frames_refused": loop.frames_refused,
                           "late_publishes": loop.late_publishes,
                           "deadline_thread_last_error": loop.last_error or "none",
                           "publish_errors": loop.publish_errors, "publish_errors_last_period": lost,
                           "last_publish_error": loop.last_publish_error or "none"})
            if loop.running and not loop.alive:  # it ended on an error: nothing is decided any more
                level, msg = convert.ERROR, f"deadline thread dead, no decisions: {loop.died_of or 'unknown'}"
            elif stuck:  # alive, erring nothing, judging no deadline: and no decision goes out
                level, msg = convert.ERROR, (f"deadline thread stuck for {stuck:.2f} s in one step (a blocked "
                                             f"publish?): no decisions meanwhile, {refused} frame(s) refused")
            elif refused:  # each a frame no decision will ever answer
                level, msg = convert.ERROR, (f"{refused} frame(s) refused since the last report (the deadline "
                                             "thread's mailbox full): no decision for them")
            elif lost:  # a decision taken and never sent: for its consumer, a frame without one
                level, msg = convert.ERROR, (f"{lost} decision(s) not published since the last report: "
                                             f"{loop.last_publish_error}")
            elif errors:
                level, msg = convert.ERROR, (f"deadline thread: {errors} error(s) since the last report, "
                                             f"open frames decided by the fallback: {loop.last_error}")
        if level == convert.OK and loop is not None and tid is not None and loop.priority \
                and fifo_priority(tid) != loop.priority:
            level, msg = convert.WARN, f"deadline thread not real-time: {loop.thread_scheduling}"
        level, msg = self._judge_sim_time(now, level, msg, values)
        statuses = [convert.status(f"{self._diag}: watchdog", level, msg, values, self._hw)]

        if self.worker is None:
            statuses.append(convert.status(f"{self._diag}: model", convert.OK, "disabled (rules only)",
                                           {"state": "disabled"}, self._hw))
        else:
            w = self.worker.stats()
            # Judged per period, as the watchdog status is: what the model did since the last report
            on_time, late = stats.by_model_state[ModelState.ON_TIME.value], stats.by_model_state[ModelState.LATE.value]
            run_errors = int(w.get("errors", 0))
            p_on_time, self._on_time_seen = on_time - self._on_time_seen, on_time
            p_late, self._late_seen = late - self._late_seen, late
            p_errors, self._run_errors_seen = run_errors - self._run_errors_seen, run_errors
            restarts = int(w.get("restarts", 0))
            p_restarts, self._restarts_seen = restarts - self._restarts_seen, restarts
            lvl, text = model_status(w, p_on_time, p_late, p_errors, p_restarts)
            w.update({"on_time_last_period": p_on_time, "late_last_period": p_late, "errors_last_period": p_errors,
                      "restarts_last_period": p_restarts})
            statuses.append(convert.status(f"{self._diag}: model", lvl, text, w, self._hw))

        snap = sensors.snapshot(now)
        sv = {"range_age_s": snap.range_age, "odom_age_s": snap.odom_age, "imu_age_s": snap.imu_age,
              "camera_frames": self._frames,
              "camera_age_s": None if self._last_frame_at is None else now - self._last_frame_at,
              "faults": "; ".join(snap.faults) or "none", "warnings": "; ".join(snap.warnings) or "none",
              "range_timed_by": "header.stamp" if snap.range_timed_by_receipt is None else "receipt"}
        sv = {k: ("never" if v is None else (f"{v:.3f}" if isinstance(v, float) else v)) for k, v in sv.items()}
        imu_missing = snap.imu_age is None or snap.imu_age > self.cfg.float("imu_timeout_s")
        # A range driver that does not stamp its scans works (timed by receipt), but its closing speed
        # carries the transport's jitter: a WARN here says so, not on every decision.
        untimed = ([] if snap.range_timed_by_receipt is None else
                   [f"range: {snap.range_timed_by_receipt}: scans timed by their receipt"])
        # an optional IMU that sends no acceleration (NaN, covariance[0] -1) said ok, and imu_required
        # then failed every frame without a word before
        imu_note = ("imu missing (optional)" if imu_missing else
                    "imu: no usable linear acceleration (optional; imu_required would fail every frame)"
                    if snap.accel_x is None else None)
        notes = [*snap.warnings, *untimed, *([imu_note] if imu_note else [])]
        lvl = convert.ERROR if snap.faults else (convert.WARN if notes else convert.OK)
        text = "; ".join(snap.faults) if snap.faults else ("; ".join(notes) or "ok")
        statuses.append(convert.status(f"{self._diag}: sensors", lvl, text, sv, self._hw))

        cam_age = None if self._last_frame_at is None else now - self._last_frame_at
        cam_timeout = self.cfg.float("camera_timeout_s")
        # Frames that come but cannot be used (an encoding or size the model cannot take, a frozen
        # stamp): the camera is not out, yet the model sees nothing. Said per report, as misses are.
        bad, self._bad_seen = stats.bad_frames - self._bad_seen, stats.bad_frames
        taken, self._frames_seen = self._frames - self._frames_seen, self._frames
        taken = max(taken, bad)  # a frame received before the last report and judged after it
        jumps, self._jumps_seen = stats.clock_jumps - self._jumps_seen, stats.clock_jumps
        # read and replaced here, added to by _on_camera: both run on the executor's thread
        publishers, self._camera_publishers = len(self._camera_publishers), set()
        topic = self._subs[0].topic_name if self._subs else "camera"
        if loop is None or not loop.running:  # configured, not active: nothing is decided
            lvl, text = convert.WARN, f"node not active, no decisions: {self._frames_inactive} frame(s) received"
        elif cam_age is None or cam_age > cam_timeout:
            if cam_age is None:
                text = "no camera frame yet (no decisions before the first frame)"
            else:
                action = self.cfg.str("camera_timeout_action")
                text = f"no camera frame for {cam_age:.2f} s" + (
                    " (no frames: no decisions)" if action == "none" else
                    f" (deciding without frames: camera_timeout_action {action})")
            lvl = convert.ERROR
        elif bad and bad >= taken:
            lvl, text = convert.ERROR, (f"every frame since the last report unusable ({bad}), the model not "
                                        f"asked: {stats.last_fault}")
        elif bad:
            lvl, text = convert.WARN, f"{bad} of {taken} frames since the last report unusable: {stats.last_fault}"
        elif publishers > 1:
            # two drivers, or a bag playing beside the camera: frames of both interleave, each decided
            lvl, text = convert.WARN, (f"frames from {publishers} publishers on {topic} since the last report "
                                       "(a second camera driver, or a bag played beside it?)")
        elif jumps:
            # a stamp more than 1 s back is taken as a clock reset (its frame decided, the tracks
            # restarted): once is a reset or a looping bag, again and again a second, older source
            lvl, text = convert.WARN, (f"camera stamps stepped back more than 1 s {jumps} time(s) since the last "
                                       "report, taken as clock resets (a looping bag, or another source with old "
                                       "stamps?)")
        else:
            lvl, text = convert.OK, "ok"
        statuses.append(convert.status(f"{self._diag}: camera", lvl, text, {
            "frames": self._frames, "frames_while_inactive": self._frames_inactive,
            "age_s": "never" if cam_age is None else f"{cam_age:.3f}",
            "bad_frames": stats.bad_frames, "dropped_in_transport": stats.frames_dropped_in_transport,
            "clock_jumps": stats.clock_jumps, "timeout_decisions": stats.camera_timeout_decisions,
            "publishers_last_period": publishers}, self._hw))
        arr = DiagnosticArray(status=statuses)
        arr.header.stamp = self.get_clock().now().to_msg()
        self._pub_diag.publish(arr)


def _ros_section(argv: list[str]) -> list[str]:
    """The ``--ros-args ... [--]`` parts of ``argv`` (possibly several), kept for rclpy."""
    out: list[str] = []
    inside = False
    for a in argv[1:]:
        if a == "--ros-args":
            inside = True
            out.append(a)
        elif a == "--" and inside:
            inside = False
            out.append(a)
        elif inside:
            out.append(a)
    return out


def _rules(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """The values after any of ``flags`` in ``--ros-args`` sections (``-p x:=1`` -> ``x:=1``, params files)."""
    return [value for _, value in _flag_values(argv, flags)]


def _flag_values(argv: list[str], flags: tuple[str, ...]) -> list[tuple[str, str]]:
    """(flag, value) of each of ``flags`` in ``argv``, in order."""
    return [(a, argv[i + 1]) for i, a in enumerate(argv[:-1]) if a in flags]


#: ``[node:][rostopic://|rosservice://]from:=to``: rcl's remap rule (node names hold no ':' or '/').
_REMAP = re.compile(r"^(?:(?P<node>[^:/]+):(?!//))?(?:(?P<scheme>rostopic|rosservice)://)?(?P<src>[^:]*):=(?P<dst>.*)$")


def _remaps(ros_args: list[str]) -> list[tuple[str, str, str, str, str]]:
    """Every ``-r`` rule as (rule, node prefix or "", scheme or "", from, to), in order."""
    out = []
    for rule in _rules(ros_args, ("-r", "--remap")):
        if m := _REMAP.match(rule):
            out.append((rule, m["node"] or "", m["scheme"] or "", m["src"], m["dst"]))
    return out


def _name_and_namespace(ros_args: list[str]) -> tuple[str, str]:
    """The node's name and namespace after the remap rules, as rcl applies them.

    rcl renames the node by the first ``__node`` (or ``__name``) rule for its own name, then takes
    the first ``__ns`` rule for the NEW name: a later rule, or one prefixed with the old name, is
    not applied.
    """
    rules = _remaps(ros_args)
    name = next((dst for _, node, scheme, src, dst in rules
                 if not scheme and src in ("__node", "__name") and node in ("", NODE_NAME)), NODE_NAME)
    ns = next((dst for _, node, scheme, src, dst in rules if not scheme and src == "__ns" and node in ("", name)), "/")
    return name, ns if ns.startswith("/") else "/" + ns


#: The topics the node uses (relative ones under its namespace): what a remap rule can rewrite.
TOPICS = ("camera/image_raw", "camera/image_raw/compressed", "range", "odom", "imu", "brake", "decision",
          "rationale", "/diagnostics", "/clock", "/rosout", "/parameter_events")


#: The camera topic of each ``camera_transport``: the node subscribes one of them.
CAMERA_TOPICS = {"raw": "camera/image_raw", "compressed": "camera/image_raw/compressed"}


def _unmatched_remaps(ros_args: list[str], transport: str = "raw") -> list[tuple[str, str]]:
    """Remap rules for this node that rewrite none of its topics (``camera:=/front/image``).

    ``transport``: the ``camera_transport`` it starts with; a rule for the other camera topic
    rewrites a topic it does not subscribe (``camera/image_raw:=...`` under ``compressed``, the
    image_transport habit, left it on the default topic without a word: review).

    Why: rcl matches a rule's whole name and says nothing of a rule that matches nothing, so a
    partial one (``camera:=...`` for ``camera/image_raw``) left the node listening on the default
    topic, deciding every frame on camera timeouts. Not judged: the ``__`` rules, service rules,
    the node's private names (``~/...`` or written out: its services, lifecycle events) and rules
    for other nodes. A rule prefixed with the node's name applies under its name after a ``__node``
    rule, as in rcl: one prefixed with the name before is warned of too.
    """
    name, namespace = _name_and_namespace(ros_args)
    base = namespace.rstrip("/")

    def full(topic: str) -> str:
        return topic if topic.startswith("/") else f"{base}/{topic}"

    unused = {full(t): t for mode, t in CAMERA_TOPICS.items() if mode != transport}
    ours = {full(t) for t in TOPICS} - set(unused)
    private = f"{base}/{name}/"
    out = []
    for rule, node, scheme, src, _ in _remaps(ros_args):
        renaming = src in ("__node", "__name")  # matched against the name before any rename, as rcl does
        if node not in ("", name, NODE_NAME) or scheme == "rosservice" or renaming:
            continue
        if src.startswith(("__", "~")) and node in ("", name):
            continue
        target = full(src.rstrip("/"))
        if node not in ("", name):
            out.append((rule, f"is for node '{node}', which a __node rule renamed '{name}': rcl applies it to "
                              f"no node (prefix it with '{name}:')"))
        elif target in unused:
            out.append((rule, f"rewrites {unused[target]}, which this node does not subscribe (camera_transport "
                              f"{transport}: it subscribes {CAMERA_TOPICS[transport]}): remap that"))
        elif target not in ours and not target.startswith(private):
            out.append((rule, f"rewrites none of this node's topics ({', '.join(TOPICS[:8])}, ...): rcl remaps "
                              "whole names (camera/image_raw:=/front/image, not camera:=/front)"))
    return out


def _early_parameters(ros_args: list[str], warnings: list[str] | None = None,
                      last: Mapping[str, object] | None = None) -> dict[str, object]:
    """The node's parameters as rcl will give them, before rclpy is up (``realtime_priority``).

    Why: the scheduling class and mlockall must be set before rclpy starts its threads, so
    they are read here; read differently from rcl (the last file only, no ``-p``, any section
    named like the node), the process would run with settings ``ros2 param get`` denies.
    ``warnings``: where the warnings go (printed at once without it). ``last``: the node's own
    ``parameter_overrides`` (``--model-bundle``), which rclpy applies over rcl's.

    rcl keeps one table of sections by name, each in the place its name first came (a params
    file's section, ``-p name:=v`` the section ``/**``, ``-p node:name:=v`` the section
    ``node``); a later value for a name already there changes that entry, where it stands. The
    node takes every section that matches it, in the table's order. Applied in command-line
    order instead (the fix before), `-p use_sim_time:=true --params-file f -p realtime_priority:=0`
    ran without SCHED_FIFO where rcl gave 20 from the file's section after ``/**``; `-p` after every
    file (before that) did the opposite under a launch_ros SetParameter (review 2026-12-08).
    """
    def warn(text: str) -> None:
        if warnings is None:
            print(text, file=sys.stderr)
        else:
            warnings.append(text)

    from tiny_node.strict_yaml import load_ros_params, yaml_problem

    name, namespace = _name_and_namespace(ros_args)
    # rcl's table: section name -> {parameter: (value, where it was given)}, in first-come order
    table: dict[str, dict[str, tuple[object, str]]] = {}
    full = f"{namespace.rstrip('/')}/{name}"
    for flag, rule in _flag_values(ros_args, ("--params-file", "-p", "--param")):
        if flag == "--params-file":
            try:
                for section, names in params_file_sections(rule, name, namespace):
                    table.setdefault(section, {}).update({k: (v, f"params file {rule}") for k, v in names.items()})
            except NoSectionError as exc:  # rcl reads such a file without a word: the node ran on defaults
                warn(f"tiny_node: warning: {exc}: none of its values apply to this node (a plain "
                     f"'{NODE_NAME}:' matches /{NODE_NAME} only; '/**/{NODE_NAME}:' any namespace)")
            continue
        target, sep, text = rule.partition(":=")
        node, _, key = target.rpartition(":")
        if node and not section_regex(node).match(full):
            # rcl applies `-p node:name:=value` to the node /node only (no namespace, no wildcard)
            if sep and key in SPECS:
                warn(f"tiny_node: warning: -p {rule}: rcl applies it to /{node} only, and this node is {full}: "
                     f"not applied (without the '{node}:' prefix it would be)")
            continue
        if not sep:
            continue
        entry = table.setdefault(node or "/**", {})  # its place in rcl's table, whatever the name
        if ros_owned(key):
            continue
        try:  # typed as rcl types it: 1e2 a double, 1_0 a string, '1.0' a string
            value = load_ros_params(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"-p {rule}: {yaml_problem(exc)}") from None
        # an unknown name stays, for make_config to refuse as a typo: rcl ignores an override
        # of a parameter the node does not declare, and the node would run on the default
        entry[key] = (value, f"-p {rule}")
    given = {k: pair for section in table.values() for k, pair in section.items()}
    given.update({k: (v, "--model-bundle") for k, v in (last or {}).items()})
    values = {k: v for k, (v, _) in given.items()}
    # judged on the values in effect, each named with where it was given: a value a later entry
    # replaced was refused (an integer for a double) or blamed (review 2026-12-08)
    sources: dict[str, dict[str, object]] = {}
    for k, (v, where) in given.items():
        if why := integer_for_double(k, v):
            raise ConfigError(f"{where}: {why}" if where.startswith("-p ") else f"{where}: {k}: {why}")
        sources.setdefault(where, {})[k] = v
    try:
        make_config(values)
    except ConfigError as exc:
        raise ConfigError(f"{_culprit(list(sources.items()), str(exc))}{exc}") from None
    return values


def _culprit(sources: list[tuple[str, dict[str, object]]], error: str) -> str:
    """``"<source>: "`` of the one params file (or ``-p``) that alone gives ``error``, else ``""``.

    Why: with several files and overrides the error named the parameter, not where it was set.
    Judged alone, not blamed first: a value may be wrong only beside another source's.
    """
    for label, values in sources:
        try:
            make_config(values)
        except ConfigError as exc:
            if str(exc) == error:
                return f"{label}: "
    return ""


class _StopRequest:
    """Whether SIGINT / SIGTERM asked the process to stop, and whether it may raise where it lands."""

    requested = False
    raising = False


@contextlib.contextmanager
def _stoppable() -> Iterator[None]:
    """A long wait in Python (the model's warm-up) that SIGINT / SIGTERM cut short, spinning or not.

    Why: a configure asked over the lifecycle service runs inside the executor's spin, where a
    signal only sets the flag; the node then waited out the warm-up (up to 60 s) before it
    stopped, past ``ros2 launch``'s SIGKILL. Here the wait is Python code only, so the signal
    raises into it. Nowhere else: raised at any point of the start-up, it had left a 6 MB frame
    slot in /dev/shm (between shm_open and its tracking) and made CPython exit 130 after a clean
    stop (an interrupt through a lazy import's exec); the start-up checks the flag between steps.
    """
    raising, _StopRequest.raising = _StopRequest.raising, True
    try:
        _stop_point()
        yield
    finally:
        _StopRequest.raising = raising


def _stop_point() -> None:
    """Stop here (KeyboardInterrupt) if SIGINT / SIGTERM asked for it: a step of the start-up is done."""
    if _StopRequest.requested:
        raise KeyboardInterrupt


def _stop(signum: int, frame: object) -> None:
    """SIGINT / SIGTERM: stop the node; later ones are ignored, so that the teardown completes.

    Why: Ctrl-C on ``ros2 launch`` reaches the node from the terminal and again from launch; the
    second one cut the teardown short (a traceback, the worker's shared memory left behind).
    The teardown is bounded (joins with timeouts); launch's SIGKILL remains the last resort.
    Only the flag, but in a :func:`_stoppable` wait (the model's warm-up): the spin loop ends at
    it (a KeyboardInterrupt raised inside rclpy's taking of a message became pybind11's
    RuntimeError, exit status 1 with a traceback: 7 of 36 signals under a 60 Hz camera), and the
    start-up stops at its next :func:`_stop_point`.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _StopRequest.requested = True
    if _StopRequest.raising:
        raise KeyboardInterrupt


def _rcl_problem(exc: Exception) -> str:
    """The refusal of rcl in one line: what and where in the arguments, not its C source positions.

    A params file's refusal keeps rcl's reason (``Will not support aliasing at line 5``), and so
    does a ``-p`` value's that says something (``Sequence should be of same type``); otherwise a
    ``-p`` rule's reason (a lexer's token numbers, ``Unknown YAML event``) is replaced by what is
    wrong: an empty value, a value rcl cannot read, or the rule's form.
    """
    text = re.sub(r",? at /[^,]*\.c:\d+", "", str(exc))
    text = " ".join(text.split())
    if "parameter override" in text and "Error: Sequence" not in text:  # its reason is token numbers, or noise
        head = text.split(". Error:")[0]
        rule = head.split("rule: '-p ", 1)[-1].rstrip("'")
        name, sep, value = rule.partition(":=")
        if sep and name.strip() and not value:
            return f"{head} (an empty value: write {name}:='')"
        if sep and name.strip() and "lexeme" not in text:  # the rule's form read: its value is what rcl could not
            return f"{head}: its value is not YAML rcl reads (a string with ':', quotes or brackets: quote it)"
        return (f"{head} (a -p rule is name:=value, or node:name:=value with a plain node name, which rcl applies "
                "to /node only)")
    return text.replace("failed to initialize rcl: ", "")  # the value's reason kept ("Sequence should be ...")


def main(args: list[str] | None = None) -> int:
    """Start the node (``tiny_node`` executable, ``tiny-node run``, ``python -m tiny_node run``)."""
    argv = list(sys.argv if args is None else args)
    try:
        non_ros = rclpy.utilities.remove_ros_args(argv)
    except RCLError as exc:  # rcl cannot parse a rule: its message names it, its source position is noise
        print(f"tiny_node: refusing to start: {_rcl_problem(exc)}", file=sys.stderr)
        return 2
    prog = argv[0] if argv and argv[0] == "tiny-node run" else "tiny_node"  # as the user typed it
    parser = argparse.ArgumentParser(
        prog=prog, description="tiny_node: brake / no-brake decisions under a deadline. "
        "ROS arguments go after --ros-args (e.g. -r __ns:=/ego -p deadline_ms:=40.0).")
    parser.add_argument("--params-file", help="ROS 2 params YAML; its section /**/tiny_node: applies in any "
                        "namespace (a plain tiny_node: only to /tiny_node, as rcl matches it)")
    parser.add_argument("--model-bundle", help="override the model_bundle parameter")
    parser.add_argument("--no-autostart", action="store_true",
                        help="stay unconfigured; drive the lifecycle with `ros2 lifecycle set`")
    opts = parser.parse_args(non_ros[1:])

    # The params file first, so `--ros-args -p name:=value` overrides it (as rcl orders them).
    ros_args = ["--ros-args", "--params-file", opts.params_file] if opts.params_file else []
    ros_args += _ros_section(argv)
    # --model-bundle over everything: the node's own parameter_overrides, which rclpy applies over
    # rcl's. As a `-p` it went into rcl's section /**, which a params file's /**/tiny_node after it
    # in rcl's table overrode (review 2026-12-08). An empty value is rules only, as in a params file.
    own = {"model_bundle": opts.model_bundle} if opts.model_bundle is not None else {}

    # Fail early and clearly on a bad params file; realtime priority must be set before
    # rclpy starts its threads, so read it here, as rcl will (_early_parameters: its table of
    # sections, those matching the node's remapped name), then --model-bundle. Then rcl's own reading of every
    # file and rule (nothing in the process changed yet): what it refuses and ours does not (a
    # node name, ...) is its refusal; where both refuse, ours names it better (a missing file,
    # a YAML error's line and column); our warnings only for arguments rcl takes.
    warnings: list[str] = []
    ours: ConfigError | None = None
    try:
        early = make_config(_early_parameters(ros_args, warnings, own))
    except ConfigError as exc:
        ours = exc
    try:
        rclpy.utilities.remove_ros_args([argv[0], *ros_args])
    except RCLError as exc:
        why = str(ours) if ours is not None else f"refusing to start: {_rcl_problem(exc)}"
        print(f"tiny_node: {why}", file=sys.stderr)
        return 2
    if ours is not None:
        print(f"tiny_node: {ours}", file=sys.stderr)
        return 2
    for text in warnings:
        print(text, file=sys.stderr)
    for rule, why in _unmatched_remaps(ros_args, early.str("camera_transport")):
        print(f"tiny_node: warning: -r {rule} {why}", file=sys.stderr)
    # rclpy's signal handlers shut the context down at once, before the teardown: the deadline
    # thread's decisions for the frames still open failed to publish (a traceback, frames left
    # unanswered), and a SIGTERM during configure waited out the model's warm-up. So SIGINT and
    # SIGTERM go to _stop (a flag, acted on at each _stop_point of the start-up, by the spin loop,
    # and raised only into the warm-up's wait), and the context is shut down after the teardown.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    if EarlyStop.signum is not None:  # while the start command imported this module
        _StopRequest.requested = True
    node: TinyNode | None = None
    try:
        _stop_point()
        configure_dds()
        rt_status = make_realtime(early.int("realtime_priority"))
        rt_priority = fifo_priority()  # what the kernel granted (0: refused or not asked)
        if early.bool("lock_memory"):
            rt_status += f", {small_thread_stacks()}, memory {lock_memory()}"
        _stop_point()
        try:
            rclpy.init(args=[argv[0], *ros_args], signal_handler_options=SignalHandlerOptions.NO)
        except RCLError as exc:  # a params file rcl refuses: read above, so not expected here
            print(f"tiny_node: refusing to start: {_rcl_problem(exc)}", file=sys.stderr)
            rclpy.try_shutdown()
            return 2
        try:
            node = TinyNode(rt_status=rt_status, rt_priority=rt_priority,
                            parameter_overrides=[Parameter(k, value=v) for k, v in own.items()])
        except Exception as exc:  # rclpy raises on invalid parameter overrides
            print(f"tiny_node: refusing to start: {exc}", file=sys.stderr)
            return 2
        _stop_point()
        if opts.no_autostart:
            fqn = node.get_fully_qualified_name()
            node.get_logger().info(f"unconfigured, as asked (--no-autostart): waiting for lifecycle transitions "
                                   f"(tiny-node lifecycle configure activate --node {fqn}, or ros2 lifecycle set "
                                   f"{fqn} configure)")
        else:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("configure failed; not activating")
                return 2
            _stop_point()
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("activate failed; exiting")
                return 2
        # Long-lived start-up objects leave the cyclic GC's view so its pauses (which hold
        # the GIL the deadline thread needs) stay short while deciding.
        gc.collect()
        gc.freeze()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        failed = 0  # callbacks rclpy raised from in a row
        _stop_point()  # a signal in the last steps of the start-up
        while rclpy.ok() and not _StopRequest.requested:  # in slices: a signal handler runs only between them
            try:
                executor.spin_once(timeout_sec=SIGNAL_POLL_S)
                failed = 0
            except RCLError as exc:
                # Humble's and Jazzy's lifecycle service raises out of the executor on a transition
                # asked by id that the current state lacks (a deactivate while inactive), which
                # ended the node: that request goes unanswered, the node goes on deciding.
                failed += 1
                if not rclpy.ok() or failed > MAX_FAILED_CALLBACKS:
                    raise
                node.get_logger().error(f"an rclpy callback failed and its request was dropped, the node goes on: "
                                        f"{exc} (e.g. on Humble and Jazzy: a lifecycle transition asked by id that "
                                        "the current state lacks)")
            if node.finalized_at is not None and time.monotonic() - node.finalized_at >= FINALIZED_GRACE_S:
                break
    except (KeyboardInterrupt, ExternalShutdownException):
        if node is None:
            print("tiny_node: stopped during start-up", file=sys.stderr)
    except RCLError:
        # the context was shut down from elsewhere between two waits of the executor: rclpy
        # then reports an invalid context instead of ExternalShutdownException.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node._teardown()
            node.get_logger().info(f"stopped ({node.frames_received} camera frames received)")
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
        # rclpy's context is among the frozen start-up objects, and Python never collects the
        # frozen generation: its DDS participant would not be destroyed, and Fast DDS would
        # leave the participant's 16 MiB shared-memory segment in /dev/shm at every exit.
        gc.unfreeze()
        gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
