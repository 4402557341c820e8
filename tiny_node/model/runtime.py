"""One onnxruntime session configured from a bundle, with its pre- and post-processing.

Why a wrapper: the session options that matter under a deadline (thread counts, no
spinning, dynamic block base) come from the manifest and are applied in one place, and the
graph's inputs/outputs are checked against the manifest at load, not on the first frame.
Runs inside the worker process; a run can be cancelled between nodes through its
``RunOptions.terminate``. :func:`load_runtime` picks the runtime for a bundle's ``kind``
(``classifier`` here, ``vlm`` in vlm.py); both answer :class:`Runtime`.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from tiny_node.model.bundle import Bundle, BundleError, RuntimeSpec, data_location
from tiny_node.model.onnx_external import (
    MAIN_INITIALIZER,
    ExternalDataError,
    ExternalTensor,
    external_tensors,
    tensor_array,
)
from tiny_node.model.output import ModelOutput, read_decision
from tiny_node.model.preprocess import ImagePreprocessor, sensor_vector

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_FLOAT = "tensor(float)"


def session_options(spec: RuntimeSpec, threads: int | None = None) -> ort.SessionOptions:
    """SessionOptions from the manifest; ``threads`` overrides ``intra_op_num_threads``.

    Spinning off: idle ORT threads block instead of burning the core the deadline thread
    needs. ``dynamic_block_base`` 4 is documented by ORT to reduce latency variance.
    """
    so = ort.SessionOptions()
    so.intra_op_num_threads = spec.intra_op_num_threads if threads is None else threads
    so.inter_op_num_threads = spec.inter_op_num_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = _OPT_LEVELS[spec.graph_optimization_level]
    spin = "1" if spec.allow_spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    so.add_session_config_entry("session.dynamic_block_base", "4")
    return so


class Runtime(Protocol):
    """What the worker needs from any runtime: a decision per frame, and a warm-up."""

    bundle: Bundle

    def decide(
        self, image_rgb: NDArray[np.uint8], features: Mapping[str, float], context: str = "",
        run_options: ort.RunOptions | None = None, *, time_s: float | None = None,
    ) -> ModelOutput:
        """Decide one frame taken at ``time_s`` (s, None = unknown); terminate makes ORT raise."""
        ...

    def warm_up(self, runs: int, rationale_tokens: int | None = None) -> list[float]:
        """Run ``runs`` decisions on the exact input shapes; return each latency in ms.

        A runtime that writes rationales also decodes one, of up to ``rationale_tokens``.
        """
        ...


#: What a bundle's content raises while its runtime is built (a config.json value, a shape): the same on
#: every start, so a fault of the bundle, not a failure a restart cures (security review).
CONTENT_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError, RecursionError)


def load_runtime(bundle: Bundle, threads: int | None = None) -> Runtime:
    """The runtime for ``bundle.kind``: :class:`ModelRuntime` or ``vlm.VlmRuntime``."""
    if bundle.kind == "vlm":
        from tiny_node.model.vlm import VlmRuntime  # tokenizers only for a vlm bundle

        return VlmRuntime(bundle, threads)
    return ModelRuntime(bundle, threads)


def load_session(bundle: Bundle, key: str, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session built from the verified bytes of ``files.<key>``.

    The bytes are hashed again here: what runs is exactly what was checked. A graph keeping
    tensors in ONNX external data: every location must be a file ``files.<key>.data`` lists,
    and every listed file used; each is read whole and hashed again (``read_verified_data``),
    and the tensors are handed to onnxruntime as numpy views of those bytes
    (``SessionOptions.add_external_initializers``), so onnxruntime never opens a data file.
    It copies them into the session (1.16 and 1.32 measured, and pinned by a test), so the
    buffers are let go on return: about twice the data in memory while the session is built,
    once after. Such a session must not be rebuilt by ``set_providers`` (its options still
    point at those buffers).
    """
    if threads is not None and threads < 0:
        raise ValueError(f"threads must be >= 0 (0 = ORT default), got {threads}")
    model = bundle.read_verified(key)
    so = session_options(bundle.runtime, threads)
    try:
        tensors = external_tensors(model)
    except ExternalDataError as exc:
        # not handed to onnxruntime: it may read a location the scan could not check (from the
        # working directory) before it fails, or load what the scan refuses
        raise BundleError(f"files.{key}: {bundle.file(key).path}: {exc}") from exc
    if not tensors and not bundle.file(key).data:
        return _session(bundle, key, model, so)
    keep = _add_external_data(bundle, key, tensors, so)
    session = _session(bundle, key, model, so)
    del keep  # copied into the session by onnxruntime
    return session


def _session(bundle: Bundle, key: str, model: bytes, so: ort.SessionOptions) -> ort.InferenceSession:
    try:
        # With ORT_LOAD_CONFIG_FROM_MODEL=1 in the environment a graph's own ort_config metadata
        # replaced the manifest's session options (profiling files, thread counts). onnxruntime's C++
        # reads the variable too (read_config_from_model=0 beside it fails every load), so it goes.
        os.environ.pop("ORT_LOAD_CONFIG_FROM_MODEL", None)
        return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
    except MemoryError:
        raise
    except Exception as exc:  # ORT raises its own pybind types; keep the message
        path = bundle.file(key).path
        raise BundleError(f"files.{key}: onnxruntime cannot load {path}: {exc}{_kernel_hint(str(exc))}") from exc


def _kernel_hint(error: str) -> str:
    """What to do about an op this onnxruntime has no CPU kernel for, where it is known ('' else).

    Why: a dynamically quantized export's int8-weight ``ConvInteger`` (SmolVLM's ``*_int8``
    vision encoder) has a kernel from onnxruntime 1.24 on only, and 1.23 is the newest for
    Python 3.10 (Humble); the bare NOT_IMPLEMENTED did not say so (review).
    """
    if "implementation for ConvInteger" in error:
        return (f" (onnxruntime {ort.__version__} has no ConvInteger kernel for int8 weights, added in 1.24: "
                "use onnxruntime >= 1.24, or the export's uint8-weight variant, e.g. *_uint8.onnx / *_quantized.onnx)")
    return ""


def _add_external_data(bundle: Bundle, key: str, tensors: Sequence[ExternalTensor],
                       so: ort.SessionOptions) -> list[Any]:
    """Hand graph ``key``'s external tensors to ``so`` from its verified data files.

    Returns what must stay alive until the session is built (the buffers behind the views).
    """
    entry = bundle.file(key)
    listed = {d.path: i for i, d in enumerate(entry.data)}
    shown = ", ".join(repr(d.rel) for d in entry.data) or "nothing"
    used: list[int] = []
    for t in tensors:
        if t.where != MAIN_INITIALIZER:
            raise BundleError(f"files.{key}: {entry.path}: tensor {t.name!r} ({t.where}) keeps its data in "
                              f"{t.location!r}; only initializers of the main graph may (onnxruntime takes "
                              "verified bytes for those alone): save that tensor inside the graph")
        rel = data_location(key, entry.path, entry.rel, t)
        try:
            full = (bundle.root / rel).resolve()
        except (OSError, RuntimeError) as exc:
            raise BundleError(f"files.{key}: {entry.path}: tensor {t.name!r}: cannot resolve {t.location!r}: "
                              f"{exc}") from exc
        if full not in listed:
            raise BundleError(f"files.{key}: {entry.path} keeps tensor {t.name!r} in {t.location!r} ({full}), "
                              f"which files.{key}.data does not list (it lists {shown})")
        used.append(listed[full])
    unused = sorted(set(range(len(entry.data))) - set(used))
    if unused:
        d = entry.data[unused[0]]
        raise BundleError(f"files.{key}.data[{unused[0]}]: no tensor of {entry.path} keeps its data in {d.path}")
    names = [t.name for t in tensors]
    twice = sorted(n for n, c in Counter(names).items() if c > 1)
    if twice:
        raise BundleError(f"files.{key}: {entry.path}: external tensors named twice: {twice}")
    buffers = bundle.read_verified_data(key)
    values = []
    for t, i in zip(tensors, used, strict=True):
        try:
            values.append(ort.OrtValue.ortvalue_from_numpy(tensor_array(t, buffers[i])))
        except ValueError as exc:  # ExternalDataError, or numpy's (more dims than an array may have)
            raise BundleError(f"files.{key}.data[{i}]: {entry.data[i].path}: {exc}") from exc
    so.add_external_initializers(names, values)
    return [buffers, values]


def probe_run(sess: ort.InferenceSession, outputs: Sequence[str], feeds: Mapping[str, NDArray[Any]],
              what: str) -> list[Any]:
    """One load-time run on the manifest's input shapes; a failure is a bundle fault.

    Why: a graph with symbolic dims passes the static I/O checks yet may not run at the
    manifest's sizes (a Reshape to the size it was exported for, another float type). Raised
    as-is it reads as a worker init failure, retried forever, with no file or key named.
    """
    try:
        return list(sess.run(list(outputs), dict(feeds)))
    except MemoryError:
        raise
    except Exception as exc:  # ORT raises its own pybind types; keep the message
        shown = ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in feeds.items() if v.size)  # not an empty past
        raise BundleError(f"{what} cannot run on {shown}: {exc}") from exc


class ModelRuntime:
    """A verified, I/O-checked inference session for one classifier bundle."""

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        if bundle.kind != "classifier":
            raise BundleError(f"{bundle.root}: kind {bundle.kind!r} is not a classifier "
                              "(load_runtime() picks the runtime for any kind)")
        self.bundle = bundle
        self.session = load_session(bundle, "model", threads)
        self._check_io()
        self._image = ImagePreprocessor(bundle.image)
        self._probe()

    def _expected_inputs(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        b = self.bundle
        out = {b.image.name: ("inputs.image.name", tuple(b.image.shape))}
        if b.sensors is not None:
            out[b.sensors.name] = ("inputs.sensors.name", (1, len(b.sensors.features)))
        return out

    def _check_io(self) -> None:
        where = self.bundle.file("model").path
        graph_in = {i.name: i for i in self.session.get_inputs()}
        expected = self._expected_inputs()
        for name, (key, shape) in expected.items():
            if name not in graph_in:
                raise BundleError(f"{key}: {where} has no input {name!r} "
                                  f"(graph inputs: {sorted(graph_in)})")
            _check_arg(graph_in[name], shape, key, where)
        extra = sorted(set(graph_in) - set(expected))
        if extra:
            raise BundleError(f"inputs: {where} needs inputs not in the manifest: {extra}")
        dec = self.bundle.decision
        graph_out = {o.name: o for o in self.session.get_outputs()}
        if dec.name not in graph_out:
            raise BundleError(f"outputs.decision.name: {where} has no output {dec.name!r} "
                              f"(graph outputs: {sorted(graph_out)})")
        _check_arg(graph_out[dec.name], (1, dec.width), "outputs.decision", where)

    def _probe(self) -> None:
        """One run at load: the graph must run at the manifest's shapes and give ``dec.width`` values."""
        img, dec = self.bundle.image, self.bundle.decision
        where = self.bundle.file("model").path
        feeds = self.preprocess(np.full((img.height, img.width, 3), 128, np.uint8), {"ego_speed": 0.0})
        (out,) = probe_run(self.session, [dec.name], feeds, f"inputs: {where}")
        if np.size(out) != dec.width:
            raise BundleError(f"outputs.decision: {where}: {dec.name!r} gives {list(np.shape(out))}, the "
                              f"manifest's {dec.kind} over labels {list(dec.labels)} reads [1, {dec.width}]")

    def preprocess(
        self, image_rgb: NDArray[np.uint8], features: Mapping[str, float]
    ) -> dict[str, NDArray[np.float32]]:
        """Build the feeds for one frame (RGB HxWx3 or mono HxW uint8) and its sensors."""
        feeds = {self.bundle.image.name: self._image(image_rgb)}
        if self.bundle.sensors is not None:
            feeds[self.bundle.sensors.name] = sensor_vector(features, self.bundle.sensors)
        return feeds

    def infer(
        self, feeds: Mapping[str, NDArray[np.float32]], run_options: ort.RunOptions | None = None
    ) -> ModelOutput:
        """Run once and read the decision; a set ``run_options.terminate`` makes ORT raise."""
        dec = self.bundle.decision
        (out,) = self.session.run([dec.name], dict(feeds), run_options)
        return read_decision(out, dec)

    def decide(
        self, image_rgb: NDArray[np.uint8], features: Mapping[str, float], context: str = "",
        run_options: ort.RunOptions | None = None, *, time_s: float | None = None,
    ) -> ModelOutput:
        """Preprocess and infer one frame (a classifier: ``context``, ``time_s`` unused)."""
        del context, time_s
        return self.infer(self.preprocess(image_rgb, features), run_options)

    def warm_up(self, runs: int, rationale_tokens: int | None = None) -> list[float]:
        """Run ``runs`` times on the exact input shapes; return each latency in ms (no rationale here).

        Why: the first runs (and every new shape) pay allocation and kernel selection;
        doing that before ``ready`` keeps it out of the first real deadline.
        """
        img = self.bundle.image
        frame = np.full((img.height, img.width, 3), 128, dtype=np.uint8)
        feeds = self.preprocess(frame, {"ego_speed": 0.0})
        lat: list[float] = []
        for _ in range(runs):
            t0 = time.perf_counter()  # real time is the point: this measures inference
            self.infer(feeds)
            lat.append((time.perf_counter() - t0) * 1e3)
        return lat


def _check_arg(arg: Any, shape: tuple[int, ...], key: str, where: object) -> None:
    """Check one graph input/output: float32 and ``shape`` (symbolic dims accepted)."""
    if arg.type != _FLOAT:
        raise BundleError(f"{key}: {where}: {arg.name!r} is {arg.type}, expected {_FLOAT}")
    dims = list(arg.shape)
    ok = len(dims) == len(shape) and all(
        not isinstance(d, int) or d == s for d, s in zip(dims, shape, strict=True)
    )
    if not ok:
        raise BundleError(f"{key}: {where}: {arg.name!r} has shape {dims}, "
                          f"manifest implies {list(shape)}")
