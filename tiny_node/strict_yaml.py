"""YAML as ``yaml.safe_load`` reads it, except that a key given twice in a mapping is an error.

Why: PyYAML keeps the last of two equal keys without a word, so a scenario or a manifest edited
by hand can hold ``ego_speed_kmh: 30`` and, further down, ``ego_speed_kmh: 80``, and run with a
value its author never saw. Safe loading only: no Python objects are ever built.
"""

from __future__ import annotations

from typing import Any

import yaml

#: Nodes a document may stand for with its aliases expanded. Why: ``&a [x, x]``, ``&b [*a, *a]``,
#: ... nine levels deep is a 4 kB file that any code walking or printing the value expands to
#: billions of nodes (a manifest error message that echoed such a value took 10 GB).
MAX_EXPANDED_NODES = 100_000


_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing duplicate mapping keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._explicit: dict[int, set[int]] = {}  # id(mapping node) -> ids of the key nodes written in it

    def _written_keys(self, node: yaml.MappingNode) -> set[int]:
        """The keys written in ``node`` itself (not merged into it), each mapping checked once for twins.

        Recorded at first sight, before any merge: PyYAML's merge rewrites a merged mapping in place
        (an anchor merging another), and read afterwards its merged keys looked written, a false
        "found the key twice". Only written keys can clash: one pulled in by ``<<: *a`` and given
        here too is overridden, which is what a merge is for.
        """
        written = self._explicit.get(id(node))
        if written is not None:
            return written
        merges = [k for k, _ in node.value if k.tag == _MERGE_TAG]
        if len(merges) > 1:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found the merge key '<<' twice (merge several mappings with <<: [*a, *b])", merges[1].start_mark)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if key_node.tag == _VALUE_TAG:  # YAML 1.1's `=` key: the merge makes it a plain string
                key: Any = str(key_node.value)
            else:
                key = self.construct_object(key_node)  # type: ignore[no-untyped-call]
            try:
                hash(key)
            except TypeError:  # a `? [a, b]: 1` key: PyYAML refuses it too, once past this loop
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found an unhashable key ({type(key).__name__})", key_node.start_mark) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found the key {key!r} twice", key_node.start_mark)
            seen.add(key)
        written = self._explicit[id(node)] = {id(k) for k, _ in node.value if k.tag != _MERGE_TAG}
        return written

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """PyYAML's merge, each mapping's own keys checked first (it recurses into merged ones here)."""
        self._written_keys(node)
        super().flatten_mapping(node)  # type: ignore[no-untyped-call]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):  # else PyYAML's own error for it
            self.flatten_mapping(node)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """An integer, or a YAML error at its position when it has more digits than Python converts.

        Why: past ``sys.get_int_max_str_digits()`` (4300) ``int()`` raises a bare ``ValueError``, which
        went out of the loader as a traceback naming neither the file nor the line.
        """
        try:
            return int(super().construct_yaml_int(node))  # type: ignore[no-untyped-call]
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {len(str(node.value))} characters, too long to read",
                node.start_mark) from None


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader.construct_yaml_int)


def safe_load_unique(text: str, name: str = "<unicode string>") -> Any:
    """``yaml.safe_load(text)``, with a key repeated in a mapping raising ``yaml.YAMLError``.

    ``name``: the file the text came from, which an error's position names (``in "x.yaml",
    line 3, column 5``); PyYAML names text read from a string ``"<unicode string>"``.
    """
    loader = _UniqueKeyLoader(text)  # a SafeLoader: the safe_load tag set, nothing more
    loader.name = name
    try:
        node = loader.get_single_node()  # type: ignore[no-untyped-call]
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_EXPANDED_NODES:
            raise yaml.YAMLError(f"its aliases expand to more than {MAX_EXPANDED_NODES} nodes (a YAML alias "
                                 "bomb?): write the values out")
        return loader.construct_document(node)  # type: ignore[no-untyped-call]
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes ``node`` stands for with every alias expanded (capped just past the limit)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = MAX_EXPANDED_NODES + 1  # a node reached again while being counted: a cycle
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children: list[yaml.Node] = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        total += _expanded_size(child, memo)
        if total > MAX_EXPANDED_NODES:
            break
    memo[id(node)] = total = min(total, MAX_EXPANDED_NODES + 1)
    return total


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
