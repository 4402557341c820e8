"""``tiny-node model tracker-bench``: the shipped bundle's detector + tracker on a rendered drive."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from tiny_node.factory import tracker_bench
from tiny_node.model.bundle import load_bundle, resolve_bundle_dir


def test_the_shipped_tracker_reads_a_crossing_pedestrians_lateral_speed_better_than_the_first() -> None:
    drives = [d for d in tracker_bench.render_drives() if d.name == "CPNA-25_60kmh_day"]
    bundle_dir = resolve_bundle_dir("default")
    assert bundle_dir is not None
    bundle = load_bundle(bundle_dir)
    shipped = tracker_bench.run_tracker(bundle, drives, tracker_bench.TRACKERS["shipped (IMM + ego motion)"])
    first = tracker_bench.run_tracker(bundle, drives, tracker_bench.FIRST_TRACKER)
    n, mean, rms = shipped["vy_error"]["CPNA-25_60kmh_day"]
    n1, mean1, rms1 = first["vy_error"]["CPNA-25_60kmh_day"]
    assert n >= 40 and n1 >= 40  # the person is tracked over most of 6-35 m in both
    # measured -0.05 / 0.08 against -0.12 / 0.14 m/s mean / rms (true 1.39 m/s) with the shipped
    # 12-epoch detector; -0.12 against -0.31 m/s mean with the 8-epoch one before it
    assert abs(mean) < min(0.2, abs(mean1))
    assert rms < 0.7 * rms1
    assert np.isfinite(shipped["track_ms"]).all() and shipped["track_ms"][0] > 0.0


def test_a_folder_without_a_manifest_or_without_tracking_is_refused(
        tmp_path: Path, bundles: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert tracker_bench.command(argparse.Namespace(bundle=str(tmp_path))) == 2
    assert "no manifest.yaml" in capsys.readouterr().err
    assert tracker_bench.command(argparse.Namespace(bundle=str(bundles["fast"]))) == 2
    assert "vlm.tracking" in capsys.readouterr().err


def test_format_bench_times_the_language_model_apart_from_the_detector(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from tiny_node.factory import format_bench

    assert format_bench.command(argparse.Namespace(build=tmp_path, rounds=10)) == 2
    assert "needs the pruned FP32 bundle" in capsys.readouterr().err
    shipped = resolve_bundle_dir("default")
    assert shipped is not None
    for name in ("pruned", "int8"):  # the same graphs twice: the comparison itself is what runs
        shutil.copytree(shipped, tmp_path / "bundles" / name)
    res = format_bench.measure({n: tmp_path / "bundles" / n for n in ("pruned", "int8")}, rounds=12)
    for r in res.values():
        assert 0.0 < r["lm_p50"] <= r["lm_p99"] and 0.0 < r["detector_p50"] < r["track_p50"]
        assert r["model_p50"] <= r["lm_p99"] + r["detector_p99"]
    assert format_bench.command(argparse.Namespace(build=tmp_path, rounds=3)) == 2
    assert "--rounds 3" in capsys.readouterr().err


def test_format_bench_refuses_a_damaged_or_non_language_model_bundle_before_it_measures(
        tmp_path: Path, bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Before: only the folders were checked; measure() loaded the bundles, a traceback.
    import shutil

    from tiny_node.factory import format_bench

    def never(*_: object, **__: object) -> None:
        raise AssertionError("measured before checking the bundles")

    monkeypatch.setattr(format_bench, "measure", never)
    shipped = resolve_bundle_dir("default")
    assert shipped is not None
    shutil.copytree(shipped, tmp_path / "bundles" / "pruned")
    damaged = Path(shutil.copytree(shipped, tmp_path / "bundles" / "int8"))
    with (damaged / "tokenizer.json").open("a", encoding="utf-8") as f:
        f.write(" ")  # the manifest's checksum no longer matches
    assert format_bench.command(argparse.Namespace(build=tmp_path, rounds=10)) == 2
    err = capsys.readouterr().err
    assert err.startswith("tiny-node model format-bench: files.tokenizer: checksum mismatch for "
                          f"{damaged / 'tokenizer.json'}") and len(err.strip().splitlines()) == 1
    shutil.rmtree(damaged)
    shutil.copytree(bundles["fast"], damaged)  # a classifier: no language model to time
    assert format_bench.command(argparse.Namespace(build=tmp_path, rounds=10)) == 2
    assert capsys.readouterr().err == (f"tiny-node model format-bench: {damaged}: kind 'classifier', not a vlm "
                                       "bundle: format-bench times language models\n")
