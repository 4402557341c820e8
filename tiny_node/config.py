"""Typed node configuration: one table of parameters, validated in one place.

The table :data:`PARAMS` is the single source of truth: the ROS layer declares every entry
with a ``ParameterDescriptor`` built from it, the params YAML (``config/tiny_node.yaml``, ROS
``ros__parameters`` format) is checked against it, and the lockstep / HIL drivers build the
same :class:`NodeConfig` from it without ROS.  An invalid value is refused with a message
naming the parameter, the value and the allowed range.
"""

from __future__ import annotations

import builtins
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tiny_node.strict_yaml import MAX_SETTINGS_BYTES, load_ros_params, read_yaml_text, yaml_problem

NODE_NAME = "tiny_node"
#: The least model_memory_limit_mb with one model thread: the worker's Python, numpy, OpenCV and
#: onnxruntime map most of it before any model (the default model's worker peaked at 449 MiB under a
#: 512 MiB cap); each further intra-op thread adds its stacks, one per session (488 MiB with 2
#: threads, 932 with 16). Under too little, onnxruntime hung creating its thread pool.
MIN_MEMORY_LIMIT_MB = 512
MEMORY_PER_THREAD_MB = 40
#: operator context of a language-model bundle: longer is refused (the prompt stays bounded)
MAX_CONTEXT_CHARS = 200

Value = bool | int | float | str


class ConfigError(ValueError):
    """A parameter value or a params file is invalid; the message names what and why."""


class NoSectionError(ConfigError):
    """A params file has no section for the node: none of its values reach it."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: default, meaning and allowed values."""

    name: str
    default: Value
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = False  # set at start only (rcl refuses it at run time): model, topics, threads, memory
    max_len: int | None = None  # strings: at most this many characters

    @property
    def allowed(self) -> str:
        """Human-readable allowed range, used in error messages and descriptors."""
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.max_len is not None:
            return f"a string of at most {self.max_len} characters"
        if isinstance(self.default, bool):
            return "true or false"
        if self.min is not None or self.max is not None:
            return f"[{self.min}, {self.max}]"
        return f"any {type(self.default).__name__}"

    def check(self, value: object) -> Value:
        """Return ``value`` coerced to this parameter's type, or raise :class:`ConfigError`."""
        expected = type(self.default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise ConfigError(
                f"parameter '{self.name}': expected {expected.__name__}, got {value!r} "
                f"({type(value).__name__}); allowed: {self.allowed}"
            )
        assert isinstance(value, bool | int | float | str)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"parameter '{self.name}': {value!r} is not finite; allowed: {self.allowed}")
        if self.choices and value not in self.choices:
            raise ConfigError(f"parameter '{self.name}': {value!r} is not allowed; allowed: {self.allowed}")
        if isinstance(value, str) and self.max_len is not None and len(value) > self.max_len:
            raise ConfigError(f"parameter '{self.name}': {len(value)} characters; allowed: {self.allowed}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            too_low = self.min is not None and value < self.min
            too_high = self.max is not None and value > self.max
        else:
            too_low = too_high = False
        if too_low or too_high:
            raise ConfigError(
                f"parameter '{self.name}': {value!r} is out of range; allowed: {self.allowed}"
            )
        return value


P = ParamSpec
PARAMS: tuple[ParamSpec, ...] = (
    # --- inputs -------------------------------------------------------------------------
    P("camera_transport", "raw", "Camera input: 'raw' subscribes camera/image_raw "
      "(sensor_msgs/Image), 'compressed' camera/image_raw/compressed.",
      choices=("raw", "compressed"), read_only=True),
    P("max_frame_width", 2048, "Largest camera frame accepted (pixels); larger frames are "
      "rejected as bad input. Sizes the model worker's shared memory. The default takes the usual "
      "automotive sensors (1920x1200, 1928x1208, 2048x1536).", 64, 4096, read_only=True),
    P("max_frame_height", 1536, "Largest camera frame accepted (pixels).", 48, 4096, read_only=True),
    P("camera_timeout_s", 0.5, "No camera frame for this long is a camera fault: the camera "
      "diagnostic turns ERROR and camera_timeout_action applies.", 0.05, 10.0),
    P("camera_timeout_action", "rules", "What the node publishes while the camera is out, at the "
      "camera's measured frame period: 'rules' = the rule path's decision on range and odometry "
      "(model unavailable), 'failsafe' = the rules.failsafe decision, 'none' = nothing (the "
      "consumer must act on the camera diagnostic). These decisions answer no frame: their "
      "stamp is extrapolated from the last frame and their values say frame: none (camera timeout).",
      choices=("rules", "failsafe", "none")),
    P("future_stamp_tolerance_s", 0.5, "A camera stamp further ahead of the node's ROS clock "
      "than this is a fault (the model is not run on it); a range stamp, a sensor warning.", 0.0, 60.0),
    P("range_timeout_s", 0.5, "Range reading older than this is stale -> fail-safe "
      "(Autoware topic_state_monitor uses 1.0 s; 0.5 s is 10 missed readings at 20 Hz). Invalid "
      "readings (NaN, negative, finite outside [min_range, max_range]) count as missed ones.", 0.05, 10.0),
    P("odom_timeout_s", 0.5, "Odometry older than this is stale -> fail-safe.", 0.05, 10.0),
    P("imu_timeout_s", 0.5, "IMU older than this is stale (fail-safe only if imu_required).", 0.05, 10.0),
    P("imu_required", False, "Treat a missing or stale IMU as a fault (fail-safe)."),
    P("range_stuck_s", 1.0, "A finite range reading repeated bit for bit this long (fresh stamps) "
      "while the ego moves is a stuck sensor -> fail-safe. Radar noise makes exact repeats "
      "implausible; raise it for coarsely quantised sensors, 0 disables.", 0.0, 60.0),
    P("range_stuck_min_speed_mps", 1.0, "The stuck-range check times identical readings only while "
      "the ego moves faster than this (a standstill repeats a value legitimately); lower it for a "
      "slow robot, or it is never checked.", 0.05, 10.0),
    # --- deadline watchdog --------------------------------------------------------------
    P("deadline_ms", 50.0, "Each camera frame must be decided within this time.", 5.0, 1000.0),
    P("deadline_reference", "receipt", "Measure the deadline from frame receipt or from the "
      "frame's header stamp (needs synchronised clocks).", choices=("receipt", "stamp")),
    P("publish_guard_ms", 5.0, "The fallback decision is published this long before the "
      "deadline so scheduling jitter cannot push it past the deadline (measured wake-up "
      "jitter on a 2-vCPU VM: max 4-6 ms, docs/BENCHMARKS.md).", 0.0, 20.0),
    P("arbitration", "either", "'either': brake if the on-time model or the rules say brake "
      "(the model never cancels a rule brake). 'shadow': the rules decide, the model is run "
      "and reported only.", choices=("either", "shadow")),
    P("brake_hold_s", 2.0, "Minimum time a brake decision is held (hysteresis; Autoware AEB "
      "collision_keeping_sec). A rule brake on a new object with no range track yet is held "
      "only until its track confirms or lifts it (at most rules.range_rate_window_s, or this if "
      "shorter).", 0.0, 30.0),
    P("realtime_priority", 20, "SCHED_FIFO priority for the node process (0 = normal "
      "scheduling). Falls back to normal scheduling if the OS refuses.", 0, 98, read_only=True),
    P("lock_memory", True, "mlockall the node process (not the model worker) so memory pressure "
      "cannot page it out; falls back cleanly without the privilege.", read_only=True),
    P("diagnostics_period_s", 1.0, "Period of /diagnostics (REP-107).", 0.1, 10.0, read_only=True),
    # --- model ----------------------------------------------------------------------------
    P("model_bundle", "", "Model bundle directory (manifest.yaml + ONNX files); 'default' = the "
      "multimodal model shipped with the package; empty = rules only.", read_only=True),
    P("model_threads", 1, "onnxruntime intra-op threads in the model worker.", 1, 16, read_only=True),
    P("model_warmup_runs", 3, "Warm-up runs on the exact input shapes before the model counts.",
      0, 100, read_only=True),
    P("model_hang_timeout_ms", 500.0, "A model run (or its cancel) not answered within this is "
      "a hang: the worker is killed and restarted.", 50.0, 10000.0, read_only=True),
    P("model_restart_backoff_s", 0.5, "First restart delay after a worker crash/hang (0 = at "
      "once); doubles on each further failure, from at least 0.1 s.", 0.0, 60.0, read_only=True),
    P("model_restart_backoff_max_s", 10.0, "Upper bound of the restart delay.", 0.1, 600.0,
      read_only=True),
    P("model_memory_limit_mb", 0, "Address-space limit of the model worker process (RLIMIT_AS), "
      "MiB; 0 = none. A worker that reaches it fails the allocation and is restarted, where "
      "a runaway model would otherwise take the machine's memory; the default model runs under 512.",
      0, 1048576, read_only=True),
    P("operator_context", "", "Operator context given to a language-model bundle with each "
      "frame (e.g. 'school zone'); ignored by classifier bundles.", read_only=False,
      max_len=MAX_CONTEXT_CHARS),
    P("rationale_max_tokens", 24, "At most this many rationale tokens a language-model bundle generates "
      "after its decision (off the deadline path; published on `rationale`), and never more than the "
      "bundle's own vlm.max_rationale_tokens. 0 = no rationale.", 0, 256,
      read_only=True),
    P("test_hook_model_delay_ms", 0.0, "TEST HOOK (fault injection only): delay injected before "
      "every model run. Never set on a vehicle.", 0.0, 10000.0),
    # --- rule path (see tiny_node/rules.py for the formula and sources) --------------------
    P("rules.t_response_s", 0.5, "Response time in the RSS distance (actuation latency "
      "0.2-0.3 s plus margin).", 0.0, 5.0),
    P("rules.a_ego_brake_mps2", 5.0, "Ego deceleration assumed (UN R152 demand >= 5 m/s^2).",
      0.5, 12.0),
    P("rules.a_obj_brake_mps2", 8.0, "Deceleration the object ahead may apply (RSS "
      "a_brake_max).", 0.5, 12.0),
    P("rules.margin_m", 1.0, "Longitudinal margin added to the RSS distance (Autoware "
      "longitudinal_offset_margin).", 0.0, 20.0),
    P("rules.ttc_brake_s", 1.0, "Also brake when time-to-collision falls below this "
      "(0 disables).", 0.0, 10.0),
    P("rules.range_rate_window_s", 0.5, "Window over which the range rate (closing speed) is "
      "estimated: all of it for a range sensor up to 100 Hz (a faster one's newest scans, 100 Hz "
      "worth). More than two of the sensor's periods (three scans; under 2.1 a sensor warning), or "
      "no closing speed is measured.", 0.05, 5.0),
    P("rules.closing_min_mps", 1.0, "The RSS distance brakes on a closing speed measured from the range "
      "track only above this (the TTC rule acts on any): behind a lead at the ego's speed the measured "
      "closing scatters around 0, and RSS (a_obj > a_ego) calls a normal following gap unsafe.",
      0.0, 10.0),
    P("rules.rss_max_ttc_s", 0.0, "0 (the default): the RSS distance brakes at any time to collision. "
      "Above 0: beyond the RSS distance of an object braking no harder than the ego (a_obj = a_ego), it "
      "brakes only when the TTC at the closing speed is also below this. That ends full brakes on "
      "everyday approaches to a slower car (108 km/h, 50 m behind a car at 103 km/h: TTC 33 s), but a "
      "review measured later brakes, and more collisions, for leads braking harder than the ego can "
      "(wet roads, cut-ins): see docs/ARCHITECTURE.md before setting it.", 0.0, 60.0),
    P("rules.closing_sigmas", 5.0, "The RSS distance brakes on a closing speed measured from the range "
      "track only above this many standard errors of that speed (from the range noise of the last "
      "second or so, and at least the sensor's own: rules.range_noise_m).", 0.0, 20.0),
    P("rules.range_noise_m", 0.05, "The range sensor's noise (1 sigma, m; its datasheet's range "
      "accuracy), plus rules.range_noise_frac of the range: the least noise a range track is judged "
      "with (its closing speed's noise for the RSS distance, and when it lifts a provisional "
      "brake), so a track of a few scans cannot read as more certain than the sensor is. Not 0: "
      "two scans fit exactly.", 0.001, 5.0),
    P("rules.range_noise_frac", 0.005, "The range sensor's noise that grows with the range, as a "
      "fraction of it (0.005 = 0.5 %); see rules.range_noise_m.", 0.0, 0.2),
    P("rules.range_jump_m", 3.0, "A range change larger than the closing motion explains by "
      "this much starts a new track (new object).", 0.1, 50.0),
    P("rules.failsafe", "brake", "Decision when inputs are stale or invalid.",
      choices=("brake", "no_brake")),
)
del P

SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMS}


@dataclass(frozen=True)
class RuleConfig:
    """Constants of the rule path (every one a parameter)."""

    t_response_s: float = 0.5
    a_ego_brake_mps2: float = 5.0
    a_obj_brake_mps2: float = 8.0
    margin_m: float = 1.0
    ttc_brake_s: float = 1.0
    range_rate_window_s: float = 0.5
    range_jump_m: float = 3.0
    failsafe: str = "brake"
    range_timeout_s: float = 0.5
    odom_timeout_s: float = 0.5
    imu_timeout_s: float = 0.5
    imu_required: bool = False
    range_stuck_s: float = 1.0
    range_stuck_min_speed_mps: float = 1.0
    closing_min_mps: float = 1.0
    closing_sigmas: float = 5.0
    rss_max_ttc_s: float = 0.0
    range_noise_m: float = 0.05
    range_noise_frac: float = 0.005


@dataclass(frozen=True)
class NodeConfig:
    """Everything the decision core and its drivers need, validated."""

    values: Mapping[str, Value]

    def __getitem__(self, name: str) -> Value:
        return self.values[name]

    def float(self, name: str) -> float:
        """Return a float parameter."""
        v = self.values[name]
        assert isinstance(v, int | float)
        return float(v)

    def int(self, name: str) -> int:
        """Return an int parameter."""
        v = self.values[name]
        assert isinstance(v, int)
        return v

    def str(self, name: builtins.str) -> builtins.str:
        """Return a string parameter."""
        v = self.values[name]
        assert isinstance(v, str)
        return v

    def bool(self, name: builtins.str) -> builtins.bool:
        """Return a bool parameter."""
        v = self.values[name]
        assert isinstance(v, bool)
        return v

    @property
    def rules(self) -> RuleConfig:
        """The rule path's constants."""
        return RuleConfig(
            t_response_s=self.float("rules.t_response_s"),
            a_ego_brake_mps2=self.float("rules.a_ego_brake_mps2"),
            a_obj_brake_mps2=self.float("rules.a_obj_brake_mps2"),
            margin_m=self.float("rules.margin_m"),
            ttc_brake_s=self.float("rules.ttc_brake_s"),
            range_rate_window_s=self.float("rules.range_rate_window_s"),
            range_jump_m=self.float("rules.range_jump_m"),
            closing_min_mps=self.float("rules.closing_min_mps"),
            closing_sigmas=self.float("rules.closing_sigmas"),
            rss_max_ttc_s=self.float("rules.rss_max_ttc_s"),
            range_noise_m=self.float("rules.range_noise_m"),
            range_noise_frac=self.float("rules.range_noise_frac"),
            failsafe=self.str("rules.failsafe"),
            range_timeout_s=self.float("range_timeout_s"),
            odom_timeout_s=self.float("odom_timeout_s"),
            imu_timeout_s=self.float("imu_timeout_s"),
            imu_required=self.bool("imu_required"),
            range_stuck_s=self.float("range_stuck_s"),
            range_stuck_min_speed_mps=self.float("range_stuck_min_speed_mps"),
        )


def make_config(overrides: Mapping[str, object] | None = None) -> NodeConfig:
    """Validate ``overrides`` against :data:`PARAMS` and fill in the defaults.

    Unknown names are refused too: a typo in a params file must not silently fall back to a
    default on a vehicle.
    """
    values: dict[str, Value] = {p.name: p.default for p in PARAMS}
    for name, value in (overrides or {}).items():
        spec = SPECS.get(name)
        if spec is None:
            near = difflib.get_close_matches(name, SPECS, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError(f"unknown parameter '{name}'{hint} (known: {', '.join(sorted(SPECS))})")
        values[name] = spec.check(value)
    if values["model_restart_backoff_max_s"] < values["model_restart_backoff_s"]:  # type: ignore[operator]
        raise ConfigError(
            "parameter 'model_restart_backoff_max_s' must be >= 'model_restart_backoff_s'"
        )
    deadline, guard = float(values["deadline_ms"]), float(values["publish_guard_ms"])
    if guard >= deadline:  # every frame would close at receipt: the model never asked
        raise ConfigError(f"parameter 'publish_guard_ms' ({guard}) must be below 'deadline_ms' ({deadline})")
    limit, threads = int(values["model_memory_limit_mb"]), int(values["model_threads"])  # type: ignore[call-overload]
    least = MIN_MEMORY_LIMIT_MB + MEMORY_PER_THREAD_MB * (threads - 1)
    if 0 < limit < least:  # below what Python, onnxruntime and its threads take before any model
        raise ConfigError(f"parameter 'model_memory_limit_mb' ({limit}) must be 0 (none) or at least {least} "
                          f"with model_threads {threads}")
    if float(values["model_hang_timeout_ms"]) < deadline - guard:  # an on-time run would be killed as a hang
        raise ConfigError(f"parameter 'model_hang_timeout_ms' ({values['model_hang_timeout_ms']}) must be at "
                          f"least 'deadline_ms' - 'publish_guard_ms' ({deadline - guard})")
    return NodeConfig(values)


def _flatten(prefix: str, tree: Mapping[str, Any], out: dict[str, object], where: str, *, mine: bool) -> None:
    """``tree``'s parameters into ``out`` by their dotted names, as rcl names them; or :class:`ConfigError`.

    What rcl refuses in a file (the whole file, whichever node's section holds it) is refused,
    named: an empty value, a list of mixed types, an empty mapping (at any depth) before another
    name right under ``ros__parameters``. In a section for this node (``mine``) also what rcl
    reads otherwise than written: an empty mapping anywhere (rcl reads the names after it as
    under it: ``rules: {sub: {}, ttc_brake_s: 2.0}`` set ``rules.sub.ttc_brake_s``), a list of
    lists or mappings (rcl reads ``[[0.5, 0.3]]`` as ``[0.5, 0.3]``, refuses ``[[1], [2]]``), and
    a name given twice, spelt two ways (``rules.ttc_brake_s: 2.0`` and ``rules: {ttc_brake_s:
    3.0}``: rcl takes the last without a word). Other nodes' nested lists, empty mappings and
    duplicates are theirs: rcl starts with most, and the start command has rcl read every file.
    """
    empty_before: str | None = None  # under ros__parameters: an empty mapping seen, at any depth
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if not prefix and empty_before is not None:
            raise ConfigError(f"{where}: '{empty_before}' is an empty mapping before '{name}', which ROS 2 "
                              "refuses (the whole file: 'Cannot have a value before ros__parameters'): remove it")
        if isinstance(value, Mapping):
            if not value and mine:
                raise ConfigError(f"{where}: '{name}' is an empty mapping: rcl reads the names after it as under "
                                  "it, so remove it")
            if not prefix:
                empty_before = _empty_mapping(name, value)
            _flatten(f"{name}.", value, out, where, mine=mine)
            continue
        if value is None:
            raise ConfigError(f"{where}: '{name}' has no value, which ROS 2 refuses (the whole file)")
        if isinstance(value, list):
            if mine and any(isinstance(v, list | Mapping) for v in value):
                raise ConfigError(f"{where}: '{name}': a list of lists or mappings: rcl reads them otherwise than "
                                  "written, or refuses the whole file; a parameter list holds plain values")
            kinds = {type(v).__name__ for v in value if not isinstance(v, list | Mapping)}
            if len(kinds) > 1:
                raise ConfigError(f"{where}: '{name}': a list of mixed types ({', '.join(sorted(kinds))}), which "
                                  "ROS 2 refuses (the whole file): one type (1.0, 2.0 for doubles)")
        if name in out and mine:
            raise ConfigError(f"{where}: parameter '{name}' given twice (rcl would take the last without a word)")
        out[name] = value


def _empty_mapping(name: str, tree: Mapping[str, Any]) -> str | None:
    """The dotted name of the first empty mapping in ``tree`` (``name`` itself if it is one), or None."""
    if not tree:
        return name
    for key, value in tree.items():
        if isinstance(value, Mapping) and (found := _empty_mapping(f"{name}.{key}", value)):
            return found
    return None


def _node_name(parts: tuple[str, ...]) -> str:
    """The keys above a ``ros__parameters`` joined into the node's name, as rcl joins them.

    A key's own slashes at its ends are separators, not empty names: ``/ego/: {tiny_node: ...}`` is
    ``/ego/tiny_node`` (joined as written, it was ``/ego//tiny_node``, matching no node: the start
    command ran with the real-time settings that section turned off).
    """
    lead = "/" if parts and parts[0].startswith("/") else ""
    return lead + "/".join(p for p in (part.strip("/") for part in parts) if p)


def _bad_node_name(parts: tuple[str, ...]) -> str:
    """Why rcl refuses the whole file for these keys above a ``ros__parameters`` ("" when it takes them).

    An empty name part (``//``), a key below another starting with ``/``, or the node's own
    key ending in ``/``: the offline tools read such a section, and the node then refused the file.
    """
    if any("//" in part for part in parts) or any(part.startswith("/") for part in parts[1:]):
        return "a node name with an empty part ('//', or a key below another starting with '/')"
    if parts and parts[-1].endswith("/"):
        return "a node name ending in '/'" if parts[-1].strip("/") else "an empty node name"
    return ""


def _sections(tree: Mapping[str, Any], parts: tuple[str, ...], where: str) -> list[tuple[str, Mapping[str, Any]]]:
    """The file's node sections, ``(node name, its ros__parameters)`` in file order, as rcl reads them.

    rcl joins the keys above ``ros__parameters`` with ``/`` into the node's name: ``ego:
    {tiny_node: {ros__parameters: ...}}`` is the section ``ego/tiny_node``, ``/**: {tiny_node:
    ...}`` ``/**/tiny_node``. A value outside a ``ros__parameters`` (rcl: "Cannot have a value
    before ros__parameters") refuses the whole file.
    """
    out: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in tree.items():
        if str(key).startswith("ros__parameters"):  # as rcl compares it: a prefix
            name = _node_name(parts)
            if not parts:
                raise ConfigError(f"{where}: 'ros__parameters' with no node name above it")
            if why := _bad_node_name(parts):
                raise ConfigError(f"{where}: section {': '.join(repr(p) for p in parts)}: {why}, which ROS 2 "
                                  "refuses (the whole file)")
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: section '{name}': 'ros__parameters' is not a mapping of parameters")
            out.append((name, value))
        elif isinstance(value, Mapping):
            out += _sections(value, (*parts, str(key)), where)
        else:
            path = _node_name((*parts, str(key)))
            raise ConfigError(f"{where}: '{path}' is not a mapping: ROS 2 refuses a value outside a node's "
                              "'ros__parameters' (the whole file; write <node>: ros__parameters: <name>: <value>)")
    return out


# Parameters ROS itself handles; allowed in a params file but not ours to validate.
ROS_OWNED = frozenset({"use_sim_time", "qos_overrides", "start_type_description_service"})


def ros_owned(name: str) -> bool:
    """Whether ``name`` (or its first part: ``qos_overrides.…``) is rclpy's, not this node's."""
    return name in ROS_OWNED or name.split(".", 1)[0] in ROS_OWNED


def integer_for_double(name: str, value: object) -> str | None:
    """Why ``value`` cannot be given for ``name``, if it is an integer for a double parameter.

    rcl reads ``40`` as an integer, and the node's double parameter refuses it at start: the
    offline tools and the start command say so too, with what to write.
    """
    if name in SPECS and type(SPECS[name].default) is float and type(value) is int:
        return (f"{value} is an integer, and the node declares a double (rcl refuses it at start): "
                f"write {float(value)!r}")
    return None


def section_regex(key: str) -> re.Pattern[str]:
    """A params-file section name, or a ``-p node:`` prefix, as rcl matches it to the node's full name.

    ``/**`` any namespaces, ``*`` one token; a relative name is from the root.
    """
    key = key if key.startswith("/") else "/" + key
    out = ""
    for part in re.split(r"(\*\*|\*)", key):
        out += ".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part)
    return re.compile(out.replace("/.*/", "(/.*)?/") + "$")


def load_params_file(path: str | Path, node_name: str = NODE_NAME, namespace: str | None = None,
                     require_section: bool = True) -> dict[str, object]:
    """Read a ROS 2 params YAML (``<node>: ros__parameters: ...``) into flat names.

    The values of :func:`params_file_sections`, merged as rcl merges them: a section name written
    twice (flat and nested) in the place it first came, not in file order (the offline tools ran
    another deadline than the node; review 2026-12-08).
    """
    table: dict[str, dict[str, object]] = {}  # as rcl merges a section name written twice: where it first came
    for section, names in params_file_sections(path, node_name, namespace, require_section):
        table.setdefault(section, {}).update(names)
    flat = {k: v for names in table.values() for k, v in names.items()}
    for name, value in flat.items():  # the value in effect: an integer a later section replaces is none
        if why := integer_for_double(name, value):
            raise ConfigError(f"params file {path}: {name}: {why}")
    return flat


def params_file_sections(path: str | Path, node_name: str = NODE_NAME, namespace: str | None = None,
                         require_section: bool = True) -> list[tuple[str, dict[str, object]]]:
    """The sections of a ROS 2 params YAML that apply to the node: (section name as rcl keys it, flat values).

    Sections are matched to the node's full name (``namespace``/``node_name``, after remapping)
    as rcl does (``/**``, ``*`` wildcards; ``tiny_node:`` is ``/tiny_node``, not
    ``/ego/tiny_node``), in file order, named as written (``tiny_node`` and ``/tiny_node`` are two
    entries of rcl's table, though both match the node). ``namespace`` None (the offline tools,
    which do not know where the node runs): any section named for the node, in any namespace.
    ROS-owned parameters are dropped; so are, in a section for any node (``/**``, ``/ego/*``),
    parameters this node does not have (they are meant for other nodes). In a section naming
    the node, in any namespace (``/**/tiny_node``, the shipped file's), an unknown name stays,
    for :func:`make_config` to refuse as a typo. An integer for a double parameter is judged
    by the caller, on the value in effect (a later section may replace it).
    ``require_section``: a file with no section for the node is an error (else it adds nothing).
    """
    p = Path(path)
    try:
        # Read as rcl reads it (its scalar types, no aliases); a key given twice is refused: rcl
        # would apply the last value (or merge two sections of one name), neither what the author saw.
        doc = load_ros_params(read_yaml_text(p, MAX_SETTINGS_BYTES, "a file of settings"), str(p))
    except FileNotFoundError:
        raise ConfigError(f"params file not found: {p}") from None
    except OSError as exc:
        raise ConfigError(f"params file {p}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"params file {p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"params file {p}: invalid YAML: {yaml_problem(exc)}") from exc
    if doc is None:  # empty, or comments only: no parameters, as rcl reads it
        doc = {}
    if not isinstance(doc, Mapping):
        raise ConfigError(f"params file {p}: top level must be a mapping of node names")
    full = f"{(namespace or '').rstrip('/')}/{node_name}"
    out: list[tuple[str, dict[str, object]]] = []
    given: dict[str, dict[str, object]] = {}  # by node name, as rcl merges sections of one name
    sections = _sections(doc, (), f"params file {p}")
    matched = False
    for key, params in sections:
        last = key.rsplit("/", 1)[-1]
        mine = last in (node_name, "*", "**") if namespace is None else bool(section_regex(key).match(full))
        names: dict[str, object] = {}
        _flatten("", params, names, f"params file {p}: section '{key}'", mine=mine)  # rcl refuses the file
        if not mine:
            continue
        same = given.setdefault("/" + key.lstrip("/"), {})
        for name in names:
            if name in same:
                raise ConfigError(f"params file {p}: parameter '{name}' given twice for node '{key}' "
                                  "(rcl would take the last without a word)")
        same.update(names)
        matched = True
        if "*" in last:  # a section for every node; ``/**/tiny_node`` is ours, in any namespace
            names = {k: v for k, v in names.items() if k in SPECS}
        out.append((key, {k: v for k, v in names.items() if not ros_owned(k)}))
    if not matched and require_section:
        listed = ", ".join(repr(k) for k, _ in sections) or "none, the file holds no parameters"
        raise NoSectionError(f"params file {p}: no section for node '{full if namespace else node_name}' "
                             f"(or '/**'; its sections: {listed})")
    return out


def config_from_file(path: str | Path | None, overrides: Mapping[str, object] | None = None) -> NodeConfig:
    """Build a :class:`NodeConfig` from a params file plus overrides (either may be absent)."""
    values: dict[str, object] = dict(load_params_file(path)) if path else {}
    try:
        values.update(overrides or {})
        return make_config(values)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None
