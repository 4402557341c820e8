"""The shipped default model (``tiny_node/data/default_model``): verified, small, and it decides.

No torch needed: this is what every install of the node carries.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tiny_node.model.bundle import load_bundle
from tiny_node.model.vlm import VlmRuntime

SHIPPED = Path(__file__).resolve().parent.parent / "tiny_node" / "data" / "default_model"
EMPTY = [0.0] * 5  # an empty track slot (present, dx, y, vy, vx_rel)
pytestmark = pytest.mark.skipif(not (SHIPPED / "manifest.yaml").is_file(), reason="no shipped default model")


#: the newest opset per domain, and IR version, that onnxruntime 1.16 (setup.py's oldest) loads
ORT_1_16_OPSETS = {"": 19, "ai.onnx": 19, "ai.onnx.ml": 3, "com.microsoft": 1}
ORT_1_16_IR_VERSION = 9


def assert_loadable_by_onnxruntime_1_16(path: Path) -> None:
    """No opset or IR version onnxruntime 1.16 does not know, even an import no node uses.

    ``quant_pre_process`` stamped every domain of the installed onnxruntime (ai.onnx.ml 5, ...)
    on the INT8 graphs, and onnxruntime 1.16 refused to load them ("Current official support
    for domain ai.onnx.ml is till opset 3").
    """
    import onnx

    model = onnx.load(str(path))
    assert model.ir_version <= ORT_1_16_IR_VERSION, path
    for o in model.opset_import:
        assert o.version <= ORT_1_16_OPSETS.get(o.domain, -1), (str(path), o.domain, o.version)


def test_shipped_graphs_load_in_the_oldest_onnxruntime_setup_py_allows() -> None:
    graphs = sorted(SHIPPED.rglob("*.onnx"))
    assert len(graphs) == 4
    for path in graphs:
        assert_loadable_by_onnxruntime_1_16(path)


def test_shipped_model_is_verified_and_small() -> None:
    bundle = load_bundle(SHIPPED)  # every file's SHA-256
    assert bundle.kind == "vlm" and bundle.vlm is not None
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size <= 10 * 1024 * 1024
    import onnx

    ops = {n.op_type for n in onnx.load(str(bundle.file("decoder").path)).graph.node}
    assert "QuantizeLinear" in ops  # the INT8 student


def test_shipped_model_decides_and_explains() -> None:
    rt = VlmRuntime(load_bundle(SHIPPED), threads=1)
    grey = np.full((480, 640, 3), 110, np.uint8)
    out = rt.decide(grey, {"ego_speed": 13.9, "range": float("inf"), "range_rate": 0.0, "range_valid": 0.0})
    assert out.label == "go" and abs(sum(out.probs) - 1.0) < 1e-6  # an empty road, nothing in range
    assert rt.rationale() == "clear road"


def test_shipped_model_brakes_for_a_close_stopped_car() -> None:
    """The radar says 6 m at 14 m/s closing: a brake with a sensible rationale, whatever the frame."""
    rt = VlmRuntime(load_bundle(SHIPPED), threads=1)
    grey = np.full((480, 640, 3), 110, np.uint8)
    out = rt.decide(grey, {"ego_speed": 13.9, "range": 6.0, "range_rate": -13.9, "range_valid": 1.0})
    assert out.brake
    text = rt.rationale()  # the rationale follows the decision and names what the radar says
    assert text.startswith("car stopped ahead") and text.endswith("6 m")
    config = json.loads((SHIPPED / "config.json").read_text())
    assert config["model_type"] == "tiny_node_vlm"


def test_shipped_model_reads_tracked_vrus() -> None:
    """The shipped model tracks VRUs; a person walking towards the lane weighs far more than one
    standing at the kerb at the same place (same frame, same sensors: only the track differs)."""
    bundle = load_bundle(SHIPPED)
    assert bundle.vlm is not None and bundle.vlm.tracking is not None and "vru_detector" in bundle.files
    rt = VlmRuntime(bundle, threads=1)
    grey = np.full((480, 640, 3), 110, np.uint8)
    feats = {"ego_speed": 11.1, "range": float("inf"), "range_rate": 0.0, "range_valid": 0.0}

    def p_brake(y: float, vy: float) -> float:
        rec = np.asarray([[1.0, 14.0, y, vy, -11.1], EMPTY], np.float32)
        return rt.decide(grey, feats, tracks=rec, time_s=0.0).probs[1]

    assert p_brake(-2.0, 1.4) > p_brake(-4.0, 0.0) + 0.5
    rec = np.asarray([[1.0, 14.0, -2.0, 1.4, -11.1], EMPTY], np.float32)
    assert rt.decide(grey, feats, tracks=rec, time_s=0.0).tracks == ("vru0 14.0 m, y -2.0 m, vy +1.4 m/s; "
                                                                     "track conflict in 1.3 s")
    assert rt.decide(grey, feats, time_s=0.1).tracks == "no VRU tracked"  # one grey frame: nothing to track
    assert rt.last_ms["track"] > 0.0  # the detector ran on the frame (its tracks were replaced)


def test_shipped_model_does_not_read_a_person_walking_away_beyond_the_far_kerb_as_a_crossing() -> None:
    """A pedestrian who crossed far ahead and walks on beyond the far kerb (``benign_ped_crossing_clears``):
    5-6 m left of the lane, moving further left. The model shipped before the ``train_cleared`` shards gave
    0.65-0.87 here (a track token the training data had almost never paired with walking away) and that
    drive set its builds' thresholds (docs/MODEL_HISTORY.md, *Crossings that cleared*)."""
    rt = VlmRuntime(load_bundle(SHIPPED), threads=1)
    grey = np.full((480, 640, 3), 110, np.uint8)
    feats = {"ego_speed": 13.9, "range": float("inf"), "range_rate": 0.0, "range_valid": 0.0}

    def p_brake(dx: float, y: float, vy: float) -> float:
        rec = np.asarray([[1.0, dx, y, vy, -13.9], EMPTY], np.float32)
        return rt.decide(grey, feats, tracks=rec, time_s=0.0).probs[1]

    away = [p_brake(dx, y, 1.4) for dx in (18.0, 22.0, 26.0) for y in (5.0, 5.5, 6.0)]
    assert max(away) < 0.3, away
    assert p_brake(14.0, -1.5, 1.4) > 0.5 + max(away)  # a person in the path, crossing: still a brake


def test_shipped_model_brakes_on_a_track_conflict_whatever_its_threshold(tmp_path: Path) -> None:
    """A child tracked in the lane 4 m ahead, closing at the ego's 8 m/s (conflict in 0.5 s): the
    shipped bundle brakes even with a threshold its model cannot reach; the same bundle without
    ``vlm.tracking.conflict`` does not. A child at the kerb, or one whose conflict is 2 s away, is
    the model's call alone."""
    import shutil

    import yaml

    from tiny_node.model.bundle import MANIFEST, set_threshold

    root = tmp_path / "b"
    shutil.copytree(SHIPPED, root)
    set_threshold(root, 1.0)
    bundle = load_bundle(root)
    assert bundle.vlm is not None and bundle.vlm.tracking is not None
    assert bundle.vlm.tracking.conflict is not None and bundle.vlm.tracking.conflict.brake_within_s == 1.5
    assert bundle.vlm.tracking.conflict.min_p_brake == 0.01
    grey = np.full((480, 640, 3), 110, np.uint8)
    feats = {"ego_speed": 8.0, "range": float("inf"), "range_rate": 0.0, "range_valid": 0.0}
    ahead = np.asarray([[1.0, 4.0, 0.2, 0.0, -8.0], EMPTY], np.float32)
    kerb = np.asarray([[1.0, 4.0, -2.5, 0.0, -8.0], EMPTY], np.float32)
    later = np.asarray([[1.0, 16.0, 0.2, 0.0, -8.0], EMPTY], np.float32)
    rt = VlmRuntime(bundle, threads=1)
    out = rt.decide(grey, feats, tracks=ahead, time_s=0.0)
    assert out.brake and out.label == "brake" and out.p_brake < 1.0 and out.conflict_s == pytest.approx(0.5)
    assert out.tracks.endswith("track conflict in 0.5 s")
    assert not rt.decide(grey, feats, tracks=kerb, time_s=0.0).brake
    assert not rt.decide(grey, feats, tracks=later, time_s=0.0).brake  # 2.0 s: the model's call
    doc = yaml.safe_load((root / MANIFEST).read_text())
    doc["vlm"]["tracking"]["conflict"]["min_p_brake"] = out.p_brake + 1e-3  # the model's veto
    (root / MANIFEST).write_text(yaml.safe_dump(doc, sort_keys=False))
    assert not VlmRuntime(load_bundle(root), threads=1).decide(grey, feats, tracks=ahead, time_s=0.0).brake
    del doc["vlm"]["tracking"]["conflict"]
    (root / MANIFEST).write_text(yaml.safe_dump(doc, sort_keys=False))
    alone = VlmRuntime(load_bundle(root), threads=1).decide(grey, feats, tracks=ahead, time_s=0.0)
    assert not alone.brake and alone.conflict_s == math.inf
    with pytest.raises(ValueError, match=r"track records must be \[\.\.\., slots, 5\]"):
        rt.decide(grey, feats, tracks=ahead[:, :4], time_s=0.0)  # the conflict needs the closing speed


def test_a_conflict_of_a_track_the_prompt_has_no_slot_for_brakes_and_is_named(tmp_path: Path) -> None:
    """Two people wait at the kerb, nearest the path, and fill the prompt's two slots; a cyclist
    6 m ahead, 5 m out, rides in at 5 m/s (conflict in 0.75 s). The conflict test reads every
    track: the shipped bundle brakes and its reason names the third track. Before, it read the
    two shown and let the cyclist through."""
    import shutil

    from tiny_node.model.bundle import set_threshold

    root = tmp_path / "b"
    shutil.copytree(SHIPPED, root)
    set_threshold(root, 1.0)  # the model alone never brakes: what brakes is the conflict test
    rt = VlmRuntime(load_bundle(root), threads=1)
    grey = np.full((480, 640, 3), 110, np.uint8)
    feats = {"ego_speed": 8.0, "range": float("inf"), "range_rate": 0.0, "range_valid": 0.0}
    kerb = [[1.0, 5.0, 2.4, 0.0, -8.0], [1.0, 7.0, -2.6, 0.0, -8.0]]
    cyclist = [1.0, 6.0, 5.0, -5.0, -8.0]
    out = rt.decide(grey, feats, tracks=np.asarray([*kerb, cyclist], np.float32), time_s=0.0)
    assert out.brake and out.conflict_s == pytest.approx(0.75)
    assert out.tracks.endswith("track conflict in 0.8 s (vru2 6.0 m, y +5.0 m, vy -5.0 m/s, not among the tracks shown)")
    assert "vru2" not in out.tracks.split(";")[0] + out.tracks.split(";")[1]  # the prompt showed two
    shown = rt.decide(grey, feats, tracks=np.asarray(kerb, np.float32), time_s=0.0)
    assert not shown.brake and shown.conflict_s == math.inf
    # the model's veto (P(brake) < 1 %) is for the tracks it was shown: not for the third
    slow = {**feats, "ego_speed": 3.0}
    far = [[1.0, 25.0, 5.0, 0.0, -3.0], [1.0, 28.0, 6.0, 0.0, -3.0]]
    crossing = [1.0, 2.7, -3.0, 3.5, -3.0]  # a cyclist 2.7 m ahead crossing in: conflict in 0.9 s
    out = rt.decide(grey, slow, tracks=np.asarray([*far, crossing], np.float32), time_s=0.0)
    assert out.p_brake < 0.01 and out.brake and out.conflict_brake and out.conflict_s == pytest.approx(0.9)
    in_view = rt.decide(grey, slow, tracks=np.asarray([crossing, *far], np.float32), time_s=0.0)
    assert in_view.conflict_s == pytest.approx(0.9) and in_view.brake == (in_view.p_brake >= 0.01)
    # shown is what the prompt holds (vru0_*, vru1_*), not a larger vlm.tracking.tracks (review)
    import yaml

    from tiny_node.model.bundle import MANIFEST

    doc = yaml.safe_load((root / MANIFEST).read_text())
    doc["vlm"]["tracking"]["tracks"] = 4
    (root / MANIFEST).write_text(yaml.safe_dump(doc, sort_keys=False))
    four = VlmRuntime(load_bundle(root), threads=1)
    assert four.shown_slots == 2
    again = four.decide(grey, slow, tracks=np.asarray([*far, crossing], np.float32), time_s=0.0)
    assert again.brake and again.conflict_brake and "not among the tracks shown" in again.tracks


def test_in_the_closed_loop_the_conflict_brake_reaches_a_child_behind_two_waiting_adults() -> None:
    """The shipped example ``child_behind_waiting_pair.yaml``, lockstep: the two adults at the kerb
    fill the prompt's slots, and the first brake is the conflict of the third track, the child
    running in (P(brake) still far under the threshold), at 4.07 s. Testing only the two shown
    tracks, the bundle braked at 4.27 s, when its model saw the child (MODEL_HISTORY, *Every track*)."""
    import csv
    import io

    from tiny_node.config import make_config
    from tiny_node.sim.closed_loop import run_scenario
    from tiny_node.sim.scenario import example_scenario_files, load_scenario

    (path,) = [p for p in example_scenario_files() if p.name == "child_behind_waiting_pair.yaml"]
    res = run_scenario(load_scenario(path), make_config(), bundle=SHIPPED)
    rows = list(csv.DictReader(io.StringIO(res.timeline_csv())))
    first = next(r for r in rows if r["decision"] == "brake")
    assert first["source"] == "model" and float(first["model_p_brake"]) < load_bundle(SHIPPED).decision.threshold
    assert "not among the tracks shown" in first["reason"] and "(vru2 " in first["reason"]
    assert float(first["t_s"]) < 4.2 and res.summary["outcome"] == "avoided"


def test_in_the_closed_loop_the_conflict_brake_decides_before_the_model_on_the_child_behind_parked_cars() -> None:
    """CPNCO-50 at 60 km/h by night, lockstep: one frame before the model's own brake, the shipped
    bundle brakes on the tracked child's conflict, P(brake) still under the threshold; the reason,
    the timeline and the decision say so (docs/MODEL_HISTORY.md, *A track conflict brake*)."""
    import csv
    import io

    from tiny_node.config import make_config
    from tiny_node.sim.closed_loop import run_scenario
    from tiny_node.sim.suite import NIGHT, cpnco

    bundle = load_bundle(SHIPPED)
    threshold = bundle.decision.threshold
    res = run_scenario(cpnco(60.0, NIGHT), make_config(), bundle=SHIPPED)
    rows = list(csv.DictReader(io.StringIO(res.timeline_csv())))
    first = next(r for r in rows if r["decision"] == "brake")
    assert first["source"] == "model" and float(first["model_p_brake"]) < threshold
    assert float(first["model_conflict_s"]) < 1.5 and "track conflict in" in first["reason"]
    assert res.summary["impact_speed_kmh"] < 24.0  # the bundle without it hit the child at 24.0 km/h
