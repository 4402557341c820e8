"""argparse types shared by the ``tiny-node`` subcommands.

Why a module: the factory's and the simulator's commands each wrote the same integer check.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

N = TypeVar("N", int, float)


def at_least(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer >= ``lo`` (and <= ``hi``; a usage error naming the option otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {value}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be at most {hi}, got {value}")
        return value
    return parse


def finite(text: str) -> float:
    """An argparse type: a finite number (``nan`` and ``inf`` parse as floats, and a run never ended)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, got {text}")
    return value


def positive(kind: Callable[[str], N]) -> Callable[[str], N]:
    """An argparse type: ``kind`` (int or float) above 0 and finite.

    Why: 0 frames or seconds would pass vacuously; ``inf`` seconds ran until killed, a ``nan``
    speed drove every frame into a fail-safe and wrote NaN into the JSON.
    """
    def parse(text: str) -> N:
        value = kind(text)
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse's message: "invalid int value"
    return parse
