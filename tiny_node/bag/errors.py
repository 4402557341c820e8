"""The one error the bag tools raise for bad input: the CLI prints it, no traceback."""

from __future__ import annotations


class BagError(Exception):
    """A bag that cannot be read, written or replayed; the message says which and why."""
