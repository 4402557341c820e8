"""Where the package's configuration files are, however it was installed.

One lookup for the files under ``config/`` (the params YAML, the Fast DDS profile): a source
tree or editable install has them beside the package, a colcon or apt install in the share
directory, a pip install only what it carries as package data (``tiny_node/data/``).
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

PACKAGE = "tiny_node"


def find_config(name: str) -> Path | None:
    """Locate ``config/<name>``; ``None`` if it cannot be found.

    Looked for, in order: next to the package in a source tree or editable install
    (``<repo>/config/``); in the package's share directory (``share/tiny_node/config/``, via
    ``ament_index_python`` when importable, else under ``sys.prefix``: a pip install into a venv);
    as package data (``tiny_node/data/<name>``).
    """
    repo = Path(__file__).resolve().parent.parent
    candidate = repo / "config" / name
    if (repo / "package.xml").is_file() and candidate.is_file():
        return candidate
    try:
        from ament_index_python.packages import get_package_share_directory

        share: Path | None = Path(get_package_share_directory(PACKAGE))
    except Exception:  # not importable, not installed, or no AMENT_PREFIX_PATH
        share = None
    if share is not None and (share / "config" / name).is_file():
        return share / "config" / name
    # a pip install's data_files land under its prefix, and nothing sets AMENT_PREFIX_PATH in a plain
    # venv: the installed params file was never found there (packaging review)
    prefixed = Path(sys.prefix) / "share" / PACKAGE / "config" / name
    if prefixed.is_file():
        return prefixed
    data = resources.files(PACKAGE).joinpath("data").joinpath(name)
    if data.is_file():
        path = Path(str(data))
        if path.is_file():  # a real file, not a member of a zip archive
            return path
    return None
