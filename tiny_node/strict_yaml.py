"""YAML as ``yaml.safe_load`` reads it, except that a key given twice in a mapping is an error.

Why: PyYAML keeps the last of two equal keys without a word, so a scenario or a manifest edited
by hand can hold ``ego_speed_kmh: 30`` and, further down, ``ego_speed_kmh: 80``, and run with a
value its author never saw. Safe loading only: no Python objects are ever built.
"""

from __future__ import annotations

from typing import Any

import yaml


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing duplicate mapping keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found the key {key!r} twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def safe_load_unique(text: str, name: str = "<unicode string>") -> Any:
    """``yaml.safe_load(text)``, with a key repeated in a mapping raising ``yaml.YAMLError``.

    ``name``: the file the text came from, which an error's position names (``in "x.yaml",
    line 3, column 5``); PyYAML names text read from a string ``"<unicode string>"``.
    """
    loader = _UniqueKeyLoader(text)  # a SafeLoader: the safe_load tag set, nothing more
    loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: where and what (``line 4, column 7: found the key 'x' twice``).

    Why: PyYAML's message is a multi-line dump (context, file, line, a caret drawing); the
    caller names the file, so the tool's error stays one line naming file, line and problem.
    """
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        return f"{where}{exc.problem or exc.context or 'invalid YAML'}{context}"
    return " ".join(str(exc).split())
