"""What a model run says, and the one function that turns logits into it.

Kept free of onnxruntime so the node process can unpickle results without importing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike

from tiny_node.model.bundle import DecisionSpec
from tiny_node.model.conflict import ConflictSpec


@dataclass(frozen=True)
class ModelOutput:
    """The model's verdict on one frame.

    ``confidence`` is the probability of the chosen ``label``; ``probs`` follows the
    manifest's label order; ``p_brake`` is P(brake), what the threshold is applied to (kept so
    an operating point can be chosen from recorded runs without re-running the model).
    ``tracks``: the tracked VRUs the model was shown (``vlm.tracking``), as text for the
    decision's reason; empty for a bundle without tracking. ``conflict_s``: the earliest
    constant-velocity conflict of the tracks with the ego's corridor that the model did not
    veto (``ConflictSpec.vetoes``; inf: none, or not computed); with
    ``vlm.tracking.conflict`` it can make ``brake`` true below the threshold
    (``brake_on_conflict``). ``conflict_brake``: whether that conflict brakes on this frame,
    whatever the threshold (what evaluation and the operating point count).
    """

    brake: bool
    confidence: float
    label: str
    probs: tuple[float, ...]
    p_brake: float
    tracks: str = ""
    conflict_s: float = math.inf
    conflict_brake: bool = False


def read_decision(values: ArrayLike, spec: DecisionSpec) -> ModelOutput:
    """Turn one output row into a decision: P(brake) >= threshold means brake.

    softmax: ``values`` are logits for ``spec.labels``; sigmoid: one logit of
    ``spec.brake_label``. When not braking, the label is the likeliest non-brake label.
    Non-finite logits raise ValueError: a NaN must never decide.
    """
    row = np.asarray(values, dtype=np.float64).reshape(-1)
    if row.size != spec.width:
        raise ValueError(f"output {spec.name!r}: expected {spec.width} values, got {row.size}")
    if not np.all(np.isfinite(row)):
        raise ValueError(f"output {spec.name!r}: non-finite logits {row.tolist()}")
    bi = spec.brake_index
    if spec.kind == "softmax":
        e = np.exp(row - np.max(row))
        probs = e / e.sum()
    else:
        p = 0.5 * (1.0 + np.tanh(0.5 * row[0]))  # sigmoid without overflow
        probs = np.full(2, 1.0 - p)
        probs[bi] = p
    brake = bool(probs[bi] >= spec.threshold)
    if brake:
        idx = bi
    else:
        others = probs.copy()
        others[bi] = -1.0
        idx = int(np.argmax(others))
    return ModelOutput(
        brake=brake,
        confidence=float(probs[idx]),
        label=spec.labels[idx],
        probs=tuple(float(x) for x in probs),
        p_brake=float(probs[bi]),
    )


def brake_on_conflict(out: ModelOutput, conflict_s: float, spec: ConflictSpec | None,
                      spec_decision: DecisionSpec) -> ModelOutput:
    """``out`` with the governing conflict time, braking if it is within ``spec.brake_within_s``.

    ``conflict_s`` is after the model's veto (``ConflictSpec.vetoes``). Why a brake the model
    did not ask for: ``model.conflict``. It only adds a brake; P(brake) is left as the model gave
    it, so an operating point is still chosen on the model's own scores (the conflict's brakes
    are counted apart, ``conflict_brake``).
    """
    fires = spec is not None and spec.brakes(conflict_s)
    if out.brake or not fires:
        return replace(out, conflict_s=float(conflict_s), conflict_brake=fires)
    return replace(out, conflict_s=float(conflict_s), conflict_brake=True, brake=True,
                   label=spec_decision.brake_label, confidence=out.p_brake)
