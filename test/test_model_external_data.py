"""Graphs that keep their weights in ONNX external data (``*.onnx_data``): manifest, verification, loading.

Real graphs saved by ``onnx.save_model(..., save_as_external_data=True)`` at the lowest IR version
their opset needs (as the generated test bundles), real onnxruntime sessions.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import _get_all_tensors, uses_external_data

from tiny_node.model.bundle import MAX_DATA_BYTES, Bundle, BundleError, hash_file, load_bundle, write_manifest
from tiny_node.model.onnx_external import MAIN_INITIALIZER, ExternalDataError, external_tensors
from tiny_node.model.runtime import ModelRuntime, load_session
from tiny_node.model.testmodels import make_fast_bundle
from tiny_node.model.testvlm import make_tiny_vlm_bundle
from tiny_node.model.vlm import VlmRuntime

DATA = "mixed.onnx_data"
X = np.array([[0.5, -1.0, 2.0, 3.0]], np.float32)
FRAME = np.full((480, 640, 3), 128, np.uint8)
CLOSE = {"ego_speed": 20.0, "range": 15.0, "range_rate": -20.0, "range_valid": 1.0}
FAR = {"ego_speed": 20.0, "range": 90.0, "range_rate": -2.0, "range_valid": 1.0}


def mixed_graph(subgraph: bool = False, constant: bool = False) -> onnx.ModelProto:
    """y = (x @ w + float(b))[:, idx]: float32, float16 (6 bytes, so the int64 after it is misaligned), int64.

    ``subgraph``: also z = If(cond, y + c, y) with ``c`` an initializer of the then-branch;
    ``constant``: also a Constant node (a tensor attribute) added to y.
    """
    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(3).astype(np.float16), "b"),
             numpy_helper.from_array(np.array([2, 0], np.int64), "idx")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["m", "bf"], ["a"]),
             helper.make_node("Gather", ["a", "idx"], ["g"], axis=1)]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])]
    if constant:
        k = numpy_helper.from_array(np.full((1, 2), 0.25, np.float32), "k")
        nodes += [helper.make_node("Constant", [], ["kc"], value=k), helper.make_node("Add", ["g", "kc"], ["y"])]
    else:
        nodes.append(helper.make_node("Identity", ["g"], ["y"]))
    if subgraph:
        c = numpy_helper.from_array(np.full((1, 2), 5.0, np.float32), "c")
        then = helper.make_graph([helper.make_node("Add", ["y", "c"], ["t"])], "then", [],
                                 [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 2])], [c])
        other = helper.make_graph([helper.make_node("Identity", ["y"], ["e"])], "else", [],
                                  [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 2])])
        nodes.append(helper.make_node("If", ["cond"], ["z"], then_branch=then, else_branch=other))
        ins.append(helper.make_tensor_value_info("cond", TensorProto.BOOL, []))
        outs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2]))
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(helper.make_graph(nodes, "mixed", ins, outs, inits), opset_imports=opsets)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model


def save_external(model: onnx.ModelProto, path: Path, location: str, size_threshold: int = 0, **kw: Any) -> None:
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=size_threshold, **kw)


def rewrite(bundle: Path, files: dict[str, str] | None = None) -> None:
    """Re-hash the manifest (its other sections kept) with ``files`` (default: as it is)."""
    doc = yaml.safe_load((bundle / "manifest.yaml").read_text())
    files = files or {k: v["path"] for k, v in doc["files"].items()}
    write_manifest(bundle, name=doc["name"], kind=doc["kind"], files=files, inputs=doc["inputs"],
                   outputs=doc["outputs"], latency_budget_ms=doc["latency_budget_ms"], runtime=doc["runtime"],
                   vlm=doc.get("vlm"))


def edit_manifest(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = bundle / "manifest.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def load_error(bundle: Path, key: str | None = None) -> str:
    with pytest.raises(BundleError) as info:
        b = load_bundle(bundle)
        if key is not None:
            load_session(b, key)
    return str(info.value)


def run(session: ort.InferenceSession) -> np.ndarray:
    return np.asarray(session.run(["y"], {"x": X})[0])


@pytest.fixture(scope="module")
def fast_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fast_bundle(tmp_path_factory.mktemp("ext") / "fast")


@pytest.fixture
def bundle(fast_src: Path, tmp_path: Path) -> Path:
    """The fast classifier bundle plus ``mixed.onnx`` (files.mixed) saved with its tensors in mixed.onnx_data."""
    root = Path(shutil.copytree(fast_src, tmp_path / "b"))
    save_external(mixed_graph(), root / "mixed.onnx", DATA)
    rewrite(root, {"model": "model.onnx", "mixed": "mixed.onnx"})
    return root


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The mixed graph's output, saved as one file and loaded by onnxruntime itself."""
    sess = ort.InferenceSession(mixed_graph().SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(["y"], {"x": X})[0])


# -- the graph scan ---------------------------------------------------------------------
@pytest.mark.parametrize(("subgraph", "constant"), [(False, False), (True, False), (False, True)])
def test_the_scan_finds_what_onnx_finds(tmp_path: Path, subgraph: bool, constant: bool) -> None:
    save_external(mixed_graph(subgraph, constant), tmp_path / "g.onnx", "g.onnx_data", convert_attribute=constant)
    raw = (tmp_path / "g.onnx").read_bytes()
    ref = onnx.load_model_from_string(raw)
    expect = {}
    for t in _get_all_tensors(ref):
        if uses_external_data(t):
            info = {e.key: e.value for e in t.external_data}
            expect[t.name] = (info["location"], int(info["offset"]), int(info["length"]), tuple(t.dims), t.data_type)
    found = external_tensors(raw)
    assert {t.name: (t.location, t.offset, t.length, t.dims, t.data_type) for t in found} == expect
    assert len(found) == 3 + subgraph + constant
    where = {t.name: t.where for t in found}
    assert {where[n] for n in ("w", "b", "idx")} == {MAIN_INITIALIZER}
    if subgraph:
        assert where["c"] == "an initializer of a subgraph"
    if constant:
        assert where["k"] == "a node attribute"
    assert external_tensors(mixed_graph(subgraph, constant).SerializeToString()) == []  # one file: none


def test_the_scan_refuses_what_is_no_onnx_model(tmp_path: Path) -> None:
    with pytest.raises(ExternalDataError, match="not an ONNX model"):
        external_tensors(b"garbage naming a location")
    save_external(mixed_graph(), tmp_path / "g.onnx", "g.onnx_data")
    with pytest.raises(ExternalDataError, match="not an ONNX model"):
        external_tensors((tmp_path / "g.onnx").read_bytes()[:-3])


@pytest.mark.parametrize("where", ["initializer", "subgraph", "attribute", "sparse"])
def test_a_graph_naming_no_location_has_no_external_data_onnxruntime_would_read(where: str) -> None:
    # The scan skips graphs without the bytes b"location" (and the onnx import with them): sound
    # only while onnxruntime refuses an EXTERNAL tensor that names no location, wherever it sits
    g = mixed_graph(subgraph=where == "subgraph", constant=where == "attribute")
    if where == "initializer":
        t = g.graph.initializer[0]
    elif where == "subgraph":
        (branch,) = (a.g for n in g.graph.node for a in n.attribute if a.name == "then_branch")
        t = branch.initializer[0]
    elif where == "attribute":
        (t,) = (a.t for n in g.graph.node if n.op_type == "Constant" for a in n.attribute)
    else:
        w = numpy_helper.to_array(g.graph.initializer.pop(0))
        g.graph.sparse_initializer.append(helper.make_sparse_tensor(
            numpy_helper.from_array(w.ravel(), "w"), numpy_helper.from_array(np.arange(w.size), "w_idx"), w.shape))
        t = g.graph.sparse_initializer[0].values
    t.ClearField("raw_data")
    t.data_location = onnx.TensorProto.EXTERNAL
    raw = g.SerializeToString()
    assert b"location" not in raw and external_tensors(raw) == []
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    with pytest.raises(Exception, match=r"Missing 'location'|doesn't have a location"):
        ort.InferenceSession(raw, so, providers=["CPUExecutionProvider"])


# -- manifest ---------------------------------------------------------------------------
def test_write_manifest_lists_and_hashes_the_data_file(bundle: Path) -> None:
    doc = yaml.safe_load((bundle / "manifest.yaml").read_text())
    assert doc["files"]["mixed"] == {"path": "mixed.onnx", "sha256": hash_file(bundle / "mixed.onnx"),
                                     "data": [{"path": DATA, "sha256": hash_file(bundle / DATA)}]}
    assert set(doc["files"]["model"]) == {"path", "sha256"}  # a one-file graph: as before
    entry = load_bundle(bundle).file("mixed")
    assert [(d.key, d.rel, d.path, d.max_bytes) for d in entry.data] == \
        [("mixed.data[0]", DATA, (bundle / DATA).resolve(), MAX_DATA_BYTES)]


def test_data_paths_are_relative_to_the_bundle_in_a_subdirectory(bundle: Path) -> None:
    (bundle / "onnx").mkdir()
    save_external(mixed_graph(), bundle / "onnx" / "mixed.onnx", "mixed.onnx_data")
    rewrite(bundle, {"model": "model.onnx", "mixed": "onnx/mixed.onnx"})
    doc = yaml.safe_load((bundle / "manifest.yaml").read_text())
    assert [d["path"] for d in doc["files"]["mixed"]["data"]] == ["onnx/mixed.onnx_data"]
    assert load_bundle(bundle).file("mixed").data[0].path == (bundle / "onnx" / "mixed.onnx_data").resolve()


@pytest.mark.parametrize(("change", "expect"), [
    (lambda d: d.update(size=1), "files.mixed.data[0].size: unknown key"),
    (lambda d: d.update(sha256="ABC"), "files.mixed.data[0].sha256: expected 64 lowercase hex, got 'ABC'"),
    (lambda d: d.update(path="../x.onnx_data"), "files.mixed.data[0].path: '../x.onnx_data' escapes the bundle dir"),
    (lambda d: d.update(path="/etc/passwd"), "files.mixed.data[0].path: '/etc/passwd' escapes"),
    (lambda d: d.pop("sha256"), "files.mixed.data[0].sha256: missing key"),
])
def test_a_bad_data_entry_is_named(bundle: Path, change: Callable[[dict[str, Any]], None], expect: str) -> None:
    edit_manifest(bundle, lambda m: change(m["files"]["mixed"]["data"][0]))
    assert expect in load_error(bundle)


def test_the_data_list_is_checked_as_a_whole(bundle: Path) -> None:
    edit_manifest(bundle, lambda m: m["files"]["mixed"].update(data=[]))
    assert "files.mixed.data: expected a non-empty list" in load_error(bundle)
    edit_manifest(bundle, lambda m: m["files"]["mixed"].update(data=["mixed.onnx_data"]))
    assert "files.mixed.data[0]: expected a mapping {path, sha256}" in load_error(bundle)
    entry = {"path": DATA, "sha256": hash_file(bundle / DATA)}
    edit_manifest(bundle, lambda m: m["files"]["mixed"].update(data=[entry, {**entry, "path": f"./{DATA}"}]))
    assert "files.mixed.data[1].path: './mixed.onnx_data' is listed already (data[0])" in load_error(bundle)
    edit_manifest(bundle, lambda m: m["files"].update(
        mixed={"path": "mixed.onnx", "sha256": hash_file(bundle / "mixed.onnx"), "data": [entry]},
        tokenizer={"path": "mixed.onnx", "sha256": hash_file(bundle / "mixed.onnx"), "data": [entry]}))
    assert "files.tokenizer.data: only a graph keeps ONNX external data" in load_error(bundle)


# -- verification -----------------------------------------------------------------------
def test_a_tampered_data_file_is_refused_naming_it_and_both_digests(bundle: Path) -> None:
    expected = hash_file(bundle / DATA)
    raw = bytearray((bundle / DATA).read_bytes())
    raw[5] ^= 0x01
    (bundle / DATA).write_bytes(raw)
    actual = hashlib.sha256(raw).hexdigest()
    msg = load_error(bundle)
    assert f"files.mixed.data[0]: checksum mismatch for {(bundle / DATA).resolve()}" in msg
    assert f"manifest expects sha256 '{expected}', file has '{actual}'" in msg


def test_a_data_file_changed_after_load_is_refused_before_it_runs(bundle: Path) -> None:
    b = load_bundle(bundle)
    raw = bytearray((bundle / DATA).read_bytes())
    raw[-1] ^= 0x80
    (bundle / DATA).write_bytes(raw)
    with pytest.raises(BundleError, match=r"files\.mixed\.data\[0\]: checksum mismatch"):
        load_session(b, "mixed")


def test_a_listed_data_file_that_is_missing(bundle: Path) -> None:
    (bundle / DATA).unlink()
    assert f"files.mixed.data[0]: file missing: {(bundle / DATA).resolve()}" in load_error(bundle)


def test_a_data_file_over_its_limit_is_refused_before_it_is_hashed_or_read(bundle: Path) -> None:
    b = load_bundle(bundle)
    os.truncate(bundle / DATA, MAX_DATA_BYTES + 1)  # sparse: no disk used
    msg = load_error(bundle)
    assert f"files.mixed.data[0]: {(bundle / DATA).resolve()} is {MAX_DATA_BYTES + 1} bytes: at most " \
           f"{MAX_DATA_BYTES}" in msg
    with pytest.raises(BundleError, match=rf"is {MAX_DATA_BYTES + 1} bytes: at most"):
        load_session(b, "mixed")  # grown after load: refused from its size, not read


# -- loading ----------------------------------------------------------------------------
def test_a_graph_with_external_data_gives_what_the_one_file_graph_gives(bundle: Path, reference: np.ndarray) -> None:
    assert np.array_equal(run(load_session(load_bundle(bundle), "mixed")), reference)


def test_onnxruntime_never_opens_the_data_file_and_keeps_no_reference_to_our_buffers(
        bundle: Path, reference: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes run are those hashed: the file is gone before the session is built, and the buffers
    handed over are zeroed after it (onnxruntime copied them; if it ever used them in place, this
    fails here and not as weights freed under a running model)."""
    b = load_bundle(bundle)
    read = Bundle.read_verified_data
    handed: list[bytearray] = []

    def read_then_remove(self: Bundle, key: str) -> list[bytearray]:
        out = read(self, key)
        handed.extend(out)
        (bundle / DATA).rename(bundle.parent / "away")
        return out

    monkeypatch.setattr(Bundle, "read_verified_data", read_then_remove)
    monkeypatch.chdir(bundle.parent)
    session = load_session(b, "mixed")
    assert len(handed) == 1 and len(handed[0]) == (bundle.parent / "away").stat().st_size
    handed[0][:] = bytes(len(handed[0]))
    assert np.array_equal(run(session), reference)


def test_a_classifier_with_external_data_decides_as_the_one_file_one(bundle: Path) -> None:
    ext = bundle.parent / "ext"
    shutil.copytree(bundle, ext)
    save_external(onnx.load(ext / "model.onnx"), ext / "model.onnx", "model.onnx_data")
    rewrite(ext, {"model": "model.onnx"})
    assert [d.rel for d in load_bundle(ext).file("model").data] == ["model.onnx_data"]
    one, two = ModelRuntime(load_bundle(bundle)), ModelRuntime(load_bundle(ext))
    for feats in (CLOSE, FAR):
        a, b = one.decide(FRAME, feats), two.decide(FRAME, feats)
        assert a.brake == b.brake and a.probs == pytest.approx(b.probs, abs=1e-6)
    assert one.decide(FRAME, CLOSE).brake and not one.decide(FRAME, FAR).brake


def test_a_data_file_the_manifest_does_not_list_is_refused(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the check, onnxruntime reads it from the working directory, unverified (optimisations off)."""
    edit_manifest(bundle, lambda m: m["files"]["mixed"].pop("data"))
    edit_manifest(bundle, lambda m: m["runtime"].update(graph_optimization_level="disable"))
    monkeypatch.chdir(bundle)
    msg = load_error(bundle, "mixed")
    assert f"files.mixed: {(bundle / 'mixed.onnx').resolve()} keeps tensor 'w' in '{DATA}'" in msg
    assert "which files.mixed.data does not list (it lists nothing)" in msg
    shutil.copy(bundle / DATA, bundle / "other.onnx_data")
    edit_manifest(bundle, lambda m: m["files"]["mixed"].update(
        data=[{"path": "other.onnx_data", "sha256": hash_file(bundle / "other.onnx_data")}]))
    assert "does not list (it lists 'other.onnx_data')" in load_error(bundle, "mixed")


def test_a_listed_data_file_no_tensor_uses_is_refused(bundle: Path) -> None:
    entry = {"path": DATA, "sha256": hash_file(bundle / DATA)}
    edit_manifest(bundle, lambda m: m["files"]["model"].update(data=[entry]))
    msg = load_error(bundle, "model")
    assert f"files.model.data[0]: no tensor of {(bundle / 'model.onnx').resolve()} keeps its data in" in msg


def set_external(path: Path, name: str, **info: str) -> None:
    """Change one tensor's external_data entries in the graph file (its data file untouched)."""
    model = onnx.load(path, load_external_data=False)
    (tensor,) = (t for t in model.graph.initializer if t.name == name)
    for e in tensor.external_data:
        if e.key in info:
            e.value = info[e.key]
    onnx.save_model(model, path)


def test_a_location_outside_the_bundle_is_refused(bundle: Path) -> None:
    shutil.copy(bundle / DATA, bundle.parent / "x.onnx_data")
    set_external(bundle / "mixed.onnx", "w", location="../x.onnx_data")
    with pytest.raises(BundleError, match=r"tensor 'w' keeps its data in '\.\./x\.onnx_data', outside the graph's"):
        rewrite(bundle)  # the writer refuses to list it
    edit_manifest(bundle, lambda m: m["files"]["mixed"].update(sha256=hash_file(bundle / "mixed.onnx")))
    msg = load_error(bundle, "mixed")
    assert "files.mixed: " in msg and "'../x.onnx_data', outside the graph's directory" in msg


@pytest.mark.parametrize(("info", "expect"), [
    ({"offset": str(10**6)}, "tensor 'w' at offset 1000000, 48 bytes, runs past the end of the file (70 bytes)"),
    ({"offset": "60"}, "tensor 'w' at offset 60, 48 bytes, runs past the end of the file (70 bytes)"),
    ({"length": "4800"}, "tensor 'w' has length 4800, but float32 [4, 3] takes 48 bytes"),
    ({"offset": "-1"}, "tensor 'w': external_data offset '-1' is not a whole number"),  # named by the scan
])
def test_an_offset_or_length_beyond_the_data_file_is_refused(bundle: Path, info: dict[str, str],
                                                             expect: str) -> None:
    set_external(bundle / "mixed.onnx", "w", **info)
    rewrite(bundle)
    msg = load_error(bundle, "mixed")
    assert expect in msg and "mixed" in msg
    if "offset" in info and info["offset"] != "-1":
        assert msg.startswith(f"files.mixed.data[0]: {(bundle / DATA).resolve()}: ")


@pytest.mark.parametrize(("info", "expect"), [
    ({"location": f"{DATA}\x00x"}, "location 'mixed.onnx_data\\x00x' holds a NUL byte"),
    ({"offset": "1" * 5000}, "external_data offset '111111111111"),
])
def test_a_malformed_location_or_number_is_a_bundle_fault_naming_the_graph(bundle: Path, info: dict[str, str],
                                                                           expect: str) -> None:
    """A BundleError (the worker stops), not a ValueError (the worker restarted forever, the file unnamed)."""
    set_external(bundle / "mixed.onnx", "w", **info)
    rewrite(bundle)  # the writer lists no data for a graph it cannot read; the load says why
    msg = load_error(bundle, "mixed")
    assert msg.startswith(f"files.mixed: {(bundle / 'mixed.onnx').resolve()}: ") and expect in msg


def test_a_tensor_numpy_cannot_shape_is_a_bundle_fault_naming_the_data_file(bundle: Path) -> None:
    """65 dimensions: valid ONNX, more than a numpy array may have; a BundleError, not a ValueError."""
    w = numpy_helper.from_array(np.ones(2, np.float32), "w")
    w.dims[:] = [1] * 64 + [2]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "deep", [], [out], [w]),
                              opset_imports=opsets)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    save_external(model, bundle / "mixed.onnx", DATA)
    rewrite(bundle)
    msg = load_error(bundle, "mixed")
    assert msg.startswith(f"files.mixed.data[0]: {(bundle / DATA).resolve()}: ") and "65" in msg


def test_onnxruntime_is_not_handed_a_graph_the_scan_refuses(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph whose external_data the scan cannot read (here a key onnxruntime accepts, ours not) is refused
    before onnxruntime sees it: onnxruntime 1.32 reads such a tensor's location from the working directory."""
    model = onnx.load(bundle / "mixed.onnx", load_external_data=False)
    tensor = model.graph.initializer[0]
    tensor.external_data.add(key="prepacked_x", value="1")
    onnx.save_model(model, bundle / "mixed.onnx")
    rewrite(bundle)
    edit_manifest(bundle, lambda m: m["files"]["mixed"].update(data=[{"path": DATA, "sha256": hash_file(bundle / DATA)}]))
    edit_manifest(bundle, lambda m: m["runtime"].update(graph_optimization_level="disable"))
    b = load_bundle(bundle)
    built: list[Any] = []
    session = ort.InferenceSession

    def record(*args: Any, **kw: Any) -> ort.InferenceSession:
        built.append(args)
        return session(*args, **kw)

    monkeypatch.setattr(ort, "InferenceSession", record)
    monkeypatch.chdir(bundle)
    with pytest.raises(BundleError, match=r"files\.mixed: .*unknown external_data key 'prepacked_x'"):
        load_session(b, "mixed")
    assert built == []


def test_external_data_outside_the_main_graphs_initializers_is_refused(bundle: Path) -> None:
    """onnxruntime takes verified bytes only for main-graph initializers; it would look for the others' file."""
    for kw in ({"subgraph": True}, {"constant": True}):
        save_external(mixed_graph(**kw), bundle / "mixed.onnx", DATA, convert_attribute=True)
        rewrite(bundle)
        what = "an initializer of a subgraph" if "subgraph" in kw else "a node attribute"
        assert f"({what}) keeps its data in '{DATA}'; only initializers of the main graph" in \
            load_error(bundle, "mixed")


# -- a SmolVLM-layout bundle whose decoder keeps its weights outside --------------------
def test_a_smolvlm_decoder_with_external_data_runs_end_to_end(tmp_path: Path) -> None:
    one = make_tiny_vlm_bundle(tmp_path / "one", smolvlm=True)
    ext = Path(shutil.copytree(one, tmp_path / "ext"))
    dec = ext / "onnx" / "decoder_model_merged.onnx"
    model = onnx.load(dec)
    for t in model.graph.initializer:  # as optimum saves: raw bytes, tensors under 1 kB (shapes) inside,
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t), t.name))  # which onnxruntime needs at load
    save_external(model, dec, "decoder_model_merged.onnx_data", size_threshold=1024)
    rewrite(ext)
    entry = load_bundle(ext).file("decoder")
    assert [d.rel for d in entry.data] == ["onnx/decoder_model_merged.onnx_data"]
    assert dec.stat().st_size < 100_000 < entry.data[0].path.stat().st_size
    a, b = VlmRuntime(load_bundle(one)), VlmRuntime(load_bundle(ext))
    for feats in (CLOSE, FAR):
        da, db = a.decide(FRAME, feats), b.decide(FRAME, feats)
        assert da.brake == db.brake and da.probs == pytest.approx(db.probs, abs=1e-6)
        assert a.rationale() == b.rationale()


def test_an_operating_point_copy_with_other_weights_is_another_bundle(bundle: Path, tmp_path: Path) -> None:
    """The same graph file with other external data is another bundle: its copy may not be replaced as ours."""
    from tiny_node.factory.operating_point import check_copy_dest

    dest = Path(shutil.copytree(bundle, tmp_path / "dest"))
    check_copy_dest(bundle, dest)  # an earlier copy of the same bundle: may be replaced
    raw = bytearray((dest / DATA).read_bytes())
    raw[0] ^= 0x01
    (dest / DATA).write_bytes(raw)
    rewrite(dest)
    assert hash_file(dest / "mixed.onnx") == hash_file(bundle / "mixed.onnx")
    with pytest.raises(BundleError, match="holds another bundle"):
        check_copy_dest(bundle, dest)
