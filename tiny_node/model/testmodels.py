"""Small, real ONNX classifier bundles for tests, simulation and fault injection.

Why hand-set weights: tests need a model whose answer is known in advance, so the fast
model encodes a documented rule rather than a training run. With ``v`` = ego_speed (m/s),
``r`` = range (m, clipped), ``valid`` = range_valid and ``dark`` = mean of
ReLU(-luma) over the image (luma normalised to [-1, 1], so ``dark`` is in [0, 1])::

    f = (v - 0.5 * r) + 50 * (valid - 1) + 1.0 * dark
    logits = [-f / 2, f / 2]        # [no_brake, brake]; P(brake) = sigmoid(f)

So it brakes (threshold 0.5) when a valid range is below about two seconds of travel
(``r < 2 v``), a dark scene tips the balance by at most 1, and with no valid range it only
brakes above 100 m/s. range_rate is an input but weighted 0.

The slow model has the same contract and decision (plus at most 1e-3 on the brake logit)
and adds a long chain of MatMul(256x256)+Tanh pairs fed from the image, calibrated on this
CPU to take about ``target_ms``; the many small nodes let ``RunOptions.terminate`` (checked
between nodes) cancel it within about a millisecond.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from tiny_node.model.bundle import RuntimeSpec, write_manifest
from tiny_node.model.runtime import session_options

OPSET = 17
FEATURES = ("ego_speed", "range", "range_rate", "range_valid")
CHAIN_DIM = 256
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _conv_weights() -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """4 output channels over luma: brightness, darkness, x-edges, y-edges."""
    box = np.full((3, 3), 1.0 / 9.0, dtype=np.float32)
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32) / 8.0
    kernels = [box, -box, sobel_x, sobel_x.T]
    w = np.stack([_LUMA[:, None, None] * k[None] for k in kernels]).astype(np.float32)
    return w, np.zeros(4, dtype=np.float32)


def _head_weights() -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Gemm over [bright, dark, edge_x, edge_y, ego_speed, range, range_rate, range_valid]."""
    g = np.array([0.0, 1.0, 0.0, 0.0, 1.0, -0.5, 0.0, 50.0], dtype=np.float32)
    w = np.stack([-g / 2, g / 2], axis=1).astype(np.float32)  # [8, 2]
    return w, np.array([25.0, -25.0], dtype=np.float32)  # bias -50 on f, split in halves


def _graph(size: int, chain: int, name: str) -> onnx.ModelProto:
    """Build the classifier; ``chain`` > 0 adds that many MatMul+Tanh pairs."""
    conv_w, conv_b = _conv_weights()
    gemm_w, gemm_b = _head_weights()
    inits = [
        numpy_helper.from_array(conv_w, "conv_w"),
        numpy_helper.from_array(conv_b, "conv_b"),
        numpy_helper.from_array(gemm_w, "gemm_w"),
        numpy_helper.from_array(gemm_b, "gemm_b"),
    ]
    head = "logits" if chain == 0 else "logits_fast"
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["img_feat"], axis=1),
        helper.make_node("Concat", ["img_feat", "sensors"], ["feat"], axis=1),
        helper.make_node("Gemm", ["feat", "gemm_w", "gemm_b"], [head]),
    ]
    if chain > 0:
        nodes += _chain_nodes(chain, inits, head)
    graph = helper.make_graph(
        nodes,
        name,
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size]),
            helper.make_tensor_value_info("sensors", TensorProto.FLOAT, [1, len(FEATURES)]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])],
        inits,
    )
    model = _model(graph)
    onnx.checker.check_model(model)
    return model


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    """``graph`` as a model of opset OPSET and the lowest IR it needs (onnxruntime < 1.24 refuses the newest)."""
    opsets = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="tiny_node.testmodels")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model


def _chain_nodes(n: int, inits: list[onnx.TensorProto], head: str) -> list[onnx.NodeProto]:
    """Image-dependent 256x256 state through ``n`` MatMul+Tanh pairs (no constant folding)."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((CHAIN_DIM, CHAIN_DIM)) / np.sqrt(CHAIN_DIM)).astype(np.float32)
    base = rng.uniform(-1, 1, (CHAIN_DIM, CHAIN_DIM)).astype(np.float32)
    inits += [
        numpy_helper.from_array(w, "chain_w"),
        numpy_helper.from_array(base, "chain_base"),
        numpy_helper.from_array(np.array([[0.0, 1e-3]], dtype=np.float32), "chain_coef"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["img_mean4"], keepdims=1),
        helper.make_node("Flatten", ["img_mean4"], ["img_mean"], axis=1),  # [1, 1]
        helper.make_node("Add", ["chain_base", "img_mean"], ["h0"]),
    ]
    for i in range(n):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "chain_w"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"h{i + 1}"]))
    nodes += [
        helper.make_node("ReduceMean", [f"h{n}"], ["chain_mean4"], keepdims=1),  # [1, 1]
        helper.make_node("Mul", ["chain_mean4", "chain_coef"], ["chain_term"]),  # [1, 2]
        helper.make_node("Add", [head, "chain_term"], ["logits"]),
    ]
    return nodes


def _manifest_parts(size: int) -> dict[str, Any]:
    return {
        "inputs": {
            "image": {"name": "image", "height": size, "width": size, "layout": "NCHW",
                      "color": "rgb", "dtype": "float32", "mean": [0.5, 0.5, 0.5],
                      "std": [0.5, 0.5, 0.5], "scale": 1.0 / 255.0},
            "sensors": {"name": "sensors", "features": list(FEATURES), "range_clip_m": 100.0},
        },
        "outputs": {
            "decision": {"name": "logits", "kind": "softmax", "labels": ["no_brake", "brake"],
                         "brake_label": "brake", "threshold": 0.5},
        },
    }


def _write(directory: Path, model: onnx.ModelProto, name: str, budget_ms: float,
           size: int) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(model.SerializeToString())
    write_manifest(directory, name=name, files={"model": "model.onnx"},
                   latency_budget_ms=budget_ms, **_manifest_parts(size))
    return directory


def make_fast_bundle(directory: Path, size: int = 64) -> Path:
    """Write the fast hand-weighted conv classifier bundle into ``directory``."""
    return _write(directory, _graph(size, 0, "test_fast"), "test-fast", 5.0, size)


def make_fast_bundle_with(directory: Path, graph: onnx.GraphProto) -> Path:
    """The fast bundle (64 px) with ``graph`` as its model (opset OPSET), its manifest written for it.

    Why: a test of one runtime fault (an output of another shape, a graph allocating 1 GiB) needs a
    bundle that loads as any other, with only its graph different.
    """
    return _write(directory, _model(graph), "test-fast", 5.0, 64)


def time_run_ms(model: onnx.ModelProto, runs: int = 5) -> float:
    """Median single-thread latency (ms) of ``model`` on this CPU, after one warm-up."""
    sess = ort.InferenceSession(model.SerializeToString(), session_options(RuntimeSpec()),
                                providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
             for i in sess.get_inputs()}
    sess.run(None, feeds)
    lat = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        lat.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(lat))


def calibrate_chain(target_ms: float, size: int = 64, probe: int = 64) -> int:
    """Return the MatMul+Tanh pair count that makes one run take about ``target_ms`` here."""
    base = time_run_ms(_graph(size, 1, "probe0"))
    probe_ms = time_run_ms(_graph(size, probe + 1, "probe"))
    per_pair = max((probe_ms - base) / probe, 1e-3)
    return int(min(max(round((target_ms - base) / per_pair), 8), 50_000))


def make_slow_bundle(directory: Path, target_ms: float = 200.0, size: int = 64,
                     chain: int | None = None) -> Path:
    """Write the slow bundle (same contract, ~``target_ms`` per run, many small nodes).

    ``chain`` fixes the pair count (reproducible files); by default it is calibrated.
    """
    n = calibrate_chain(target_ms, size) if chain is None else chain
    return _write(directory, _graph(size, n, f"test_slow_{n}"), "test-slow", target_ms, size)


def write_test_bundles(root: Path, slow_ms: float = 200.0) -> dict[str, Path]:
    """Write ``fast`` and ``slow`` bundles under ``root``; return their directories."""
    root = Path(root)
    return {
        "fast": make_fast_bundle(root / "fast"),
        "slow": make_slow_bundle(root / "slow", target_ms=slow_ms),
    }


def occupied(directory: Path) -> str | None:
    """Why a command must not write its test bundles into ``directory`` (None: it may).

    Why: the generators write fixed names (model.onnx, manifest.yaml, onnx/, ...) and replace what
    is there, so a user's own bundle in that directory was overwritten without a word. Only the
    commands refuse (unless ``--force``): tests regenerate into their own directories.
    """
    try:
        taken = directory.is_dir() and any(directory.iterdir())
    except OSError:  # unreadable: the write that follows fails and says why
        return None
    if not taken:
        return None
    return f"{directory} exists and is not empty: files in it would be overwritten (--force to write into it anyway)"


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m tiny_node.model.testmodels OUT_DIR [--slow-ms MS] [--force]``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("out", type=Path)
    ap.add_argument("--slow-ms", type=float, default=200.0)
    ap.add_argument("--force", action="store_true", help="write into OUT_DIR even if it is not empty")
    args = ap.parse_args(argv)
    refusal = None if args.force else occupied(args.out)
    if refusal:
        print(f"{ap.prog}: error: {refusal}", file=sys.stderr)
        return 2
    for kind, path in write_test_bundles(args.out, args.slow_ms).items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
