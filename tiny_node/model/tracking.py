"""A bundle's VRU tracking (``vlm.tracking``): detector, road plane, tracker, prompt features.

The detector graph's foot points are put on the road (``detect``), tracked (``tracker``), and
the tracks fill the ``vru<k>_*`` features of the prompt.

Why in the model runtime, per frame: the tracker must see the frames the model sees, with
their own stamps, so the node, the lockstep simulator and the HIL rig track alike. It reads no
clock: the frame time is handed in (frames arrive late or out of order; a jump resets it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from tiny_node.camera import CameraMount, Pinhole
from tiny_node.model.bundle import TRACK_FEATURES, Bundle, BundleError, ImageSpec, TrackingSpec, track_slot
from tiny_node.model.detect import detections, peaks
from tiny_node.model.runtime import load_session, probe_run
from tiny_node.model.tracker import RECORD_FIELDS, TrackerConfig, VruTracker

HEAT, OFFSET = "heat", "offset"
_FLOATS: dict[str, type[np.floating[Any]]] = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class Tracking:
    """The detector session, camera geometry and tracker of one bundle."""

    def __init__(self, session: ort.InferenceSession, image: ImageSpec, spec: TrackingSpec, where: str) -> None:
        """``session`` runs the detector graph (``where`` names it in errors); ``image`` is its input.

        The graph runs once here, on a zero frame: a detector that cannot run at the manifest's
        size, or whose grid is not ``inputs.image.roi`` in ``stride`` cells, is a BundleError
        (the worker stops: a restart cannot fix a file), not a ValueError on the first frame
        that the worker would read as transient and retry forever.
        """
        self.spec = spec
        self.session = session
        ins = {i.name: i for i in session.get_inputs()}
        if set(ins) != {image.name} or tuple(ins[image.name].shape) != image.shape:
            raise BundleError(f"vlm.tracking.detector: {where} must take {image.name} {list(image.shape)} "
                              f"(the vision encoder's input), has {[(i.name, i.shape) for i in ins.values()]}")
        if ins[image.name].type not in _FLOATS:
            raise BundleError(f"vlm.tracking.detector: {where}: {image.name!r} is {ins[image.name].type}, "
                              f"expected {' or '.join(_FLOATS)}")
        self.input_name = image.name
        #: the detector's own float type: a float16 vision encoder's pixels are cast to it
        self.dtype: type[np.floating[Any]] = _FLOATS[ins[image.name].type]
        outs = {o.name for o in session.get_outputs()}
        if not {HEAT, OFFSET} <= outs:
            raise BundleError(f"vlm.tracking.detector: {where} must output {HEAT!r} and {OFFSET!r}, "
                              f"has {sorted(outs)}")
        if image.roi is None:
            raise BundleError("vlm.tracking needs inputs.image.roi (the window the detector's grid covers)")
        self.roi = image.roi
        self.where = where
        self.origin = (image.roi[0], image.roi[2])
        #: the detector's grid: the window in ``stride``-pixel cells, a partial cell counted
        self.grid = (-(-(image.roi[1] - image.roi[0]) // spec.stride), -(-(image.roi[3] - image.roi[2]) // spec.stride))
        self._probe(image, where)
        self.bottom = image.roi[1]  # the window's last row: the nearest road it shows
        self.size = (image.width, image.height)
        self._source: tuple[int, int] | None = None  # the camera frame's (w, h): its aspect shapes the pixels
        self.camera = Pinhole.of(spec.camera, *self.size)
        # the manifest's min_score, to the tracker as to the peaks: its default 0.5 dropped the detections
        # of a lower one again (review: a bundle's min_score 0.3 tracked nothing more)
        self.tracker = VruTracker(TrackerConfig(rear_axle_m=spec.rear_axle_m, min_score=spec.min_score),
                                  window_near_m=self.window_near_m())
        self.last_detections = 0
        self.last_detector_ms = 0.0  # the detector graph's run in the last step (no decoding)
        #: the records of every confirmed track at the last step, nearest the ego's path first
        #: (``spec.tracks`` rows at least): the first ``spec.tracks`` are the prompt's features,
        #: all of them the conflict test's (a third VRU may be the one in conflict)
        self.last_records: NDArray[np.float32] = np.zeros((spec.tracks, len(RECORD_FIELDS)), np.float32)

    def _probe(self, image: ImageSpec, where: str) -> None:
        """One detector run on a zero frame: it must run and give ``heat`` / ``offset`` on :attr:`grid`."""
        zeros = {image.name: np.zeros(image.shape, self.dtype)}
        heat, off = probe_run(self.session, [HEAT, OFFSET], zeros, f"vlm.tracking.detector: {where}")
        if np.shape(heat) != (1, 1, *self.grid) or np.shape(off) != (1, 2, *self.grid):
            raise BundleError(f"vlm.tracking.detector: {where}: {self._grid_error(heat, off)}")

    def _grid_error(self, heat: NDArray[Any], off: NDArray[Any]) -> str:
        """What is wrong with the detector's output shapes, in the manifest's terms."""
        g = self.grid
        return (f"heat {list(np.shape(heat))} and offset {list(np.shape(off))} must be [1, 1, {g[0]}, {g[1]}] "
                f"and [1, 2, {g[0]}, {g[1]}]: the window inputs.image.roi {list(self.roi)} in cells of "
                f"vlm.tracking.stride {self.spec.stride} (the manifest's roi or stride does not fit this graph)")

    @classmethod
    def of_bundle(cls, bundle: Bundle, spec: TrackingSpec, threads: int | None) -> Tracking:
        """The tracking of ``bundle`` (its verified detector graph, on ``threads``)."""
        return cls(load_session(bundle, spec.detector, threads), bundle.image, spec,
                   f"files.{spec.detector}: {bundle.file(spec.detector).path}")

    def mount(self, camera: CameraMount) -> None:
        """Put the road plane under another camera pose (a drive whose camera sits otherwise)."""
        pinhole = Pinhole.of(camera, *self.size, source=self._source)
        if pinhole != self.camera:  # the tracks' positions were read through the old geometry
            self.tracker.reset()
        self.camera = pinhole
        self.tracker.set_window(self.window_near_m())

    def frame_size(self, width: int, height: int) -> None:
        """The camera's frames are ``width`` x ``height`` (the road plane follows their aspect ratio).

        Why: a 16:9 frame squeezed to a 4:3 input has its rows scaled more than its columns;
        read with square pixels, every range would be about 25 % short.
        """
        if self._source != (width, height):
            self._source = (width, height)
            self.mount(self.camera.mount())

    def window_near_m(self) -> float:
        """Range of the road point at the bottom centre of the detector's window (0 if above the horizon)."""
        g = self.camera.ground(self.size[0] / 2.0, float(self.bottom))
        return max(g[0], 0.0) if g is not None else 0.0

    def reset(self) -> None:
        """Forget every track (a new drive, a bag loop)."""
        self.tracker.reset()

    def points(self, pixels: dict[str, NDArray[Any]],
               run_options: ort.RunOptions | None = None) -> list[tuple[float, float, float]]:
        """The detector's foot points ``(u, v, score)`` in this frame, in pixels of the model's input."""
        x = pixels[self.input_name]
        feed = {self.input_name: x if x.dtype == self.dtype else x.astype(self.dtype)}
        t0 = time.perf_counter()  # a stage timing, as VlmRuntime.last_ms: real time is the point
        heat, off = self.session.run([HEAT, OFFSET], feed, run_options)
        self.last_detector_ms = (time.perf_counter() - t0) * 1e3
        if np.shape(heat) != (1, 1, *self.grid) or np.shape(off) != (1, 2, *self.grid):
            # another grid would put every foot point somewhere else on the road (the load-time
            # probe has seen this graph's shapes: only a graph whose output shape varies gets here)
            raise ValueError(f"vlm.tracking.detector: {self.where}: {self._grid_error(heat, off)}")
        if not (np.all(np.isfinite(heat)) and np.all(np.isfinite(off))):
            # as a NaN logit (output.read_decision): silently, it would take every VRU and the
            # conflict brake out of the decision
            raise ValueError("vlm.tracking.detector: non-finite heat or offset")
        return peaks(heat[0, 0], off[0], stride=self.spec.stride, origin=self.origin, min_score=self.spec.min_score)

    def step(self, pixels: dict[str, NDArray[Any]], time_s: float | None, ego_speed: float,
             run_options: ort.RunOptions | None = None, *, yaw_rate: float = 0.0) -> dict[str, float]:
        """Detect in this frame, update the tracks at ``time_s``; the ``vru<k>_*`` features.

        ``ego_speed`` (m/s) and ``yaw_rate`` (rad/s, left +) are the ego's motion (``VruTracker.update``).
        Without a frame time there is no motion to measure: every slot is empty.
        """
        dets = detections(self.points(pixels, run_options), self.camera, self.spec.sigma_px)
        self.last_detections = len(dets)
        if time_s is None:
            self.last_records = np.zeros((self.spec.tracks, len(RECORD_FIELDS)), np.float32)
        else:
            self.tracker.update(time_s, dets, ego_speed, yaw_rate)
            self.last_records = self.tracker.records(self.spec.tracks, every=True)
        return features_of(self.last_records[:self.spec.tracks])


def describe(features: Mapping[str, float], slots: int) -> str:
    """The tracks of a prompt's ``vru<k>_*`` features as words, for the decision's reason.

    ``vru0 14.2 m, y -2.1 m, vy +1.3 m/s`` per present slot (left +), or ``no VRU tracked``.
    """
    out = [describe_track(k, features[f"vru{k}_dx"], features[f"vru{k}_y"], features[f"vru{k}_vy"])
           for k in range(slots) if features.get(f"vru{k}_present", 0.0)]
    return "; ".join(out) if out else "no VRU tracked"


def shown_slots(features: Iterable[str], tracks: int) -> int:
    """Track slots a prompt shows: one past the highest ``vru<k>_*`` feature it holds, at most ``tracks``.

    Why not ``tracks`` alone: a manifest may track more slots than its prompt has features for,
    and a track the model is not shown is one its P(brake) says nothing about.
    """
    return min(tracks, max((k for k in map(track_slot, features) if k is not None), default=-1) + 1)


def describe_track(k: int, dx: float, y: float, vy: float) -> str:
    """One track as words: ``vru<k> 14.2 m, y -2.1 m, vy +1.3 m/s`` (left +)."""
    return f"vru{k} {dx:.1f} m, y {y:+.1f} m, vy {vy:+.1f} m/s"


def features_of(records: NDArray[Any]) -> dict[str, float]:
    """Track records ``[slots, >=4]`` (``tracker.RECORD_FIELDS`` in order) as ``vru<k>_*`` features.

    Every field the records hold (the tracker's: all of them); a bundle's manifest picks the
    ones its prompt holds. Records of ground truth written before ``vx_rel`` have four.
    """
    rec = np.asarray(records, np.float64)
    if rec.ndim != 2 or rec.shape[1] < 4:
        raise ValueError(f"track records must be [slots, >=4] ({', '.join(RECORD_FIELDS)}), got shape {rec.shape}")
    cols = [(f, RECORD_FIELDS.index(f)) for f in TRACK_FEATURES if RECORD_FIELDS.index(f) < rec.shape[1]]
    return {f"vru{k}_{f}": float(r[c]) for k, r in enumerate(rec) for f, c in cols}
