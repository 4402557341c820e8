"""The node's end of the model worker's reply pipe: never blocking, bounded, and unpickling only replies.

Why not ``Connection.recv()``: the deadline thread drains this pipe (``ModelWorker.poll``), and
``recv()`` blocks until a whole message is in. A worker stopped in the middle of a large reply,
or one that wrote a length and stalled, held the deadline thread, and with it every decision.
And ``recv()`` unpickles anything: a worker taken over through its bundle (a bug in onnxruntime,
protobuf or tokenizers) could have run code in the node. Here the pipe's bytes are read as they
come (the fd is non-blocking), a reply is decoded only once whole, a reply over
:data:`MAX_REPLY_BYTES` is refused, and the unpickler builds only the protocol's own types.

The wire format is ``multiprocessing.connection.Connection``'s (the worker sends with
``Connection.send``): a 4-byte big-endian signed length (-1: a 64-bit one follows, for more than
2 GiB), then the pickle.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from multiprocessing.connection import Connection

from tiny_node.model.protocol import FromWorker

#: A reply is a few hundred bytes (a result, a rationale); this is far beyond any honest one.
MAX_REPLY_BYTES = 1 << 20
#: At most this much is read per drain, so a worker that floods the pipe cannot hold the caller.
_READ_PER_DRAIN = 4 * (MAX_REPLY_BYTES + 4)
_REPLY_TYPES = {("tiny_node.model.protocol", name) for name in ("ModelResult", "Rationale", "Ready", "Fatal")}
_REPLY_TYPES.add(("tiny_node.model.output", "ModelOutput"))


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
            try:
                reply = _ReplyUnpickler(io.BytesIO(payload)).load()
            except ReplyError:
                raise
            except Exception as exc:  # a pickle's own errors are many: any of them is a broken reply
                raise ReplyError(f"the worker sent a reply that does not unpickle ({type(exc).__name__}: "
                                 f"{exc})") from exc
            replies.append(reply)
        return replies, eof
