"""Scenario schema: what a test drive is, read from YAML with errors that name the field.

A scenario is the ego's speed, the actors with their trajectories, the environment (light,
weather), the seed, the duration and what counts as success.  The file format is documented
with examples in ``docs/scenarios.md``; ``scenario_from_dict`` and ``scenario_to_dict`` are
inverse, so the built-in suite can be written out as YAML and read back unchanged.  Files are
read with safe loading only, and a key given twice is an error.  A bad value raises
:class:`ScenarioError` naming the file and the field path,
e.g. ``ccrs.yaml: actors[0].speed_kmh: must be >= 0 (got -5)``.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from tiny_node.sim.kinds import CAR_KINDS, EGO_LENGTH_M, EGO_WIDTH_M, KINDS
from tiny_node.strict_yaml import MAX_SETTINGS_BYTES, read_yaml_text, safe_load_unique, yaml_problem

#: ``protocol``: the Euro NCAP tests the suite and the scoring know (docs/scenarios.md); the
#: family (before "-") selects the colour bands and, for CCR*, the end rule
PROTOCOLS = ("CCRs", "CCRm", "CCRb", "CPNA-25", "CPNA-75", "CPFA-50", "CPNCO-50", "CPLA-25", "CPLA-50",
             "CBNA-50", "CBFA-50", "CBLA-50")


def protocol_family(protocol: str) -> str:
    """The family of a protocol, its name before "-" (``CPNA-25`` -> ``CPNA``; ``CCRs`` as is)."""
    return protocol.split("-", 1)[0]


PROTOCOL_FAMILIES = frozenset(protocol_family(p) for p in PROTOCOLS)

LIGHTS = ("day", "night")
WEATHERS = ("clear", "rain", "fog")
EXPECTS = ("avoid", "no_brake")
TRIGGER_KEYS = ("time_s", "ego_distance_m", "ttc_s", "gap_m")
#: the name is the stem of each run's files (``<name>__<mode>.json.tmp``): a file name holds 255 bytes
MAX_NAME_BYTES = 200

# Bounds of the numeric fields (docs/scenarios.md, Limits).  Why: a finite value far outside what
# a road, a vehicle or a person can be passed validation and crashed the run later, in the camera
# renderer's OpenCV calls (pixel coordinates past int32), with an error naming neither file nor
# field; a value past these is a unit or typing slip, refused here with the field and the value.
# Together they keep every actor within ~55 km sideways of the road, which renders even 0.3 m
# in front of the camera (test_the_extreme_positions_the_bounds_allow_still_render).
#: the longest drive (``duration_s``); time and TTC triggers beyond it can never fire
MAX_DURATION_S = 600.0
#: ``x_m``: along the road, ahead of or behind the ego's start; a test's actors are within sight
#: of the ego (the camera draws to 150 m, the radar reads to 80 m), this leaves room for long drives
MAX_X_M = 10_000.0
#: ``y_m``: across the road (it spans -6.25 to +8.25 m with its sidewalks)
MAX_Y_M = 1_000.0
#: ``lane_change.offset_m``: the whole road and both sidewalks are 14.5 m across
MAX_OFFSET_M = 20.0
#: ``lane_change.duration_s`` at least: a lateral move quicker than this is a jump, not a manoeuvre
MIN_LANE_CHANGE_S = 0.1
#: ``accel_mps2``, ``braking.decel_mps2``: 1.5 g, the ego's own ``max_decel_mps2`` cap; tyres on a
#: dry road give ~1 g, a sprinting person ~0.5 g
MAX_ACCEL_MPS2 = 15.0
#: ``turn.rate_dps``: a full turn a second (a pedestrian turning on the spot; a car manages ~60)
MAX_RATE_DPS = 360.0
#: ``speed_kmh``, ``initial_speed_kmh`` of an actor; ``ego_speed_kmh``
MAX_ACTOR_SPEED_KMH = 300.0
MAX_EGO_SPEED_KMH = 250.0
#: ``length_m``, ``width_m`` (a gantry spans 16 m), ``height_m``, ``z_m`` (a gantry's clearance is 5.2 m)
MAX_SIZE_M = 100.0
MAX_HEIGHT_M = 30.0
#: each trigger's value: (lowest, highest); distances are bounded like positions
TRIGGER_BOUNDS: Mapping[str, tuple[float, float]] = {
    "time_s": (0.0, MAX_DURATION_S), "ego_distance_m": (0.0, MAX_X_M), "ttc_s": (0.0, MAX_DURATION_S),
    "gap_m": (0.0, MAX_X_M)}

# The fields of each mapping, so that a misspelled key is named even when a required field fails first.
TOP_FIELDS = ("name", "description", "protocol", "impact_pct", "ego_speed_kmh", "expect", "seed", "duration_s",
              "environment", "camera_hz", "range_hz", "odom_hz", "imu_hz", "brake_delay_s", "max_decel_mps2",
              "actors")
ENVIRONMENT_FIELDS = ("light", "weather", "glare", "street_lights")
ACTOR_FIELDS = ("kind", "name", "length_m", "width_m", "height_m", "z_m", "colour", "lights_on", "x_m", "y_m",
                "heading_deg", "speed_kmh", "initial_speed_kmh", "start", "accel_mps2", "braking",
                "stop_after_m", "turn", "lane_change")
BRAKING_FIELDS = (*TRIGGER_KEYS, "decel_mps2", "final_speed_kmh")
TURN_FIELDS = (*TRIGGER_KEYS, "to_heading_deg", "rate_dps")
LANE_CHANGE_FIELDS = (*TRIGGER_KEYS, "offset_m", "duration_s")
#: a number YAML 1.1 leaves as text (``1e3``, ``5e-1``): named in the error, not just refused
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ScenarioError(ValueError):
    """A scenario file or mapping is invalid; the message names the file and the field path."""


def _show(v: Any) -> str:
    """A value for an error message: its repr, shortened when long.

    Why: ``x_m: 1000...0`` (300 digits) made a 300-character message, and past 4300 digits
    ``repr`` of an int raises ``ValueError`` itself.
    """
    try:
        r = repr(v)
    except ValueError:  # an integer past sys.get_int_max_str_digits()
        return "a number too long to show"
    return r if len(r) <= 60 else f"{r[:40]}... ({len(r)} characters)"


@dataclass(frozen=True)
class Trigger:
    """When something starts, as exactly one condition.

    ``time_s``: simulation time reached; ``ego_distance_m``: the ego's front bumper is within
    this longitudinal distance of the actor's centre (how test labs trigger a dummy: by the
    VUT's position); ``ttc_s``: that distance over the ego's speed; ``gap_m``: bumper-to-bumper
    distance from the ego's front to the actor's rear (car following).
    """

    kind: str  # one of TRIGGER_KEYS
    value: float


@dataclass(frozen=True)
class Braking:
    """The actor brakes at ``decel_mps2`` down to ``final_speed_kmh`` once ``when`` fires."""

    when: Trigger
    decel_mps2: float
    final_speed_kmh: float = 0.0


@dataclass(frozen=True)
class Turn:
    """The heading turns towards ``to_heading_deg`` at ``rate_dps`` once ``when`` fires."""

    when: Trigger
    to_heading_deg: float
    rate_dps: float = 30.0


@dataclass(frozen=True)
class LaneChange:
    """A smooth lateral move by ``offset_m`` (+ left) over ``duration_s`` once ``when`` fires."""

    when: Trigger
    offset_m: float
    duration_s: float = 3.0


@dataclass(frozen=True)
class Trajectory:
    """How an actor moves, from its start position (its centre, road frame).

    Before ``start`` fires the actor moves at ``initial_speed_kmh`` (default: 0 with a start
    trigger, else ``speed_kmh``); after it, it accelerates at ``accel_mps2`` (instantly when
    None) to ``speed_kmh``.  ``heading_deg`` is the direction of motion: 0 along the road,
    90 crossing to the left, -90 crossing to the right, 180 oncoming.  ``stop_after_m`` stops
    the actor after that distance travelled (a pedestrian stopping at the kerb).
    """

    x_m: float
    y_m: float
    heading_deg: float = 0.0
    speed_kmh: float = 0.0
    initial_speed_kmh: float | None = None
    start: Trigger | None = None
    accel_mps2: float | None = None
    braking: Braking | None = None
    stop_after_m: float | None = None
    turn: Turn | None = None
    lane_change: LaneChange | None = None

    @property
    def speed_before_start_kmh(self) -> float:
        """The speed until the start trigger fires."""
        if self.initial_speed_kmh is not None:
            return self.initial_speed_kmh
        return 0.0 if self.start is not None else self.speed_kmh


@dataclass(frozen=True)
class ActorSpec:
    """One actor; dimensions left at NaN take the kind's defaults (Euro NCAP targets)."""

    kind: str
    trajectory: Trajectory
    name: str = ""
    length_m: float = math.nan
    width_m: float = math.nan
    height_m: float = math.nan
    z_m: float = math.nan
    colour: tuple[int, int, int] | None = None
    lights_on: bool | None = None  # cars: head/tail lights; default on at night for a `car`, standing or not

    def __post_init__(self) -> None:
        info = KINDS.get(self.kind)
        if info is None:
            raise ScenarioError(f"kind: must be one of {', '.join(KINDS)} (got {self.kind!r})")
        for name, default in (("length_m", info.length_m), ("width_m", info.width_m),
                              ("height_m", info.height_m), ("z_m", info.z_m)):
            if math.isnan(getattr(self, name)):
                object.__setattr__(self, name, default)


@dataclass(frozen=True)
class Environment:
    """Light and weather; ``glare`` is a low sun ahead (day) or oncoming glare (night)."""

    light: str = "day"
    weather: str = "clear"
    glare: bool = False
    street_lights: bool = False


@dataclass(frozen=True)
class Scenario:
    """One test drive and what counts as success.

    ``expect``: ``avoid`` (a collision is a failure; the impact speed is scored) or
    ``no_brake`` (benign: any brake is a false activation).
    """

    name: str
    ego_speed_kmh: float
    actors: tuple[ActorSpec, ...]
    environment: Environment = field(default_factory=Environment)
    seed: int = 0
    duration_s: float = 10.0
    expect: str = "avoid"
    protocol: str | None = None  # e.g. "CCRs", "CPNA-25"; None for benign / custom drives
    impact_pct: float | None = None  # CCR overlap or VRU impact location, % of VUT width
    description: str = ""
    camera_hz: float = 30.0
    range_hz: float = 20.0
    odom_hz: float = 50.0
    imu_hz: float = 50.0
    brake_delay_s: float = 0.2  # actuation delay (pressure build-up 0.2-0.3 s, reference)
    max_decel_mps2: float = 9.0  # dry road, ~0.9 g (reference: dry road a = 0.85-0.9 g)


# ---------------------------------------------------------------------------------------------
# Reading


class _Fields:
    """A mapping being read: typed getters that know their path, and unknown-key checks."""

    def __init__(self, d: Any, path: str, source: str, known: Iterable[str]) -> None:
        self.source = source
        self.path = path
        if not isinstance(d, Mapping):
            self.fail(path, f"must be a mapping (got {type(d).__name__})")
        self.d: Mapping[str, Any] = d
        self.known = tuple(known)  # the fields of this mapping; any other key is an error

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, path: str, msg: str) -> None:
        raise ScenarioError(f"{self.source}: {path or '<top>'}: {msg}")

    def missing(self, key: str) -> None:
        """Refuse a missing required field, naming a present key that looks like a typo of it.

        Only an unknown key can be the typo: a valid one (``y_m`` for a missing ``x_m``) is not.
        One with the same stem before its unit (``x`` or ``x_metres`` for ``x_m``) is one, though
        too short for difflib to find.
        """
        unknown = [str(k) for k in self.d if k not in self.known]
        near = (difflib.get_close_matches(key, unknown, n=1)
                or [k for k in unknown if k.partition("_")[0] == key.partition("_")[0]][:1])
        self.fail(self.key_path(key), "required" + (f" (found {near[0]}: a typo?)" if near else ""))

    def has(self, key: str) -> bool:
        return key in self.d and self.d[key] is not None

    def raw(self, key: str) -> Any:
        assert key in self.known, f"{key} is read but not among the fields of {self.path or '<top>'}"
        return self.d.get(key)

    def num(self, key: str, default: float | None = None, *, lo: float | None = None,
            hi: float | None = None, lo_open: bool = False) -> float:
        v = self.raw(key)
        p = self.key_path(key)
        if v is None:
            if default is None:
                self.missing(key)
            assert default is not None
            return default
        if isinstance(v, bool) or not isinstance(v, int | float):
            hint = ""
            if isinstance(v, str) and _FLOAT_TEXT.fullmatch(v.strip()):
                # YAML 1.1 (PyYAML) reads 1e3 as text: its floats need a dot and a signed exponent
                hint = ("; YAML reads that as text: write it in full or with a dot and a signed exponent "
                        "(1e3: 1000 or 1.0e+3)")
            self.fail(p, f"must be a number (got {_show(v)}){hint}")
        try:
            x = float(v)
        except OverflowError:  # an integer past 1.8e308: past every bound, and said so below
            x = math.inf if v > 0 else -math.inf
        if isinstance(v, float) and not math.isfinite(x):
            self.fail(p, f"must be finite (got {_show(v)})")
        if lo is not None and (x <= lo if lo_open else x < lo):
            self.fail(p, f"must be {'>' if lo_open else '>='} {lo:g} (got {_show(v)})")
        if hi is not None and x > hi:
            self.fail(p, f"must be <= {hi:g} (got {_show(v)})")
        if not math.isfinite(x):
            self.fail(p, f"must be finite (got {_show(v)})")
        return x

    def opt_num(self, key: str, *, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False) -> float | None:
        if self.raw(key) is None:
            return None
        return self.num(key, lo=lo, hi=hi, lo_open=lo_open)

    def integer(self, key: str, default: int) -> int:
        v = self.raw(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(self.key_path(key), f"must be an integer (got {_show(v)})")
        if v < 0:
            self.fail(self.key_path(key), f"must be >= 0 (got {_show(v)})")
        return int(v)

    def string(self, key: str, default: str | None = None, choices: tuple[str, ...] = ()) -> str:
        v = self.raw(key)
        p = self.key_path(key)
        if v is None:
            if default is None:
                self.missing(key)
            assert default is not None
            return default
        if not isinstance(v, str):
            self.fail(p, f"must be a string (got {_show(v)})")
        if choices and v not in choices:
            self.fail(p, f"must be one of {', '.join(choices)} (got {_show(v)})")
        return str(v)

    def name(self, key: str, default: str | None = None) -> str:
        """A name (the scenario's, an actor's): a string without control characters.

        Why: a name is a row of report.md's table, of the console table and of one-line error
        messages; a newline, tab or other control character split the row or the line.  A ``|``
        is allowed: it breaks no line, and report.md escapes it.
        """
        v = self.string(key, default)
        bad = next((c for c in v if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
        if bad is not None:
            self.fail(self.key_path(key), f"must not hold control characters or line breaks (found {bad!r} "
                      f"in {_show(v)})")
        return v

    def boolean(self, key: str, default: bool) -> bool:
        v = self.raw(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            self.fail(self.key_path(key), f"must be true or false (got {_show(v)})")
        return bool(v)

    def sub(self, key: str, known: Iterable[str]) -> _Fields | None:
        v = self.raw(key)
        return None if v is None else _Fields(v, self.key_path(key), self.source, known)

    def refuse_unknown(self) -> None:
        """Refuse keys that are not fields of this mapping: a typo must not silently fall back to a default."""
        for key in self.d:
            if key not in self.known:
                near = difflib.get_close_matches(str(key), self.known, n=1)
                hint = f" (did you mean {near[0]}?)" if near else ""
                self.fail(self.key_path(str(key)), f"unknown field{hint}")


def _trigger(f: _Fields) -> Trigger:
    """The one trigger key of ``f`` (``start``, or beside ``braking``'s other fields), bounded by its kind."""
    present = [k for k in TRIGGER_KEYS if f.has(k)]
    if len(present) > 1:
        f.fail(f.path, f"give one trigger of {', '.join(TRIGGER_KEYS)} (got {', '.join(present)})")
    if not present:
        # a misspelled trigger key (ttc for ttc_s) is the likely cause: name it, not just the absence
        f.refuse_unknown()
        f.fail(f.path, f"needs a trigger: one of {', '.join(TRIGGER_KEYS)}")
    k = present[0]
    lo, hi = TRIGGER_BOUNDS[k]
    return Trigger(k, f.num(k, lo=lo, hi=hi))


def _trajectory(f: _Fields) -> Trajectory:
    start = braking = turn = lane_change = None
    s = f.sub("start", TRIGGER_KEYS)
    if s is not None:
        start = _trigger(s)
        s.refuse_unknown()
    b = f.sub("braking", BRAKING_FIELDS)
    if b is not None:
        braking = Braking(_trigger(b), b.num("decel_mps2", lo=0.0, lo_open=True, hi=MAX_ACCEL_MPS2),
                          b.num("final_speed_kmh", 0.0, lo=0.0, hi=MAX_ACTOR_SPEED_KMH))
        b.refuse_unknown()
    t = f.sub("turn", TURN_FIELDS)
    if t is not None:
        turn = Turn(_trigger(t), t.num("to_heading_deg", lo=-360.0, hi=360.0),
                    t.num("rate_dps", 30.0, lo=0.0, lo_open=True, hi=MAX_RATE_DPS))
        t.refuse_unknown()
    lc = f.sub("lane_change", LANE_CHANGE_FIELDS)
    if lc is not None:
        lane_change = LaneChange(_trigger(lc), lc.num("offset_m", lo=-MAX_OFFSET_M, hi=MAX_OFFSET_M),
                                 lc.num("duration_s", 3.0, lo=MIN_LANE_CHANGE_S, hi=MAX_DURATION_S))
        lc.refuse_unknown()
    tr = Trajectory(
        x_m=f.num("x_m", lo=-MAX_X_M, hi=MAX_X_M),
        y_m=f.num("y_m", lo=-MAX_Y_M, hi=MAX_Y_M),
        heading_deg=f.num("heading_deg", 0.0, lo=-360.0, hi=360.0),
        speed_kmh=f.num("speed_kmh", 0.0, lo=0.0, hi=MAX_ACTOR_SPEED_KMH),
        initial_speed_kmh=f.opt_num("initial_speed_kmh", lo=0.0, hi=MAX_ACTOR_SPEED_KMH),
        start=start,
        accel_mps2=f.opt_num("accel_mps2", lo=0.0, lo_open=True, hi=MAX_ACCEL_MPS2),
        braking=braking,
        stop_after_m=f.opt_num("stop_after_m", lo=0.0, hi=MAX_X_M),
        turn=turn,
        lane_change=lane_change,
    )
    _refuse_no_effect(f, tr)
    _refuse_braking_before_start(f, tr)
    return tr


def _refuse_braking_before_start(f: _Fields, tr: Trajectory) -> None:
    """Refuse a braking time that is not after the start time.

    Why: braking is the phase after the start, so the motion judges its trigger only once the
    actor has started; a braking at ``time_s: 1`` with ``start: {time_s: 3}`` would be put off to
    3 s without a word (before, it cancelled the start: the actor never moved).  Triggers on the
    ego's position can only be ordered by the drive, which keeps that order.
    """
    if (tr.start is not None and tr.braking is not None and tr.start.kind == "time_s"
            and tr.braking.when.kind == "time_s" and tr.braking.when.value <= tr.start.value):
        f.fail(f.key_path("braking.time_s"),
               f"must be after start.time_s ({tr.start.value:g} s): the actor brakes only once it has "
               f"started (got {tr.braking.when.value:g})")


def _refuse_no_effect(f: _Fields, tr: Trajectory) -> None:
    """Refuse speed fields the motion would never use: the drive would differ from the file without a word.

    Why: without ``start`` the actor is at its cruise speed from t = 0 unless ``accel_mps2`` ramps
    it there, so a lone ``initial_speed_kmh`` was dropped; ``accel_mps2`` between two equal speeds
    does nothing; a ``braking`` to a speed the actor never exceeds holds its speed instead; a
    ``stop_after_m`` on an actor that never moves stops nothing.
    """
    if tr.initial_speed_kmh is not None and tr.start is None and tr.accel_mps2 is None:
        f.fail(f.key_path("initial_speed_kmh"),
               f"has no effect without start or accel_mps2: the actor moves at speed_kmh "
               f"({tr.speed_kmh:g}) from t = 0 (got {tr.initial_speed_kmh:g})")
    if tr.accel_mps2 is not None and tr.speed_before_start_kmh == tr.speed_kmh:
        f.fail(f.key_path("accel_mps2"),
               f"has no effect: the speed before start equals speed_kmh ({tr.speed_kmh:g}); "
               f"give initial_speed_kmh or a start trigger (got {tr.accel_mps2:g})")
    if tr.stop_after_m is not None and tr.speed_kmh == 0.0 and tr.speed_before_start_kmh == 0.0:
        f.fail(f.key_path("stop_after_m"),
               f"has no effect: the actor never moves (speed_kmh 0) (got {tr.stop_after_m:g})")
    if tr.braking is not None:
        top = max(tr.speed_kmh, tr.speed_before_start_kmh)
        if tr.braking.final_speed_kmh >= top:
            f.fail(f.key_path("braking.final_speed_kmh"),
                   f"must be below the actor's speed ({top:g} km/h), else the braking does nothing "
                   f"(got {tr.braking.final_speed_kmh:g})")


def _colour(f: _Fields) -> tuple[int, int, int] | None:
    v = f.raw("colour")
    if v is None:
        return None
    if (not isinstance(v, list | tuple) or len(v) != 3
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in v)):
        f.fail(f.key_path("colour"), f"must be [r, g, b] with 0..255 integers (got {_show(v)})")
    return (int(v[0]), int(v[1]), int(v[2]))


def _actor(f: _Fields, index: int) -> ActorSpec:
    kind = f.string("kind", choices=tuple(KINDS))
    info = KINDS[kind]
    lights = f.raw("lights_on")
    if lights is not None and not isinstance(lights, bool):
        f.fail(f.key_path("lights_on"), f"must be true or false (got {_show(lights)})")
    if lights is not None and kind not in CAR_KINDS:  # only cars are drawn with lamps: it would be ignored
        f.fail(f.key_path("lights_on"), f"only for {', '.join(sorted(CAR_KINDS))} (kind is {kind!r})")
    spec = ActorSpec(
        kind=kind,
        trajectory=_trajectory(f),
        name=f.name("name", f"{kind}{index}"),
        length_m=f.num("length_m", info.length_m, lo=0.0, lo_open=True, hi=MAX_SIZE_M),
        width_m=f.num("width_m", info.width_m, lo=0.0, lo_open=True, hi=MAX_SIZE_M),
        height_m=f.num("height_m", info.height_m, lo=0.0, hi=MAX_HEIGHT_M),
        z_m=f.num("z_m", info.z_m, lo=0.0, hi=MAX_HEIGHT_M),
        colour=_colour(f),
        lights_on=lights,
    )
    f.refuse_unknown()
    return spec


def scenario_from_dict(d: Mapping[str, Any], source: str = "<dict>") -> Scenario:
    """Build and validate a scenario from a mapping (a parsed YAML file)."""
    f = _Fields(d, "", source, TOP_FIELDS)
    name = f.name("name")
    if not name.strip():  # the stem of the run's files and its row in every report
        f.fail("name", f"must not be empty (got {name!r})")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:  # refused here, not as ENAMETOOLONG mid-suite
        f.fail("name", f"{size} bytes long: at most {MAX_NAME_BYTES}")
    acts = f.raw("actors")
    if acts is None:
        acts = []
    if not isinstance(acts, list):
        f.fail("actors", f"must be a list (got {type(acts).__name__})")
    actors = tuple(_actor(_Fields(a, f"actors[{i}]", source, ACTOR_FIELDS), i) for i, a in enumerate(acts))
    names = [a.name for a in actors]
    for i, n in enumerate(names):
        if n in names[:i]:
            f.fail(f"actors[{i}].name", f"duplicate actor name {_show(n)}")
    e = f.sub("environment", ENVIRONMENT_FIELDS)
    env = Environment()
    if e is not None:
        env = Environment(
            light=e.string("light", "day", LIGHTS),
            weather=e.string("weather", "clear", WEATHERS),
            glare=e.boolean("glare", False),
            street_lights=e.boolean("street_lights", False),
        )
        e.refuse_unknown()
    protocol = f.raw("protocol")
    if protocol is not None and not isinstance(protocol, str):
        f.fail("protocol", f"must be a string (got {_show(protocol)})")
    if isinstance(protocol, str) and protocol_family(protocol) not in PROTOCOL_FAMILIES:
        # a typo would take the run out of the scoring (no band, no points) without a word
        close = difflib.get_close_matches(protocol, PROTOCOLS, n=1, cutoff=0.5)
        f.fail("protocol", f"unknown Euro NCAP protocol {_show(protocol)}"
               + (f" (did you mean {close[0]!r}?)" if close else "")
               + f"; known: {', '.join(PROTOCOLS)}, or leave it out for a drive without one")
    s = Scenario(
        name=name,
        ego_speed_kmh=f.num("ego_speed_kmh", lo=0.0, hi=MAX_EGO_SPEED_KMH),
        actors=actors,
        environment=env,
        seed=f.integer("seed", 0),
        duration_s=f.num("duration_s", 10.0, lo=0.0, lo_open=True, hi=MAX_DURATION_S),
        expect=f.string("expect", "avoid", EXPECTS),
        protocol=protocol,
        impact_pct=f.opt_num("impact_pct", lo=-100.0, hi=100.0),
        description=f.string("description", ""),
        camera_hz=f.num("camera_hz", 30.0, lo=0.0, lo_open=True, hi=1000.0),
        range_hz=f.num("range_hz", 20.0, lo=0.0, lo_open=True, hi=1000.0),
        odom_hz=f.num("odom_hz", 50.0, lo=0.0, lo_open=True, hi=1000.0),
        imu_hz=f.num("imu_hz", 50.0, lo=0.0, lo_open=True, hi=1000.0),
        brake_delay_s=f.num("brake_delay_s", 0.2, lo=0.0, hi=5.0),
        max_decel_mps2=f.num("max_decel_mps2", 9.0, lo=0.0, lo_open=True, hi=15.0),
    )
    f.refuse_unknown()
    if s.protocol is not None and s.expect != "avoid":
        # a protocol run is scored by its impact speed: a benign drive would add a free green point
        f.fail("protocol", f"only for expect: avoid (a scored Euro NCAP run); leave it out of an expect: "
               f"{s.expect} drive (got {s.protocol!r})")
    if s.expect == "avoid" and not s.actors:  # nothing to hit: a pass that tests nothing
        f.fail("actors", "empty: an expect: avoid drive needs something to avoid (a drive on an empty "
               "road is expect: no_brake)")
    from tiny_node.sim.world import World  # here: the world module imports this one

    touching = World(s).touching_at_start()
    if touching is not None:  # a collision at t = 0, before any frame, scored as the system's
        i = next(i for i, a in enumerate(s.actors) if a.name == touching)
        f.fail(f"actors[{i}]", f"{_show(touching)} touches the ego at t = 0: the run would begin in a collision, "
               f"before the first frame; place it clear of the ego's body (x {-EGO_LENGTH_M:g} to 0 m, "
               f"y {-EGO_WIDTH_M / 2:g} to {EGO_WIDTH_M / 2:g} m)")
    return s


def load_scenario(path: Path) -> Scenario:
    """Read one scenario YAML file (safe loading, a key given twice refused); errors name the file and field."""
    path = Path(path)
    try:
        text = read_yaml_text(path, MAX_SETTINGS_BYTES, "a file of settings")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        data = safe_load_unique(text, str(path))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: invalid YAML: {yaml_problem(exc)}") from exc
    if data is None:  # not "<top>: must be a mapping (got NoneType)", which hides the cause
        raise ScenarioError(f"{path}: the file is empty (nothing but blank lines, comments, '---' or null): "
                            "a scenario is a mapping of fields, name and ego_speed_kmh at least")
    return scenario_from_dict(data, str(path))


# ---------------------------------------------------------------------------------------------
# Writing


def _trigger_dict(t: Trigger) -> dict[str, Any]:
    return {t.kind: t.value}


def _trajectory_dict(tr: Trajectory) -> dict[str, Any]:
    d: dict[str, Any] = {"x_m": tr.x_m, "y_m": tr.y_m, "heading_deg": tr.heading_deg,
                         "speed_kmh": tr.speed_kmh}
    if tr.initial_speed_kmh is not None:
        d["initial_speed_kmh"] = tr.initial_speed_kmh
    if tr.start is not None:
        d["start"] = _trigger_dict(tr.start)
    if tr.accel_mps2 is not None:
        d["accel_mps2"] = tr.accel_mps2
    if tr.braking is not None:
        d["braking"] = {**_trigger_dict(tr.braking.when), "decel_mps2": tr.braking.decel_mps2,
                        "final_speed_kmh": tr.braking.final_speed_kmh}
    if tr.stop_after_m is not None:
        d["stop_after_m"] = tr.stop_after_m
    if tr.turn is not None:
        d["turn"] = {**_trigger_dict(tr.turn.when), "to_heading_deg": tr.turn.to_heading_deg,
                     "rate_dps": tr.turn.rate_dps}
    if tr.lane_change is not None:
        d["lane_change"] = {**_trigger_dict(tr.lane_change.when), "offset_m": tr.lane_change.offset_m,
                            "duration_s": tr.lane_change.duration_s}
    return d


def _actor_dict(a: ActorSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": a.kind, "name": a.name, **_trajectory_dict(a.trajectory)}
    info = KINDS[a.kind]
    for key, default in (("length_m", info.length_m), ("width_m", info.width_m),
                         ("height_m", info.height_m), ("z_m", info.z_m)):
        if getattr(a, key) != default:
            d[key] = getattr(a, key)
    if a.colour is not None:
        d["colour"] = list(a.colour)
    if a.lights_on is not None:
        d["lights_on"] = a.lights_on
    return d


def scenario_to_dict(s: Scenario) -> dict[str, Any]:
    """The YAML-ready mapping of a scenario (``scenario_from_dict`` reads it back equal)."""
    d: dict[str, Any] = {"name": s.name}
    if s.description:
        d["description"] = s.description
    if s.protocol is not None:
        d["protocol"] = s.protocol
    if s.impact_pct is not None:
        d["impact_pct"] = s.impact_pct
    d.update(ego_speed_kmh=s.ego_speed_kmh, expect=s.expect, seed=s.seed, duration_s=s.duration_s,
             environment={"light": s.environment.light, "weather": s.environment.weather,
                          "glare": s.environment.glare, "street_lights": s.environment.street_lights})
    defaults = Scenario(name="", ego_speed_kmh=0.0, actors=())
    for f in fields(Scenario):
        if f.name in {"camera_hz", "range_hz", "odom_hz", "imu_hz", "brake_delay_s", "max_decel_mps2"}:
            v = getattr(s, f.name)
            if v != getattr(defaults, f.name):
                d[f.name] = v
    d["actors"] = [_actor_dict(a) for a in s.actors]
    return d


def dump_scenario(s: Scenario, path: Path) -> None:
    """Write a scenario as YAML (key order kept, so files diff well)."""
    Path(path).write_text(yaml.safe_dump(scenario_to_dict(s), sort_keys=False), encoding="utf-8")


def with_seed(s: Scenario, seed: int) -> Scenario:
    """The same scenario with another seed (a suite run with ``--seed``)."""
    return replace(s, seed=seed)


def example_scenario_files() -> list[Path]:
    """The example YAML files shipped with the package (``tiny_node/sim/scenarios``)."""
    return sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))
