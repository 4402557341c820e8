"""Teacher training, distillation into the student, structured pruning and its fine-tune.

Why this order (the field's recipe for small models): a larger teacher learns the task from
hard labels; its soft next-token distributions (temperature ``T``) carry what it knows about
near-misses, which a small student learns faster from than from 0/1 labels; pruning then
removes the heads and MLP channels the student uses least (first-order Taylor importance of a
gate on each, ``|dL/dg|`` at ``g = 1``), and a short distillation fine-tune recovers the loss.

The loss is next-token cross-entropy over the answer only (decision word, rationale, eos),
with the decision position weighted up (``DECISION_WEIGHT``) and brake targets weighted
``BRAKE_WEIGHT`` (a missed brake costs more than a false one; the threshold is set on val).
Every fit checkpoints each epoch (``torch.save`` of tensors only, read back with
``weights_only=True``) and resumes from it.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from numpy.typing import NDArray
from tokenizers import Tokenizer
from torch import Tensor
from tqdm import tqdm

from tiny_node.factory.config import TRACK_BASE
from tiny_node.factory.dataset import features_of
from tiny_node.factory.vlm_torch import TinyVlm, VlmConfig, prune
from tiny_node.factory.vocab import CONTEXTS, PAD, answer_ids, encode, prompt_text

T = TypeVar("T")

DECISION_WEIGHT = 4.0
BRAKE_WEIGHT = 1.5


@dataclass
class TextBatchData:
    """A split tokenised: prompt (image placeholders included) + answer ids, right padded.

    ``same``: rows whose earlier image is the current one again (no history: the runtime's
    first frame, a gap, a stamp jump), a known input rather than a surprise.

    ``image_dropout``: while a model trains, this share of each batch's rows shows a blank
    (mid-grey) image, so the decision is also learned from the sensor and track tokens alone
    (modality dropout); ``rng`` draws the rows (``fit`` reseeds it each epoch). Evaluation
    always shows the image.
    """

    roi: NDArray[np.uint8]  # [N, h, w, 3]
    roi_prev: NDArray[np.uint8]  # [N, h, w, 3], the earlier frame (unused by a one-frame model)
    same: NDArray[np.bool_]  # [N]
    ids: NDArray[np.int64]  # [N, L]
    lengths: NDArray[np.int64]  # tokens per row
    answer_start: NDArray[np.int64]  # index of the decision word
    brake: NDArray[np.int64]
    image_dropout: float = 0.0
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    #: [N] rows image dropout may blank (None: all; ``FactoryConfig.image_dropout_rows``)
    droppable: NDArray[np.bool_] | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def prev(self, idx: NDArray[np.int64]) -> NDArray[np.uint8]:
        """The earlier images of rows ``idx`` (the current image where ``same``)."""
        return np.where(self.same[idx, None, None, None], self.roi[idx], self.roi_prev[idx])


def tokenize(data: dict[str, NDArray[Any]], tok: Tokenizer, *, image_tokens: int, frames: int,
             same_frac: float = 0.0, seed: int = 0, tracks: int = 0, track_fields: Sequence[str] = TRACK_BASE,
             image_dropout: float = 0.0) -> TextBatchData:
    """Prompt (as the runtime renders it) + answer ids for every frame of a split.

    ``same_frac`` of the rows (seeded) show the current frame as the earlier one too.
    """
    rows: list[list[int]] = []
    starts: list[int] = []
    for i in range(len(data["brake"])):
        prompt = encode(tok, prompt_text(features_of(data, i), CONTEXTS[int(data["context"][i])],
                                         image_tokens, frames, tracks, fields=track_fields))
        starts.append(len(prompt))
        rows.append(prompt + answer_ids(tok, bool(data["brake"][i]), str(data["rationale"][i])))
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), tok.token_to_id(PAD), np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    n = len(rows)
    same = np.random.default_rng(seed).random(n) < same_frac
    prev = data.get("image_prev", data["image"])
    return TextBatchData(data["image"], prev, same, ids, np.asarray([len(r) for r in rows], np.int64),
                         np.asarray(starts, np.int64), data["brake"].astype(np.int64), image_dropout)


def pixels(roi: NDArray[np.uint8]) -> Tensor:
    """uint8 NHWC -> the manifest's normalisation, NCHW float: ``x / 255 * 2 - 1``."""
    return torch.from_numpy(np.ascontiguousarray(roi)).permute(0, 3, 1, 2).float().mul_(2.0 / 255.0).sub_(1.0)


def answer_logits(model: TinyVlm, d: TextBatchData, idx: NDArray[np.int64]) -> tuple[Tensor, Tensor, Tensor]:
    """Logits ``[B, A, V]`` predicting each answer token, the targets, and their mask."""
    ids = torch.from_numpy(d.ids[idx])
    lengths = torch.from_numpy(d.lengths[idx])
    start = torch.from_numpy(d.answer_start[idx])
    n_ans = lengths - start
    a = int(n_ans.max())
    ar = torch.arange(a)[None]
    valid = ar < n_ans[:, None]
    prev = pixels(d.prev(idx)) if model.cfg.frames == 2 else None
    image = pixels(d.roi[idx])
    if model.training and d.image_dropout > 0.0:
        drawn = d.rng.random(len(idx)) < d.image_dropout  # drawn for every row: the same stream either way
        blank = torch.from_numpy(drawn if d.droppable is None else drawn & d.droppable[idx])
        image[blank] = 0.0  # mid-grey after the normalisation
        if prev is not None:
            prev[blank] = 0.0
    h = model(image, ids[:, : int(lengths.max())], lengths, prev)
    pos = (start[:, None] - 1 + ar).clamp(max=h.shape[1] - 1)
    hs = h.gather(1, pos[..., None].expand(-1, -1, h.shape[-1]))
    targets = ids.gather(1, (start[:, None] + ar).clamp(max=ids.shape[1] - 1))
    return model.decoder.lm_head(hs), targets, valid


def hard_loss(logits: Tensor, targets: Tensor, valid: Tensor, brake_id: int) -> Tensor:
    """Weighted next-token CE over the answer (module docstring)."""
    ce = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # [B, A]
    w = valid.float()
    w[:, 0] *= DECISION_WEIGHT * torch.where(targets[:, 0] == brake_id, BRAKE_WEIGHT, 1.0)
    return (ce * w).sum() / w.sum()


def distill_loss(logits: Tensor, targets: Tensor, valid: Tensor, teacher: Tensor, *, temperature: float,
                 alpha: float, word_ids: tuple[int, int]) -> Tensor:
    """Hard CE and T² KL(teacher_T || student_T) over the answer, ``alpha`` : ``1 - alpha``.

    The KL covers every answer position (decision weighted as in :func:`hard_loss`), plus the
    KL of the two-word decision distribution, so the student matches the teacher's brake
    probability itself.
    """
    hard = hard_loss(logits, targets, valid, word_ids[1])
    tt = temperature
    a = logits.shape[1]
    t_logits = teacher[:, :a].float()
    kl = F.kl_div(F.log_softmax(logits / tt, -1), F.log_softmax(t_logits / tt, -1), reduction="none",
                  log_target=True).sum(-1) * tt * tt  # [B, A]
    w = valid.float()
    w[:, 0] *= DECISION_WEIGHT
    soft = (kl * w).sum() / w.sum()
    wi = list(word_ids)
    dec = F.kl_div(F.log_softmax(logits[:, 0, wi] / tt, -1), F.log_softmax(t_logits[:, 0, wi] / tt, -1),
                   reduction="batchmean", log_target=True) * tt * tt
    return alpha * hard + (1.0 - alpha) * (soft + dec)


LossFn = Callable[[TinyVlm, TextBatchData, NDArray[np.int64]], Tensor]


def fit(model: TinyVlm, data: TextBatchData, *, epochs: int, batch: int, lr: float, loss_fn: LossFn,
        ckpt: Path, seed: int, desc: str,
        val_fn: Callable[[TinyVlm], dict[str, float]] | None = None) -> dict[str, Any]:
    """AdamW + warmup/cosine; one checkpoint per epoch; resumes from ``ckpt``."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps_per_epoch = max(1, len(data) // batch)
    total = epochs * steps_per_epoch
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    start, history = 0, []
    if ckpt.exists():
        state = read_state(ckpt, ("model", "opt", "sched", "epoch", "history"))
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, history = int(state["epoch"]), list(state["history"])
    for epoch in range(start, epochs):
        rng = np.random.default_rng(seed * 1000 + epoch)
        order = rng.permutation(len(data))
        data.rng = rng  # image-dropout draws per epoch: a resumed fit draws what an uninterrupted one would
        model.train()
        bar = tqdm(range(steps_per_epoch), desc=f"{desc} epoch {epoch + 1}/{epochs}", unit="batch", leave=False)
        run = 0.0
        for s in bar:
            idx = order[s * batch:(s + 1) * batch]
            loss = loss_fn(model, data, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            value = float(loss.detach())
            run = 0.98 * run + 0.02 * value if s else value
            bar.set_postfix(loss=f"{run:.3f}")
        bar.close()
        record: dict[str, float] = {"epoch": epoch + 1, "loss": run}
        if val_fn is not None:
            record.update(val_fn(model))
        history.append(record)
        tqdm.write(f"{desc} epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in record.items()))
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "epoch": epoch + 1, "history": history}, tmp)
        tmp.replace(ckpt)
    model.eval()
    return {"history": history}


@torch.no_grad()
def brake_probs(model: TinyVlm, data: TextBatchData, word_ids: tuple[int, int], batch: int = 64) -> NDArray[np.float32]:
    """P(brake) at the decision position, softmax over the two decision words (as the runtime)."""
    model.eval()
    out = []
    for s in range(0, len(data), batch):
        idx = np.arange(s, min(len(data), s + batch))
        logits, _, _ = answer_logits(model, data, idx)
        out.append(logits[:, 0, list(word_ids)].softmax(-1)[:, 1].numpy())
    return np.concatenate(out).astype(np.float32)


def decision_metrics(model: TinyVlm, data: TextBatchData, word_ids: tuple[int, int]) -> dict[str, float]:
    """Accuracy and brake recall at threshold 0.5 (monitoring during training)."""
    p = brake_probs(model, data, word_ids)
    y = data.brake.astype(bool)
    pred = p >= 0.5
    return {"val_acc": float((pred == y).mean()),
            "val_recall": float(pred[y].mean()) if y.any() else math.nan}


@torch.no_grad()
def teacher_answer_logits(teacher: TinyVlm, data: TextBatchData, batch: int = 32) -> NDArray[np.float16]:
    """The teacher's answer logits for every frame (float16 ``[N, A, V]``), computed once."""
    teacher.eval()
    a_max = int(np.max(data.lengths - data.answer_start))
    out = np.zeros((len(data), a_max, teacher.cfg.vocab), np.float16)
    for s in tqdm(range(0, len(data), batch), desc="teacher soft targets", unit="batch"):
        idx = np.arange(s, min(len(data), s + batch))
        logits, _, _ = answer_logits(teacher, data, idx)
        out[idx, : logits.shape[1]] = logits.numpy().astype(np.float16)
    return out


def importance(model: TinyVlm, data: TextBatchData, loss_fn: LossFn, *, batches: int, batch: int,
               seed: int) -> tuple[list[Tensor], list[Tensor]]:
    """Taylor importance ``sum |dL/dg|`` of every head and MLP channel gate over ``batches``."""
    gates = model.set_gates(True)
    acc = [torch.zeros_like(g) for g in gates]
    model.train()
    rng = np.random.default_rng(seed)
    data.rng = rng  # image-dropout draws from this seed, not from whatever the last fit left
    for _ in tqdm(range(batches), desc="prune importance", unit="batch"):
        idx = rng.choice(len(data), size=min(batch, len(data)), replace=False)
        loss = loss_fn(model, data, idx)
        grads = torch.autograd.grad(loss, gates)
        for j, g in enumerate(grads):
            acc[j] = acc[j] + g.abs()
    model.set_gates(False)
    model.eval()
    return acc[0::2], acc[1::2]


def pruned_model(model: TinyVlm, data: TextBatchData, loss_fn: LossFn, *, keep_heads: int,
                 mlp_keep_frac: float, batches: int, batch: int, seed: int) -> tuple[TinyVlm, dict[str, Any]]:
    """Score, prune, and say what was kept."""
    heads, mlps = importance(model, data, loss_fn, batches=batches, batch=batch, seed=seed)
    small = prune(model, heads, mlps, keep_heads, mlp_keep_frac)
    info = {"head_importance": [h.tolist() for h in heads], "kept_heads": keep_heads,
            "ffn_before": list(model.cfg.ffn), "ffn_after": list(small.cfg.ffn)}
    return small, info


class ProductError(ValueError):
    """A build product (weights, checkpoint, logits) that cannot be read; the message names the file.

    Why: torch.load and np.load say what failed ("[Errno 22] Invalid argument", "No data left in
    file"), not which of a build folder's files it was.
    """


#: what to do about a product that cannot be read: its step makes it again
_REDO = "delete it and run the build again (its step is redone)"
#: what a truncated, overwritten or foreign file raises while read (torch.load weights_only, np.load, json)
_UNREADABLE = (OSError, EOFError, ValueError, RuntimeError, pickle.UnpicklingError)


def read_product(path: Path, read: Callable[[Path], T]) -> T:
    """``read(path)``, its failure a :class:`ProductError` naming ``path`` (a missing file stays missing).

    ``read`` reads only (torch.load, np.load, json.loads): what it raises is the file's fault.
    """
    try:
        return read(path)
    except FileNotFoundError:
        raise
    except _UNREADABLE as exc:
        raise ProductError(f"{path}: unreadable ({type(exc).__name__}: {str(exc)[:300]}): {_REDO}") from exc


def read_state(path: Path, keys: Sequence[str]) -> dict[str, Any]:
    """A torch file's dict holding ``keys``, or a :class:`ProductError` naming the file.

    Only the reading is judged here: building a model from it stays outside, so a bug in the
    code is a traceback, not advice to delete (and retrain) a good file (review).
    """
    state = read_product(path, lambda p: torch.load(p, weights_only=True))
    if not isinstance(state, dict) or (missing := [k for k in keys if k not in state]):
        raise ProductError(f"{path}: not what the build writes (no {missing or list(keys)}): {_REDO}")
    return state


def load_model(path: Path) -> TinyVlm:
    """A model saved by :func:`save_model`."""
    state = read_state(path, ("config", "model"))
    model = TinyVlm(VlmConfig.from_dict(dict(state["config"])))
    model.load_state_dict(state["model"])
    return model.eval()


def save_model(model: TinyVlm, path: Path) -> None:
    """Weights + config (plain types; no pickled classes)."""
    tmp = path.with_suffix(".tmp")
    torch.save({"config": model.cfg.to_dict(), "model": model.state_dict()}, tmp)
    tmp.replace(path)
