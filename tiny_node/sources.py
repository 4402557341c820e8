"""A digest of the package's own source files: which code a stored result was made by.

Why one function: the simulator's stored runs and the factory's build steps both go stale when
the code that made them changes, and both record it the same way (each file's path inside the
package and its bytes, in the order given).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def sources_digest(files: Iterable[Path], root: Path = PACKAGE_DIR) -> str:
    """SHA-256 (hex) over ``files`` (paths inside ``root``, the package): each one's relative path, then its bytes."""
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()
