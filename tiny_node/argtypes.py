"""argparse types shared by the ``tiny-node`` subcommands.

Why a module: the factory's and the simulator's commands each wrote the same integer check.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def at_least(lo: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``lo`` (a usage error naming the option otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {value}")
        return value
    return parse
