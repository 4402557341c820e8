"""What decided a recorded run: its model, latency budget and parameters, kept in the bag.

Why: a drive recorded by ``tiny-node sim --record`` replays to its decisions only with the
model, ``--budget-ms`` and parameters the simulator ran with (with ``--budget-ms 60``, a replay
at the bundle's own budget differed on 79 of 107 decisions), and the bag did not say what they
were.  The recorder writes them to ``metadata.yaml`` ``custom_data`` (:data:`SETTINGS_KEY`, one
JSON document); a replay reports them in ``summary.json`` and names each one it does not share
in a warning, with the option that reproduces it.  It still runs with what it was given: a
replay is also how a user tries other parameters on the same drive.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tiny_node.config import SPECS, NodeConfig
from tiny_node.model.bundle import DEFAULT_BUNDLE_DIR, MANIFEST, manifest_digest, read_manifest

#: metadata.yaml custom_data key holding the settings (JSON).
SETTINGS_KEY = "tiny_node.settings"
#: metadata.yaml custom_data key saying whether the recorded drive ran to its end.
DRIVE_KEY = "tiny_node.drive"
COMPLETE, CUT_SHORT = "complete", "cut short"


def settings_doc(cfg: NodeConfig, bundle: Path | None, budget_ms: float | None, *, clock: str) -> dict[str, Any]:
    """The settings of a run: ``bundle`` None = rules only; ``clock`` 'lockstep' or 'realtime'.

    ``budget_ms``: the lockstep model's latency budget, None = the bundle's own (recorded as its
    value: a replay compares what the model was given, not how).  ``params`` holds only the
    values that differ from the defaults (``model_bundle`` is ``model``'s), so the document stays
    small and reads as what was changed.
    """
    model, budget = None, None
    if bundle is not None:
        model = {"bundle": str(Path(bundle).resolve()), "manifest_sha256": manifest_digest(bundle)}  # any cwd
        if clock == "lockstep":
            # the manifest only: the run verifies every file's SHA-256 as it loads the model
            budget = read_manifest(bundle).latency_budget_ms if budget_ms is None else budget_ms
    return {"clock": clock, "model": model, "budget_ms": budget, "params": _changed(cfg.values)}


def settings_json(doc: Mapping[str, Any]) -> str:
    """One line of canonical JSON (metadata.yaml holds custom data as strings)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)


def read_settings(custom: Mapping[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    """The recorded settings of a bag (None when it has none) and a warning when they are unreadable."""
    text = custom.get(SETTINGS_KEY)
    if text is None:
        return None, None
    try:
        doc = json.loads(text)
        json.dumps(doc, allow_nan=False)  # NaN, Infinity, 1e400: summary.json could not hold it (review)
    except (ValueError, RecursionError) as exc:
        return None, f"metadata.yaml custom_data {SETTINGS_KEY} is not JSON ({exc}): the settings are not compared"
    budget = doc.get("budget_ms") if isinstance(doc, dict) else None
    if not (isinstance(doc, dict) and isinstance(doc.get("params", {}), dict)
            and isinstance(doc.get("model"), dict | type(None)) and _finite_or_none(budget)):
        return None, f"metadata.yaml custom_data {SETTINGS_KEY} is not a settings document: not compared"
    return doc, None


def _finite_or_none(value: object) -> bool:
    """None, or a number a float holds (a 401-digit integer overflowed the comparison: review)."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def cut_short_warning(custom: Mapping[str, str]) -> str | None:
    """A warning when the bag's recorder marked its drive cut short (a sim stopped mid-drive)."""
    if custom.get(DRIVE_KEY) != CUT_SHORT:
        return None
    return (f"the recording was cut short (metadata.yaml custom_data {DRIVE_KEY}: {CUT_SHORT}): its drive stopped "
            "before its end, so the bag ends early and its last decisions answer no complete drive")


def settings_warnings(recorded: Mapping[str, Any], cfg: NodeConfig, bundle: Path | None,
                      budget_s: float | None) -> list[str]:
    """One warning per setting of this lockstep replay that differs from the recording's.

    ``budget_s``: the replay model's budget, as the model holds it (None rules only): the
    recorded one is compared in the same unit and arithmetic (ms * 1e-3), so the same option
    given twice is equal and one a hair off is not (review).  Each warning names the option that
    reproduces the recording's.
    """
    out: list[str] = []
    model = recorded.get("model")
    rec_bundle = _model_option(model) if isinstance(model, dict) else None
    if rec_bundle is None and bundle is not None:
        out.append(f"the bag was recorded rules only and this replay runs the model {bundle}: its decisions "
                   "differ wherever the model decides (--rules-only reproduces the recording's)")
    elif rec_bundle is not None and bundle is None:
        out.append(f"the bag was recorded with the model {rec_bundle} and this replay is rules only "
                   f"(--model {rec_bundle} reproduces the recording's decisions)")
    elif isinstance(model, dict) and bundle is not None:
        mine = manifest_digest(bundle)
        if model.get("manifest_sha256") != mine:
            out.append(f"the bag was recorded with the model {rec_bundle} (manifest sha256 "
                       f"{str(model.get('manifest_sha256'))[:12]}...) and this replay runs {bundle} "
                       f"({mine[:12]}...), another model (--model {rec_bundle} reproduces the recording's decisions)")
        rec_budget = recorded.get("budget_ms")
        # exactly (isclose let 44.99999999 pass for 45, and the decisions differed: review)
        if isinstance(rec_budget, int | float) and budget_s is not None and float(rec_budget) * 1e-3 != budget_s:
            budget_ms = round(budget_s * 1e3, 9)
            # repr, not :g: 6 digits named 45 for 44.9999999, which flipped 12 decisions (review)
            out.append(f"the bag was recorded with a model latency budget of {rec_budget!r} ms and this replay's "
                       f"is {budget_ms!r} ms: the model is late on other frames (--budget-ms {rec_budget!r} "
                       "reproduces the recording's)")
    params = recorded.get("params", {})
    diffs = []
    for name in sorted(set(params) | set(_changed(cfg.values))):
        spec = SPECS.get(name)
        if spec is None:
            diffs.append(f"{name} {params[name]!r} (unknown to this version)")
            continue
        rec = params.get(name, spec.default)
        if rec != cfg[name]:
            diffs.append(f"{name} {rec!r} (this replay: {cfg[name]!r})")
    if diffs:
        out.append(f"the bag was recorded with other parameters than this replay's: {'; '.join(diffs)} "
                   "(a --params-file with the recorded values reproduces the recording's decisions)")
    return out


def _model_option(model: Mapping[str, Any]) -> str:
    """How ``--model`` names the recorded bundle: 'default' when it is the shipped one (paths move)."""
    shipped = DEFAULT_BUNDLE_DIR / MANIFEST
    if shipped.is_file() and model.get("manifest_sha256") == manifest_digest(DEFAULT_BUNDLE_DIR):
        return "default"
    return str(model.get("bundle", "?"))


def _changed(values: Mapping[str, object]) -> dict[str, object]:
    """The values that are not their parameter's default (``model_bundle`` aside)."""
    return {name: value for name, value in sorted(values.items())
            if name != "model_bundle" and name in SPECS and value != SPECS[name].default}
