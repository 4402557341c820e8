"""``tiny-node model format-bench BUILD``: graph time of a build's bundle formats, interleaved.

Why: whether INT8 is faster than FP32 is the difference of two sub-millisecond times, and the
build's table measures each bundle in its own run, minutes apart on a shared machine. Here
every bundle decides the same rendered frame in turn (round robin, one thread), so machine
noise falls on all alike, and each part is timed apart: the language model's stages (vision
encoder, embedding, decoder prefill), the VRU detector graph (FP32 in every bundle the build
makes; a bundle with another one shows it), and the detector + tracker (``track``). No torch needed.

Then each FP32 model's decoder weight MatMuls are timed alone, FP32 against the factory's
static INT8 form, at the prefill's row count: why INT8 pays at one width and not at another
is a property of the kernel at that shape, which the whole-graph figures cannot show.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tiny_node.model.bundle import BundleError, existing_bundle_dir, load_bundle

if TYPE_CHECKING:
    from tiny_node.model.vlm import VlmRuntime

#: FP32 first: the student's formats are compared to the pruned FP32 bundle, the teacher's INT8 to the teacher
FORMATS = ("pruned", "int8", "int8_dynamic", "int8_mixed", "teacher", "teacher_int8")
LM_STAGES = ("vision", "embed", "prefill")


def measure(bundles: dict[str, Path], rounds: int) -> dict[str, dict[str, float]]:
    """p50 / p99 (ms) of the language-model stages, the VRU detector graph and ``track``, per bundle.

    ``model``: language model + detector, every graph a decision runs (the tracker's numpy is not a graph).
    """
    from tiny_node.factory.tracker_bench import FPS, render_drives
    from tiny_node.model.vlm import VlmRuntime

    drives = render_drives()
    frames = [(img, v) for d in drives for img, v in zip(d.frames, d.ego_speed, strict=True)]
    runtimes = {name: VlmRuntime(load_bundle(path), threads=1) for name, path in bundles.items()}
    for rt in runtimes.values():
        rt.warm_up(20)
    times: dict[str, dict[str, list[float]]] = {name: {"lm": [], "detector": [], "track": []} for name in bundles}
    for k in range(rounds):
        img, v = frames[k % len(frames)]
        feats = {"ego_speed": v, "range": math.nan, "range_rate": 0.0, "range_valid": 0.0}
        for name, rt in runtimes.items():
            rt.decide(img, feats, "", time_s=k / FPS)
            t = times[name]
            t["lm"].append(sum(rt.last_ms[s] for s in LM_STAGES))
            t["detector"].append(rt.last_ms["detector"])
            t["track"].append(rt.last_ms["track"])
    out: dict[str, dict[str, float]] = {}
    for name, t in times.items():
        series = {**t, "model": np.add(t["lm"], t["detector"])}  # per decision, before the percentiles
        out[name] = {f"{key}_{q}": float(np.percentile(x, int(q[1:]))) for key, x in series.items()
                     for q in ("p50", "p99")}
        out[name]["tokens"] = runtimes[name].last_ms["tokens"]  # the prefill's rows (the prompt is fixed-length)
    return out


def weight_matmuls(decoder: Path, rows: int) -> Counter[tuple[int, int, int]]:
    """(M, K, N) of every MatMul on a constant weight in a decoder's prefill of ``rows`` tokens, and how often.

    M comes from ONNX shape inference with the prefill's shapes (batch 1, no past), since a
    MatMul need not see every row: the LM head reads the last position only.
    """
    import onnx

    model = onnx.load(str(decoder))
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        past = inp.name.startswith("past_key_values.")
        for i, d in enumerate(dims):
            if d.HasField("dim_param"):
                d.dim_value = 1 if i == 0 else 0 if past else rows  # sets the oneof: the name goes
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    known = {v.name: v.type.tensor_type.shape.dim for v in [*model.graph.value_info, *model.graph.input]}
    weights = {i.name: tuple(i.dims) for i in model.graph.initializer}
    out: Counter[tuple[int, int, int]] = Counter()
    for n in model.graph.node:
        w = weights.get(n.input[1], ()) if n.op_type == "MatMul" else ()
        if len(w) != 2:
            continue
        x = known.get(n.input[0])
        if x is None or not x or not x[-2].HasField("dim_value"):
            raise ValueError(f"{decoder}: no row count inferred for {n.name}'s input {n.input[0]}")
        out[(x[-2].dim_value, int(w[0]), int(w[1]))] += 1
    return out


def _graph(path: Path, rows: int, k: int, n: int | None, rng: np.random.Generator) -> Path:
    """A graph of input ``x`` [1, rows, k] times a random [k, n] weight; ``n`` None: an Identity (a run's own cost)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [] if n is None else [numpy_helper.from_array((rng.standard_normal((k, n)) / math.sqrt(k))
                                                          .astype(np.float32), "w")]
    node = helper.make_node("Identity", ["x"], ["y"]) if n is None else helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, rows, n or k])], inits)
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = helper.find_min_ir_version_for(opsets)  # onnx's newest IR: onnxruntime < 1.24 refuses it
    onnx.save(model, str(path))
    return path


def _p50_interleaved(runs: Sequence[tuple[Any, dict[str, NDArray[Any]]]], rounds: int) -> list[float]:
    """p50 us of each (session, feed), run in turn ``rounds`` times after a tenth as many to warm up."""
    ns: list[list[int]] = [[] for _ in runs]
    for r in range(rounds + rounds // 10):
        for (session, feed), t in zip(runs, ns, strict=True):
            t0 = time.perf_counter_ns()
            session.run(None, feed)
            if r >= rounds // 10:
                t.append(time.perf_counter_ns() - t0)
    return [float(np.median(t)) / 1e3 for t in ns]


def _session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def matmul_bench(shapes: set[tuple[int, int, int]], rounds: int) -> dict[tuple[int, int, int], tuple[float, float]]:
    """Kernel time (us p50) of one weight MatMul at each (M, K, N), FP32 and the factory's static INT8.

    Each is the p50 of a one-node graph's run less that of an Identity graph of the same input,
    all three interleaved on one thread, so the session's own per-run cost is taken out.
    """
    from tiny_node.factory.quantize import quantize_graph

    rng = np.random.default_rng(0)
    out: dict[tuple[int, int, int], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rows, k, n in sorted(shapes):
            fp32 = _graph(Path(tmp) / f"mm{rows}x{k}x{n}.onnx", rows, k, n, rng)
            calib = [{"x": rng.standard_normal((1, rows, k)).astype(np.float32)} for _ in range(8)]
            int8 = Path(tmp) / f"mm{rows}x{k}x{n}_int8.onnx"
            quantize_graph(fp32, int8, calib)
            graphs = (_graph(Path(tmp) / f"id{rows}x{k}.onnx", rows, k, None, rng), fp32, int8)
            base, f, q = _p50_interleaved([(_session(g), calib[0]) for g in graphs], rounds)
            out[(rows, k, n)] = (f - base, q - base)
    return out


def prefill_bench(rt: VlmRuntime, rows: int, rounds: int) -> float:
    """Time (us p50) of ``rt``'s decoder prefill of ``rows`` tokens run alone, as ``matmul_bench`` times a MatMul.

    The same conditions (warm, one thread, less an Identity graph's run), so a MatMul's share
    of the prefill is a ratio of like with like. The feed is the runtime's own (``decoder_feeds``).
    """
    rng = np.random.default_rng(0)
    embeds = rng.standard_normal((1, rows, rt.hidden)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        identity = _graph(Path(tmp) / "id.onnx", rows, rt.hidden, None, rng)
        base, t = _p50_interleaved([(_session(identity), {"x": embeds}),
                                    (rt.decoder, rt.decoder_feeds(embeds))], rounds)
    return t - base


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``tiny-node model format-bench``."""
    p.add_argument("build", type=Path, help="a build folder with bundles/<format> (e.g. out/model-tracked)")
    p.add_argument("--rounds", type=int, default=1000, help="decisions per bundle (default 1000)")


def command(args: argparse.Namespace) -> int:
    """Print each format's graph times and its speed-up over the FP32 bundle of the same model."""
    from tiny_node.model.vlm import VlmRuntime

    bundles: dict[str, Path] = {}
    try:
        for name in FORMATS:
            if (args.build / "bundles" / name).is_dir():
                bundles[name] = existing_bundle_dir(str(args.build / "bundles" / name))
                _check(bundles[name])
        if "pruned" not in bundles or len(bundles) < 2:
            raise BundleError(f"{args.build / 'bundles'}: needs the pruned FP32 bundle and at least one INT8 "
                              f"bundle ({', '.join(FORMATS)}), found {sorted(bundles) or 'none'}")
    except BundleError as exc:
        print(f"tiny-node model format-bench: {exc}", file=sys.stderr)
        return 2
    if args.rounds < 10:
        print(f"tiny-node model format-bench: --rounds {args.rounds}: at least 10", file=sys.stderr)
        return 2
    res = measure(bundles, args.rounds)
    print(f"{args.build}: {args.rounds} decisions per bundle, interleaved, one thread; p50 / p99 ms "
          "(speed against the FP32 bundle of the same model: pruned, or the teacher)")
    for name, r in res.items():
        base = res["teacher"] if name.startswith("teacher") and "teacher" in res else res["pruned"]
        print(f"  {name:13s} language model {r['lm_p50']:.3f} / {r['lm_p99']:.3f} ({base['lm_p50'] / r['lm_p50']:.2f}x)"
              f"  VRU detector {r['detector_p50']:.3f} / {r['detector_p99']:.3f} "
              f"({base['detector_p50'] / r['detector_p50']:.2f}x)"
              f"  both {r['model_p50']:.3f} / {r['model_p99']:.3f} ({base['model_p50'] / r['model_p50']:.2f}x)"
              f"  detector + tracker {r['track_p50']:.3f}")
    rows = int(res["pruned"]["tokens"])
    print(f"decoder weight MatMuls alone in a {rows}-token prefill (the prompt without operator context), "
          "FP32 against static INT8, interleaved, one thread; kernel us p50 (a run less an Identity graph's)")
    for name in ("pruned", "teacher"):
        if name not in bundles:
            continue
        rt = VlmRuntime(load_bundle(bundles[name]), threads=1)
        counts = weight_matmuls(rt.bundle.file("decoder").path, rows)
        us = matmul_bench(set(counts), max(args.rounds, 200))
        for (m, k, n), c in sorted(counts.items()):
            f, q = us[(m, k, n)]
            print(f"  {name:8s} {m:3d} x {k:4d} x {n:<4d} x{c:<3d} FP32 {f:6.1f}  INT8 {q:6.1f}  ({_ratio(f, q)})")
        f_all = sum(us[s][0] * c for s, c in counts.items())
        q_all = sum(us[s][1] * c for s, c in counts.items())
        prefill_us = prefill_bench(rt, rows, max(args.rounds, 200))
        print(f"  {name:8s} all {sum(counts.values())}: FP32 {f_all:.0f}  INT8 {q_all:.0f}  ({_ratio(f_all, q_all)}); "
              f"in FP32 they are {f_all / prefill_us:.0%} of its decoder prefill run alone ({prefill_us:.0f} us)")
    return 0


def _check(bundle: Path) -> None:
    """A BundleError unless ``bundle`` loads (its files match the manifest) and is a language model.

    Why here: ``measure`` loaded them after the check of the folders, so a damaged bundle (or a
    classifier's) ended the command in a traceback.
    """
    kind = load_bundle(bundle).kind
    if kind != "vlm":
        raise BundleError(f"{bundle}: kind {kind!r}, not a vlm bundle: format-bench times language models")


def _ratio(fp32_us: float, int8_us: float) -> str:
    """FP32 / INT8 time as a speed-up; a kernel within the run-to-run noise has none."""
    return f"{fp32_us / int8_us:.2f}x" if fp32_us > 0 and int8_us > 0 else "within the noise"
