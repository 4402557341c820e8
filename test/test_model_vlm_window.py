"""The image window (``inputs.image.roi``) of a VLM bundle with tracking: the detector's, not the encoder's.

Review finding 2: ``vlm.tracking`` needs ``inputs.image.roi`` (the detector's grid window); the
preprocessor zeroed everything outside it, and the vision encoder got that same tensor. The
factory's encoder crops the window in-graph, so it never noticed; a published SmolVLM encoder
reads the whole 512 x 512 tile and saw mid-grey (0 after normalisation) in 62 % of it.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
import yaml
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from tiny_node.model.bundle import ImageSpec, load_bundle, write_manifest
from tiny_node.model.preprocess import ImagePreprocessor
from tiny_node.model.testvlm import make_tiny_vlm_bundle
from tiny_node.model.vlm import IMAGE_FEATURES, PIXEL_VALUES, VlmRuntime

SHIPPED = Path(__file__).resolve().parent.parent / "tiny_node" / "data" / "default_model"
ROI = (256, 448, 0, 512)  # the road in a 512 x 512 tile, as the review's bundle
STRIDE = 8
RNG = np.random.default_rng(7)


def _detector(path: Path, roi: tuple[int, int, int, int], size: int) -> tuple[int, int]:
    """A detector of bright cells (grey mean > 191) inside ``roi`` of a ``size`` x ``size`` tile; its grid."""
    r0, r1, c0, c1 = roi
    grid = (-(-(r1 - r0) // STRIDE), -(-(c1 - c0) // STRIDE))
    nodes = [helper.make_node("Slice", ["pixel_values", "st", "en", "ax"], ["crop"]),
             helper.make_node("ReduceMean", ["crop"], ["grey"], axes=[1], keepdims=1),
             helper.make_node("AveragePool", ["grey"], ["cells"], kernel_shape=[STRIDE, STRIDE],
                              strides=[STRIDE, STRIDE], ceil_mode=1),
             helper.make_node("Mul", ["cells", "gain"], ["scaled"]),
             helper.make_node("Sub", ["scaled", "bias"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["heat"]),
             helper.make_node("Identity", ["half"], ["offset"])]
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             (("st", [r0, c0]), ("en", [r1, c1]), ("ax", [2, 3]))]
    inits += [numpy_helper.from_array(np.array(20.0, np.float32), "gain"),
              numpy_helper.from_array(np.array(10.0, np.float32), "bias"),
              numpy_helper.from_array(np.full((1, 2, *grid), 0.5, np.float32), "half")]
    graph = helper.make_graph(nodes, "bright_cells",
                              [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("heat", TensorProto.FLOAT, [1, 1, *grid]),
                               helper.make_tensor_value_info("offset", TensorProto.FLOAT, [1, 2, *grid])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return grid


@pytest.fixture(scope="module")
def smol_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The SmolVLM-layout test bundle, and a copy with a detector over the road window (its prompt unchanged)."""
    root = tmp_path_factory.mktemp("smol")
    plain = make_tiny_vlm_bundle(root / "plain", smolvlm=True)
    tracked = root / "tracked"
    shutil.copytree(plain, tracked)
    _detector(tracked / "onnx" / "vru_detector.onnx", ROI, 512)
    doc = yaml.safe_load((tracked / "manifest.yaml").read_text())
    doc["inputs"]["image"]["roi"] = list(ROI)
    doc["vlm"]["tracking"] = {"detector": "vru_detector", "tracks": 2, "min_score": 0.5, "sigma_px": 1.0,
                              "stride": STRIDE}
    write_manifest(tracked, name="smol+tracking", kind="vlm", latency_budget_ms=doc["latency_budget_ms"],
                   files={k: v["path"] for k, v in doc["files"].items()} | {"vru_detector": "onnx/vru_detector.onnx"},
                   inputs=doc["inputs"], outputs=doc["outputs"], vlm=doc["vlm"], runtime=doc["runtime"])
    return {"plain": plain, "tracked": tracked}


def _spy_pixels(rt: VlmRuntime) -> list[NDArray[Any]]:
    """Record every ``pixel_values`` the vision encoder is fed."""
    seen: list[NDArray[Any]] = []
    run = rt.vision.run

    def spy(names: Any, feeds: dict[str, NDArray[Any]], *rest: Any) -> Any:
        seen.append(feeds[PIXEL_VALUES].copy())
        return run(names, feeds, *rest)

    rt.vision.run = spy  # type: ignore[method-assign]
    return seen


def test_a_smolvlm_encoder_with_a_detector_window_sees_the_whole_tile(smol_dirs: dict[str, Path]) -> None:
    """Before: rows 0..255 of the tile zero (grey) for the encoder, and a decision other than the
    same export's without tracking. Now the encoder gets the whole frame, and decides as without it."""
    plain = VlmRuntime(load_bundle(smol_dirs["plain"]), threads=1)
    tracked = VlmRuntime(load_bundle(smol_dirs["tracked"]), threads=1)
    assert tracked.tracking is not None and tracked.bundle.image.roi == ROI
    seen = _spy_pixels(tracked)
    frame = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    feats = {"ego_speed": 8.0, "range": 30.0, "range_valid": 1.0}
    got, want = tracked.decide(frame, feats, time_s=0.0), plain.decide(frame, feats)
    whole = ImagePreprocessor(replace(tracked.bundle.image, roi=None))(frame)
    assert got.probs == want.probs and got.label == want.label
    np.testing.assert_array_equal(seen[0][:, 0], whole)
    assert (seen[0][0, 0, :, :ROI[0]] != 0).mean() > 0.99  # the sky is the frame's, not grey
    assert tracked.last_ms["detector"] > 0.0


def test_the_detector_still_reads_its_window_only(smol_dirs: dict[str, Path]) -> None:
    """A bright block in the window is a detection where it is; one above the window is none."""
    rt = VlmRuntime(load_bundle(smol_dirs["tracked"]), threads=1)
    assert rt.tracking is not None
    for row, want in ((304, 1), (104, 0)):  # tile rows (cell-aligned): in the road window, in the sky
        frame = np.full((512, 512, 3), 60, np.uint8)
        frame[row:row + STRIDE, 200:200 + STRIDE] = 255
        points = rt.tracking.points(rt._detector_pixels(rt._pixels(frame)))
        assert len(points) == want
        if want:
            assert points[0][:2] == (200 + 0.5 * STRIDE, row + 0.5 * STRIDE)


def test_the_shipped_graphs_read_only_the_window_so_its_decisions_did_not_move() -> None:
    """The factory's encoder and detector crop ``inputs.image.roi`` in-graph: what lies outside
    cannot reach a decision, so the whole frame (now) and the zeroed one (before) decide alike."""
    rt = VlmRuntime(load_bundle(SHIPPED), threads=1)
    assert rt.tracking is not None and rt.bundle.image.roi is not None
    r0, r1, c0, c1 = rt.bundle.image.roi
    frame = RNG.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    other = RNG.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    other[r0:r1, c0:c1] = frame[r0:r1, c0:c1]  # the same window, another world around it
    zeroed = ImagePreprocessor(rt.bundle.image)(frame)
    outs = []
    for pixels in (rt._pixels(frame), rt._pixels(other), {PIXEL_VALUES: zeroed}):
        (feats,) = rt.vision.run([IMAGE_FEATURES], pixels)
        heat, off = rt.tracking.session.run(["heat", "offset"], rt._detector_pixels(pixels))
        outs.append((feats.tobytes(), heat.tobytes(), off.tobytes()))
    assert outs[0] == outs[1] == outs[2]
    assert not np.array_equal(rt._pixels(frame)[PIXEL_VALUES], zeroed)  # the tensors did differ


@pytest.mark.parametrize("color", ["rgb", "bgr", "mono"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("roi", [None, (3, 40, 5, 61)])
def test_the_normalising_table_is_the_multiply_add_bit_for_bit(color: str, layout: str,
                                                               roi: tuple[int, int, int, int] | None) -> None:
    """The preprocessor looks every pixel up in a table of ``(v * scale - mean) / std``, as folded
    before (one float32 multiply, one add): every tensor must be the very same bytes."""
    n = 1 if color == "mono" else 3
    spec = ImageSpec("x", 48, 64, layout, color, "float32", tuple(RNG.uniform(0.2, 0.8, n)),
                     tuple(RNG.uniform(0.1, 0.9, n)), 1 / 255, roi)
    std = np.asarray(spec.std, np.float32)
    mul = (np.float32(spec.scale) / std).astype(np.float32)
    add = (-np.asarray(spec.mean, np.float32) / std).astype(np.float32)
    codes = {"bgr": cv2.COLOR_RGB2BGR, "mono": cv2.COLOR_RGB2GRAY}
    every_value = np.repeat(np.arange(256, dtype=np.uint8), 12)[:, None].repeat(3, 1).reshape(48, 64, 3)
    for frame in (RNG.integers(0, 256, (96, 128, 3), dtype=np.uint8), every_value):
        img = cv2.resize(frame, (64, 48), interpolation=cv2.INTER_AREA) if frame.shape[0] != 48 else frame
        img = cv2.cvtColor(img, codes[color]) if color in codes else img
        want = img.reshape(48, 64, n).astype(np.float32) * mul + add  # the multiply-add of before
        if roi is not None:
            inside = np.zeros((48, 64, 1), bool)
            inside[roi[0]:roi[1], roi[2]:roi[3]] = True
            want = np.where(inside, want, np.float32(0.0))
        want = want.transpose(2, 0, 1)[None] if layout == "NCHW" else want[None]
        got = ImagePreprocessor(spec)(frame)
        assert got.dtype == np.float32 and got.shape == spec.shape
        assert got.tobytes() == np.ascontiguousarray(want, np.float32).tobytes()
