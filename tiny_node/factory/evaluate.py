"""Every number in the model card, measured through the node's own runtime.

Why the runtime (``tiny_node.model.vlm.VlmRuntime``) and not torch: what ships is the ONNX
bundle read by that code (prompt from the manifest, the runtime's preprocessing, the decision
read from the two words' logits), so accuracy, latency and rationale are measured on exactly
that path. Frames are fed at the model's 320x240 size, so no resize changes the pixels the
factory labelled; latency is measured on 640x480 camera frames (resize included).

Definitions (model card): accuracy = decision == privileged label; brake recall at TTC < 1.5 s
= share of frames whose ground-truth time to conflict (constant velocity, or the in-path TTC)
is below 1.5 s that get a brake; recall entering = the same over those of them whose actor is
not yet in the ego's corridor (in-path TTC >= 1.5 s: a crossing actor still beside the lane);
false-brake rate = share of frames of benign drives (nothing ever in conflict) that get a brake.

The threshold is chosen on the validation split (``choose_threshold``). The shipped operating
point is *false-brake first*: the highest recall at TTC < 1.5 s among thresholds that keep the
val false-brake rate on benign frames <= ``FBR_TARGET``. Why: the model can only add brakes to
the rule path (arbitration ``either``), and the node holds every brake for 2 s, so a false
brake is a false activation; the rule path still brakes for everything the radar sees. The
*recall first* point (highest accuracy with val recall >= ``RECALL_TARGET``) is reported too.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from tiny_node.factory.dataset import features_of, full_frame
from tiny_node.factory.scenes import FAMILIES
from tiny_node.factory.vocab import CONTEXTS
from tiny_node.model.bundle import load_bundle
from tiny_node.model.output import ModelOutput
from tiny_node.model.vlm import VlmRuntime

RECALL_TARGET = 0.995
FBR_TARGET = 0.005
THRESHOLDS = tuple(round(x, 3) for x in np.linspace(0.01, 0.99, 99))
URGENT_TTC_S = 1.5


def decide_pair(rt: VlmRuntime, data: dict[str, NDArray[Any]], i: int, *, history: bool = True) -> ModelOutput:
    """Decide frame ``i`` as the node would: its earlier frame in the runtime's history first.

    The history is reset for every frame (frames of a split are not a stream); ``history``
    False decides with none (the first frame of a stream). The times are the frame's own.
    A single frame has nothing to track over, so a tracking bundle is handed the split's
    ``track_input`` (ground-truth tracks with a tracker's errors, ``Build.split``) instead.
    """
    rt.reset_history()
    t = float(data["t"][i])
    if history and "image_prev" in data:
        rt.remember(full_frame(data["image_prev"][i]), t - float(data["dt_prev"][i]))
    tracks = data["track_input"][i] if "track_input" in data else None
    return rt.decide(full_frame(data["image"][i]), features_of(data, i), CONTEXTS[int(data["context"][i])], time_s=t,
                     tracks=tracks)


def brake_probs(bundle_dir: Path, data: dict[str, NDArray[Any]], desc: str, *,
                history: bool = True) -> NDArray[np.float32]:
    """P(brake) for every frame of ``data`` through the runtime (one thread)."""
    return _per_frame(bundle_dir, data, desc, history=history, conflict=False)


def decision_scores(bundle_dir: Path, data: dict[str, NDArray[Any]], desc: str, *,
                    history: bool = True) -> NDArray[np.float32]:
    """What the bundle's decision is a threshold on: P(brake), or 1 where its track conflict brake fires.

    Why: with ``vlm.tracking.conflict`` the runtime brakes whatever the threshold when a track
    conflicts soon enough (``model.conflict``; every record of ``track_input``, not only the
    prompt's slots); scored 1, those frames count as brakes at every threshold in ``metrics``
    and ``choose_threshold``. Whether it fired is the runtime's own verdict on the frame (its
    ``conflict_brake``).
    """
    return _per_frame(bundle_dir, data, desc, history=history, conflict=True)


def _per_frame(bundle_dir: Path, data: dict[str, NDArray[Any]], desc: str, *, history: bool,
               conflict: bool) -> NDArray[np.float32]:
    """P(brake) of every frame; with ``conflict``, 1 where the bundle's conflict brake fires."""
    rt = VlmRuntime(load_bundle(bundle_dir), threads=1)
    out = np.zeros(len(data["brake"]), np.float32)
    for i in tqdm(range(len(out)), desc=desc, unit="frame", leave=False):
        o = decide_pair(rt, data, i, history=history)
        out[i] = 1.0 if conflict and o.conflict_brake else o.probs[1]
    return out


def with_runtime_tracks(data: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    """``data`` with the runtime's own tracks in the prompt (``runtime_tracks``): the end-to-end figures."""
    return {**data, "track_input": data["track_runtime"]}


def urgent(data: dict[str, NDArray[Any]]) -> NDArray[np.bool_]:
    """Frames with a ground-truth time to conflict below 1.5 s."""
    return np.asarray(np.minimum(data["ttc"], data["ttc_in_path"]) < URGENT_TTC_S)


def benign(data: dict[str, NDArray[Any]]) -> NDArray[np.bool_]:
    """Frames of benign drives."""
    return np.asarray(data["family"] == FAMILIES.index("benign"))


def choose_threshold(p: NDArray[np.float32], data: dict[str, NDArray[Any]], policy: str = "fbr") -> float:
    """The val threshold of an operating point (module docstring).

    ``fbr``: max urgent recall with false-brake rate <= FBR_TARGET (else the lowest rate);
    ``recall``: max accuracy with urgent recall >= RECALL_TARGET (else the highest recall).
    """
    y, u, b = data["brake"].astype(bool), urgent(data), benign(data)
    best: tuple[float, float, float, float] | None = None
    for t in THRESHOLDS:
        pred = p >= t
        rec = float(pred[u].mean()) if u.any() else 1.0
        fbr = float(pred[b].mean()) if b.any() else 0.0
        acc = float((pred == y).mean())
        if policy == "fbr":
            key = (-max(fbr, FBR_TARGET), rec, acc, t)
        elif policy == "recall":
            key = (min(rec, RECALL_TARGET), acc, -fbr, t)
        else:
            raise ValueError(f"unknown threshold policy {policy!r}")
        if best is None or key > best:
            best = key
    assert best is not None
    return best[3]


def metrics(p: NDArray[np.float32], thr: float, data: dict[str, NDArray[Any]]) -> dict[str, float]:
    """Accuracy, urgent recall, false-brake rate, recall where the radar gives no valid range.

    With a ``brake_seen`` column, also the urgent recall where the image shows the hazard
    (``recall_ttc_lt_1_5_in_view``): the rest (a child behind a parked car, a cyclist still
    beside the camera's view) a camera model can only brake for on the scene's look.
    """
    y, u, b = data["brake"].astype(bool), urgent(data), benign(data)
    pred = p >= thr
    blind = y & (data["range_valid"] < 0.5)
    entering = u & (data["ttc_in_path"] >= URGENT_TTC_S)  # not yet in the corridor: a crossing actor

    def rate(mask: NDArray[np.bool_]) -> float:
        return float(pred[mask].mean()) if mask.any() else math.nan

    out = {"frames": int(y.size), "accuracy": float((pred == y).mean()), "recall_ttc_lt_1_5": rate(u),
           "urgent_frames": int(u.sum()), "recall_entering": rate(entering), "entering_frames": int(entering.sum()),
           "false_brake_rate_benign": rate(b), "benign_frames": int(b.sum()),
           "recall_all": rate(y), "recall_radar_blind": rate(blind), "radar_blind_frames": int(blind.sum()),
           "false_brake_rate_all": float(pred[~y].mean()) if (~y).any() else math.nan}
    if "brake_seen" in data:
        in_view = u & data["brake_seen"].astype(bool)
        out.update(recall_ttc_lt_1_5_in_view=rate(in_view), urgent_in_view_frames=int(in_view.sum()))
    return out


def breakdown(p: NDArray[np.float32], thr: float, data: dict[str, NDArray[Any]]) -> dict[str, dict[str, Any]]:
    """Accuracy / recall / false-brake rate by light, weather, scene family and actor kind."""
    from tiny_node.factory.dataset import LIGHTS, WEATHERS

    groups: dict[str, dict[str, NDArray[np.bool_]]] = {
        "light": {n: data["light"] == i for i, n in enumerate(LIGHTS)},
        "weather": {n: data["weather"] == i for i, n in enumerate(WEATHERS)},
        "family": {n: data["family"] == i for i, n in enumerate(FAMILIES)},
        "kind": {str(k) or "none": data["kind"] == k for k in sorted(set(data["kind"].tolist()))},
    }
    y, pred = data["brake"].astype(bool), p >= thr
    out: dict[str, dict[str, Any]] = {}
    for g, masks in groups.items():
        out[g] = {}
        for name, m in masks.items():
            if not m.any():
                continue
            out[g][name] = {"frames": int(m.sum()), "accuracy": float((pred[m] == y[m]).mean()),
                            "recall": float(pred[m & y].mean()) if (m & y).any() else None,
                            "false_brake": float(pred[m & ~y].mean()) if (m & ~y).any() else None}
    return out


def latency(bundle_dir: Path, data: dict[str, NDArray[Any]], threads: int, runs: int,
            rationale_runs: int) -> dict[str, float]:
    """Decision latency (p50 / p99, ms) on 640x480 frames, model-only share, rationale tokens/s.

    Frames come as a 30 Hz stream (times k / 30 s), so a two-frame bundle takes its earlier
    image from the history each time, as in the node.
    """
    rt = VlmRuntime(load_bundle(bundle_dir), threads=threads)
    n = len(data["brake"])
    frames = [np.asarray(cv2.resize(full_frame(data["image"][i % n]), (640, 480),
                                    interpolation=cv2.INTER_LINEAR), np.uint8) for i in range(min(n, 64))]
    rt.warm_up(5)
    total, model = [], []
    rt.reset_history()
    for k in range(runs):
        i = k % len(frames)
        t0 = time.perf_counter()
        rt.decide(frames[i], features_of(data, i % n), "", time_s=k / 30.0)
        total.append((time.perf_counter() - t0) * 1e3)
        model.append(sum(rt.last_ms[s] for s in ("track", "vision", "embed", "prefill")))
    tokens, spent = 0, 0.0
    for k in range(rationale_runs):
        i = k % len(frames)
        rt.decide(frames[i], features_of(data, i % n), "")
        t0 = time.perf_counter()
        ids = rt.generate_ids()
        spent += time.perf_counter() - t0
        tokens += len(ids) + 1  # + the eos step
    return {"p50_ms": float(np.percentile(total, 50)), "p99_ms": float(np.percentile(total, 99)),
            "model_p50_ms": float(np.percentile(model, 50)), "model_p99_ms": float(np.percentile(model, 99)),
            "rationale_tokens_per_s": tokens / spent if spent > 0 else math.nan}


def rationale_match(bundle_dir: Path, data: dict[str, NDArray[Any]], count: int) -> dict[str, Any]:
    """How well generated rationales match the scene's sentence (exact, first word, distance ±2 m)."""
    rt = VlmRuntime(load_bundle(bundle_dir), threads=1)
    n = min(count, len(data["brake"]))
    rng = np.random.default_rng(0)
    pick = rng.choice(len(data["brake"]), size=n, replace=False) if n else np.zeros(0, np.int64)
    same, kind, dist, with_dist, examples = 0, 0, 0, 0, list[dict[str, str]]()
    for i in pick:
        out = decide_pair(rt, data, int(i))
        text = rt.rationale()
        want = str(data["rationale"][i])
        same += _norm(text) == _norm(want)
        kind += text.split()[:1] == want.split()[:1]
        d_want, d_got = _metres(want), _metres(text)
        if d_want is not None:
            with_dist += 1
            dist += d_got is not None and abs(d_got - d_want) <= 2
        if len(examples) < 6:
            examples.append({"label": f"{'brake' if data['brake'][i] else 'go'}: {want}",
                             "model": f"{out.label}: {text}"})
    return {"exact_match": same / n if n else math.nan, "first_word_match": kind / n if n else math.nan,
            "distance_within_2m": dist / with_dist if with_dist else math.nan, "frames": n, "examples": examples}


def _metres(text: str) -> int | None:
    """The number before `` m`` in a rationale, if any."""
    words = text.split()
    for a, b in itertools.pairwise(words):
        if b == "m" and a.isdigit():
            return int(a)
    return None


def _norm(text: str) -> str:
    return " ".join(text.replace(" ,", ",").split())


def bundle_size(bundle_dir: Path) -> int:
    """Bytes of every file in the bundle."""
    return sum(p.stat().st_size for p in bundle_dir.rglob("*") if p.is_file())
