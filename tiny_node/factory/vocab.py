"""The model's language: vocabulary, tokenizer, prompt and answer texts.

Why one module: the factory trains on token ids and the node's runtime builds them from the
manifest (``vlm.PromptBuilder``); both must produce the same ids for the same frame. The
prompt here is rendered the same way as the runtime renders it (``str.format`` then runs of
spaces collapsed) and the export checks the ids against the runtime's own PromptBuilder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

from tiny_node.factory.config import TRACK_BASE
from tiny_node.model.bundle import TRACK_FEATURES, BinSpec
from tiny_node.model.preprocess import feature_value
from tiny_node.model.vlm import clean_context

IMAGE = "<image>"
EOS = "<end_of_utterance>"
UNK = "<unk>"
PAD = "<pad>"
FEATURES = ("ego_speed", "range", "range_rate", "range_valid")
RANGE_CLIP_M = 100.0
#: feature -> (prefix, step, lo, hi): one vocabulary token per bin, ``<spd_0>``..``<spd_40>``.
BINS: dict[str, tuple[str, float, int, int]] = {
    "ego_speed": ("spd", 1.0, 0, 40),  # m/s, 1 m/s bins up to 144 km/h
    "range": ("rng", 2.0, 0, 50),  # m, 2 m bins up to the 100 m clip
    "range_rate": ("rr", 1.0, -30, 10),  # m/s, negative = closing
    "range_valid": ("val", 1.0, 0, 1),
}
#: tracked-VRU features (every slot shares its field's tokens; the slot is the position)
TRACK_BINS: dict[str, tuple[str, float, int, int]] = {
    "present": ("tp", 1.0, 0, 1),
    "dx": ("tdx", 2.0, 0, 30),  # m, 2 m bins up to 60 m
    "y": ("ty", 0.5, -16, 16),  # m, 0.5 m bins, +-8 m
    "vy": ("tvy", 0.25, -12, 12),  # m/s, 0.25 m/s bins, +-3 m/s
    "vx_rel": ("tvx", 1.0, -30, 10),  # m/s, 1 m/s bins, negative = closing (as range_rate)
}
#: one frame (the first default model), and two: the earlier frame's visual tokens first, each
#: block after a marker word, so the decoder knows which image is which.
PROMPTS = {1: "{image} {sensors} {context} question: brake? answer:",
           2: "earlier {image_prev} now {image} {sensors} {context} question: brake? answer:"}
LABELS = ("go", "brake")
CONTEXTS = ("", "school zone", "urban", "highway")
KIND_WORDS = {"car": "car", "parked_car": "parked car", "adult": "adult", "child": "child",
              "cyclist": "cyclist", "static": "obstacle"}
WORDS = ("question", ":", "?", "answer", "brake", "go", ",", "m", "clear", "road", "car",
         "parked", "adult", "child", "cyclist", "obstacle", "crossing", "from", "the", "left",
         "right", "stopped", "ahead", "closing", "oncoming", "on", "not", "in", "path", "safe",
         "gap", "school", "zone", "urban", "highway", "earlier", "now")
MAX_DISTANCE_WORD = 99
_SPACES = re.compile(r" {2,}")


def features_for(tracks: int = 0, fields: Sequence[str] = TRACK_BASE) -> tuple[str, ...]:
    """The prompt's sensor features: the node's, then ``vru<k>_<field>`` of ``tracks`` track slots."""
    for f in fields:
        if f not in TRACK_FEATURES or f not in TRACK_BINS:
            raise ValueError(f"track field {f!r}: not one of {list(TRACK_BINS)}")
    return (*FEATURES, *(f"vru{k}_{f}" for k in range(tracks) for f in fields))


def bin_specs(tracks: int = 0, fields: Sequence[str] = TRACK_BASE) -> tuple[BinSpec, ...]:
    """The sensor bins in feature order (the runtime's BinSpec, so binning is identical)."""
    return tuple(BinSpec(f, *(BINS[f] if f in BINS else TRACK_BINS[f.split("_", 1)[1]]))
                 for f in features_for(tracks, fields))


def _bin_tokens(tracks: int, fields: Sequence[str] = TRACK_BASE) -> list[str]:
    return list(dict.fromkeys(t for b in bin_specs(tracks, fields) for t in b.all_tokens()))


def vocabulary(tracks: int = 0, fields: Sequence[str] = TRACK_BASE) -> dict[str, int]:
    """Token -> id: specials, sensor bins, words, distances 0..99 m, then track bins if any.

    The track bins come last (in ``fields`` order) so every other token keeps its id with or
    without them, and a field added later leaves the ids of the earlier ones.
    """
    bins = _bin_tokens(0)
    numbers = [str(n) for n in range(MAX_DISTANCE_WORD + 1)]
    track_bins = [t for t in _bin_tokens(tracks, fields) if t not in bins]
    tokens = [UNK, PAD, IMAGE, EOS, *bins, *WORDS, *numbers, *track_bins]
    if len(set(tokens)) != len(tokens):
        raise ValueError("duplicate token in the vocabulary")
    return {t: i for i, t in enumerate(tokens)}


def build_tokenizer(tracks: int = 0, fields: Sequence[str] = TRACK_BASE) -> Tokenizer:
    """WordLevel over :func:`vocabulary`, split on whitespace/punctuation; bins stay whole."""
    vocab = vocabulary(tracks, fields)
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (PAD, IMAGE, EOS)])
    tok.add_tokens([AddedToken(t, normalized=False) for t in _bin_tokens(tracks, fields)])
    return tok


def prompt_text(features: Mapping[str, float], context: str, image_tokens: int, frames: int,
                tracks: int = 0, *, fields: Sequence[str] = TRACK_BASE) -> str:
    """The prompt exactly as ``vlm.PromptBuilder.text`` renders it for this bundle."""
    nums = {f: feature_value(f, features, RANGE_CLIP_M) for f in features_for(tracks, fields)}
    sensors = " ".join(b.token(nums[b.feature]) for b in bin_specs(tracks, fields))
    img = IMAGE * image_tokens
    text = PROMPTS[frames].format(image=img, image_prev=img, sensors=sensors, context=clean_context(context))
    return _SPACES.sub(" ", text)


def distance_word(d: float) -> str:
    """A distance as the vocabulary's whole-metre word (clamped to 0..99)."""
    return str(min(max(round(d), 0), MAX_DISTANCE_WORD))


def encode(tok: Tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without added framing; unknown words are an error, not <unk>."""
    ids: list[int] = tok.encode(text, add_special_tokens=False).ids
    unk = tok.token_to_id(UNK)
    if unk in ids:
        raise ValueError(f"text has words outside the vocabulary: {text!r}")
    return ids


def answer_ids(tok: Tokenizer, brake: bool, rationale: str) -> list[int]:
    """The answer the model is taught: decision word, rationale words, eos."""
    return [*encode(tok, LABELS[int(brake)]), *encode(tok, rationale), token_id(tok, EOS)]


def token_id(tok: Tokenizer, token: str) -> int:
    """The id of a vocabulary entry (a missing one is an error, never None)."""
    tid = tok.token_to_id(token)
    if tid is None:
        raise ValueError(f"{token!r} is not in the vocabulary")
    return int(tid)


def decision_token_ids(tok: Tokenizer) -> tuple[int, int]:
    """Ids of ``go`` and ``brake`` (label order)."""
    return token_id(tok, LABELS[0]), token_id(tok, LABELS[1])


def words(ids: Sequence[int], tok: Tokenizer) -> str:
    """Ids back to text (specials dropped)."""
    return str(tok.decode(list(ids), skip_special_tokens=True))
