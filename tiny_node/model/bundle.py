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
      # a graph keeping tensors in ONNX external data lists those files (write_manifest does):
      # model: {path: model.onnx, sha256: ..., data: [{path: model.onnx_data, sha256: ...}]}
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

``kind: vlm`` (a small vision-language model in the three-graph SmolVLM export layout) names
the files ``vision_encoder``, ``embed_tokens``, ``decoder``, ``tokenizer`` (+ optional
``config``), adds ``inputs.sensors.bins`` (sensor values as vocabulary tokens),
``outputs.decision.tokens`` (the decision words) and a ``vlm`` section (image token, prompt
template, eos, rationale length, KV layout, ``smolvlm`` flag); see :class:`VlmSpec` and
``docs/BUNDLE.md``. What needs the tokenizer or the graphs is checked by ``vlm.VlmRuntime``.
"""

from __future__ import annotations

import errno
import hashlib
import io
import math
import os
import re
import stat
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from tiny_node.camera import CameraMount
from tiny_node.model.conflict import ConflictSpec
from tiny_node.model.onnx_external import ExternalDataError, ExternalTensor, external_tensors, location_path
from tiny_node.model.tracker import TrackerConfig
from tiny_node.strict_yaml import safe_load_unique, yaml_problem

FORMAT = "tiny_node.bundle/1"
MANIFEST = "manifest.yaml"
KINDS = ("classifier", "vlm")
VLM_FILES = ("vision_encoder", "embed_tokens", "decoder", "tokenizer")
VLM_OPTIONAL_FILES = ("config", "vru_detector")
#: Prompt placeholders besides the sensor features (which take a format spec, ``{range:.0f}``).
PROMPT_SLOTS = ("image", "image_prev", "sensors", "context")
#: Largest width or precision in a feature's format spec (``{range:.1f}``): a prompt is a few
#: dozen tokens, and ``{range:999999999}`` made every decision a 1 GB string and 1.2 s.
MAX_PROMPT_SPEC_NUMBER = 64
#: Most threads a bundle's ``runtime`` may ask onnxruntime for: 100 000 crashed it (a segfault).
MAX_RUNTIME_THREADS = 256
#: largest bundle file: onnxruntime cannot parse a larger protobuf from bytes anyway, and a
#: file is read whole into memory (a 50 GB "model" would be hashed for minutes, then exhaust it)
MAX_FILE_BYTES = 2**31 - 1
#: largest ONNX external data file (``files.<key>.data``): 32 GiB, an fp32 model of 8 G parameters,
#: far past any that decides within a brake deadline on an on-board computer. It is checked
#: before hashing: hashing alone takes some 20 s at this size, and the node then holds the file
#: whole in memory while onnxruntime copies its tensors (twice its size, briefly)
MAX_DATA_BYTES = 2**35
MAX_MANIFEST_BYTES = 1 << 20  # the shipped one is 3.4 kB
#: a manifest string (a prompt template is the longest) and a label, which every model result carries
#: back from the worker and every decision's reason names (a 20 MiB label cost 47 ms a decision)
MAX_STRING_CHARS = 4096
MAX_LABEL_CHARS = 64
#: a model input image's side, and the visual tokens of one tile (SmolVLM: 512 px, 64 tokens); the
#: worker allocates by them at load (image_tokens_per_tile 2**31 - 1 made a 15 GB prompt)
MAX_IMAGE_SIDE = 4096
MAX_IMAGE_TOKENS = 16384
#: the JSON files (a real tokenizer.json is a few MB) are parsed whole, at several times their size
MAX_JSON_BYTES = {"tokenizer": 64 << 20, "config": 1 << 20}
MAX_FRAMES = 2  # vlm.frames.count: the current frame, plus at most one earlier frame
MAX_BINS = 4096  # per feature: keeps the vocabulary check at load cheap
LAYOUTS = ("NCHW", "NHWC")
COLORS = {"rgb": 3, "bgr": 3, "mono": 1}
DTYPES = ("float32",)
DECISION_KINDS = ("softmax", "sigmoid")
OPT_LEVELS = ("disable", "basic", "extended", "all")
DEFAULT_RANGE_CLIP_M = 100.0

#: Sensor features a bundle may ask for, with what the runtime feeds (see runtime.py).
FEATURES: dict[str, str] = {
    "ego_speed": "ego speed, m/s (required, finite)",
    "ego_yaw_rate": "ego yaw rate, rad/s (left +); 0 when missing (a straight road), an error when not finite",
    "range": "range to the lead object, m; +inf/NaN/missing -> range_clip_m, clipped to it",
    "range_rate": "range rate, m/s (negative = closing); 0 when unknown",
    "range_valid": "1 if a range measurement is valid, else 0 (missing -> 0)",
    "accel_x": "longitudinal acceleration, m/s^2; 0 when unknown",
}
#: Tracked-VRU features (``vlm.tracking``): slot k is the k-th confirmed track, nearest the
#: ego's path first; an empty slot is all 0. Fed by the runtime's detector + tracker.
MAX_TRACK_SLOTS = 4
TRACK_FEATURES = {"present": "1 if track slot k holds a track, else 0",
                  "dx": "its range from the front bumper, m",
                  "y": "its lateral offset, m (left +)",
                  "vy": "its lateral velocity, m/s (left +)",
                  "vx_rel": "its longitudinal velocity relative to the ego, m/s (negative = closing)"}
for _k in range(MAX_TRACK_SLOTS):
    for _f, _what in TRACK_FEATURES.items():
        FEATURES[f"vru{_k}_{_f}"] = _what.replace("slot k", f"slot {_k}")


def track_slot(feature: str) -> int | None:
    """The track slot ``k`` of a ``vru<k>_*`` feature name; None for any other name."""
    head, sep, _ = feature.partition("_")
    return int(head[3:]) if sep and head.startswith("vru") and head[3:].isdigit() else None


_HEX64 = re.compile(r"[0-9a-f]{64}")  # fullmatch: "$" would let a final newline in
_HEX16 = re.compile(r"[0-9a-f]{16}")  # a factory config digest
_PREFIX = re.compile(r"[A-Za-z0-9]+")
_MISSING: Any = object()


class BundleError(Exception):
    """A bundle is unusable; the message names the file, key or value at fault."""


@dataclass(frozen=True)
class FileEntry:
    """One checksummed file of a bundle."""

    key: str  # "decoder"; a graph's external data file: "decoder.data[0]"
    rel: str  # path as written in the manifest
    path: Path  # resolved absolute path (checked to be inside the bundle)
    sha256: str
    max_bytes: int = MAX_FILE_BYTES  # refused above this size, before it is hashed
    #: the graph's ONNX external data files (``files.<key>.data``), in manifest order
    data: tuple[FileEntry, ...] = ()


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
    #: rows [r0, r1) and columns [c0, c1) of the resized frame the graph reads; None = all.
    #: Why: a classifier's runtime normalises only this window (the rest of the tensor stays 0);
    #: in a VLM bundle it is the VRU detector's grid window and changes no tensor (a published
    #: SmolVLM encoder reads the whole tile: zeros would be mid-grey to it).
    roi: tuple[int, int, int, int] | None = None

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
class BinSpec:
    """One sensor feature as a vocabulary token: ``<{prefix}_{k}>``.

    ``k = clamp(floor(value / step + 0.5), lo, hi)`` on the value the model sees
    (preprocess.feature_value: range clipped, missing rate 0, ...). Why tokens and not a
    sensor embedding input: the model stays a pure language model (ids in, logits out), so
    the published three-graph export layout needs no extra input.
    """

    feature: str
    prefix: str
    step: float
    lo: int
    hi: int

    def index(self, value: float) -> int:
        """The bin of ``value`` (round half up, clamped to ``[lo, hi]``).

        Clamped before ``floor``: a huge finite value (1e308 / 0.25 is inf) or an infinity has
        no integer floor, and would cost the frame its model decision.
        """
        return min(math.floor(min(max(value / self.step + 0.5, self.lo), self.hi + 1)), self.hi)

    def token(self, value: float) -> str:
        """The vocabulary token of ``value``."""
        return f"<{self.prefix}_{self.index(value)}>"

    def all_tokens(self) -> list[str]:
        """Every token this feature can become (all must be in the vocabulary)."""
        return [f"<{self.prefix}_{k}>" for k in range(self.lo, self.hi + 1)]


@dataclass(frozen=True)
class SensorSpec:
    """Which sensor features feed the model, in order.

    Classifier: the float tensor ``name``. VLM: ``name`` is empty; the features fill the
    prompt, as bin tokens (``{sensors}``, one token per feature with a ``bins`` entry, in
    ``features`` order) and/or as formatted numbers (``{range:.0f}``).
    """

    name: str
    features: tuple[str, ...]
    range_clip_m: float = DEFAULT_RANGE_CLIP_M
    bins: tuple[BinSpec, ...] = ()


@dataclass(frozen=True)
class DecisionSpec:
    """How to read brake / no brake from the output tensor."""

    name: str
    kind: str
    labels: tuple[str, ...]
    brake_label: str
    threshold: float
    tokens: tuple[str, ...] = ()  # vlm: the vocabulary token of each label; () = the labels

    @property
    def label_tokens(self) -> tuple[str, ...]:
        """VLM: the token (string) whose next-token logit scores each label."""
        return self.tokens or self.labels

    @property
    def brake_index(self) -> int:
        """Index of ``brake_label`` in ``labels``."""
        return self.labels.index(self.brake_label)

    @property
    def width(self) -> int:
        """Values per batch row the output tensor must have."""
        return 1 if self.kind == "sigmoid" else len(self.labels)


@dataclass(frozen=True)
class KvSpec:
    """KV-cache layout of the decoder: ``past_key_values.{i}.key`` is [B, kv_heads, past, head_dim]."""

    num_layers: int
    num_kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class FrameSpec:
    """How many camera frames a ``vlm`` prompt shows, and how far apart.

    ``count`` 2: the prompt holds ``{image_prev}`` (before ``{image}``): the visual tokens of
    the frame nearest to ``t - interval_s``, if one is within ``tolerance_s`` of that time,
    else of the current frame again. Why: one frame shows no motion; a person walking into
    the lane and one standing at the kerb look the same in one image.
    """

    count: int = 1
    interval_s: float = 0.1
    tolerance_s: float = 0.04


@dataclass(frozen=True)
class TrackingSpec:
    """``vlm.tracking``: a VRU detector graph and tracker feeding the ``vru<k>_*`` features.

    Why: whether a person beside the lane needs a brake turns on their lateral velocity, which
    one frame does not show; the tracker measures it over frames (``model.tracker``).
    """

    detector: str  # files key of the detector graph
    tracks: int  # slots fed (vru0_* .. vru{tracks-1}_*)
    min_score: float
    sigma_px: float  # the detector's foot-point error, pixels (1 sigma)
    stride: int  # pixels per heat-map cell
    camera: CameraMount = field(default_factory=CameraMount)
    #: brake when a track's constant-velocity conflict with the ego's corridor starts this soon,
    #: whatever the threshold (``model.conflict``); None (or null): the model alone decides
    conflict: ConflictSpec | None = None
    #: m from the front bumper back to the rear axle, the axis the ego turns about: the tracker's
    #: turn on a curve (``TrackerConfig.rear_axle_m``). A property of the vehicle, as the camera is
    rear_axle_m: float = TrackerConfig.rear_axle_m


@dataclass(frozen=True)
class VlmSpec:
    """The language-model side of a ``kind: vlm`` bundle.

    ``prompt`` is a ``str.format`` template: ``{image}`` (exactly once) becomes
    ``image_token`` x ``image_tokens_per_tile``; ``{sensors}`` the bin tokens; ``{context}``
    the operator context; ``{<feature>[:spec]}`` a sensor value as a number. ``eos``: the
    tokens that end a rationale (the manifest's one string or list: a published chat model ends
    a turn with either of two, SmolVLM's ``generation_config.json`` lists ``<|im_end|>`` and
    ``<end_of_utterance>``); ``kv`` is optional (then read from the decoder graph or ``files.config``).
    ``smolvlm``: the vision encoder takes the published ``pixel_values`` [B, N, 3, H, W] and
    ``pixel_attention_mask`` [B, N, H, W] (one tile, N = 1) instead of [1, C, H, W].
    """

    smolvlm: bool
    image_token: str
    image_token_id: int
    image_tokens_per_tile: int
    prompt: str
    eos: tuple[str, ...]
    max_rationale_tokens: int
    kv: KvSpec | None = None
    frames: FrameSpec = field(default_factory=FrameSpec)
    tracking: TrackingSpec | None = None


@dataclass(frozen=True)
class RuntimeSpec:
    """onnxruntime session options (defaults favour a quiet, predictable CPU)."""

    intra_op_num_threads: int = 1
    inter_op_num_threads: int = 1
    allow_spinning: bool = False
    graph_optimization_level: str = "all"


@dataclass(frozen=True)
class BuildInfo:
    """How the factory made a bundle (optional ``build:``): enough to rebuild it.

    Why the thread count: torch's float reductions, and so the weights, depend on it.
    """

    config: str  # ``tiny-node model build --config``
    digest: str  # ``FactoryConfig.digest()``: 16 lowercase hex
    seed: int
    threads: int


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
    vlm: VlmSpec | None = None  # set iff kind == "vlm"
    build: BuildInfo | None = None  # set when the factory wrote its recipe

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
        limit = entry.max_bytes
        try:
            with open_regular(entry.path) as fh:
                data = read_bounded(fh, limit)
        except OSError as exc:
            raise BundleError(f"files.{key}: cannot read {entry.path}: {exc}") from exc
        if data is None:
            raise BundleError(_too_big(entry, None))
        actual = hashlib.sha256(data).hexdigest()
        if actual != entry.sha256:
            raise BundleError(_mismatch(entry, actual))
        return data

    def read_verified_data(self, key: str) -> list[bytearray]:
        """The external data files of graph ``key`` (``files.<key>.data``, in that order), each checked again.

        Each is read whole, to the size it has when opened (refused above its limit before a
        byte is read), into a buffer only this process holds, and hashed there: the bytes
        onnxruntime is handed are the very bytes that matched, whatever happens to the file.
        """
        return [_read_checked(d) for d in self.file(key).data]


def read_bounded(fh: io.BufferedReader, limit: int) -> bytes | None:
    """The file's bytes, or None when it has more than ``limit`` (at open or read).

    Why not ``fh.read(limit + 1)``: Python allocates the whole request before reading, so every
    graph load asked for 2 GiB (MAX_FILE_BYTES) whatever the file's size: a MemoryError under a
    memory limit (``ulimit -v``, ``vm.overcommit_memory=2``) for a 0.3 MB graph. The size the
    file has when opened bounds the request; a file grown since reads one byte more, which its
    hash check refuses; one over the limit is not read at all.
    """
    size = os.fstat(fh.fileno()).st_size
    if size > limit:
        return None
    data = fh.read(size + 1)
    return None if len(data) > limit else data


def open_regular(path: Path) -> io.BufferedReader:
    """``path`` opened for reading, refused (OSError) unless it is a regular file.

    Why: a FIFO put in a bundle's place made the load hang for ever, and a link to /dev/zero read
    2 GB before its size was refused (security review). The type is checked before the open (opening
    a device can act: a tty, a watchdog) and again on what was opened (it may have been swapped);
    O_NONBLOCK lets the open of a FIFO swapped in between return, and a regular file reads the same.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return io.BufferedReader(io.FileIO(fd, "rb"))  # buffered: read(n) returns n bytes, not one syscall's
    except BaseException:
        os.close(fd)
        raise


def _read_checked(entry: FileEntry) -> bytearray:
    try:
        with open_regular(entry.path) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > entry.max_bytes:
                raise BundleError(_too_big(entry, size))
            data = bytearray(size)
            got = 0
            with memoryview(data) as view:
                while got < size and (n := fh.readinto(view[got:])):
                    got += n
            if got < size or fh.read(1):
                raise BundleError(f"files.{entry.key}: {entry.path} changed size while it was read")
    except OSError as exc:
        raise BundleError(f"files.{entry.key}: cannot read {entry.path}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry.sha256:
        raise BundleError(_mismatch(entry, actual))
    return data


def hash_file(path: Path) -> str:
    """SHA-256 of a file as 64 lowercase hex digits (streamed, any size)."""
    digest = hashlib.sha256()
    with open_regular(Path(path)) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_digest(bundle_dir: Path) -> str:
    """SHA-256 of a bundle's ``manifest.yaml``: the bundle's identity (it holds each file's SHA-256)."""
    return hash_file(Path(bundle_dir) / MANIFEST)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader (or a kill) sees the old file or the new one, never half.

    Why: a manifest cut short by an interrupted write may still parse (a resumed build kept
    one that had lost its conflict brake), and the node verifies files against it.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def edit_manifest(bundle_dir: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``edit`` to a bundle's manifest document, write it, and check the bundle still loads.

    The checksums cover the model files, not the manifest, so its name, latency budget and
    threshold can change without re-hashing. The manifest is read as the loader reads it, and
    the edited one checked before it is written: read with a plain ``yaml.safe_load``, a key
    given twice (which the loader refuses) was resolved to its last value and written so.
    """
    path = bundle_dir / MANIFEST
    doc = _manifest_doc(path)
    parse_manifest(bundle_dir, doc, str(path))
    edit(doc)
    text = yaml.safe_dump(doc, sort_keys=False)
    _check_loadable(bundle_dir, path, text)
    write_atomic(path, text)
    load_bundle(bundle_dir)


def set_threshold(bundle_dir: Path, thr: float) -> None:
    """Move a bundle's operating point (the factory's val rule, ``tiny-node model operating-point``)."""
    def edit(doc: dict[str, Any]) -> None:
        doc["outputs"]["decision"]["threshold"] = float(thr)

    edit_manifest(bundle_dir, edit)


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
    vlm: Mapping[str, Any] | None = None,
) -> Path:
    """Hash ``files`` (key -> path relative to ``root``) and write ``root/manifest.yaml``.

    Used by generators and exporters so no one writes a checksum by hand. ``vlm`` is the
    ``vlm`` section of a ``kind: vlm`` bundle. A graph saved with ONNX external data gets its
    data files listed and hashed too (``data``), found from the graph itself. A file that cannot
    be hashed, or a manifest the loader would refuse (a key typed ``treshold``), raises a
    BundleError naming the key, and any manifest already there is left as it was.
    """
    root = Path(root)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "name": name,
        "kind": kind,
        "files": {k: _hashed_file_doc(root, k, p) for k, p in files.items()},
        "inputs": dict(inputs),
        "outputs": dict(outputs),
        "runtime": dict(runtime) if runtime is not None else asdict(RuntimeSpec()),
        "latency_budget_ms": float(latency_budget_ms),
    }
    if vlm is not None:
        manifest["vlm"] = dict(vlm)
    out = root / MANIFEST
    text = yaml.safe_dump(manifest, sort_keys=False)
    _check_loadable(root, out, text)
    write_atomic(out, text)
    return out


def _hashed_file_doc(root: Path, key: str, rel: str) -> dict[str, Any]:
    """``_file_doc``, with a file it cannot read (missing, a directory, a FIFO) named by its key, not a bare OSError."""
    try:
        return _file_doc(root, key, rel)
    except OSError as exc:
        raise BundleError(f"files.{key}: cannot read {root / rel}: {exc}") from exc


def _check_loadable(root: Path, out: Path, text: str) -> None:
    """Parse the manifest ``text`` as :func:`load_bundle` parses ``out`` (its files were just hashed).

    Why before writing: a manifest the loader refuses, written over a good one, left no bundle.
    Why the text, not the dict: the loader sees what YAML makes of it (a tuple is a list there).
    """
    src = f"{out} (not written)"
    parse_manifest(root, safe_load_unique(text, src), src)


def _file_doc(root: Path, key: str, rel: str) -> dict[str, Any]:
    """``files.<key>`` of the manifest: path, sha256 and, for a graph with external data, its data files.

    Every path passes the loader's check (``bundle_path``) first: a manifest written over links
    out of the directory (a Hugging Face cache snapshot) was written, then refused at every load.
    """
    doc: dict[str, Any] = {"path": rel, "sha256": hash_file(_writable(root, f"files.{key}", rel))}
    data = [] if key in MAX_JSON_BYTES else data_files(root, key, rel)
    if data:
        doc["data"] = [{"path": p, "sha256": hash_file(_writable(root, f"files.{key}.data[{i}]", p))}
                       for i, p in enumerate(data)]
    return doc


def _writable(root: Path, key: str, rel: str) -> Path:
    """``rel`` of the bundle at ``root`` if the loader takes its path; else a BundleError naming ``key``."""
    try:
        return bundle_path(root.resolve(), rel)
    except ValueError as exc:
        raise BundleError(f"{key}.path: {exc}") from exc


def data_files(root: Path, key: str, rel: str) -> list[str]:
    """The ONNX external data files (bundle-relative, in first use order) of the graph ``root/rel``.

    A file that is no readable ONNX graph, or over the size limit, has none: the node refuses it
    at load anyway. A location outside the graph's directory is refused here, naming it.
    """
    path = Path(root) / rel
    with open_regular(path) as fh:
        graph = read_bounded(fh, MAX_FILE_BYTES)
    if graph is None:
        return []
    try:
        tensors = external_tensors(graph)
    except ExternalDataError:
        return []
    out: list[str] = []
    for t in tensors:
        loc = str(data_location(key, path, rel, t))
        if loc not in out:
            out.append(loc)
    return out


def data_location(key: str, graph: Path, graph_rel: str, tensor: ExternalTensor) -> PurePosixPath:
    """The bundle-relative path of ``tensor``'s data file; a BundleError if it leaves the graph's directory.

    One judgement for the manifest writer and the loader (``runtime.load_session``).
    """
    loc = location_path(graph_rel, tensor.location)
    if loc is None:
        raise BundleError(f"files.{key}: {graph}: tensor {tensor.name!r} keeps its data in {tensor.location!r}, "
                          "outside the graph's directory (an absolute path or '..' is refused)")
    return loc


def bundle_path(base: Path, rel: str) -> Path:
    """``base / rel`` with symlinks resolved, which must stay inside ``base`` (resolved); a ValueError names why.

    One rule for the loader and the manifest writer: a manifest the writer accepts loads. Why
    resolved: a link may point anywhere, and what is verified must be what the bundle ships. A
    Hugging Face cache snapshot (``snapshot_download`` without ``local_dir``) is such a case:
    every file is a link into ``../../blobs``.
    """
    if Path(rel).is_absolute():
        raise ValueError(f"{rel!r} escapes the bundle dir {base} (an absolute path)")
    try:
        full = (base / rel).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        raise ValueError(f"cannot resolve {rel!r}: {exc}") from exc
    if full.is_relative_to(base):
        return full
    if os.path.normpath(base / rel).startswith(str(base) + os.sep):  # lexically inside: a link leads out
        raise ValueError(f"{rel!r} escapes the bundle dir {base}: it is a symlink to {full}. A bundle's files "
                         "must be in its directory, not links out of it (a Hugging Face cache snapshot links "
                         "every file into ../../blobs): download with `hf download REPO "
                         "--local-dir DIR` (snapshot_download(..., local_dir=DIR)), or copy the files with "
                         "the links resolved, `cp -rL SNAPSHOT DIR`, and write the manifest there")
    raise ValueError(f"{rel!r} escapes the bundle dir {base}")


def load_bundle(path: Path | str) -> Bundle:
    """Parse and validate ``path/manifest.yaml``, then verify every file's SHA-256."""
    bundle = read_manifest(path)
    for entry in bundle.files.values():
        for e in (entry, *entry.data):
            _verify(e)
    return bundle


def read_manifest(path: Path | str) -> Bundle:
    """Parse and validate ``path/manifest.yaml``; the files are not verified (:func:`load_bundle` does)."""
    root = Path(path)
    mpath = root / MANIFEST
    return parse_manifest(root, _manifest_doc(mpath), str(mpath))


def _manifest_doc(mpath: Path) -> Any:
    """The YAML document of the manifest ``mpath``, read as the loader reads it; or BundleError naming it."""
    try:
        with open_regular(mpath) as fh:
            raw = read_bounded(fh, MAX_MANIFEST_BYTES)
        if raw is None:
            raise BundleError(f"{mpath}: larger than {MAX_MANIFEST_BYTES} bytes: not a manifest")
        text = raw.decode("utf-8")
    except FileNotFoundError as exc:
        raise BundleError(f"{mpath}: manifest missing") from exc
    except OSError as exc:
        raise BundleError(f"{mpath}: cannot read manifest: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise BundleError(f"{mpath}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        data = safe_load_unique(text, str(mpath))  # a key given twice is refused, not the last one kept
    except yaml.YAMLError as exc:
        raise BundleError(f"{mpath}: not valid YAML: {yaml_problem(exc)}") from exc
    return data


def parse_manifest(root: Path, data: Any, src: str) -> Bundle:
    """The bundle a loaded manifest document describes (files not verified); BundleError naming ``src``."""
    if not isinstance(data, Mapping):
        raise BundleError(f"{src}: top level must be a mapping, got {type(data).__name__}")
    try:
        bundle = _Parser(src).bundle(root, data)
    except BundleError:
        raise
    except (TypeError, ValueError, OverflowError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        # a value of a shape no check foresaw: still a bad manifest (permanent), not a crash
        raise BundleError(f"{src}: malformed manifest ({type(exc).__name__}: {exc})") from exc
    if bundle.vlm is not None and bundle.vlm.tracking is not None and bundle.image.roi is None:
        # here, not only when the runtime loads: a check before a run (hil --model) passed it
        raise BundleError(f"{src}: vlm.tracking: needs inputs.image.roi (the window the detector's grid covers)")
    return bundle


def _mismatch(entry: FileEntry, actual: str) -> str:
    return (
        f"files.{entry.key}: checksum mismatch for {entry.path}: "
        f"manifest expects sha256 {entry.sha256!r}, file has {actual!r}"
    )


def _too_big(entry: FileEntry, size: int | None) -> str:
    """The error for a file over its limit; ``size`` None: read only up to the limit, so not known."""
    told = f"{size} bytes" if size is not None else "larger than that"
    return f"files.{entry.key}: {entry.path} is {told}: at most {entry.max_bytes} bytes are allowed"


def _verify(entry: FileEntry) -> None:
    try:  # OSError (EACCES, EIO, ENAMETOOLONG): still this file's fault, named like read_verified's
        if not entry.path.is_file():  # a directory or FIFO in its place is no missing file
            what = "not a regular file" if entry.path.exists() else "file missing"
            raise BundleError(f"files.{entry.key}: {what}: {entry.path}")
        size = entry.path.stat().st_size
        if size > entry.max_bytes:  # refused before hashing it, let alone reading it
            raise BundleError(_too_big(entry, size))
        actual = hash_file(entry.path)
    except OSError as exc:
        raise BundleError(f"files.{entry.key}: cannot read {entry.path}: {exc}") from exc
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
        default: Any = _MISSING, *, why: str = "",
    ) -> str:
        """A non-empty string of at most MAX_STRING_CHARS, one of ``choices`` if given (``why`` says why)."""
        value = self.get(d, key, where, default)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{where}{key}", f"expected a non-empty string, got {value!r}")
        if len(value) > MAX_STRING_CHARS:
            raise self.fail(f"{where}{key}", f"{len(value)} characters: at most {MAX_STRING_CHARS}")
        if choices is not None and value not in choices:
            raise self.fail(f"{where}{key}", f"{value!r} not one of {', '.join(choices)}" + (f": {why}" if why else ""))
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
        if isinstance(value, int) and abs(value) > 2**53:  # no float holds it exactly (nor past 1e308 at all)
            raise self.fail(where, f"{value} is too large a number")
        bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
        if bad_lo or (hi is not None and value > hi) or not math.isfinite(value):
            lo_b = "(" if lo_open else "["
            raise self.fail(where, f"{value!r} out of range {lo_b}{lo}, {hi}]")
        return float(value)

    def integer(
        self, d: Mapping[str, Any], key: str, where: str, lo: int, default: Any = _MISSING, *, hi: int = 2**31 - 1,
    ) -> int:
        value = self.get(d, key, where, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise self.fail(f"{where}{key}", f"expected an integer >= {lo}, got {value!r}")
        if value > hi:  # image sizes, token counts, slots: nothing of this size is real
            raise self.fail(f"{where}{key}", f"{value} is too large (at most {hi})")
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

    def eos(self, d: Mapping[str, Any], where: str) -> tuple[str, ...]:
        """``vlm.eos``: one token, or a list of up to 8 distinct ones (any of them ends a rationale)."""
        raw = self.get(d, "eos", where)
        items = raw if isinstance(raw, list) else [raw]
        if (not 0 < len(items) <= 8 or len(set(map(str, items))) != len(items)
                or any(not isinstance(x, str) or not 0 < len(x) <= MAX_LABEL_CHARS for x in items)):
            raise self.fail(f"{where}eos", f"expected a token or a list of up to 8 distinct tokens (non-empty strings "
                            f"of at most {MAX_LABEL_CHARS} characters), got {str(raw)[:200]}")
        return tuple(items)

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
        vlm = kind == "vlm"
        top = ("format", "name", "kind", "files", "inputs", "outputs", "runtime",
               "latency_budget_ms", "build")
        self.only(data, "", (*top, "vlm") if vlm else top)
        files = self.files(root, data)
        if vlm:
            self.only(files, "files.", (*VLM_FILES, *VLM_OPTIONAL_FILES))
            for key in VLM_FILES:
                if key not in files:
                    raise self.fail(f"files.{key}", "missing key (a vlm bundle needs "
                                    f"{', '.join(VLM_FILES)})")
        elif "model" not in files:
            raise self.fail("files.model", f"missing key (a {kind} bundle needs its model)")
        inputs = self.section(data, "inputs", "", ("image", "sensors"))
        outputs = self.section(data, "outputs", "", ("decision",))
        rt = data.get("runtime", {})
        sensors = self.sensors(inputs, vlm) if "sensors" in inputs else None
        image = self.image(inputs)
        if sensors is not None and sensors.name == image.name:  # one feed would overwrite the other
            raise self.fail("inputs.sensors.name", f"{image.name!r} is inputs.image.name too: each input is "
                                                   "its own tensor")
        return Bundle(
            root=root,
            name=self.string(data, "name", ""),
            kind=kind,
            files=files,
            image=image,
            sensors=sensors,
            decision=self.decision(outputs, vlm),
            runtime=self.runtime(rt),
            latency_budget_ms=self.number(data, "latency_budget_ms", "", lo=0.0, lo_open=True),
            vlm=self.vlm(data, sensors, files) if vlm else None,
            build=self.build(data) if "build" in data else None,
        )

    def build(self, data: Mapping[str, Any]) -> BuildInfo:
        w = "build."
        b = self.section(data, "build", "", ("config", "digest", "seed", "threads"))
        digest = self.string(b, "digest", w)
        if not _HEX16.fullmatch(digest):
            raise self.fail(f"{w}digest", f"expected 16 lowercase hex, got {digest!r}")
        return BuildInfo(config=self.string(b, "config", w), digest=digest,
                         seed=self.integer(b, "seed", w, 0), threads=self.integer(b, "threads", w, 1))

    def files(self, root: Path, data: Mapping[str, Any]) -> dict[str, FileEntry]:
        raw = self.get(data, "files", "")
        if not isinstance(raw, Mapping) or not raw:
            raise self.fail("files", f"expected a non-empty mapping, got {raw!r}")
        base = root.resolve()
        out: dict[str, FileEntry] = {}
        for key in raw:
            where = f"files.{key}."
            entry = self.section(raw, key, "files.", ("path", "sha256", "data"))
            ext: tuple[FileEntry, ...] = ()
            if "data" in entry:
                if key in MAX_JSON_BYTES:
                    raise self.fail(f"{where}data", "only a graph keeps ONNX external data")
                ext = self.data_files(base, entry, str(key))
            out[str(key)] = self.file_entry(base, entry, str(key), MAX_JSON_BYTES.get(key, MAX_FILE_BYTES), ext)
        return out

    def data_files(self, base: Path, entry: Mapping[str, Any], key: str) -> tuple[FileEntry, ...]:
        """``files.<key>.data``: a non-empty list of ``{path, sha256}``, each path once."""
        out: list[FileEntry] = []
        for i, item in enumerate(self.seq(entry, "data", f"files.{key}.")):
            dkey = f"{key}.data[{i}]"
            if not isinstance(item, Mapping):
                raise self.fail(f"files.{dkey}", f"expected a mapping {{path, sha256}}, got {item!r}")
            self.only(item, f"files.{dkey}.", ("path", "sha256"))
            d = self.file_entry(base, item, dkey, MAX_DATA_BYTES)
            for j, other in enumerate(out):
                if other.path == d.path:
                    raise self.fail(f"files.{dkey}.path", f"{d.rel!r} is listed already (data[{j}])")
            out.append(d)
        return tuple(out)

    def file_entry(self, base: Path, entry: Mapping[str, Any], key: str, max_bytes: int,
                   data: tuple[FileEntry, ...] = ()) -> FileEntry:
        """``path`` (inside ``base``) and ``sha256`` of ``files.<key>``."""
        where = f"files.{key}."
        rel = self.string(entry, "path", where)
        digest = self.string(entry, "sha256", where)
        if not _HEX64.fullmatch(digest):
            raise self.fail(f"{where}sha256", f"expected 64 lowercase hex, got {digest!r}")
        try:
            full = bundle_path(base, rel)
        except ValueError as exc:
            raise self.fail(f"{where}path", str(exc)) from exc
        return FileEntry(key=key, rel=rel, path=full, sha256=digest, max_bytes=max_bytes, data=data)

    def image(self, inputs: Mapping[str, Any]) -> ImageSpec:
        w = "inputs.image."
        d = self.section(inputs, "image", "inputs.", ("name", "height", "width", "layout",
                                                     "color", "dtype", "mean", "std", "scale",
                                                     "roi"))
        color = self.string(d, "color", w, tuple(COLORS))
        n = COLORS[color]
        std = self.numbers(d, "std", w, n)
        if any(s <= 0 for s in std):
            raise self.fail(f"{w}std", f"every std must be > 0, got {list(std)}")
        # what the worker allocates at load (a 50000 x 50000 probe asked for 7 GiB, then 28 as float32)
        height, width = (self.integer(d, "height", w, 1, hi=MAX_IMAGE_SIDE),
                         self.integer(d, "width", w, 1, hi=MAX_IMAGE_SIDE))
        return ImageSpec(
            name=self.string(d, "name", w),
            height=height,
            width=width,
            layout=self.string(d, "layout", w, LAYOUTS),
            color=color,
            # the preprocessing's type: an fp16 export's author writes float16 here, yet the VLM runtime
            # casts the pixels to the type the graph declares (VlmRuntime._pixels)
            dtype=self.string(d, "dtype", w, DTYPES, why=(
                "it is the preprocessing's type, not the graph's (a kind: vlm graph that takes float16 is fed "
                "float16, cast to the type it declares; a classifier's graph must take float32)")),
            mean=self.numbers(d, "mean", w, n),
            std=std,
            scale=self.number(d, "scale", w, lo=0.0, lo_open=True),
            roi=self.roi(d, w, height, width) if "roi" in d else None,
        )

    def roi(self, d: Mapping[str, Any], w: str, height: int, width: int) -> tuple[int, int, int, int]:
        """``[r0, r1, c0, c1]``: 0 <= r0 < r1 <= height, 0 <= c0 < c1 <= width."""
        items = self.seq(d, "roi", w, 4)
        if any(isinstance(v, bool) or not isinstance(v, int) for v in items):
            raise self.fail(f"{w}roi", f"expected 4 integers [r0, r1, c0, c1], got {items!r}")
        r0, r1, c0, c1 = (int(v) for v in items)
        if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
            raise self.fail(f"{w}roi", f"{items!r} is not a window of the {height}x{width} "
                            "frame (0 <= r0 < r1 <= height, 0 <= c0 < c1 <= width)")
        return r0, r1, c0, c1

    def sensors(self, inputs: Mapping[str, Any], vlm: bool = False) -> SensorSpec:
        w = "inputs.sensors."
        keys = ("features", "range_clip_m", "bins") if vlm else ("name", "features", "range_clip_m")
        d = self.section(inputs, "sensors", "inputs.", keys)
        feats = self.seq(d, "features", w)
        for f in feats:
            if not isinstance(f, str) or f not in FEATURES:
                raise self.fail(f"{w}features", f"unknown feature {f!r} "
                                f"(allowed: {', '.join(FEATURES)})")
        if len(set(feats)) != len(feats):
            raise self.fail(f"{w}features", f"duplicate feature in {feats}")
        if not vlm and any(str(f).startswith("vru") for f in feats):
            raise self.fail(f"{w}features", "tracked-VRU features need a kind: vlm bundle with vlm.tracking")
        return SensorSpec(
            name="" if vlm else self.string(d, "name", w),
            features=tuple(feats),
            range_clip_m=self.number(d, "range_clip_m", w, lo=0.0, lo_open=True,
                                     default=DEFAULT_RANGE_CLIP_M),
            bins=self.bins(d, feats) if "bins" in d else (),
        )

    def bins(self, d: Mapping[str, Any], feats: list[str]) -> tuple[BinSpec, ...]:
        raw = d["bins"]
        if not isinstance(raw, Mapping) or not raw:
            raise self.fail("inputs.sensors.bins", f"expected a non-empty mapping, got {raw!r}")
        self.only(raw, "inputs.sensors.bins.", feats)
        out = []
        for feat in feats:  # features order: the order of the tokens in {sensors}
            if feat not in raw:
                continue
            w = f"inputs.sensors.bins.{feat}."
            b = self.section(raw, feat, "inputs.sensors.bins.", ("prefix", "step", "lo", "hi"))
            prefix = self.string(b, "prefix", w)
            if not _PREFIX.fullmatch(prefix):
                raise self.fail(f"{w}prefix", f"expected letters and digits, got {prefix!r}")
            lo, hi = (self.get(b, k, w) for k in ("lo", "hi"))
            for k, v in (("lo", lo), ("hi", hi)):
                if isinstance(v, bool) or not isinstance(v, int):
                    raise self.fail(f"{w}{k}", f"expected an integer, got {v!r}")
            if not lo <= hi < lo + MAX_BINS:
                raise self.fail(f"{w}hi", f"need lo <= hi < lo + {MAX_BINS}, got lo {lo}, hi {hi}")
            out.append(BinSpec(feat, prefix, self.number(b, "step", w, lo=0.0, lo_open=True),
                               lo, hi))
        return tuple(out)

    def decision(self, outputs: Mapping[str, Any], vlm: bool = False) -> DecisionSpec:
        w = "outputs.decision."
        keys = ("name", "kind", "labels", "brake_label", "threshold")
        d = self.section(outputs, "decision", "outputs.", (*keys, "tokens") if vlm else keys)
        # vlm: a softmax over the next-token logits of the decision words only
        kind = self.string(d, "kind", w, ("softmax",) if vlm else DECISION_KINDS)
        labels = self.seq(d, "labels", w, 2 if kind == "sigmoid" else None)
        if len(labels) < 2:  # a softmax over one label is P(brake) = 1 on every frame
            raise self.fail(f"{w}labels", f"expected at least 2 labels (brake and another), got {labels!r}")
        if (any(not isinstance(x, str) or not 0 < len(x) <= MAX_LABEL_CHARS for x in labels)
                or len(set(labels)) != len(labels)):
            raise self.fail(f"{w}labels", f"expected distinct non-empty strings of at most {MAX_LABEL_CHARS} "
                            f"characters, got {str(labels)[:200]}")
        brake = self.string(d, "brake_label", w)
        if brake not in labels:
            raise self.fail(f"{w}brake_label", f"{brake!r} is not one of labels {labels}")
        tokens: tuple[str, ...] = ()
        if "tokens" in d:
            raw = self.seq(d, "tokens", w, len(labels))
            if (any(not isinstance(x, str) or not 0 < len(x) <= MAX_LABEL_CHARS for x in raw)
                    or len(set(raw)) != len(raw)):
                raise self.fail(f"{w}tokens", f"expected distinct non-empty strings of at most {MAX_LABEL_CHARS} "
                                f"characters, got {str(raw)[:200]}")
            tokens = tuple(raw)
        return DecisionSpec(
            name=self.string(d, "name", w),
            kind=kind,
            labels=tuple(labels),
            brake_label=brake,
            # open at 0: P(brake) >= 0 holds on every frame
            threshold=self.number(d, "threshold", w, lo=0.0, lo_open=True, hi=1.0),
            tokens=tokens,
        )

    def vlm(self, data: Mapping[str, Any], sensors: SensorSpec | None, files: Mapping[str, FileEntry]) -> VlmSpec:
        w = "vlm."
        d = self.section(data, "vlm", "", ("smolvlm", "image_token", "image_token_id",
                                           "image_tokens_per_tile", "prompt", "eos",
                                           "max_rationale_tokens", "kv", "frames", "tracking"))
        kv = None
        if "kv" in d:
            k = self.section(d, "kv", w, ("num_layers", "num_kv_heads", "head_dim"))
            kv = KvSpec(*(self.integer(k, key, "vlm.kv.", 1)
                          for key in ("num_layers", "num_kv_heads", "head_dim")))
        spec = VlmSpec(
            smolvlm=self.flag(d, "smolvlm", w, False),
            image_token=self.string(d, "image_token", w),
            image_token_id=self.integer(d, "image_token_id", w, 0),
            image_tokens_per_tile=self.integer(d, "image_tokens_per_tile", w, 1, hi=MAX_IMAGE_TOKENS),
            prompt=self.string(d, "prompt", w),
            eos=self.eos(d, w),
            max_rationale_tokens=self.integer(d, "max_rationale_tokens", w, 0),
            kv=kv,
            frames=self.frames(d["frames"]) if "frames" in d else FrameSpec(),
            tracking=self.tracking(d["tracking"], files) if "tracking" in d else None,
        )
        self.prompt(spec.prompt, sensors, spec.frames.count)
        slots = spec.tracking.tracks if spec.tracking is not None else 0
        for f in sensors.features if sensors is not None else ():
            slot = track_slot(f)
            if slot is not None and slot >= slots:
                raise self.fail("inputs.sensors.features", f"{f!r} needs vlm.tracking with more than "
                                f"{slot} track slot(s) (has {slots})")
        return spec

    def tracking(self, raw: Any, files: Mapping[str, FileEntry]) -> TrackingSpec:
        """``vlm.tracking``: detector file key, slots, score, pixel error, stride, camera, conflict, rear axle."""
        w = "vlm.tracking."
        if not isinstance(raw, Mapping):
            raise self.fail("vlm.tracking", f"expected a mapping, got {raw!r}")
        self.only(raw, w, ("detector", "tracks", "min_score", "sigma_px", "stride", "camera", "conflict",
                           "rear_axle_m"))
        key = self.string(raw, "detector", w)
        if key not in files:
            raise self.fail(f"{w}detector", f"{key!r} is not a key of files")
        tracks = self.integer(raw, "tracks", w, 1)
        if tracks > MAX_TRACK_SLOTS:
            raise self.fail(f"{w}tracks", f"{tracks}: at most {MAX_TRACK_SLOTS} slots")
        cam = CameraMount()
        if "camera" in raw:
            c = self.section(raw, "camera", w, tuple(asdict(cam)))
            cw = f"{w}camera."
            cam = CameraMount(
                hfov_deg=self.number(c, "hfov_deg", cw, lo=1.0, hi=179.0, default=cam.hfov_deg),
                pitch_deg=self.number(c, "pitch_deg", cw, lo=-30.0, hi=30.0, default=cam.pitch_deg),
                mount_height_m=self.number(c, "mount_height_m", cw, lo=0.0, lo_open=True, hi=10.0,
                                           default=cam.mount_height_m),
                setback_m=self.number(c, "setback_m", cw, lo=-10.0, hi=10.0, default=cam.setback_m))
        return TrackingSpec(
            detector=key, tracks=tracks,
            min_score=self.number(raw, "min_score", w, lo=0.0, lo_open=True, hi=1.0),
            sigma_px=self.number(raw, "sigma_px", w, lo=0.0, lo_open=True),
            stride=self.integer(raw, "stride", w, 1), camera=cam,
            conflict=self.conflict(raw, w) if raw.get("conflict") is not None else None,
            rear_axle_m=self.number(raw, "rear_axle_m", w, lo=0.0, hi=20.0, default=TrackerConfig.rear_axle_m))

    def conflict(self, raw: Mapping[str, Any], w: str) -> ConflictSpec:
        """``vlm.tracking.conflict``: brake_within_s (0-10 s), the corridor's geometry, the model's veto."""
        base = ConflictSpec(0.0)
        c = self.section(raw, "conflict", w, tuple(asdict(base)))
        cw = f"{w}conflict."
        return ConflictSpec(
            brake_within_s=self.number(c, "brake_within_s", cw, lo=0.0, lo_open=True, hi=10.0),
            half_width_m=self.number(c, "half_width_m", cw, lo=0.0, lo_open=True, hi=10.0,
                                     default=base.half_width_m),
            # > 0: a bumper-to-rear window of no length never overlaps the crossing, and 0 silently
            # turned the conflict brake off (review 2026-12-07)
            ego_length_m=self.number(c, "ego_length_m", cw, lo=0.0, lo_open=True, hi=30.0,
                                     default=base.ego_length_m),
            min_closing_mps=self.number(c, "min_closing_mps", cw, lo=0.0, hi=10.0, default=base.min_closing_mps),
            min_p_brake=self.number(c, "min_p_brake", cw, lo=0.0, hi=1.0, default=base.min_p_brake))

    def frames(self, raw: Any) -> FrameSpec:
        """``vlm.frames``: count 1..MAX_FRAMES, interval > 0, 0 < tolerance < interval."""
        w = "vlm.frames."
        if not isinstance(raw, Mapping):
            raise self.fail("vlm.frames", f"expected a mapping, got {raw!r}")
        self.only(raw, w, ("count", "interval_s", "tolerance_s"))
        count = self.integer(raw, "count", w, 1)
        if count > MAX_FRAMES:
            raise self.fail(f"{w}count", f"{count} frames: at most {MAX_FRAMES} are supported")
        interval = self.number(raw, "interval_s", w, lo=0.0, lo_open=True, hi=10.0,
                               default=FrameSpec.interval_s)
        tol = self.number(raw, "tolerance_s", w, lo=0.0, lo_open=True,
                          default=FrameSpec.tolerance_s)
        if tol >= interval:
            raise self.fail(f"{w}tolerance_s", f"{tol} must be below interval_s {interval} "
                            "(or the current frame could stand in for the earlier one)")
        return FrameSpec(count, interval, tol)

    def prompt(self, template: str, sensors: SensorSpec | None, frames: int = 1) -> None:
        """Known placeholders, ``{image}`` once, ``{sensors}`` iff bins, specs that format.

        Two frames: ``{image_prev}`` once, before ``{image}``; one frame: none.
        """
        where = "vlm.prompt"
        feats = sensors.features if sensors is not None else ()
        try:
            parts = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise self.fail(where, f"not a valid template: {exc}") from exc
        fields: list[str] = []
        for _, field_name, spec, conv in parts:
            if field_name is None:
                continue
            if field_name not in (*PROMPT_SLOTS, *feats):
                raise self.fail(where, f"unknown placeholder {{{field_name}}} (allowed: "
                                f"{', '.join((*PROMPT_SLOTS, *feats))}; features come from "
                                "inputs.sensors.features)")
            if conv is not None or (spec and field_name in PROMPT_SLOTS):
                raise self.fail(where, f"{{{field_name}}}: no conversion, and a format spec "
                                "only on a sensor feature")
            if spec:
                # a width or precision like 999999999 formats every frame into a GB string
                if any(int(n) > MAX_PROMPT_SPEC_NUMBER for n in re.findall(r"\d+", spec)):
                    raise self.fail(where, f"{{{field_name}:{spec}}}: a width or precision over "
                                    f"{MAX_PROMPT_SPEC_NUMBER}")
                try:
                    format(0.0, spec)
                except ValueError as exc:
                    raise self.fail(where, f"{{{field_name}:{spec}}}: {exc}") from exc
            fields.append(field_name)
        if fields.count("image") != 1:
            raise self.fail(where, f"needs {{image}} exactly once, found {fields.count('image')}")
        want_prev = 1 if frames == 2 else 0
        if fields.count("image_prev") != want_prev:
            raise self.fail(where, f"vlm.frames.count {frames} needs {{image_prev}} {want_prev} "
                            f"time(s), found {fields.count('image_prev')}")
        if want_prev and fields.index("image_prev") > fields.index("image"):
            raise self.fail(where, "{image_prev} must come before {image} (the earlier frame "
                            "first, as in training)")
        has_bins = sensors is not None and bool(sensors.bins)
        if ("sensors" in fields) != has_bins:
            raise self.fail(where, "{sensors} and inputs.sensors.bins go together "
                            f"({'bins without {sensors}' if has_bins else '{sensors} without bins'})")

    def runtime(self, rt: Any) -> RuntimeSpec:
        w = "runtime."
        if not isinstance(rt, Mapping):
            raise self.fail("runtime", f"expected a mapping, got {rt!r}")
        self.only(rt, w, tuple(asdict(RuntimeSpec())))
        dflt = RuntimeSpec()
        for key in ("intra_op_num_threads", "inter_op_num_threads"):
            n = rt.get(key)
            if isinstance(n, int) and not isinstance(n, bool) and n > MAX_RUNTIME_THREADS:
                raise self.fail(f"{w}{key}", f"{n} threads: at most {MAX_RUNTIME_THREADS} (0 = onnxruntime's choice)")
        return RuntimeSpec(
            intra_op_num_threads=self.integer(rt, "intra_op_num_threads", w, 0,
                                              dflt.intra_op_num_threads),
            inter_op_num_threads=self.integer(rt, "inter_op_num_threads", w, 0,
                                              dflt.inter_op_num_threads),
            allow_spinning=self.flag(rt, "allow_spinning", w, dflt.allow_spinning),
            graph_optimization_level=self.string(rt, "graph_optimization_level", w, OPT_LEVELS,
                                                 dflt.graph_optimization_level),
        )


#: The bundle the package ships (built by ``tiny-node model build``), named ``default``.
DEFAULT_BUNDLE_DIR = Path(__file__).resolve().parent.parent / "data" / "default_model"


def resolve_bundle_dir(value: str) -> Path | None:
    """``""`` = no model (rules only), ``"default"`` = the shipped bundle, else a directory."""
    if not value:
        return None
    if value == "default":
        return DEFAULT_BUNDLE_DIR
    return Path(value).expanduser()


def existing_bundle_dir(value: str) -> Path:
    """A command's bundle argument (``"default"`` or a directory) that holds a manifest.

    Raises BundleError naming the path otherwise, before any work is done on it.
    """
    path = resolve_bundle_dir(value)
    if path is None or not (path / MANIFEST).is_file():
        raise BundleError(f"{path or repr(value)}: no {MANIFEST} (not a bundle)")
    return path
