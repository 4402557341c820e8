"""The node's end of the model worker's reply pipe: never blocking, bounded, and unpickling only replies.

Why not ``Connection.recv()``: the deadline thread drains this pipe (``ModelWorker.poll``), and
``recv()`` blocks until a whole message is in. A worker stopped in the middle of a large reply,
or one that wrote a length and stalled, held the deadline thread, and with it every decision.
And ``recv()`` unpickles anything: a worker taken over through its bundle (a bug in onnxruntime,
protobuf or tokenizers) could have run code in the node. Here the pipe's bytes are read as they
come (the fd is non-blocking), a reply is decoded only once whole, a reply over
:data:`MAX_REPLY_BYTES` is refused, a pickle with memo stores at an index of its own choosing
too, the unpickler builds only the protocol's own types, and a reply is checked field by field.

The wire format is ``multiprocessing.connection.Connection``'s (the worker sends with
``Connection.send``): a 4-byte big-endian signed length (-1: a 64-bit one follows, for more than
2 GiB), then the pickle.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import struct
from multiprocessing.connection import Connection

from tiny_node.model.output import ModelOutput
from tiny_node.model.protocol import Fatal, FromWorker, ModelResult, Rationale, Ready

#: A reply is a few hundred bytes, at most a few kB (the worker clips its texts to 1500 characters).
MAX_REPLY_BYTES = 1 << 16
#: At most this much is read per drain, so a worker that floods the pipe cannot hold the caller
#: (the rest stays in the pipe, which wakes the deadline thread again).
_READ_PER_DRAIN = MAX_REPLY_BYTES + 4
#: Each reply type's fields and the types their values may have: a reply is checked whole.
_FIELDS: dict[type, dict[str, tuple[type, ...]]] = {
    ModelResult: {"seq": (int,), "output": (ModelOutput, type(None)), "infer_ms": (float,), "cancelled": (bool,),
                  "error": (str, type(None)), "rationale": (bool,)},
    ModelOutput: {"brake": (bool,), "confidence": (float,), "label": (str,), "probs": (tuple,),
                  "p_brake": (float,), "tracks": (str,), "conflict_s": (float,), "conflict_brake": (bool,)},
    Rationale: {"seq": (int,), "text": (str,), "ms": (float,), "tokens": (int,), "aborted": (bool,),
                "error": (str, type(None))},
    Ready: {"pid": (int,), "load_ms": (float,), "warmup_ms": (tuple,), "note": (str,)},
    Fatal: {"message": (str,), "permanent": (bool,)},
}
#: The classes the unpickler may build: these, and nothing else.
_REPLY_TYPES = {(cls.__module__, cls.__name__) for cls in _FIELDS}
#: Memo stores at an index of the pickle's choosing: the unpickler grows its memo to that index (a
#: 9-byte pickle took 3.3 s and 4.6 GB). Connection.send pickles at protocol 4 or later, which
#: memoizes with MEMOIZE, in order: an honest reply has none of these.
_REFUSED_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


class ReplyError(ValueError):
    """The worker sent something that is not a reply (too large, or another type)."""


class _ReplyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        if (module, name) in _REPLY_TYPES:
            return super().find_class(module, name)  # type: ignore[no-any-return]
        raise ReplyError(f"the worker sent a {module}.{name}, which is no reply")


class ReplyReader:
    """Whole replies from the worker's pipe as they arrive; see the module docstring."""

    def __init__(self, conn: Connection) -> None:
        self._fd = conn.fileno()
        os.set_blocking(self._fd, False)
        self._buf = bytearray()

    def read(self) -> tuple[list[FromWorker], bool]:
        """The replies complete so far, and whether the worker closed its end (EOF).

        Raises :class:`ReplyError` for a reply over :data:`MAX_REPLY_BYTES` or of a type the
        protocol does not have: the worker is then not to be trusted, and is to be killed.
        """
        eof = False
        budget = _READ_PER_DRAIN
        while budget > 0:
            try:
                chunk = os.read(self._fd, min(65536, budget))
            except BlockingIOError:
                break
            except OSError:  # the pipe broke: as closed
                eof = True
                break
            if not chunk:
                eof = True
                break
            self._buf += chunk
            budget -= len(chunk)
        replies: list[FromWorker] = []
        while len(self._buf) >= 4:
            (size,) = struct.unpack("!i", self._buf[:4])
            if not 0 <= size <= MAX_REPLY_BYTES:  # -1: over 2 GiB
                raise ReplyError(f"the worker sent a reply of {'over 2 GiB' if size < 0 else f'{size} bytes'} "
                                 f"(at most {MAX_REPLY_BYTES})")
            if len(self._buf) < 4 + size:
                break
            payload = bytes(self._buf[4:4 + size])
            del self._buf[:4 + size]
            replies.append(_decode(payload))
        return replies, eof


def _decode(payload: bytes) -> FromWorker:
    """One reply from its pickle, checked opcode by opcode first and field by field after."""
    try:
        for op, _, _ in pickletools.genops(payload):
            if op.name in _REFUSED_OPCODES:
                raise ReplyError(f"the worker sent a pickle with {op.name}, which no reply has")
        reply = _ReplyUnpickler(io.BytesIO(payload)).load()
    except ReplyError:
        raise
    except Exception as exc:  # a pickle's own errors are many: any of them is a broken reply
        raise ReplyError(f"the worker sent a reply that does not unpickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(reply, ModelResult | Rationale | Ready | Fatal):
        raise ReplyError(f"the worker sent a {type(reply).__name__}, which is no reply")
    _check_fields(reply)
    return reply


def _check_fields(obj: object) -> None:
    """Every field of a reply (and of its ModelOutput) present, of its type; tuples of floats."""
    fields = _FIELDS[type(obj)]
    values = vars(obj)
    if values.keys() != fields.keys():
        raise ReplyError(f"the worker sent a {type(obj).__name__} with fields {sorted(values)}")
    for name, allowed in fields.items():
        value = values[name]
        if not isinstance(value, allowed) or (isinstance(value, tuple) and not all(type(v) is float for v in value)):
            raise ReplyError(f"the worker sent a {type(obj).__name__} whose {name} is a {type(value).__name__}")
        if isinstance(value, ModelOutput):
            _check_fields(value)
