"""The tensors of an ONNX graph that keep their bytes in external data files, read from the graph's bytes.

ONNX external data (``onnx.save_model(..., save_as_external_data=True)``; optimum writes it for
exports above 2 GB, ``*.onnx_data``): a tensor's bytes sit in another file, named by the
tensor's ``external_data`` entries ``location`` (relative to the graph's directory), ``offset``
and ``length``, and ``data_location: EXTERNAL``. A bundle runs such a graph only on the bytes of
data files its manifest lists and verifies (``runtime.load_session``); this module says which
tensors those are and gives each as a numpy view of its verified file.

Why a reader of the protobuf wire format here and not ``onnx.load_model_from_string``: the node
does not depend on the onnx package (only the dev and train extras have it), yet every graph it
loads is scanned, not only those whose manifest lists data: a graph loaded from bytes that keeps
tensors outside makes onnxruntime (1.16 and 1.32 alike, with graph optimisations off) read them
from the process's working directory, unverified. It walks only the messages that can hold a
tensor (model, graph, node, attribute, function, sparse tensor, training info) and skips every
other field, ``raw_data`` included, without copying it. ``test/test_model_external_data.py``
holds it equal to ``onnx.external_data_helper`` on generated graphs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from math import prod
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from numpy.typing import NDArray

EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
#: what a tensor of the main graph is; any other ``where`` cannot be handed to onnxruntime
MAIN_INITIALIZER = "an initializer of the main graph"
#: the ``external_data`` keys onnx and onnxruntime know (``checksum`` is read by neither)
KEYS = ("location", "offset", "length", "checksum")
#: ONNX TensorProto.DataType -> numpy (little-endian hosts, as onnxruntime's are); others are refused
NUMPY_TYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype(np.float32), 2: np.dtype(np.uint8), 3: np.dtype(np.int8), 4: np.dtype(np.uint16),
    5: np.dtype(np.int16), 6: np.dtype(np.int32), 7: np.dtype(np.int64), 9: np.dtype(np.bool_),
    10: np.dtype(np.float16), 11: np.dtype(np.float64), 12: np.dtype(np.uint32), 13: np.dtype(np.uint64),
}
_MAX_DEPTH = 100  # nested messages: protobuf's own default limit
_LEN = 2  # wire type of strings, bytes, messages and packed repeated numbers


class ExternalDataError(ValueError):
    """The graph's bytes are no readable ONNX model, or a tensor's external data is malformed."""


@dataclass(frozen=True)
class ExternalTensor:
    """One tensor whose bytes are in a file beside the graph."""

    name: str
    data_type: int  # TensorProto.DataType
    dims: tuple[int, ...]
    location: str  # as written in the graph: relative to the graph's directory
    offset: int
    length: int | None  # None: not given (then the size of its dims and type)
    where: str  # MAIN_INITIALIZER, or where else in the graph it sits


def external_tensors(model: bytes | bytearray | memoryview) -> list[ExternalTensor]:
    """Every tensor of the serialized ModelProto ``model`` with ``data_location: EXTERNAL``, in file order.

    Raises ExternalDataError if ``model`` is no valid protobuf, or a tensor's ``external_data``
    has no location, an unknown or repeated key, or an offset or length that is not a number.
    """
    scan = _Scan()
    with memoryview(model) as buf:
        scan.model(buf)
    return scan.found


def location_path(graph_rel: str, location: str) -> PurePosixPath | None:
    """The bundle-relative path of ``location`` for the graph at ``graph_rel``; None if it leaves the graph's directory.

    Absolute locations and ``..`` are refused, as onnx and onnxruntime refuse them.
    """
    loc = PurePosixPath(location)
    if loc.is_absolute() or ".." in loc.parts or not loc.parts:
        return None
    return PurePosixPath(graph_rel).parent / loc


def tensor_array(tensor: ExternalTensor, data: bytearray | bytes) -> NDArray[Any]:
    """``tensor`` as a numpy view of its bytes in ``data`` (its whole data file); a copy only if misaligned.

    Why views: the data files may be many GB; onnxruntime copies what it is handed into the
    session, so a view costs nothing more. Raises ExternalDataError naming the tensor if its
    type cannot be handed over, its length disagrees with its dims, or it runs past the file.
    """
    dtype = NUMPY_TYPES.get(tensor.data_type)
    if dtype is None:
        raise ExternalDataError(f"tensor {tensor.name!r} has ONNX data type {tensor.data_type}, which is not "
                                f"read from external data here (supported: {sorted(NUMPY_TYPES)})")
    count = prod(tensor.dims)
    nbytes = count * dtype.itemsize
    if tensor.length is not None and tensor.length != nbytes:
        raise ExternalDataError(f"tensor {tensor.name!r} has length {tensor.length}, but {dtype} "
                                f"{list(tensor.dims)} takes {nbytes} bytes")
    if tensor.offset + nbytes > len(data):
        raise ExternalDataError(f"tensor {tensor.name!r} at offset {tensor.offset}, {nbytes} bytes, runs past "
                                f"the end of the file ({len(data)} bytes)")
    if count == 0:
        return np.zeros(tensor.dims, dtype)
    arr = np.frombuffer(data, dtype, count, tensor.offset).reshape(tensor.dims)
    return arr if arr.flags.aligned else arr.copy()


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ExternalDataError("not an ONNX model: a number runs past the end of its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ExternalDataError("not an ONNX model: a number longer than 10 bytes")


def _field(buf: memoryview, pos: int, depth: int) -> tuple[int, int, int | memoryview, int]:
    """(field number, wire type, value, next position): a varint's value, else the field's bytes."""
    key, pos = _varint(buf, pos)
    num, wire = key >> 3, key & 7
    if num == 0:
        raise ExternalDataError("not an ONNX model: field number 0")
    if wire == 0:
        value, pos = _varint(buf, pos)
        return num, wire, value, pos
    if wire in (1, _LEN, 5):
        if wire == _LEN:
            size, pos = _varint(buf, pos)
        else:
            size = 8 if wire == 1 else 4
        if size > len(buf) - pos:
            raise ExternalDataError(f"not an ONNX model: field {num} runs past the end of its message")
        return num, wire, buf[pos:pos + size], pos + size
    if wire == 3:  # a group (long deprecated): skipped to its end
        if depth >= _MAX_DEPTH:
            raise ExternalDataError(f"not an ONNX model: nested deeper than {_MAX_DEPTH}")
        while True:
            if pos >= len(buf):
                raise ExternalDataError(f"not an ONNX model: group {num} has no end")
            inner, inner_wire, _, pos = _field(buf, pos, depth + 1)
            if inner_wire == 4:
                if inner != num:
                    raise ExternalDataError(f"not an ONNX model: group {num} ended as {inner}")
                return num, wire, 0, pos
    if wire == 4:
        return num, wire, 0, pos
    raise ExternalDataError(f"not an ONNX model: field {num} has wire type {wire}")


def _fields(buf: memoryview, depth: int) -> Iterator[tuple[int, int, int | memoryview]]:
    if depth > _MAX_DEPTH:
        raise ExternalDataError(f"not an ONNX model: nested deeper than {_MAX_DEPTH}")
    pos = 0
    while pos < len(buf):
        num, wire, value, pos = _field(buf, pos, depth)
        if wire == 4:
            raise ExternalDataError(f"not an ONNX model: end of group {num} outside a group")
        yield num, wire, value


def _messages(buf: memoryview, depth: int, wanted: dict[int, str]) -> Iterator[tuple[str, memoryview]]:
    """The sub-messages of ``buf`` in the fields ``wanted`` (number -> what it is), in order.

    A wanted field number with another wire type is an unknown field to protobuf too: skipped.
    """
    for num, wire, value in _fields(buf, depth):
        if num in wanted and wire == _LEN and isinstance(value, memoryview):
            yield wanted[num], value


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(value: memoryview, what: str) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExternalDataError(f"not an ONNX model: {what} is not UTF-8 ({exc})") from exc


class _Scan:
    """Walks a ModelProto (field numbers from onnx.proto) and collects its external tensors."""

    def __init__(self) -> None:
        self.found: list[ExternalTensor] = []

    def model(self, buf: memoryview) -> None:
        parts = {7: "graph", 25: "function", 20: "training"}
        for what, msg in _messages(buf, 1, parts):
            if what == "graph":
                self.graph(msg, 2, main=True)
            elif what == "function":  # FunctionProto: node 7, attribute_proto 11
                for part, inner in _messages(msg, 2, {7: "node", 11: "attribute"}):
                    (self.node if part == "node" else self.attribute)(inner, 3)
            else:  # TrainingInfoProto: initialization 1, algorithm 2
                for _, graph in _messages(msg, 2, {1: "graph", 2: "graph"}):
                    self.graph(graph, 3, main=False)

    def graph(self, buf: memoryview, depth: int, main: bool) -> None:
        # GraphProto: node 1, initializer 5, sparse_initializer 15
        for what, msg in _messages(buf, depth, {1: "node", 5: "initializer", 15: "sparse"}):
            if what == "node":
                self.node(msg, depth + 1)
            elif what == "initializer":
                self.tensor(msg, depth + 1, MAIN_INITIALIZER if main else "an initializer of a subgraph")
            else:
                self.sparse(msg, depth + 1)

    def node(self, buf: memoryview, depth: int) -> None:
        for _, msg in _messages(buf, depth, {5: "attribute"}):
            self.attribute(msg, depth + 1)

    def attribute(self, buf: memoryview, depth: int) -> None:
        # AttributeProto: t 5, tensors 10, g 6, graphs 11, sparse_tensor 22, sparse_tensors 23
        parts = {5: "tensor", 10: "tensor", 6: "graph", 11: "graph", 22: "sparse", 23: "sparse"}
        for what, msg in _messages(buf, depth, parts):
            if what == "tensor":
                self.tensor(msg, depth + 1, "a node attribute")
            elif what == "graph":
                self.graph(msg, depth + 1, main=False)
            else:
                self.sparse(msg, depth + 1)

    def sparse(self, buf: memoryview, depth: int) -> None:
        for _, msg in _messages(buf, depth, {1: "values", 2: "indices"}):
            self.tensor(msg, depth + 1, "a sparse tensor")

    def tensor(self, buf: memoryview, depth: int, where: str) -> None:
        # TensorProto: dims 1, data_type 2, name 8, external_data 13, data_location 14
        dims: list[int] = []
        data_type = location = 0
        name = ""
        entries: list[tuple[str, str]] = []
        for num, wire, value in _fields(buf, depth):
            if wire == 0 and isinstance(value, int):
                if num == 1:
                    dims.append(_int64(value))
                elif num == 2:
                    data_type = _int64(value)
                elif num == 14:
                    location = _int64(value)
            elif wire == _LEN and isinstance(value, memoryview):
                if num == 1:  # packed dims
                    pos = 0
                    while pos < len(value):
                        dim, pos = _varint(value, pos)
                        dims.append(_int64(dim))
                elif num == 8:
                    name = _text(value, "a tensor name")
                elif num == 13:
                    entries.append(self.entry(value, depth + 1))
        if location == EXTERNAL:
            self.found.append(_external(name, data_type, dims, entries, where))

    def entry(self, buf: memoryview, depth: int) -> tuple[str, str]:
        # StringStringEntryProto: key 1, value 2
        key = value = ""
        for num, wire, v in _fields(buf, depth):
            if wire == _LEN and isinstance(v, memoryview) and num in (1, 2):
                text = _text(v, "an external_data entry")
                key, value = (text, value) if num == 1 else (key, text)
        return key, value


def _external(name: str, data_type: int, dims: list[int], entries: list[tuple[str, str]],
              where: str) -> ExternalTensor:
    info: dict[str, str] = {}
    for key, value in entries:
        if key not in KEYS:
            raise ExternalDataError(f"tensor {name!r}: unknown external_data key {key!r} (known: {', '.join(KEYS)})")
        if key in info:
            raise ExternalDataError(f"tensor {name!r}: external_data key {key!r} given twice")
        info[key] = value
    if not info.get("location"):
        raise ExternalDataError(f"tensor {name!r} keeps its data externally but names no location")
    if any(d < 0 for d in dims):
        raise ExternalDataError(f"tensor {name!r} has a negative dimension: {dims}")

    def number(key: str) -> int:
        text = info[key]
        if not (text.isascii() and text.isdigit()):
            raise ExternalDataError(f"tensor {name!r}: external_data {key} {text!r} is not a whole number")
        return int(text)

    return ExternalTensor(name=name, data_type=data_type, dims=tuple(dims), location=info["location"],
                          offset=number("offset") if "offset" in info else 0,
                          length=number("length") if "length" in info else None, where=where)
