"""Runtime tracks: the shipped detector + the runtime's tracker over 30 Hz re-runs of a shard's drives."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")  # the factory's export module builds the specs

from tiny_node.factory import dataset, runtime_tracks
from tiny_node.factory.export import image_spec, tracking_spec
from tiny_node.factory.tracks import TRACKS
from tiny_node.factory.vlm_torch import ROI
from tiny_node.model.bundle import load_bundle, resolve_bundle_dir
from tiny_node.model.tracker import RECORD_FIELDS
from tiny_node.model.tracking import Tracking

EPISODES, FRAMES = 6, 4


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small test shard, rendered (the seeds of the real ``test`` split's first shard)."""
    out = tmp_path_factory.mktemp("shards")
    (path,) = dataset.build_split(out, "test", 1, EPISODES, FRAMES)
    return path


@pytest.fixture(scope="module")
def source() -> runtime_tracks.TrackSource:
    """The shipped bundle's VRU detector, with the factory's image and tracking specs."""
    path = resolve_bundle_dir("default")
    assert path is not None
    bundle = load_bundle(path)
    assert bundle.vlm is not None and bundle.vlm.tracking is not None
    spec = tracking_spec(bundle.vlm.tracking.tracks, bundle.vlm.tracking.sigma_px)
    assert spec == bundle.vlm.tracking and image_spec(ROI) == bundle.image  # what the factory writes, it ships
    return runtime_tracks.TrackSource(bundle.file("vru_detector").path, image_spec(ROI), spec)


def test_runtime_tracks_follow_the_shards_vrus(shard: Path, source: runtime_tracks.TrackSource) -> None:
    tracks = runtime_tracks.shard_tracks(shard, EPISODES, FRAMES, source)
    with np.load(shard, allow_pickle=False) as z:
        truth, rows = z["vru_tracks"], len(z["brake"])
    assert tracks.shape == (rows, runtime_tracks.RECORDED, len(RECORD_FIELDS)) and tracks.dtype == np.float32
    # every confirmed track, nearest the path first; the prompt's slots are the first TRACKS
    present = tracks[:, :, 0] > 0.5
    assert not (~present[:, :-1] & present[:, 1:]).any(), "no empty row before a track"
    lateral = np.where(present, np.abs(tracks[:, :, 2]), 1e9)
    assert (np.diff(lateral, axis=1)[present[:, 1:]] >= 0).all(), "ranked by |y|"
    tracks = tracks[:, :TRACKS]
    fit = runtime_tracks.agreement(tracks, truth)
    # the real detector finds most people within 40 m, and their lateral speed within a few tenths
    assert fit["vru_frames"] > 10 and fit["coverage"] > 0.5
    assert fit["vy_error_rms"] < 0.8 and abs(fit["vy_error_mean"]) < 0.4
    # not the ground truth in disguise: ranges are measured, so they differ from the records
    both = (tracks[:, :, 0] > 0.5) & (truth[:, :, 0] > 0.5)
    assert both.any() and not np.allclose(tracks[both], truth[both])
    # a second run is the same run (the camera has its own seeded stream)
    np.testing.assert_array_equal(tracks, runtime_tracks.shard_tracks(shard, EPISODES, FRAMES, source)[:, :TRACKS])


def test_a_shard_made_with_other_drive_counts_is_refused_by_name(shard: Path,
                                                                 source: runtime_tracks.TrackSource) -> None:
    with pytest.raises(ValueError, match=rf"{shard.name}: re-running its drives does not give its labels"):
        runtime_tracks.shard_tracks(shard, EPISODES + 1, FRAMES, source)


class _Counting(Tracking):
    """The real tracking, with the frame times it was stepped at kept."""

    times: list[float]

    def step(self, pixels: dict[str, np.ndarray], time_s: float | None, ego_speed: float,  # type: ignore[override]
             run_options: object = None) -> dict[str, float]:
        self.times.append(float(time_s if time_s is not None else math.nan))
        return super().step(pixels, time_s, ego_speed)


def test_the_recorder_tracks_every_30_hz_frame_and_each_sampled_one(shard: Path,
                                                                    source: runtime_tracks.TrackSource) -> None:
    base = source.tracking_of()
    tracking = _Counting(base.session, source.image, source.tracking, "detector")
    tracking.times = []
    rec = runtime_tracks.TrackRecorder(tracking, source.image)
    again = dataset.make_shard(dataset.ShardSpec("test", 0, 1, FRAMES), render=False, observer=rec)
    times = np.asarray(tracking.times)
    assert len(rec.records) == len(again["t"]) == FRAMES
    assert all(np.isclose(times, t, atol=1e-6).any() for t in again["t"])  # every sampled frame was tracked
    gaps = np.diff(times)
    assert gaps.min() > 0.0 and gaps.max() <= 1.0 / runtime_tracks.FPS + 0.01 + 1e-9  # no frame skipped
    assert times[0] == 0.0 and times[-1] == pytest.approx(again["t"][-1])


def test_the_cache_key_is_the_tracks_own_and_not_the_conflict_brakes(source: runtime_tracks.TrackSource) -> None:
    """The shipped detector's tracks keep the key they were cached under; the conflict brake is not in it."""
    assert source.tracking.conflict is not None
    # the shipped recipe's tracks directory; 49fc1d23d6ae0ff1 until the cache held RECORDED tracks, not TRACKS
    assert source.digest() == "ad58c2502cf6c0d8"
    no_brake = replace(source, tracking=replace(source.tracking, conflict=None))
    assert no_brake.digest() == source.digest()
    other = replace(source, tracking=replace(source.tracking, sigma_px=source.tracking.sigma_px + 0.1))
    assert other.digest() != source.digest()  # a field that makes tracks is in the key


def test_a_bundles_detector_is_read_as_the_node_reads_it(source: runtime_tracks.TrackSource, tmp_path: Path) -> None:
    """``model evaluate`` built the detector's session from its path: onnxruntime read the graph again,
    unchecked, so a graph edited after the manifest (or external data it does not list) ran (review)."""
    import shutil

    import onnx
    from onnx import numpy_helper

    from tiny_node.model.bundle import BundleError

    shipped = resolve_bundle_dir("default")
    assert shipped is not None
    ok = replace(source, bundle=shipped)
    assert ok.digest() == source.digest()  # the shipped tracks keep their key
    assert isinstance(ok.tracking_of(), Tracking)
    copy = Path(shutil.copytree(shipped, tmp_path / "bundle"))
    graph_path = copy / source.detector.relative_to(shipped)
    graph = onnx.load(str(graph_path))
    weight = graph.graph.initializer[0]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 0.0, weight.name))
    onnx.save(graph, str(graph_path))  # a valid graph, other weights, its manifest hash unchanged
    edited = replace(source, detector=graph_path, bundle=copy)
    for use in (edited.digest, edited.tracking_of):
        with pytest.raises(BundleError, match="checksum mismatch"):
            use()
