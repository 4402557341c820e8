"""What a tracked VRU input would add to the brake decision, measured before building a tracker.

Why: every model built so far misses most frames before a crossing person enters the lane
(docs/MODEL_HISTORY.md, *Where the brake recall is lost*). The labels are constant-velocity
conflicts, so those frames turn on the person's lateral velocity, which one frame does not
show. This probe trains the same small classifier three ways, on the same shards:

- ``image``: the student's conv stack on the frame, plus the node's sensor features;
- ``image+tracks``: the same plus ``tracks.vru_tracks`` degraded to a tracker's errors
  (``tracks.degrade``: lateral-velocity noise, lost tracks);
- ``tracks``: the sensor features and the tracks only, no image;

and reports what the factory's evaluation reports, at a threshold chosen on val by the
shipped *false-brake first* rule. The track records are ground truth with noise, not a
tracker: the figures bound what a tracker with those errors could give. Shards made before
``vru_tracks`` existed get it by re-running their drives without rendering
(``dataset.rerun``), checked against the shard's own labels.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn
from tqdm import tqdm

from tiny_node.factory import dataset
from tiny_node.factory.config import DEFAULT
from tiny_node.factory.evaluate import choose_threshold, metrics
from tiny_node.factory.tracks import BOUND_INPUTS as INPUTS
from tiny_node.factory.tracks import TRACK_FIELDS, degrade
from tiny_node.factory.train import pixels
from tiny_node.factory.vlm_torch import ROI

TRACK_SCALE = {"present": 1.0, "dx": 30.0, "y": 5.0, "vy": 2.0, "vx_rel": 15.0}  # to about unit range


def load(data_dir: Path, split: str, episodes: int, frames: int) -> dict[str, NDArray[Any]]:
    """A split of a build's data folder, with ``vru_tracks`` (re-simulated if missing)."""
    # not a ``*.tmp.npz`` an interrupted data step left (dataset._write_atomic): a torn shard
    paths = sorted(p for p in data_dir.glob(f"{split}-*.npz") if not p.name.endswith(".tmp.npz"))
    if not paths:
        raise ValueError(f"{data_dir}: no {split}-*.npz shards (a build's data folder, e.g. out/model-default/data)")
    return dataset.load_with(paths, ("vru_tracks",), episodes, frames)


def features(data: dict[str, NDArray[Any]], inputs: str, rng: np.random.Generator, *, vy_noise: float,
             miss: float) -> NDArray[np.float32]:
    """Sensor features (as scaled for the probe), plus the degraded tracks unless ``image``."""
    s = np.stack([data["ego_speed"] / 20.0, np.clip(data["range"], 0.0, 100.0) / 50.0,
                  np.clip(data["range_rate"], -30.0, 10.0) / 10.0, data["range_valid"]], 1).astype(np.float32)
    if inputs == "image":
        return s
    t = degrade(data["vru_tracks"], rng, vy_noise=vy_noise, miss=miss)
    scale = np.asarray([TRACK_SCALE[f] for f in TRACK_FIELDS], np.float32)
    return np.concatenate([s, (t / scale).reshape(len(t), -1)], 1)


class Probe(nn.Module):
    """The student's conv stack (same channels) and a small MLP head: a brake logit."""

    def __init__(self, inputs: str, n_features: int) -> None:
        super().__init__()
        self.image = inputs != "tracks"
        ch = DEFAULT.student.channels
        convs: list[nn.Module] = []
        for cin, cout, k, s, p in [(3, ch[0], 4, 4, 0), *((a, b, 3, 2, 1) for a, b in itertools.pairwise(ch))]:
            convs += [nn.Conv2d(cin, cout, k, s, p, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        self.body = nn.Sequential(*convs)
        r0, r1, c0, c1 = ROI
        with torch.no_grad():
            n_img = self.body(torch.zeros(1, 3, r1 - r0, c1 - c0)).numel() if self.image else 0
        self.head = nn.Sequential(nn.Linear(n_img + n_features, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                                  nn.Linear(128, 1))

    def forward(self, roi: Tensor, feats: Tensor) -> Tensor:
        """Brake logits ``[B]``."""
        x = torch.cat([self.body(roi).flatten(1), feats], 1) if self.image else feats
        out: Tensor = self.head(x).squeeze(1)
        return out


SPLITS = ("train", "val", "test", "heldout")


def run(splits: dict[str, dict[str, NDArray[Any]]], inputs: str, *, vy_noise: float, miss: float, epochs: int,
        seed: int = 0, batch: int = 64) -> dict[str, Any]:
    """Train the probe on ``train``, choose its threshold on ``val``; metrics on test / held-out."""
    if inputs not in INPUTS:
        raise ValueError(f"inputs {inputs!r}: one of {', '.join(INPUTS)}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    feats = {s: torch.from_numpy(features(d, inputs, rng, vy_noise=vy_noise, miss=miss)) for s, d in splits.items()}
    model = Probe(inputs, feats["train"].shape[1])
    train, y = splits["train"], torch.from_numpy(splits["train"]["brake"].astype(np.float32))
    n = len(y)
    batch = min(batch, n)
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=max(1, epochs * (n // batch)))
    t0 = time.monotonic()
    for _ in tqdm(range(epochs), desc=f"probe {inputs}", unit="epoch"):
        model.train()
        perm = torch.randperm(n).numpy()
        for i in range(0, n - batch + 1, batch):
            b = np.sort(perm[i:i + batch])
            roi = pixels(train["image"][b]) if model.image else torch.empty(0)
            loss = nn.functional.binary_cross_entropy_with_logits(model(roi, feats["train"][b]), y[b],
                                                                  pos_weight=torch.tensor(1.5))
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
    train_s = time.monotonic() - t0

    def probs(split: str) -> NDArray[np.float32]:
        model.eval()
        d, out = splits[split], []
        with torch.no_grad():
            for i in range(0, len(d["brake"]), 256):
                roi = pixels(d["image"][i:i + 256]) if model.image else torch.empty(0)
                out.append(torch.sigmoid(model(roi, feats[split][i:i + 256])))
        return torch.cat(out).numpy()

    thr = choose_threshold(probs("val"), splits["val"])
    return {"inputs": inputs, "vy_noise": vy_noise, "miss": miss, "epochs": epochs, "threshold": thr,
            "train_s": round(train_s, 1), "test": metrics(probs("test"), thr, splits["test"]),
            "heldout": metrics(probs("heldout"), thr, splits["heldout"])}


def row(r: dict[str, Any]) -> str:
    """One markdown table row of a result."""
    te, ho = r["test"], r["heldout"]
    inp = r["inputs"]
    if inp != "image":
        inp += f" (vy noise {r['vy_noise']} m/s, miss {r['miss']:.0%})"
    return (f"| {inp} | {r['threshold']:.2f} | {te['accuracy']:.2%} | {ho['accuracy']:.2%} | "
            f"{te['recall_ttc_lt_1_5']:.2%} / {ho['recall_ttc_lt_1_5']:.2%} | "
            f"{te['recall_entering']:.2%} / {ho['recall_entering']:.2%} | {te['false_brake_rate_benign']:.2%} |")


HEADER = ("| probe inputs | threshold (val) | test acc | held-out acc | recall TTC<1.5 s (test / held-out) | "
          "entering (test / held-out) | false-brake benign (test) |\n|---|---|---|---|---|---|---|")


def bad_options(args: argparse.Namespace) -> str:
    """The out-of-range options among --vy-noise, --miss and --epochs, each with its bound ('' if none).

    Why each alone: the message named all three bounds whichever was wrong; and ``nan`` passed
    ``< 0`` (every comparison with it is false), so it is refused as not finite.
    """
    wrong = []
    if not (math.isfinite(args.vy_noise) and args.vy_noise >= 0):
        wrong.append(f"--vy-noise {args.vy_noise} must be a finite number >= 0")
    if not 0.0 <= args.miss <= 1.0:  # false for nan too
        wrong.append(f"--miss {args.miss} must be in [0, 1]")
    if args.epochs < 1:
        wrong.append(f"--epochs {args.epochs} must be >= 1")
    return "; ".join(wrong)


def command(args: argparse.Namespace) -> int:
    """Train each probe and print a markdown table; bad arguments or data are one line, status 2."""
    try:
        if wrong := bad_options(args):
            raise ValueError(wrong)
        splits = {s: load(args.data, s, args.episodes, args.frames) for s in SPLITS}
    except ValueError as exc:
        print(f"tiny-node model tracker-bound: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    rows = [row(run(splits, i, vy_noise=args.vy_noise, miss=args.miss, epochs=args.epochs)) for i in args.inputs]
    print(HEADER)
    print("\n".join(rows))
    return 0
