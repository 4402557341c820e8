"""Messages between the node and the model worker process (small, pickled on a Pipe).

The node reads the worker's replies with :class:`tiny_node.model.replies.ReplyReader`: never
blocking, at most 64 KiB each, and only the ``FromWorker`` types below, checked field by field.

Frames never travel here: they go through shared memory (frames.py); a job only names its
slot. Each job gets exactly one reply, a :class:`ModelResult` (done, cancelled or error).
A ``vlm`` result with ``rationale=True`` is followed, later and off the deadline path, by one
:class:`Rationale` for the same seq (its text, or ``aborted`` when a job or cancel came first).
"""

from __future__ import annotations

from dataclasses import dataclass

from tiny_node.model.output import ModelOutput


@dataclass(frozen=True)
class ModelResult:
    """The reply to one job. ``infer_ms`` is the worker's preprocess+run time."""

    seq: int
    output: ModelOutput | None
    infer_ms: float
    cancelled: bool = False
    error: str | None = None
    rationale: bool = False  # a Rationale for this seq follows


# parent -> worker
@dataclass(frozen=True)
class WorkerConfig:
    """Everything the spawned process needs to start (pickled once, at spawn)."""

    bundle_dir: str
    shm_names: tuple[str, ...]
    max_frame_shape: tuple[int, int, int]
    threads: int
    warmup_runs: int
    test_delay_ms: float  # TEST HOOK initial value
    nice: int = 0
    rationale_max_tokens: int | None = None  # vlm: a cap on the manifest's (None: the manifest's), 0 = none
    memory_limit_mb: int = 0  # RLIMIT_AS of the worker, MiB (0: none)


@dataclass(frozen=True)
class Job:
    """Run the frame in ``slot`` (its header must carry ``seq``)."""

    seq: int
    slot: int
    features: dict[str, float]
    context: str = ""  # vlm: operator context for the prompt ("school zone")
    time_s: float | None = None  # the frame's time: a two-frame vlm finds its earlier image by it


@dataclass(frozen=True)
class Cancel:
    """Terminate job ``seq`` if it is queued or running."""

    seq: int


@dataclass(frozen=True)
class SetDelay:
    """TEST HOOK: sleep ``ms`` before each run (fault injection)."""

    ms: float


@dataclass(frozen=True)
class Stop:
    """Finish the current reply and exit."""


# worker -> parent
@dataclass(frozen=True)
class Ready:
    """Loaded, verified and warmed up; jobs may come."""

    pid: int
    load_ms: float
    warmup_ms: tuple[float, ...]
    note: str  # e.g. why the scheduling policy could not be reset


@dataclass(frozen=True)
class Rationale:
    """The text a ``vlm`` model generated after deciding frame ``seq``.

    ``aborted``: a new job or a cancel stopped it after ``tokens`` tokens (``text`` empty);
    ``error``: decoding failed. ``ms`` is the decoding time.
    """

    seq: int
    text: str
    ms: float
    tokens: int
    aborted: bool = False
    error: str | None = None


@dataclass(frozen=True)
class Fatal:
    """The worker cannot serve. ``permanent``: a restart cannot help (bad bundle)."""

    message: str
    permanent: bool


ToWorker = Job | Cancel | SetDelay | Stop
FromWorker = ModelResult | Rationale | Ready | Fatal


# Exit status of a worker whose runtime packages cannot be imported.
EXIT_MISSING_PACKAGE = 6
#: the worker ran out of its memory limit (model_memory_limit_mb): a restart gives it a fresh process
EXIT_OUT_OF_MEMORY = 7
# How a user gets each runtime package the worker imports (pip; rosdep where a key exists).
INSTALL_HINTS = {
    "onnxruntime": "pip install onnxruntime, or rosdep's python3-onnxruntime-pip",
    "cv2": "pip install opencv-python-headless, or rosdep's python3-opencv",
    "tokenizers": "pip install tokenizers",
}


def missing_package(exc: ImportError) -> str:
    """The worker's message for a runtime package it cannot import, with how to install it."""
    name = (exc.name or "").split(".")[0]
    hint = INSTALL_HINTS.get(name)
    return (f"the model worker cannot import {name or 'a module'} ({exc})"
            + (f": {hint}" if hint else "") + "; deciding with the rule path only")
