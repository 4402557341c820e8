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
