"""Shared-memory frame slots between the node and the model worker.

Why: a 1080p RGB frame is 6 MB; pickling it through a pipe every frame costs copies and
latency. Frames are copied once into a slot; only a tiny job message names the slot.
Layout of a slot: int64 header ``[seq, height, width, channels]`` then the uint8 pixels.
The writer (parent) only touches a slot while the worker is idle, so no lock is needed.
"""

from __future__ import annotations

from multiprocessing.shared_memory import SharedMemory

import numpy as np
from numpy.typing import NDArray

HEADER_BYTES = 32  # four int64
N_SLOTS = 2


def frame_dims(image: NDArray[np.generic]) -> tuple[int, int, int]:
    """(height, width, channels) of an HxW or HxWxC frame; ValueError otherwise."""
    if image.ndim == 2:
        return int(image.shape[0]), int(image.shape[1]), 1
    if image.ndim == 3 and image.shape[2] in (1, 3):
        return int(image.shape[0]), int(image.shape[1]), int(image.shape[2])
    raise ValueError(f"frame must be HxW, HxWx1 or HxWx3, got shape {image.shape}")


class FrameSlots:
    """``N_SLOTS`` shared-memory buffers, each large enough for ``max_shape`` (H, W, C)."""

    def __init__(self, shms: list[SharedMemory], max_shape: tuple[int, int, int]) -> None:
        self._shms = shms
        self.max_shape = max_shape

    @staticmethod
    def slot_bytes(max_shape: tuple[int, int, int]) -> int:
        """Bytes one slot needs for a frame of at most ``max_shape``."""
        h, w, c = max_shape
        return HEADER_BYTES + h * w * c

    @classmethod
    def create(cls, max_shape: tuple[int, int, int]) -> FrameSlots:
        """Allocate the slots (parent side; the parent owns and unlinks them)."""
        size = cls.slot_bytes(max_shape)
        shms: list[SharedMemory] = []
        try:
            for _ in range(N_SLOTS):
                shms.append(SharedMemory(create=True, size=size))
        except BaseException:
            for shm in shms:
                shm.close()
                shm.unlink()
            raise
        return cls(shms, max_shape)

    @classmethod
    def attach(cls, names: list[str], max_shape: tuple[int, int, int]) -> FrameSlots:
        """Map existing slots by name (worker side)."""
        return cls([SharedMemory(name=n) for n in names], max_shape)

    @property
    def names(self) -> list[str]:
        """Names to hand to the worker process."""
        return [s.name for s in self._shms]

    def check(self, image: NDArray[np.generic]) -> tuple[int, int, int]:
        """Validate a frame against dtype and ``max_shape``; return its dims."""
        if image.dtype != np.uint8:
            raise ValueError(f"frame must be uint8, got {image.dtype}")
        h, w, c = frame_dims(image)
        mh, mw, mc = self.max_shape
        if h > mh or w > mw or c > mc or h == 0 or w == 0:
            raise ValueError(f"frame {h}x{w}x{c} does not fit max_frame_shape {self.max_shape}")
        return h, w, c

    def write(self, slot: int, seq: int, image: NDArray[np.uint8]) -> None:
        """Copy ``image`` into ``slot`` with its header."""
        h, w, c = self.check(image)
        buf = self._shms[slot].buf
        header = np.ndarray((4,), dtype=np.int64, buffer=buf)
        pixels = np.ndarray((h, w, c), dtype=np.uint8, buffer=buf, offset=HEADER_BYTES)
        np.copyto(pixels, image.reshape(h, w, c))
        header[:] = (seq, h, w, c)
        del header, pixels  # release the exported buffer so close() can succeed

    def read(self, slot: int, seq: int) -> NDArray[np.uint8]:
        """Return a view of the frame in ``slot``; ValueError if it is not frame ``seq``.

        The view aliases shared memory: use it before replying to the job, then drop it.
        """
        buf = self._shms[slot].buf
        header = np.ndarray((4,), dtype=np.int64, buffer=buf)
        got, h, w, c = (int(x) for x in header)
        del header
        if got != seq:
            raise ValueError(f"slot {slot} holds frame {got}, job expects {seq}")
        view: NDArray[np.uint8] = np.ndarray((h, w, c), np.uint8, buffer=buf, offset=HEADER_BYTES)
        return view

    def close(self) -> None:
        """Unmap the slots in this process."""
        for shm in self._shms:
            shm.close()

    def unlink(self) -> None:
        """Remove the slots from the system (owner only, after close)."""
        for shm in self._shms:
            shm.unlink()
