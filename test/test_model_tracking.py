"""A bundle's VRU tracking end to end: detector graph -> road plane -> tracker -> features.

The detector here is a hand-built ONNX graph that "detects" bright 8x8 blocks (the mean
brightness of each 8-pixel cell of the ROI through a steep sigmoid), so a block moved across
frames is a person walking: the runtime must report its lateral velocity with the right sign
and about the right size, from real onnxruntime runs and the real tracker.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tiny_node.camera import CameraMount, Pinhole
from tiny_node.model.bundle import BundleError, TrackingSpec, load_bundle, write_manifest
from tiny_node.model.preprocess import ImagePreprocessor
from tiny_node.model.runtime import load_session
from tiny_node.model.testmodels import make_fast_bundle
from tiny_node.model.tracking import Tracking

ROI = (90, 190, 20, 300)  # as the factory's: 13 x 35 cells of 8 px
GRID = (13, 35)


def _detector(path: Path, *, outputs: tuple[str, str] = ("heat", "offset"), pixel_type: int = TensorProto.FLOAT) -> None:
    """The bright-block detector; another ``pixel_type`` than FLOAT: its input has that type (cast inside)."""
    half = pixel_type != TensorProto.FLOAT
    cast = [helper.make_node("Cast", ["pixel_values"], ["px"], to=TensorProto.FLOAT)] if half else []
    nodes = [
        *cast,
        helper.make_node("Slice", ["px" if half else "pixel_values", "starts", "ends", "axes"], ["roi"]),
        helper.make_node("ReduceMean", ["roi"], ["grey"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["grey"], ["cells"], kernel_shape=[8, 8], strides=[8, 8], ceil_mode=1),
        helper.make_node("Mul", ["cells", "gain"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "bias"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], [outputs[0]]),
        helper.make_node("Constant", [], [outputs[1]], value=helper.make_tensor(
            "half", TensorProto.FLOAT, [1, 2, *GRID], [0.5] * (2 * GRID[0] * GRID[1]))),
    ]
    inits = [helper.make_tensor("starts", TensorProto.INT64, [2], [ROI[0], ROI[2]]),
             helper.make_tensor("ends", TensorProto.INT64, [2], [ROI[1], ROI[3]]),
             helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3]),
             helper.make_tensor("gain", TensorProto.FLOAT, [], [20.0]),
             helper.make_tensor("bias", TensorProto.FLOAT, [], [10.0])]
    graph = helper.make_graph(nodes, "bright_blocks",
                              [helper.make_tensor_value_info("pixel_values", pixel_type, [1, 3, 240, 320])],
                              [helper.make_tensor_value_info(outputs[0], TensorProto.FLOAT, [1, 1, *GRID]),
                               helper.make_tensor_value_info(outputs[1], TensorProto.FLOAT, [1, 2, *GRID])],
                              inits)
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = helper.find_min_ir_version_for(opsets)  # onnx's newest IR: onnxruntime < 1.24 refuses it
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def _bundle(tmp_path: Path, **detector_kw: Any) -> Path:
    """A classifier bundle (its model is not used here) carrying the detector graph."""
    root = tmp_path / "b"
    make_fast_bundle(root)
    _detector(root / "det.onnx", **detector_kw)
    doc = load_bundle(root)
    files = {k: e.rel for k, e in doc.files.items()} | {"vru_detector": "det.onnx"}
    image = {"name": "pixel_values", "height": 240, "width": 320, "layout": "NCHW", "color": "rgb",
             "dtype": "float32", "mean": [0.5] * 3, "std": [0.5] * 3, "scale": 1 / 255, "roi": list(ROI)}
    write_manifest(root, name="tracking-test", files=files, inputs={"image": image},
                   outputs={"decision": {"name": doc.decision.name, "kind": doc.decision.kind,
                                         "labels": list(doc.decision.labels), "brake_label": doc.decision.brake_label,
                                         "threshold": 0.5}}, latency_budget_ms=5.0)
    return root


# this detector puts every point at its cell's centre: up to 4 px off, sigma ~8 / sqrt(12) = 2.3 px
SPEC = TrackingSpec(detector="vru_detector", tracks=2, min_score=0.5, sigma_px=3.0, stride=8, camera=CameraMount())


def _frame(col: int, row: int, value: int = 255) -> np.ndarray:
    img = np.full((240, 320, 3), 60, np.uint8)
    r, c = ROI[0] + 8 * row, ROI[2] + 8 * col
    img[r:r + 8, c:c + 8] = value
    return img


@pytest.mark.parametrize(("min_score", "tracked"), [(0.3, True), (0.5, False)])
def test_the_manifests_min_score_is_the_trackers_too(tmp_path: Path, min_score: float, tracked: bool) -> None:
    """A dim block scores about 0.4: under a min_score of 0.3 it is a detection. The tracker kept its own
    0.5 and dropped it again, so a bundle's lower min_score tracked nothing more (review)."""
    bundle = load_bundle(_bundle(tmp_path))
    tr = Tracking.of_bundle(bundle, replace(SPEC, min_score=min_score), threads=1)
    prep = ImagePreprocessor(bundle.image)
    for i in range(6):
        feats = tr.step({"pixel_values": prep(_frame(20, 7, value=189))}, i / 30.0, ego_speed=0.0)
    assert tr.last_detections == int(tracked) and feats["vru0_present"] == float(tracked)


def test_a_block_walking_left_is_tracked_with_its_lateral_velocity(tmp_path: Path) -> None:
    bundle = load_bundle(_bundle(tmp_path))
    tr = Tracking.of_bundle(bundle, SPEC, threads=1)
    prep = ImagePreprocessor(bundle.image)
    feats: dict[str, float] = {}
    for i in range(36):  # 1.2 s at 30 Hz; one cell to the left every 6 frames (0.2 s)
        px = {"pixel_values": prep(_frame(24 - i // 6, 7))}
        feats = tr.step(px, i / 30.0, ego_speed=0.0)
        if i == 1:
            assert feats["vru0_present"] == 0.0  # not yet 3 detections
    assert tr.last_detections == 1 and feats["vru0_present"] == 1.0 and feats["vru1_present"] == 0.0
    cam = Pinhole()
    v = ROI[0] + 8 * 7.5  # the block's cell centre row (offset 0.5)
    g0, g1 = cam.ground(ROI[2] + 8 * 24.5, v), cam.ground(ROI[2] + 8 * 23.5, v)
    assert g0 is not None and g1 is not None
    truth = (g1[1] - g0[1]) / 0.2  # m/s, left +
    assert truth > 0.5 and 0.5 * truth < feats["vru0_vy"] < 1.5 * truth
    assert math.isclose(feats["vru0_dx"], g0[0], rel_tol=0.1)
    # no frame time: nothing to track over
    assert tr.step({"pixel_values": prep(_frame(10, 7))}, None, 0.0)["vru0_present"] == 0.0
    tr.reset()
    assert tr.tracker.tracks == []
    # the tracker knows where the detector's window stops seeing the road (its bottom row), and
    # follows the camera when a drive mounts it otherwise
    bottom = cam.ground(cam.width / 2.0, ROI[1])
    assert bottom is not None and math.isclose(tr.window_near_m(), bottom[0])
    assert math.isclose(tr.tracker.near_m, bottom[0] + tr.tracker.cfg.near_margin_m)
    tr.mount(CameraMount(mount_height_m=2.0))
    assert tr.window_near_m() > bottom[0] + 1.0 and math.isclose(
        tr.tracker.near_m, tr.window_near_m() + tr.tracker.cfg.near_margin_m)


def test_a_detector_without_the_expected_outputs_is_refused(tmp_path: Path) -> None:
    bundle = load_bundle(_bundle(tmp_path, outputs=("heatmap", "offset")))
    with pytest.raises(BundleError, match=r"vlm.tracking.detector: .*must output 'heat' and 'offset'"):
        Tracking.of_bundle(bundle, SPEC, threads=1)


def test_manifest_errors_name_the_tracking_key(tmp_path: Path) -> None:
    import yaml

    from tiny_node.model.testvlm import make_tiny_vlm_bundle

    root = make_tiny_vlm_bundle(tmp_path / "vlm")
    manifest = root / "manifest.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["vlm"]["tracking"] = {"detector": "vru_detector", "tracks": 1, "min_score": 0.5, "sigma_px": 1.0,
                              "stride": 8}
    manifest.write_text(yaml.safe_dump(doc))
    with pytest.raises(BundleError, match=r"vlm.tracking.detector: 'vru_detector' is not a key of files"):
        load_bundle(root)
    doc["vlm"]["tracking"]["detector"] = "config"
    doc["inputs"]["sensors"]["features"].append("vru1_vy")
    manifest.write_text(yaml.safe_dump(doc))
    with pytest.raises(BundleError, match=r"'vru1_vy' needs vlm.tracking with more than 1 track slot"):
        load_bundle(root)
    doc["vlm"]["tracking"]["tracks"] = 5
    manifest.write_text(yaml.safe_dump(doc))
    with pytest.raises(BundleError, match=r"vlm.tracking.tracks: 5: at most 4 slots"):
        load_bundle(root)
    # without the detector's window: refused at load, naming the manifest (it was refused only when the
    # runtime loaded, so a check before a run, `hil --model`, passed it)
    doc["vlm"]["tracking"]["tracks"] = 2
    doc["inputs"]["image"].pop("roi", None)
    manifest.write_text(yaml.safe_dump(doc))
    with pytest.raises(BundleError, match=rf"^{manifest}: vlm.tracking: needs inputs.image.roi"):
        load_bundle(root)


def test_the_conflict_brake_is_read_from_the_manifest_and_its_errors_named(tmp_path: Path) -> None:
    import yaml

    from tiny_node.model.conflict import ConflictSpec
    from tiny_node.model.testvlm import make_tiny_vlm_bundle

    root = make_tiny_vlm_bundle(tmp_path / "vlm")
    manifest = root / "manifest.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["inputs"]["image"]["roi"] = [0, doc["inputs"]["image"]["height"], 0, doc["inputs"]["image"]["width"]]
    doc["vlm"]["tracking"] = {"detector": "config", "tracks": 1, "min_score": 0.5, "sigma_px": 1.0, "stride": 8,
                              "conflict": {"brake_within_s": 1.2, "min_p_brake": 0.05}}
    manifest.write_text(yaml.safe_dump(doc))
    tracking = load_bundle(root).vlm.tracking  # type: ignore[union-attr]
    assert tracking is not None and tracking.conflict == ConflictSpec(brake_within_s=1.2, min_p_brake=0.05)
    doc["vlm"]["tracking"]["conflict"] = None  # as a TrackingSpec without one writes it
    manifest.write_text(yaml.safe_dump(doc))
    assert load_bundle(root).vlm.tracking.conflict is None  # type: ignore[union-attr]
    for bad, match in (({"brake_within_s": 0.0}, r"vlm.tracking.conflict.brake_within_s: .*0.0"),
                       ({"half_width_m": 1.0}, r"vlm.tracking.conflict.brake_within_s"),
                       ({"brake_within_s": 1.0, "width": 2.0}, r"vlm.tracking.conflict.width: unknown key"),
                       ({"brake_within_s": 1.0, "min_p_brake": 1.5}, r"vlm.tracking.conflict.min_p_brake"),
                       # no length: no track could ever conflict, the brake silently off (review 2026-12-07)
                       ({"brake_within_s": 1.0, "ego_length_m": 0.0}, r"vlm.tracking.conflict.ego_length_m: .*0.0"),
                       ("1.5 s", r"vlm.tracking.conflict: expected a mapping")):
        doc["vlm"]["tracking"]["conflict"] = bad
        manifest.write_text(yaml.safe_dump(doc))
        with pytest.raises(BundleError, match=match):
            load_bundle(root)


def test_the_rear_axle_is_read_from_the_manifest_into_the_tracker(tmp_path: Path) -> None:
    # The tracker turns the tracks about the rear axle on a curve: a vehicle property, set in the
    # manifest beside the camera and the corridor (before, only TrackerConfig's code default)
    import yaml

    from tiny_node.model.testvlm import make_tiny_vlm_bundle
    from tiny_node.model.tracker import TrackerConfig

    root = make_tiny_vlm_bundle(tmp_path / "vlm")
    manifest = root / "manifest.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["inputs"]["image"]["roi"] = [0, doc["inputs"]["image"]["height"], 0, doc["inputs"]["image"]["width"]]
    doc["vlm"]["tracking"] = {"detector": "config", "tracks": 1, "min_score": 0.5, "sigma_px": 1.0, "stride": 8}
    manifest.write_text(yaml.safe_dump(doc))
    assert load_bundle(root).vlm.tracking.rear_axle_m == TrackerConfig.rear_axle_m == 3.6  # type: ignore[union-attr]
    doc["vlm"]["tracking"]["rear_axle_m"] = 5.9  # a van
    manifest.write_text(yaml.safe_dump(doc))
    assert load_bundle(root).vlm.tracking.rear_axle_m == 5.9  # type: ignore[union-attr]
    tr = Tracking.of_bundle(load_bundle(_bundle(tmp_path / "det")), replace(SPEC, rear_axle_m=5.9), threads=1)
    assert tr.tracker.cfg.rear_axle_m == 5.9
    for bad, match in ((-1.0, r"vlm.tracking.rear_axle_m: .*-1.0"), ("3.6 m", r"vlm.tracking.rear_axle_m: expected a number")):
        doc["vlm"]["tracking"]["rear_axle_m"] = bad
        manifest.write_text(yaml.safe_dump(doc))
        with pytest.raises(BundleError, match=match):
            load_bundle(root)


def test_a_wide_frame_squeezed_to_the_models_input_is_put_on_the_road_where_it_is(tmp_path: Path) -> None:
    """A 16:9 camera resized to 320 x 240: read with square pixels, every range was ~25 % short."""
    mount = CameraMount()
    wide = Pinhole.of(mount, 1280, 720)  # the camera itself, square pixels
    squeezed = Pinhole.of(mount, 320, 240, source=(1280, 720))
    assert math.isclose(squeezed.aspect, 4 / 3) and math.isclose(Pinhole.of(mount, 320, 240, (640, 480)).aspect, 1)
    for dx, y in ((10.0, 0.0), (20.0, -2.0), (30.0, 1.5)):
        depth = dx + mount.setback_m
        u = wide.width / 2 - y / depth * wide.fx
        v = wide.height / 2 + mount.mount_height_m / depth * wide.fx
        g = squeezed.ground(u * 320 / 1280, v * 240 / 720)  # the resize the preprocessor does
        assert g is not None and math.isclose(g[0], dx, rel_tol=1e-9) and math.isclose(g[1], y, abs_tol=1e-9)
    # the runtime tells the tracking its frames' size; the camera keeps its mounting
    tr = Tracking.of_bundle(load_bundle(_bundle(tmp_path)), SPEC, threads=1)
    near_4_3 = tr.window_near_m()
    tr.frame_size(1280, 720)
    assert math.isclose(tr.camera.aspect, 4 / 3) and tr.camera.mount() == mount
    assert tr.window_near_m() > near_4_3  # the window's bottom row looks less steeply down
    tr.mount(CameraMount(mount_height_m=2.0))
    assert math.isclose(tr.camera.aspect, 4 / 3)  # a drive's camera pose keeps the frame's aspect


def test_tracks_are_dropped_when_the_camera_geometry_changes_and_kept_when_it_does_not(tmp_path: Path) -> None:
    """Tracks read through one geometry were kept under another: ranges jumped ~25 %, read as motion."""
    bundle = load_bundle(_bundle(tmp_path))
    tr = Tracking.of_bundle(bundle, SPEC, threads=1)
    prep = ImagePreprocessor(bundle.image)
    for i in range(5):
        tr.step({"pixel_values": prep(_frame(20, 7))}, i / 30.0, ego_speed=0.0)
    assert len(tr.tracker.confirmed()) == 1
    tr.frame_size(320, 240)  # the same geometry
    tr.mount(CameraMount())
    assert len(tr.tracker.confirmed()) == 1
    tr.frame_size(1280, 720)  # a 16:9 camera from now on
    assert tr.tracker.tracks == []


def test_a_detector_output_of_another_grid_is_an_error_not_moved_foot_points(tmp_path: Path) -> None:
    bundle = load_bundle(_bundle(tmp_path))
    tr = Tracking.of_bundle(bundle, SPEC, threads=1)
    assert tr.grid == GRID
    px = {"pixel_values": ImagePreprocessor(bundle.image)(_frame(20, 7))}

    class Wrong:
        def __init__(self, heat: tuple[int, ...], off: tuple[int, ...]) -> None:
            self.out = [np.zeros(heat, np.float32), np.zeros(off, np.float32)]

        def run(self, *_: object) -> list[np.ndarray]:
            return self.out

    for heat, off in (((1, 1, 13, 35), (1, 2, 12, 35)), ((1, 1, 14, 35), (1, 2, 14, 35)),
                      ((1, 2, 13, 35), (1, 2, 13, 35)), ((2, 1, 13, 35), (2, 2, 13, 35))):
        tr.session = Wrong(heat, off)  # type: ignore[assignment]
        with pytest.raises(ValueError, match=r"must be \[1, 1, 13, 35\] and \[1, 2, 13, 35\]"):
            tr.step(px, 0.0, 0.0)
    for bad in (math.nan, math.inf):
        wrong = Wrong((1, 1, *GRID), (1, 2, *GRID))
        wrong.out[0][0, 0, 3, 3] = bad  # NaN in a cell hid every peak next to it; all NaN hid every VRU
        tr.session = wrong  # type: ignore[assignment]
        with pytest.raises(ValueError, match=r"non-finite heat or offset"):
            tr.step(px, 0.0, 0.0)


# -- a detector that does not fit its manifest is a bundle fault, found at load (review finding 3) --

SHIPPED = Path(__file__).resolve().parent.parent / "tiny_node" / "data" / "default_model"


@pytest.mark.parametrize(("image_edit", "spec_edit", "want"), [
    ({}, {"stride": 4}, r"heat \[1, 1, 13, 35\] .* must be \[1, 1, 25, 70\] .*roi \[90, 190, 20, 300\] .*stride 4"),
    ({"roi": (80, 190, 20, 300)}, {}, r"heat \[1, 1, 13, 35\] .* must be \[1, 1, 14, 35\] .*roi \[80, 190, 20, 300\]"),
])
def test_a_detector_whose_grid_does_not_fit_the_manifest_is_refused_at_load(
        tmp_path: Path, image_edit: dict[str, Any], spec_edit: dict[str, Any], want: str) -> None:
    """Before: accepted here, then a ValueError on the first frame (warm-up), which the worker
    retried forever as a transient failure, without naming the detector's file."""
    bundle = load_bundle(_bundle(tmp_path))
    image, spec = replace(bundle.image, **image_edit), replace(SPEC, **spec_edit)
    session = load_session(bundle, "vru_detector", 1)
    where = f"files.vru_detector: {bundle.file('vru_detector').path}"
    with pytest.raises(BundleError, match=r"^vlm\.tracking\.detector: files\.vru_detector: .*/det\.onnx: " + want):
        Tracking(session, image, spec, where)


def test_a_detector_that_cannot_run_at_the_manifests_size_is_refused_at_load(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    model = onnx.load(str(root / "det.onnx"))
    model.graph.node.insert(0, helper.make_node("Reshape", ["pixel_values", "fixed"], ["px_fixed"]))
    # the shape comes in as a graph input's default: not folded at load, so only a run finds it wrong
    model.graph.initializer.append(helper.make_tensor("fixed", TensorProto.INT64, [4], [1, 3, 240, 300]))
    for node in model.graph.node[1:]:
        node.input[:] = ["px_fixed" if i == "pixel_values" else i for i in node.input]
    onnx.save(model, str(root / "det.onnx"))
    _rehash(root, "vru_detector")
    bundle = load_bundle(root)
    session = load_session(bundle, "vru_detector", 1)
    with pytest.raises(BundleError, match=r"vlm.tracking.detector: files.vru_detector: .*det.onnx cannot run on "
                                          r"pixel_values \[1, 3, 240, 320\] float32"):
        Tracking(session, replace(bundle.image), SPEC, f"files.vru_detector: {bundle.file('vru_detector').path}")


def _rehash(root: Path, key: str) -> None:
    """Write the new SHA-256 of ``files.<key>`` into ``root``'s manifest (the file was rewritten)."""
    import yaml

    from tiny_node.model.bundle import hash_file

    doc = yaml.safe_load((root / "manifest.yaml").read_text())
    doc["files"][key]["sha256"] = hash_file(root / doc["files"][key]["path"])
    (root / "manifest.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def test_a_detectors_input_type_is_checked_and_fed(tmp_path: Path) -> None:
    """The detector is fed the vision encoder's pixels: a float16 encoder's are float16. Before,
    a float32 detector (or a float16 one fed float32) failed on every frame; now each gets its own type."""
    half = load_bundle(_bundle(tmp_path / "half", pixel_type=TensorProto.FLOAT16))
    full = load_bundle(_bundle(tmp_path / "full"))
    prep = ImagePreprocessor(full.image)
    a, b = Tracking.of_bundle(half, SPEC, threads=1), Tracking.of_bundle(full, SPEC, threads=1)
    for i in range(5):
        x = prep(_frame(20, 7))
        fa = a.step({"pixel_values": x}, i / 30.0, ego_speed=0.0)  # float32 pixels, float16 detector
        fb = b.step({"pixel_values": x.astype(np.float16)}, i / 30.0, ego_speed=0.0)  # and the reverse
    assert fa["vru0_present"] == fb["vru0_present"] == 1.0 and math.isclose(fa["vru0_dx"], fb["vru0_dx"])
    assert a.dtype is np.float16 and b.dtype is np.float32
    root = _bundle(tmp_path / "int", pixel_type=TensorProto.UINT8)
    with pytest.raises(BundleError, match=r"files.vru_detector: .*det.onnx: 'pixel_values' is tensor\(uint8\), "
                                          r"expected tensor\(float\) or tensor\(float16\)"):
        Tracking.of_bundle(load_bundle(root), SPEC, threads=1)


def _shipped_copy(tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "shipped"
    shutil.copytree(SHIPPED, root)
    return root


def test_the_shipped_bundle_with_a_wrong_stride_stops_the_worker_naming_the_detector(tmp_path: Path) -> None:
    """The review's reproduction: stride 8 -> 4 in the shipped manifest was 'restarting' with 17
    restarts in a few seconds (the bundle re-hashed each time); now FAILED at once, not restarted."""
    import yaml

    from tiny_node.clock import MonotonicClock
    from tiny_node.model.worker import ModelWorker, WorkerState

    root = _shipped_copy(tmp_path)
    doc = yaml.safe_load((root / "manifest.yaml").read_text())
    assert doc["vlm"]["tracking"]["stride"] == 8
    doc["vlm"]["tracking"]["stride"] = 4
    (root / "manifest.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    w = ModelWorker(root, MonotonicClock(), backoff_initial_s=0.05, backoff_max_s=0.1, warmup_runs=1,
                    rationale_max_tokens=0)
    try:
        w.start()
        assert not w.wait_ready(30.0)
        stats = w.stats()
        assert w.state is WorkerState.FAILED and stats["restarts"] == 0, stats
        error = str(stats["last_error"])
        assert "files.vru_detector: " in error and "vru_detector.onnx" in error and "must be [1, 1, 25, 70]" in error
    finally:
        w.stop()


def test_a_float16_vision_encoder_feeds_the_float32_detector(tmp_path: Path) -> None:
    """The shipped bundle with its vision encoder taking float16 pixels (as an fp16 export does):
    the same pixels, rounded to float16, reach the float32 detector. Before: every decision (and
    the worker's warm-up) failed on the detector's input type."""
    from tiny_node.model.vlm import VlmRuntime

    root = _shipped_copy(tmp_path)
    path = root / "onnx" / "vision_encoder.onnx"
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    model.graph.node.insert(0, helper.make_node("Cast", ["pixel_values"], ["pixel_values_f32"], to=TensorProto.FLOAT))
    for node in model.graph.node[1:]:
        node.input[:] = ["pixel_values_f32" if i == "pixel_values" else i for i in node.input]
    onnx.save(model, str(path))
    _rehash(root, "vision_encoder")
    half, ref = VlmRuntime(load_bundle(root), threads=1), VlmRuntime(load_bundle(SHIPPED), threads=1)
    assert half._pixel_dtype is np.float16 and half.tracking is not None
    frame = np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    feats = {"ego_speed": 8.0, "range": 12.0, "range_valid": 1.0}
    for t in (0.0, 0.05):
        got, want = half.decide(frame, feats, time_s=t), ref.decide(frame, feats, time_s=t)
        assert half.tracking.last_detector_ms > 0.0
        assert got.label == want.label and abs(got.p_brake - want.p_brake) < 0.05
    assert half.tracking.dtype is np.float32


def test_the_slots_shown_are_those_the_prompts_features_hold() -> None:
    from tiny_node.model.tracking import shown_slots

    assert shown_slots(("ego_speed", "vru0_dx", "vru0_y", "vru1_vy"), 4) == 2
    assert shown_slots(("ego_speed", "vru0_dx", "vru1_vy"), 1) == 1  # at most vlm.tracking.tracks
    assert shown_slots(("ego_speed", "range"), 2) == 0  # a prompt without track features shows none
    assert shown_slots(("vru_total", "vru2_present"), 4) == 3
