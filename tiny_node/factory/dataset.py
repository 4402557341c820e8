"""Simulator frames -> labelled training shards (``.npz``, no pickle), resumable.

Each shard is one *look* (environment + camera pose, so the renderer's background cache is
reused) and ``episodes`` random drives in it (``scenes.sample_episode``). A drive runs in the
simulator's world at 10 ms steps with the simulated range sensor (20 Hz, with its misses) and
odometry (50 Hz) fed into the node's own ``SensorState``, so the sensor features are exactly
what the node would hand the model. At each frame time the camera frame is rendered at
640x480, resized to the manifest's 320x240 with ``INTER_AREA`` (as the runtime does), lightly
jittered (gain, noise) and cropped to the model's region of interest (the encoder crops the
same rows/columns in-graph, so the rest is never needed). Labels come from ground truth
(``scenes.label_frame``).

Every sample also holds the *earlier* frame of the same camera (``image_prev``), rendered from
the same drive at ``t - dt_prev`` with ``dt_prev`` drawn from ``PREV_DT_S`` (0.07-0.13 s in
10 ms physics steps: the 0.1 s the runtime looks back, as camera rates of 10-60 Hz round it),
with the same gain as the current frame and its own pixel noise. Why: constant-velocity labels
depend on the actor's motion, which only a pair of frames shows.

Each sample also holds ``vru_tracks``: the ground-truth records a VRU tracker would report
(``tracks.vru_tracks``: position and velocity of the people and cyclists ahead), and
``vru_points``: their foot points in the 320x240 image and whether the camera sees them
(``tracks.vru_points``), the VRU detector's targets; and ``brake_seen`` / ``rationale_seen``:
the label with the people the model's image window does not show left out
(``tracks.hidden_vrus``), for configs that train on what the camera can know
(``brake_unoccluded`` / ``rationale_unoccluded``: only those behind a nearer actor left out);
``brake_intent`` / ``rationale_intent``: the label with every actor stopping where its
trajectory stops it (``scenes.label_frame``'s ``intent``).

Splits are by seed: every split has its own seed range, so no drive is in two splits; the
``heldout`` split shows only the (light, weather, actor) combinations ``scenes.HELDOUT`` keeps
out of the others.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from tiny_node.config import RuleConfig
from tiny_node.factory.scenes import FAMILIES, Look, label_frame, sample_episode, sample_look
from tiny_node.factory.tracks import MAX_POINTS, POINT_FIELDS, TRACK_FIELDS, TRACKS, hidden_vrus, vru_points, vru_tracks
from tiny_node.factory.vlm_torch import IMAGE_H, IMAGE_W, ROI
from tiny_node.factory.vocab import CONTEXTS
from tiny_node.model.tracking import features_of as track_features
from tiny_node.sensors import RangeReading, SensorState
from tiny_node.sim.camera import CameraModel, CameraRenderer
from tiny_node.sim.sensors import OdometrySensor, RangeSensor, sensor_streams
from tiny_node.sim.world import World

SPLIT_SEED = {"train": 0, "val": 1_000_000, "test": 2_000_000, "heldout": 3_000_000, "train_cross": 4_000_000,
              "train_lookalike": 5_000_000, "train_cleared": 6_000_000, "train_kerb": 7_000_000}
#: Extra training splits and the ``sample_episode`` focus they are drawn with: crossing VRUs
#: sampled around the conflict, benign look-alikes of a crossing, VRUs moving away from
#: the road (a crossing that has cleared), and VRUs who walk up to the road and stop short
#: of the ego's corridor. A build trains on ``train`` plus those of them its config has shards of.
FOCUS_SPLITS = {"train_cross": "crossing", "train_lookalike": "lookalike", "train_cleared": "cleared",
                "train_kerb": "kerb"}
STEP_S = 0.01
RANGE_PERIOD_S = 0.05  # 20 Hz, the scenario default
ODOM_PERIOD_S = 0.02  # 50 Hz
PREV_DT_S = tuple(round(0.07 + 0.01 * i, 2) for i in range(7))  # 0.07 .. 0.13 s
LIGHTS = ("day", "night")
WEATHERS = ("clear", "rain", "fog")


@dataclass(frozen=True)
class ShardSpec:
    """Which shard to make: split, index within it, its size."""

    split: str
    index: int
    episodes: int
    frames_per_episode: int

    @property
    def seed(self) -> int:
        """The shard's seed (splits never overlap: 1e6 seeds apart)."""
        return SPLIT_SEED[self.split] + self.index

    @property
    def name(self) -> str:
        """File name of the shard."""
        return f"{self.split}-{self.index:04d}.npz"


class DriveObserver(Protocol):
    """Watches a shard's drives as they run (``make_shard``'s ``observer``).

    Why: what a 30 Hz stream would have shown before each sampled frame (a tracker's history)
    is not in the shard; an observer re-runs the drives and sees every physics step.
    """

    def start(self, look: Look, ep_seed: int) -> None:
        """A new drive in ``look`` begins (``ep_seed`` is its episode's seed)."""

    def step(self, world: World, t: float, ego_speed: float, *, frame_due: bool) -> None:
        """Physics step at ``t`` (odometry's ``ego_speed``); ``frame_due``: a sampled frame is taken now."""

    def frame(self) -> None:
        """The sampled frame due at this step was taken (one call per shard row, in row order)."""


_RENDERERS: dict[tuple[float, float], CameraRenderer] = {}


def _renderer(look: Look) -> CameraRenderer:
    key = (look.pitch_deg, look.mount_height_m)
    r = _RENDERERS.get(key)
    if r is None:
        if len(_RENDERERS) >= 4:  # each holds background caches: bound the memory
            _RENDERERS.pop(next(iter(_RENDERERS)))
        r = _RENDERERS[key] = CameraRenderer(CameraModel(pitch_deg=look.pitch_deg,
                                                         mount_height_m=look.mount_height_m))
    return r


def model_view(frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """A camera frame as the model's 320x240 input (the runtime's INTER_AREA resize)."""
    if frame.shape[:2] == (IMAGE_H, IMAGE_W):
        return frame
    return np.asarray(cv2.resize(frame, (IMAGE_W, IMAGE_H), interpolation=cv2.INTER_AREA), np.uint8)


def crop_roi(img: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """The encoder's region of interest of a 320x240 image."""
    r0, r1, c0, c1 = ROI
    return np.ascontiguousarray(img[r0:r1, c0:c1])


def full_frame(roi: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """A 320x240 frame holding ``roi`` (grey elsewhere: the encoder never reads it)."""
    out = np.full((IMAGE_H, IMAGE_W, 3), 128, np.uint8)
    r0, r1, c0, c1 = ROI
    out[r0:r1, c0:c1] = roi
    return out


def make_shard(spec: ShardSpec, *, render: bool = True,
               observer: DriveObserver | None = None) -> dict[str, NDArray[np.generic]]:
    """Render and label one shard (pure function of ``spec``).

    ``render=False`` runs the same drives and draws the same random numbers without rendering
    (images are black): every other column is as with rendering, in a fraction of the time.
    Why: to add ground-truth columns to shards made before they existed (``rerun``).
    ``observer`` watches every drive step by step (``DriveObserver``); it must draw from
    random streams of its own, so the shard stays what it is without it.
    """
    rng = np.random.default_rng(spec.seed)
    heldout = spec.split == "heldout"
    look = sample_look(rng, heldout, spec.index)
    renderer = _renderer(look) if render else None
    cols: dict[str, list[object]] = {k: [] for k in (
        "image", "image_prev", "dt_prev", "ego_speed", "range", "range_rate", "range_valid", "context", "brake", "ttc",
        "ttc_in_path", "gap", "family", "kind", "rationale", "episode", "t", "vru_tracks", "vru_points",
        "brake_seen", "rationale_seen", "brake_unoccluded", "rationale_unoccluded", "brake_intent",
        "rationale_intent")}
    for e in range(spec.episodes):
        ep_seed = spec.seed * 1000 + e
        ep = sample_episode(rng, look, heldout, ep_seed, spec.frames_per_episode,
                            focus=FOCUS_SPLITS.get(spec.split))
        if observer is not None:
            observer.start(look, ep_seed)
        _drive(ep, look, renderer, rng, cols=cols, ep_seed=ep_seed, observer=observer)
    out: dict[str, NDArray[np.generic]] = {
        **{k: np.stack([np.asarray(x, np.uint8) for x in cols[k]]) if cols[k]
           else np.zeros((0, ROI[1] - ROI[0], ROI[3] - ROI[2], 3), np.uint8)
           for k in ("image", "image_prev")},
        "kind": np.asarray(cols["kind"], dtype="<U16"),
        "rationale": np.asarray(cols["rationale"], dtype="<U64"),
        "rationale_seen": np.asarray(cols["rationale_seen"], dtype="<U64"),
        "rationale_unoccluded": np.asarray(cols["rationale_unoccluded"], dtype="<U64"),
        "rationale_intent": np.asarray(cols["rationale_intent"], dtype="<U64"),
        "light": np.asarray([LIGHTS.index(look.env.light)] * len(cols["t"]), np.int8),
        "weather": np.asarray([WEATHERS.index(look.env.weather)] * len(cols["t"]), np.int8),
        "vru_tracks": np.asarray(cols["vru_tracks"], np.float32).reshape(-1, TRACKS, len(TRACK_FIELDS)),
        "vru_points": np.asarray(cols["vru_points"], np.float32).reshape(-1, MAX_POINTS, len(POINT_FIELDS)),
    }
    for k in ("ego_speed", "range", "range_rate", "range_valid", "ttc", "ttc_in_path", "gap", "t",
              "dt_prev"):
        out[k] = np.asarray(cols[k], np.float32)
    for k in ("context", "brake", "brake_seen", "brake_unoccluded", "brake_intent", "family"):
        out[k] = np.asarray(cols[k], np.int8)
    out["episode"] = np.asarray(cols["episode"], np.int64)
    return out


def _drive(ep: object, look: Look, renderer: CameraRenderer | None, rng: np.random.Generator, *,
           cols: dict[str, list[object]], ep_seed: int, observer: DriveObserver | None = None) -> None:
    from tiny_node.factory.scenes import Episode

    assert isinstance(ep, Episode)
    world = World(ep.scenario)
    streams = sensor_streams(ep_seed)
    view = CameraModel(pitch_deg=look.pitch_deg, mount_height_m=look.mount_height_m).view((IMAGE_W, IMAGE_H))
    radar, odom = RangeSensor(), OdometrySensor()
    state = SensorState(RuleConfig())
    # per frame: when its earlier frame is taken, and the gain both share (one exposure setting)
    dts = [float(rng.choice(PREV_DT_S)) for _ in ep.frame_times]
    looks = [(float(rng.uniform(0.85, 1.15)), float(rng.uniform(0.0, 3.0))) for _ in ep.frame_times]
    events = sorted([(round(f - d, 2), 0, i) for i, (f, d) in enumerate(zip(ep.frame_times, dts, strict=True))]
                    + [(f, 1, i) for i, f in enumerate(ep.frame_times)])
    earlier: dict[int, NDArray[np.uint8]] = {}
    next_range = next_odom = 0.0
    step = 0
    while events and not world.collided:
        t = step * STEP_S
        if t >= next_range - 1e-9:
            r = radar.measure(world, streams.range)
            state.update_range(RangeReading(r, radar.min_range_m, radar.max_range_m, round(t * 1e9), t))
            next_range += RANGE_PERIOD_S
        if t >= next_odom - 1e-9:
            state.update_odometry(odom.measure(world, streams.odom), t)
            next_odom += ODOM_PERIOD_S
        if observer is not None:
            observer.step(world, t, state.snapshot(t).features()["ego_speed"],
                          frame_due=any(current and t >= at - 1e-9 for at, current, _ in events))
        while events and t >= events[0][0] - 1e-9:
            _, current, i = events.pop(0)
            img = _camera(world, look, renderer, rng, gain_noise=looks[i], cam_rng=streams.camera)
            if not current:
                earlier[i] = img
                continue
            _frame(world, ep, img, earlier.pop(i, img), dts[i], feats=state.snapshot(t).features(),
                   cols=cols, ep_seed=ep_seed, t=t)
            if observer is not None:
                observer.frame()
            cols["vru_points"].append(vru_points(world, view, ROI))
            for name, window in (("seen", True), ("unoccluded", False)):
                lab = label_frame(world, ep.context, hidden_vrus(world, view, ROI, window=window))
                cols[f"brake_{name}"].append(int(lab.brake))
                cols[f"rationale_{name}"].append(lab.rationale)
            lab = label_frame(world, ep.context, intent=True)
            cols["brake_intent"].append(int(lab.brake))
            cols["rationale_intent"].append(lab.rationale)
        brake = ep.ego_brake_at is not None and t >= ep.ego_brake_at
        world.step(STEP_S, brake)
        step += 1


def _camera(world: World, look: Look, renderer: CameraRenderer | None, rng: np.random.Generator, *,
            gain_noise: tuple[float, float], cam_rng: np.random.Generator) -> NDArray[np.uint8]:
    """The model's region of interest of one rendered frame, with gain and pixel noise.

    Without a renderer the frame is black, but the pixel noise is still drawn from ``rng`` so
    the drives that follow are the same as with rendering.
    """
    if renderer is None:
        rng.normal(0.0, gain_noise[1], (IMAGE_H, IMAGE_W, 3))
        r0, r1, c0, c1 = ROI
        return np.zeros((r1 - r0, c1 - c0, 3), np.uint8)
    view = model_view(renderer.render(world, look.env, cam_rng)).astype(np.float64)
    noisy = view * gain_noise[0] + rng.normal(0.0, gain_noise[1], view.shape)
    return crop_roi(np.clip(noisy, 0, 255).astype(np.uint8))


def _frame(world: World, ep: object, image: NDArray[np.uint8], image_prev: NDArray[np.uint8], dt_prev: float,
           *, feats: dict[str, float], cols: dict[str, list[object]], ep_seed: int, t: float) -> None:
    from tiny_node.factory.scenes import Episode

    assert isinstance(ep, Episode)
    lab = label_frame(world, ep.context)
    cols["image"].append(image)
    cols["image_prev"].append(image_prev)
    cols["dt_prev"].append(dt_prev)
    for k in ("ego_speed", "range", "range_rate", "range_valid"):
        cols[k].append(feats[k])
    cols["context"].append(CONTEXTS.index(ep.context))
    cols["brake"].append(int(lab.brake))
    cols["ttc"].append(min(lab.ttc, 1e6))
    cols["ttc_in_path"].append(min(lab.ttc_in_path, 1e6))
    cols["gap"].append(min(lab.gap, 1e6))
    cols["family"].append(FAMILIES.index(ep.family))
    cols["kind"].append(lab.kind)
    cols["rationale"].append(lab.rationale)
    cols["vru_tracks"].append(vru_tracks(world))
    cols["episode"].append(ep_seed)
    cols["t"].append(t)


def _write_atomic(path: Path, data: dict[str, NDArray[np.generic]]) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **data)  # type: ignore[arg-type]
    os.replace(tmp, path)


def build_split(out_dir: Path, split: str, shards: int, episodes: int, frames: int, *,
                workers: int = 1, code: str | None = None, keep_existing: bool = False) -> list[Path]:
    """Make the missing shards of ``split`` in ``out_dir``; return every shard path.

    A shard already there (an interrupted step's, or one copied in) is checked to be of this size
    and made by this ``code`` (the factory's digest, recorded beside the size: :data:`SIZE_KEY`,
    :data:`CODE_KEY`); one of another size is refused, one made by other code (or before shards
    recorded theirs) made again. Without a ``code``, one that records no size is checked by
    re-running its drives (``verify_shard``, two thirds of the cost of making it).
    ``keep_existing``: the shards there are a finished data step's, which later steps used: only
    the missing ones are made (making the split again swapped their training data under them).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = [ShardSpec(split, i, episodes, frames) for i in range(shards)]
    todo = [s for s in specs if not (out_dir / s.name).exists()]
    for spec in [] if keep_existing else [s for s in specs if s not in todo]:
        path = out_dir / spec.name
        if recorded_size_matches(path, episodes, frames, code):  # (another size recorded: refused there)
            continue
        if code is None:  # no code to compare: its drives re-run, its rows and labels compared
            verify_shard(path, episodes, frames)
            continue
        # Made by other factory code (or before shards recorded theirs, so by older code): made again.
        # Re-running its drives checked its labels only, and kept a shard whose images or sensor
        # features that code made otherwise (an interrupted data step resumed after an update mixed
        # the two; review).
        print(f"data {split}: {spec.name} was made by other factory code ({recorded_code(path) or 'unrecorded'}, "
              f"now {code}): made again", file=sys.stderr)
        todo.append(spec)
    size: dict[str, NDArray[np.generic]] = {SIZE_KEY: np.asarray([episodes, frames], np.int64)}
    if code is not None:
        size[CODE_KEY] = np.asarray(code)
    bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc=f"data {split}", unit="shard")
    if workers > 1 and len(todo) > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
            for spec, data in zip(todo, pool.imap(make_shard, todo), strict=True):
                _write_atomic(out_dir / spec.name, {**data, **size})
                bar.update()
    else:
        for spec in todo:
            _write_atomic(out_dir / spec.name, {**make_shard(spec), **size})
            bar.update()
    bar.close()
    return [out_dir / s.name for s in specs]


def rerun(path: Path, episodes: int, frames: int,
          observer: DriveObserver | None = None) -> dict[str, NDArray[np.generic]]:
    """A shard made again without rendering (``make_shard(render=False)``), checked against it.

    Why: to add ground-truth columns to a shard made before they existed, or to watch its
    drives again (``observer``). Raises ValueError naming the shard when the re-run does not
    give the shard's own labels (it was made with other ``episodes`` / ``frames``, or by
    another factory version).
    """
    again, differs = _rerun_against(path, episodes, frames, observer)
    if differs is not None:
        raise ValueError(f"{path}: re-running its drives does not give its labels (made with other "
                         f"--episodes/--frames than {episodes}/{frames}, or by another factory version)")
    return again


def _rerun_against(path: Path, episodes: int, frames: int, observer: DriveObserver | None = None
                   ) -> tuple[dict[str, NDArray[np.generic]], str | None]:
    """The shard at ``path`` made again without rendering, and how its rows differ from the file's (None: not).

    A ShardError naming it if it cannot be read. Shared by ``rerun`` and ``verify_shard``.
    """
    split, index = path.stem.rsplit("-", 1)
    try:
        with np.load(path, allow_pickle=False) as z:
            brake, t = z["brake"], z["t"]
    except UNREADABLE as exc:
        raise ShardError(path, exc) from exc
    again = make_shard(ShardSpec(split, int(index), episodes, frames), render=False, observer=observer)
    if len(again["brake"]) == len(brake) and (again["brake"] == brake).all() and np.allclose(again["t"], t):
        return again, None
    return again, (f"{len(brake)} rows, where its {episodes} drives of {frames} frames give {len(again['brake'])}"
                   f"{' with other labels' if len(again['brake']) == len(brake) else ''}")


def load_with(paths: Sequence[Path], columns: Sequence[str], episodes: int,
              frames: int, *, check_size: bool = False) -> dict[str, NDArray[np.generic]]:
    """``load_split``, plus ground-truth ``columns`` re-run (``rerun``) for shards made without them.

    ``check_size``: refuse (``ShardError``) a shard not made with ``episodes`` drives of ``frames``
    frames (``check_shard_size``).
    """
    data = load_split(paths, size=(episodes, frames) if check_size else None)
    missing = [c for c in columns if c not in data]
    if missing:
        again = [rerun(p, episodes, frames) for p in tqdm(paths, desc="re-run shards", unit="shard", leave=False)]
        for c in missing:
            data[c] = np.concatenate([a[c] for a in again])
    return data


def _init_worker() -> None:
    """A pool worker: one OpenCV thread; Ctrl-C is the parent's to handle.

    Why: a terminal's Ctrl-C reaches every process of the group, and each worker printed its
    own KeyboardInterrupt traceback; the parent ends the pool when it is interrupted.
    """
    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


#: what reading a missing, truncated or overwritten ``.npz`` / ``.npy`` raises (np.load, zipfile, zlib)
UNREADABLE = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)


class ShardError(ValueError):
    """A shard (or its cached runtime tracks) is missing or cannot be read; the message names the file.

    Why: np.load's own errors ("File is not a zip file") name no file, and a build loads dozens.
    """

    def __init__(self, path: Path, exc: BaseException | None = None, *, reason: str | None = None) -> None:
        what = reason or ("missing" if isinstance(exc, FileNotFoundError) else
                          f"unreadable ({type(exc).__name__}: {exc})")
        super().__init__(f"{path}: {what}")
        self.path, self.missing = path, isinstance(exc, FileNotFoundError)


#: a shard's own record of the (episodes, frames) it was made with, and of the factory code that made
#: it (``build.code_digest``); not columns (``load_split`` drops them)
SIZE_KEY = "shard_size"
CODE_KEY = "shard_code"


def _size_mismatch(path: Path, recorded: NDArray[np.generic], episodes: int, frames: int) -> ShardError | None:
    """The ShardError for a shard whose recorded size is not (``episodes``, ``frames``), else None."""
    if [int(x) for x in np.ravel(recorded)] == [episodes, frames]:
        return None
    return ShardError(path, reason=(f"made with {', '.join(str(int(x)) for x in np.ravel(recorded))} "
                                    f"(episodes_per_shard, frames_per_episode), where this build makes "
                                    f"{episodes}, {frames}"))


def recorded_size_matches(path: Path, episodes: int, frames: int, code: str | None = None) -> bool:
    """Whether the shard at ``path`` records being made with this size (and by ``code``, if given).

    False if it records no size, or another code or none (``build_split`` makes such a shard
    again; a matching size alone let an interrupted data step resumed by changed code mix two
    label versions, review 2026-12-07). A ShardError naming it if it records another size, or
    cannot be read.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            if SIZE_KEY not in z.files:
                return False
            recorded = z[SIZE_KEY]
            made_by = str(z[CODE_KEY]) if CODE_KEY in z.files else None
    except UNREADABLE as exc:
        raise ShardError(path, exc) from exc
    if (err := _size_mismatch(path, recorded, episodes, frames)) is not None:
        raise err
    return code is None or made_by == code


def recorded_code(path: Path) -> str | None:
    """The factory code digest the shard at ``path`` records (None: none)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return str(z[CODE_KEY]) if CODE_KEY in z.files else None
    except UNREADABLE as exc:
        raise ShardError(path, exc) from exc


def is_shard_name(name: str) -> bool:
    """Whether ``name`` is a shard's file name (``ShardSpec.name``) or its temporary (``_write_atomic``)."""
    split, _, rest = name.partition("-")
    index = rest.removesuffix(".npz").removesuffix(".tmp")
    return split in SPLIT_SEED and len(index) == 4 and index.isdigit() and rest.endswith(".npz")


def check_shard_size(path: Path, columns: dict[str, NDArray[np.generic]], episodes: int, frames: int) -> None:
    """A ShardError naming ``path`` if its rows cannot be ``episodes`` drives of ``frames`` frames.

    Why: a shard's name holds its split and index only, so shards copied from a build of another
    size were used as they were (95 frames where 24 were expected). A drive's rows are not always
    ``frames`` (a collision ends it early: 13 % of drives; with 2 frames a drive may keep none),
    so these are the checks that hold whatever the collisions, cheap enough for every load: the
    drives' seeds are the spec's (``ShardSpec.seed`` * 1000 + 0 .. episodes - 1), each has at most
    ``frames`` rows, and the first drive's frame times are those ``scenes.sample_episode`` draws
    for ``frames`` (before any physics, so cheap to draw again). For shards made before they
    recorded their size (:data:`SIZE_KEY`): a shard of fewer drives, or of fewer frames whose
    times happen to be a prefix (1 in 4), passes them; the data step makes such a shard it finds
    again (``build_split``).
    """
    split, _, index = path.name.removesuffix(".npz").partition("-")
    if split not in SPLIT_SEED or not index.isdigit():
        return  # not named as a shard: nothing to compare with
    spec = ShardSpec(split, int(index), episodes, frames)
    drive = np.asarray(columns["episode"], np.int64) - spec.seed * 1000
    ids, rows = np.unique(drive, return_counts=True)
    rng = np.random.default_rng(spec.seed)
    heldout = split == "heldout"
    look = sample_look(rng, heldout, spec.index)
    first = sample_episode(rng, look, heldout, spec.seed * 1000, frames, focus=FOCUS_SPLITS.get(split)).frame_times
    t0 = np.asarray(columns["t"], np.float64)[drive == 0]
    same_times = len(t0) <= len(first) and np.allclose(t0, first[:len(t0)], atol=1e-3)
    most = int(rows.max(initial=0))
    if not set(ids.tolist()) <= set(range(episodes)) or most > frames or not same_times:
        raise ShardError(path, reason=(
            f"{len(drive)} rows in {len(ids)} drive(s) (seeds {spec.seed * 1000 + ids.min(initial=0)}.."
            f"{spec.seed * 1000 + ids.max(initial=0)}) of up to {most} frames"
            f"{'' if same_times else ', at other frame times'}, where this build makes {episodes} drives "
            f"(seeds {spec.seed * 1000}..{spec.seed * 1000 + episodes - 1}) of up to {frames} frames: a shard "
            "made with another episodes_per_shard / frames_per_episode, or by another factory version"))


def verify_shard(path: Path, episodes: int, frames: int) -> None:
    """A ShardError naming ``path`` unless re-running its drives (``rerun``) gives its own rows and labels.

    Why: exact, where ``check_shard_size`` is not (a shard of fewer drives passes it); costs a
    run of its drives without rendering, a fraction of making it, so only the data step pays it,
    for a shard it finds made (an interrupted step's, or one copied in).
    """
    _, differs = _rerun_against(path, episodes, frames)
    if differs is not None:
        raise ShardError(path, reason=(f"{differs}: a shard made with another episodes_per_shard / "
                                       "frames_per_episode, or by another factory version"))


def load_split(paths: Sequence[Path], *, size: tuple[int, int] | None = None) -> dict[str, NDArray[np.generic]]:
    """Concatenate shards (``allow_pickle=False``: shards hold plain arrays only).

    Every shard must hold the same columns: a shard made by an older version (without a
    newer column) would otherwise shift that column against the others. ``size``: (episodes,
    frames) every shard must have been made with (``check_shard_size``).
    """
    parts: dict[str, list[NDArray[np.generic]]] = {}
    keys: set[str] | None = None
    for p in paths:
        try:
            with np.load(p, allow_pickle=False) as z:
                columns = {k: z[k] for k in z.files}
        except UNREADABLE as exc:
            raise ShardError(p, exc) from exc
        recorded = columns.pop(SIZE_KEY, None)
        columns.pop(CODE_KEY, None)
        if size is not None and recorded is not None:
            if (err := _size_mismatch(p, recorded, *size)) is not None:
                raise err
        elif size is not None:  # made before shards recorded their size: what can be told from its rows
            check_shard_size(p, columns, *size)
        if keys is not None and set(columns) != keys:
            raise ValueError(f"{p}: columns {sorted(set(columns) ^ keys)} differ from {paths[0]}'s "
                             "(shards from different versions of the factory)")
        keys = set(columns)
        for k, v in columns.items():
            parts.setdefault(k, []).append(v)
    if not parts:
        raise ValueError("no shards to load")
    return {k: np.concatenate(v) for k, v in parts.items()}


def features_of(data: dict[str, NDArray[np.generic]], i: int) -> dict[str, float]:
    """The node's sensor features of frame ``i``, and its ``vru<k>_*`` track features.

    The track features only if the split has ``track_input`` (what a tracking model is trained on).
    """
    out = {k: float(data[k][i]) for k in ("ego_speed", "range", "range_rate", "range_valid")}
    if "track_input" in data:
        out.update(track_features(np.asarray(data["track_input"][i])))
    return out


def summary(data: dict[str, NDArray[np.generic]]) -> dict[str, float]:
    """Counts for the model card."""
    brake = data["brake"].astype(bool)
    ttc = np.minimum(data["ttc"], data["ttc_in_path"])
    hazard = brake & (data["range_valid"].astype(np.float32) < 0.5)
    return {"frames": int(brake.size), "brake_frames": int(brake.sum()),
            "benign_frames": int((data["family"] == FAMILIES.index("benign")).sum()),
            "ttc_lt_1_5_frames": int((ttc < 1.5).sum()),
            "brake_without_valid_range": int(hazard.sum()),
            "episodes": len(set(data["episode"].tolist())),
            "brake_fraction": float(brake.mean()) if brake.size else math.nan}
