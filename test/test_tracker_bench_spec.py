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
