"""INT8 formats of an exported bundle: static QDQ (calibrated on simulator frames) and dynamic.

Why static QDQ first: onnxruntime recommends it for CNNs and it gives fixed activation
scales, so the INT8 kernels (VNNI on this CPU) run with no per-run range computation;
``quantize_dynamic`` computes activation ranges every run and was slower than FP32 on a small
conv net here, so both are built and measured, not assumed.

Only weight-bearing ``Conv`` / ``MatMul`` / ``Gemm`` nodes are quantized: attention's
activation x activation MatMuls, softmax, norms and residual adds stay FP32 (cheap, and where
INT8 error hurts a transformer most). ``embed_tokens`` (one Gather of a small table) stays FP32.
Calibration feeds are produced by the FP32 bundle itself (vision -> splice -> decoder prefill,
then one cached decoding step), so the decoder sees real prefill and step statistics.

Static QDQ is written the way onnxruntime's CPU graph optimizer can fuse it (checked by reading
its optimized graph, docs/MODEL_HISTORY.md *INT8 that onnxruntime fuses*):

- activations U8, weights S8: ORT fuses a QDQ MatMul only with U8 activations. With S8 ones, 10
  of the decoder's 15 weight MatMuls ran as DequantizeLinear of the weight (every run) + an FP32
  MatMul, and the static decoder was 1.8x slower than FP32;
- no Q after a MatMul: its FP32 output feeds norms, RoPE and SiLU, so a DQ -> MatMul pair fuses
  into ``MatMulIntegerToFloat`` instead of a QLinearMatMul wrapped in a Q/DQ round trip;
- convs reading fewer than ``MIN_INT8_CHANNELS`` channels (an image stem) stay FP32: the INT8
  kernel was slower there (a 3-channel stem conv 53 against 28 us, plus quantizing the image).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_dynamic,
    quantize_static,
)

QUANT_OPS = ("Conv", "MatMul", "Gemm")
#: a conv with fewer input channels stays FP32 (measured on this CPU: module docstring)
MIN_INT8_CHANNELS = 16


class FeedReader(CalibrationDataReader):  # type: ignore[misc]
    """A CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds: Sequence[dict[str, NDArray[Any]]]) -> None:
        self._it: Iterator[dict[str, NDArray[Any]]] = iter(feeds)

    def get_next(self) -> dict[str, NDArray[Any]] | None:
        """The next feed, or None when done."""
        return next(self._it, None)


def calibration_feeds(fp32_bundle: Path,
                      frames: Sequence[tuple[NDArray[np.uint8], NDArray[np.uint8], dict[str, float], str]]
                      ) -> tuple[list[dict[str, NDArray[Any]]], list[dict[str, NDArray[Any]]]]:
    """Vision and decoder feeds for ``frames`` (model-size RGB, its earlier frame, features, context).

    Both images of a pair calibrate the vision encoder; a one-frame bundle ignores the earlier.
    """
    from tiny_node.model.bundle import load_bundle
    from tiny_node.model.vlm import VlmRuntime

    rt = VlmRuntime(load_bundle(fp32_bundle), threads=1)
    vision: list[dict[str, NDArray[Any]]] = []
    decoder: list[dict[str, NDArray[Any]]] = []
    two = rt.spec.frames.count == 2
    for image, earlier, feats, ctx in frames:
        px = rt._pixels(image)  # the runtime's own preprocessing
        vision.append(px)
        ids = rt.prompt.ids(feats, ctx)
        (f,) = rt.vision.run(["image_features"], px)
        if two:
            px_prev = rt._pixels(earlier)
            vision.append(px_prev)
            (f_prev,) = rt.vision.run(["image_features"], px_prev)
            f = np.concatenate([f_prev, f], axis=-2)
        (emb,) = rt.embed.run(["inputs_embeds"], {"input_ids": ids})
        emb = rt._splice(ids, emb, f)
        feed = rt.decoder_feeds(emb)
        decoder.append(feed)
        logits, *present = rt.decoder.run(None, feed)
        nxt = int(np.argmax(logits[0, -1]))
        (step,) = rt.embed.run(["inputs_embeds"], {"input_ids": np.array([[nxt]], np.int64)})
        decoder.append(rt.decoder_feeds(step, present, emb.shape[1]))
    return vision, decoder


def _weight_nodes(path: Path) -> list[str]:
    """Names of the nodes to quantize: QUANT_OPS with a constant (initializer) weight.

    Convs reading fewer than MIN_INT8_CHANNELS channels are left out (FP32 is faster there).
    """
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    names = []
    for n in model.graph.node:
        if n.op_type not in QUANT_OPS or not any(i in inits for i in n.input):
            continue
        if n.op_type == "Conv" and n.input[1] in inits:
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            if inits[n.input[1]].dims[1] * group < MIN_INT8_CHANNELS:  # weight [out, in / group, kh, kw]
                continue
        names.append(n.name)
    return names


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    """Run in ``path``: ORT's quantization tools leave scratch files in the working directory.

    (``sym_shape_infer_temp.onnx``, ``<uuid>.data``; they must not land in the caller's tree.)
    """
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def quantize_graph(src: Path, dst: Path, feeds: Sequence[dict[str, NDArray[Any]]] | None) -> int:
    """``quant_pre_process`` then static QDQ (``feeds`` given) or dynamic INT8 of one graph.

    Returns how many nodes were quantized; with none to quantize, ``dst`` is the graph as
    pre-processed (FP32), since onnxruntime reads an empty node list as *every node*.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    src, dst = src.resolve(), dst.resolve()
    with tempfile.TemporaryDirectory() as tmp, _cwd(Path(tmp)):
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        except Exception as exc:  # ORT raises a bare Exception when symbolic shapes stop short
            # the decoder's dynamic past/total lengths defeat ORT's symbolic inference; ONNX
            # shape inference + the optimizer still run, which is all quantization needs
            warnings.warn(f"{src.name}: symbolic shape inference incomplete ({exc}); "
                          "pre-processing with ONNX shape inference only", stacklevel=2)
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        nodes = _weight_nodes(pre)
        if not nodes:
            shutil.copyfile(pre, dst)
        elif feeds is None:
            quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=list(QUANT_OPS), nodes_to_quantize=nodes)
        else:
            quantize_static(str(pre), str(dst), FeedReader(feeds), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=list(QUANT_OPS),
                            nodes_to_quantize=nodes,
                            extra_options={"ActivationSymmetric": False,
                                           "OpTypesToExcludeOutputQuantization": ["MatMul"]})
    _drop_unused_opsets(dst)
    onnx.checker.check_model(onnx.load(str(dst)))
    return len(nodes)


def _domains(graph: onnx.GraphProto) -> set[str]:
    """Operator domains of ``graph``'s nodes and of every subgraph in their attributes."""
    out = {n.domain for n in graph.node}
    for n in graph.node:
        for a in n.attribute:
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                out |= _domains(g)
    return out


def _drop_unused_opsets(path: Path) -> None:
    """Keep only the opset imports the graph uses (and the default domain's).

    Why: ``quant_pre_process`` saves the graph through onnxruntime's optimizer, which stamps
    every domain the installed onnxruntime knows (``ai.onnx.ml`` 5, ``ai.onnx.preview``,
    ``com.microsoft.nchwc``, ...) though no node uses them; an older onnxruntime refuses a model
    importing an opset newer than its own ("Current official support for domain ai.onnx.ml is
    till opset 3" in 1.16), so the INT8 bundles did not load with the onnxruntime >= 1.16 that
    setup.py allows.
    """
    model = onnx.load(str(path))
    used = _domains(model.graph) | {f.domain for f in model.functions}
    for f in model.functions:
        used |= {n.domain for n in f.node}
    keep = [o for o in model.opset_import if o.domain in ("", "ai.onnx") or o.domain in used]
    if len(keep) == len(model.opset_import):
        return
    del model.opset_import[:]
    model.opset_import.extend(keep)
    onnx.save(model, str(path))


Feeds = list[dict[str, NDArray[Any]]]


def quantize_bundle(fp32_bundle: Path, out_dir: Path, feeds: tuple[Feeds | None, Feeds | None]) -> dict[str, Path]:
    """INT8 vision encoder and decoder, each static (its calibration feeds given) or dynamic (None).

    The embedding stays FP32 (copied), and so does the VRU detector ``write_bundle`` adds: an
    INT8 one was 1.2x faster but tracked worse (docs/MODEL_HISTORY.md *INT8 that onnxruntime fuses*).
    Returns graph key -> file, ready for ``export.write_bundle(..., graphs=...)``.
    """
    # here, not at the top: export imports torch, and ``quantize_graph`` must not need it
    # (``tiny-node model format-bench`` quantizes with it and is documented to run without torch)
    from tiny_node.factory.export import FILES

    out_dir.mkdir(parents=True, exist_ok=True)
    graphs: dict[str, Path] = {}
    for key, graph_feeds in (("vision_encoder", feeds[0]), ("decoder", feeds[1])):
        dst = out_dir / Path(FILES[key]).name
        quantize_graph(fp32_bundle / FILES[key], dst, graph_feeds)
        graphs[key] = dst
    emb = out_dir / Path(FILES["embed_tokens"]).name
    shutil.copyfile(fp32_bundle / FILES["embed_tokens"], emb)
    graphs["embed_tokens"] = emb
    return graphs
