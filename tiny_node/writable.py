"""Whether a file can be made in a folder, asked of the file system itself.

Why not ``os.access``: root passes it on a read-only mount (and on sysfs), and a command
that trusted it ran for minutes, then ended in the OSError traceback of its first write.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def write_problem(folder: Path) -> str:
    """Why no file can be made in ``folder`` ('' when one can): a hidden file is made there and removed."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tiny-node-write-check-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


def folder_problem(folder: Path) -> tuple[str, str] | None:
    """Why ``folder`` (made if missing) cannot take files: ("make" or "write in", the reason); None if it can.

    Why one place: demo, bench, hil, sim and operating-point each made their output folder, then
    asked :func:`write_problem`, and each word their own refusal.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return "make", exc.strerror or str(exc)
    if why := write_problem(folder):
        return "write in", why
    return None
