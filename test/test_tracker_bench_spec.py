"""``tiny-node model tracker-bench`` benchmarks the bundle's tracker as the runtime builds it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tiny_node.factory import tracker_bench
from tiny_node.model.bundle import DEFAULT_BUNDLE_DIR, load_bundle
from tiny_node.model.tracker import TrackerConfig, VruTracker


def test_the_bench_tracks_with_the_bundles_own_score_and_rear_axle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """It swapped in a tracker of code defaults (min_score 0.5): a bundle's 0.3 was benchmarked at 0.5 (review)."""
    root = Path(shutil.copytree(DEFAULT_BUNDLE_DIR, tmp_path / "b"))
    manifest = root / "manifest.yaml"
    text = manifest.read_text()
    assert "    min_score: 0.5\n" in text
    manifest.write_text(text.replace("    min_score: 0.5\n", "    min_score: 0.3\n    rear_axle_m: 5.0\n"))
    seen: list[TrackerConfig] = []

    def tracker(cfg: TrackerConfig, **kw: float) -> VruTracker:
        seen.append(cfg)
        return VruTracker(cfg, **kw)

    monkeypatch.setattr(tracker_bench, "VruTracker", tracker)
    drive = tracker_bench.Drive("one", [np.zeros((480, 640, 3), np.uint8)], [0.0], [None])
    tracker_bench.run_tracker(load_bundle(root), [drive], tracker_bench.FIRST_TRACKER)
    assert (seen[0].min_score, seen[0].rear_axle_m) == (0.3, 5.0)
    assert seen[0].models == tracker_bench.FIRST_TRACKER.models  # the tracker benchmarked is still the one asked


def test_the_runtime_tracks_cache_key_takes_the_trackers_min_score() -> None:
    """Tracks cached while the tracker ignored a min_score under 0.5 were read as this code's (review): the key
    now holds the tracker as the runtime makes it; the shipped bundle's key (min_score 0.5) is unchanged."""
    from dataclasses import replace

    from tiny_node.factory.runtime_tracks import TrackSource

    b = load_bundle(DEFAULT_BUNDLE_DIR)
    assert b.vlm is not None and b.vlm.tracking is not None
    src = TrackSource(DEFAULT_BUNDLE_DIR / b.files["vru_detector"].rel, b.image, b.vlm.tracking)
    assert src.digest() == "ad58c2502cf6c0d8"  # as cached since 2026-12-06 (MODEL_HISTORY)
    low = replace(src, tracking=replace(b.vlm.tracking, min_score=0.4))
    assert low.digest() not in (src.digest(), "4f437de9199c7984")  # the latter: the key it had before
