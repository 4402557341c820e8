"""Model bundles: a directory holding ``manifest.yaml`` and checksummed files.

Why: the model is the part of the node we trust least, so what runs must be exactly what
was tested. The manifest names every file with its SHA-256, :func:`load_bundle` checks them
all before anything reads a model, and every error names the file, key or value at fault.
The full description is in ``docs/BUNDLE.md``; the schema (``format: tiny_node.bundle/1``)::

    format: tiny_node.bundle/1
    name: test-fast                   # free text, shown in diagnostics
    kind: classifier                  # one of KINDS; anything else is rejected
    files:                            # key -> file inside the bundle dir, with its sha256
      model: {path: model.onnx, sha256: <64 hex>}
    inputs:
      image: {name: image, height: 64, width: 64, layout: NCHW, color: rgb, dtype: float32,
              mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], scale: 0.00392156862745098}
      sensors: {name: sensors, features: [ego_speed, range, range_rate, range_valid],
                range_clip_m: 100.0}  # optional section; range_clip_m optional (100)
    outputs:
      decision: {name: logits, kind: softmax, labels: [no_brake, brake],
                 brake_label: brake, threshold: 0.5}
    runtime: {intra_op_num_threads: 1, inter_op_num_threads: 1, allow_spinning: false,
              graph_optimization_level: all}   # optional; these are the defaults
    latency_budget_ms: 5.0            # deterministic latency used by lockstep simulation

Image tensor: ``(pixel * scale - mean[c]) / std[c]``; ``layout`` NCHW | NHWC, ``color``
rgb | bgr | mono (3, 3, 1 channels), ``dtype`` float32, batch 1.
Sensor tensor: float32 ``[1, len(features)]`` in the listed order; names from FEATURES.
Decision: ``softmax`` reads logits ``[1, len(labels)]``; ``sigmoid`` reads one logit
``[1, 1]`` for ``brake_label`` (then exactly two labels). Brake iff P(brake) >= threshold.
Unknown keys are rejected too, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

FORMAT = "tiny_node.bundle/1"
MANIFEST = "manifest.yaml"
KINDS = ("classifier",)
LAYOUTS = ("NCHW", "NHWC")
COLORS = {"rgb": 3, "bgr": 3, "mono": 1}
DTYPES = ("float32",)
DECISION_KINDS = ("softmax", "sigmoid")
OPT_LEVELS = ("disable", "basic", "extended", "all")
DEFAULT_RANGE_CLIP_M = 100.0

#: Sensor features a bundle may ask for, with what the runtime feeds (see runtime.py).
FEATURES: dict[str, str] = {
    "ego_speed": "ego speed, m/s (required, finite)",
    "range": "range to the lead object, m; +inf/NaN/missing -> range_clip_m, clipped to it",
    "range_rate": "range rate, m/s (negative = closing); 0 when unknown",
    "range_valid": "1 if a range measurement is valid, else 0 (missing -> 0)",
    "accel_x": "longitudinal acceleration, m/s^2; 0 when unknown",
}

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MISSING: Any = object()


class BundleError(Exception):
    """A bundle is unusable; the message names the file, key or value at fault."""


@dataclass(frozen=True)
class FileEntry:
    """One checksummed file of a bundle."""

    key: str
    rel: str  # path as written in the manifest
    path: Path  # resolved absolute path (checked to be inside the bundle)
    sha256: str


@dataclass(frozen=True)
class ImageSpec:
    """How a camera frame becomes the image tensor."""

    name: str
    height: int
    width: int
    layout: str
    color: str
    dtype: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float

    @property
    def channels(self) -> int:
        """Channels of the tensor (3 for rgb/bgr, 1 for mono)."""
        return COLORS[self.color]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Tensor shape, batch 1, in the manifest layout."""
        if self.layout == "NCHW":
            return (1, self.channels, self.height, self.width)
        return (1, self.height, self.width, self.channels)


@dataclass(frozen=True)
class SensorSpec:
    """Which sensor features feed the model, in order."""

    name: str
    features: tuple[str, ...]
    range_clip_m: float = DEFAULT_RANGE_CLIP_M


@dataclass(frozen=True)
class DecisionSpec:
    """How to read brake / no brake from the output tensor."""

    name: str
    kind: str
    labels: tuple[str, ...]
    brake_label: str
    threshold: float

    @property
    def brake_index(self) -> int:
        """Index of ``brake_label`` in ``labels``."""
        return self.labels.index(self.brake_label)

    @property
    def width(self) -> int:
        """Values per batch row the output tensor must have."""
        return 1 if self.kind == "sigmoid" else len(self.labels)


@dataclass(frozen=True)
class RuntimeSpec:
    """onnxruntime session options (defaults favour a quiet, predictable CPU)."""

    intra_op_num_threads: int = 1
    inter_op_num_threads: int = 1
    allow_spinning: bool = False
    graph_optimization_level: str = "all"


@dataclass(frozen=True)
class Bundle:
    """A loaded manifest whose files all matched their checksums at load time."""

    root: Path
    name: str
    kind: str
    files: Mapping[str, FileEntry] = field(hash=False)
    image: ImageSpec
    sensors: SensorSpec | None
    decision: DecisionSpec
    runtime: RuntimeSpec
    latency_budget_ms: float

    def file(self, key: str) -> FileEntry:
        """Return the file entry ``key`` or raise BundleError naming it."""
        if key not in self.files:
            raise BundleError(f"{self.root / MANIFEST}: files.{key}: missing")
        return self.files[key]

    def read_verified(self, key: str) -> bytes:
        """Read a file and check its hash again on the very bytes that will be used.

        Why: closes the gap between load_bundle() and the moment the model is parsed.
        """
        entry = self.file(key)
        try:
            data = entry.path.read_bytes()
        except OSError as exc:
            raise BundleError(f"files.{key}: cannot read {entry.path}: {exc}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != entry.sha256:
            raise BundleError(_mismatch(entry, actual))
        return data


def hash_file(path: Path) -> str:
    """SHA-256 of a file as 64 lowercase hex digits (streamed, any size)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(
    root: Path,
    *,
    name: str,
    files: Mapping[str, str],
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    latency_budget_ms: float,
    kind: str = "classifier",
    runtime: Mapping[str, Any] | None = None,
) -> Path:
    """Hash ``files`` (key -> path relative to ``root``) and write ``root/manifest.yaml``.

    Used by generators and exporters so no one writes a checksum by hand.
    """
    root = Path(root)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "name": name,
        "kind": kind,
        "files": {k: {"path": p, "sha256": hash_file(root / p)} for k, p in files.items()},
        "inputs": dict(inputs),
        "outputs": dict(outputs),
        "runtime": dict(runtime) if runtime is not None else asdict(RuntimeSpec()),
        "latency_budget_ms": float(latency_budget_ms),
    }
    out = root / MANIFEST
    out.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return out


def load_bundle(path: Path | str) -> Bundle:
    """Parse and validate ``path/manifest.yaml``, then verify every file's SHA-256."""
    root = Path(path)
    mpath = root / MANIFEST
    try:
        text = mpath.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise BundleError(f"{mpath}: manifest missing") from exc
    except OSError as exc:
        raise BundleError(f"{mpath}: cannot read manifest: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BundleError(f"{mpath}: not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise BundleError(f"{mpath}: top level must be a mapping, got {type(data).__name__}")
    p = _Parser(str(mpath))
    bundle = p.bundle(root, data)
    for entry in bundle.files.values():
        _verify(entry)
    return bundle


def _mismatch(entry: FileEntry, actual: str) -> str:
    return (
        f"files.{entry.key}: checksum mismatch for {entry.path}: "
        f"manifest expects sha256 {entry.sha256}, file has {actual}"
    )


def _verify(entry: FileEntry) -> None:
    if not entry.path.is_file():
        raise BundleError(f"files.{entry.key}: file missing: {entry.path}")
    actual = hash_file(entry.path)
    if actual != entry.sha256:
        raise BundleError(_mismatch(entry, actual))


class _Parser:
    """Typed reads from the YAML tree; every error carries ``manifest: dotted.key``."""

    def __init__(self, src: str) -> None:
        self.src = src

    def fail(self, where: str, msg: str) -> BundleError:
        return BundleError(f"{self.src}: {where}: {msg}")

    def get(self, d: Mapping[str, Any], key: str, where: str, default: Any = _MISSING) -> Any:
        if key in d:
            return d[key]
        if default is _MISSING:
            raise self.fail(f"{where}{key}", "missing key")
        return default

    def section(
        self, d: Mapping[str, Any], key: str, where: str, allowed: Sequence[str]
    ) -> Mapping[str, Any]:
        value = self.get(d, key, where)
        if not isinstance(value, Mapping):
            raise self.fail(f"{where}{key}", f"expected a mapping, got {value!r}")
        self.only(value, f"{where}{key}.", allowed)
        return value

    def only(self, d: Mapping[str, Any], where: str, allowed: Sequence[str]) -> None:
        for key in d:
            if key not in allowed:
                raise self.fail(f"{where}{key}", f"unknown key (allowed: {', '.join(allowed)})")

    def string(
        self, d: Mapping[str, Any], key: str, where: str, choices: Sequence[str] | None = None,
        default: Any = _MISSING,
    ) -> str:
        value = self.get(d, key, where, default)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{where}{key}", f"expected a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(f"{where}{key}", f"{value!r} not one of {', '.join(choices)}")
        return value

    def number(
        self, d: Mapping[str, Any], key: str, where: str, *, lo: float | None = None,
        lo_open: bool = False, hi: float | None = None, default: Any = _MISSING,
    ) -> float:
        return self.as_number(self.get(d, key, where, default), f"{where}{key}", lo=lo,
                              lo_open=lo_open, hi=hi)

    def as_number(
        self, value: Any, where: str, *, lo: float | None = None, lo_open: bool = False,
        hi: float | None = None,
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(where, f"expected a number, got {value!r}")
        bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
        if bad_lo or (hi is not None and value > hi) or not math.isfinite(value):
            lo_b = "(" if lo_open else "["
            raise self.fail(where, f"{value!r} out of range {lo_b}{lo}, {hi}]")
        return float(value)

    def integer(
        self, d: Mapping[str, Any], key: str, where: str, lo: int, default: Any = _MISSING
    ) -> int:
        value = self.get(d, key, where, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise self.fail(f"{where}{key}", f"expected an integer >= {lo}, got {value!r}")
        return value

    def flag(self, d: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        value = self.get(d, key, where, default)
        if not isinstance(value, bool):
            raise self.fail(f"{where}{key}", f"expected true/false, got {value!r}")
        return value

    def seq(self, d: Mapping[str, Any], key: str, where: str, n: int | None = None) -> list[Any]:
        value = self.get(d, key, where)
        if not isinstance(value, list) or not value or (n is not None and len(value) != n):
            want = f"{n} items" if n is not None else "a non-empty list"
            raise self.fail(f"{where}{key}", f"expected {want}, got {value!r}")
        return value

    def numbers(self, d: Mapping[str, Any], key: str, where: str, n: int) -> tuple[float, ...]:
        items = self.seq(d, key, where, n)
        return tuple(self.as_number(v, f"{where}{key}[{i}]") for i, v in enumerate(items))

    def bundle(self, root: Path, data: Mapping[str, Any]) -> Bundle:
        fmt = self.get(data, "format", "")
        if fmt != FORMAT:
            raise self.fail("format", f"expected {FORMAT!r}, got {fmt!r}")
        kind = self.string(data, "kind", "")
        if kind not in KINDS:
            raise self.fail("kind", f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
        self.only(data, "", ("format", "name", "kind", "files", "inputs", "outputs", "runtime",
                             "latency_budget_ms"))
        files = self.files(root, data)
        if "model" not in files:
            raise self.fail("files.model", f"missing key (a {kind} bundle needs its model)")
        inputs = self.section(data, "inputs", "", ("image", "sensors"))
        outputs = self.section(data, "outputs", "", ("decision",))
        rt = data.get("runtime", {})
        return Bundle(
            root=root,
            name=self.string(data, "name", ""),
            kind=kind,
            files=files,
            image=self.image(inputs),
            sensors=self.sensors(inputs) if "sensors" in inputs else None,
            decision=self.decision(outputs),
            runtime=self.runtime(rt),
            latency_budget_ms=self.number(data, "latency_budget_ms", "", lo=0.0, lo_open=True),
        )

    def files(self, root: Path, data: Mapping[str, Any]) -> dict[str, FileEntry]:
        raw = self.get(data, "files", "")
        if not isinstance(raw, Mapping) or not raw:
            raise self.fail("files", f"expected a non-empty mapping, got {raw!r}")
        base = root.resolve()
        out: dict[str, FileEntry] = {}
        for key in raw:
            where = f"files.{key}."
            entry = self.section(raw, key, "files.", ("path", "sha256"))
            rel = self.string(entry, "path", where)
            digest = self.string(entry, "sha256", where)
            if not _HEX64.match(digest):
                raise self.fail(f"{where}sha256", f"expected 64 lowercase hex, got {digest!r}")
            full = (base / rel).resolve()
            if Path(rel).is_absolute() or not full.is_relative_to(base):
                raise self.fail(f"{where}path", f"{rel!r} escapes the bundle dir {base}")
            out[str(key)] = FileEntry(key=str(key), rel=rel, path=full, sha256=digest)
        return out

    def image(self, inputs: Mapping[str, Any]) -> ImageSpec:
        w = "inputs.image."
        d = self.section(inputs, "image", "inputs.", ("name", "height", "width", "layout",
                                                     "color", "dtype", "mean", "std", "scale"))
        color = self.string(d, "color", w, tuple(COLORS))
        n = COLORS[color]
        std = self.numbers(d, "std", w, n)
        if any(s <= 0 for s in std):
            raise self.fail(f"{w}std", f"every std must be > 0, got {list(std)}")
        return ImageSpec(
            name=self.string(d, "name", w),
            height=self.integer(d, "height", w, 1),
            width=self.integer(d, "width", w, 1),
            layout=self.string(d, "layout", w, LAYOUTS),
            color=color,
            dtype=self.string(d, "dtype", w, DTYPES),
            mean=self.numbers(d, "mean", w, n),
            std=std,
            scale=self.number(d, "scale", w, lo=0.0, lo_open=True),
        )

    def sensors(self, inputs: Mapping[str, Any]) -> SensorSpec:
        w = "inputs.sensors."
        d = self.section(inputs, "sensors", "inputs.", ("name", "features", "range_clip_m"))
        feats = self.seq(d, "features", w)
        for f in feats:
            if f not in FEATURES:
                raise self.fail(f"{w}features", f"unknown feature {f!r} "
                                f"(allowed: {', '.join(FEATURES)})")
        if len(set(feats)) != len(feats):
            raise self.fail(f"{w}features", f"duplicate feature in {feats}")
        return SensorSpec(
            name=self.string(d, "name", w),
            features=tuple(feats),
            range_clip_m=self.number(d, "range_clip_m", w, lo=0.0, lo_open=True,
                                     default=DEFAULT_RANGE_CLIP_M),
        )

    def decision(self, outputs: Mapping[str, Any]) -> DecisionSpec:
        w = "outputs.decision."
        d = self.section(outputs, "decision", "outputs.", ("name", "kind", "labels",
                                                          "brake_label", "threshold"))
        kind = self.string(d, "kind", w, DECISION_KINDS)
        labels = self.seq(d, "labels", w, 2 if kind == "sigmoid" else None)
        if any(not isinstance(x, str) or not x for x in labels) or len(set(labels)) != len(labels):
            raise self.fail(f"{w}labels", f"expected distinct non-empty strings, got {labels!r}")
        brake = self.string(d, "brake_label", w)
        if brake not in labels:
            raise self.fail(f"{w}brake_label", f"{brake!r} is not one of labels {labels}")
        return DecisionSpec(
            name=self.string(d, "name", w),
            kind=kind,
            labels=tuple(labels),
            brake_label=brake,
            threshold=self.number(d, "threshold", w, lo=0.0, hi=1.0),
        )

    def runtime(self, rt: Any) -> RuntimeSpec:
        w = "runtime."
        if not isinstance(rt, Mapping):
            raise self.fail("runtime", f"expected a mapping, got {rt!r}")
        self.only(rt, w, tuple(asdict(RuntimeSpec())))
        dflt = RuntimeSpec()
        return RuntimeSpec(
            intra_op_num_threads=self.integer(rt, "intra_op_num_threads", w, 0,
                                              dflt.intra_op_num_threads),
            inter_op_num_threads=self.integer(rt, "inter_op_num_threads", w, 0,
                                              dflt.inter_op_num_threads),
            allow_spinning=self.flag(rt, "allow_spinning", w, dflt.allow_spinning),
            graph_optimization_level=self.string(rt, "graph_optimization_level", w, OPT_LEVELS,
                                                 dflt.graph_optimization_level),
        )
