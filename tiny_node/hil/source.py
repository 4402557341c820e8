"""What the harness streams: sensor events from a simulated (or recorded) drive.

The harness only needs a small interface, :class:`Stream`: advance to time ``t`` with the
brake request of the node under test, get back the sensor events that fell due, and read the
ground truth.  So the same harness drives the built-in approach (``tiny_node.tools.drive``),
the scenario simulator (``tiny_node.sim``, when installed), and a recorded bag (open loop).

A scenario *episode* ends when the world says so (ego stopped, collided, duration); the
stream then starts the next one (the next scenario of a suite, or the same one again), so a
harness run of any length keeps the node busy with a closed-loop drive while faults run.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tiny_node.bag.errors import BagError
from tiny_node.sim.vehicle import Ego
from tiny_node.tools.drive import render_frame

if TYPE_CHECKING:
    from tiny_node.bag.topics import BagSource

#: Sensor rates of the node's inputs (camera 30 Hz, range 20 Hz, odometry and IMU 50 Hz).
RATES_HZ: dict[str, float] = {"camera": 30.0, "range": 20.0, "odom": 50.0, "imu": 50.0}
#: Physics step of the simulated ego between sensor events.
PHYSICS_DT_S = 0.002
#: Capture order within one instant: sensors before the frame they feed.
KINDS = ("odom", "imu", "range", "camera")
#: An episode whose ego the node braked below this fraction of its starting speed, and then
#: released for :data:`CRAWL_S`, is over, as an AEB test run would be: without a request the ego
#: holds its speed, so a fail-safe brake released at 0.7 m/s left it crawling to the scenario's
#: end (while the simulated brake released at once; it acts 0.2 s on since 2026-12-07), and the
#: faults that followed met an ego too slow for what they judge (a stuck range is timed only
#: while moving).
CRAWL_FRACTION = 0.25
CRAWL_S = 0.5
#: ... unless it is this close in time to a collision: that the node must still prevent, and the
#: episode's outcome records (at 0.7 m/s the rules' TTC brake stops it short of the object).
CRAWL_TTC_S = 3.0
#: An episode over with the ego stopped and the node still braking (its brake_hold_s after the
#: stop) goes on, the ego standing, until the brake is released or this long has passed: as a
#: test driver waits for the AEB to let go. Why: the next drive began under that brake (7 of 8
#: ccrs_30kmh episodes, each stopped 26 m short), and the node is not restarted between episodes.
RELEASE_WAIT_S = 3.0
STOPPED_MPS = 0.01


@dataclass
class Event:
    """One sensor message to publish: ``t`` is the run time it is due (s)."""

    kind: str  # camera | range | odom | imu
    t: float
    value: float = math.nan  # range (m), speed (m/s) or acceleration (m/s^2)
    image: np.ndarray | None = None
    yaw_rate: float = 0.0  # odom: rad/s, left + (a recorded drive's; the simulator drives straight)
    #: range: the sensor's (min_range, max_range) in m as recorded; None: the simulated sensor's
    #: (the feeder's defaults). Why: the node judges a reading against them (beyond max_range is an
    #: invalid reading, a fail-safe brake once no valid one came for range_timeout_s), so a
    #: recording must reach it with its own radar's limits.
    range_limits: tuple[float, float] | None = None
    #: Not sendable: why (naming the bag and topic, no time, so repeats can be counted as one).
    #: The harness counts these per reason; it publishes nothing for them.
    unsent: str = ""


@dataclass
class Truth:
    """Ground truth of the simulated world at one instant."""

    gap_m: float
    ttc_s: float
    ego_speed_mps: float
    collided: bool = False
    impact_speed_kmh: float = 0.0


@dataclass
class Episode:
    """Outcome of one scenario episode (closed loop with the node's brake decisions)."""

    name: str
    t_start: float
    t_end: float = math.nan
    collided: bool = False
    impact_speed_kmh: float = 0.0
    min_ttc_s: float = math.inf
    min_gap_m: float = math.inf
    first_brake_t: float = math.nan
    final_speed_kmh: float = math.nan
    #: Why it ended before its world did ("" : the world's end, or the run's): a crawl after a brake.
    ended_early: str = ""
    #: The node still asked to brake when it began: the last episode's brake, not released within
    #: RELEASE_WAIT_S of its stop, or that episode ended moving or in a collision (the node is not
    #: restarted between episodes). Its first brake and stop are not a response to this drive.
    began_braked: bool = False
    #: How long it stood after its end, waiting for the node to release its brake (RELEASE_WAIT_S).
    release_wait_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in self.__dict__.items()}


class World(Protocol):
    """One episode of a closed-loop world (the built-in approach, or a sim scenario)."""

    name: str

    def step(self, dt: float, brake: bool) -> None:
        """Advance ``dt`` seconds with the brake request ``brake``."""
        ...

    def measure(self, kind: str) -> float:
        """The range / odom / imu reading now."""
        ...

    def render(self) -> np.ndarray:
        """The camera frame now (HxWx3 RGB uint8)."""
        ...

    def truth(self) -> Truth:
        """Ground truth now."""
        ...

    def done(self) -> bool:
        """The episode is over (stopped, collided or out of time)."""
        ...

    def prewarm(self) -> None:
        """Do the slow first-time work (e.g. build the renderer's backdrop) before streaming."""
        ...


class Stream(Protocol):
    """What the harness streams; see the module docstring."""

    name: str
    closed_loop: bool
    notes: list[str]  # what the stream has to say for the report (the harness takes them)

    def advance(self, t: float, brake: bool) -> list[Event]:
        """Step the world to run time ``t`` (s); the events due on the way, in time order."""
        ...

    def truth(self) -> Truth:
        """Ground truth now (NaN distances for open-loop streams)."""
        ...

    @property
    def episodes(self) -> list[Episode]:
        """Episodes so far (the last one may be running)."""
        ...

    def close_episode(self) -> None:
        """Mark the running episode as ended (end of the run)."""
        ...

    def close(self) -> None:
        """Release what the stream holds (files, threads); the harness calls it on errors too."""
        ...


class BuiltinApproach:
    """The built-in drive: the ego at ``speed_kmh`` towards a stopped car ``gap_m`` ahead.

    Uses :func:`tiny_node.tools.drive.render_frame` and :class:`~tiny_node.sim.vehicle.Ego`
    until the scenario simulator is installed.  The episode ends when the ego has stood
    still for ``stop_hold_s``, collided, or after ``max_s``.
    """

    name = "builtin-approach"

    def __init__(self, *, speed_kmh: float = 50.0, gap_m: float = 60.0, width: int = 640,
                 height: int = 480, seed: int = 0, max_s: float = 12.0, stop_hold_s: float = 0.5) -> None:
        self.ego = Ego(speed=speed_kmh / 3.6)
        self.gap0 = gap_m
        self.size = (width, height)
        self.rng = np.random.default_rng(seed)
        self.max_s = max_s
        self.stop_hold_s = stop_hold_s
        self.t = 0.0
        self._stopped_for = 0.0
        self._collided = False
        self._impact = 0.0

    def _gap(self) -> float:
        return self.gap0 - self.ego.position

    def step(self, dt: float, brake: bool) -> None:
        """Advance the ego; a gap reaching 0 is a collision at the current speed."""
        self.ego.step(dt, self.t, brake)
        self.t += dt
        if self._gap() <= 0.0 and not self._collided:
            self._collided, self._impact = True, self.ego.speed * 3.6
        self._stopped_for = self._stopped_for + dt if self.ego.speed <= 0.01 else 0.0

    def measure(self, kind: str) -> float:
        """Range (REP-117: +Inf beyond 150 m), speed or acceleration."""
        if kind == "range":
            # REP-117 as the feeder's 0.2-150 m sensor: -Inf within min_range, +Inf beyond max_range
            gap = self._gap()
            return -math.inf if gap < 0.2 else gap if gap < 150.0 else math.inf
        if kind == "odom":
            return self.ego.speed
        return self.ego.accel

    def render(self) -> np.ndarray:
        """A pinhole view of the road and the car ahead, with sensor noise."""
        return render_frame(self.size[0], self.size[1], max(self._gap(), 0.0), noise=self.rng)

    def truth(self) -> Truth:
        """Gap, TTC at the current speed, collision."""
        gap = max(self._gap(), 0.0)
        ttc = gap / self.ego.speed if self.ego.speed > 1e-3 else math.inf
        return Truth(gap, ttc, self.ego.speed, self._collided, self._impact)

    def done(self) -> bool:
        """Stopped for a while, collided, or out of time."""
        return self._collided or self._stopped_for >= self.stop_hold_s or self.t >= self.max_s

    def prewarm(self) -> None:
        """Nothing to prepare."""


class SimWorld:
    """A scenario of ``tiny_node.sim`` (World, sensors, camera renderer) as a :class:`World`."""

    def __init__(self, scenario: Any, width: int = 640, height: int = 480) -> None:
        from tiny_node.sim.camera import CameraModel, CameraRenderer
        from tiny_node.sim.sensors import ImuSensor, OdometrySensor, RangeSensor
        from tiny_node.sim.world import World as SimWorldImpl

        self.scenario = scenario
        self.name = str(getattr(scenario, "name", "scenario"))
        self.world = SimWorldImpl(scenario)
        model = getattr(scenario, "camera", None)
        if not isinstance(model, CameraModel):
            model = CameraModel(width=width, height=height)
        self.renderer = CameraRenderer(model)
        self.env = scenario.environment
        seeds = np.random.SeedSequence(int(getattr(scenario, "seed", 0))).spawn(len(KINDS))
        self.rngs = {k: np.random.default_rng(s) for k, s in zip(KINDS, seeds, strict=True)}
        self.sensors: dict[str, Any] = {"range": RangeSensor(), "odom": OdometrySensor(), "imu": ImuSensor()}
        self.t = 0.0
        self.duration_s = float(getattr(scenario, "duration_s", math.inf))

    def step(self, dt: float, brake: bool) -> None:
        """One physics step of the simulator."""
        self.world.step(dt, brake)
        self.t += dt

    def measure(self, kind: str) -> float:
        """The simulated sensor's reading (with its noise and dropouts)."""
        return float(self.sensors[kind].measure(self.world, self.rngs[kind]))

    def render(self) -> np.ndarray:
        """The simulator's camera frame."""
        return np.asarray(self.renderer.render(self.world, self.env, self.rngs["camera"]), np.uint8)

    def truth(self) -> Truth:
        """The simulator's ground truth."""
        tr = self.world.truth()
        collided = bool(tr.collided)
        return Truth(_num(tr.in_path_distance), _num(tr.ttc), float(tr.ego_speed), collided,
                     float(getattr(tr, "impact_speed_kmh", 0.0)) if collided else 0.0)

    def done(self) -> bool:
        """The simulator's end condition, or the scenario's duration."""
        return bool(self.world.done()) or self.truth().collided or self.t >= self.duration_s

    def prewarm(self) -> None:
        """Render once with a throwaway generator (the scenario's own stays untouched).

        The first render builds the backdrop (150-200 ms), which would otherwise stall the
        real-time stream at every episode start.
        """
        self.renderer.render(self.world, self.env, np.random.default_rng(0))


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


@dataclass
class _Due:
    next_t: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 0.0))


class ClosedLoopStream:
    """Episodes of :class:`World` s streamed on the node's sensor schedule, closed loop.

    ``worlds`` is an iterator of fresh episodes (cycled by the caller); the camera starts
    10 ms after the other sensors so the first frame is not judged without them.
    """

    closed_loop = True

    def __init__(self, name: str, worlds: Iterator[World], rates: dict[str, float] | None = None) -> None:
        self.name = name
        self.notes: list[str] = []
        self._worlds = worlds
        self.rates = dict(rates or RATES_HZ)
        self._t = 0.0
        self._world = next(worlds)
        self._world.prewarm()
        # The next episode is built and pre-warmed in a background thread while this one runs.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hil-episode")
        self._next: Future[World] = self._pool.submit(self._prepare)
        self._episodes = [Episode(self._world.name, 0.0)]
        self._due = {k: (0.01 if k == "camera" else 0.0) for k in KINDS}
        self._start_speed = self._world.truth().ego_speed_mps
        self._crawl_s = 0.0  # released after a brake, below CRAWL_FRACTION of the start speed, so long

    def _prepare(self) -> World:
        world = next(self._worlds)
        world.prewarm()
        return world

    @property
    def episodes(self) -> list[Episode]:
        """Episodes so far."""
        return self._episodes

    def truth(self) -> Truth:
        """The running episode's ground truth."""
        return self._world.truth()

    def _crawling(self, ep: Episode, tr: Truth, brake: bool) -> None:
        """Time a crawl after a released brake (:data:`CRAWL_FRACTION`); end the episode after :data:`CRAWL_S`."""
        speed = tr.ego_speed_mps
        crawl = (0.0 < speed < CRAWL_FRACTION * self._start_speed and not brake and not math.isnan(ep.first_brake_t)
                 and not tr.ttc_s <= CRAWL_TTC_S and not tr.collided)
        self._crawl_s = self._crawl_s + PHYSICS_DT_S if crawl else 0.0
        if self._crawl_s >= CRAWL_S - 1e-9 and not ep.ended_early:
            ep.ended_early = (f"crawling at {speed * 3.6:.1f} km/h for {CRAWL_S} s after its brake was released "
                              f"(started at {self._start_speed * 3.6:.1f} km/h)")

    def _track(self, brake: bool) -> None:
        ep, tr = self._episodes[-1], self._world.truth()
        if not math.isnan(ep.t_end):  # ended, waiting for the release: its outcome is made
            return
        ep.min_gap_m = min(ep.min_gap_m, tr.gap_m) if math.isfinite(tr.gap_m) else ep.min_gap_m
        ep.min_ttc_s = min(ep.min_ttc_s, tr.ttc_s) if not math.isnan(tr.ttc_s) else ep.min_ttc_s
        if brake and math.isnan(ep.first_brake_t):
            ep.first_brake_t = self._t - ep.t_start
        if tr.collided and not ep.collided:
            ep.collided, ep.impact_speed_kmh = True, tr.impact_speed_kmh
        self._crawling(ep, tr, brake)

    def _next_episode_due(self, brake: bool) -> bool:
        """The running episode is over, and the node has let go of a stopped ego (:data:`RELEASE_WAIT_S`).

        The episode ends (``t_end``, its outcome) when its world does; the wait is between
        episodes, so a fault that begins during it is not counted against the episode.
        """
        ep = self._episodes[-1]
        if not (self._world.done() or ep.ended_early):
            return False
        tr = self._world.truth()
        if math.isnan(ep.t_end):
            ep.t_end, ep.final_speed_kmh = self._t, tr.ego_speed_mps * 3.6
        if brake and not tr.collided and tr.ego_speed_mps <= STOPPED_MPS and ep.release_wait_s < RELEASE_WAIT_S:
            ep.release_wait_s += PHYSICS_DT_S
            return False
        return True

    def advance(self, t: float, brake: bool) -> list[Event]:
        """Physics in :data:`PHYSICS_DT_S` steps up to ``t``; sensor events as they fall due."""
        out: list[Event] = []
        while self._t < t:
            if self._next_episode_due(brake):
                self._world = self._next.result()  # raises what preparing it raised
                self._next = self._pool.submit(self._prepare)
                self._episodes.append(Episode(self._world.name, self._t, began_braked=brake))
                self._start_speed, self._crawl_s = self._world.truth().ego_speed_mps, 0.0
                # the new world's range and odometry now, before its first frame: that frame met
                # the last world's range (5 m at the stop) with the new world's image and speed
                for kind in KINDS[:-1]:
                    self._due[kind] = min(self._due[kind], self._t)
            for kind in KINDS:
                if self._t + 1e-9 >= self._due[kind]:
                    if kind == "camera":
                        out.append(Event(kind, self._due[kind], image=self._world.render()))
                    else:
                        out.append(Event(kind, self._due[kind], value=self._world.measure(kind)))
                    self._due[kind] += 1.0 / self.rates[kind]
            self._world.step(PHYSICS_DT_S, brake)
            self._track(brake)
            self._t += PHYSICS_DT_S
        return out

    def close_episode(self) -> None:
        """Mark the running episode as ended now (end of the run); stop preparing episodes."""
        ep = self._episodes[-1]
        if math.isnan(ep.t_end):  # else it ended already, and the run ends in the wait after it
            ep.t_end = self._t
            ep.final_speed_kmh = self._world.truth().ego_speed_mps * 3.6
        self.close()

    def close(self) -> None:
        """Stop preparing episodes (again: nothing)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def builtin_stream(width: int = 640, height: int = 480, seed: int = 0) -> ClosedLoopStream:
    """The built-in approach, repeated (a new episode each time the ego stops)."""

    def worlds() -> Iterator[World]:
        n = 0
        while True:
            yield BuiltinApproach(width=width, height=height, seed=seed + n)
            n += 1

    return ClosedLoopStream("builtin-approach", worlds())


def sim_available() -> bool:
    """True when the scenario simulator (``tiny_node.sim.world``) is installed."""
    import importlib.util

    try:
        return importlib.util.find_spec("tiny_node.sim.world") is not None
    except ImportError:
        return False


def scenario_stream(path: Path, width: int = 640, height: int = 480) -> ClosedLoopStream:
    """One scenario file of the simulator, repeated."""
    from tiny_node.sim.scenario import load_scenario

    scenario = load_scenario(path)

    def worlds() -> Iterator[World]:
        while True:
            yield SimWorld(scenario, width, height)

    return ClosedLoopStream(str(getattr(scenario, "name", path.stem)), worlds())


def suite_stream(name: str, width: int = 640, height: int = 480) -> ClosedLoopStream:
    """The scenarios of a simulator suite (``smoke``, ``ncap``, ...), cycled."""
    from tiny_node.sim.suite import suite

    scenarios = list(suite(name))
    if not scenarios:
        raise ValueError(f"suite {name!r} has no scenarios")

    def worlds() -> Iterator[World]:
        while True:
            for sc in scenarios:
                yield SimWorld(sc, width, height)

    return ClosedLoopStream(f"suite:{name}", worlds())


def _bag_events(src: BagSource, roles: dict[str, str], path: Path) -> Generator[Event, None, None]:
    """One pass over an open bag's role topics, as events at their log-time offsets.

    A function, not a method of :class:`BagStream`: the stream holding its own generator would be
    a reference cycle, and a stream dropped unclosed would keep its temporary copy until the
    garbage collector ran, not until its last reference went.
    """
    from tiny_node.bag.msgs import camera_rgb

    role_of = {topic: role for role, topic in roles.items()}
    t_first: int | None = None
    for conn, t_ns, raw in src.messages(set(role_of)):
        kind = role_of[conn.topic]
        t_first = t_ns if t_first is None else t_first
        t = (t_ns - t_first) * 1e-9
        try:
            msg: Any = src.deserialize(raw, conn.msgtype)
            if kind == "camera":
                img = camera_rgb(msg, conn.msgtype)
        except ValueError as exc:  # an undeserializable message, or a FrameError naming the field
            yield Event(kind, t, unsent=f"bag {path}: {conn.topic} not sent: {exc}")
            continue
        if kind == "camera":
            yield Event(kind, t, image=img)
        elif kind == "range":
            yield Event(kind, t, value=float(msg.range), range_limits=(float(msg.min_range), float(msg.max_range)))
        elif kind == "odom":
            twist = msg.twist.twist
            yield Event(kind, t, value=float(twist.linear.x), yaw_rate=float(twist.angular.z))
        else:
            yield Event(kind, t, value=float(msg.linear_acceleration.x))


class BagStream:
    """A recorded rosbag2 (mcap or sqlite3) replayed in real time, open loop, looped.

    Open loop: the node's decisions cannot change a recording, so there is no outcome; the
    harness still measures every frame's decision. The bag is read as ``tiny-node replay``
    reads it (:class:`tiny_node.bag.topics.BagSource`: any distro's definitions, topics found
    by type, two cameras an error naming them, ``topics`` to choose), and checked when the
    stream is made, before the node starts. A recorded message that cannot be read (a frame
    that cannot be decoded) is not sent, as there is nothing to send: it comes out as an event
    with ``unsent`` set, so the harness counts it per reason (once a note, however often the bag
    loops) and fails a run that sent too few of the stream's frames
    (:func:`tiny_node.hil.harness.global_failures`). A range reading keeps its recorded
    ``min_range`` / ``max_range``; the header stamps are the harness's own (its clock, so that a
    looping bag never repeats a stamp), at the recorded log-time offsets.
    """

    closed_loop = False

    def __init__(self, path: Path, topics: dict[str, str] | None = None) -> None:
        from tiny_node.bag.topics import BagSource, detect_topics

        self.path = path
        self.name = f"bag:{path.name}"
        # Opened once, here, and kept open until close(): checked before the node starts (BagError
        # naming the bag), and a bag read from a temporary copy (a sqlite3 write-ahead log applied,
        # a file-compressed bag unpacked) is copied once, not again at every pass inside the
        # real-time loop (0.16 s per pass for a 139 MB database).
        self._src: BagSource | None = BagSource(path)
        try:
            self.roles, found = detect_topics(self._src.topics, topics, bag=str(path))
        except BaseException:
            self._src.close()
            raise
        self.warnings = [*self._src.warnings, *found]  # the reader's (a log applied) reach the report too
        self.notes: list[str] = [f"bag {path}: {w}" for w in self.warnings]
        self._iter: Generator[Event, None, None] = _bag_events(self._src, self.roles, path)
        self._pending: Event | None = None
        self._episodes = [Episode(self.name, 0.0)]
        self._offset = 0.0
        self._sendable = 0  # messages of this pass over the bag that can be sent
        self._why: set[str] = set()  # why the others cannot

    @property
    def episodes(self) -> list[Episode]:
        """One episode per pass over the bag."""
        return self._episodes

    def truth(self) -> Truth:
        """A recording has no ground truth here."""
        return Truth(math.nan, math.nan, math.nan)

    def advance(self, t: float, brake: bool) -> list[Event]:
        """The recorded messages up to ``t`` (the bag restarts when it ends)."""
        if self._src is None:
            raise BagError(f"{self.path}: the stream was closed (advance() after close())")
        out: list[Event] = []
        while True:
            if self._pending is None:
                try:
                    ev = next(self._iter)
                except StopIteration:
                    if not self._sendable:  # a whole pass, and not one message of the bag could be sent
                        raise BagError(f"{self.path}: no readable message on {', '.join(self.roles.values())} "
                                       f"({'; '.join(sorted(self._why)[:3])})") from None
                    assert self._src is not None  # checked above
                    if len(self._episodes) == 1:  # messages a damaged bag holds but cannot give: once
                        self.notes += self._src.unread_warnings()
                    last = out[-1].t if out else t
                    self._offset = max(last, t) + 1.0 / RATES_HZ["camera"]
                    self._episodes[-1].t_end = self._offset
                    self._episodes.append(Episode(self.name, self._offset))
                    self._iter = _bag_events(self._src, self.roles, self.path)  # the same open bag, again
                    self._sendable = 0
                    continue
                if ev.unsent:
                    self._why.add(ev.unsent)
                else:
                    self._sendable += 1
                ev.t += self._offset
                self._pending = ev
            if self._pending.t > t:
                return out
            out.append(self._pending)
            self._pending = None

    def close_episode(self) -> None:
        """End of the run: the bag is closed (see :meth:`close`)."""
        self.close()

    def close(self) -> None:
        """Close the bag (its temporary copy, if any, removed); again, nothing."""
        src, self._src = self._src, None
        self._iter.close()  # a pass left half-way holds the bag's readers
        if src is not None:
            src.close()
