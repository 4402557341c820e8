"""Strict JSON for the figures a command writes: a number that is not finite is ``null``.

Why: ``json.dumps`` writes NaN and Infinity bare, which is not JSON (``jq``, ``JSON.parse`` and
most readers refuse the file), and figures have them (a split without benign frames, an actor
never found). Here, apart from the ROS tools: the factory's commands run without ROS.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float as None and numpy scalars as Python's."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def dumps(value: Any) -> str:
    """``value`` as strict JSON text (indented one space), every non-finite float as null."""
    return json.dumps(finite_or_none(value), indent=1, allow_nan=False)


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` to ``path`` as strict JSON; an OSError is the caller's to report."""
    path.write_text(dumps(value) + "\n", encoding="utf-8")


def write_figures(path: Path, value: Any, command: str, what: str) -> int:
    """A command's ``--json FILE``: written as strict JSON and named (``what: path``); 0, or 2 after one line.

    Why the OSError here: the check up front cannot foresee every failure (/proc, a full disk,
    root on /sys), and a failed write was a traceback after the whole measurement.
    """
    try:
        write_json(path, value)
    except OSError as exc:
        print(f"tiny-node {command}: --json {path}: cannot write it: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"{what}: {path}")
    return 0
