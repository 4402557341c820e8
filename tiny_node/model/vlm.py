"""A small vision-language model under a deadline: decide from one prefill, explain later.

Why this shape: the decision must fit the frame's deadline, so it is read from ONE decoder
pass over the prompt (the prefill): the next-token logits of the decision words only, with a
softmax over just those words (output.read_decision). A rationale needs a decoding loop,
which does not fit; it runs afterwards from the KV cache the prefill left (greedy, one token
per decoder run, present -> past) and can be aborted between steps and inside one
(``RunOptions.terminate``).

Graphs, in the published SmolVLM / transformers.js export layout (docs/BUNDLE.md)::

    vision_encoder  pixel_values [1, C, H, W]                  -> image_features [.., T, hidden]
                    smolvlm: pixel_values [1, 1, 3, H, W] + pixel_attention_mask bool [1, 1, H, W]
    embed_tokens    input_ids i64 [1, S]                       -> inputs_embeds [1, S, hidden]
    decoder         inputs_embeds, attention_mask i64 [1, past+S], position_ids i64 [1, S],
                    past_key_values.{i}.key|value [1, kv_heads, past, head_dim]
                    -> logits [1, S or 1, vocab], present.{i}.key|value [1, kv_heads, past+S, head_dim]

(``logits`` is ``outputs.decision.name``; an export may compute the last position only.)

The image features replace the rows of inputs_embeds where input_ids == image_token_id; the
first decoder step gets zero-length past tensors; positions count from 0. A two-frame bundle
(``vlm.frames.count: 2``) splices an earlier frame's features first, taken from a history of
encoder outputs keyed by frame time (history.py), so the vision encoder still runs once per
decision.
"""

from __future__ import annotations

import json
import math
import re
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from tokenizers import Tokenizer

from tiny_node.config import MAX_CONTEXT_CHARS
from tiny_node.model.bundle import Bundle, BundleError, KvSpec, VlmSpec
from tiny_node.model.conflict import conflict_times
from tiny_node.model.history import FrameHistory
from tiny_node.model.output import ModelOutput, brake_on_conflict, read_decision
from tiny_node.model.preprocess import feature_value, whole_frame
from tiny_node.model.runtime import load_session, probe_run
from tiny_node.model.tracker import RECORD_FIELDS
from tiny_node.model.tracking import Tracking, describe, describe_track, features_of, shown_slots

IMAGE_FEATURES = "image_features"
PIXEL_VALUES = "pixel_values"
PIXEL_MASK = "pixel_attention_mask"
INPUT_IDS = "input_ids"
INPUTS_EMBEDS = "inputs_embeds"
ATTENTION_MASK = "attention_mask"
POSITION_IDS = "position_ids"
#: A tag in angle brackets in a prompt's text: chat framing (``<|im_start|>``, ``<global-img>``, ``</s>``), one
#: token. It starts like a name: an arrow (``<->``, ``<=>``) is text.
_TAG = re.compile(r"<[|/]?[A-Za-z_][^<>{}\s]*>")
USE_CACHE_BRANCH = "use_cache_branch"  # older optimum merged decoders: false on the first step

_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")
_SPACES = re.compile(r" {2,}")
_FLOATS: dict[str, type[np.floating[Any]]] = {"tensor(float)": np.float32,
                                               "tensor(float16)": np.float16}


class RationaleAbortedError(RuntimeError):
    """A rationale was stopped (``RunOptions.terminate``) after ``tokens`` tokens."""

    def __init__(self, tokens: int) -> None:
        super().__init__(f"rationale aborted after {tokens} tokens")
        self.tokens = tokens


def clean_context(context: str) -> str:
    """Operator context as plain lower-case words, at most MAX_CONTEXT_CHARS.

    Angle brackets are dropped so a context can never forge a special token (an extra image
    token would break the splice); whitespace is collapsed; lower case, as the factory trains
    on it: the shipped tokenizer is case-sensitive, and "School zone" read as <unk> zone.
    """
    return " ".join(context.replace("<", " ").replace(">", " ").split()).lower()[:MAX_CONTEXT_CHARS]


class PromptBuilder:
    """Template + sensor values + context -> prompt text and token ids (no onnxruntime)."""

    def __init__(self, bundle: Bundle, tokenizer: Tokenizer) -> None:
        if bundle.vlm is None:
            raise BundleError(f"{bundle.root}: kind {bundle.kind!r} has no vlm section")
        self.spec: VlmSpec = bundle.vlm
        self.sensors = bundle.sensors
        self.tokenizer = tokenizer
        self._image = self.spec.image_token * self.spec.image_tokens_per_tile

    def text(self, features: Mapping[str, float], context: str = "") -> str:
        """The prompt text; runs of spaces (an empty ``{context}``) collapse to one."""
        values: dict[str, object] = {"image": self._image, "image_prev": self._image,
                                     "context": clean_context(context)}
        if self.sensors is not None:
            clip = self.sensors.range_clip_m
            nums = {f: feature_value(f, features, clip) for f in self.sensors.features}
            values.update(nums)
            values["sensors"] = " ".join(b.token(nums[b.feature]) for b in self.sensors.bins)
        return _SPACES.sub(" ", self.spec.prompt.format(**values))

    def ids(self, features: Mapping[str, float], context: str = "") -> NDArray[np.int64]:
        """Token ids ``[1, S]`` (no special tokens added: the template holds the framing)."""
        enc = self.tokenizer.encode(self.text(features, context), add_special_tokens=False)
        return np.asarray([enc.ids], dtype=np.int64)


@dataclass
class _Prefill:
    """What a decision leaves for its rationale."""

    past: list[NDArray[Any]]  # present.* of the prefill, fed back as past_key_values.*
    length: int  # tokens in the cache
    first: int  # the decided word: the first token the rationale feeds
    embeds: NDArray[Any]  # the prompt's inputs_embeds (reference path without cache)


class VlmRuntime:
    """Three verified sessions, the tokenizer and the prompt of one ``kind: vlm`` bundle.

    ``decide`` = preprocess + vision encoder + embed + one decoder prefill, and keeps the KV
    cache; ``rationale`` continues greedily from it (once per decision). Not thread-safe:
    one caller at a time (the worker's job thread), except that ``RunOptions.terminate`` may
    be set from another thread.
    """

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        if bundle.vlm is None:
            raise BundleError(f"{bundle.root}: kind {bundle.kind!r} is not a vlm bundle")
        self.bundle = bundle
        self.spec: VlmSpec = bundle.vlm
        self.tokenizer = self._load_tokenizer()
        self.config = self._load_config()
        self.vision = load_session(bundle, "vision_encoder", threads)
        self.embed = load_session(bundle, "embed_tokens", threads)
        self.decoder = load_session(bundle, "decoder", threads)
        self._pixel_dtype = self._check_vision()
        self._check_embed()
        self.kv, self._kv_dtype, self._embeds_dtype, self._cache_branch = self._check_decoder()
        self._past_names = _past_names(self.kv.num_layers)
        self._outputs = [bundle.decision.name, *_present_names(self.kv.num_layers)]
        self._empty = np.zeros((1, self.kv.num_kv_heads, 0, self.kv.head_dim), self._kv_dtype)
        self.prompt = PromptBuilder(bundle, self.tokenizer)
        self.word_ids = tuple(self._token_id(t, "outputs.decision.tokens")
                              for t in bundle.decision.label_tokens)
        if len(set(self.word_ids)) != len(self.word_ids):  # equal logits: P(brake) would be a constant
            raise BundleError(f"outputs.decision.tokens: {list(bundle.decision.label_tokens)} are the same "
                              f"token ids {list(self.word_ids)} in {bundle.file('tokenizer').path}")
        self.eos_ids = tuple(self._token_id(t, "vlm.eos") for t in self.spec.eos)
        self.eos_id = self.eos_ids[0]  # the first listed: what a taught answer ends with
        self._check_prompt_tokens()
        self._image = whole_frame(bundle.image)  # inputs.image.roi is the detector's window only
        h, w = bundle.image.height, bundle.image.width
        self._mask = np.ones((1, 1, h, w), dtype=np.bool_)
        self.vocab_size, self.hidden = self._probe()
        self._state: _Prefill | None = None
        self.last_ms: dict[str, float] = {}  # stage timings of the last decide()
        self.history = FrameHistory(self.spec.frames)
        self.last_prev_age_s: float | None = None  # age of the earlier image last used
        self.tracking = (Tracking.of_bundle(bundle, self.spec.tracking, threads)
                         if self.spec.tracking is not None else None)
        #: track slots the prompt shows the model (its vru<k>_* features; at most vlm.tracking.tracks):
        #: the model's veto on the conflict brake holds for these tracks only
        self.shown_slots = shown_slots(self.prompt.sensors.features if self.prompt.sensors is not None else (),
                                       self.spec.tracking.tracks if self.spec.tracking is not None else 0)

    # -- loading and checks ----------------------------------------------------------
    def _where(self, key: str) -> str:
        return f"files.{key}: {self.bundle.file(key).path}"

    def _load_tokenizer(self) -> Tokenizer:
        """The verified tokenizer, with any saved padding / truncation switched off.

        Why: the decision is read after the prompt's last token; pads after it, or a prompt cut
        at ``truncation.max_length`` (by a long context, say), would decide on something else.
        """
        data = self.bundle.read_verified("tokenizer")
        try:
            tok = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as exc:  # tokenizers raises plain Exception (deep nesting too: serde's recursion limit)
            raise BundleError(f"{self._where('tokenizer')}: not a tokenizers JSON: {exc}") from exc
        tok.no_padding()
        tok.no_truncation()
        return tok

    def _load_config(self) -> dict[str, Any]:
        if "config" not in self.bundle.files:
            return {}
        try:
            cfg = json.loads(self.bundle.read_verified("config"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{self._where('config')}: not valid JSON: {exc}") from exc
        except RecursionError as exc:  # '[' * 100000 fits in 1 MiB; a bundle fault, not a crash of the load
            raise BundleError(f"{self._where('config')}: nested too deeply to parse "
                              f"(RecursionError: {exc})") from exc
        if not isinstance(cfg, dict):
            raise BundleError(f"{self._where('config')}: expected a JSON object")
        return cfg

    def _check_vision(self) -> type[np.floating[Any]]:
        img, where = self.bundle.image, self._where("vision_encoder")
        ins = {i.name: i for i in self.vision.get_inputs()}
        if self.spec.smolvlm:
            if img.name != PIXEL_VALUES or img.layout != "NCHW" or img.color != "rgb":
                raise BundleError("inputs.image: the smolvlm layout needs name pixel_values, "
                                  f"layout NCHW, color rgb (got {img.name}, {img.layout}, {img.color})")
            want: dict[str, tuple[int, ...]] = {PIXEL_VALUES: (1, 1, 3, img.height, img.width),
                                                PIXEL_MASK: (1, 1, img.height, img.width)}
        else:
            want = {img.name: img.shape}
        if set(ins) != set(want):
            raise BundleError(f"inputs.image: {where} has inputs {sorted(ins)}, the "
                              f"{'smolvlm' if self.spec.smolvlm else 'tiny_node'} layout "
                              f"expects {sorted(want)}")
        for name, shape in want.items():
            types = ("tensor(bool)",) if name == PIXEL_MASK else tuple(_FLOATS)
            _check_arg(ins[name], shape, types, "inputs.image", where)
        _require_outputs(self.vision, (IMAGE_FEATURES,), where)
        pixel_name = PIXEL_VALUES if self.spec.smolvlm else img.name
        return _FLOATS[ins[pixel_name].type]

    def _check_embed(self) -> None:
        where = self._where("embed_tokens")
        ins = {i.name: i for i in self.embed.get_inputs()}
        if set(ins) != {INPUT_IDS}:
            raise BundleError(f"{where}: inputs {sorted(ins)}, expected ['{INPUT_IDS}']")
        _check_arg(ins[INPUT_IDS], (1, 0), ("tensor(int64)",), "files.embed_tokens", where)
        _require_outputs(self.embed, (INPUTS_EMBEDS,), where)

    def _check_decoder(self) -> tuple[KvSpec, type[np.floating[Any]], type[np.floating[Any]], bool]:
        where = self._where("decoder")
        ins = {i.name: i for i in self.decoder.get_inputs()}
        i64 = ("tensor(int64)",)
        for name, types, shape in ((INPUTS_EMBEDS, tuple(_FLOATS), (1, 0, 0)),
                                   (ATTENTION_MASK, i64, (1, 0)), (POSITION_IDS, i64, (1, 0))):
            if name not in ins:
                raise BundleError(f"{where}: no input {name!r} (graph inputs: {sorted(ins)})")
            _check_arg(ins[name], shape, types, "files.decoder", where)
        layers: dict[int, set[str]] = {}
        for name in ins:
            m = _PAST.match(name)
            if m:
                layers.setdefault(int(m.group(1)), set()).add(m.group(2))
        n = len(layers)
        if n == 0 or sorted(layers) != list(range(n)) or any(v != {"key", "value"}
                                                            for v in layers.values()):
            raise BundleError(f"{where}: expected past_key_values.{{0..n-1}}.key|value inputs, "
                              f"got layers {sorted(layers)}")
        extra = sorted(set(ins) - {INPUTS_EMBEDS, ATTENTION_MASK, POSITION_IDS, USE_CACHE_BRANCH}
                       - set(_past_names(n)))
        if extra:
            raise BundleError(f"{where}: inputs the vlm runtime cannot feed: {extra}")
        _require_outputs(self.decoder, [self.bundle.decision.name, *_present_names(n)], where)
        past = ins["past_key_values.0.key"]
        _check_arg(past, (1, 0, 0, 0), tuple(_FLOATS), "files.decoder", where)
        kv = self._kv_layout(n, list(past.shape), where)
        for name in _past_names(n):
            _check_arg(ins[name], (1, kv.num_kv_heads, 0, kv.head_dim), (past.type,), "vlm.kv",
                       where)
        return kv, _FLOATS[past.type], _FLOATS[ins[INPUTS_EMBEDS].type], USE_CACHE_BRANCH in ins

    def _kv_layout(self, n: int, dims: list[Any], where: str) -> KvSpec:
        """Manifest ``vlm.kv`` > static graph dims > ``files.config``; all that exist must agree."""
        cfg_layers, cfg_heads, cfg_dim = self._config_kv()
        if cfg_layers is not None and cfg_layers != n:
            raise BundleError(f"files.config: num_hidden_layers {cfg_layers!r}, but {where} has "
                              f"{n} layers of past_key_values")
        graph = (dims[1] if isinstance(dims[1], int) else None,
                 dims[3] if isinstance(dims[3], int) else None)
        man = self.spec.kv
        if man is not None and man.num_layers != n:
            raise BundleError(f"vlm.kv.num_layers: manifest says {man.num_layers}, {where} has {n}")
        out = []
        for i, key in ((0, "num_kv_heads"), (1, "head_dim")):
            manv = getattr(man, key) if man is not None else None
            cfgv = (cfg_heads, cfg_dim)[i]
            cands = [v for v in (manv, graph[i], cfgv) if v is not None]
            if not cands:
                raise BundleError(f"vlm.kv.{key}: not in the manifest, not static in {where}, "
                                  "and no files.config says it")
            for src, v in (("manifest vlm.kv", manv), ("files.config", cfgv)):
                if v is not None and graph[i] is not None and v != graph[i]:
                    raise BundleError(f"vlm.kv.{key}: {src} says {v!r}, {where} has {graph[i]!r}")
            # also where the graph leaves it symbolic: a config.json from another model went unnoticed
            if manv is not None and cfgv is not None and manv != cfgv:
                raise BundleError(f"vlm.kv.{key}: manifest vlm.kv says {manv!r}, files.config says {cfgv!r}")
            out.append(int(cands[0]))
        return KvSpec(n, out[0], out[1])

    def _config_kv(self) -> tuple[int | None, int | None, int | None]:
        """(layers, kv heads, head_dim) that ``files.config`` says, each None when it does not.

        kv heads default to ``num_attention_heads``; head_dim to ``hidden_size // num_attention_heads``.
        """
        text = self.config.get("text_config", self.config)
        if not isinstance(text, dict):  # read past, a config.json with a text_config of [1] was no error
            raise BundleError(f"files.config: text_config is {type(text).__name__}, not an object")
        at = "text_config." if "text_config" in self.config else ""
        (layers,), (dim,) = _config_counts(text, at, "num_hidden_layers"), _config_counts(text, at, "head_dim")
        if dim is None and text.get("hidden_size") is not None and text.get("num_attention_heads") is not None:
            hidden, heads = _config_counts(text, at, "hidden_size", "num_attention_heads")
            dim = hidden // heads if hidden and heads else None
        (kv_heads,) = _config_counts(text, at, "num_key_value_heads" if "num_key_value_heads" in text
                                     else "num_attention_heads")
        return layers, kv_heads, dim

    def _token_id(self, text: str, key: str) -> int:
        """The id of one token: ``text`` encodes to exactly one token, or is a vocabulary entry.

        Why both: ``" brake"`` names a byte-level BPE token by its text, ``"brake"`` a
        WordLevel entry; either way it must be ONE token, or its logit is not a decision.
        """
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        tid = int(ids[0]) if len(ids) == 1 else self.tokenizer.token_to_id(text)
        if tid is None:
            raise BundleError(f"{key}: {text!r} is {len(ids)} tokens in "
                              f"{self.bundle.file('tokenizer').path}, need exactly one")
        self._check_known(text, int(tid), key)
        return int(tid)

    def _check_known(self, text: str, tid: int, key: str) -> None:
        """Refuse a word the vocabulary does not have: it encodes to the unknown token, whose logit is no word's."""
        model = self.tokenizer.model
        unk_text = getattr(model, "unk_token", None)
        unk = self.tokenizer.token_to_id(unk_text) if unk_text else getattr(model, "unk_id", None)
        if unk is not None and tid == unk and text.strip() != (unk_text or self.tokenizer.id_to_token(unk)):
            raise BundleError(f"{key}: {text!r} is not in the vocabulary of {self.bundle.file('tokenizer').path} "
                              f"(it encodes to the unknown token {self.tokenizer.id_to_token(unk)!r})")

    def _check_prompt_tokens(self) -> None:
        """Image and bin tokens must each stay ONE token inside prompt text."""
        tok, spec = self.tokenizer, self.spec
        where = self.bundle.file("tokenizer").path
        ids = tok.encode(spec.image_token, add_special_tokens=False).ids
        if ids != [spec.image_token_id]:
            raise BundleError(f"vlm.image_token_id: {where} encodes {spec.image_token!r} as "
                              f"{ids}, manifest says [{spec.image_token_id}]")
        for literal, *_ in string.Formatter().parse(spec.prompt):
            for tag in _TAG.findall(literal):  # chat framing: a typo or another model's tokenizer splits it
                ids = tok.encode(tag, add_special_tokens=False).ids
                if len(ids) != 1:
                    raise BundleError(f"vlm.prompt: {tag!r} is {len(ids)} tokens in {where}, not one: a tag in "
                                      "angle brackets is the model's framing and must be one of its tokens "
                                      "(a typo, or another model's tokenizer?)")
        for b in self.bundle.sensors.bins if self.bundle.sensors is not None else ():
            for t in b.all_tokens():
                ids = tok.encode(t, add_special_tokens=False).ids
                if len(ids) != 1:
                    raise BundleError(f"inputs.sensors.bins.{b.feature}: {t!r} is not a single "
                                      f"token in {where}")
                self._check_known(t, int(ids[0]), f"inputs.sensors.bins.{b.feature}")
        sample = self.prompt.ids({"ego_speed": 0.0})
        n = int((sample == spec.image_token_id).sum())
        if n != spec.image_tokens_per_tile * spec.frames.count:
            raise BundleError(f"vlm.prompt: renders {n} image tokens, image_tokens_per_tile is "
                              f"{spec.image_tokens_per_tile} for each of "
                              f"vlm.frames.count {spec.frames.count} frame(s)")

    def _probe(self) -> tuple[int, int]:
        """One tiny run of each graph: each must run, and feature rows, hidden size and vocabulary agree.

        Why at load: a mismatch is a bundle fault (permanent), not a runtime error that
        would only surface on the first frame.
        """
        pixels = self._pixels(np.zeros((self.bundle.image.height, self.bundle.image.width, 3),
                                       np.uint8))
        (feats,) = probe_run(self.vision, [IMAGE_FEATURES], pixels,
                             f"inputs.image: {self._where('vision_encoder')}")
        ids = np.asarray([[self.spec.image_token_id]], np.int64)
        (emb,) = probe_run(self.embed, [INPUTS_EMBEDS], {INPUT_IDS: ids}, self._where("embed_tokens"))
        hidden = int(emb.shape[-1])
        if emb.ndim != 3 or feats.shape[-1] != hidden:
            raise BundleError(f"{self._where('vision_encoder')}: image_features {list(feats.shape)}"
                              f" do not match inputs_embeds {list(emb.shape)} (hidden size)")
        rows = feats.size // hidden
        if rows != self.spec.image_tokens_per_tile:
            raise BundleError(f"vlm.image_tokens_per_tile: {self.spec.image_tokens_per_tile}, but "
                              f"the vision encoder gives {rows} feature rows per frame")
        logits, *_ = probe_run(self.decoder, self._outputs, self.decoder_feeds(emb), self._where("decoder"))
        if np.ndim(logits) != 3:
            raise BundleError(f"outputs.decision.name: {self._where('decoder')}: "
                              f"{self.bundle.decision.name!r} is {list(np.shape(logits))}, expected [1, S, vocab]")
        vocab = int(logits.shape[-1])
        used = {"outputs.decision.tokens": max(self.word_ids), "vlm.eos": max(self.eos_ids),
                "vlm.image_token_id": self.spec.image_token_id}
        for key, tid in used.items():
            if tid >= vocab:
                raise BundleError(f"{key}: token id {tid} >= the decoder's vocabulary {vocab}")
        self._probe_prompt(feats, emb)
        return vocab, hidden

    def _probe_prompt(self, feats: NDArray[Any], token: NDArray[Any]) -> None:
        """The rendered prompt with its image rows, then one cached step: what every frame and rationale run.

        Why: a decoder exported for one token, or one whose ``present.*`` does not grow the cache,
        passed the one-token probe and failed on the first frame or rationale, a worker restarted
        for ever with no file named (review 2026-12-07).
        """
        where = self._where("decoder")
        ids = self.prompt.ids({"ego_speed": 0.0})
        (emb,) = probe_run(self.embed, [INPUTS_EMBEDS], {INPUT_IDS: ids}, self._where("embed_tokens"))
        rows = np.concatenate([feats] * self.spec.frames.count, axis=-2)
        emb = self._splice(ids, np.array(emb), rows)
        s = int(ids.shape[1])
        _, *present = probe_run(self.decoder, self._outputs, self.decoder_feeds(emb),
                                f"{where} (the rendered prompt, {s} tokens)")
        self._check_present(present, s, f"{where} after the rendered prompt ({s} tokens)")
        _, *present = probe_run(self.decoder, self._outputs, self.decoder_feeds(token, present, s),
                                f"{where} (one cached step after {s} tokens)")
        self._check_present(present, s + 1, f"{where} after one cached step")

    def _check_present(self, present: Sequence[NDArray[Any]], length: int, where: str) -> None:
        """Each ``present.*`` is the cache of ``length`` tokens, [1, kv_heads, length, head_dim]."""
        want = [1, self.kv.num_kv_heads, length, self.kv.head_dim]
        for name, arr in zip(_present_names(self.kv.num_layers), present, strict=True):
            if list(np.shape(arr)) != want:
                raise BundleError(f"{where}: {name} is {list(np.shape(arr))}, expected {want} "
                                  "(the KV cache of every token so far)")

    # -- inference -------------------------------------------------------------------
    def _pixels(self, image_rgb: NDArray[np.uint8]) -> dict[str, NDArray[Any]]:
        x = self._image(image_rgb).astype(self._pixel_dtype, copy=False)
        if self.spec.smolvlm:  # one 512x512 tile, no image splitting: N = 1
            return {PIXEL_VALUES: x[:, np.newaxis], PIXEL_MASK: self._mask}
        return {self.bundle.image.name: x}

    def _detector_pixels(self, pixels: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """The VRU detector's feed: the image tensor alone, [1, C, H, W] (a SmolVLM tile is [1, 1, C, H, W])."""
        if self.spec.smolvlm:
            return {self.bundle.image.name: pixels[PIXEL_VALUES][:, 0]}
        return pixels

    def decoder_feeds(self, embeds: NDArray[Any], past: Sequence[NDArray[Any]] | None = None,
                      length: int = 0) -> dict[str, NDArray[Any]]:
        """The decoder's inputs for ``embeds`` after ``length`` cached tokens (``past`` None: a prefill).

        Also what calibration and benchmarks feed the decoder, so they see the runtime's inputs.
        """
        s = embeds.shape[1]
        feeds: dict[str, NDArray[Any]] = {
            # embed_tokens may be float16 and the decoder float32, or the reverse (mixed exports)
            INPUTS_EMBEDS: embeds.astype(self._embeds_dtype, copy=False),
            ATTENTION_MASK: np.ones((1, length + s), np.int64),
            POSITION_IDS: np.arange(length, length + s, dtype=np.int64)[np.newaxis],
        }
        for i, name in enumerate(self._past_names):
            feeds[name] = self._empty if past is None else past[i]
        if self._cache_branch:
            feeds[USE_CACHE_BRANCH] = np.array([past is not None], np.bool_)
        return feeds

    def _decode(self, embeds: NDArray[Any], past: Sequence[NDArray[Any]] | None, length: int,
                run_options: ort.RunOptions | None) -> tuple[NDArray[np.float32], list[NDArray[Any]]]:
        """One decoder run of ``embeds`` after ``length`` cached tokens; (last logits, present)."""
        logits, *present = self.decoder.run(self._outputs, self.decoder_feeds(embeds, past, length), run_options)
        return np.asarray(logits[0, -1], np.float32), present

    def decide(
        self, image_rgb: NDArray[np.uint8], features: Mapping[str, float], context: str = "",
        run_options: ort.RunOptions | None = None, *, time_s: float | None = None,
        tracks: NDArray[Any] | None = None,
    ) -> ModelOutput:
        """Prefill the prompt and read the decision words' next-token logits.

        ``time_s``: the frame's time (header stamp, or the driver's receipt time; seconds on
        any clock that the caller keeps consistent). A two-frame bundle takes the earlier
        image's visual tokens from the history at ``time_s - interval_s``; without a time, or
        with no frame near enough, the current frame stands in for the earlier one. Keeps
        the KV cache for :meth:`rationale`. A set ``run_options.terminate`` makes ORT raise
        (checked between nodes of each of the three graphs).

        A bundle with ``vlm.tracking`` runs its VRU detector on the frame and updates its
        tracker at ``time_s`` first; the tracks fill the ``vru<k>_*`` features. ``tracks``
        (records ``[rows, 4+]``: present, dx, y, vy[, vx_rel], ``tracker.RECORD_FIELDS``;
        all five with ``vlm.tracking.conflict``; nearest the path first) replaces the tracker's
        output: for offline evaluation on single frames, which have no history to track over.
        The prompt shows the first ``vlm.tracking.tracks`` of them. With
        ``vlm.tracking.conflict`` the decision is also a brake when any of them (every row, not
        only those shown) conflicts with the corridor soon enough (``model.conflict``),
        whatever the threshold.
        """
        self._state = None
        t0 = time.perf_counter()  # real time is the point: these are stage timings
        pixels = self._pixels(image_rgb)
        t_track = time.perf_counter()
        detector_ms = 0.0
        records: NDArray[Any] | None = None
        if self.tracking is not None:  # given records replace the detector + tracker, not run on top
            if tracks is not None:
                found, records = self._given_tracks(np.asarray(tracks)[:self.tracking.spec.tracks]), np.asarray(tracks)
            else:
                self.tracking.frame_size(image_rgb.shape[1], image_rgb.shape[0])
                found = self.tracking.step(self._detector_pixels(pixels), time_s,
                                           feature_value("ego_speed", features, 0.0), run_options,
                                           yaw_rate=feature_value("ego_yaw_rate", features, 0.0))
                detector_ms, records = self.tracking.last_detector_ms, self.tracking.last_records
            features = {**features, **found}
        track_ms = (time.perf_counter() - t_track) * 1e3
        ids = self.prompt.ids(features, context)
        t1 = time.perf_counter()
        (feats,) = self.vision.run([IMAGE_FEATURES], pixels, run_options)
        rows = self._with_history(feats, time_s)
        t2 = time.perf_counter()
        (embeds,) = self.embed.run([INPUTS_EMBEDS], {INPUT_IDS: ids}, run_options)
        embeds = self._splice(ids, embeds, rows)
        t3 = time.perf_counter()
        row, present = self._decode(embeds, None, 0, run_options)
        t4 = time.perf_counter()
        out = read_decision(row[list(self.word_ids)], self.bundle.decision)
        if self.tracking is not None and records is not None:
            # given records are a straight road's (offline evaluation); the tracker's know its curve
            widen = (0.0, 0.0) if tracks is not None else self.tracking.tracker.sweep_widening()
            out = self._with_tracks(out, features, records, widen)
        self._state = _Prefill(present, int(ids.shape[1]),
                               self.word_ids[self.bundle.decision.labels.index(out.label)], embeds)
        self.last_ms = {"prepare": (t1 - t0) * 1e3 - track_ms, "track": track_ms, "detector": detector_ms,
                        "vision": (t2 - t1) * 1e3,
                        "embed": (t3 - t2) * 1e3, "prefill": (t4 - t3) * 1e3,
                        "tokens": float(ids.shape[1])}
        return out

    def _with_tracks(self, out: ModelOutput, features: Mapping[str, float], records: NDArray[Any],
                     widen: tuple[float, float] = (0.0, 0.0)) -> ModelOutput:
        """``out`` with the tracks it was shown as text and, with ``vlm.tracking.conflict``, the earliest conflict.

        The conflict is of every record, not only the ones the prompt has slots for: the tracks
        nearest the path are not always the ones about to be in it (a cyclist closing in behind
        two people waiting at the kerb). One not shown is named in the text. Under the model's
        veto (``ConflictSpec.vetoes``) the earliest unshown conflict is the one that counts,
        named, and a shown conflict the veto cancelled in the window is said as such.
        ``widen``: the corridor's extra width on the left / right (a curve's inner side).
        """
        assert self.tracking is not None
        spec = self.tracking.spec
        shown = self.shown_slots
        text = describe(features, shown)
        if spec.conflict is None:
            return replace(out, tracks=text)
        each = conflict_times(np.asarray(records)[:, None, :], spec.conflict, widen)  # one row per track
        vetoed = spec.conflict.vetoes(out.p_brake)
        first = shown if vetoed else 0  # the model vetoes the conflicts of the tracks it was shown
        k = first + int(np.argmin(each[first:])) if len(each) > first else -1
        t = float(each[k]) if k >= 0 else math.inf
        if t < math.inf:
            text += f"; track conflict in {t:.1f} s"
            if k >= shown:
                _, dx, y, vy = (float(v) for v in records[k, :4])
                text += f" ({describe_track(k, dx, y, vy)}, not among the tracks shown)"
        shown_s = float(np.min(each[:shown])) if vetoed and min(len(each), shown) else math.inf
        if spec.conflict.brakes(shown_s):  # say why a conflict in the window did not brake
            text += (f"; track conflict in {shown_s:.1f} s vetoed by the model "
                     f"(P(brake) {out.p_brake:.3f} < {spec.conflict.min_p_brake:g})")
        return brake_on_conflict(replace(out, tracks=text), t, spec.conflict, self.bundle.decision)

    def _given_tracks(self, tracks: NDArray[Any]) -> dict[str, float]:
        """The ``vru<k>_*`` features of given records; a field this prompt holds must be in them.

        Only for a slot the records hold (a missing slot is an empty one, all 0).
        """
        found = features_of(tracks)
        wanted = self.prompt.sensors.features if self.prompt.sensors is not None else ()
        lacking = [f for f in wanted if f.startswith("vru") and f not in found
                   and f"{f.split('_', 1)[0]}_present" in found]
        if lacking:
            raise ValueError(f"tracks: the records lack {lacking}, which this bundle's prompt holds "
                             f"(inputs.sensors.features); give [slots, {len(RECORD_FIELDS)}] records")
        return found

    def _with_history(self, feats: NDArray[Any], time_s: float | None) -> NDArray[Any]:
        """The feature rows of every image in the prompt, earliest first; records ``feats``."""
        if self.spec.frames.count == 1:
            return feats
        prev = self.history.pick(time_s) if time_s is not None else None
        self.last_prev_age_s = None if prev is None else prev[0]
        if time_s is not None:
            self.history.add(time_s, feats)
        return np.concatenate([feats if prev is None else prev[1], feats], axis=-2)

    def remember(self, image_rgb: NDArray[np.uint8], time_s: float) -> None:
        """Encode a frame into the history without deciding (no-op for one frame).

        For a frame the caller skipped, or the earlier frame of an evaluation pair.
        """
        if self.spec.frames.count == 1:
            return
        (feats,) = self.vision.run([IMAGE_FEATURES], self._pixels(image_rgb))
        self.history.add(time_s, feats)

    def reset_history(self) -> None:
        """Forget earlier frames and tracks (a new drive): the next decision sees no motion."""
        self.history.clear()
        self.last_prev_age_s = None
        if self.tracking is not None:
            self.tracking.reset()

    def _splice(self, ids: NDArray[np.int64], embeds: NDArray[Any],
                feats: NDArray[Any]) -> NDArray[Any]:
        """Image features replace the rows of the image tokens, in order."""
        mask = ids[0] == self.spec.image_token_id
        rows = feats.reshape(-1, embeds.shape[-1])
        if int(mask.sum()) != rows.shape[0]:
            raise ValueError(f"prompt has {int(mask.sum())} image tokens, the vision encoder "
                             f"gave {rows.shape[0]} feature rows")
        embeds[0, mask] = rows.astype(embeds.dtype, copy=False)
        return embeds

    def generate_ids(self, max_tokens: int | None = None, *, use_cache: bool = True,
                     run_options: ort.RunOptions | None = None) -> list[int]:
        """Greedy rationale token ids after the decided word, up to ``eos`` or ``max_tokens``.

        The decided word (not the argmax: the threshold may differ) is fed first, so the
        rationale explains the published decision. ``use_cache=False`` re-runs the whole
        sequence each step with zero-length past: the reference an export's KV plumbing must
        match token for token. Consumes the prefill (one rationale per decision).
        Raises :class:`RationaleAbortedError` once ``run_options.terminate`` is set.
        """
        st, self._state = self._state, None
        if st is None:
            raise RuntimeError("no prefill to continue: call decide() first (one rationale each)")
        limit = self.spec.max_rationale_tokens if max_tokens is None else max_tokens
        out: list[int] = []
        last, past, length, seq = st.first, st.past, st.length, st.embeds
        try:
            for _ in range(limit):
                if run_options is not None and run_options.terminate:
                    raise RationaleAbortedError(len(out))
                ids = np.asarray([[last]], np.int64)
                (emb,) = self.embed.run([INPUTS_EMBEDS], {INPUT_IDS: ids}, run_options)
                if use_cache:
                    row, past = self._decode(emb, past, length, run_options)
                    length += 1
                else:
                    seq = np.concatenate([seq, emb], axis=1)
                    row, _ = self._decode(seq, None, 0, run_options)
                if not np.all(np.isfinite(row)):
                    raise ValueError(f"decoder: non-finite logits after {len(out)} tokens")
                last = int(np.argmax(row))
                if last in self.eos_ids:
                    break
                out.append(last)
        except RationaleAbortedError:
            raise
        except Exception as exc:
            if run_options is not None and run_options.terminate:
                raise RationaleAbortedError(len(out)) from exc
            raise
        return out

    def text(self, ids: Sequence[int]) -> str:
        """Rationale ids as text (special tokens skipped)."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True)).strip()

    def rationale(self, max_tokens: int | None = None,
                  run_options: ort.RunOptions | None = None) -> str:
        """Greedy rationale text continuing the last :meth:`decide` from its KV cache."""
        return self.text(self.generate_ids(max_tokens, run_options=run_options))

    def warm_up(self, runs: int, rationale_tokens: int | None = None) -> list[float]:
        """``runs`` decisions (ms each) on the exact input shapes, then one rationale.

        Why the rationale too: its first decoding steps pay kernel setup as well. Up to
        ``rationale_tokens`` (None: the bundle's ``max_rationale_tokens``; 0: none), the caller's
        cap: a manifest's 3000 took 10 s of a start budget where the node writes 24.
        """
        img = self.bundle.image
        frame = np.full((img.height, img.width, 3), 128, dtype=np.uint8)
        lat: list[float] = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.decide(frame, {"ego_speed": 0.0})
            lat.append((time.perf_counter() - t0) * 1e3)
        own = self.spec.max_rationale_tokens
        limit = own if rationale_tokens is None else min(rationale_tokens, own)
        if self._state is not None and limit > 0:
            self.rationale(limit)
        self._state = None
        return lat


def _past_names(layers: int) -> list[str]:
    return [f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]


def _present_names(layers: int) -> list[str]:
    return [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]


def _config_counts(text: Mapping[str, Any], at: str, *keys: str) -> tuple[int | None, ...]:
    """``text[key]`` for each of ``keys`` as a whole number above 0 (a float like 3.0 as its int), None if absent.

    Why: config.json is the export's, not checked by the manifest parser: ``"3"`` compared unequal to
    the graph's 3 ("config says 3, graph has 3"), or was cast by int() silently where the graph is
    dynamic. Names every value read together.
    """
    values = [text.get(k) for k in keys]
    counts = [_whole(v) for v in values]
    if any(c is None and v is not None for c, v in zip(counts, values, strict=True)):
        shown = " and ".join(f"{k} {v!r}" for k, v in zip(keys, values, strict=True))
        what = "whole numbers" if len(keys) > 1 else "a whole number"
        raise BundleError(f"files.config: {at}{shown} must be {what} above 0")
    return tuple(counts)


def _whole(value: Any) -> int | None:
    """``value`` as an int if it is a whole number above 0 (not a bool or a string), else None."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if type(value) is int and value > 0 else None


def _check_arg(arg: Any, shape: tuple[int, ...], types: tuple[str, ...], key: str,
               where: str) -> None:
    """One graph input: its type in ``types``, rank and static dims as ``shape`` (0 = any)."""
    if arg.type not in types:
        raise BundleError(f"{key}: {where}: {arg.name!r} is {arg.type}, expected "
                          f"{' or '.join(types)}")
    dims = list(arg.shape)
    ok = len(dims) == len(shape) and all(
        not isinstance(d, int) or s in (0, d) for d, s in zip(dims, shape, strict=True)
    )
    if not ok:
        raise BundleError(f"{key}: {where}: {arg.name!r} has shape {dims}, expected "
                          f"{[s if s else '?' for s in shape]}")


def _require_outputs(sess: ort.InferenceSession, names: Sequence[str], where: str) -> None:
    have = {o.name for o in sess.get_outputs()}
    missing = [n for n in names if n not in have]
    if missing:
        raise BundleError(f"{where}: missing outputs {missing} (graph outputs: {sorted(have)})")
