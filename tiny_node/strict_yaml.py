"""YAML as ``yaml.safe_load`` reads it, except that a key given twice in a mapping is an error.

Why: PyYAML keeps the last of two equal keys without a word, so a scenario or a manifest edited
by hand can hold ``ego_speed_kmh: 30`` and, further down, ``ego_speed_kmh: 80``, and run with a
value its author never saw. Safe loading only: no Python objects are ever built.
"""

from __future__ import annotations

import errno
import io
import math
import re
import sys
from pathlib import Path
from typing import Any

import yaml

#: Nodes a document's aliases may add when expanded, beyond the nodes it writes. Why: ``&a [x, x]``,
#: ``&b [*a, *a]``, ... nine levels deep is a 4 kB file that any code walking or printing the
#: value expands to billions of nodes (a manifest error message that echoed such a value took
#: 10 GB). Beyond those written, not in all: the whole document capped at it refused a bag's
#: metadata.yaml of 8 000 split files, which has no alias at all (review).
MAX_EXPANDED_NODES = 100_000

#: Nodes a document may write (scalars, lists, mappings, aliases), counted on the parser's event
#: stream before any is built. Why: built, 8 Mi of them (``[1,1,...]``, 16 MiB) took 67 s and 3.2 GB
#: even with libyaml (review 2026-12-08); a bag's metadata.yaml writes ~14 per split file.
MAX_WRITTEN_NODES = 500_000

#: Bytes a bag's metadata.yaml may hold. Why a bound: ``--scenario /dev/zero`` (or a log file named
#: by mistake) was read whole into memory before any check. Why this one: rosbag2 writes ~245 B
#: and 14 values a split file, so :data:`MAX_WRITTEN_NODES` bounds a real one first (~35 000
#: splits, 8.2 MiB, read in 7.3 s); at 4 MiB, 17 000 splits (two days at 10 s splits) were refused
#: (review 2026-12-08). Under the value count, 16 MiB of any YAML reads in seconds.
MAX_METADATA_BYTES = 16 << 20
#: ... and a file of settings' (a scenario, a params file: a few kB). Why smaller: a params file
#: is read by PyYAML's own composer (rcl's typing needs its events), which took ~200 s and 5.7 GB
#: for 16 MiB (review 2026-12-07); 1 MiB costs it seconds (13.7 s at most, a review measured).
MAX_SETTINGS_BYTES = 1 << 20


def read_yaml_text(path: Path, max_bytes: int, what: str) -> str:
    """``path``'s text (UTF-8), refusing a file over ``max_bytes`` with an ``OSError`` (EFBIG).

    ``what``: the kind of file expected, which the error names ("a file of settings"). Read up to
    one byte past the bound, so a device or an endless stream stops there too.
    """
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(errno.EFBIG, f"over {max_bytes >> 20} MiB, too large for {what}", str(path))
    return data.decode("utf-8")


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

_CParser: Any
try:  # libyaml's parser and composer, where PyYAML was built with it (its wheels, Debian's python3-yaml)
    from yaml.cyaml import CParser as _CParser  # type: ignore[attr-defined]
except ImportError:
    _CParser = None


def _loader(text: str, name: str) -> _UniqueKeyLoader:
    """A :class:`_UniqueKeyLoader` for ``text``, composed by libyaml where PyYAML has it.

    Why: PyYAML's own composer took ~200 s and 5.7 GB for a YAML file at the 16 MiB bound (a
    bag's metadata.yaml: review 2026-12-07); with libyaml's, 8 MB of metadata-like YAML reads in
    13.6 s against 38.5 s (peak 452 against 595 MB), and libyaml caps nesting at 1000 levels. The
    keys are checked as before: the constructor is ours.
    """
    if _CParser is None:
        loader = _UniqueKeyLoader(text)
        loader.name = name
        return loader
    stream = io.StringIO(text)
    stream.name = name  # type: ignore[misc]  # libyaml's marks name the stream by it
    return _CUniqueKeyLoader(stream)


if _CParser is not None:
    class _CUniqueKeyLoader(_CParser, _UniqueKeyLoader):  # type: ignore[misc]
        """:class:`_UniqueKeyLoader` whose parser and composer are libyaml's (``yaml.CSafeLoader``'s)."""

        def __init__(self, stream: io.StringIO) -> None:
            _CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._explicit = {}


_NODE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent, yaml.AliasEvent)


class TooManyValuesError(yaml.YAMLError):
    """A valid document refused for its size (:data:`MAX_WRITTEN_NODES`): no "invalid YAML"."""


def _refuse_too_many_nodes(text: str, name: str, what: str) -> None:
    """A :class:`TooManyValuesError` for a document writing over :data:`MAX_WRITTEN_NODES` nodes, before any is built.

    Counted on the parser's events, which are dropped as they come: memory stays flat (4 MiB of
    ``[1,1,...]``: 2 M events in 1.6 s, 20 MB). A syntax error raises as the load would.
    """
    loader = _loader(text, name)
    try:
        nodes = 0
        while loader.check_event():  # type: ignore[no-untyped-call]
            nodes += isinstance(loader.get_event(), _NODE_EVENTS)  # type: ignore[no-untyped-call]
            if nodes > MAX_WRITTEN_NODES:
                raise TooManyValuesError(f"more than {MAX_WRITTEN_NODES} values: too many for {what}")
    finally:
        loader.dispose()


def safe_load_unique(text: str, name: str = "<unicode string>", what: str = "a file of settings") -> Any:
    """``yaml.safe_load(text)``, with a key repeated in a mapping raising ``yaml.YAMLError``.

    ``name``: the file the text came from, which an error's position names (``in "x.yaml",
    line 3, column 5``); PyYAML names text read from a string ``"<unicode string>"``. ``what``:
    the kind of file expected, which the error for too many values names.
    """
    _refuse_too_many_nodes(text, name, what)
    loader = _loader(text, name)  # a SafeLoader: the safe_load tag set, nothing more
    try:
        node = loader.get_single_node()  # type: ignore[no-untyped-call]
        if node is None:
            return None
        cap = _written_nodes(node) + MAX_EXPANDED_NODES
        if _expanded_size(node, {}, cap) > cap:
            raise yaml.YAMLError(f"its aliases expand to more than {MAX_EXPANDED_NODES} nodes (a YAML alias "
                                 "bomb?): write the values out")
        return loader.construct_document(node)  # type: ignore[no-untyped-call]
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    finally:
        loader.dispose()


_STR_TAG = "tag:yaml.org,2002:str"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_NULL_TAG = "tag:yaml.org,2002:null"
_RCL_TRUE = frozenset({"Y", "y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})
_RCL_FALSE = frozenset({"N", "n", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"})
_C_SPACE = " \t\n\v\f\r"
#: what C's strtoll(s, &end, 0) reads whole: decimal, 0x hexadecimal, 0 octal
_STRTOLL = re.compile(r"[ \t\n\v\f\r]*[-+]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
#: what C's strtod reads whole: decimal (an exponent with or without a dot), hexadecimal, inf, nan
_STRTOD = re.compile(r"[ \t\n\v\f\r]*[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
                     r"|0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][-+]?[0-9]+)?"
                     r"|(?i:inf|infinity|nan(?:\([0-9a-zA-Z_]*\))?))")
_RCL_DOT_FLOATS = {f"{sign}.{word}": float(f"{'-' if sign == '-' else ''}{word}")
                   for sign in ("", "+", "-") for word in ("inf", "Inf", "INF")}
_RCL_DOT_FLOATS.update({".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan})


def rcl_scalar(text: str, quoted: bool) -> bool | int | float | str:
    """A scalar as ROS 2's params-file parser (rcl_yaml_param_parser's get_value) types it.

    Why: PyYAML reads YAML 1.1, rcl C's strtoll and strtod: ``5e-3`` and ``1e2`` (no dot) are
    doubles to rcl and strings to PyYAML; ``1_0`` and ``0b101`` strings to rcl, integers to
    PyYAML; ``y`` / ``n`` booleans to rcl; ``null`` and ``2024-01-01`` strings to rcl; ``08`` a
    double. Quoted: always a string. Measured against Kilted's rcl.
    """
    if quoted:
        return text
    if text in _RCL_TRUE:
        return True
    if text in _RCL_FALSE:
        return False
    if _STRTOLL.fullmatch(text):
        number = text.strip(_C_SPACE)
        sign, digits = (-1, number[1:]) if number[0] == "-" else (1, number.lstrip("+"))
        if digits[:2] in ("0x", "0X"):
            value = sign * int(digits[2:], 16)
        elif len(digits) > 1 and digits[0] == "0":
            value = sign * int(digits[1:], 8)
        else:
            value = sign * int(digits)
        if -(2 ** 63) <= value < 2 ** 63:  # else strtoll's ERANGE: read as a double, as rcl does
            return value
    if text in _RCL_DOT_FLOATS:
        return _RCL_DOT_FLOATS[text]
    if _STRTOD.fullmatch(text):
        number = text.strip(_C_SPACE)
        body = number.lstrip("+-")
        if body[:2] in ("0x", "0X"):
            hexa = body if "p" in body.lower() else body + "p0"
            value_f = float.fromhex(("-" if number[0] == "-" else "") + hexa)
        else:
            value_f = float(number.split("(")[0])  # nan(chars): a NaN
        mantissa = re.sub(r"[eEpP].*", "", body)
        overflow = math.isinf(value_f) and "inf" not in body.lower()
        underflow = abs(value_f) < sys.float_info.min and any(c not in "0.xX" for c in mantissa)
        if not overflow and not underflow:  # strtod's ERANGE: rcl reads a string
            return value_f
    return text


def _short(tag: str) -> str:
    """``!!float`` for ``tag:yaml.org,2002:float``, as it was written."""
    return "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag


class _RclParamsLoader(_UniqueKeyLoader):
    """YAML as ROS 2 reads a params file: rcl's scalar types, no aliases, keys as written.

    A tag is refused unless the value reads the same without it: ROS 2 versions differ (Kilted
    honours ``!!str`` only and reads ``!!float 40`` as an integer, later versions honour more).
    """

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):  # type: ignore[no-untyped-call]
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, f"an alias (*{event.anchor}): ROS 2 refuses aliases in a params file "
                "('Will not support aliasing'): write the value out", event.start_mark)
        return super().compose_node(parent, index)

    def compose_scalar_node(self, anchor: Any) -> yaml.ScalarNode:
        event = self.get_event()  # type: ignore[no-untyped-call]
        quoted = event.style in ("'", '"')
        if not quoted and event.value == "":
            tag = _NULL_TAG  # rcl: "No value"
        else:
            value = rcl_scalar(event.value, quoted)
            tag = {bool: _BOOL_TAG, int: _INT_TAG, float: _FLOAT_TAG}.get(type(value), _STR_TAG)
        if event.tag is not None and (_STR_TAG if event.tag == "!" else event.tag) != tag:
            raise yaml.composer.ComposerError(
                None, None, f"the tag {_short(event.tag)} on {event.value!r}: ROS 2 versions read YAML tags "
                "differently (Kilted reads !!float 40 as an integer): write the value untagged, as meant "
                "(a string quoted: '2024'; a double with its decimal point: 40.0)", event.start_mark)
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        if anchor is not None:
            self.anchors[anchor] = node
        return node

    def _collection_tag(self, default: str) -> None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if event.tag not in (None, "!", default):
            raise yaml.composer.ComposerError(
                None, None, f"the tag {_short(event.tag)}: ROS 2 reads no tags on a mapping or a list",
                event.start_mark)

    def compose_sequence_node(self, anchor: Any) -> yaml.SequenceNode:
        self._collection_tag("tag:yaml.org,2002:seq")
        return super().compose_sequence_node(anchor)

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        self._collection_tag("tag:yaml.org,2002:map")
        return super().compose_mapping_node(anchor)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Keys as written (rcl's names: ``1`` and ``01`` are two), each once; no merge (``<<`` is a name)."""
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep=deep)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "":
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "a key must be a name (ROS 2 refuses a list, a mapping or an empty key)", key_node.start_mark)
            if key_node.value in out:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found the key {key_node.value!r} twice", key_node.start_mark)
            out[key_node.value] = self.construct_object(value_node, deep=deep)  # type: ignore[no-untyped-call]
        return out

    def construct_rcl_scalar(self, node: yaml.ScalarNode) -> bool | int | float | str:
        return rcl_scalar(str(node.value), node.style in ("'", '"'))


for _tag in (_STR_TAG, _BOOL_TAG, _INT_TAG, _FLOAT_TAG):
    _RclParamsLoader.add_constructor(_tag, _RclParamsLoader.construct_rcl_scalar)


def load_ros_params(text: str, name: str = "<unicode string>") -> Any:
    """A ROS 2 params file (or a ``-p`` value) read as rcl reads it; ``yaml.YAMLError`` if rcl refuses it.

    Scalars typed as rcl types them (:func:`rcl_scalar`), an empty value ``None`` (rcl: "No value"),
    an alias refused (rcl: "Will not support aliasing"; a merge ``<<: *a`` with it), a tag refused
    unless it changes nothing, keys as written and each once per mapping. ``None`` for a file with
    no document (empty, comments only), which rcl reads as no parameters.
    """
    loader = _RclParamsLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()  # type: ignore[no-untyped-call]
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    finally:
        loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _written_nodes(root: yaml.Node) -> int:
    """How many nodes the document writes (an alias's target counted once)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            stack.extend(_children(node))
    return len(seen)


def _expanded_size(node: yaml.Node, memo: dict[int, int], cap: int) -> int:
    """How many nodes ``node`` stands for with every alias expanded (capped just past ``cap``)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = cap + 1  # a node reached again while being counted: a cycle
    total = 1
    for child in _children(node):
        total += _expanded_size(child, memo, cap)
        if total > cap:
            break
    memo[id(node)] = total = min(total, cap + 1)
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
