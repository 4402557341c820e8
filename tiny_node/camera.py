"""The forward camera's geometry: one pinhole over a flat road, shared by every part.

Why one module: the simulator draws frames through it, the factory writes it into a bundle,
the bundle reads it back (``vlm.tracking.camera``) and the runtime's tracker puts detected
foot points on the road through it. If those were separate copies, a changed default in one
would quietly move every tracked person. Plain dataclasses and ``math``: the runtime imports
it without the simulator.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class CameraMount:
    """How wide the camera sees and where it sits: what a bundle records about its camera.

    ``pitch_deg`` positive looks down; ``setback_m`` is how far behind the front bumper the
    camera sits (positions are reported from the bumper).
    """

    hfov_deg: float = 60.0
    pitch_deg: float = 0.0
    mount_height_m: float = 1.3
    setback_m: float = 1.5

    def mount(self) -> CameraMount:
        """Only the mounting (a subclass's image size dropped): what a manifest stores."""
        return CameraMount(**{f.name: getattr(self, f.name) for f in fields(CameraMount)})


@dataclass(frozen=True)
class Pinhole(CameraMount):
    """A mounted camera at an image size (principal point at the centre).

    ``aspect`` is the vertical over the horizontal focal length in these pixels: 1 for square
    pixels, else how much more a row than a column was scaled when a frame of another aspect
    ratio (a 16:9 camera) was resized to this size (the model's input).
    """

    width: int = 320
    height: int = 240
    aspect: float = 1.0

    @classmethod
    def of(cls, mount: CameraMount, width: int, height: int, source: tuple[int, int] | None = None) -> Pinhole:
        """``mount`` seen at ``width`` x ``height`` pixels: the model's resize of a ``source`` (w, h) frame.

        ``source`` None: a frame of the same aspect ratio (square pixels here too).
        """
        aspect = 1.0 if source is None else (height * source[0]) / (width * source[1])
        return cls(width=width, height=height, aspect=aspect, **asdict(mount.mount()))

    @property
    def fx(self) -> float:
        """Horizontal focal length in pixels (``hfov_deg`` across ``width``)."""
        return (self.width / 2.0) / math.tan(math.radians(self.hfov_deg) / 2.0)

    @property
    def fy(self) -> float:
        """Vertical focal length in pixels."""
        return self.fx * self.aspect

    def ground(self, u: float, v: float) -> tuple[float, float] | None:
        """Road-plane position (dx from the bumper, y left +) of image point (u, v).

        None at or above the horizon (the ray never meets the road).
        """
        a = -(u - self.width / 2.0) / self.fx  # lateral offset / depth
        b = (v - self.height / 2.0) / self.fy  # drop / depth
        p = math.radians(self.pitch_deg)
        c, s = math.cos(p), math.sin(p)
        den = b * c + s
        if den <= 1e-6:
            return None
        x = self.mount_height_m * (c - b * s) / den  # forward from the camera
        depth = x * c + self.mount_height_m * s
        return x - self.setback_m, a * depth

    def ground_cov(self, u: float, v: float, sigma_px: float) -> NDArray[np.float64] | None:
        """2x2 covariance of :meth:`ground` for an isotropic pixel error ``sigma_px``."""
        g, gu, gv = self.ground(u, v), self.ground(u + 0.5, v), self.ground(u, v + 0.5)
        if g is None or gu is None or gv is None:
            return None
        j = np.array([[gu[0] - g[0], gv[0] - g[0]], [gu[1] - g[1], gv[1] - g[1]]]) / 0.5
        out: NDArray[np.float64] = j @ j.T * sigma_px**2
        return out
