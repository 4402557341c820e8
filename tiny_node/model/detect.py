"""VRU detections: the detector graph's heat map -> foot points -> road-plane positions.

The detector (``vru_detector.onnx``, made by ``tiny_node.factory.detector``) outputs, on a
grid of ``stride``-pixel cells over the region of interest, the probability that a VRU's foot
point (the centre of its footprint on the road) is in the cell, and where in the cell. The
runtime keeps each local maximum above a score, and puts it on the road plane through the
camera's pinhole geometry (flat road): a foot point's row gives its range, its column the
bearing. The covariance of that position follows from the pixel error through the same
geometry: long along the line of sight (a pixel of row near the horizon is metres of range),
thin across it. That is what lets the tracker (``tracker``) read a lateral velocity from it.

numpy only, so the node's worker runs it without torch.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from tiny_node.camera import Pinhole
from tiny_node.model.tracker import Detection


def peaks(heat: NDArray[Any], offset: NDArray[Any], *, stride: int, origin: tuple[int, int],
          min_score: float) -> list[tuple[float, float, float]]:
    """(u, v, score) of each 3x3 local maximum of ``heat`` above ``min_score``.

    ``heat`` is ``[H, W]`` probabilities; ``offset`` ``[2, H, W]`` the point's (column, row)
    within its cell in cell units; ``origin`` the (row, column) of the grid's first pixel in
    the image. Of a flat-topped maximum, its first cell in raster order only: two neighbouring
    cells equal at the top (a float16 detector's sigmoid rounds 9.0 and 9.5 both to 1.0) made
    two points 8 px apart, two confirmed tracks of one person (review 2026-12-07). Neighbouring
    maxima are equal (else the lower were none), so a flat top is a connected group of them.
    """
    h = np.asarray(heat, np.float32)
    if h.ndim != 2 or np.shape(offset) != (2, *h.shape):
        raise ValueError(f"heat must be [H, W] and offset [2, H, W], got {list(h.shape)} and {list(np.shape(offset))}")
    # within the cell (a sigmoid's range): an offset beyond it would put a point outside the
    # window, below the camera or above the horizon
    off = np.clip(np.asarray(offset, np.float32), 0.0, 1.0)
    pad = np.pad(h, 1, constant_values=-1.0)
    win = np.lib.stride_tricks.sliding_window_view(pad, (3, 3)).max(axis=(2, 3))
    top = ((h >= win) & (h >= min_score)).astype(np.uint8)
    _, group = cv2.connectedComponents(top, connectivity=8)
    rows, cols = np.nonzero(top)  # raster order: each group's first cell first
    _, first = np.unique(group[rows, cols], return_index=True)
    rows, cols = rows[np.sort(first)], cols[np.sort(first)]
    out = []
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        u = origin[1] + (c + float(off[0, r, c])) * stride
        v = origin[0] + (r + float(off[1, r, c])) * stride
        out.append((u, v, float(h[r, c])))
    return out


def detections(points: list[tuple[float, float, float]], camera: Pinhole, sigma_px: float,
               max_range_m: float = 60.0) -> list[Detection]:
    """Foot points -> road-plane detections with their covariance.

    Beyond ``max_range_m``, or above the horizon, a point says too little about where the
    person is: dropped.
    """
    out = []
    for u, v, score in points:
        g, cov = camera.ground(u, v), camera.ground_cov(u, v, sigma_px)
        if g is None or cov is None or not 0.0 < g[0] + camera.setback_m <= max_range_m:
            continue
        out.append(Detection(g[0], g[1], score, ((float(cov[0, 0]), float(cov[0, 1])),
                                                 (float(cov[1, 0]), float(cov[1, 1])))))
    return out
