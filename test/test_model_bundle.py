"""Bundle manifest parsing, checksum verification, and the decision/feature rules."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tiny_node import strict_yaml
from tiny_node.model.bundle import (
    MAX_FILE_BYTES,
    BundleError,
    DecisionSpec,
    SensorSpec,
    hash_file,
    load_bundle,
)
from tiny_node.model.output import read_decision
from tiny_node.model.preprocess import feature_value, sensor_vector
from tiny_node.model.testmodels import make_fast_bundle


@pytest.fixture(scope="module")
def fast_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fast_bundle(tmp_path_factory.mktemp("bundles") / "fast")


@pytest.fixture
def fast(fast_src: Path, tmp_path: Path) -> Path:
    """A private copy each test may break."""
    return Path(shutil.copytree(fast_src, tmp_path / "fast"))


def edit_manifest(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = bundle / "manifest.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def load_error(bundle: Path) -> str:
    with pytest.raises(BundleError) as info:
        load_bundle(bundle)
    return str(info.value)


def test_fast_bundle_loads(fast: Path) -> None:
    b = load_bundle(fast)
    assert b.name == "test-fast"
    assert b.kind == "classifier"
    assert b.image.shape == (1, 3, 64, 64)
    assert b.sensors is not None
    assert b.sensors.features == ("ego_speed", "range", "range_rate", "range_valid")
    assert b.sensors.range_clip_m == 100.0
    assert b.decision.brake_index == 1
    assert b.runtime.intra_op_num_threads == 1
    assert not b.runtime.allow_spinning
    assert b.latency_budget_ms == 5.0
    assert b.file("model").sha256 == hashlib.sha256((fast / "model.onnx").read_bytes()).hexdigest()


def test_hash_file_matches_hashlib(tmp_path: Path) -> None:
    p = tmp_path / "blob"
    p.write_bytes(b"x" * 3_000_000)
    assert hash_file(p) == hashlib.sha256(p.read_bytes()).hexdigest()


def test_missing_manifest(tmp_path: Path) -> None:
    msg = load_error(tmp_path)
    assert "manifest.yaml" in msg and "missing" in msg


def test_a_manifest_or_file_that_is_no_regular_file_or_too_large_is_refused_at_once(fast: Path) -> None:
    """A FIFO as the manifest hung the load for ever, a link to /dev/zero read until memory ran out,
    and a 300 MB manifest was parsed for 105 s (security review)."""
    manifest = fast / "manifest.yaml"
    text = manifest.read_bytes()
    manifest.unlink()
    os.mkfifo(manifest)
    assert load_error(fast).endswith("cannot read manifest: [Errno 22] not a regular file: "
                                     f"'{manifest}'")
    manifest.unlink()
    manifest.symlink_to("/dev/zero")
    assert "not a regular file" in load_error(fast)
    manifest.unlink()
    manifest.write_bytes(text + b"#" * (1 << 20))
    assert load_error(fast) == f"{manifest}: larger than 1048576 bytes: not a manifest"
    manifest.write_bytes(text)
    bundle = load_bundle(fast)
    model = fast / "model.onnx"
    model.unlink()
    os.mkfifo(model)  # swapped after the load verified it: the session's read is refused, not hung
    with pytest.raises(BundleError, match=r"files.model: cannot read .*model.onnx: \[Errno 22\] not a regular file"):
        bundle.read_verified("model")


def test_bad_yaml(fast: Path) -> None:
    (fast / "manifest.yaml").write_text("format: [unclosed\nname: x\n")
    msg = load_error(fast)
    # libyaml says "did not find expected ',' or ']'", PyYAML's own parser "expected ',' or ']'"
    assert msg.startswith(f"{fast / 'manifest.yaml'}: not valid YAML: line 2, column 5: ") and "\n" not in msg
    assert "expected ',' or ']'" in msg, msg


def test_yaml_python_tags_are_refused(fast: Path) -> None:
    (fast / "manifest.yaml").write_text("!!python/object/apply:os.system ['true']\n")
    assert "not valid YAML" in load_error(fast)


def test_hostile_manifests_are_bundle_errors_naming_the_file(fast: Path) -> None:
    """A review's manifests: a 4 kB alias bomb took 10 GB (an error message echoed the value); a binary
    file, an unhashable key and deep nesting raised raw Python errors, so the node restarted its worker
    for ever instead of marking it failed."""
    where = f"{fast / 'manifest.yaml'}: "
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))
    cases = [
        (bomb.encode(), "not valid YAML: its aliases expand to more than 100000 nodes"),
        (b"\xff\xfe\x00name: x\n", "not UTF-8 text (invalid start byte at byte 0)"),
        (b"? [a, b]\n: 1\n", "not valid YAML: line 1, column 3: found an unhashable key (list)"),
        (b"[" * 5000 + b"]" * 5000, "not valid YAML: nested too deeply"),
    ]
    for text, want in cases:
        (fast / "manifest.yaml").write_bytes(text)
        msg = load_error(fast)
        # libyaml (which composes it where PyYAML has it) stops at 1000 levels, with its position
        said = want.replace("nested too deeply", "line 1, column 1001: exceeded maximum nesting depth") \
            if strict_yaml._CParser is not None else want
        assert msg.startswith(where) and said in msg and len(msg) < 400, msg[:300]
    (fast / "manifest.yaml").write_text("x: &a [1, 2]\ny: *a\n")  # a plain alias is YAML as usual
    assert "format: missing key" in load_error(fast)  # read, then judged as any manifest


def test_runtime_threads_beyond_reason_are_refused(fast: Path) -> None:
    """100 000 threads crashed onnxruntime (a segfault) when the bundle's session was made."""
    for key in ("intra_op_num_threads", "inter_op_num_threads"):
        edit_manifest(fast, lambda m, key=key: m["runtime"].update({key: 100000}))
        assert f"runtime.{key}: 100000 threads: at most 256" in load_error(fast)
        edit_manifest(fast, lambda m, key=key: m["runtime"].update({key: 256}))
        assert load_bundle(fast).runtime is not None


def test_a_key_given_twice_is_refused_not_the_last_kept(fast: Path) -> None:
    text = (fast / "manifest.yaml").read_text()
    (fast / "manifest.yaml").write_text(text + "latency_budget_ms: 999.0\n")  # already given above
    msg = load_error(fast)
    assert "not valid YAML" in msg and "found the key 'latency_budget_ms' twice" in msg


def test_missing_key_is_named(fast: Path) -> None:
    edit_manifest(fast, lambda m: m["outputs"]["decision"].pop("threshold"))
    assert "outputs.decision.threshold: missing key" in load_error(fast)


def test_a_decision_that_brakes_on_every_frame_is_refused(fast: Path) -> None:
    """One softmax label is P(brake) = 1, and threshold 0 holds for any P(brake): either bundle braked
    on every frame while the model read as healthy (review). Both are refused, naming the key."""
    edit_manifest(fast, lambda m: m["outputs"]["decision"].update(labels=["brake"]))
    assert "outputs.decision.labels: expected at least 2 labels (brake and another), got ['brake']" in load_error(fast)
    edit_manifest(fast, lambda m: m["outputs"]["decision"].update(labels=["no_brake", "brake"], threshold=0.0))
    assert load_error(fast).endswith("outputs.decision.threshold: 0.0 out of range (0.0, 1.0]")
    edit_manifest(fast, lambda m: m["outputs"]["decision"].update(threshold=0.01))
    assert load_bundle(fast).decision.threshold == 0.01


def test_a_digest_with_a_final_newline_is_refused_as_not_hex(fast: Path) -> None:
    """A YAML block scalar (``sha256: |``) ends in a newline, which ``$`` let through: the load then
    failed on a checksum mismatch printing two equal-looking digests (review)."""
    digest = hash_file(fast / "model.onnx")
    edit_manifest(fast, lambda m: m["files"]["model"].update(sha256=digest + "\n"))
    assert load_error(fast).endswith(f"files.model.sha256: expected 64 lowercase hex, got {digest + chr(10)!r}")


def test_build_recipe_is_optional_and_checked(fast: Path) -> None:
    """``build:`` says which factory recipe made a bundle; a bundle without it still loads."""
    assert load_bundle(fast).build is None
    recipe = {"config": "tracked", "digest": "5c24dc5f1e4baac1", "seed": 4, "threads": 2}
    edit_manifest(fast, lambda m: m.update(build=recipe))
    b = load_bundle(fast).build
    assert b is not None and (b.config, b.digest, b.seed, b.threads) == ("tracked", "5c24dc5f1e4baac1", 4, 2)
    edit_manifest(fast, lambda m: m["build"].update(digest="5C24"))
    assert "build.digest" in load_error(fast) and "'5C24'" in load_error(fast)
    edit_manifest(fast, lambda m: m["build"].update(digest="5c24dc5f1e4baac1", threads=0))
    assert "build.threads" in load_error(fast)
    edit_manifest(fast, lambda m: m["build"].update(threads=2, torch="2.13"))
    assert "build.torch: unknown key" in load_error(fast)


def test_bad_value_is_named(fast: Path) -> None:
    edit_manifest(fast, lambda m: m["inputs"]["image"].update(height="tall"))
    msg = load_error(fast)
    assert "inputs.image.height" in msg and "'tall'" in msg


def test_values_of_shapes_no_check_foresaw_are_named_not_crashes(fast: Path) -> None:
    """A worker treats anything but a BundleError as transient and restarts forever: these must be BundleErrors."""
    edit_manifest(fast, lambda m: m["inputs"]["sensors"]["features"].append(["range"]))
    assert "inputs.sensors.features" in load_error(fast) and "['range']" in load_error(fast)
    edit_manifest(fast, lambda m: m["inputs"]["sensors"]["features"].pop())
    edit_manifest(fast, lambda m: m.update(latency_budget_ms=10**400))
    assert "latency_budget_ms" in load_error(fast) and "too large" in load_error(fast)
    edit_manifest(fast, lambda m: m.update(latency_budget_ms=5.0))
    edit_manifest(fast, lambda m: m["inputs"]["image"].update(height=10**400))
    assert "inputs.image.height" in load_error(fast) and "too large" in load_error(fast)


def test_unknown_kind(fast: Path) -> None:
    edit_manifest(fast, lambda m: m.update(kind="detector"))
    msg = load_error(fast)
    assert "kind" in msg and "'detector'" in msg and "classifier" in msg


def test_unknown_key_is_a_typo_not_a_default(fast: Path) -> None:
    edit_manifest(fast, lambda m: m["outputs"]["decision"].update(treshold=0.3))
    assert "outputs.decision.treshold: unknown key" in load_error(fast)


def test_unknown_feature(fast: Path) -> None:
    edit_manifest(fast, lambda m: m["inputs"]["sensors"]["features"].append("lidar_points"))
    msg = load_error(fast)
    assert "inputs.sensors.features" in msg and "'lidar_points'" in msg


def test_brake_label_must_be_a_label(fast: Path) -> None:
    edit_manifest(fast, lambda m: m["outputs"]["decision"].update(brake_label="stop"))
    assert "brake_label: 'stop' is not one of labels" in load_error(fast)


def test_missing_file(fast: Path) -> None:
    (fast / "model.onnx").unlink()
    msg = load_error(fast)
    assert "files.model" in msg and "missing" in msg and "model.onnx" in msg


def test_checksum_mismatch_names_expected_and_actual(fast: Path) -> None:
    expected = hash_file(fast / "model.onnx")
    with (fast / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    actual = hash_file(fast / "model.onnx")
    msg = load_error(fast)
    assert "checksum mismatch" in msg and "model.onnx" in msg
    assert expected in msg and actual in msg


def test_path_escaping_the_bundle(fast: Path) -> None:
    shutil.copy(fast / "model.onnx", fast.parent / "outside.onnx")
    edit_manifest(fast, lambda m: m["files"]["model"].update(path="../outside.onnx"))
    msg = load_error(fast)
    assert "files.model.path" in msg and "escapes" in msg


@pytest.mark.parametrize("kind", ["symlink loop", "name too long"])
def test_a_path_the_os_cannot_resolve_is_named_not_a_crash(fast: Path, kind: str) -> None:
    """RuntimeError / OSError from the path itself: a bad manifest (one line), not a worker restart loop."""
    if kind == "symlink loop":
        (fast / "a").symlink_to("b")
        (fast / "b").symlink_to("a")
        rel = "a"
    else:
        rel = "x" * 4000  # a component over NAME_MAX (the manifest takes strings up to 4096)
    edit_manifest(fast, lambda m: m["files"]["model"].update(path=rel))
    msg = load_error(fast)
    assert "files.model" in msg and rel[:20] in msg


def test_an_unreadable_file_is_named_not_a_crash(fast: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model file the node's user may not read (root here, so the open is made to fail)."""
    import tiny_node.model.bundle as bundle_mod

    def denied(path: Path) -> str:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(bundle_mod, "hash_file", denied)
    msg = load_error(fast)
    assert "files.model: cannot read" in msg and "model.onnx" in msg and "Permission denied" in msg


def test_bad_sha256_format(fast: Path) -> None:
    edit_manifest(fast, lambda m: m["files"]["model"].update(sha256="abc"))
    assert "files.model.sha256" in load_error(fast)


def test_read_verified_catches_a_swap_after_load(fast: Path) -> None:
    b = load_bundle(fast)
    (fast / "model.onnx").write_bytes(b"not the model")
    with pytest.raises(BundleError, match="checksum mismatch"):
        b.read_verified("model")


def test_a_file_over_its_size_limit_is_refused_before_it_is_hashed_or_read(fast: Path) -> None:
    """A 50 GB "model" (its hash in the manifest or not) must not be hashed for minutes, then read into memory."""
    b = load_bundle(fast)
    model = fast / "model.onnx"
    os.truncate(model, MAX_FILE_BYTES + 1)  # sparse: no disk used
    msg = load_error(fast)
    assert f"files.model: {model.resolve()} is {MAX_FILE_BYTES + 1} bytes: at most {MAX_FILE_BYTES}" in msg
    with pytest.raises(BundleError, match=r"files\.model: .* is larger than that: at most"):
        b.read_verified("model")  # grown after load: read only up to the limit


def test_a_bundle_loads_under_a_memory_limit(fast: Path) -> None:
    """Reading a file must ask for its size, not the 2 GiB limit: ``fh.read(limit + 1)`` allocated
    that whole request for a 0.3 MB graph, a MemoryError under ``ulimit -v`` or strict overcommit."""
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_DATA, (512 << 20, 512 << 20))\n"
        "from tiny_node.model.bundle import data_files, load_bundle\n"
        "b = load_bundle(sys.argv[1])\n"
        "print(len(b.read_verified('model')), data_files(b.root, 'model', 'model.onnx'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(fast)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == str((fast / "model.onnx").stat().st_size)


# -- decision reading ---------------------------------------------------------------
SOFTMAX = DecisionSpec("logits", "softmax", ("no_brake", "brake"), "brake", 0.5)


def test_softmax_decision() -> None:
    out = read_decision(np.array([[0.0, 2.0]], np.float32), SOFTMAX)
    assert out.brake and out.label == "brake"
    assert out.confidence == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert sum(out.probs) == pytest.approx(1.0)
    out = read_decision([3.0, 0.0], SOFTMAX)
    assert not out.brake and out.label == "no_brake" and out.confidence == out.probs[0]


def test_threshold_is_on_brake_probability() -> None:
    cautious = DecisionSpec("logits", "softmax", ("no_brake", "brake"), "brake", 0.2)
    out = read_decision([1.0, 0.0], cautious)  # P(brake) ~ 0.27
    assert out.brake and out.confidence == pytest.approx(out.probs[1])


def test_sigmoid_and_multiclass() -> None:
    sig = DecisionSpec("p", "sigmoid", ("clear", "brake"), "brake", 0.5)
    out = read_decision([[-1.0]], sig)
    assert not out.brake and out.label == "clear"
    assert out.probs[1] == pytest.approx(1 / (1 + math.e))
    multi = DecisionSpec("l", "softmax", ("clear", "brake", "unsure"), "brake", 0.5)
    out = read_decision([0.0, 0.1, 2.0], multi)
    assert not out.brake and out.label == "unsure"


def test_nan_never_decides() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        read_decision([float("nan"), 1.0], SOFTMAX)
    with pytest.raises(ValueError, match="expected 2 values"):
        read_decision([1.0, 2.0, 3.0], SOFTMAX)


# -- sensor features ----------------------------------------------------------------
def test_feature_rules() -> None:
    assert feature_value("range", {"range": math.inf}, 100.0) == 100.0
    assert feature_value("range", {}, 80.0) == 80.0
    assert feature_value("range", {"range": 250.0}, 100.0) == 100.0
    assert feature_value("range_rate", {"range_rate": math.nan}, 100.0) == 0.0
    assert feature_value("range_valid", {"range_valid": 1}, 100.0) == 1.0
    assert feature_value("range_valid", {}, 100.0) == 0.0
    assert feature_value("accel_x", {}, 100.0) == 0.0
    with pytest.raises(ValueError, match="ego_speed"):
        feature_value("ego_speed", {}, 100.0)
    assert feature_value("ego_yaw_rate", {"ego_yaw_rate": -0.2}, 100.0) == -0.2
    assert feature_value("ego_yaw_rate", {}, 100.0) == 0.0  # a caller without one: a straight road
    with pytest.raises(ValueError, match="ego_yaw_rate"):  # an odometry fault, never a straight road
        feature_value("ego_yaw_rate", {"ego_yaw_rate": math.nan}, 100.0)
    spec = SensorSpec("s", ("range", "ego_speed"), 50.0)
    vec = sensor_vector({"ego_speed": 3.0, "range": math.inf}, spec)
    assert vec.dtype == np.float32 and vec.tolist() == [[50.0, 3.0]]


# -- the manifest writer takes only what the loader takes (review finding 4) --------------------


def _hf_snapshot(fast: Path, tmp_path: Path, files: tuple[str, ...] = ("model.onnx",)) -> Path:
    """``fast``'s files laid out as a Hugging Face cache: ``snapshots/abc/<f>`` -> ``../../blobs/<sha256>``."""
    cache = tmp_path / "hub" / "models--x--y"
    (cache / "blobs").mkdir(parents=True)
    snap = cache / "snapshots" / "abc"
    snap.mkdir(parents=True)
    for f in files:
        digest = hash_file(fast / f)
        shutil.copy(fast / f, cache / "blobs" / digest)
        (snap / f).parent.mkdir(parents=True, exist_ok=True)
        (snap / f).symlink_to(os.path.relpath(cache / "blobs" / digest, (snap / f).parent))
    return snap


def _write_fast(root: Path, files: dict[str, str] | None = None) -> Path:
    from tiny_node.model.bundle import write_manifest
    from tiny_node.model.testmodels import _manifest_parts

    return write_manifest(root, name="snap", files=files or {"model": "model.onnx"}, latency_budget_ms=5.0,
                          **_manifest_parts(64))


def test_write_manifest_refuses_a_hugging_face_cache_snapshot_as_the_loader_does(fast: Path, tmp_path: Path) -> None:
    """Before: written (hashed through the links), then refused at every load, every file 'escaping'."""
    snap = _hf_snapshot(fast, tmp_path)
    with pytest.raises(BundleError, match=r"^files\.model\.path: 'model\.onnx' escapes the bundle dir .*/snapshots/abc: "
                                          r"it is a symlink to .*/blobs/[0-9a-f]{64}\. .*--local-dir.*`cp -rL SNAPSHOT DIR`"):
        _write_fast(snap)
    assert not (snap / "manifest.yaml").exists()
    # the loader's rule is unchanged, and its message gives the same way out
    shutil.copy(fast / "manifest.yaml", snap / "manifest.yaml")
    msg = load_error(snap)
    assert "files.model.path: 'model.onnx' escapes the bundle dir" in msg and "cp -rL" in msg
    (snap / "manifest.yaml").unlink()
    # what the message says: copy with the links resolved, then write and load there
    copy = Path(shutil.copytree(snap, tmp_path / "copy", symlinks=False))  # cp -rL
    _write_fast(copy)
    assert load_bundle(copy).file("model").sha256 == hash_file(fast / "model.onnx")


def test_links_inside_the_bundle_are_still_taken_by_both(fast: Path) -> None:
    (fast / "onnx").mkdir()
    shutil.move(fast / "model.onnx", fast / "onnx" / "real.onnx")
    (fast / "model.onnx").symlink_to("onnx/real.onnx")
    _write_fast(fast)
    assert load_bundle(fast).file("model").path == (fast / "onnx" / "real.onnx").resolve()


@pytest.mark.parametrize(("rel", "want"), [("../outside.onnx", r"'\.\./outside\.onnx' escapes the bundle dir \S+$"),
                                           ("/abs/model.onnx", r"'/abs/model\.onnx' escapes the bundle dir .*absolute")])
def test_write_manifest_refuses_paths_out_of_the_bundle(fast: Path, rel: str, want: str) -> None:
    shutil.copy(fast / "model.onnx", fast.parent / "outside.onnx")
    with pytest.raises(BundleError, match=r"^files\.model\.path: " + want):
        _write_fast(fast, {"model": rel})


def test_write_manifest_refuses_an_external_data_file_linked_out_of_the_bundle(fast: Path, tmp_path: Path) -> None:
    import onnx

    model = onnx.load(str(fast / "model.onnx"))
    onnx.save_model(model, str(fast / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx_data", size_threshold=0)
    blob = tmp_path / "blobs" / "data"
    blob.parent.mkdir()
    shutil.move(fast / "model.onnx_data", blob)
    (fast / "model.onnx_data").symlink_to(blob)
    with pytest.raises(BundleError, match=r"^files\.model\.data\[0\]\.path: 'model\.onnx_data' escapes the bundle dir "
                                          r".*: it is a symlink to .*/blobs/data\."):
        _write_fast(fast)
    (fast / "model.onnx_data").unlink()
    shutil.copy(blob, fast / "model.onnx_data")
    _write_fast(fast)
    assert [d.rel for d in load_bundle(fast).file("model").data] == ["model.onnx_data"]


def test_long_strings_are_refused_naming_the_key(fast: Path) -> None:
    """A label travels back from the worker with every result and into every reason: a 20 MiB one
    cost 47 ms a decision (security review)."""
    edit_manifest(fast, lambda m: m["outputs"]["decision"].update(labels=["n" * 65, "brake"]))
    assert "outputs.decision.labels: expected distinct non-empty strings of at most 64 characters" in load_error(fast)
    edit_manifest(fast, lambda m: m["outputs"]["decision"].update(labels=["no_brake", "brake"], name="x" * 4097))
    assert load_error(fast).endswith("outputs.decision.name: 4097 characters: at most 4096")


def test_sizes_the_worker_allocates_by_are_bounded(fast: Path, tmp_path: Path) -> None:
    """A 50000 x 50000 image asked the load-time probe for 7 GiB (28 as float32), and 2**31 - 1 visual
    tokens a tile made a 15 GB prompt (security review): each is refused naming its key."""
    from tiny_node.model.testvlm import make_tiny_vlm_bundle

    edit_manifest(fast, lambda m: m["inputs"]["image"].update(height=4097))
    assert load_error(fast).endswith("inputs.image.height: 4097 is too large (at most 4096)")
    vlm = make_tiny_vlm_bundle(tmp_path / "vlm")
    edit_manifest(vlm, lambda m: m["vlm"].update(image_tokens_per_tile=16385))
    assert load_error(vlm).endswith("vlm.image_tokens_per_tile: 16385 is too large (at most 16384)")


# -- write_manifest checks what it writes; a file's place taken by a directory or FIFO -----------
def _fast_parts(**decision: Any) -> dict[str, Any]:
    from tiny_node.model.testmodels import _manifest_parts

    parts = _manifest_parts(64)
    parts["outputs"]["decision"].update(decision)
    return parts


def test_write_manifest_refuses_what_the_loader_refuses_and_keeps_the_manifest_there(fast: Path) -> None:
    """A typo (``treshold``) replaced a good manifest with one every load refused (review): now it is
    parsed as the loader parses it first, and the manifest there is left as it was."""
    from tiny_node.model.bundle import write_manifest

    before = (fast / "manifest.yaml").read_bytes()
    with pytest.raises(BundleError, match=r"^\S+/manifest\.yaml \(not written\): outputs\.decision\.treshold: "
                                          r"unknown key \(allowed: .*threshold"):
        write_manifest(fast, name="x", files={"model": "model.onnx"}, latency_budget_ms=5.0,
                       **_fast_parts(treshold=0.5))
    with pytest.raises(BundleError, match=r"outputs\.decision\.threshold: 1\.5 out of range"):
        write_manifest(fast, name="x", files={"model": "model.onnx"}, latency_budget_ms=5.0,
                       **_fast_parts(threshold=1.5))
    assert (fast / "manifest.yaml").read_bytes() == before
    assert load_bundle(fast).name == "test-fast"
    parts = _fast_parts()
    parts["inputs"]["image"]["mean"] = (0.5, 0.5, 0.5)  # a tuple: YAML writes a list, which the loader takes
    write_manifest(fast, name="x", files={"model": "model.onnx"}, latency_budget_ms=5.0, **parts)
    assert load_bundle(fast).image.mean == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo"])
def test_write_manifest_names_the_key_of_a_file_it_cannot_hash(fast: Path, kind: str) -> None:
    """A missing file was a bare FileNotFoundError, a directory or FIFO a bare OSError: neither said files.<key>."""
    from tiny_node.model.bundle import write_manifest

    before = (fast / "manifest.yaml").read_bytes()
    path = fast / "other.onnx"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    reason = "No such file or directory" if kind == "missing" else "not a regular file"
    with pytest.raises(BundleError, match=rf"^files\.model: cannot read {path}: \[Errno \d+\] {reason}"):
        write_manifest(fast, name="x", files={"model": "other.onnx"}, latency_budget_ms=5.0, **_fast_parts())
    assert (fast / "manifest.yaml").read_bytes() == before


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_directory_or_fifo_in_a_files_place_is_not_called_missing(fast: Path, kind: str) -> None:
    model = fast / "model.onnx"
    model.unlink()
    if kind == "directory":
        model.mkdir()
    else:
        os.mkfifo(model)
    assert load_error(fast) == f"files.model: not a regular file: {model.resolve()}"


def test_an_image_dtype_of_float16_says_the_dtype_is_the_preprocessings(fast: Path) -> None:
    """An fp16 export's author writes float16; the error said only "not one of float32"."""
    edit_manifest(fast, lambda m: m["inputs"]["image"].update(dtype="float16"))
    assert load_error(fast).endswith(
        "inputs.image.dtype: 'float16' not one of float32: it is the preprocessing's type, not the graph's "
        "(a kind: vlm graph that takes float16 is fed float16, cast to the type it declares; a classifier's "
        "graph must take float32)")


# -- the test-bundle commands refuse a directory that holds something --------------------------
def _users_bundle(root: Path) -> Path:
    root.mkdir()
    (root / "manifest.yaml").write_text("mine\n")
    return root


def test_make_test_bundles_refuses_a_directory_that_is_not_empty_unless_forced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """It replaced a user's model.onnx / manifest.yaml and said nothing (exit 0)."""
    import tiny_node.model.testmodels as tm
    from tiny_node.cli import main

    written: list[Path] = []
    monkeypatch.setattr(tm, "write_test_bundles", lambda root: written.append(root) or {"fast": root})
    target = _users_bundle(tmp_path / "mine")
    assert main(["make-test-bundles", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tiny-node make-test-bundles: error: {target} exists and is not empty: files in it would be "
                   "overwritten (--force to write into it anyway)"]
    assert written == [] and (target / "manifest.yaml").read_text() == "mine\n"
    assert main(["make-test-bundles", str(target), "--force"]) == 0
    (tmp_path / "empty").mkdir()
    assert main(["make-test-bundles", str(tmp_path / "empty")]) == 0
    assert main(["make-test-bundles", str(tmp_path / "new")]) == 0
    assert written == [target, tmp_path / "empty", tmp_path / "new"]


@pytest.mark.parametrize("module", ["testmodels", "testvlm"])
def test_the_generator_modules_refuse_a_directory_that_is_not_empty_unless_forced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], module: str) -> None:
    import importlib

    mod = importlib.import_module(f"tiny_node.model.{module}")
    writer = "write_test_bundles" if module == "testmodels" else "make_tiny_vlm_bundle"
    written: list[Path] = []
    monkeypatch.setattr(mod, writer, lambda root, *a, **kw: written.append(root) or {})
    target = _users_bundle(tmp_path / "mine")
    assert mod.main([str(target)]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.endswith(f": error: {target} exists and is not empty: files in it would be overwritten "
                        "(--force to write into it anyway)")
    assert written == [] and (target / "manifest.yaml").read_text() == "mine\n"
    assert mod.main([str(target), "--force"]) == 0 and written == [target]


def test_one_tensor_named_as_both_the_image_and_the_sensors_is_refused(fast: Path) -> None:
    """The sensor vector's feed overwrote the image's: a graph without an image input loaded, camera-blind,
    and decided on sensors alone (review)."""
    image = load_bundle(fast).image.name
    edit_manifest(fast, lambda m: m["inputs"]["sensors"].update(name=image))
    assert load_error(fast).endswith(f"inputs.sensors.name: {image!r} is inputs.image.name too: each input is "
                                     "its own tensor")


def test_a_threshold_edit_refuses_a_manifest_the_loader_refuses(fast: Path) -> None:
    """``set_threshold`` read the manifest with a plain YAML load: a key given twice, refused by the loader,
    was resolved to its last value and written so, and the bundle loaded (review)."""
    from tiny_node.model.bundle import set_threshold

    path = fast / "manifest.yaml"
    text = path.read_text()
    doubled = text.replace("latency_budget_ms:", "latency_budget_ms: 7.0\nlatency_budget_ms:", 1)
    path.write_text(doubled)
    with pytest.raises(BundleError, match="found the key 'latency_budget_ms' twice"):
        set_threshold(fast, 0.6)
    assert path.read_text() == doubled  # left as it was
    path.write_text(text)
    set_threshold(fast, 0.6)
    assert load_bundle(fast).decision.threshold == 0.6
