"""Ground-truth VRU tracks in the shards, the tracker error model, and the tracker bound probe."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")  # the dataset's shard layout comes from the torch model (train extra)

from tiny_node.factory import dataset
from tiny_node.factory.tracks import TRACK_FIELDS, TRACKS, degrade, vru_tracks
from tiny_node.sim.scenario import ActorSpec, Scenario, Trajectory
from tiny_node.sim.world import World

F = {f: i for i, f in enumerate(TRACK_FIELDS)}


def test_tracks_report_the_vrus_nearest_the_path_with_their_velocity() -> None:
    child = ActorSpec("child", Trajectory(14.0, -1.6, 90.0, 5.0), name="child")  # crossing from the right
    kerb = ActorSpec("adult", Trajectory(20.0, 4.5), name="kerb")  # standing on the left
    far = ActorSpec("adult", Trajectory(30.0, -6.0, 0.0, 4.0), name="far")  # walking along, further aside
    car = ActorSpec("car", Trajectory(25.0, 0.0), name="car")  # in the path, but not a VRU
    behind = ActorSpec("adult", Trajectory(-5.0, 0.0), name="behind")
    world = World(Scenario(name="t", ego_speed_kmh=36.0, actors=(child, kerb, far, car, behind)))
    t = vru_tracks(world)
    assert t.shape == (TRACKS, len(TRACK_FIELDS)) and t.dtype == np.float32
    assert t[0, F["present"]] == 1.0 and math.isclose(t[0, F["y"]], -1.6, abs_tol=1e-5)
    assert math.isclose(t[0, F["vy"]], 5.0 / 3.6, rel_tol=1e-4)  # moving left: +y
    assert math.isclose(t[0, F["vx_rel"]], -10.0, rel_tol=1e-4)  # standing still, ego at 10 m/s
    assert 10.0 < t[0, F["dx"]] < 14.0  # bumper to its near edge
    assert t[1, F["present"]] == 1.0 and math.isclose(t[1, F["y"]], 4.5, abs_tol=1e-5) and t[1, F["vy"]] == 0.0
    empty = vru_tracks(World(Scenario(name="e", ego_speed_kmh=36.0, actors=(car,))))
    assert not empty.any()


def test_degrade_loses_tracks_and_adds_lateral_velocity_noise() -> None:
    truth = np.zeros((4000, TRACKS, len(TRACK_FIELDS)), np.float32)
    truth[:, 0] = (1.0, 20.0, -2.0, 1.4, -10.0)
    exact = degrade(truth, np.random.default_rng(0), vy_noise=0.0, miss=0.0)
    np.testing.assert_array_equal(exact[:, 0, [F["present"], F["vy"]]], truth[:, 0, [F["present"], F["vy"]]])
    assert not exact[:, 1].any()  # an empty slot stays empty: no noise on nothing
    noisy = degrade(truth, np.random.default_rng(0), vy_noise=0.5, miss=0.25)
    kept = noisy[:, 0, F["present"]] == 1.0
    assert 0.7 < kept.mean() < 0.8
    assert not noisy[~kept, 0].any()  # a lost track is all zeros
    assert 0.45 < float(np.std(noisy[kept, 0, F["vy"]])) < 0.55
    assert abs(float(np.mean(noisy[kept, 0, F["vy"]])) - 1.4) < 0.05
    assert truth[0, 0, F["vy"]] == np.float32(1.4)  # the input is not changed


def test_shards_hold_tracks_and_rerun_without_rendering() -> None:
    spec = dataset.ShardSpec("val", 7, 2, 3)
    full, quick = dataset.make_shard(spec), dataset.make_shard(spec, render=False)
    assert full["vru_tracks"].shape == (len(full["brake"]), TRACKS, len(TRACK_FIELDS))
    assert quick.keys() == full.keys()
    for k in full:
        if k in ("image", "image_prev"):
            assert not quick[k].any() and quick[k].shape == full[k].shape
        else:
            np.testing.assert_array_equal(quick[k], full[k], err_msg=k)


def test_load_split_refuses_shards_with_other_columns(tmp_path: Path) -> None:
    brake, t = np.zeros(3, np.int8), np.zeros(3, np.float32)
    np.savez(tmp_path / "val-0000.npz", brake=brake, t=t)
    np.savez(tmp_path / "val-0001.npz", brake=brake, t=t, vru_tracks=np.zeros((3, TRACKS, len(TRACK_FIELDS)), np.float32))
    with pytest.raises(ValueError, match=r"val-0001\.npz: columns \['vru_tracks'\] differ"):
        dataset.load_split(sorted(tmp_path.glob("*.npz")))


def test_tracker_bound_on_old_shards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Shards without ``vru_tracks`` get them re-simulated (checked); the CLI prints one row per probe."""
    pytest.importorskip("torch")
    from tiny_node.cli import main
    from tiny_node.factory import tracker_bound

    data = tmp_path / "data"
    for split in ("train", "val", "test", "heldout"):
        for p in dataset.build_split(data, split, 1, 2, 3):
            with np.load(p, allow_pickle=False) as z:
                cols = {k: z[k] for k in z.files}
            truth = cols.pop("vru_tracks")
            np.savez_compressed(p, **cols)  # as made before the column existed
            np.testing.assert_array_equal(dataset.rerun(p, 2, 3)["vru_tracks"], truth)
    with pytest.raises(ValueError, match=r"test-0000\.npz: re-running its drives does not give its labels"):
        dataset.rerun(data / "test-0000.npz", 3, 3)
    (data / "test-0001.tmp.npz").write_bytes(b"PK\x03\x04 torn")  # an interrupted data step's leftover
    feats = tracker_bound.features(tracker_bound.load(data, "test", 2, 3), "tracks", np.random.default_rng(0),
                                   vy_noise=0.0, miss=1.0)
    assert feats.shape[1] == 4 + TRACKS * len(TRACK_FIELDS) and not feats[:, 4:].any()  # every track lost
    assert main(["model", "tracker-bound", str(data), "--epochs", "1", "--episodes", "2", "--frames", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [r.split(" | ")[0] for r in table[2:]] == ["| image", "| image+tracks (vy noise 0.3 m/s, miss 10%)",
                                                      "| tracks (vy noise 0.3 m/s, miss 10%)"]


@pytest.mark.parametrize(("argv", "wrong"), [
    (["--vy-noise", "nan"], "--vy-noise nan must be a finite number >= 0"),
    (["--vy-noise", "inf"], "--vy-noise inf must be a finite number >= 0"),
    (["--miss", "2", "--epochs", "0"], "--miss 2.0 must be in [0, 1]; --epochs 0 must be >= 1"),
])
def test_tracker_bound_names_only_the_option_that_is_wrong(argv: list[str], wrong: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # Before: nan was taken (``nan < 0`` is false), and a refusal listed all three bounds.
    from tiny_node.cli import main

    assert main(["model", "tracker-bound", str(tmp_path), *argv]) == 2
    assert capsys.readouterr().err == f"tiny-node model tracker-bound: {wrong}\n"


def test_points_mark_people_hidden_behind_a_parked_car() -> None:
    from tiny_node.factory.tracks import MAX_POINTS, vru_points
    from tiny_node.factory.vlm_torch import ROI
    from tiny_node.sim.camera import CameraModel

    view = CameraModel().view((320, 240))
    open_ = ActorSpec("adult", Trajectory(20.0, 3.0), name="open")
    hidden = ActorSpec("child", Trajectory(15.0, -3.4), name="hidden")  # behind the car, from the camera
    car = ActorSpec("parked_car", Trajectory(13.0, -2.6), name="car")
    pts = vru_points(World(Scenario(name="p", ego_speed_kmh=30.0, actors=(open_, hidden, car))), view, ROI)
    assert pts.shape == (MAX_POINTS, 3)
    assert pts[0, 2] == 0.0 and pts[1, 2] == 1.0 and not pts[2:].any()  # nearest first: the child, hidden
    foot = view.point((20.0 + view.setback, 3.0, -view.mount_height))
    assert foot is not None and np.allclose(pts[1, :2], foot[:2], atol=1e-3)
    alone = vru_points(World(Scenario(name="q", ego_speed_kmh=30.0, actors=(hidden,))), view, ROI)
    assert alone[0, 2] == 1.0  # without the car the child is in plain view


def test_a_label_for_what_the_camera_can_see_leaves_hidden_people_out() -> None:
    """A child about to step out from behind a parked car is a brake by the truth, no brake by
    what the camera shows; once in view, both say brake. A person close ahead whose feet are
    below the image window still counts as seen."""
    from tiny_node.factory.scenes import label_frame
    from tiny_node.factory.tracks import hidden_vrus, vru_points
    from tiny_node.factory.vlm_torch import ROI
    from tiny_node.sim.camera import CameraModel

    view = CameraModel().view((320, 240))
    child = ActorSpec("child", Trajectory(15.0, -3.4, 90.0, 5.0), name="child")  # 1.4 m/s towards the lane
    car = ActorSpec("parked_car", Trajectory(13.0, -2.6), name="car")
    world = World(Scenario(name="p", ego_speed_kmh=40.0, actors=(child, car)))
    assert hidden_vrus(world, view, ROI) == {"child"}
    truth, seen = label_frame(world, ""), label_frame(world, "", hidden_vrus(world, view, ROI))
    assert truth.brake and "child crossing from the right" in truth.rationale
    assert not seen.brake and seen.rationale == "clear road"
    alone = World(Scenario(name="q", ego_speed_kmh=40.0, actors=(child,)))
    assert hidden_vrus(alone, view, ROI) == frozenset() and label_frame(alone, "", frozenset()).brake
    near = World(Scenario(name="r", ego_speed_kmh=10.0, actors=(ActorSpec("adult", Trajectory(2.5, 0.0), name="a"),)))
    assert vru_points(near, view, ROI)[0, 2] == 0.0 and hidden_vrus(near, view, ROI) == frozenset()
    # a cyclist still beside the view: hidden from the window, but not occluded
    side = World(Scenario(name="s", ego_speed_kmh=20.0, actors=(ActorSpec("cyclist", Trajectory(4.0, -6.0), name="c"),
                                                                car)))
    assert hidden_vrus(side, view, ROI) == {"c"} and hidden_vrus(side, view, ROI, window=False) == frozenset()
    assert hidden_vrus(world, view, ROI, window=False) == {"child"}


def test_detector_targets_decode_back_to_the_points() -> None:
    """The factory's heat / offset targets and the runtime's decoder agree to a millipixel."""
    pytest.importorskip("torch")
    from tiny_node.factory.detector import STRIDE, targets
    from tiny_node.factory.vlm_torch import ROI
    from tiny_node.model.detect import peaks

    pts = np.zeros((1, 4, 3), np.float32)
    pts[0, 0] = (101.3, 131.9, 1.0)
    pts[0, 1] = (250.0, 160.2, 1.0)
    pts[0, 2] = (60.0, 125.0, 0.0)  # hidden: no target
    heat, off, mask = targets(pts)
    assert mask.sum() == 2
    found = peaks(heat[0, 0].numpy(), off[0].numpy(), stride=STRIDE, origin=(ROI[0], ROI[2]), min_score=0.99)
    assert sorted((round(u, 3), round(v, 3)) for u, v, _ in found) == [(101.3, 131.9), (250.0, 160.2)]


def test_every_detector_size_maps_the_roi_onto_the_decoders_grid() -> None:
    """Each named detector gives one heat cell per 8-px cell of the ROI, as ``peaks`` decodes it.

    The fine stem reaches stride 4 in two stride-2 convs, the patch stem in one 4x4 conv: both
    must land on the same grid, or the runtime would place every foot point wrongly.
    """
    torch = pytest.importorskip("torch")
    from tiny_node.factory.detector import SIZES, VruDetector, grid_shape, mflops
    from tiny_node.factory.vlm_torch import IMAGE_H, IMAGE_W

    for name, size in SIZES.items():
        heat, off = VruDetector(size).eval()(torch.zeros(1, 3, IMAGE_H, IMAGE_W))
        assert tuple(heat.shape[-2:]) == tuple(off.shape[-2:]) == grid_shape(), name
        assert off.shape[1] == 2, name
    assert mflops(VruDetector(SIZES["fine"])) < mflops(VruDetector(SIZES["patch"]))
    # "lean" exists to keep a whole decision within 5 % of the teacher's MFLOPs:
    # (10.2 language model + detector) / (285.4 + detector) <= 0.05 needs a detector <= 4.29
    assert mflops(VruDetector(SIZES["lean"])) < 4.29


def test_a_seed_initialises_each_detector_size_as_the_measured_builds_did() -> None:
    """The weights a seed draws for each size are pinned: `model build` rebuilds the shipped
    detector byte for byte only if the layers are created in the same order with the same shapes
    (a reordered constructor once drew other weights for every size)."""
    torch = pytest.importorskip("torch")
    from tiny_node.factory.detector import SIZES, VruDetector

    def drawn(name: str) -> str:
        torch.manual_seed(401)  # the shipped recipe's detector seed: 4 * 100 + SEED_ORDER.index("detector")
        state = VruDetector(SIZES[name]).state_dict()
        return hashlib.sha256(b"".join(v.numpy().tobytes() for v in state.values())).hexdigest()[:16]

    assert {name: drawn(name) for name in SIZES} == {
        "patch": "cb05ed4ba2fecfe2", "fine": "f91dff3238d3de3c", "lean": "00aa02a432bc5dd9"}


def test_detector_size_is_checked_and_keeps_older_build_digests(tmp_path: Path) -> None:
    """An unknown size is refused by name; "patch" (every build before the field) keeps its digest."""
    pytest.importorskip("torch")
    from tiny_node.factory.build import Build, BuildError
    from tiny_node.factory.config import TRACKED

    with pytest.raises(BuildError, match="detector_size 'huge'"):
        Build(replace(TRACKED, detector_size="huge"), tmp_path)
    # the digest out/model-tracked recorded (the shipped language model's build, patch detector)
    assert replace(TRACKED, detector_size="patch").digest() == "8dcb1c29ea3f1812"
    assert TRACKED.digest() != "8dcb1c29ea3f1812"  # a fine-stem build is another build
