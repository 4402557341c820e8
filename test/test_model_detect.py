"""VRU detections: heat-map decoding and the flat-road camera geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tiny_node.camera import Pinhole
from tiny_node.model.detect import detections, peaks
from tiny_node.sim.camera import CameraModel


@pytest.mark.parametrize(("pitch", "height"), [(0.0, 1.3), (1.5, 1.2), (-1.5, 1.45)])
def test_ground_inverts_the_simulator_projection(pitch: float, height: float) -> None:
    view = CameraModel(pitch_deg=pitch, mount_height_m=height).view((320, 240))
    cam = Pinhole(pitch_deg=pitch, mount_height_m=height, setback_m=view.setback)
    for dx, y in ((5.0, 0.0), (12.0, -3.5), (30.0, 2.0), (55.0, -6.0)):
        pt = view.point((dx + view.setback, y, -height))
        assert pt is not None
        g = cam.ground(pt[0], pt[1])
        assert g is not None and math.isclose(g[0], dx, rel_tol=1e-6) and math.isclose(g[1], y, abs_tol=1e-6)
    assert cam.ground(160.0, cam.height / 2.0 - cam.fx * math.tan(math.radians(pitch)) - 1.0) is None  # sky


def test_a_pixel_is_metres_of_range_far_away_and_centimetres_across() -> None:
    cam = Pinhole()
    near, far = cam.ground_cov(200.0, 160.0, 1.0), cam.ground_cov(200.0, 126.0, 1.0)
    assert near is not None and far is not None
    assert math.sqrt(far[0, 0]) > 5 * math.sqrt(near[0, 0])  # range error grows ~ with range^2
    evals = np.linalg.eigvalsh(far)
    assert evals[1] > 50 * evals[0]  # long along the line of sight, thin across it


def test_peaks_finds_local_maxima_with_their_sub_cell_position() -> None:
    heat = np.zeros((5, 8), np.float32)
    heat[1, 2], heat[1, 3] = 0.9, 0.6  # one person (a plateau's weaker neighbour is not a peak)
    heat[3, 6] = 0.55
    heat[4, 0] = 0.2  # below the score
    off = np.zeros((2, 5, 8), np.float32)
    off[:, 1, 2] = (0.25, 0.75)
    found = peaks(heat, off, stride=8, origin=(90, 20), min_score=0.5)
    assert [(u, v, round(s, 3)) for u, v, s in sorted(found)] == [(20 + 2.25 * 8, 90 + 1.75 * 8, 0.9),
                                                                 (20 + 6 * 8, 90 + 3 * 8, 0.55)]


def test_a_flat_topped_maximum_is_one_point() -> None:
    """Equal neighbouring cells (a float16 sigmoid's 1.0 for logits 9.0 and 9.5) were two points of one
    person, two confirmed tracks (review 2026-12-07): its first cell in raster order stands for it."""
    heat = np.zeros((8, 10), np.float32)
    heat[1, 2] = heat[1, 3] = 1.0  # side by side
    heat[3, 5] = heat[4, 4] = 0.8  # diagonal, the later one to the lower left
    heat[4, 0] = heat[5, 0] = heat[5, 1] = 0.7  # an L of three
    heat[6, 8:10] = heat[7, 6:10] = 0.95  # ..XX / XXXX: reaching two cells further left below (review of the fix)
    off = np.zeros((2, 8, 10), np.float32)
    cells = sorted(((v - 90) // 8, (u - 20) // 8) for u, v, _ in peaks(heat, off, stride=8, origin=(90, 20),
                                                                      min_score=0.5))
    assert cells == [(1, 2), (3, 5), (4, 0), (6, 8)]


def test_detections_sit_on_the_road_with_a_covariance() -> None:
    cam = Pinhole()
    dets = detections([(160.0, 150.0, 0.8), (100.0, 119.0, 0.9)], cam, sigma_px=1.0)
    assert len(dets) == 1  # the second point is above the horizon
    d = dets[0]
    assert d.score == 0.8 and math.isclose(d.y, 0.0, abs_tol=1e-9) and 10.0 < d.dx < 12.0
    assert d.cov is not None and d.cov[0][0] > d.cov[1][1] > 0.0


def test_peaks_keep_a_point_within_its_cell_and_refuse_a_grid_of_another_size() -> None:
    """An offset beyond 0..1 put a foot point outside the window: below the camera, above the horizon."""
    heat = np.zeros((3, 4), np.float32)
    heat[1, 1] = 0.9
    off = np.zeros((2, 3, 4), np.float32)
    off[:, 1, 1] = (1e9, -np.inf)
    assert peaks(heat, off, stride=8, origin=(90, 20), min_score=0.5) == [(20 + 2 * 8, 90 + 1 * 8, 0.8999999761581421)]
    for bad in (np.zeros((2, 2, 4), np.float32), np.zeros((1, 3, 4), np.float32), np.zeros((2, 3, 5), np.float32)):
        with pytest.raises(ValueError, match=r"offset \[2, H, W\]"):
            peaks(heat, bad, stride=8, origin=(90, 20), min_score=0.5)
