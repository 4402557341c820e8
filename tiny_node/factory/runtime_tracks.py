"""What the runtime's VRU detector + tracker report at each frame of a shard ("runtime tracks").

Why: a shard holds 3-8 frames of each drive, too few to track over, so the language model has
been trained and measured on ground-truth tracks with a tracker's errors drawn at random
(``tracks.degrade``). The node tracks over a 30 Hz stream with its own detector, and those
errors are not random: a cyclist riding along the bike lane picks up a lateral velocity towards
the lane as the ego closes in, a far pedestrian's range is metres off, a child behind a parked
car has no track at all. Here each shard's drives run again (``dataset.make_shard`` with an
observer), a camera renders every 1/30 s (and the sampled frame itself), and the bundle's own
tracking code (``model.tracking.Tracking``) runs on each frame with the ego's odometry speed;
its records at the sampled frames are the shard's runtime tracks. The tracker knows the shard's
true camera pose, as a calibrated vehicle does.

The renderer draws from a random stream of its own, so re-running a drive changes nothing of
the shard; each re-run is checked against the shard's own labels (``dataset.rerun``).
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from tqdm import tqdm

from tiny_node.factory import dataset
from tiny_node.factory.scenes import Look
from tiny_node.model.bundle import ImageSpec, TrackingSpec
from tiny_node.model.preprocess import whole_frame
from tiny_node.model.tracker import RECORD_FIELDS, TrackerConfig
from tiny_node.model.tracking import Tracking
from tiny_node.sim.camera import CameraModel, CameraRenderer
from tiny_node.sim.world import World

FPS = 30.0
CAMERA_STREAM = 30  # the renderer's random stream (per drive: [episode seed, this])
#: tracks recorded per frame, nearest the ego's path first: the prompt reads the first
#: ``vlm.tracking.tracks`` (the shards' ``tracks.TRACKS`` at most), the conflict test every
#: one the node has (``VlmRuntime._with_tracks``); no simulated frame confirms this many
RECORDED = 8


#: ``TrackingSpec`` fields that decide on the tracks and do not make them (the conflict brake),
#: or make none of the factory's (``rear_axle_m``, below): not part of a cache key, so changing
#: them keeps the cached tracks
TRACKS_UNMADE_BY = frozenset({"conflict", "rear_axle_m"})
#: ``TrackerConfig`` fields that make none of the factory's tracks: ``rear_axle_m`` acts only with a
#: yaw rate, and the simulator drives straight (0 exactly). Out of the cache key, the tracks cached
#: before the field existed stay valid; a simulator with curves must take it out of this set
TRACKER_UNMADE_BY = frozenset({"rear_axle_m"})


def _repr_of(spec: Any, skip: frozenset[str]) -> str:
    """The dataclass's own ``repr`` without the fields in ``skip``.

    Why: cache keys are this repr; a field added later and left out here keeps every key (and
    the tracks cached under it) what it was before the field existed.
    """
    shown = ", ".join(f"{f.name}={getattr(spec, f.name)!r}" for f in fields(spec) if f.repr and f.name not in skip)
    return f"{type(spec).__qualname__}({shown})"


@dataclass(frozen=True)
class TrackSource:
    """The detector graph and the specs that turn it into runtime tracks (picklable for workers).

    ``bundle``: the bundle folder the detector is ``files.<tracking.detector>`` of. Its graph (and
    external data) is then read as the node reads it, every byte hashed against the manifest
    again, and the session built from those bytes (``load_session``); without it ``detector`` is
    the build's own graph, read from disk. Why: ``model evaluate`` built the session from the
    path, so onnxruntime read the graph again, and external data the manifest does not list,
    unchecked (review).
    """

    detector: Path
    image: ImageSpec
    tracking: TrackingSpec
    bundle: Path | None = None

    def _graph_bytes(self) -> bytes:
        """The detector's bytes (a bundle's: verified, external data appended in manifest order)."""
        if self.bundle is None:
            return self.detector.read_bytes()
        from tiny_node.model.bundle import load_bundle

        b = load_bundle(self.bundle)
        return b.read_verified(self.tracking.detector) + b"".join(b.read_verified_data(self.tracking.detector))

    def digest(self) -> str:
        """Short hash of everything the tracks depend on: the detector's bytes, the specs, the tracker.

        Why: cached tracks of another detector or tracker version must not be read as these.
        """
        h = hashlib.sha256(self._graph_bytes())
        tracking = _repr_of(self.tracking, skip=TRACKS_UNMADE_BY)
        # the tracker as the runtime makes it: with the bundle's min_score (a key with the default's
        # alone read tracks cached when the tracker ignored a lower one as this code's; review)
        tracker = _repr_of(replace(TrackerConfig(), min_score=self.tracking.min_score), skip=TRACKER_UNMADE_BY)
        h.update(f"({self.image!r}, {tracking}, {tracker}, {FPS!r}, {CAMERA_STREAM!r}, {RECORDED!r})".encode())
        return h.hexdigest()[:16]

    def tracking_of(self) -> Tracking:
        """A fresh ``Tracking`` on this detector, one thread (workers run side by side)."""
        if self.bundle is not None:
            from tiny_node.model.bundle import load_bundle
            from tiny_node.model.runtime import load_session

            session = load_session(load_bundle(self.bundle), self.tracking.detector, threads=1)
            return Tracking(session, self.image, self.tracking, str(self.detector))
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        session = ort.InferenceSession(str(self.detector), so, providers=["CPUExecutionProvider"])
        return Tracking(session, self.image, self.tracking, str(self.detector))


class TrackRecorder:
    """A ``dataset.DriveObserver``: a 30 Hz camera and the runtime's tracking over each drive."""

    def __init__(self, tracking: Tracking, image: ImageSpec) -> None:
        self.tracking = tracking
        self.image = whole_frame(image)  # as the runtime feeds its detector
        self.name = image.name
        self.records: list[NDArray[np.float32]] = []
        self._renderer: CameraRenderer | None = None
        self._look: Look | None = None
        self._rng = np.random.default_rng(0)
        self._next_t = 0.0

    def start(self, look: Look, ep_seed: int) -> None:
        """A new drive: no tracks, the shard's camera pose, the camera's own random stream."""
        self.tracking.reset()
        self.tracking.mount(CameraModel(pitch_deg=look.pitch_deg, mount_height_m=look.mount_height_m))
        self._renderer, self._look = dataset._renderer(look), look
        self._rng = np.random.default_rng([ep_seed, CAMERA_STREAM])
        self._next_t = 0.0

    def step(self, world: World, t: float, ego_speed: float, *, frame_due: bool) -> None:
        """Render and track on the 30 Hz grid, and at each sampled frame (the grid restarts there).

        Without a trustworthy ego speed the node does not ask the model, so nothing is tracked.
        """
        on_grid = t >= self._next_t - 1e-9
        if not (on_grid or frame_due):
            return
        self._next_t = self._next_t + 1.0 / FPS if on_grid else t + 1.0 / FPS
        if not math.isfinite(ego_speed):
            return
        assert self._renderer is not None and self._look is not None, "start() comes first"
        frame = self._renderer.render(world, self._look.env, self._rng)
        self.tracking.step({self.name: self.image(frame)}, t, ego_speed)

    def frame(self) -> None:
        """Keep the tracker's records for the sampled frame."""
        self.records.append(self.tracking.tracker.records(RECORDED))


def shard_tracks(path: Path, episodes: int, frames: int, source: TrackSource) -> NDArray[np.float32]:
    """``[rows, RECORDED, len(RECORD_FIELDS)]`` runtime tracks of the shard at ``path``.

    Raises ValueError naming the shard when the re-run drives do not give its labels (it was
    made with other ``episodes`` / ``frames``, or by another factory version).
    """
    rec = TrackRecorder(source.tracking_of(), source.image)
    again = dataset.rerun(path, episodes, frames, observer=rec)
    out = np.asarray(rec.records, np.float32).reshape(-1, RECORDED, len(RECORD_FIELDS))
    assert len(out) == len(again["brake"]), "one record per sampled frame"
    return out


def _make(job: tuple[Path, Path, int, int, TrackSource]) -> Path:
    shard, dst, episodes, frames, source = job
    tracks = shard_tracks(shard, episodes, frames, source)
    tmp = dst.with_suffix(".tmp.npy")
    np.save(tmp, tracks, allow_pickle=False)
    os.replace(tmp, dst)
    return dst


def tracks_dir(build: Path, source: TrackSource) -> Path:
    """Where a build folder keeps the runtime tracks of ``source`` (one folder per detector + tracker)."""
    return build / "tracks" / source.digest()


def build_tracks(shards: list[Path], out_dir: Path, episodes: int, frames: int, source: TrackSource, *,
                 workers: int = 1, desc: str = "runtime tracks") -> list[Path]:
    """Runtime tracks of each shard in ``out_dir`` (``<shard>.npy``), the missing ones made; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = [out_dir / f"{Path(s).stem}.npy" for s in shards]
    todo = [(s, d, episodes, frames, source) for s, d in zip(shards, dst, strict=True) if not d.exists()]
    bar = tqdm(total=len(shards), initial=len(shards) - len(todo), desc=desc, unit="shard")
    if workers > 1 and len(todo) > 1:
        with multiprocessing.get_context("spawn").Pool(workers, initializer=dataset._init_worker) as pool:
            for _ in pool.imap_unordered(_make, todo):
                bar.update()
    else:
        for job in todo:
            _make(job)
            bar.update()
    bar.close()
    return dst


def load_tracks(paths: list[Path]) -> NDArray[np.float32]:
    """The runtime tracks of a split, shard after shard (``allow_pickle=False``); an unreadable file is named."""
    parts = []
    for p in paths:
        try:
            parts.append(np.load(p, allow_pickle=False))
        except dataset.UNREADABLE as exc:
            raise dataset.ShardError(p, exc) from exc
    return np.concatenate(parts).astype(np.float32)


def agreement(runtime: NDArray[Any], truth: NDArray[Any], *, max_dx_m: float = 40.0) -> dict[str, float]:
    """How runtime tracks compare with the ground truth of the same frames (the model card's figures).

    ``coverage``: share of ground-truth VRUs within ``max_dx_m`` that have a runtime track within
    2 m of range and 1 m laterally; over those, the lateral-velocity error (mean, rms) and the
    share off by more than 0.5 m/s. ``phantoms``: share of runtime tracks with no VRU near them.
    """
    rt, gt = np.asarray(runtime, np.float64), np.asarray(truth, np.float64)
    errs, found, wanted, phantom, tracked = [], 0, 0, 0, 0
    for r_rows, g_rows in zip(rt, gt, strict=True):
        g_live = [g for g in g_rows if g[0] > 0.5 and g[1] < max_dx_m]
        r_live = [r for r in r_rows if r[0] > 0.5]
        wanted += len(g_live)
        for g in g_live:
            near = [r for r in r_live if abs(r[1] - g[1]) < 2.0 and abs(r[2] - g[2]) < 1.0]
            if near:
                found += 1
                errs.append(near[0][3] - g[3])
        tracked += len(r_live)
        phantom += sum(not any(abs(r[1] - g[1]) < 4.0 and abs(r[2] - g[2]) < 2.0 for g in g_rows if g[0] > 0.5)
                       for r in r_live)
    e = np.asarray(errs)
    return {"coverage": found / wanted if wanted else math.nan, "vru_frames": wanted,
            "vy_error_mean": float(e.mean()) if e.size else math.nan,
            "vy_error_rms": float(np.sqrt(np.mean(e**2))) if e.size else math.nan,
            "vy_error_over_0_5": float((np.abs(e) > 0.5).mean()) if e.size else math.nan,
            "phantoms": phantom / tracked if tracked else math.nan, "tracks": tracked}
