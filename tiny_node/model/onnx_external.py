"""The tensors of an ONNX graph that keep their bytes in external data files, read from the graph's bytes.

ONNX external data (``onnx.save_model(..., save_as_external_data=True)``; optimum writes it for
exports above 2 GB, ``*.onnx_data``): a tensor's bytes sit in another file, named by the
tensor's ``external_data`` entries ``location`` (relative to the graph's directory), ``offset``
and ``length``, and ``data_location: EXTERNAL``. A bundle runs such a graph only on the bytes of
data files its manifest lists and verifies (``runtime.load_session``); this module says which
tensors those are and gives each as a numpy view of its verified file.

Every graph a bundle loads is scanned, not only those whose manifest lists data: a graph loaded
from bytes that keeps tensors outside makes onnxruntime (1.16 and 1.32 alike, with graph
optimisations off) read them from the process's working directory, unverified. A graph that
names no ``location`` has none (onnxruntime refuses an external tensor without one), and is not
parsed; any other is parsed with the onnx package's ModelProto, and the scan walks every
place a tensor can sit: the main graph's initializers, subgraphs, node attributes, functions,
sparse tensors and training info. ``test/test_model_external_data.py`` holds it equal to
``onnx.external_data_helper`` on generated graphs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from math import prod
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import onnx

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


def external_tensors(model: bytes) -> list[ExternalTensor]:
    """Every tensor of the serialized ModelProto ``model`` with ``data_location: EXTERNAL``, graph by graph.

    Raises ExternalDataError if ``model`` is no valid protobuf, or a tensor's ``external_data``
    has no location, an unknown or repeated key, or an offset or length that is not a number.
    """
    if b"location" not in model:
        # No tensor names a location, so none is read from outside (onnxruntime refuses an
        # EXTERNAL tensor without one: "Missing 'location'"); and the onnx package, whose import
        # takes about a second, stays out of every worker start and restart
        return []
    import onnx
    from google.protobuf.message import DecodeError

    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(model)
    except DecodeError as exc:
        raise ExternalDataError(f"not an ONNX model: {exc}") from exc
    return [_external(t.name, t.data_type, list(t.dims), [(e.key, e.value) for e in t.external_data], where)
            for t, where in _all_tensors(proto) if t.data_location == onnx.TensorProto.EXTERNAL]


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


def _graph(g: onnx.GraphProto, main: bool) -> Iterator[tuple[onnx.TensorProto, str]]:
    for t in g.initializer:
        yield t, MAIN_INITIALIZER if main else "an initializer of a subgraph"
    for sp in g.sparse_initializer:
        yield from _sparse(sp)
    for node in g.node:
        yield from _attributes(node.attribute)


def _sparse(sp: onnx.SparseTensorProto) -> Iterator[tuple[onnx.TensorProto, str]]:
    yield sp.values, "a sparse tensor"
    yield sp.indices, "a sparse tensor"


def _attributes(attrs: Iterable[onnx.AttributeProto]) -> Iterator[tuple[onnx.TensorProto, str]]:
    for a in attrs:
        if a.HasField("t"):
            yield a.t, "a node attribute"
        for t in a.tensors:
            yield t, "a node attribute"
        if a.HasField("sparse_tensor"):
            yield from _sparse(a.sparse_tensor)
        for sp in a.sparse_tensors:
            yield from _sparse(sp)
        if a.HasField("g"):
            yield from _graph(a.g, main=False)
        for g in a.graphs:
            yield from _graph(g, main=False)


def _all_tensors(model: onnx.ModelProto) -> Iterator[tuple[onnx.TensorProto, str]]:
    """Every tensor of ``model`` with where it sits, in file order of the parts."""
    yield from _graph(model.graph, main=True)
    for fn in model.functions:
        yield from _attributes(fn.attribute_proto)
        for node in fn.node:
            yield from _attributes(node.attribute)
    for info in model.training_info:
        yield from _graph(info.initialization, main=False)
        yield from _graph(info.algorithm, main=False)


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
    if "\x00" in info["location"]:  # no file name holds one (a path with it is a ValueError, not an OSError)
        raise ExternalDataError(f"tensor {name!r}: external_data location {info['location']!r} holds a NUL byte")
    if any(d < 0 for d in dims):
        raise ExternalDataError(f"tensor {name!r} has a negative dimension: {dims}")

    def number(key: str) -> int:
        text = info[key]
        if not (text.isascii() and text.isdigit()) or len(text) > 20:  # int64 has 19 digits; int() stops at 4300
            raise ExternalDataError(f"tensor {name!r}: external_data {key} {text[:40]!r} is not a whole number "
                                    "below 10**20")
        return int(text)

    return ExternalTensor(name=name, data_type=data_type, dims=tuple(dims), location=info["location"],
                          offset=number("offset") if "offset" in info else 0,
                          length=number("length") if "length" in info else None, where=where)
