"""The VRU detector: a small conv net that finds people's and cyclists' foot points.

Why a separate, explicitly supervised detector: a tracked lateral velocity is what the brake
decision lacks (``tracker_bound``), and a tracker needs positions to about a pixel. The VLM's
encoder only ever learned from a brake word, and its tokens are 64 px cells. This net learns
from the simulator's ground truth where each visible VRU's foot point is (``tracks.vru_points``):
a CenterNet-style heat map on 8-pixel cells of the model's region of interest, plus where in
the cell. It reads the same 320x240 frame (cropped in-graph) as the vision encoder.

Graph (``vru_detector.onnx``): ``pixel_values [1, 3, 240, 320]`` (the VLM's normalisation)
-> ``heat [1, 1, H, W]`` (probabilities) and ``offset [1, 2, H, W]`` (column, row within the
cell, 0..1). Decoded by ``tiny_node.model.detect.peaks``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the torch convention)
from numpy.typing import NDArray
from torch import Tensor, nn
from tqdm import tqdm

from tiny_node.camera import Pinhole
from tiny_node.factory.train import pixels
from tiny_node.factory.vlm_torch import IMAGE_H, IMAGE_W, ROI
from tiny_node.model.detect import detections, peaks
from tiny_node.model.tracker import VruTracker

STRIDE = 8
MIN_SCORE = 0.5  # heat-map peaks below this are not detections (the manifest's vlm.tracking.min_score)


@dataclass(frozen=True)
class DetectorSize:
    """Channels of the stride-4 stem, the stride-8 stage and the stride-16 context stage.

    ``separable``: every 3x3 conv after the stem is depthwise + pointwise (MobileNet-style),
    and the context comes back by a projection added to the fine features instead of a
    concatenation; about a sixth of the dense net's multiply-adds at the same widths.
    ``context``: extra blocks at stride 16, where they are cheap and widen the receptive field.
    ``fine_stem``: the stem is two 3x3 stride-2 convs instead of one 4x4 patch conv, so a far
    person (4-6 px wide at 30 m) is not averaged into one 4x4 patch before the first ReLU.
    ``stem_kernel``: the first fine-stem conv's kernel; 2 (a 2x2 stride-2 patch) reads each pixel
    once, less than half the multiply-adds of 3x3 at the full-resolution stage, where most of
    them are. ``separable_stem``: the second stem conv is depthwise + pointwise.
    """

    stem: int = 12
    fine: int = 24
    coarse: int = 32
    fuse_kernel: int = 1
    separable: bool = False
    context: int = 0
    fine_stem: bool = True
    stem_kernel: int = 3
    separable_stem: bool = False


#: Named detector sizes (``FactoryConfig.detector_size``). "patch": the first shipped detector
#: (4x4 patch stem, 3x3 fuse, 24.2 MFLOPs). "fine": two 3x3 stride-2 convs as stem and a 1x1
#: fuse (21.5 MFLOPs); it finds more of the far and night VRUs at about the same precision
#: (docs/MODEL_HISTORY.md, *Fine-stem detector*). "lean": 4.0 MFLOPs, the most a detector may cost
#: for the whole decision to stay within 5 % of the teacher's (a 2x2 patch, then separable
#: convs, two context blocks); it finds far fewer VRUs (docs/MODEL_HISTORY.md, *A lean detector*).
SIZES = {"patch": DetectorSize(fuse_kernel=3, fine_stem=False), "fine": DetectorSize(),
         "lean": DetectorSize(stem=8, fine=20, coarse=24, separable=True, context=2, stem_kernel=2,
                              separable_stem=True)}


def _conv(cin: int, cout: int, k: int, s: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=s, padding=k // 2 if k > s else 0, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _separable(cin: int, cout: int, s: int) -> nn.Sequential:
    """Depthwise 3x3 (stride ``s``) then pointwise 1x1, each with batch norm and ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, stride=s, padding=1, groups=cin, bias=False),
                         nn.BatchNorm2d(cin), nn.ReLU(inplace=True), _conv(cin, cout, 1, 1))


class VruDetector(nn.Module):
    """Stride-4 stem, stride-8 features, stride-16 context brought back up; two 1x1 heads."""

    def __init__(self, size: DetectorSize = DetectorSize()) -> None:
        super().__init__()
        self.size = size
        block = _separable if size.separable else (lambda cin, cout, s: _conv(cin, cout, 3, s))
        # built in this order (first conv, then second), so a seed initialises the shipped sizes as before
        self.stem = (nn.Sequential(_conv(3, size.stem, size.stem_kernel, 2),
                                   _separable(size.stem, size.stem, 2) if size.separable_stem
                                   else _conv(size.stem, size.stem, 3, 2)) if size.fine_stem
                     else _conv(3, size.stem, 4, 4))
        self.fine = nn.Sequential(block(size.stem, size.fine, 2), block(size.fine, size.fine, 1))
        self.coarse = nn.Sequential(block(size.fine, size.coarse, 2), block(size.coarse, size.coarse, 1),
                                    *(block(size.coarse, size.coarse, 1) for _ in range(size.context)))
        if size.separable:  # project the context to the fine width, add, then one separable block
            self.project = _conv(size.coarse, size.fine, 1, 1)
            self.fuse = _separable(size.fine, size.fine, 1)
        else:
            self.fuse = _conv(size.fine + size.coarse, size.fine, size.fuse_kernel, 1)
        self.heat = nn.Conv2d(size.fine, 1, 1)
        self.offset = nn.Conv2d(size.fine, 2, 1)
        with torch.no_grad():  # rare positives: start near p = 0.02
            self.heat.bias.fill_(-4.0)  # type: ignore[union-attr]

    def forward_roi(self, roi: Tensor) -> tuple[Tensor, Tensor]:
        """Heat-map logits ``[B, 1, H, W]`` and offsets ``[B, 2, H, W]`` (0..1) of a cropped ROI."""
        fine = self.fine(self.stem(roi))
        if self.size.separable:
            up = F.interpolate(self.project(self.coarse(fine)), size=fine.shape[-2:], mode="nearest")
            x = self.fuse(fine + up)
        else:
            up = F.interpolate(self.coarse(fine), size=fine.shape[-2:], mode="nearest")
            x = self.fuse(torch.cat([fine, up], 1))
        return self.heat(x), torch.sigmoid(self.offset(x))

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        """The exported graph: crop the ROI of a 320x240 frame, heat probabilities and offsets."""
        r0, r1, c0, c1 = ROI
        logits, off = self.forward_roi(pixel_values[:, :, r0:r1, c0:c1])
        return torch.sigmoid(logits), off


def mflops(model: VruDetector) -> float:
    """MFLOPs of one frame (2 per multiply-add of every conv), counted on a real forward pass."""
    total = 0

    def hook(mod: nn.Module, _inp: Any, out: Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            total += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, IMAGE_H, IMAGE_W))
    for h in handles:
        h.remove()
    return 2 * total / 1e6


def grid_shape() -> tuple[int, int]:
    """Cells (rows, columns) of the heat map over the ROI."""
    h, w = (ROI[1] - ROI[0]) // 4, (ROI[3] - ROI[2]) // 4
    return (h + 1) // 2, (w + 1) // 2


def targets(points: NDArray[np.float32], sigma_cells: float = 0.8) -> tuple[Tensor, Tensor, Tensor]:
    """Heat targets ``[B, 1, H, W]``, offset targets ``[B, 2, H, W]`` and their mask.

    From ``vru_points`` ``[B, K, 3]`` (u, v, visible) in 320x240 frame pixels: a Gaussian per
    visible point, 1 at its cell, which alone carries an offset target.
    """
    gh, gw = grid_shape()
    b = len(points)
    heat = np.zeros((b, 1, gh, gw), np.float32)
    off = np.zeros((b, 2, gh, gw), np.float32)
    mask = np.zeros((b, 1, gh, gw), np.float32)
    rr, cc = np.mgrid[0:gh, 0:gw]
    for i, j in zip(*np.nonzero(points[..., 2] > 0), strict=True):
        u, v = float(points[i, j, 0]) - ROI[2], float(points[i, j, 1]) - ROI[0]
        cu, cv = u / STRIDE, v / STRIDE
        c, r = min(int(cu), gw - 1), min(int(cv), gh - 1)
        g = np.exp(-((cc + 0.5 - cu) ** 2 + (rr + 0.5 - cv) ** 2) / (2 * sigma_cells**2))
        heat[i, 0] = np.maximum(heat[i, 0], g)
        heat[i, 0, r, c] = 1.0
        off[i, :, r, c] = (cu - c, cv - r)
        mask[i, 0, r, c] = 1.0
    return torch.from_numpy(heat), torch.from_numpy(off), torch.from_numpy(mask)


def loss_fn(logits: Tensor, off: Tensor, heat_t: Tensor, off_t: Tensor, mask: Tensor) -> Tensor:
    """CenterNet focal loss on the heat map (penalty-reduced near a point) + L1 on offsets."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = heat_t.eq(1.0).float()
    pos_loss = -(torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = -(torch.log(1 - p) * p**2 * (1 - heat_t) ** 4 * (1 - pos)).sum()
    n = pos.sum().clamp(min=1.0)
    off_loss = (F.l1_loss(off, off_t, reduction="none") * mask).sum() / n
    return (pos_loss + neg_loss) / n + off_loss


def train(data: dict[str, NDArray[Any]], *, epochs: int, batch: int = 32, lr: float = 2e-3, seed: int = 0,
          size: DetectorSize = DetectorSize(), teacher: VruDetector | None = None) -> VruDetector:
    """Fit a detector on a split with ``image`` and ``vru_points``.

    Half the batches are flipped left-right: a person crossing from the left looks like one
    from the right, mirrored. With a ``teacher`` (a larger trained detector) the heat map also
    learns the teacher's probabilities (soft binary cross-entropy), which say how person-like
    every cell looks, not just where the labelled feet are.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = VruDetector(size)
    images, points = data["image"], np.asarray(data["vru_points"], np.float32)
    n = len(images)
    batch = min(batch, n)
    steps = max(1, epochs * (n // batch))
    if teacher is not None:
        teacher.eval()
    opt = torch.optim.AdamW(model.parameters(), lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    for _ in tqdm(range(epochs), desc="detector", unit="epoch"):
        model.train()
        perm = rng.permutation(n)
        for i in range(0, n - batch + 1, batch):
            idx = np.sort(perm[i:i + batch])
            img, pts = images[idx], points[idx].copy()
            flip = rng.random(len(idx)) < 0.5
            img = np.where(flip[:, None, None, None], img[:, :, ::-1], img)
            # mirror about the ROI's centre column; image column u -> c0 + c1 - u (pixel centres)
            pts[flip, :, 0] = np.where(pts[flip, :, 2] > 0, ROI[2] + ROI[3] - pts[flip, :, 0], pts[flip, :, 0])
            heat_t, off_t, mask = targets(pts)
            x = pixels(img)
            logits, off = model.forward_roi(x)
            loss = loss_fn(logits, off, heat_t, off_t, mask)
            if teacher is not None:
                with torch.no_grad():
                    soft = torch.sigmoid(teacher.forward_roi(x)[0])
                per_point = heat_t.eq(1.0).float().sum().clamp(min=1.0)  # as loss_fn normalises
                loss = loss + F.binary_cross_entropy_with_logits(logits, soft, reduction="sum") / per_point
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
    return model.eval()


def predict(model: VruDetector, images: NDArray[np.uint8], min_score: float,
            batch: int = 128) -> list[list[tuple[float, float, float]]]:
    """Foot points (u, v, score) per ROI image, decoded as the runtime decodes them."""
    out: list[list[tuple[float, float, float]]] = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            logits, off = model.forward_roi(pixels(images[i:i + batch]))
            heat = torch.sigmoid(logits).numpy()
            for h, o in zip(heat, off.numpy(), strict=True):
                out.append(peaks(h[0], o, stride=STRIDE, origin=(ROI[0], ROI[2]), min_score=min_score))
    return out


def score(found: list[list[tuple[float, float, float]]], points: NDArray[np.float32],
          match_px: float = 6.0) -> dict[str, float]:
    """Recall / precision against the visible foot points, and the pixel error of the matches."""
    tp = fp = fn = 0
    du: list[float] = []
    dv: list[float] = []
    for dets, pts in zip(found, points, strict=True):
        gt = [(float(u), float(v)) for u, v, vis in pts if vis > 0]
        used: set[int] = set()
        for u, v, _ in sorted(dets, key=lambda d: -d[2]):
            best = min(((math.hypot(u - gu, v - gv), k) for k, (gu, gv) in enumerate(gt) if k not in used),
                       default=None)
            if best is not None and best[0] <= match_px:
                used.add(best[1])
                tp += 1
                du.append(u - gt[best[1]][0])
                dv.append(v - gt[best[1]][1])
            else:
                fp += 1
        fn += len(gt) - len(used)
    e_u, e_v = np.asarray(du), np.asarray(dv)
    return {"recall": tp / max(1, tp + fn), "precision": tp / max(1, tp + fp), "points": tp + fn,
            "u_rms_px": float(np.sqrt((e_u**2).mean())) if tp else math.nan,
            "v_rms_px": float(np.sqrt((e_v**2).mean())) if tp else math.nan,
            "u_median_abs_px": float(np.median(np.abs(e_u))) if tp else math.nan,
            "v_median_abs_px": float(np.median(np.abs(e_v))) if tp else math.nan}


def export(model: VruDetector, path: Path) -> None:
    """``vru_detector.onnx``: pixel_values -> heat, offset (batch 1), checked by the ONNX checker."""
    from tiny_node.factory.export import export_onnx

    with torch.no_grad():
        export_onnx(model.eval(), (torch.zeros(1, 3, IMAGE_H, IMAGE_W),), path, inputs=["pixel_values"],
                    outputs=["heat", "offset"], dynamic={})


HeatFn = Callable[[NDArray[np.uint8]], tuple[NDArray[np.float32], NDArray[np.float32]]]


def torch_heat(model: VruDetector) -> HeatFn:
    """``roi [H, W, 3] uint8 -> (heat [h, w], offset [2, h, w])`` of a torch detector."""
    model.eval()

    def run(roi: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        with torch.no_grad():
            logits, off = model.forward_roi(pixels(roi[None]))
        return torch.sigmoid(logits)[0, 0].numpy(), off[0].numpy()

    return run


def onnx_heat(path: Path) -> HeatFn:
    """The same through onnxruntime and the exported graph (which crops the ROI itself)."""
    import onnxruntime as ort

    from tiny_node.factory.dataset import full_frame

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(roi: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        px = pixels(full_frame(roi)[None]).numpy()
        heat, off = sess.run(["heat", "offset"], {"pixel_values": px})
        return np.asarray(heat[0, 0], np.float32), np.asarray(off[0], np.float32)

    return run


def tracking_error(heat_fn: HeatFn, *, drives: int, seed: int, sigma_px: float, min_score: float,
                   stride: int = STRIDE) -> dict[str, float]:
    """Detector + tracker on rendered 30 Hz drives of the simulator's default camera.

    A third of the drives each are crossings, look-alikes and the default mix
    (``scenes.sample_episode``). Every frame goes through the detector, the runtime's decoding
    and the tracker (as ``model.tracking`` does it); each VRU 3-40 m ahead and within 8 m of the
    lane centre, 0.5 s after it came that near, is looked up among the confirmed tracks (within
    1 m laterally). Reported: the share found (``coverage``; hidden people count as missed) and
    the error of the tracked lateral velocity, all and of the VRUs moving sideways.
    """
    from tiny_node.factory import dataset, scenes
    from tiny_node.sim.camera import CameraModel, CameraRenderer
    from tiny_node.sim.kinds import VRU_KINDS
    from tiny_node.sim.world import World

    rng = np.random.default_rng(seed)
    renderer, dt = CameraRenderer(CameraModel()), 1.0 / 30.0
    cam = Pinhole.of(CameraModel(), IMAGE_W, IMAGE_H)
    found: list[bool] = []
    err: list[float] = []
    err_moving: list[float] = []
    for d in tqdm(range(drives), desc="tracking drives", unit="drive", leave=False):
        look = scenes.sample_look(rng, False, d)
        ep = scenes.sample_episode(rng, look, False, seed * 1000 + d, 8, focus=("crossing", "lookalike", None)[d % 3])
        world, tracker = World(ep.scenario), VruTracker()
        near_since: dict[str, float] = {}
        cam_rng = np.random.default_rng(seed * 1000 + d)
        for step in range(int(ep.scenario.duration_s / dt)):
            t = step * dt
            heat, off = heat_fn(dataset.crop_roi(dataset.model_view(renderer.render(world, look.env, cam_rng))))
            pts = peaks(heat, off, stride=stride, origin=(ROI[0], ROI[2]), min_score=min_score)
            tracks = tracker.update(t, detections(pts, cam, sigma_px), world.ego.speed)
            for a in world.actors():
                dx = a.x - world.ego.position
                if a.kind not in VRU_KINDS or not (3.0 < dx < 40.0 and abs(a.y) < 8.0):
                    continue
                if t - near_since.setdefault(a.name, t) < 0.5:
                    continue
                best = min(tracks, key=lambda tr: (tr.dx - dx) ** 2 + (tr.y - a.y) ** 2, default=None)
                hit = best is not None and abs(best.y - a.y) < 1.0 and abs(best.dx - dx) < 0.2 * dx + 2.0
                found.append(hit)
                if hit and best is not None:
                    err.append(best.vy - a.vy)
                    if abs(a.vy) > 0.3:
                        err_moving.append(best.vy - a.vy)
            world.step(dt, False)
            if world.collided:
                break

    def rms(x: list[float]) -> float:
        return float(np.sqrt(np.mean(np.square(x)))) if x else math.nan

    return {"drives": drives, "vru_frames": len(found), "coverage": float(np.mean(found)) if found else math.nan,
            "vy_rms_mps": rms(err), "vy_rms_moving_mps": rms(err_moving), "moving_frames": len(err_moving)}
