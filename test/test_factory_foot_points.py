"""``tiny-node model foot-points``: the shipped bundle's detector on actors rendered at known ranges."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from tiny_node.factory import foot_points
from tiny_node.model.bundle import Bundle, load_bundle, resolve_bundle_dir


def _shipped() -> Bundle:
    path = resolve_bundle_dir("default")
    assert path is not None
    return load_bundle(path)


def test_the_shipped_detector_finds_crossing_pedestrians_feet_within_a_pixel_or_two() -> None:
    cases = tuple(c for c in foot_points.CASES if c.kind in ("adult", "child"))
    rows = foot_points.measure(_shipped(), cases=cases, ranges=(8.0, 16.0, 24.0), lights=("day", "night"), draws=3)
    assert len(rows) == 2 * 2 * 3
    for r in rows:
        assert r["found"] == 1.0, r  # every draw, by day and by night, out to 24 m
        assert abs(r["dv_px"]) < 2.0, r  # measured within 1.1 px (24 draws)
        # a point too high in the image is too far on the road, and the further, the more metres per pixel
        assert r["dv_px"] == 0.0 or math.copysign(1.0, r["dx_m"]) == -math.copysign(1.0, r["dv_px"]), r
    near = [abs(r["dx_m"] / r["dv_px"]) for r in rows if r["range_m"] == 8.0 and r["dv_px"]]
    far = [abs(r["dx_m"] / r["dv_px"]) for r in rows if r["range_m"] == 24.0 and r["dv_px"]]
    assert max(near) < min(far)


def test_the_command_prints_every_case_and_refuses_what_it_cannot_measure(
        tmp_path: Path, bundles: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rows.json"
    assert foot_points.command(argparse.Namespace(bundle="default", draws=1, json=out)) == 0
    text = capsys.readouterr().out
    for case in foot_points.CASES:
        assert f"day, {case.name}" in text and f"night, {case.name}" in text
    rows = json.loads(out.read_text())
    assert len(rows) == len(foot_points.CASES) * len(foot_points.RANGES_M) * len(foot_points.LIGHTS)
    assert foot_points.command(argparse.Namespace(bundle=str(bundles["fast"]), draws=1, json=None)) == 2
    assert "no vlm.tracking" in capsys.readouterr().err
    assert foot_points.command(argparse.Namespace(bundle="default", draws=0, json=None)) == 2
    assert "--draws 0" in capsys.readouterr().err
