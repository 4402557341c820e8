"""Two-frame VLM bundles: the frame history, the manifest's ``vlm.frames``, the ROI preprocessing.

Real onnxruntime sessions over generated graphs (tiny_node.model.testvlm) with a two-frame
prompt; the history is driven with explicit frame times (no wall clock).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tiny_node.clock import MonotonicClock
from tiny_node.model.bundle import BundleError, FrameSpec, ImageSpec, load_bundle
from tiny_node.model.history import FrameHistory
from tiny_node.model.preprocess import ImagePreprocessor
from tiny_node.model.testvlm import make_tiny_vlm_bundle
from tiny_node.model.vlm import VlmRuntime
from tiny_node.model.worker import ModelResult, ModelWorker

CLOSE = {"ego_speed": 20.0, "range": 15.0, "range_rate": -20.0, "range_valid": 1.0}
RNG = np.random.default_rng(3)
A, B = (RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(2))


@pytest.fixture(scope="module")
def two_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_vlm_bundle(tmp_path_factory.mktemp("vlm2") / "b", frames=2)


@pytest.fixture
def rt(two_dir: Path) -> VlmRuntime:
    return VlmRuntime(load_bundle(two_dir), threads=1)


def _feats(v: float) -> np.ndarray:
    return np.full((1, 2, 4), v, np.float32)


def test_history_picks_the_frame_nearest_to_the_interval() -> None:
    h = FrameHistory(FrameSpec(2, 0.1, 0.04))
    for k in range(10):  # 30 Hz
        h.add(k / 30, _feats(k))
    got = h.pick(10 / 30)
    assert got is not None and got[0] == pytest.approx(0.1) and got[1][0, 0, 0] == 7
    h15 = FrameHistory(FrameSpec(2, 0.1, 0.04))
    for k in range(4):  # 15 Hz: 0.067 and 0.133 s back are equally near; either is within 0.04
        h15.add(k / 15, _feats(k))
    got = h15.pick(4 / 15)
    assert got is not None and (got[0] == pytest.approx(2 / 15) or got[0] == pytest.approx(1 / 15))
    assert h.pick(10 / 30 + 0.5) is None  # a gap: nothing near t - 0.1
    assert h.pick(0.0) is None  # nothing earlier than the frame itself


def test_history_restarts_when_time_goes_back_and_stays_small() -> None:
    h = FrameHistory(FrameSpec(2, 0.1, 0.04))
    for k in range(100):
        h.add(k / 30, _feats(k))
    assert len(h) <= 6  # only what a later pick can still use (0.14 s at 30 Hz)
    h.add(1.0, _feats(-1))  # stamp jump backwards
    assert len(h) == 1
    assert h.pick(1.1) is not None and h.pick(1.1)[1][0, 0, 0] == -1  # type: ignore[index]
    h.add(1.0, _feats(-2))  # a repeated time: also a restart
    assert len(h) == 1


def test_two_frame_runtime_uses_the_earlier_frame(rt: VlmRuntime) -> None:
    first = rt.decide(B, CLOSE, time_s=10.0)
    assert rt.last_prev_age_s is None  # first frame: the current one stands in
    ids = rt.prompt.ids(CLOSE)
    assert int((ids == rt.spec.image_token_id).sum()) == 2 * rt.spec.image_tokens_per_tile
    rt.reset_history()
    rt.remember(A, 20.0)
    moved = rt.decide(B, CLOSE, time_s=20.1)
    assert rt.last_prev_age_s == pytest.approx(0.1)
    assert moved.probs != first.probs  # the earlier image reaches the decoder
    # the same pair in a fresh runtime decides the same (history is the only state)
    rt.reset_history()
    rt.remember(A, 30.0)
    again = rt.decide(B, CLOSE, time_s=30.1)
    assert again.probs == moved.probs
    # no time: no history is read or written; the current frame is used for both
    rt.reset_history()
    assert rt.decide(B, CLOSE).probs == first.probs and len(rt.history) == 0


def test_two_frame_runtime_decides_a_30hz_stream_with_one_vision_run_each(rt: VlmRuntime) -> None:
    runs = 0
    real_run = rt.vision.run

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal runs
        runs += 1
        return real_run(*args, **kwargs)

    rt.vision.run = counting  # type: ignore[method-assign]
    try:
        ages = []
        for k in range(8):
            rt.decide(A if k % 2 else B, CLOSE, time_s=5.0 + k / 30)
            ages.append(rt.last_prev_age_s)
    finally:
        rt.vision.run = real_run  # type: ignore[method-assign]
    assert runs == 8
    # frames 0 and 1 have nothing 0.06-0.14 s back; frame 2 takes frame 0 (0.067 s, within the
    # 0.04 s tolerance, as a 15 Hz camera would give); then always three frames back (0.1 s)
    assert ages[:2] == [None, None] and ages[2] == pytest.approx(2 / 30)
    assert all(a == pytest.approx(0.1) for a in ages[3:])


def _edit(src: Path, dst: Path, fn: Any) -> Path:
    import shutil

    shutil.copytree(src, dst)
    path = dst / "manifest.yaml"
    doc = yaml.safe_load(path.read_text())
    fn(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dst


@pytest.mark.parametrize(("edit", "match"), [
    (lambda d: d["vlm"]["frames"].update(count=3), r"vlm\.frames\.count: 3 frames"),
    (lambda d: d["vlm"]["frames"].update(tolerance_s=0.1), r"vlm\.frames\.tolerance_s"),
    (lambda d: d["vlm"]["frames"].update(interval_s=-1), r"vlm\.frames\.interval_s"),
    (lambda d: d["vlm"]["frames"].update(rate=30), r"vlm\.frames\.rate: unknown key"),
    (lambda d: d["vlm"].update(prompt=d["vlm"]["prompt"].replace("{image_prev}", "")),
     r"vlm\.prompt: vlm\.frames\.count 2 needs \{image_prev\}"),
    (lambda d: d["vlm"].update(prompt="{image} {image_prev} {sensors}"),
     r"vlm\.prompt: \{image_prev\} must come before"),
    (lambda d: d["vlm"].pop("frames"), r"vlm\.prompt: vlm\.frames\.count 1 needs \{image_prev\} 0"),
    (lambda d: d["inputs"]["image"].update(roi=[0, 65, 0, 64]), r"inputs\.image\.roi: .* not a window"),
    (lambda d: d["inputs"]["image"].update(roi=[0, 10, 0]), r"inputs\.image\.roi: expected 4 items"),
])
def test_bad_frames_manifest_is_refused_naming_the_key(two_dir: Path, tmp_path: Path, edit: Any,
                                                       match: str) -> None:
    with pytest.raises(BundleError, match=match):
        load_bundle(_edit(two_dir, tmp_path / "b", edit))


def test_single_frame_bundle_ignores_times(tmp_path: Path) -> None:
    rt = VlmRuntime(load_bundle(make_tiny_vlm_bundle(tmp_path / "one")), threads=1)
    rt.remember(A, 1.0)
    assert len(rt.history) == 0
    assert rt.decide(B, CLOSE, time_s=1.1).probs == rt.decide(B, CLOSE).probs


def test_roi_preprocessing_normalises_only_the_window() -> None:
    spec = ImageSpec("pixel_values", 240, 320, "NCHW", "rgb", "float32", (0.5,) * 3, (0.5,) * 3, 1 / 255)
    roi = ImageSpec(**{**spec.__dict__, "roi": (90, 190, 20, 300)})
    frame = RNG.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    full, part = ImagePreprocessor(spec)(frame), ImagePreprocessor(roi)(frame)
    assert part.shape == full.shape == (1, 3, 240, 320)
    np.testing.assert_array_equal(part[..., 90:190, 20:300], full[..., 90:190, 20:300])
    assert not part[..., :90, :].any() and not part[..., 190:, :].any() and not part[..., :, :20].any()
    nhwc = ImageSpec(**{**roi.__dict__, "layout": "NHWC"})
    np.testing.assert_array_equal(ImagePreprocessor(nhwc)(frame).transpose(0, 3, 1, 2), part)


def test_worker_passes_frame_times_to_a_two_frame_model(two_dir: Path) -> None:
    w = ModelWorker(two_dir, MonotonicClock(), warmup_runs=1, rationale_max_tokens=0)
    try:
        w.start()
        assert w.wait_ready(30.0), w.stats()
        for seq, t in ((1, 0.0), (2, 0.1), (3, None)):  # None: the worker's clock now
            assert w.submit(seq, B if seq == 1 else A, CLOSE, frame_time_s=t)
            end = time.monotonic() + 10.0
            got: list[ModelResult] = []
            while not got:
                assert time.monotonic() < end, w.stats()
                got = [r for r in w.poll() if isinstance(r, ModelResult)]
                time.sleep(0.001)
            assert got[0].seq == seq and got[0].output is not None and got[0].error is None
        assert not w.submit(4, A, CLOSE, frame_time_s=float("nan"))
        assert "frame_time_s" in str(w.stats()["last_reject"])
    finally:
        w.stop()
