"""Build configurations, from the shipped one-frame recipe to the CI-sized chain.

``default`` (shipped, one frame), ``two-frame``, ``crossing``, ``crossing-lookalike``, ``tracked``,
``tiny`` (CI: two frames and tracked VRUs, so the chain exercises both).

``two-frame`` adds an earlier frame to the prompt; it was built and measured, not shipped.

Sizes are chosen for 2 shared CPU cores: the teacher is ~25x the student's decision MFLOPs
(the target is <= 5 %), and the default build fits in well under an hour on one thread.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

#: the build's steps in order (``factory.build``); here so the CLI can list them without torch
#: ``FactoryConfig.image_dropout_rows``: every row, or only rows whose label survives a blank image
DROPOUT_ROWS = ("all", "carried")
STEPS = ("data", "detector", "tracks", "teacher", "soft", "student", "prune", "export", "quantize", "evaluate",
         "bundle")
#: a step's seed is its place here (``Build.seed``): a step added later goes at the end, so every
#: other step keeps its seed, and the weights it trains stay bit for bit what they were
SEED_ORDER = ("data", "detector", "teacher", "soft", "student", "prune", "export", "quantize", "evaluate", "bundle",
              "tracks")


@dataclass(frozen=True)
class ModelSize:
    """Architecture of one model (vocabulary comes from the tokenizer)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    channels: tuple[int, ...]
    extra_convs: bool


#: the track fields of every tracked recipe before ``FactoryConfig.track_fields`` (``vocab.TRACK_BINS``)
TRACK_BASE = ("present", "dx", "y", "vy")
#: fields added after builds were made, with the default those builds had (``FactoryConfig.digest``)
_ADDED_FIELDS: dict[str, Any] = {"labels": "truth", "image_dropout": 0.0, "image_dropout_rows": "all",
                                 "detector_seed": None, "track_source": "degraded", "detector_data": "base",
                                 "track_fields": TRACK_BASE}
#: ``FactoryConfig.track_source``: where the language model's training and validation tracks come from
TRACK_SOURCES = ("degraded", "runtime")
#: ``FactoryConfig.detector_data``: the training shards the VRU detector learns from
DETECTOR_DATA = ("base", "all")


@dataclass(frozen=True)
class FactoryConfig:
    """Everything a build depends on; its hash guards resumed builds."""

    name: str
    seed: int
    # data: shards per split, drives per shard, frames per drive
    shards: tuple[tuple[str, int], ...]
    episodes_per_shard: int
    frames_per_episode: int
    data_workers: int
    teacher: ModelSize
    student: ModelSize
    teacher_epochs: int
    teacher_lr: float
    student_epochs: int
    student_lr: float
    batch: int
    temperature: float
    alpha: float  # share of the hard loss in distillation
    keep_heads: int
    mlp_keep_frac: float
    importance_batches: int
    finetune_epochs: int
    calib_frames: int
    latency_runs: int
    rationale_runs: int
    frames: int = 2  # images per prompt: the current frame and one ~0.1 s earlier
    same_frac: float = 0.12  # training rows whose earlier image is the current one (no history)
    #: torch threads. Not only speed: torch's float reductions, and so the trained weights, depend
    #: on it (same seed, same count: bit-identical ONNX files on this machine; 1 vs 2: another
    #: model). The shipped recipe pins the count it was built with.
    threads: int = 1
    # tracked VRUs in the prompt (0 = none): a VRU detector is trained (``detector``) and the
    # language model learns from ground-truth tracks with a tracker's errors (``tracks.degrade``)
    tracks: int = 0
    track_vy_noise: float = 0.3  # m/s: the measured error of detector + tracker (docs/MODEL_CARD.md)
    track_miss: float = 0.1
    detector_epochs: int = 8
    #: ``factory.detector.SIZES``: which VRU detector a tracking build trains
    detector_size: str = "fine"
    tracking_drives: int = 30  # rendered 30 Hz drives the detector + tracker are measured on
    #: what the train and val splits are labelled with: "truth" = every actor; "seen" = the
    #: people the model's image window does not show left out (``brake_seen``); "unoccluded" =
    #: only those behind a nearer actor left out; "intent" = an actor that will stop short of the
    #: ego's corridor is no conflict (``scenes.label_frame``'s ``intent``). Test and held-out keep
    #: the truth (the model card's metrics), with ``brake_seen`` beside it.
    labels: str = "truth"
    #: share of training rows shown a blank image each batch (modality dropout, ``train.TextBatchData``)
    image_dropout: float = 0.0
    #: which training rows image dropout may blank: "all", or "carried" = only rows whose label
    #: the other inputs still carry (no brake; or a brake with a radar target or a tracked VRU).
    #: Why: a blanked brake row with no other evidence teaches "no evidence: brake"
    image_dropout_rows: str = "all"
    #: the VRU detector's seed (None: the build's ``seed``). Why: the detector is a perception
    #: part measured on its own (``tracker-bench``); a recipe that varies the language model's seed
    #: keeps the detector the bundle ships instead of training another one
    detector_seed: int | None = None
    #: the tracks the train and val splits put in the prompt: "degraded" = ground truth with a
    #: tracker's errors drawn at random (``tracks.degrade``); "runtime" = what the build's own
    #: detector + the runtime's tracker report over a 30 Hz stream of each drive
    #: (``runtime_tracks``). Test and held-out are measured with both either way.
    track_source: str = "degraded"
    #: the training shards the VRU detector learns from: "base" = the base ``train`` split only;
    #: "all" = the focus shards too (look-alikes, crossings that clear, kerb stops), whose people
    #: and cyclists are as well labelled as any. Why "base" was first: the focus shards were meant
    #: for the decision, so every recipe kept one detector; but they hold half again as many
    #: labelled VRUs, and a detector trained on them finds more people and places a cyclist's
    #: foot point with less bias (docs/MODEL_HISTORY.md, *A detector that sees all the training data*)
    detector_data: str = "base"
    #: what each track slot tells the language model (``bundle.TRACK_FEATURES``, one prompt token
    #: each, ``vocab.TRACK_BINS``). Why "vx_rel" can be added: a rider or walker ahead in the lane
    #: whose closing speed is below the ego's speed is a brake or not by that speed, which the
    #: first four fields do not carry
    track_fields: tuple[str, ...] = TRACK_BASE

    def digest(self) -> str:
        """Short hash of the config (a resumed build must be the same build).

        Thread and worker counts are left out: the build folder records its thread count and a
        resume keeps it (``Build`` refuses another: it changes the weights, see ``threads``); so
        is the number of drives the tracking is measured on.
        """
        d = asdict(self)
        d.pop("threads")
        d.pop("data_workers")
        d.pop("tracking_drives")
        for key, default in _ADDED_FIELDS.items():  # at their default: builds made before keep their digest
            if d[key] == default:
                d.pop(key)
        # no detector trained, or the one every build before the field trained: the same digest
        if not self.tracks or d["detector_size"] == "patch":
            d.pop("detector_size")
        text = json.dumps(d, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FactoryConfig:
        """The config ``to_dict`` wrote (a build's ``steps.json``); fields added since keep their defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown FactoryConfig field(s) {unknown}: written by a newer factory")
        args = dict(d)
        args["shards"] = tuple((str(n), int(k)) for n, k in d["shards"])
        if "track_fields" in d:
            args["track_fields"] = tuple(str(f) for f in d["track_fields"])
        for key in ("teacher", "student"):
            args[key] = ModelSize(**{**d[key], "channels": tuple(d[key]["channels"])})
        return cls(**args)


DEFAULT = FactoryConfig(
    name="default",
    seed=4,
    shards=(("train", 24), ("val", 4), ("test", 6), ("heldout", 4)),
    episodes_per_shard=64,
    frames_per_episode=8,
    data_workers=2,
    teacher=ModelSize(hidden=192, layers=4, heads=6, kv_heads=2, head_dim=32, ffn=512,
                      channels=(32, 64, 96, 128), extra_convs=True),
    student=ModelSize(hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, ffn=256,
                      channels=(12, 16, 32, 48, 64), extra_convs=False),
    teacher_epochs=4,
    teacher_lr=1e-3,
    student_epochs=8,
    student_lr=2e-3,
    batch=32,
    temperature=2.0,
    alpha=0.5,
    keep_heads=2,
    mlp_keep_frac=0.5,
    importance_batches=40,
    finetune_epochs=3,
    calib_frames=128,
    latency_runs=300,
    rationale_runs=40,
    frames=1,
)

#: The two-frame recipe (current frame + one ~0.1 s earlier), built and measured on 2026-11-24
#: and not shipped: the model did not learn to use the earlier frame (docs/MODEL_HISTORY.md).
TWO_FRAME = replace(DEFAULT, name="two-frame", frames=2)

#: The shipped recipe plus 12 training shards of crossing VRUs sampled around the conflict
#: (``scenes.sample_episode(crossing_focus=True)``); val / test / held-out are the default's.
#: Built and measured on 2026-11-24, not shipped: better per frame, 55.00 NCAP points, but
#: 5/23 benign false activations in the closed loop (docs/MODEL_HISTORY.md).
CROSSING = replace(DEFAULT, name="crossing", shards=(*DEFAULT.shards, ("train_cross", 12)))

#: ``crossing`` plus 8 training shards of benign look-alikes of a crossing (a person waiting
#: between parked cars, walking up to the kerb and stopping, a cyclist waiting at the kerb, a
#: crossing far ahead that clears; ``scenes.sample_episode(focus="lookalike")``): the drives
#: the closed-loop operating point is set by (``tiny-node model operating-point``). Built and
#: measured on 2026-11-24, not shipped: clean on the look-alikes, but it stopped braking for
#: the crossings too (45.50 NCAP points; docs/MODEL_HISTORY.md).
CROSSING_LOOKALIKE = replace(CROSSING, name="crossing-lookalike", shards=(*CROSSING.shards, ("train_lookalike", 8)))

TINY = FactoryConfig(
    name="tiny",
    seed=4,
    shards=(("train", 2), ("val", 1), ("test", 1), ("heldout", 1), ("train_cross", 1), ("train_lookalike", 1),
            ("train_cleared", 1), ("train_kerb", 1)),
    episodes_per_shard=4,
    frames_per_episode=4,
    data_workers=1,
    teacher=ModelSize(hidden=32, layers=2, heads=4, kv_heads=2, head_dim=8, ffn=64,
                      channels=(8, 12, 16, 16), extra_convs=True),
    student=ModelSize(hidden=16, layers=1, heads=2, kv_heads=1, head_dim=8, ffn=32,
                      channels=(4, 8, 8, 8, 16), extra_convs=False),
    teacher_epochs=1,
    teacher_lr=1e-3,
    student_epochs=1,
    student_lr=2e-3,
    batch=8,
    temperature=2.0,
    alpha=0.5,
    keep_heads=1,
    mlp_keep_frac=0.5,
    importance_batches=2,
    finetune_epochs=1,
    calib_frames=4,
    latency_runs=5,
    rationale_runs=2,
    tracks=2,
    detector_epochs=1,
    tracking_drives=1,
)

#: The shipped recipe plus tracked VRUs: a VRU detector (``factory.detector``) and tracker
#: (``model.tracker``) give the position and lateral velocity of the two VRUs nearest the path
#: as prompt tokens. Why: the brake decision turns on lateral velocity, which one frame does not
#: show (``tiny-node model tracker-bound``, docs/MODEL_HISTORY.md, *Tracked VRUs*).
#: Two threads: the shipped bundle was built so, and ``tiny-node model build`` rebuilds it
#: bit for bit only with the same count (docs/MODEL_CARD.md, *Build time*).
TRACKED = replace(DEFAULT, name="tracked", tracks=2, track_vy_noise=0.4, track_miss=0.2, threads=2)

#: The tracked recipe trained on what the camera can know (``labels`` "seen"): a child hidden
#: behind a parked car is no brake label until the image shows it. Why: with such labels the
#: model learns to brake for parked cars alone, and those look-alikes hold the operating
#: point up (docs/MODEL_HISTORY.md, *Labels for what the camera can see*).
TRACKED_SEEN = replace(TRACKED, name="tracked-seen", labels="seen")
#: The same with only occluded people left out: a crossing person still beside the view stays a
#: brake label (the seen labels made the model wait for more of the crossing).
TRACKED_UNOCCLUDED = replace(TRACKED, name="tracked-unoccluded", labels="unoccluded")

#: The tracked recipe + 8 shards of benign look-alike drives (a child waiting between parked
#: cars, people stopping at the kerb, crossings that clear). Why: the image-only look-alike
#: peaks set the shipped threshold; this data lowers them, but the model generalised worse to
#: the held-out conditions (docs/MODEL_HISTORY.md, *Look-alike training data*).
TRACKED_LOOKALIKE = replace(TRACKED, name="tracked-lookalike", shards=(*TRACKED.shards, ("train_lookalike", 8)))

#: ``tracked-lookalike`` with image dropout: a share of each training batch sees a blank image
#: (``image_dropout``). Why: the image is where the tracked model overfits, and its image-only
#: look-alike peaks set the threshold; the look-alike shards keep the tracked crossing that
#: clears from taking their place. Measured in five builds, not shipped: 5 to 9 more points of urgent
#: recall, but benign false brakes over 0.5 % in half of them (docs/MODEL_HISTORY.md,
#: *Look-alike shards + image dropout: five builds*).
TRACKED_LOOKALIKE_DROPOUT = replace(TRACKED_LOOKALIKE, name="tracked-lookalike-dropout", image_dropout=0.3)

#: ``tracked-lookalike-dropout`` with dropout only on rows whose label the other inputs carry
#: (``image_dropout_rows`` "carried"), and the shipped detector (seed 4) whatever the language
#: model's seed. Why: blanking a brake row that only the image explains taught the model to brake
#: on an empty road in fog (docs/MODEL_HISTORY.md, *Look-alike shards + image dropout*; over four seeds:
#: *Crossings that cleared*).
TRACKED_LOOKALIKE_CARRIED = replace(TRACKED_LOOKALIKE_DROPOUT, name="tracked-lookalike-carried",
                                    image_dropout_rows="carried", detector_seed=4)

#: The shipped recipe: ``tracked-lookalike-carried`` + 4 shards of VRUs moving away from the road
#: beside the ego's corridor (``scenes._cleared``), language-model seed 6. Why: a pedestrian who
#: had crossed far ahead, walking on beyond the far kerb, is a case the other shards almost never
#: show at 15-30 m, and it set the threshold of the carried builds. Seed 6 is the seed with the
#: lowest closed-loop threshold of four built (4-7), three of which met every shipping criterion;
#: the rule was written down before the builds (docs/MODEL_HISTORY.md, *Crossings that cleared*).
TRACKED_CLEARED = replace(TRACKED_LOOKALIKE_CARRIED, name="tracked-cleared", seed=6,
                          shards=(*TRACKED_LOOKALIKE_CARRIED.shards, ("train_cleared", 4)))

#: ``tracked-cleared`` trained on ``intent`` labels (a pedestrian who will stop at the kerb is no
#: brake while walking up to it) + 4 shards of VRUs who walk up to the road and stop short of the
#: ego's corridor (``scenes._kerb``). Why: in ``tracked-cleared`` such a walk set every seed's
#: closed-loop threshold (0.54-0.94): constant-velocity labels call it a brake until the step the
#: person stops. Measured, not shipped: the kerb stops still peak at 0.67-0.79, so its closed-loop
#: threshold is 0.81 and it is worse end to end (docs/MODEL_HISTORY.md, *Kerb stops*).
TRACKED_KERB = replace(TRACKED_CLEARED, name="tracked-kerb", labels="intent",
                       shards=(*TRACKED_CLEARED.shards, ("train_kerb", 4)))

#: ``tracked-cleared`` with the language model trained and validated on runtime tracks
#: (``track_source`` "runtime"): what the build's detector and the runtime's tracker report over a
#: 30 Hz re-run of each drive, instead of ground truth with random errors. Why: through the real
#: tracker the shipped model brakes on 0.69 % of benign test frames (a cyclist in the bike lane
#: picks up a lateral velocity as the ego closes in) where the degraded tracks showed 0.00 %.
#: Measured, not shipped: seed 6 discounts the cyclists (0.20 % benign false brakes at 0.70), but a
#: crossing that clears peaks at 0.90 in the closed loop (docs/MODEL_HISTORY.md, *End to end*).
TRACKED_RUNTIME = replace(TRACKED_CLEARED, name="tracked-runtime", track_source="runtime")

#: ``tracked-cleared`` with the VRU detector trained on every training shard (``detector_data``
#: "all"): the same language model bit for bit (its tracks are degraded ground truth, whatever
#: the detector), another detector. Why: the 12 focus shards the detector never saw hold half
#: again as many labelled people and cyclists; trained on them it finds more (held-out recall
#: 65 -> 72 %), and end to end the bundle brakes on fewer cyclists in the bike lane
#: (docs/MODEL_HISTORY.md, *A detector that sees all the training data*).
TRACKED_DET_ALL = replace(TRACKED_CLEARED, name="tracked-det-all", detector_data="all")

#: ``tracked-det-all`` with each track's closing speed in the prompt (``track_fields`` + "vx_rel").
#: Why: end to end, 6 of the 16 urgent test frames the shipped model missed with a good track were
#: a cyclist or walker ahead in the lane, closing slower than the ego drives; without the closing
#: speed the prompt cannot tell them from one riding away. Measured on seed 6, not shipped: a
#: closed-loop threshold of 0.64 and more benign val frames braking (docs/MODEL_HISTORY.md, *Closing speed*)
TRACKED_CLOSING = replace(TRACKED_DET_ALL, name="tracked-closing",
                          track_fields=(*TRACKED_DET_ALL.track_fields, "vx_rel"))

#: ``tracked-det-all`` with twice the image dropout (0.6 of the rows whose label the radar or a track
#: carries). Why: blanking the frame at inference takes the look-alike peaks down and raises urgent
#: recall end to end (docs/MODEL_HISTORY.md, *What the image adds*); training the model to lean on
#: the tracks where they carry the label is the recipe-side way to get that. Measured on seed 6,
#: not shipped: a kerb stop still peaks at 0.62 (threshold 0.64), val false brakes 0.96 %
TRACKED_DROPOUT6 = replace(TRACKED_DET_ALL, name="tracked-dropout6", image_dropout=0.6)

#: ``tracked-det-all`` with the "lean" VRU detector (4.0 MFLOPs, 16 epochs): the same language
#: model bit for bit, and a whole decision at 4.9 % of the teacher's MFLOPs. Why: the issue's
#: MFLOPs target counts the detector, which alone is 21.5 MFLOPs. Measured, not shipped: it tracks
#: 57 % of the VRUs (69 %), end to end 1.2 % of benign test frames brake (0.49 %), and a bike-lane
#: cyclist peaks at 0.99 in the closed loop (docs/MODEL_HISTORY.md, *A lean detector*).
TRACKED_DET_LEAN = replace(TRACKED_DET_ALL, name="tracked-det-lean", detector_size="lean", detector_epochs=16)

#: ``tracked-det-all`` with the VRU detector trained 12 epochs instead of 8 (the same language model
#: bit for bit). Why: it finds more VRUs and places them better on every split; with the tracker's
#: footprint term (``TrackerConfig.footprint_sigma_m``) it no longer makes a phantom of a cyclist
#: in the bike lane, so the closed-loop threshold is 0.56 and end to end 0.20 % of benign test
#: frames brake (docs/MODEL_HISTORY.md, *Footprint*). The shipped recipe since 2026-12-05 16:00 UTC;
#: since 17:50 with INT8 graphs onnxruntime fuses (*INT8 that onnxruntime fuses*): 0.57, 0.30 %.
TRACKED_DET12 = replace(TRACKED_DET_ALL, name="tracked-det12", detector_epochs=12)

CONFIGS = {"default": DEFAULT, "two-frame": TWO_FRAME, "crossing": CROSSING, "crossing-lookalike": CROSSING_LOOKALIKE,
           "tracked": TRACKED, "tracked-seen": TRACKED_SEEN, "tracked-unoccluded": TRACKED_UNOCCLUDED,
           "tracked-lookalike": TRACKED_LOOKALIKE,
           "tracked-lookalike-dropout": TRACKED_LOOKALIKE_DROPOUT,
           "tracked-lookalike-carried": TRACKED_LOOKALIKE_CARRIED, "tracked-cleared": TRACKED_CLEARED,
           "tracked-kerb": TRACKED_KERB, "tracked-runtime": TRACKED_RUNTIME,
           "tracked-det-all": TRACKED_DET_ALL, "tracked-closing": TRACKED_CLOSING,
           "tracked-dropout6": TRACKED_DROPOUT6, "tracked-det-lean": TRACKED_DET_LEAN,
           "tracked-det12": TRACKED_DET12, "tiny": TINY}
