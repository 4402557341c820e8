"""ModelRuntime on real onnxruntime sessions over the generated test graphs."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from tiny_node.model.bundle import BundleError, ImageSpec, load_bundle, write_manifest
from tiny_node.model.preprocess import ImagePreprocessor
from tiny_node.model.runtime import ModelRuntime, session_options

GRAY = np.full((480, 640, 3), 128, np.uint8)
CLOSE = {"ego_speed": 20.0, "range": 15.0, "range_rate": -20.0, "range_valid": 1.0}
FAR = {"ego_speed": 20.0, "range": 90.0, "range_rate": -2.0, "range_valid": 1.0}
NO_TARGET = {"ego_speed": 20.0, "range": float("inf"), "range_valid": 0.0}


@pytest.fixture(scope="module")
def fast(bundles: dict[str, Path]) -> ModelRuntime:
    """``bundles`` is the session fixture in conftest.py (write_test_bundles)."""
    rt = ModelRuntime(load_bundle(bundles["fast"]))
    rt.warm_up(2)
    return rt


@pytest.fixture(scope="module")
def slow(bundles: dict[str, Path]) -> ModelRuntime:
    rt = ModelRuntime(load_bundle(bundles["slow"]))
    rt.warm_up(1)
    return rt


def test_fast_model_brakes_close_and_not_far(fast: ModelRuntime) -> None:
    close = fast.infer(fast.preprocess(GRAY, CLOSE))
    assert close.brake and close.label == "brake" and close.confidence > 0.99
    far = fast.infer(fast.preprocess(GRAY, FAR))
    assert not far.brake and far.label == "no_brake" and far.confidence > 0.99
    none = fast.infer(fast.preprocess(GRAY, NO_TARGET))
    assert not none.brake
    assert sum(close.probs) == pytest.approx(1.0)


def test_darkness_tips_a_borderline_case(fast: ModelRuntime) -> None:
    border = {"ego_speed": 20.0, "range": 40.5, "range_valid": 1.0}  # f = -0.25 + dark
    bright = fast.infer(fast.preprocess(np.full((64, 64, 3), 255, np.uint8), border))
    dark = fast.infer(fast.preprocess(np.zeros((64, 64, 3), np.uint8), border))
    assert not bright.brake and dark.brake


def test_preprocess_shapes_mono_and_values(fast: ModelRuntime) -> None:
    feeds = fast.preprocess(GRAY, CLOSE)
    assert feeds["image"].shape == (1, 3, 64, 64) and feeds["image"].dtype == np.float32
    assert feeds["image"].flags["C_CONTIGUOUS"]
    assert feeds["sensors"].tolist() == [[20.0, 15.0, -20.0, 1.0]]
    mono = fast.preprocess(np.full((480, 640), 128, np.uint8), CLOSE)
    np.testing.assert_allclose(mono["image"], feeds["image"])
    white = fast.preprocess(np.full((10, 10, 3), 255, np.uint8), CLOSE)["image"]
    np.testing.assert_allclose(white, 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        fast.preprocess(GRAY.astype(np.float32), CLOSE)  # type: ignore[arg-type]


def test_preprocess_bgr_nhwc_mono_layouts() -> None:
    base = ImageSpec("im", 2, 2, "NHWC", "bgr", "float32", (0.0,) * 3, (1.0,) * 3, 1.0)
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 10  # red
    out = ImagePreprocessor(base)(rgb)
    assert out.shape == (1, 2, 2, 3) and out[0, 0, 0].tolist() == [0.0, 0.0, 10.0]
    mono = dataclasses.replace(base, color="mono", layout="NCHW", mean=(0.0,), std=(1.0,))
    assert ImagePreprocessor(mono)(rgb).shape == (1, 1, 2, 2)


def test_session_options_from_manifest(fast: ModelRuntime) -> None:
    so = session_options(fast.bundle.runtime, threads=2)
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert so.get_session_config_entry("session.dynamic_block_base") == "4"
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_graph_io_must_match_manifest(bundles: dict[str, Path], tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(bundles["fast"], tmp_path / "b"))
    data = yaml.safe_load((bundle / "manifest.yaml").read_text())
    data["inputs"]["image"]["name"] = "pixels"
    write_manifest(bundle, name="x", files={"model": "model.onnx"}, inputs=data["inputs"],
                   outputs=data["outputs"], latency_budget_ms=5.0)
    with pytest.raises(BundleError, match=r"inputs\.image\.name: .* no input 'pixels'"):
        ModelRuntime(load_bundle(bundle))
    data["inputs"]["image"]["name"] = "image"
    data["inputs"]["image"]["height"] = 32
    write_manifest(bundle, name="x", files={"model": "model.onnx"}, inputs=data["inputs"],
                   outputs=data["outputs"], latency_budget_ms=5.0)
    with pytest.raises(BundleError, match=r"'image' has shape \[1, 3, 64, 64\]"):
        ModelRuntime(load_bundle(bundle))


def test_not_an_onnx_file(bundles: dict[str, Path], tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(bundles["fast"], tmp_path / "b"))
    (bundle / "model.onnx").write_bytes(b"garbage")
    data = yaml.safe_load((bundle / "manifest.yaml").read_text())
    write_manifest(bundle, name="x", files={"model": "model.onnx"}, inputs=data["inputs"],
                   outputs=data["outputs"], latency_budget_ms=5.0)
    with pytest.raises(BundleError, match="onnxruntime cannot load"):
        ModelRuntime(load_bundle(bundle))


def test_slow_model_same_contract(slow: ModelRuntime) -> None:
    assert slow.infer(slow.preprocess(GRAY, CLOSE)).brake
    assert not slow.infer(slow.preprocess(GRAY, FAR)).brake
    assert len(slow.session.get_providers()) == 1


def test_terminate_cancels_slow_run_within_tens_of_ms(slow: ModelRuntime) -> None:
    feeds = slow.preprocess(GRAY, CLOSE)
    t0 = time.perf_counter()
    slow.infer(feeds)
    full_ms = (time.perf_counter() - t0) * 1e3
    ro = ort.RunOptions()
    set_at: list[float] = []

    def terminate() -> None:
        ro.terminate = True
        set_at.append(time.perf_counter())

    timer = threading.Timer(0.02, terminate)
    t0 = time.perf_counter()
    timer.start()
    with pytest.raises(Exception, match="terminate"):
        slow.infer(feeds, ro)
    t1 = time.perf_counter()
    timer.join()
    cancel_ms = (t1 - set_at[0]) * 1e3
    total_ms = (t1 - t0) * 1e3
    t0 = time.perf_counter()
    slow.infer(feeds)
    full_ms = max(full_ms, (time.perf_counter() - t0) * 1e3)  # the slow model's size was timed once, at start
    print(f"slow full run {full_ms:.1f} ms; cancelled after {total_ms:.1f} ms, "
          f"terminate->return {cancel_ms:.2f} ms")
    # relative to a full run on this CPU now, not fixed figures (one failed under load: the chain,
    # sized at start, ran in 72 ms); the latency figures themselves are the benchmark's
    assert cancel_ms < 100.0
    assert total_ms < 0.6 * full_ms, (total_ms, full_ms)


def symbolic_classifier(bundle: Path, height: int, width: int, flatten_for: int = 0) -> Path:
    """A graph with symbolic H, W: logits = the channel mean of each pixel ([1, H*W]), or with
    ``flatten_for`` a head over the flattened image that runs at that square size only."""
    from onnx import TensorProto, helper, numpy_helper

    bundle.mkdir()
    if flatten_for:
        nodes = [helper.make_node("Flatten", ["image"], ["flat"], axis=1),
                 helper.make_node("MatMul", ["flat", "w"], ["logits"])]
        inits = [numpy_helper.from_array(np.zeros((3 * flatten_for**2, 2), np.float32), "w")]
    else:
        nodes = [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1], keepdims=0),
                 helper.make_node("Flatten", ["mean"], ["logits"], axis=1)]
        inits = []
    graph = helper.make_graph(
        nodes, "symbolic", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "labels"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (bundle / "model.onnx").write_bytes(model.SerializeToString())
    image = {"name": "image", "height": height, "width": width, "layout": "NCHW", "color": "rgb",
             "dtype": "float32", "mean": [0.5] * 3, "std": [0.5] * 3, "scale": 1 / 255}
    decision = {"name": "logits", "kind": "softmax", "labels": ["no_brake", "brake"],
                "brake_label": "brake", "threshold": 0.5}
    write_manifest(bundle, name="symbolic", files={"model": "model.onnx"}, inputs={"image": image},
                   outputs={"decision": decision}, latency_budget_ms=5.0)
    return bundle


def test_a_graph_that_cannot_run_at_the_manifest_shapes_is_a_bad_bundle(tmp_path: Path) -> None:
    """Symbolic dims pass the I/O check; the load-time run must name the file (a bad bundle: the
    worker fails once), not fail at warm-up (a worker restarted forever) or on every frame."""
    assert ModelRuntime(load_bundle(symbolic_classifier(tmp_path / "ok", 16, 16, flatten_for=16))).decide(GRAY, {})
    with pytest.raises(BundleError, match=r"inputs: .*model.onnx cannot run on image \[1, 3, 32, 32\]"):
        ModelRuntime(load_bundle(symbolic_classifier(tmp_path / "size", 32, 32, flatten_for=16)))
    assert ModelRuntime(load_bundle(symbolic_classifier(tmp_path / "two", 1, 2))).decide(GRAY, {})
    with pytest.raises(BundleError, match=r"outputs.decision: .*'logits' gives \[1, 3\].*reads \[1, 2\]"):
        ModelRuntime(load_bundle(symbolic_classifier(tmp_path / "three", 1, 3)))


def test_a_graphs_own_session_config_is_not_read_whatever_the_environment(
        bundles: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ORT_LOAD_CONFIG_FROM_MODEL=1 set, a graph's ort_config metadata replaced the manifest's
    session options: it switched profiling on (a file in the working directory) and set its own
    thread counts (security review). The manifest's options are the only ones."""
    import hashlib
    import json

    import onnx

    from tiny_node.model.runtime import load_session

    bundle = Path(shutil.copytree(bundles["fast"], tmp_path / "b"))
    graph = onnx.load(bundle / "model.onnx")
    onnx.helper.set_model_props(graph, {"ort_config": json.dumps(
        {"session_options": {"enable_profiling": 1, "intra_op_num_threads": 2}})})
    onnx.save(graph, bundle / "model.onnx")
    manifest = yaml.safe_load((bundle / "manifest.yaml").read_text())
    manifest["files"]["model"]["sha256"] = hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()
    (bundle / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    monkeypatch.setenv("ORT_LOAD_CONFIG_FROM_MODEL", "1")
    monkeypatch.chdir(tmp_path)
    sess = load_session(load_bundle(bundle), "model")
    sess.run(None, {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
                    for i in sess.get_inputs()})
    sess.end_profiling()
    assert not list(tmp_path.glob("onnxruntime_profile_*.json"))
