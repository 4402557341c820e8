"""VLM bundles: manifest, runtime (prefill decision, KV-cached rationale), SmolVLM layout, worker.

Real onnxruntime sessions over generated graphs (tiny_node.model.testvlm): a Llama-style
decoder with rotary positions and a KV cache, in the published three-graph layout.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

from tiny_node.clock import MonotonicClock
from tiny_node.model.bundle import BundleError, hash_file, load_bundle
from tiny_node.model.runtime import ModelRuntime, load_runtime
from tiny_node.model.testvlm import make_tiny_vlm_bundle
from tiny_node.model.vlm import RationaleAbortedError, VlmRuntime, clean_context
from tiny_node.model.worker import ModelResult, ModelWorker, WorkerState

FRAME = np.full((480, 640, 3), 128, np.uint8)
CLOSE = {"ego_speed": 20.0, "range": 15.0, "range_rate": -20.0, "range_valid": 1.0}
FAR = {"ego_speed": 20.0, "range": 90.0, "range_rate": -2.0, "range_valid": 1.0}
READY_S = 30.0
VLM_FILES = ("vision_encoder", "embed_tokens", "decoder", "tokenizer", "config")


@pytest.fixture(scope="module")
def vlm_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vlm")
    return {
        "tiny": make_tiny_vlm_bundle(root / "tiny"),
        "smolvlm": make_tiny_vlm_bundle(root / "smolvlm", smolvlm=True),
        # ~25 ms per decoder run here: a rationale long enough to be interrupted
        "slow": make_tiny_vlm_bundle(root / "slow", decoder_pairs=40),
    }


@pytest.fixture(scope="module")
def tiny(vlm_dirs: dict[str, Path]) -> VlmRuntime:
    rt = VlmRuntime(load_bundle(vlm_dirs["tiny"]))
    rt.warm_up(2)
    return rt


@pytest.fixture(scope="module")
def smol(vlm_dirs: dict[str, Path]) -> VlmRuntime:
    rt = VlmRuntime(load_bundle(vlm_dirs["smolvlm"]))
    rt.warm_up(1)
    return rt


def copy_of(vlm_dirs: dict[str, Path], key: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(vlm_dirs[key], tmp_path / key))


def edit_manifest(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = bundle / "manifest.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


# -- manifest ---------------------------------------------------------------------------
def test_manifest_schema(vlm_dirs: dict[str, Path]) -> None:
    b = load_bundle(vlm_dirs["tiny"])
    assert b.kind == "vlm" and b.vlm is not None and b.sensors is not None
    assert set(b.files) == set(VLM_FILES)
    assert b.files["decoder"].rel == "onnx/decoder_model_merged.onnx"
    assert b.vlm.image_token == "<image>" and b.vlm.image_tokens_per_tile == 16
    assert b.vlm.eos == ("<end_of_utterance>",) and b.vlm.max_rationale_tokens == 8
    assert b.vlm.kv is not None and (b.vlm.kv.num_layers, b.vlm.kv.num_kv_heads) == (2, 1)
    assert not b.vlm.smolvlm
    assert b.decision.labels == ("go", "brake") and b.decision.label_tokens == ("go", "brake")
    rng = b.sensors.bins[1]
    assert (rng.feature, rng.prefix, rng.step) == ("range", "rng", 2.0)
    assert [rng.token(v) for v in (0.0, 40.0, 41.0, 250.0, -3.0, 1e308, -1e308, math.inf, -math.inf)] == \
        ["<rng_0>", "<rng_20>", "<rng_21>", "<rng_50>", "<rng_0>", "<rng_50>", "<rng_0>", "<rng_50>", "<rng_0>"]
    s = load_bundle(vlm_dirs["smolvlm"])
    assert s.vlm is not None and s.vlm.smolvlm and s.vlm.image_token_id == 49190
    assert s.vlm.kv is None and s.sensors is not None and s.sensors.bins == ()


@pytest.mark.parametrize("key", VLM_FILES)
def test_checksum_failure_names_the_file(vlm_dirs: dict[str, Path], tmp_path: Path,
                                         key: str) -> None:
    bundle = copy_of(vlm_dirs, "tiny", tmp_path)
    path = load_bundle(bundle).files[key].path
    with path.open("ab") as fh:
        fh.write(b" ")
    with pytest.raises(BundleError) as info:
        load_bundle(bundle)
    msg = str(info.value)
    assert f"files.{key}" in msg and "checksum mismatch" in msg and path.name in msg
    assert hash_file(path) in msg


@pytest.mark.parametrize(("change", "expect"), [
    (lambda m: m["files"].pop("tokenizer"), "files.tokenizer: missing key"),
    (lambda m: m["files"].update(model=m["files"]["config"]), "files.model: unknown key"),
    (lambda m: m["vlm"].update(prompt="{image} {speed} answer:"), "unknown placeholder {speed}"),
    (lambda m: m["vlm"].update(prompt="{sensors} answer:"), "needs {image} exactly once"),
    (lambda m: m["vlm"].update(prompt="{image} {range:.0q}"), "{range:.0q}"),
    (lambda m: m["vlm"].update(prompt="{image} {range.real}"), "unknown placeholder"),
    # formatted every frame: 999999999 made each decision a 1 GB string and 1.2 s
    (lambda m: m["vlm"].update(prompt="{image} {sensors} {range:999999999}"), "{range:999999999}: a width or "
     "precision over 64"),
    (lambda m: m["vlm"].update(prompt="{image} answer:"), "bins without {sensors}"),
    (lambda m: m["vlm"].update(treshold=0.5), "vlm.treshold: unknown key"),
    (lambda m: m["outputs"]["decision"].update(kind="sigmoid"), "'sigmoid' not one of softmax"),
    (lambda m: m["inputs"]["sensors"]["bins"]["range"].update(hi=-1), "bins.range.hi"),
    (lambda m: m.update(kind="classifier"), "vlm: unknown key"),
    # a decision word is read back in every reason: a million characters made a 1 MB error (review)
    (lambda m: m["outputs"]["decision"].update(tokens=["go", "b" * 65]), "decision.tokens: expected distinct "
     "non-empty strings of at most 64 characters"),
    # one word: its softmax is P(brake) = 1, a brake on every frame (review)
    (lambda m: m["outputs"]["decision"].update(labels=["brake"], tokens=["brake"]), "decision.labels: expected "
     "at least 2 labels"),
])
def test_manifest_errors_are_named(vlm_dirs: dict[str, Path], tmp_path: Path,
                                   change: Callable[[dict[str, Any]], None], expect: str) -> None:
    bundle = copy_of(vlm_dirs, "tiny", tmp_path)
    edit_manifest(bundle, change)
    with pytest.raises(BundleError, match=None) as info:
        load_bundle(bundle)
    assert expect in str(info.value)


@pytest.mark.parametrize(("change", "expect"), [
    (lambda m: m["vlm"].update(image_token_id=7), "vlm.image_token_id"),
    (lambda m: m["vlm"].update(image_tokens_per_tile=9), "9, but the vision encoder gives 16"),
    (lambda m: m["vlm"].update(prompt="<image>{image} {sensors} answer:"), "renders 17 image"),
    (lambda m: m["outputs"]["decision"].update(tokens=["go", "hard brake"]), "is 2 tokens"),
    (lambda m: m["vlm"]["kv"].update(num_layers=3), "vlm.kv.num_layers"),
    (lambda m: m["inputs"]["image"].update(height=32, width=32), "'pixel_values' has shape"),
    (lambda m: m["inputs"]["sensors"]["bins"]["range"].update(hi=60), "'<rng_51>' is not a single"),
    # a word the vocabulary lacks reads the unknown token's logit; two such words gave P(brake) 0.5
    (lambda m: m["outputs"]["decision"].update(tokens=["go", "stop"]), "'stop' is not in the vocabulary"),
    (lambda m: m["outputs"]["decision"].update(tokens=["brake", " brake"]), "are the same token ids"),
])
def test_runtime_checks_are_named(vlm_dirs: dict[str, Path], tmp_path: Path,
                                  change: Callable[[dict[str, Any]], None], expect: str) -> None:
    bundle = copy_of(vlm_dirs, "tiny", tmp_path)
    edit_manifest(bundle, change)
    with pytest.raises(BundleError) as info:
        VlmRuntime(load_bundle(bundle))
    assert expect in str(info.value)


def test_kv_layout_must_agree_with_graph_and_config(vlm_dirs: dict[str, Path],
                                                    tmp_path: Path) -> None:
    bundle = copy_of(vlm_dirs, "smolvlm", tmp_path)
    rt = VlmRuntime(load_bundle(bundle))  # kv from the static graph dims and config.json
    assert (rt.kv.num_layers, rt.kv.num_kv_heads, rt.kv.head_dim) == (2, 3, 8)  # SmolVLM-256M: 3 KV heads
    edit_manifest(bundle, lambda m: m["vlm"].update(kv={"num_layers": 2, "num_kv_heads": 1,
                                                         "head_dim": 8}))
    with pytest.raises(BundleError, match=r"vlm.kv.num_kv_heads: manifest vlm.kv says 1"):
        VlmRuntime(load_bundle(bundle))


# -- runtime ---------------------------------------------------------------------------
def test_load_runtime_dispatches_on_kind(vlm_dirs: dict[str, Path],
                                         bundles: dict[str, Path]) -> None:
    assert isinstance(load_runtime(load_bundle(bundles["fast"])), ModelRuntime)
    rt = load_runtime(load_bundle(vlm_dirs["tiny"]), threads=1)
    assert isinstance(rt, VlmRuntime)
    out = rt.decide(FRAME, CLOSE)  # the same call the worker makes for a classifier
    assert out.brake
    with pytest.raises(BundleError, match="not a classifier"):
        ModelRuntime(load_bundle(vlm_dirs["tiny"]))


def test_prompt_holds_image_and_sensor_tokens(tiny: VlmRuntime) -> None:
    text = tiny.prompt.text(CLOSE, "school zone")
    assert text == ("<image>" * 16 + " <spd_20> <rng_8> <rr_-20> <val_1> school zone "
                    "question: brake? answer:")
    assert tiny.prompt.text({"ego_speed": 3.0}) == ("<image>" * 16 + " <spd_3> <rng_50> <rr_0> "
                                                    "<val_0> question: brake? answer:")
    ids = tiny.prompt.ids(CLOSE)
    assert ids.dtype == np.int64 and int((ids == 1).sum()) == 16  # <image> is id 1
    forged = tiny.prompt.ids(CLOSE, "<image> <end_of_utterance>")  # cannot forge tokens
    assert int((forged == 1).sum()) == 16 and tiny.eos_id not in forged
    assert clean_context("  school\n zone <x>") == "school zone x"
    # lower case, as trained: the shipped tokenizer is case-sensitive ("School" was <unk>)
    assert clean_context("School Zone") == "school zone"
    assert tiny.prompt.ids(CLOSE, "School Zone").tolist() == tiny.prompt.ids(CLOSE, "school zone").tolist()
    with pytest.raises(ValueError, match="ego_speed"):
        tiny.decide(FRAME, {"range": 5.0})


def test_decision_from_one_prefill(tiny: VlmRuntime) -> None:
    close = tiny.decide(FRAME, CLOSE)
    assert close.brake and close.label == "brake" and close.confidence > 0.99
    assert close.probs[1] == close.confidence and sum(close.probs) == pytest.approx(1.0)
    assert tiny.last_ms["tokens"] == 26.0  # 16 image + 4 sensor + 6 text tokens, one run
    assert tiny.rationale() == "object close ahead"
    far = tiny.decide(FRAME, FAR)
    assert not far.brake and far.label == "go" and sum(far.probs) == pytest.approx(1.0)
    assert tiny.rationale() == "road clear"
    # the designed rule: brake iff range < 2 * ego_speed (range in 2 m bins)
    assert tiny.decide(FRAME, {**FAR, "range": 36.0}).brake
    assert not tiny.decide(FRAME, {**FAR, "range": 44.0}).brake
    assert not tiny.decide(FRAME, {"ego_speed": 30.0, "range": float("inf")}).brake
    assert tiny.rationale() == "road clear"
    with pytest.raises(RuntimeError, match="decide"):
        tiny.rationale()  # one rationale per decision


def test_threshold_picks_the_word_the_rationale_continues(vlm_dirs: dict[str, Path],
                                                          tmp_path: Path) -> None:
    bundle = copy_of(vlm_dirs, "tiny", tmp_path)
    edit_manifest(bundle, lambda m: m["outputs"]["decision"].update(threshold=1e-9))
    rt = VlmRuntime(load_bundle(bundle))
    out = rt.decide(FRAME, FAR)
    assert out.brake and out.probs[1] < 0.01  # below the argmax, above the threshold
    assert rt.rationale() == "object close ahead"  # explains the decision that went out


@pytest.mark.parametrize("which", ["tiny", "smol"])
def test_kv_cache_decoding_equals_decoding_without_cache(which: str, tiny: VlmRuntime,
                                                         smol: VlmRuntime) -> None:
    rt = tiny if which == "tiny" else smol
    for feats, context in ((CLOSE, "school zone"), (FAR, "")):
        rt.decide(FRAME, feats, context)
        cached = rt.generate_ids(16)
        rt.decide(FRAME, feats, context)
        full = rt.generate_ids(16, use_cache=False)
        assert cached == full and len(cached) >= 2
    if rt is smol:  # random weights: runs to max_tokens, no eos, so all 16 steps compared
        assert len(cached) == 16


def test_a_rationale_ends_at_any_of_the_eos_tokens(vlm_dirs: dict[str, Path], smol: VlmRuntime,
                                                   tmp_path: Path) -> None:
    """A published chat model ends a turn with either of two tokens (SmolVLM: <|im_end|> and
    <end_of_utterance>): stopped at one only, a rationale ran on past its turn's end to max_tokens."""
    smol.decide(FRAME, CLOSE)
    free = smol.generate_ids(6)  # random weights: no eos
    stop = free[2]
    bundle = copy_of(vlm_dirs, "smolvlm", tmp_path)
    edit_manifest(bundle, lambda d: d["vlm"].update(eos=["<end_of_utterance>", smol.tokenizer.id_to_token(stop)]))
    rt = VlmRuntime(load_bundle(bundle))
    assert rt.eos_ids == (49279, stop)
    rt.decide(FRAME, CLOSE)
    assert rt.generate_ids(6) == free[:free.index(stop)]
    for bad in ([], ["<end_of_utterance>"] * 2, [7], ["x"] * 9):
        edit_manifest(bundle, lambda d, bad=bad: d["vlm"].update(eos=bad))
        with pytest.raises(BundleError, match=r"vlm\.eos: expected a token or a list of up to 8 distinct tokens"):
            load_bundle(bundle)


def test_a_misspelt_tag_in_the_prompt_is_refused_at_load(vlm_dirs: dict[str, Path], tmp_path: Path) -> None:
    """<global_img> for <global-img> loaded, and the model decided on the tag split into 12 characters."""
    bundle = copy_of(vlm_dirs, "smolvlm", tmp_path)
    edit_manifest(bundle, lambda d: d["vlm"].update(prompt=d["vlm"]["prompt"].replace("<global-img>", "<global_img>")))
    with pytest.raises(BundleError, match=r"vlm\.prompt: '<global_img>' is \d+ tokens in .*tokenizer\.json, not one"):
        VlmRuntime(load_bundle(bundle))
    text = "{context} (gap <-> lead, TTC<=2s, range<5m speed>3) Must the car brake now?"
    edit_manifest(bundle, lambda d: d["vlm"].update(prompt=d["vlm"]["prompt"].replace(
        "{context} Must the car brake now?", text).replace("<global_img>", "<global-img>")))
    assert "(gap <-> lead, TTC<=2s, range<5m speed>3)" in VlmRuntime(load_bundle(bundle)).prompt.text({"ego_speed": 0.0})


def test_smolvlm_layout_loads_and_decides(vlm_dirs: dict[str, Path], smol: VlmRuntime) -> None:
    root = vlm_dirs["smolvlm"]
    for name in ("vision_encoder", "embed_tokens", "decoder_model_merged"):
        assert (root / "onnx" / f"{name}.onnx").is_file()
    vis = onnx.load(root / "onnx" / "vision_encoder.onnx").graph
    dims = [[d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in vis.input]
    assert [i.name for i in vis.input] == ["pixel_values", "pixel_attention_mask"]
    assert dims == [["batch_size", "num_images", 3, 512, 512],
                    ["batch_size", "num_images", 512, 512]]
    assert vis.input[1].type.tensor_type.elem_type == onnx.TensorProto.BOOL
    dec = {i.name for i in smol.decoder.get_inputs()}
    assert {"inputs_embeds", "attention_mask", "position_ids", "past_key_values.0.key",
            "past_key_values.1.value"} == dec - {"past_key_values.0.value", "past_key_values.1.key"}
    assert {o.name for o in smol.decoder.get_outputs()} >= {"logits", "present.1.value"}
    assert smol.vocab_size == 49280 and smol.eos_ids == (49279, 2)  # generation_config.json's two
    assert smol.tokenizer.token_to_id("<image>") == 49190
    # GQA as SmolVLM-256M: 9 query heads share 3 KV heads; the empty past has that shape
    assert (smol.kv.num_kv_heads, smol.kv.head_dim) == (3, 8) and smol.decoder_feeds(
        np.zeros((1, 2, smol.hidden), np.float32))["past_key_values.0.key"].shape == (1, 3, 0, 8)
    # byte-level BPE as published: the decision words are ' No' / ' Yes', one token each
    assert [smol.tokenizer.id_to_token(i) for i in smol.word_ids] == ["ĠNo", "ĠYes"]
    ids = smol.prompt.ids(CLOSE)[0].tolist()
    first = ids.index(49190)  # one unsplit tile: <fake><global-img> <image> x 64 <fake>
    assert ids[0] == 1 and ids[first - 2:first] == [49189, 49152] and ids.count(49190) == 64
    assert ids[first:first + 65] == [49190] * 64 + [49189]
    # the chat template's end: the decision is the token after "Assistant:"
    assert smol.tokenizer.decode(ids[ids.index(49279) + 1:]) == "\nAssistant:"
    assert "drives at 20 m/s; the nearest object ahead is 15 m away." in smol.prompt.text(CLOSE)
    out = smol.decide(FRAME, CLOSE, "school zone")
    assert out.label in ("go", "brake") and sum(out.probs) == pytest.approx(1.0)
    assert smol.rationale()


def test_terminate_stops_the_prefill(vlm_dirs: dict[str, Path]) -> None:
    rt = VlmRuntime(load_bundle(vlm_dirs["slow"]))
    ro = ort.RunOptions()
    ro.terminate = True
    with pytest.raises(Exception, match="terminate"):
        rt.decide(FRAME, CLOSE, run_options=ro)
    with pytest.raises(RuntimeError, match="decide"):  # no state from a cancelled prefill
        rt.rationale()
    rt.decide(FRAME, CLOSE)
    whole = len(rt.generate_ids())  # the rationale left to run: this many decoder runs
    assert whole >= 2
    rt.decide(FRAME, CLOSE)
    ro = ort.RunOptions()
    timer = threading.Timer(0.01, lambda: setattr(ro, "terminate", True))  # during the first run
    timer.start()
    with pytest.raises(RationaleAbortedError) as info:
        rt.rationale(run_options=ro)
    timer.join()
    assert info.value.tokens < whole  # stopped with tokens still to go, not at the end


def test_latency_figures(tiny: VlmRuntime, smol: VlmRuntime) -> None:
    """Decision (prefill) p50/p99 and rationale tokens/s, printed for the report."""
    for name, rt, n in (("tiny", tiny, 200), ("smolvlm-layout", smol, 30)):
        lat, prefill, tokens, secs = [], [], 0, 0.0
        for i in range(n):
            t0 = time.perf_counter()
            rt.decide(FRAME, CLOSE if i % 2 else FAR)
            lat.append((time.perf_counter() - t0) * 1e3)
            prefill.append(rt.last_ms["prefill"])
            t0 = time.perf_counter()
            tokens += len(rt.generate_ids(8))
            secs += time.perf_counter() - t0
        p50, p99 = np.percentile(lat, [50, 99])
        f50, f99 = np.percentile(prefill, [50, 99])
        print(f"{name}: decide p50 {p50:.2f} ms p99 {p99:.2f} ms (prefill alone p50 {f50:.2f} "
              f"p99 {f99:.2f}); rationale {tokens / secs:.0f} tokens/s")
        assert p50 < 100.0


# -- worker ----------------------------------------------------------------------------
@pytest.fixture
def make_worker() -> Iterator[Callable[..., ModelWorker]]:
    made: list[ModelWorker] = []

    def make(bundle: Path, **kw: Any) -> ModelWorker:
        kw.setdefault("warmup_runs", 1)
        kw.setdefault("hang_timeout_s", 5.0)
        w = ModelWorker(bundle, MonotonicClock(), **kw)
        made.append(w)
        w.start()
        assert w.wait_ready(READY_S), w.stats()
        return w

    yield make
    for w in made:
        w.stop()


def poll_until(w: ModelWorker, cond: Callable[[], bool], got: list[ModelResult],
               timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < end, f"timeout; state={w.state} stats={w.stats()}"
        got += w.poll()
        time.sleep(0.0005)


def test_worker_sends_rationale_after_decision(make_worker: Callable[..., ModelWorker],
                                               vlm_dirs: dict[str, Path]) -> None:
    w = make_worker(vlm_dirs["tiny"])
    got: list[ModelResult] = []
    rationales: list[tuple[int, str]] = []
    assert w.submit(1, FRAME, CLOSE, "school zone")
    poll_until(w, lambda: bool(got), got)
    (r,) = got
    assert r.seq == 1 and r.output is not None and r.output.brake and r.rationale
    assert w.state is WorkerState.READY  # the rationale never holds up the next frame
    poll_until(w, lambda: bool(rationales.extend(w.take_rationales()) or rationales), got)
    assert rationales == [(1, "object close ahead")]
    assert w.take_rationales() == []
    assert w.submit(2, FRAME, FAR)
    poll_until(w, lambda: bool(rationales.extend(w.take_rationales()) or len(rationales) > 1), got)
    assert rationales[1] == (2, "road clear")
    s = w.stats()
    assert (s["results"], s["rationales"], s["rationales_aborted"]) == (2, 2, 0)
    assert s["last_rationale_tokens"] == 2
    assert not w.submit(3, FRAME, FAR, "x" * 201)
    assert "context" in str(w.stats()["last_reject"])


def test_a_late_frames_rationale_is_never_delivered(make_worker: Callable[..., ModelWorker],
                                                    vlm_dirs: dict[str, Path]) -> None:
    """A result the watchdog took after its frame's publish time (the frame went out LATE, the rules'):
    its rationale was published with the frame's stamp, a model "go" beside the published decision."""
    from tiny_node.clock import ManualClock
    from tiny_node.config import make_config
    from tiny_node.sensors import RangeReading, SensorState
    from tiny_node.watchdog import Frame, Watchdog

    w = make_worker(vlm_dirs["tiny"])
    clock = ManualClock(100.0)
    cfg = make_config()
    sensors = SensorState(cfg.rules)
    sensors.update_range(RangeReading(80.0, 0.2, 150.0, 0, clock.now()))
    sensors.update_odometry(10.0, clock.now())

    class Port:
        busy_seq = property(lambda _: w.busy_seq)

        def submit(self, seq: int, image: Any, features: Any, t: float) -> bool:
            return w.submit(seq, image, features, frame_time_s=t)

        def cancel(self, seq: int) -> None:
            w.cancel(seq)

    wd = Watchdog(cfg, sensors, clock, Port())
    for order in ("result first", "deadline first"):  # the deadline thread's poll, then its tick; and the other way
        wd.on_frame(Frame(round(clock.now() * 1e9), clock.now(), FRAME))
        seq = w.busy_seq
        assert seq is not None
        time.sleep(0.5)  # the worker answers and explains while the deadline thread is held up
        clock.advance(0.2)  # past the frame's publish time
        decisions = [] if order == "result first" else wd.on_tick()
        for r in w.poll():
            decisions += wd.on_model_result(r.seq, r.output, error=r.error, cancelled=r.cancelled)
        decisions += wd.on_tick()
        (d,) = [x for x in decisions if x.frame_id == seq]
        assert d.model_state.value == "late", order
        time.sleep(0.3)
        w.poll()
        assert w.take_rationales() == [], order
    s = w.stats()
    assert s["rationales"] == 0 and s["rationales_aborted"] >= 1


def test_the_node_parameter_only_lowers_the_bundles_rationale_length(make_worker: Callable[..., ModelWorker],
                                                                      vlm_dirs: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    """A bundle that generates no rationale (max 0) generates none, whatever the node's parameter says."""
    bundle = copy_of(vlm_dirs, "tiny", tmp_path)
    edit_manifest(bundle, lambda m: m["vlm"].update(max_rationale_tokens=0))
    w = make_worker(bundle, rationale_max_tokens=24)  # the node's default
    got: list[ModelResult] = []
    assert w.submit(1, FRAME, CLOSE)
    poll_until(w, lambda: bool(got), got)
    assert got[0].output is not None and not got[0].rationale
    time.sleep(0.2)
    assert w.take_rationales() == [] and w.stats()["rationales"] == 0
    short = make_worker(vlm_dirs["tiny"], rationale_max_tokens=1)  # the bundle allows 8
    assert short.submit(1, FRAME, CLOSE)
    rationales: list[tuple[int, str]] = []
    poll_until(short, lambda: bool(rationales.extend(short.take_rationales()) or rationales), got)
    assert rationales == [(1, "object")] and short.stats()["last_rationale_tokens"] == 1


def test_new_job_aborts_a_running_rationale(make_worker: Callable[..., ModelWorker],
                                            vlm_dirs: dict[str, Path]) -> None:
    w = make_worker(vlm_dirs["slow"])
    got: list[ModelResult] = []
    rationales: list[tuple[int, str]] = []

    def take(n: int = 1) -> bool:
        rationales.extend(w.take_rationales())
        return len(rationales) >= n

    assert w.submit(1, FRAME, CLOSE)  # an uninterrupted rationale, for scale
    poll_until(w, take, got)
    full_ms = float(w.stats()["last_rationale_ms"])
    assert rationales == [(1, "object close ahead")]
    assert w.submit(2, FRAME, CLOSE)
    poll_until(w, lambda: len(got) == 2, got)
    assert got[1].rationale  # seq 2's rationale starts now
    time.sleep(0.01)
    t0 = time.monotonic()
    assert w.submit(3, FRAME, FAR)  # READY while the rationale runs; this job aborts it
    poll_until(w, lambda: len(got) == 3, got)
    turnaround_ms = (time.monotonic() - t0) * 1e3
    r3 = got[2]
    assert r3.seq == 3 and r3.output is not None and not r3.output.brake
    waited_ms = turnaround_ms - r3.infer_ms
    print(f"rationale {full_ms:.0f} ms uninterrupted; job 3 turnaround {turnaround_ms:.1f} ms "
          f"(decide {r3.infer_ms:.1f} ms, waited {waited_ms:.1f} ms)")
    assert waited_ms < 0.5 * full_ms
    poll_until(w, lambda: take(2) and w.stats()["rationales_aborted"] == 1, got)
    assert rationales == [(1, "object close ahead"), (3, "road clear")]  # never seq 2's
    # a cancel aborts the running rationale of its frame too
    assert w.submit(4, FRAME, CLOSE)
    poll_until(w, lambda: len(got) == 4, got)
    w.cancel(4)
    poll_until(w, lambda: w.stats()["rationales_aborted"] == 2, got)
    time.sleep(0.05)
    got += w.poll()
    assert w.take_rationales() == [] and len(got) == 4 and w.state is WorkerState.READY


def _smolvlm_with_detector(vlm_dirs: dict[str, Path], tmp_path: Path) -> Path:
    """The SmolVLM-layout bundle with a VRU detector and one track slot in its prompt."""
    from onnx import TensorProto, helper, numpy_helper

    from tiny_node.model.bundle import write_manifest

    bundle = copy_of(vlm_dirs, "smolvlm", tmp_path)
    # a detector with one bright cell: heat from the red channel, pooled to the stride-8 grid
    graph = helper.make_graph([
        helper.make_node("Slice", ["pixel_values", "s", "e", "ax"], ["red"]),
        helper.make_node("AveragePool", ["red"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Sigmoid", ["pooled"], ["heat"]),
        helper.make_node("Mul", ["heat", "zero"], ["z"]),
        helper.make_node("Concat", ["z", "z"], ["offset"], axis=1)],
        "det", [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, 512, 512])],
        [helper.make_tensor_value_info("heat", TensorProto.FLOAT, [1, 1, 64, 64]),
         helper.make_tensor_value_info("offset", TensorProto.FLOAT, [1, 2, 64, 64])],
        [numpy_helper.from_array(np.array([0], np.int64), "s"), numpy_helper.from_array(np.array([1], np.int64), "e"),
         numpy_helper.from_array(np.array([1], np.int64), "ax"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, bundle / "onnx" / "vru_detector.onnx")
    doc = yaml.safe_load((bundle / "manifest.yaml").read_text())
    doc["inputs"]["image"]["roi"] = [0, 512, 0, 512]
    doc["inputs"]["sensors"]["features"] += ["vru0_present", "vru0_dx", "vru0_y", "vru0_vy"]
    doc["vlm"]["tracking"] = {"detector": "vru_detector", "tracks": 1, "min_score": 0.5, "sigma_px": 1.0,
                              "stride": 8}
    write_manifest(bundle, name="smolvlm+tracking", kind="vlm", latency_budget_ms=30.0,
                   files={k: v["path"] for k, v in doc["files"].items()} | {"vru_detector": "onnx/vru_detector.onnx"},
                   inputs=doc["inputs"], outputs=doc["outputs"], vlm=doc["vlm"], runtime=doc["runtime"])
    return bundle


def test_a_smolvlm_export_with_a_vru_detector_feeds_it_the_image_tensor(vlm_dirs: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    """The SmolVLM tile is [1, 1, C, H, W] for the vision encoder; the detector takes [1, C, H, W]."""
    rt = VlmRuntime(load_bundle(_smolvlm_with_detector(vlm_dirs, tmp_path)))
    assert rt.tracking is not None
    out = rt.decide(np.zeros((480, 640, 3), np.uint8), {"ego_speed": 5.0}, time_s=0.0)
    assert 0.0 <= out.p_brake <= 1.0 and rt.tracking.last_detector_ms > 0.0  # the detector ran on the tile


def test_the_odometrys_yaw_rate_reaches_the_tracker(vlm_dirs: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """nav_msgs/Odometry -> sensor state -> model features -> the tracker's prediction; a NaN yaw rate
    (which the node's odometry fault keeps from the model anyway) is an error, never a straight road."""
    pytest.importorskip("rclpy")
    from nav_msgs.msg import Odometry

    from tiny_node.config import RuleConfig
    from tiny_node.ros.convert import odom_speed, odom_yaw_rate
    from tiny_node.sensors import RangeReading, SensorState

    rt = VlmRuntime(load_bundle(_smolvlm_with_detector(vlm_dirs, tmp_path)))
    assert rt.tracking is not None
    tracker, seen = rt.tracking.tracker, []
    update = tracker.update

    def spy(time_s: float, detections: Any, ego_speed: float, yaw_rate: float = 0.0) -> Any:
        seen.append((ego_speed, yaw_rate))
        return update(time_s, detections, ego_speed, yaw_rate)

    monkeypatch.setattr(tracker, "update", spy)
    msg = Odometry()
    msg.twist.twist.linear.x, msg.twist.twist.angular.z = 5.0, 0.15
    sensors = SensorState(RuleConfig())
    sensors.update_range(RangeReading(math.inf, 0.2, 150.0, 0, 0.0))
    sensors.update_odometry(odom_speed(msg), 0.0, odom_yaw_rate(msg))
    frame = np.zeros((480, 640, 3), np.uint8)
    rt.decide(frame, sensors.snapshot(0.01).features(), time_s=0.0)
    assert seen == [(5.0, 0.15)]
    with pytest.raises(ValueError, match="ego_yaw_rate"):
        rt.decide(frame, {"ego_speed": 5.0, "ego_yaw_rate": math.nan}, time_s=0.1)
    assert len(seen) == 1


def test_on_a_curve_the_conflict_test_covers_the_bodys_inner_side(vlm_dirs: dict[str, Path], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A 10 m left turn at 5 m/s: a person standing 1.63 m inside the bumper's arc, 4.6 m ahead, is in
    the body's sweep (it runs 0.63 m inside that arc); 1.63 m outside it is not (review, 2026-12-06)."""
    bundle = _smolvlm_with_detector(vlm_dirs, tmp_path)
    doc = yaml.safe_load((bundle / "manifest.yaml").read_text())
    doc["vlm"]["tracking"]["conflict"] = {"brake_within_s": 1.5}
    (bundle / "manifest.yaml").write_text(yaml.safe_dump(doc))
    rt = VlmRuntime(load_bundle(bundle))
    assert rt.tracking is not None
    speed, yaw = 5.0, 0.5
    closing = -math.hypot(rt.tracking.tracker.cfg.rear_axle_m, speed / yaw) * yaw  # standing: the bumper's speed
    frame = np.zeros((480, 640, 3), np.uint8)
    got = {}
    for side in (1.0, -1.0):  # inner (left) side, outer side
        rec = np.array([[1.0, 4.6, side * 1.63, 0.0, closing]], np.float32)
        monkeypatch.setattr(rt.tracking.tracker, "records", lambda n, every=False, rec=rec: rec)
        got[side] = rt.decide(frame, {"ego_speed": speed, "ego_yaw_rate": yaw}, time_s=len(got) * 0.1).conflict_s
    assert got[1.0] < 1.0 and got[-1.0] == math.inf  # reached in 4.6 / 5.3 s; before: inf on both sides


def test_a_cancel_for_the_next_job_outlives_the_previous_rationale(tiny: VlmRuntime) -> None:
    """Job 2 and its cancel reach the worker before its main thread starts job 1's rationale.

    That rationale is skipped (a job waits), and job 2 must still be cancelled: run to the end
    instead, the node's "cancel unacknowledged" hang timer could kill a healthy worker.
    """
    import multiprocessing as mp

    from tiny_node.model.protocol import Job
    from tiny_node.model.worker_main import _Server

    recv, send = mp.Pipe(duplex=False)
    server = _Server(tiny, None, send, 0.0)  # type: ignore[arg-type]  # no frame is read
    server._jobs.put(Job(2, 0, dict(CLOSE)))  # what the control thread does with Job, then Cancel
    server._cancel(2)
    tiny.decide(FRAME, CLOSE)  # job 1's prefill, which its rationale would continue
    server._explain(1)
    result = server._run(server._jobs.get_nowait())
    assert result.seq == 2 and result.cancelled and result.output is None
    assert server._deferred is not None and server._deferred.aborted  # job 1's notice, after job 2's reply
    recv.close()
    send.close()


def rewrite_graph(bundle: Path, rel: str, change: Callable[[onnx.ModelProto], None],
                  image: dict[str, Any] | None = None) -> None:
    """Edit one graph of a bundle (and inputs.image), then re-hash the manifest."""
    from tiny_node.model.bundle import write_manifest

    model = onnx.load(bundle / rel)
    change(model)
    onnx.save(model, bundle / rel)
    doc = yaml.safe_load((bundle / "manifest.yaml").read_text())
    doc["inputs"]["image"].update(image or {})
    write_manifest(bundle, name=doc["name"], kind="vlm", latency_budget_ms=doc["latency_budget_ms"],
                   files={k: v["path"] for k, v in doc["files"].items()}, inputs=doc["inputs"],
                   outputs=doc["outputs"], vlm=doc["vlm"], runtime=doc["runtime"])


def symbolic_image_size(model: onnx.ModelProto) -> None:
    """As published: height and width of pixel_values / pixel_attention_mask are symbolic."""
    for inp in model.graph.input:
        for dim, name in zip(inp.type.tensor_type.shape.dim[-2:], ("height", "width"), strict=True):
            dim.dim_param = name


def test_a_graph_that_cannot_run_at_the_manifest_size_is_a_bad_bundle(
        vlm_dirs: dict[str, Path], tmp_path: Path) -> None:
    """A SmolVLM export (symbolic H, W) with another image size passes the static checks but not a run.

    It must fail once, naming the graph and the size, not as a worker init failure restarted forever.
    """
    bundle = copy_of(vlm_dirs, "smolvlm", tmp_path)
    rewrite_graph(bundle, "onnx/vision_encoder.onnx", symbolic_image_size, {"height": 384, "width": 384})
    with pytest.raises(BundleError) as info:
        VlmRuntime(load_bundle(bundle))
    msg = str(info.value)
    assert "inputs.image" in msg and "vision_encoder.onnx" in msg and "[1, 1, 3, 384, 384]" in msg
    w = ModelWorker(bundle, MonotonicClock(), warmup_runs=1, backoff_initial_s=0.05, backoff_max_s=0.1)
    try:
        w.start()
        assert not w.wait_ready(READY_S)
        assert w.state is WorkerState.FAILED and w.restarts == 0
        assert "vision_encoder.onnx" in (w.last_error or "")
        time.sleep(0.3)
        assert w.poll() == [] and w.state is WorkerState.FAILED and w.restarts == 0
    finally:
        w.stop()


def test_embed_tokens_and_decoder_may_differ_in_float_type(vlm_dirs: dict[str, Path], tiny: VlmRuntime,
                                                            tmp_path: Path) -> None:
    """Each graph may be float16 or float32 (as exports mix them: embed_tokens_fp16 + a q4 decoder)."""
    from onnx import TensorProto, helper

    def fp16_out(model: onnx.ModelProto) -> None:
        g = model.graph
        g.node[0].output[0] = "embeds32"
        g.node.append(helper.make_node("Cast", ["embeds32"], ["inputs_embeds"], to=TensorProto.FLOAT16))
        g.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16

    bundle = copy_of(vlm_dirs, "tiny", tmp_path)
    rewrite_graph(bundle, "onnx/embed_tokens.onnx", fp16_out)
    rt = VlmRuntime(load_bundle(bundle))
    out, ref = rt.decide(FRAME, CLOSE), tiny.decide(FRAME, CLOSE)
    assert out.brake and out.p_brake == pytest.approx(ref.p_brake, abs=1e-2)
    assert rt.rationale() == "object close ahead"


def test_a_decoder_without_a_sequence_axis_in_its_logits_is_named(vlm_dirs: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    """Logits [1, vocab] (no S axis): the runtime reads [1, S, vocab]; say so at load."""
    from onnx import helper

    def two_d(model: onnx.ModelProto) -> None:
        g = model.graph
        (node,) = [n for n in g.node if "logits" in n.output]
        node.output[0] = "logits3"
        g.node.append(helper.make_node("ReduceMean", ["logits3"], ["logits"], axes=[1], keepdims=0))
        g.output[0].type.tensor_type.shape.dim.pop(1)

    bundle = copy_of(vlm_dirs, "tiny", tmp_path)
    rewrite_graph(bundle, "onnx/decoder_model_merged.onnx", two_d)
    with pytest.raises(BundleError, match=r"outputs.decision.name: files.decoder: .*'logits' is \[1, \d+\], "
                                          r"expected \[1, S, vocab\]"):
        VlmRuntime(load_bundle(bundle))


def test_a_decoder_that_cannot_prefill_the_prompt_or_grow_its_cache_is_named_at_load(
        vlm_dirs: dict[str, Path], tmp_path: Path) -> None:
    """Both passed the one-token probe, then failed on the first frame or rationale: a worker
    restarted every 10 s, no file named (review 2026-12-07)."""
    from onnx import helper, numpy_helper

    def one_token(model: onnx.ModelProto) -> None:
        for i in model.graph.input:
            if i.name in ("inputs_embeds", "position_ids"):
                dim = i.type.tensor_type.shape.dim[1]
                dim.ClearField("dim_param")
                dim.dim_value = 1

    def last_only(model: onnx.ModelProto) -> None:  # present.* keeps only the newest position
        g = model.graph
        outs = {o.name for o in g.output if o.name.startswith("present.")}
        for n in g.node:
            n.output[:] = [f"{o}_full" if o in outs else o for o in n.output]
            n.input[:] = [f"{o}_full" if o in outs else o for o in n.input]
        g.initializer.extend([numpy_helper.from_array(np.array([v], np.int64), k)
                              for k, v in (("s_m1", -1), ("s_big", 2**62), ("s_ax2", 2))])
        g.node.extend(helper.make_node("Slice", [f"{o}_full", "s_m1", "s_big", "s_ax2"], [o]) for o in sorted(outs))

    bundle = copy_of(vlm_dirs, "smolvlm", tmp_path)
    rewrite_graph(bundle, "onnx/decoder_model_merged.onnx", one_token)
    with pytest.raises(BundleError, match=r"files.decoder: .*decoder_model_merged.onnx \(the rendered prompt, "
                                          r"\d+ tokens\) cannot run on inputs_embeds \[1, \d+, \d+\]"):
        VlmRuntime(load_bundle(bundle))
    bundle = Path(shutil.copytree(vlm_dirs["smolvlm"], tmp_path / "kv"))
    rewrite_graph(bundle, "onnx/decoder_model_merged.onnx", last_only)
    with pytest.raises(BundleError, match=r"after the rendered prompt \((\d+) tokens\): present.0.key is "
                                          r"\[1, \d+, 1, \d+\], expected \[1, \d+, \1, \d+\]"):
        VlmRuntime(load_bundle(bundle))


def test_warm_up_decodes_a_rationale_no_longer_than_asked(smol: VlmRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's cap, not the manifest's (a manifest's 3000 tokens took 10 s of the start budget)."""
    asked: list[int | None] = []
    real = smol.rationale
    monkeypatch.setattr(smol, "rationale", lambda n=None, *a: asked.append(n) or real(n, *a))
    smol.warm_up(1, 3)
    smol.warm_up(1, 0)
    smol.warm_up(1, 10_000)
    assert asked == [3, smol.spec.max_rationale_tokens]  # none for 0; never past the bundle's own


@pytest.mark.parametrize(("raised", "permanent"), [("ort", True), ("memory", False), ("ort_memory", False)])
def test_a_warm_up_failure_is_a_bundle_fault_not_a_restart(vlm_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                           raised: str, permanent: bool) -> None:
    """The bundle's graphs on its own shapes fail the same at every start: no restart loop (review
    2026-12-07). Out of memory may be this start's only."""
    from multiprocessing import Pipe

    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, RuntimeException

    from tiny_node.model import worker_main as wm
    from tiny_node.model.protocol import Fatal, WorkerConfig

    def fail(self: VlmRuntime, runs: int, rationale_tokens: int | None = None) -> list[float]:
        if raised == "ort_memory":  # onnxruntime's arena, not a Python MemoryError (review of the fix)
            raise RuntimeException("Failed to allocate memory for requested buffer of size 123456")
        raise Fail("Add node: broadcast 2 by 189") if raised == "ort" else MemoryError()

    monkeypatch.setattr(VlmRuntime, "warm_up", fail)
    monkeypatch.setattr(wm, "reset_scheduling", lambda nice=0: "")  # this test process's own scheduling stays
    parent, child = Pipe()
    cfg = WorkerConfig(str(vlm_dirs["tiny"]), (), (480, 640, 3), 1, 1, 0.0)
    with pytest.raises(SystemExit) as ended:
        wm.worker_main(child, child, cfg)
    fatal = parent.recv()
    assert isinstance(fatal, Fatal) and fatal.permanent is permanent
    assert ended.value.code == (wm.EXIT_BAD_BUNDLE if permanent else wm.EXIT_INIT_FAILED)
    if permanent:
        assert fatal.message.startswith(f"bundle {vlm_dirs['tiny']}: its warm-up on its own input shapes failed "
                                        "(Fail: Add node: broadcast 2 by 189)"), fatal.message


@pytest.mark.parametrize("setting", ["padding", "truncation"])
def test_a_tokenizer_saved_with_padding_or_truncation_still_sees_the_whole_prompt(
        vlm_dirs: dict[str, Path], tiny: VlmRuntime, tmp_path: Path, setting: str) -> None:
    """tokenizer.json may carry padding / truncation (saved after enable_padding / enable_truncation).

    The decision is the next-token logits after the prompt's LAST token: pads after it, or a
    prompt cut short (by a long operator context, say), would decide on something else.
    """
    from tokenizers import Tokenizer

    from tiny_node.model.bundle import write_manifest

    bundle = copy_of(vlm_dirs, "tiny", tmp_path)
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    if setting == "padding":
        tok.enable_padding(length=40, pad_id=0, pad_token="<unk>")
    else:
        tok.enable_truncation(max_length=24)
    tok.save(str(bundle / "tokenizer.json"))
    doc = yaml.safe_load((bundle / "manifest.yaml").read_text())
    write_manifest(bundle, name=doc["name"], kind="vlm", latency_budget_ms=doc["latency_budget_ms"],
                   files={k: v["path"] for k, v in doc["files"].items()}, inputs=doc["inputs"],
                   outputs=doc["outputs"], vlm=doc["vlm"], runtime=doc["runtime"])
    rt = VlmRuntime(load_bundle(bundle))
    for context in ("", "child crossing from the left " * 6):
        assert rt.prompt.ids(CLOSE, context).tolist() == tiny.prompt.ids(CLOSE, context).tolist()
    assert rt.decide(FRAME, FAR).p_brake == pytest.approx(tiny.decide(FRAME, FAR).p_brake)


# -- a SmolVLM export as published: docs/BUNDLE.md's steps, quantized and float16 variants --------
def _published_export(vlm_dirs: dict[str, Path], dest: Path, variant: str) -> Path:
    """The generated SmolVLM-layout graphs under the published variant's file names, no manifest.

    ``int8``: dynamic int8 (``quantize_dynamic``, QInt8 weights: ConvInteger, MatMulInteger) as
    the ``_int8`` files; ``fp16``: float16 inputs, outputs and KV cache as the ``_fp16`` files.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from tiny_node.model.testvlm import to_float16

    src = vlm_dirs["smolvlm"]
    (dest / "onnx").mkdir(parents=True)
    for name in ("tokenizer.json", "config.json", "preprocessor_config.json", "generation_config.json"):
        shutil.copy(src / name, dest / name)
    for graph in ("vision_encoder", "embed_tokens", "decoder_model_merged"):
        out = dest / "onnx" / f"{graph}_{variant}.onnx"
        if variant == "int8":
            quantize_dynamic(src / "onnx" / f"{graph}.onnx", out, weight_type=QuantType.QInt8)
        else:
            onnx.save(to_float16(onnx.load(src / "onnx" / f"{graph}.onnx")), out)
    return dest


def _documented_manifest(export: Path, variant: str) -> None:
    """Run docs/BUNDLE.md's ``write_manifest`` block as it stands, on ``export`` (only the directory and variant set)."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "BUNDLE.md").read_text(encoding="utf-8")
    section = doc.split("### Running a SmolVLM-style export", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    download = section.split("hf download ", 1)[1].split("```", 1)[0]
    assert code.count('"SmolVLM-256M-Instruct", name=') == 1 and code.count("_int8.onnx") == 3
    for rel in ("onnx/vision_encoder_int8.onnx", "onnx/embed_tokens_int8.onnx",
                "onnx/decoder_model_merged_int8.onnx", "tokenizer.json", "config.json"):
        assert rel in code and rel in download  # the download fetches what the manifest names
    code = code.replace('"SmolVLM-256M-Instruct", name=', f"{str(export)!r}, name=").replace(
        "_int8.onnx", f"_{variant}.onnx")
    exec(compile(code, "docs/BUNDLE.md", "exec"), {})


def _ort_before(major: int, minor: int) -> bool:
    import onnxruntime as ort

    return tuple(int(x) for x in ort.__version__.split(".")[:2]) < (major, minor)


def test_an_op_without_a_kernel_here_is_named_with_what_to_do() -> None:
    from tiny_node.model.runtime import _kernel_hint

    hint = _kernel_hint("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for "
                        "ConvInteger(10) node with name '/patch_embedding/Conv_quant'")
    assert "added in 1.24: use onnxruntime >= 1.24, or the export's uint8-weight variant" in hint
    assert _kernel_hint("Could not find an implementation for Foo(1)") == ""


@pytest.mark.parametrize("variant", ["int8", "fp16"])
def test_the_documented_steps_run_a_published_style_smolvlm_export(vlm_dirs: dict[str, Path], smol: VlmRuntime,
                                                                   tmp_path: Path, variant: str) -> None:
    """docs/BUNDLE.md's manifest, written by its own code, over an export laid out as published.

    Before: the generated tokenizer was WordLevel, where the documented words ' No' / ' Yes' are
    unknown, so the documented manifest was never run; the float16 path had no fixture at all.
    """
    export = _published_export(vlm_dirs, tmp_path / "SmolVLM-256M-Instruct", variant)
    _documented_manifest(export, variant)
    if variant == "int8" and _ort_before(1, 24):  # no int8-weight ConvInteger kernel: said so, with what to do
        with pytest.raises(BundleError, match=r"ConvInteger kernel for int8 weights, added in 1\.24: use "):
            VlmRuntime(load_bundle(export))
        return
    rt = VlmRuntime(load_bundle(export))
    assert rt.bundle.files["decoder"].rel == f"onnx/decoder_model_merged_{variant}.onnx"
    assert rt.word_ids == smol.word_ids and rt.eos_id == 49279 and rt.kv == smol.kv
    want = np.float16 if variant == "fp16" else np.float32
    assert rt._pixel_dtype is want and rt._kv_dtype is want and rt._embeds_dtype is want
    assert rt.prompt.text(CLOSE, "school zone") == smol.prompt.text(CLOSE, "school zone")  # the same prompt
    rng = np.random.default_rng(7)
    for feats in (CLOSE, FAR):
        frame = rng.integers(0, 256, (480, 640, 3), np.uint8)
        got, ref = rt.decide(frame, feats, "school zone"), smol.decide(frame, feats, "school zone")
        assert got.probs == pytest.approx(ref.probs, abs=0.05)
        cached = rt.generate_ids(6)
        assert len(cached) == 6  # random weights: no eos
        if variant == "fp16":  # int8 quantizes activations per run: a step alone != the whole sequence
            rt.decide(frame, feats, "school zone")
            assert rt.generate_ids(6, use_cache=False) == cached


# -- config.json values, deep nesting, an fp16 export's image dtype ----------------------------
def edit_config(bundle: Path, change: Callable[[dict[str, Any]], None], text: str | None = None) -> None:
    """Change config.json's text_config (or replace the file with ``text``), then re-hash it in the manifest."""
    import json

    path = bundle / "config.json"
    if text is None:
        doc = json.loads(path.read_text())
        change(doc["text_config"])
        text = json.dumps(doc)
    path.write_text(text)
    edit_manifest(bundle, lambda m: m["files"]["config"].update(sha256=hash_file(path)))


@pytest.mark.parametrize(("key", "value"), [("num_key_value_heads", "3"), ("num_hidden_layers", "2"),
                                            ("head_dim", 8.5), ("num_key_value_heads", True)])
def test_config_counts_must_be_whole_numbers(vlm_dirs: dict[str, Path], tmp_path: Path, key: str,
                                             value: Any) -> None:
    """``"3"`` against the graph's static 3 read "files.config says 3, ... has 3" (review)."""
    bundle = copy_of(vlm_dirs, "smolvlm", tmp_path)
    edit_config(bundle, lambda t: t.update({key: value}))
    with pytest.raises(BundleError) as info:
        VlmRuntime(load_bundle(bundle))
    assert str(info.value) == f"files.config: text_config.{key} {value!r} must be a whole number above 0"


def test_config_counts_are_not_cast_where_the_graph_is_dynamic(vlm_dirs: dict[str, Path], tmp_path: Path) -> None:
    """The tiny graph leaves kv heads symbolic: without vlm.kv, config.json's ``"1"`` went through int()."""
    from tiny_node.model.bundle import KvSpec

    bundle = copy_of(vlm_dirs, "tiny", tmp_path)
    edit_manifest(bundle, lambda m: m["vlm"].pop("kv"))
    edit_config(bundle, lambda t: t.update(num_key_value_heads="1"))
    with pytest.raises(BundleError, match=r"^files\.config: text_config\.num_key_value_heads '1' must be a whole"):
        VlmRuntime(load_bundle(bundle))
    edit_config(bundle, lambda t: t.update(num_key_value_heads=1.0, head_dim=16.0))  # whole: taken
    assert VlmRuntime(load_bundle(bundle)).kv == KvSpec(num_layers=2, num_kv_heads=1, head_dim=16)


def test_a_config_that_contradicts_the_manifest_is_refused_where_the_graph_is_dynamic(
        vlm_dirs: dict[str, Path], tmp_path: Path) -> None:
    """The tiny graph leaves kv heads and head_dim symbolic: a config.json of another model (7 heads of
    99) loaded beside the manifest's 1 of 16, and a text_config that is no object was read past (review
    2026-12-08); BUNDLE.md says whatever is given must agree."""
    import json

    bundle = copy_of(vlm_dirs, "tiny", tmp_path)
    edit_config(bundle, lambda t: t.update(num_key_value_heads=7, head_dim=99))
    with pytest.raises(BundleError, match=r"^vlm\.kv\.num_kv_heads: manifest vlm\.kv says 1, files\.config says 7$"):
        VlmRuntime(load_bundle(bundle))
    edit_config(bundle, lambda t: t.update(num_key_value_heads=1))
    with pytest.raises(BundleError, match=r"^vlm\.kv\.head_dim: manifest vlm\.kv says 16, files\.config says 99$"):
        VlmRuntime(load_bundle(bundle))
    doc = json.loads((bundle / "config.json").read_text())
    edit_config(bundle, lambda t: None, json.dumps({**doc, "text_config": [1]}))
    with pytest.raises(BundleError, match=r"^files\.config: text_config is list, not an object$"):
        VlmRuntime(load_bundle(bundle))


def test_a_config_nested_too_deeply_is_a_bundle_error(vlm_dirs: dict[str, Path], tmp_path: Path) -> None:
    """``'[' * 100000`` (100 kB, under the 1 MiB limit) raised a bare RecursionError out of the runtime's load."""
    bundle = copy_of(vlm_dirs, "tiny", tmp_path)
    edit_config(bundle, lambda t: None, "[" * 100_000)
    with pytest.raises(BundleError, match=rf"^files\.config: {bundle.resolve()}/config\.json: nested too deeply to "
                                          r"parse \(RecursionError: maximum recursion depth exceeded"):
        VlmRuntime(load_bundle(bundle))


def test_a_tokenizer_nested_too_deeply_is_a_bundle_error(vlm_dirs: dict[str, Path], tmp_path: Path) -> None:
    """The tokenizers library (Rust, serde) stops at its own recursion limit: a BundleError already, kept so."""
    bundle = copy_of(vlm_dirs, "tiny", tmp_path)
    path = bundle / "tokenizer.json"
    depth = 100_000
    deep = '{"type":"Sequence","normalizers":[' * depth + '{"type":"Lowercase"}' + "]}" * depth
    text = path.read_text()
    assert '"normalizer":null' in text
    path.write_text(text.replace('"normalizer":null', f'"normalizer":{deep}', 1))
    edit_manifest(bundle, lambda m: m["files"]["tokenizer"].update(sha256=hash_file(path)))
    with pytest.raises(BundleError, match=r"^files\.tokenizer: .*: not a tokenizers JSON: recursion limit exceeded"):
        VlmRuntime(load_bundle(bundle))


def test_an_fp16_export_keeps_image_dtype_float32_as_the_error_says(vlm_dirs: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    """``dtype: float16`` for an fp16 export was refused as "not one of float32", with no word that
    float32 is right: the runtime feeds the graph the float type it declares."""
    export = _published_export(vlm_dirs, tmp_path / "SmolVLM-256M-Instruct", "fp16")
    _documented_manifest(export, "fp16")
    edit_manifest(export, lambda m: m["inputs"]["image"].update(dtype="float16"))
    with pytest.raises(BundleError, match=r"inputs\.image\.dtype: 'float16' not one of float32: it is the "
                                          r"preprocessing's type, not the graph's \(a kind: vlm graph that takes "
                                          r"float16 is fed float16"):
        load_bundle(export)
    edit_manifest(export, lambda m: m["inputs"]["image"].update(dtype="float32"))
    rt = VlmRuntime(load_bundle(export))
    assert rt._pixel_dtype is np.float16 and rt._pixels(FRAME)["pixel_values"].dtype == np.float16
