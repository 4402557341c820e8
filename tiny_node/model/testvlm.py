"""Small, real VLM bundles for tests: a genuine transformer decoder built with onnx.helper.

Why generated: no published weights can be downloaded here, and tests must build their
fixtures. The graphs are the real thing at toy size: a patch-conv vision encoder, an
embedding table, and a Llama-style decoder (RMSNorm, rotary positions, grouped-query
attention over a KV cache with past_key_values / present, SwiGLU MLP, lm_head), seeded
random weights, in the published three-graph layout (``onnx/vision_encoder.onnx``,
``onnx/embed_tokens.onnx``, ``onnx/decoder_model_merged.onnx``, ``tokenizer.json``,
``config.json``).

``make_tiny_vlm_bundle(dir)`` (tiny_node layout: ``pixel_values`` [1, 3, 64, 64], 16 image
tokens, a WordLevel vocabulary with sensor bin tokens) has a few weights set by hand on top
of the random ones, so its answer is known in advance:

- layer 0, attention head 0 attends from the final ``:`` of the prompt to the ``<rng_k>``
  token and head 1 to the ``<spd_k>`` token (a marker dimension in the embeddings, in the
  slowest rotary pair so position barely matters); both read a value dimension holding
  ``-range/100`` and ``+2*speed/100`` (after RMSNorm, an odd function of each), summed into
  one residual dimension that lm_head maps to +``brake`` / -``go``. So it says ``brake`` iff
  ``range < 2 * ego_speed`` (in bins: range 2 m, speed 1 m/s), like the fast classifier; an
  invalid range is fed as ``range_clip_m`` (100 m) and so never brakes below 50 m/s;
- lm_head holds a bigram table on orthonormal embedding directions, so the rationale after
  ``brake`` is ``object close ahead`` and after ``go`` is ``road clear``, then eos.

``make_tiny_vlm_bundle(dir, smolvlm=True)`` is the published SmolVLM layout exactly
(``pixel_values`` [B, N, 3, 512, 512] f32 + ``pixel_attention_mask`` bool, 64 image tokens
per tile, a byte-level BPE tokenizer of 49280 ids with the published special tokens at their
ids (``<image>`` = 49190, ``<end_of_utterance>`` = 49279, the chat framing, ``<row_r_col_c>``)
and ``" No"`` / ``" Yes"`` single tokens, 9 attention heads over 3 KV heads as SmolVLM-256M,
KV heads and head_dim static in the graph and in an idefics3 ``config.json``, the published
``preprocessor_config.json`` and ``generation_config.json`` beside), head_dim and hidden size
scaled down, random weights only, and docs/BUNDLE.md's SmolVLM manifest (prompt, decision words).
``decoder_pairs`` adds that many MatMul(256x256)+Tanh pairs to every decoder run (a slow
decoder for abort tests; adds at most 1e-6 to the logits).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from tiny_node.model.bundle import RuntimeSpec, write_manifest
from tiny_node.model.testmodels import occupied

OPSET = 17
SEED = 4
FEATURES = ("ego_speed", "range", "range_rate", "range_valid")
#: feature -> (prefix, step, lo, hi): ``<spd_0>``..``<spd_40>`` etc.
BINS = {"ego_speed": ("spd", 1.0, 0, 40), "range": ("rng", 2.0, 0, 50),
        "range_rate": ("rr", 1.0, -30, 10), "range_valid": ("val", 1.0, 0, 1)}
EOS = "<end_of_utterance>"
IMAGE = "<image>"
TINY_PROMPT = "{image} {sensors} {context} question: brake? answer:"
#: the prompt of docs/BUNDLE.md's SmolVLM manifest: the published chat template around one unsplit tile
SMOLVLM_PROMPT = ("<|im_start|>User:<fake_token_around_image><global-img>{image}"
                  "<fake_token_around_image>The car drives at {ego_speed:.0f} m/s; the nearest "
                  "object ahead is {range:.0f} m away. {context} Must the car brake now? "
                  "Answer yes or no.<end_of_utterance>\nAssistant:")
#: the decision words of that manifest: single byte-level BPE tokens of the published tokenizer
SMOLVLM_WORDS = (" No", " Yes")
WORDS = ("question", ":", "?", "answer", "brake", "go", "object", "close", "ahead", "road",
         "clear", "school", "zone", "night", "rain", "child", "crossing", "from", "the", "left",
         "right", "m", "slow", "down", "User", "Assistant", "speed", "range", "rate", "valid", "-")
#: the tiny bundle's rationale: each word's successor (bigram table in lm_head)
CHAINS = {"brake": ("object", "close", "ahead", EOS), "go": ("road", "clear", EOS)}
#: published SmolVLM special tokens and ids (tokenizer.json, added_tokens)
SMOLVLM_VOCAB = 49280
SMOLVLM_SPECIAL = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "<global-img>": 49152,
                   **{f"<row_{r}_col_{c}>": 49146 + 6 * r + c for r in range(1, 7) for c in range(1, 7)},
                   "<fake_token_around_image>": 49189, IMAGE: 49190, EOS: 49279}
#: byte-level BPE merges of the generated SmolVLM tokenizer: the decision words are one token each
SMOLVLM_MERGES = (("Ġ", "N"), ("ĠN", "o"), ("Ġ", "Y"), ("e", "s"), ("ĠY", "es"))
#: SmolVLM-256M's attention (9 heads, 3 KV heads: groups of 3) at a toy head_dim and hidden size
SMOLVLM_DIMS = {"image": 512, "patch": 64, "heads": 9, "kv_heads": 3, "head_dim": 8, "hidden": 72}
CHAIN_DIM = 256

# residual dimensions with a hand-set meaning in the tiny bundle (see module docstring)
D_QRY, D_MARK_RNG, D_MARK_SPD, D_VAL, D_OUT, D_BIGRAM = 0, 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Dims:
    """Sizes of the generated model."""

    vocab: int
    layers: int = 2
    hidden: int = 32
    heads: int = 2
    kv_heads: int = 1
    head_dim: int = 16
    ffn: int = 64
    image: int = 64  # tile side, px
    patch: int = 16  # image tokens = (image / patch)^2
    rope_base: float = 10000.0

    @property
    def image_tokens(self) -> int:
        """Image tokens per tile."""
        return (self.image // self.patch) ** 2


class _Graph:
    """A node list with fresh output names, so the builders read like the math."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, value: Any, dtype: Any = np.float32) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        self._n += 1
        name = out or f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], **attrs))
        return name

    def model(self, name: str, inputs: list[onnx.ValueInfoProto],
              outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        opsets = [helper.make_opsetid("", OPSET)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="tiny_node.testvlm")
        model.ir_version = helper.find_min_ir_version_for(opsets)
        onnx.checker.check_model(model)
        return model


def _f32(shape: list[Any], name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


# -- weights ---------------------------------------------------------------------------
def _weights(d: Dims, rng: np.random.Generator) -> dict[str, NDArray[np.float32]]:
    """Seeded random weights for every matrix; norms start at 1."""

    def n(*shape: int, std: float = 0.02) -> NDArray[np.float32]:
        return rng.normal(0.0, std, shape).astype(np.float32)

    q, kv = d.heads * d.head_dim, d.kv_heads * d.head_dim
    w: dict[str, NDArray[np.float32]] = {"embed": n(d.vocab, d.hidden, std=0.5),
                                         "lm_head": n(d.hidden, d.vocab, std=0.5),
                                         "norm": np.ones(d.hidden, np.float32)}
    for i in range(d.layers):
        w |= {f"l{i}.in_norm": np.ones(d.hidden, np.float32),
              f"l{i}.post_norm": np.ones(d.hidden, np.float32),
              f"l{i}.wq": n(d.hidden, q, std=0.2), f"l{i}.wk": n(d.hidden, kv, std=0.2),
              f"l{i}.wv": n(d.hidden, kv, std=0.2), f"l{i}.wo": n(q, d.hidden, std=0.2),
              f"l{i}.wg": n(d.hidden, d.ffn, std=0.2), f"l{i}.wu": n(d.hidden, d.ffn, std=0.2),
              f"l{i}.wd": n(d.ffn, d.hidden, std=0.2)}
    w["patch"] = n(d.hidden, 3, d.patch, d.patch, std=1.0 / d.patch)
    w["proj"] = n(d.hidden, d.hidden, std=0.3)
    return w


def _design(w: dict[str, NDArray[np.float32]], d: Dims, vocab: dict[str, int],
            rng: np.random.Generator) -> None:
    """Hand-set the decision and rationale paths of the tiny bundle (module docstring)."""
    for key in ("embed", "lm_head"):
        w[key] *= 0.04  # quiet background, so the designed paths dominate
    for key in [k for k in w if k.startswith("l") and k[-2:] in ("wq", "wk", "wv", "wo", "wg",
                                                                 "wu", "wd")]:
        w[key] *= 0.1
    e, lm = w["embed"], w["lm_head"]
    # The designed dimensions are a private channel: only the designed tokens carry them,
    # and no random weight reads or writes them.
    e[:, :D_BIGRAM] = 0.0
    w["proj"][:, :D_BIGRAM] = 0.0
    lm[:D_BIGRAM] = 0.0
    for i in range(d.layers):
        for m in ("wq", "wk", "wv", "wg", "wu"):
            w[f"l{i}.{m}"][:D_BIGRAM] = 0.0
        for m in ("wo", "wd"):
            w[f"l{i}.{m}"][:, :D_BIGRAM] = 0.0
    e[vocab[":"], D_QRY] = 1.0
    for k in range(BINS["range"][2], BINS["range"][3] + 1):
        e[vocab[f"<rng_{k}>"], [D_MARK_RNG, D_VAL]] = (1.0, -k * BINS["range"][1] / 100.0)
    for k in range(BINS["ego_speed"][2], BINS["ego_speed"][3] + 1):
        e[vocab[f"<spd_{k}>"], [D_MARK_SPD, D_VAL]] = (1.0, 2.0 * k * BINS["ego_speed"][1] / 100.0)
    slow = d.head_dim // 2 - 1  # slowest rotary pair: (slow, slow + head_dim/2)
    wq, wk, wv, wo = (w[f"l0.{m}"] for m in ("wq", "wk", "wv", "wo"))
    wq[D_QRY, slow] = 2.0  # head 0 asks for the range marker
    wq[D_QRY, d.head_dim + slow + d.head_dim // 2] = 2.0  # head 1 for the speed marker
    wk[D_MARK_RNG, slow] = 2.0
    wk[D_MARK_SPD, slow + d.head_dim // 2] = 2.0
    wv[D_VAL, 0] = 1.0
    wo[0, D_OUT] = wo[d.head_dim, D_OUT] = 1.0  # both heads' value into one dimension
    lm[D_OUT, vocab["brake"]], lm[D_OUT, vocab["go"]] = 2.0, -2.0
    # bigram: orthonormal directions for the words that start a successor
    sources = sorted({w0 for chain_start, chain in CHAINS.items()
                      for w0 in (chain_start, *chain[:-1])})
    basis, _ = np.linalg.qr(rng.normal(size=(d.hidden - D_BIGRAM, len(sources))))
    for j, word in enumerate(sources):
        e[vocab[word], D_BIGRAM:] = basis[:, j]
    for start, chain in CHAINS.items():
        for prev, nxt in zip((start, *chain[:-1]), chain, strict=True):
            lm[D_BIGRAM:, vocab[nxt]] += 3.0 * basis[:, sources.index(prev)]


# -- graphs ----------------------------------------------------------------------------
def vision_graph(d: Dims, w: dict[str, NDArray[np.float32]], smolvlm: bool) -> onnx.ModelProto:
    """Patch conv -> tokens -> projection: ``image_features`` [B*N, tokens, hidden]."""
    g = _Graph()
    side = d.image // d.patch
    conv_w, proj = g.const("patch_w", w["patch"]), g.const("proj_w", w["proj"])
    if smolvlm:
        mask = g.op("Unsqueeze", g.op("Cast", "pixel_attention_mask", to=TensorProto.FLOAT),
                    g.const("ax2", [2], np.int64))
        px = g.op("Reshape", g.op("Mul", "pixel_values", mask),
                  g.const("tile_shape", [-1, 3, d.image, d.image], np.int64))
        inputs = [_f32(["batch_size", "num_images", 3, d.image, d.image], "pixel_values"),
                  helper.make_tensor_value_info("pixel_attention_mask", TensorProto.BOOL,
                                                ["batch_size", "num_images", d.image, d.image])]
        batch: Any = "batch_size_x_num_images"
    else:
        px = "pixel_values"
        inputs = [_f32([1, 3, d.image, d.image], "pixel_values")]
        batch = 1
    conv = g.op("Conv", px, conv_w, kernel_shape=[d.patch, d.patch], strides=[d.patch, d.patch])
    tokens = g.op("Transpose", g.op("Reshape", conv, g.const("tok_shape", [0, d.hidden, side * side],
                                                           np.int64)), perm=[0, 2, 1])
    g.op("MatMul", tokens, proj, out="image_features")
    return g.model("vision_encoder", inputs,
                   [_f32([batch, d.image_tokens, d.hidden], "image_features")])


def embed_graph(d: Dims, w: dict[str, NDArray[np.float32]]) -> onnx.ModelProto:
    """``input_ids`` -> ``inputs_embeds`` (one Gather)."""
    g = _Graph()
    g.op("Gather", g.const("embed_w", w["embed"]), "input_ids", axis=0, out="inputs_embeds")
    return g.model("embed_tokens",
                   [helper.make_tensor_value_info("input_ids", TensorProto.INT64,
                                                  ["batch_size", "sequence_length"])],
                   [_f32(["batch_size", "sequence_length", d.hidden], "inputs_embeds")])


def _rms(g: _Graph, x: str, weight: str) -> str:
    ms = g.op("ReduceMean", g.op("Mul", x, x), axes=[-1], keepdims=1)
    return g.op("Mul", g.op("Div", x, g.op("Sqrt", g.op("Add", ms, "eps"))), weight)


def _rope(g: _Graph, x: str, cos: str, sin: str, half: int) -> str:
    """``x * cos + rotate_half(x) * sin`` (rotate_half: [-x2, x1])."""
    x1, x2 = (g.op("Slice", x, g.const(f"{x}_s{i}", [a], np.int64), g.const(f"{x}_e{i}", [b], np.int64),
                   "axis_last") for i, (a, b) in enumerate(((0, half), (half, 2 * half))))
    rot = g.op("Concat", g.op("Neg", x2), x1, axis=-1)
    return g.op("Add", g.op("Mul", x, cos), g.op("Mul", rot, sin))


def decoder_graph(d: Dims, w: dict[str, NDArray[np.float32]], *, static_kv: bool,
                  pairs: int = 0) -> onnx.ModelProto:
    """The merged decoder: prefill and decoding steps alike, past (maybe empty) -> present."""
    g = _Graph()
    groups = d.heads // d.kv_heads
    g.const("eps", 1e-5)
    g.const("axis_last", [-1], np.int64)
    i64 = np.int64
    # rotary tables from position_ids: [B, S, head_dim]
    inv = d.rope_base ** (-np.arange(0, d.head_dim, 2) / d.head_dim)
    freqs = g.op("Mul", g.op("Unsqueeze", g.op("Cast", "position_ids", to=TensorProto.FLOAT),
                             g.const("ax_2", [2], i64)), g.const("inv_freq", inv))
    emb = g.op("Concat", freqs, freqs, axis=-1)
    cos, sin = g.op("Cos", emb), g.op("Sin", emb)
    cos_q, sin_q = (g.op("Unsqueeze", t, g.const(f"ax12_{t}", [1, 2], i64)) for t in (cos, sin))
    cos_k, sin_k = (g.op("Unsqueeze", t, g.const(f"ax1_{t}", [1], i64)) for t in (cos, sin))
    # causal + padding mask over past + new: bias [B, 1, 1, S, T]
    total = g.op("Squeeze", g.op("Shape", "attention_mask", start=1, end=2), g.const("ax0", [0], i64))
    new = g.op("Squeeze", g.op("Shape", "inputs_embeds", start=1, end=2), "ax0")
    zero, one = g.const("zero", 0, i64), g.const("one", 1, i64)
    kidx = g.op("Range", zero, total, one)
    qidx = g.op("Add", g.op("Range", zero, new, one), g.op("Sub", total, new))
    causal = g.op("LessOrEqual", kidx, g.op("Unsqueeze", qidx, g.const("ax1", [1], i64)))
    pad = g.op("Unsqueeze", g.op("Cast", "attention_mask", to=TensorProto.BOOL),
               g.const("ax123", [1, 2, 3], i64))
    bias = g.op("Where", g.op("And", causal, pad), g.const("open", 0.0), g.const("shut", -1e9))
    q_shape = g.const("q_shape", [0, 0, d.kv_heads, groups, d.head_dim], i64)
    kv_shape = g.const("kv_shape", [0, 0, d.kv_heads, d.head_dim], i64)
    merge = g.const("merge", [0, 0, d.heads * d.head_dim], i64)
    scale = g.const("scale", 1.0 / math.sqrt(d.head_dim))
    x = "inputs_embeds"
    for i in range(d.layers):
        p = {k.split(".", 1)[1]: g.const(k, v) for k, v in w.items() if k.startswith(f"l{i}.")}
        h = _rms(g, x, p["in_norm"])
        q = g.op("Transpose", g.op("Reshape", g.op("MatMul", h, p["wq"]), q_shape),
                 perm=[0, 2, 3, 1, 4])  # [B, kv, groups, S, hd]
        k, v = (g.op("Transpose", g.op("Reshape", g.op("MatMul", h, p[m]), kv_shape),
                     perm=[0, 2, 1, 3]) for m in ("wk", "wv"))  # [B, kv, S, hd]
        q, k = _rope(g, q, cos_q, sin_q, d.head_dim // 2), _rope(g, k, cos_k, sin_k, d.head_dim // 2)
        k_all = g.op("Concat", f"past_key_values.{i}.key", k, axis=2, out=f"present.{i}.key")
        v_all = g.op("Concat", f"past_key_values.{i}.value", v, axis=2, out=f"present.{i}.value")
        k5, v5 = (g.op("Unsqueeze", t, "ax_2") for t in (k_all, v_all))  # [B, kv, 1, T, hd]
        scores = g.op("Add", g.op("Mul", g.op("MatMul", q, g.op("Transpose", k5,
                                                                perm=[0, 1, 2, 4, 3])), scale), bias)
        ctx = g.op("MatMul", g.op("Softmax", scores, axis=-1), v5)  # [B, kv, groups, S, hd]
        ctx = g.op("Reshape", g.op("Transpose", ctx, perm=[0, 3, 1, 2, 4]), merge)
        x = g.op("Add", x, g.op("MatMul", ctx, p["wo"]))
        h = _rms(g, x, p["post_norm"])
        gate = g.op("MatMul", h, p["wg"])
        act = g.op("Mul", g.op("Mul", gate, g.op("Sigmoid", gate)), g.op("MatMul", h, p["wu"]))
        x = g.op("Add", x, g.op("MatMul", act, p["wd"]))
    head = g.op("MatMul", _rms(g, x, g.const("norm_w", w["norm"])), g.const("lm_head_w", w["lm_head"]),
                out="logits" if pairs == 0 else None)
    if pairs:
        _chain(g, head, pairs)
    kvh: Any = d.kv_heads if static_kv else "num_key_value_heads"
    hd: Any = d.head_dim if static_kv else "head_dim"
    inputs = [_f32(["batch_size", "sequence_length", d.hidden], "inputs_embeds"),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                            ["batch_size", "total_sequence_length"]),
              helper.make_tensor_value_info("position_ids", TensorProto.INT64,
                                            ["batch_size", "sequence_length"])]
    outputs = [_f32(["batch_size", "sequence_length", d.vocab], "logits")]
    for i in range(d.layers):
        for kv in ("key", "value"):
            inputs.append(_f32(["batch_size", kvh, "past_sequence_length", hd],
                               f"past_key_values.{i}.{kv}"))
            outputs.append(_f32(["batch_size", kvh, "total_sequence_length", hd], f"present.{i}.{kv}"))
    return g.model("decoder_model_merged", inputs, outputs)


def to_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` computing in float16 with float16 inputs and outputs (as an export's ``_fp16`` / ``q4f16`` files).

    Why: those exports feed float16 pixels, embeddings and KV cache and return float16 logits;
    the runtime must feed each graph its own type. Initializers are clipped to float16's range
    (the attention mask's -1e9 becomes -65504), every Cast to float goes to float16.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT:
            a = np.clip(numpy_helper.to_array(t), -65504.0, 65504.0).astype(np.float16)
            t.CopyFrom(numpy_helper.from_array(a, t.name))
    for node in g.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
    for v in (*g.input, *g.output):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT:
            v.type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.checker.check_model(out)
    return out


def _chain(g: _Graph, head: str, n: int) -> None:
    """``n`` MatMul(256x256)+Tanh pairs fed from the input, + at most 1e-6 on the logits."""
    rng = np.random.default_rng(0)
    w = g.const("chain_w", rng.standard_normal((CHAIN_DIM, CHAIN_DIM)) / np.sqrt(CHAIN_DIM))
    h = g.op("Add", g.const("chain_base", rng.uniform(-1, 1, (CHAIN_DIM, CHAIN_DIM))),
             g.op("ReduceMean", "inputs_embeds", keepdims=1))
    for _ in range(n):
        h = g.op("Tanh", g.op("MatMul", h, w))
    g.op("Add", head, g.op("Mul", g.op("ReduceMean", h, keepdims=1), g.const("chain_coef", 1e-6)),
         out="logits")


# -- tokenizer, config, manifest -------------------------------------------------------
def _bin_tokens() -> list[str]:
    return [f"<{p}_{k}>" for p, _, lo, hi in BINS.values() for k in range(lo, hi + 1)]


def tiny_vocab(smolvlm: bool) -> dict[str, int]:
    """Token -> id: the published ids for SmolVLM (byte-level alphabet, merges, fillers), compact otherwise."""
    if not smolvlm:
        words = ["<unk>", IMAGE, EOS, *_bin_tokens(), *WORDS]
        return {t: i for i, t in enumerate(words)}
    vocab = dict(SMOLVLM_SPECIAL)
    free = (i for i in range(SMOLVLM_VOCAB) if i not in SMOLVLM_SPECIAL.values())
    for word in (*sorted(pre_tokenizers.ByteLevel.alphabet()), *(a + b for a, b in SMOLVLM_MERGES)):
        vocab[word] = next(free)
    for i in free:
        vocab[f"<filler_{i}>"] = i
    return vocab


def smolvlm_tokenizer() -> Tokenizer:
    """A byte-level BPE tokenizer like SmolVLM's (GPT-2 style, no unknown token), at the published ids.

    Why not WordLevel: the published tokenizer is byte-level BPE, where a decision word is named
    by its text with the leading space (``" Yes"`` = ``ĠYes``), as docs/BUNDLE.md's manifest does.
    """
    tok = Tokenizer(models.BPE(tiny_vocab(True), list(SMOLVLM_MERGES)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SMOLVLM_SPECIAL])
    return tok


def tiny_tokenizer(vocab: dict[str, int], specials: list[str], added: list[str]) -> Tokenizer:
    """WordLevel over ``vocab`` split on whitespace/punctuation; specials and bins stay whole."""
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.add_tokens([AddedToken(t, normalized=False) for t in added])
    return tok


def make_tiny_vlm_bundle(directory: Path, smolvlm: bool = False, decoder_pairs: int = 0,
                         max_rationale_tokens: int | None = None, frames: int = 1) -> Path:
    """Write a tiny VLM bundle (module docstring) into ``directory``; return it.

    ``frames`` 2: the prompt starts with ``{image_prev}`` (the earlier frame's visual tokens,
    ``vlm.frames`` 0.1 s +- 0.04 s back); the graphs are the same.
    """
    directory = Path(directory)
    (directory / "onnx").mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocab(smolvlm)
    dims = Dims(vocab=max(vocab.values()) + 1, **(SMOLVLM_DIMS if smolvlm else {}))
    rng = np.random.default_rng(SEED)
    w = _weights(dims, rng)
    if not smolvlm:
        _design(w, dims, vocab, rng)
    tok = smolvlm_tokenizer() if smolvlm else tiny_tokenizer(vocab, [IMAGE, EOS], _bin_tokens())
    (directory / "tokenizer.json").write_text(tok.to_str(), encoding="utf-8")
    graphs = {"vision_encoder": vision_graph(dims, w, smolvlm), "embed_tokens": embed_graph(dims, w),
              "decoder_model_merged": decoder_graph(dims, w, static_kv=smolvlm, pairs=decoder_pairs)}
    for name, model in graphs.items():
        (directory / "onnx" / f"{name}.onnx").write_bytes(model.SerializeToString())
    text = {"num_hidden_layers": dims.layers, "hidden_size": dims.hidden,
            "num_attention_heads": dims.heads, "num_key_value_heads": dims.kv_heads,
            "head_dim": dims.head_dim, "intermediate_size": dims.ffn,
            "vocab_size": dims.vocab, "rope_theta": dims.rope_base}
    if smolvlm:  # as published: idefics3 config, and the processor / generation configs beside it
        _write_json(directory / "config.json", _smolvlm_config(dims, text))
        _write_json(directory / "preprocessor_config.json", SMOLVLM_PREPROCESSOR)
        _write_json(directory / "generation_config.json",
                    {"bos_token_id": 1, "eos_token_id": [2, SMOLVLM_SPECIAL[EOS]], "pad_token_id": 2})
    else:
        _write_json(directory / "config.json", {"model_type": "tiny_node_vlm", "image_token_id": vocab[IMAGE],
                                                "vocab_size": dims.vocab, "text_config": text})
    manifest = tiny_vlm_manifest(dims, smolvlm, max_rationale_tokens)
    if frames == 2:
        vlm = manifest["vlm"]
        vlm["prompt"] = vlm["prompt"].replace("{image}", "{image_prev}{image}", 1)
        vlm["frames"] = {"count": 2, "interval_s": 0.1, "tolerance_s": 0.04}
    write_manifest(directory, name="test-vlm-smolvlm" if smolvlm else "test-vlm",
                   files={"vision_encoder": "onnx/vision_encoder.onnx",
                          "embed_tokens": "onnx/embed_tokens.onnx",
                          "decoder": "onnx/decoder_model_merged.onnx",
                          "tokenizer": "tokenizer.json", "config": "config.json"},
                   kind="vlm", runtime=manifest.pop("runtime"), **manifest)
    return directory


#: SmolVLM-256M's preprocessor_config.json (what the runtime's manifest must repeat: the runtime does not read it)
SMOLVLM_PREPROCESSOR: dict[str, Any] = {
    "do_convert_rgb": True, "do_image_splitting": True, "do_normalize": True, "do_pad": True, "do_rescale": True,
    "do_resize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "image_processor_type": "Idefics3ImageProcessor", "max_image_size": {"longest_edge": 512},
    "processor_class": "Idefics3Processor", "resample": 1, "rescale_factor": 1 / 255,
    "size": {"longest_edge": 2048}}


def _smolvlm_config(d: Dims, text: dict[str, Any]) -> dict[str, Any]:
    """config.json as SmolVLM-256M publishes it (idefics3: 16 px patches, pixel shuffle 4, 64 tokens a tile)."""
    return {"architectures": ["Idefics3ForConditionalGeneration"], "image_seq_len": d.image_tokens,
            "image_token_id": SMOLVLM_SPECIAL[IMAGE], "model_type": "idefics3", "scale_factor": 4,
            "text_config": {"model_type": "llama", "rms_norm_eps": 1e-5, **text},
            "vision_config": {"image_size": d.image, "patch_size": 16, "model_type": "idefics3",
                              "max_image_size": {"longest_edge": d.image}},
            "vocab_size": d.vocab}


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")


def tiny_vlm_manifest(dims: Dims, smolvlm: bool, max_rationale_tokens: int | None) -> dict[str, Any]:
    """The manifest sections (everything but ``files``) of a generated VLM bundle."""
    sensors: dict[str, Any] = {"features": list(FEATURES), "range_clip_m": 100.0}
    vlm: dict[str, Any] = {
        "smolvlm": smolvlm, "image_token": IMAGE,
        "image_token_id": SMOLVLM_SPECIAL[IMAGE] if smolvlm else tiny_vocab(False)[IMAGE],
        "image_tokens_per_tile": dims.image_tokens,
        "prompt": SMOLVLM_PROMPT if smolvlm else TINY_PROMPT,
        "eos": [EOS, "<|im_end|>"] if smolvlm else EOS,  # generation_config.json's two
        "max_rationale_tokens": (16 if smolvlm else 8) if max_rationale_tokens is None
        else max_rationale_tokens,
    }
    if not smolvlm:  # the graph leaves kv heads / head_dim symbolic: the manifest says them
        sensors["bins"] = {f: {"prefix": p, "step": s, "lo": lo, "hi": hi}
                           for f, (p, s, lo, hi) in BINS.items()}
        vlm["kv"] = {"num_layers": dims.layers, "num_kv_heads": dims.kv_heads,
                     "head_dim": dims.head_dim}
    return {
        "inputs": {"image": {"name": "pixel_values", "height": dims.image, "width": dims.image,
                             "layout": "NCHW", "color": "rgb", "dtype": "float32",
                             "mean": [0.5] * 3, "std": [0.5] * 3, "scale": 1.0 / 255.0},
                   "sensors": sensors},
        "outputs": {"decision": {"name": "logits", "kind": "softmax", "labels": ["go", "brake"],
                                 "brake_label": "brake", "threshold": 0.5,
                                 **({"tokens": list(SMOLVLM_WORDS)} if smolvlm else {})}},
        "vlm": vlm,
        "runtime": asdict(RuntimeSpec()),
        "latency_budget_ms": 30.0 if smolvlm else 5.0,
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m tiny_node.model.testvlm OUT_DIR [--smolvlm] [--force]``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("out", type=Path)
    ap.add_argument("--smolvlm", action="store_true", help="the published SmolVLM layout")
    ap.add_argument("--force", action="store_true", help="write into OUT_DIR even if it is not empty")
    args = ap.parse_args(argv)
    refusal = None if args.force else occupied(args.out)
    if refusal:
        print(f"{ap.prog}: error: {refusal}", file=sys.stderr)
        return 2
    print(make_tiny_vlm_bundle(args.out, smolvlm=args.smolvlm))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
