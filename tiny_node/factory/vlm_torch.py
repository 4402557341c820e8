"""The small VLM in torch: conv image encoder -> visual tokens -> Llama-style causal decoder.

Why this shape: it is the published small-VLM recipe (SmolVLM: vision encoder, image tokens
spliced into the text embeddings, a decoder-only LM) shrunk to a 2-core deadline, and it
exports to the same three graphs the node's runtime reads (``vision_encoder`` /
``embed_tokens`` / ``decoder_model_merged`` with ``past_key_values.*`` -> ``present.*``).

- Vision: the frame (``[B, 3, 240, 320]``, the manifest's resize of the camera frame) is
  cropped in-graph to the band around the horizon where obstacles appear (free: a Slice), then
  a stride-4 patch conv and stride-2 3x3 convs (BatchNorm, ReLU) give a grid whose cells are
  the visual tokens, projected to the decoder width plus a learned position per token.
- Decoder: RMSNorm, rotary positions (rotate_half, base 10000), grouped-query attention with a
  KV cache, SwiGLU MLP, untied lm_head. Only the last position's logits are computed (the
  runtime reads ``logits[0, -1]``): a prefill pays lm_head once.
- Structured pruning hooks: optional gates on attention heads and MLP channels measure
  first-order (Taylor) importance; ``prune`` builds the smaller model with the chosen heads /
  channels copied over.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (the torch convention)
from torch import Tensor, nn

from tiny_node.factory.config import TRACK_BASE

IMAGE_H, IMAGE_W = 240, 320
#: rows / columns of the 320x240 frame the encoder looks at: the horizon is row 120 (pitch 0);
#: 30 rows above it hold a standing adult at 5 m, 70 below a car's bumper at 5 m; the columns
#: span +-28 degrees. Why 320x240: half the camera's 640x480, so the runtime's INTER_AREA
#: resize takes OpenCV's fast integer-ratio path (measured ~0.25 ms vs ~3 ms for 256x192).
ROI = (90, 190, 20, 300)
RMS_EPS = 1e-5


@dataclass(frozen=True)
class VlmConfig:
    """Sizes of one model. ``ffn`` is per layer (pruning may leave layers different)."""

    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: tuple[int, ...]
    channels: tuple[int, ...]  # stem, then one stride-2 stage per entry
    extra_convs: bool = False  # a stride-1 3x3 conv after each stride-2 stage (teacher)
    rope_base: float = 10000.0
    roi: tuple[int, int, int, int] = ROI
    frames: int = 1  # images in the prompt: 2 = the earlier frame's visual tokens, then the current's
    image_token_id: int = 2  # the <image> placeholder whose rows the visual tokens replace
    tracks: int = 0  # tracked-VRU slots in the prompt (vlm.tracking), 0 = none
    track_fields: tuple[str, ...] = TRACK_BASE  # each slot's features (vocab.TRACK_BINS)

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (rows, cols) after the stem (/4) and the stride-2 stages."""
        h, w = (self.roi[1] - self.roi[0]) // 4, (self.roi[3] - self.roi[2]) // 4
        for _ in self.channels[1:]:
            h, w = (h + 1) // 2, (w + 1) // 2
        return h, w

    @property
    def image_tokens(self) -> int:
        """Visual tokens per frame."""
        h, w = self.grid
        return h * w

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples as lists).

        ``track_fields`` only when not the default, so a bundle's ``config.json`` (and its
        SHA-256) is what it was before the field existed.
        """
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if self.track_fields == TRACK_BASE:
            del d["track_fields"]
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> VlmConfig:
        """Inverse of :meth:`to_dict`."""
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return VlmConfig(**fields)


def _conv(cin: int, cout: int, k: int, s: int, p: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class VisionEncoder(nn.Module):
    """``pixel_values [B, 3, 240, 320]`` -> ``image_features [B, T, hidden]``."""

    def __init__(self, cfg: VlmConfig) -> None:
        super().__init__()
        self.roi = cfg.roi
        ch = cfg.channels
        layers: list[nn.Module] = [_conv(3, ch[0], 4, 4, 0)]
        for cin, cout in itertools.pairwise(ch):
            layers.append(_conv(cin, cout, 3, 2, 1))
            if cfg.extra_convs:
                layers.append(_conv(cout, cout, 3, 1, 1))
        self.body = nn.Sequential(*layers)
        self.proj = nn.Linear(ch[-1], cfg.hidden)
        self.pos = nn.Parameter(torch.zeros(cfg.image_tokens, cfg.hidden))
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, pixel_values: Tensor) -> Tensor:
        """Crop the region of interest, then encode it."""
        r0, r1, c0, c1 = self.roi
        return self.encode_roi(pixel_values[:, :, r0:r1, c0:c1])

    def encode_roi(self, roi: Tensor) -> Tensor:
        """Features of an already cropped region of interest (training data is stored so)."""
        x = self.body(roi).flatten(2).transpose(1, 2)  # [B, T, C], row-major grid order
        out: Tensor = self.proj(x) + self.pos
        return out


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain (no bias, no mean)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise the last dimension."""
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS) * self.weight


def rope_tables(position_ids: Tensor, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """Cos / sin ``[B, 1, S, head_dim]`` for rotate_half rotary embeddings."""
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=position_ids.device) / head_dim)
    freqs = position_ids.to(torch.float32)[..., None] * inv  # [B, S, hd/2]
    emb = torch.cat([freqs, freqs], dim=-1)[:, None]
    return emb.cos(), emb.sin()


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    h = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., h:], x[..., :h]], dim=-1) * sin


class Attention(nn.Module):
    """Grouped-query attention over past + new keys; returns the new cache too."""

    def __init__(self, cfg: VlmConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.hd = cfg.heads, cfg.kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.hidden, cfg.heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.hidden, cfg.kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.hidden, cfg.kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.heads * cfg.head_dim, cfg.hidden, bias=False)
        self.gate: Tensor | None = None  # [heads] importance gate (pruning only)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], bias: Tensor,
                past: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Attention output and the layer's present keys / values."""
        (cos, sin), (past_k, past_v) = rope, past
        b, s, _ = x.shape
        q = self.wq(x).view(b, s, self.heads, self.hd).transpose(1, 2)
        k = self.wk(x).view(b, s, self.kv_heads, self.hd).transpose(1, 2)
        v = self.wv(x).view(b, s, self.kv_heads, self.hd).transpose(1, 2)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        k_all = torch.cat([past_k, k], dim=2)
        v_all = torch.cat([past_v, v], dim=2)
        kk, vv = self._expand(k_all), self._expand(v_all)
        scores = q @ kk.transpose(-1, -2) * (1.0 / math.sqrt(self.hd)) + bias
        ctx = scores.softmax(-1) @ vv  # [B, heads, S, hd]
        if self.gate is not None:
            ctx = ctx * self.gate.view(1, -1, 1, 1)
        return self.wo(ctx.transpose(1, 2).reshape(b, s, self.heads * self.hd)), k_all, v_all

    def _expand(self, x: Tensor) -> Tensor:
        """KV heads repeated for their query heads (expand + reshape: exports as plain ops)."""
        rep = self.heads // self.kv_heads
        if rep == 1:
            return x
        b, kv, t, hd = x.shape
        return x[:, :, None].expand(b, kv, rep, t, hd).reshape(b, kv * rep, t, hd)


class Mlp(nn.Module):
    """SwiGLU: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, hidden: int, ffn: int) -> None:
        super().__init__()
        self.wg = nn.Linear(hidden, ffn, bias=False)
        self.wu = nn.Linear(hidden, ffn, bias=False)
        self.wd = nn.Linear(ffn, hidden, bias=False)
        self.gate: Tensor | None = None  # [ffn] importance gate (pruning only)

    def forward(self, x: Tensor) -> Tensor:
        """The gated MLP."""
        h = F.silu(self.wg(x)) * self.wu(x)
        if self.gate is not None:
            h = h * self.gate
        out: Tensor = self.wd(h)
        return out


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: VlmConfig, ffn: int) -> None:
        super().__init__()
        self.in_norm = RMSNorm(cfg.hidden)
        self.attn = Attention(cfg)
        self.post_norm = RMSNorm(cfg.hidden)
        self.mlp = Mlp(cfg.hidden, ffn)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], bias: Tensor,
                past: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """One block; returns its present keys / values too."""
        a, k, v = self.attn(self.in_norm(x), rope, bias, past)
        x = x + a
        return x + self.mlp(self.post_norm(x)), k, v


class Decoder(nn.Module):
    """The merged decoder: ``inputs_embeds`` + past -> hidden states and present."""

    def __init__(self, cfg: VlmConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList([Block(cfg, f) for f in cfg.ffn])
        self.norm = RMSNorm(cfg.hidden)
        self.lm_head = nn.Linear(cfg.hidden, cfg.vocab, bias=False)

    def hidden_states(self, embeds: Tensor, attention_mask: Tensor, position_ids: Tensor,
                      past: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Final-norm hidden states ``[B, S, hidden]`` and present (k0, v0, k1, v1, ...)."""
        s = embeds.shape[1]
        total = attention_mask.shape[1]
        cos, sin = rope_tables(position_ids, self.cfg.head_dim, self.cfg.rope_base)
        q_idx = torch.arange(s, device=embeds.device) + (total - s)
        k_idx = torch.arange(total, device=embeds.device)
        allowed = (k_idx[None, :] <= q_idx[:, None])[None, None] & (attention_mask[:, None, None, :] > 0)
        bias = torch.where(allowed, torch.zeros((), device=embeds.device),
                           torch.full((), -1e9, device=embeds.device))
        x, present = embeds, []
        for i, blk in enumerate(self.blocks):
            x, k, v = blk(x, (cos, sin), bias, (past[2 * i], past[2 * i + 1]))
            present += [k, v]
        return self.norm(x), present


class TinyVlm(nn.Module):
    """Vision encoder + token embedding + decoder (training view: whole sequences)."""

    def __init__(self, cfg: VlmConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision = VisionEncoder(cfg)
        self.embed = nn.Embedding(cfg.vocab, cfg.hidden)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.decoder = Decoder(cfg)

    def empty_past(self, batch: int) -> list[Tensor]:
        """Zero-length KV tensors, as the first decoder step gets them."""
        z = torch.zeros(batch, self.cfg.kv_heads, 0, self.cfg.head_dim)
        return [z] * (2 * self.cfg.layers)

    def forward(self, roi: Tensor, ids: Tensor, lengths: Tensor, roi_prev: Tensor | None = None) -> Tensor:
        """Final hidden states ``[B, S, hidden]`` of the prompt + answer ``ids [B, S]``.

        ``roi`` (and, for a two-frame model, ``roi_prev``) are cropped, normalised regions of
        interest. The rows of ``ids`` equal to ``image_token_id`` are replaced by the visual
        tokens in order, the earlier frame's first (the runtime's splice). Both frames go
        through the encoder in one batch. ``lengths`` (tokens per row, right padding) build
        the key padding mask. Apply ``decoder.lm_head`` to the positions you need.
        """
        b, s = ids.shape
        if self.cfg.frames == 2:
            if roi_prev is None:
                raise ValueError("a two-frame model needs roi_prev")
            both = self.vision.encode_roi(torch.cat([roi_prev, roi], 0))
            feats = torch.cat([both[:b], both[b:]], dim=1)
        else:
            feats = self.vision.encode_roi(roi)
        slots = ids == self.cfg.image_token_id
        if int(slots.sum()) != feats.shape[0] * feats.shape[1]:
            raise ValueError(f"ids hold {int(slots.sum())} image tokens, the encoder gave "
                             f"{feats.shape[0]} x {feats.shape[1]} rows")
        x = self.embed(ids).clone()
        x[slots] = feats.reshape(-1, feats.shape[-1])
        mask = (torch.arange(s)[None, :] < lengths[:, None]).to(torch.int64)
        pos = torch.arange(s)[None, :].expand(b, s)
        h, _ = self.decoder.hidden_states(x, mask, pos, self.empty_past(b))
        return h

    # -- pruning ---------------------------------------------------------------------
    def set_gates(self, on: bool) -> list[Tensor]:
        """Attach (or remove) ones-gates on heads and MLP channels; returns them (grad on)."""
        gates: list[Tensor] = []
        for blk in self.decoder.blocks:
            assert isinstance(blk, Block)
            if on:
                blk.attn.gate = torch.ones(self.cfg.heads, requires_grad=True)
                blk.mlp.gate = torch.ones(blk.mlp.wg.out_features, requires_grad=True)
                gates += [blk.attn.gate, blk.mlp.gate]
            else:
                blk.attn.gate = blk.mlp.gate = None
        return gates


def prune(model: TinyVlm, head_scores: list[Tensor], mlp_scores: list[Tensor], keep_heads: int,
          mlp_keep_frac: float) -> TinyVlm:
    """A smaller model keeping the most important heads / MLP channels of every layer.

    Heads are kept per KV group (``keep_heads / kv_heads`` each), so every query head still
    maps to its own key/value head and the KV cache layout is unchanged. Every layer keeps the
    same number of heads (the cache has one layout); MLP widths may differ per layer.
    """
    cfg = model.cfg
    if keep_heads % cfg.kv_heads or not 0 < keep_heads <= cfg.heads:
        raise ValueError(f"keep_heads {keep_heads} must be a multiple of kv_heads {cfg.kv_heads} "
                         f"and <= heads {cfg.heads}")
    per_group, group = keep_heads // cfg.kv_heads, cfg.heads // cfg.kv_heads
    keep_h: list[list[int]] = []
    for sc in head_scores:
        kept = []
        for g in range(cfg.kv_heads):
            idx = torch.arange(g * group, (g + 1) * group)
            top = idx[sc[idx].argsort(descending=True)[:per_group]]
            kept += sorted(int(i) for i in top)
        keep_h.append(kept)
    keep_m = [sorted(int(i) for i in sc.argsort(descending=True)[:max(8, round(sc.numel() * mlp_keep_frac))])
              for sc in mlp_scores]
    new_cfg = replace(cfg, heads=keep_heads, ffn=tuple(len(k) for k in keep_m))
    new = TinyVlm(new_cfg)
    sd = dict(model.state_dict())
    out = new.state_dict()
    hd = cfg.head_dim
    for k in out:
        src = sd[k]
        parts = k.split(".")
        if parts[0] == "decoder" and parts[1] == "blocks":
            i, name = int(parts[2]), ".".join(parts[3:])
            rows_h = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in keep_h[i]])
            mlp_idx = torch.tensor(keep_m[i])
            if name == "attn.wq.weight":
                src = src[rows_h]
            elif name == "attn.wo.weight":
                src = src[:, rows_h]
            elif name in ("mlp.wg.weight", "mlp.wu.weight"):
                src = src[mlp_idx]
            elif name == "mlp.wd.weight":
                src = src[:, mlp_idx]
        out[k] = src.clone()
    new.load_state_dict(out)
    return new


# -- the three export views -----------------------------------------------------------
class VisionExport(nn.Module):
    """``pixel_values`` -> ``image_features``."""

    def __init__(self, model: TinyVlm) -> None:
        super().__init__()
        self.vision = model.vision

    def forward(self, pixel_values: Tensor) -> Tensor:
        """The vision graph."""
        out: Tensor = self.vision(pixel_values)
        return out


class EmbedExport(nn.Module):
    """``input_ids`` -> ``inputs_embeds``."""

    def __init__(self, model: TinyVlm) -> None:
        super().__init__()
        self.embed = model.embed

    def forward(self, input_ids: Tensor) -> Tensor:
        """The embedding graph."""
        out: Tensor = self.embed(input_ids)
        return out


class DecoderExport(nn.Module):
    """``inputs_embeds, attention_mask, position_ids, past...`` -> last logits + present."""

    def __init__(self, model: TinyVlm) -> None:
        super().__init__()
        self.decoder = model.decoder

    def forward(self, inputs_embeds: Tensor, attention_mask: Tensor, position_ids: Tensor,
                *past: Tensor) -> tuple[Tensor, ...]:
        """The decoder graph (past flattened: k0, v0, k1, v1, ...)."""
        h, present = self.decoder.hidden_states(inputs_embeds, attention_mask, position_ids, list(past))
        return (self.decoder.lm_head(h[:, -1:]), *present)


# -- cost ----------------------------------------------------------------------------
@dataclass
class Cost:
    """Parameters and multiply-accumulates of one decision (vision + one prefill)."""

    params: int
    vision_macs: int
    decoder_macs: int
    prompt_tokens: int
    detail: dict[str, int] = field(default_factory=dict)

    @property
    def mflops(self) -> float:
        """2 FLOPs per MAC, in millions (the common convention)."""
        return 2.0 * (self.vision_macs + self.decoder_macs) / 1e6


def decision_cost(model: TinyVlm, text_tokens: int) -> Cost:
    """Count conv / linear MACs of ONE vision run + a prefill of frames x T + ``text_tokens``.

    One vision run: the earlier frame's visual tokens come from the runtime's history. lm_head
    once. Attention score / softmax MACs are included (they grow with the sequence); norms,
    activations and the embedding gather are not (a few per value).
    """
    cfg = model.cfg
    vision = 0
    h, w = cfg.roi[1] - cfg.roi[0], cfg.roi[3] - cfg.roi[2]
    for m in model.vision.body.modules():
        if isinstance(m, nn.Conv2d):
            pad, k, st = (tuple(int(v) for v in getattr(m, a)) for a in ("padding", "kernel_size", "stride"))
            h = (h + 2 * pad[0] - k[0]) // st[0] + 1
            w = (w + 2 * pad[1] - k[1]) // st[1] + 1
            vision += h * w * m.out_channels * m.in_channels * k[0] * k[1]
    t = cfg.image_tokens
    vision += t * model.vision.proj.in_features * cfg.hidden
    s = cfg.frames * t + text_tokens
    dec = 0
    for blk in model.decoder.blocks:
        assert isinstance(blk, Block)
        per_tok = sum(lin.in_features * lin.out_features for lin in (
            blk.attn.wq, blk.attn.wk, blk.attn.wv, blk.attn.wo, blk.mlp.wg, blk.mlp.wu, blk.mlp.wd))
        dec += s * per_tok + 2 * cfg.heads * s * s * cfg.head_dim // 2  # causal QK^T and AV
    dec += cfg.hidden * cfg.vocab  # lm_head on the last position only
    params = sum(p.numel() for p in model.parameters())
    return Cost(params, vision, dec, s, {"image_tokens": t})
