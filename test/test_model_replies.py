"""The node's end of the worker's reply pipe: whole replies only, never blocking, replies only."""

from __future__ import annotations

import dataclasses
import fcntl
import multiprocessing as mp
import multiprocessing.connection
import os
import pickle
import struct
import time
from pathlib import Path

import pytest

from tiny_node.model.output import ModelOutput
from tiny_node.model.protocol import Fatal, ModelResult, Rationale
from tiny_node.model.replies import MAX_REPLY_BYTES, ReplyError, ReplyReader

OUT = ModelOutput(True, 0.9, "brake", (0.1, 0.9), 0.9, tracks="adult 9.0 m", conflict_s=float("inf"))


def _pipe() -> tuple[ReplyReader, mp.connection.Connection, mp.connection.Connection]:
    r, w = mp.get_context("spawn").Pipe(duplex=False)
    return ReplyReader(r), r, w


class _Evil:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


def test_replies_sent_by_a_connection_are_read_whole_and_in_order() -> None:
    reader, _, w = _pipe()
    sent = [ModelResult(1, OUT, 1.5, rationale=True), Rationale(1, "adult crossing, 9 m", 3.0, 5),
            Fatal("x", permanent=False), ModelResult(2, None, 0.0, error="e" * 20_000)]  # one over 16 kB
    for msg in sent:
        w.send(msg)
    got, closed = reader.read()
    assert got == sent and not closed
    w.close()
    assert reader.read() == ([], True)


def test_a_reply_that_stops_half_way_does_not_block_and_is_read_when_whole() -> None:
    """Connection.recv() waited for the rest: a worker stopped mid-reply held the deadline thread."""
    reader, _, w = _pipe()
    data = pickle.dumps(ModelResult(3, OUT, 2.0))
    framed = struct.pack("!i", len(data)) + data
    os.write(w.fileno(), framed[:7])
    t0 = time.monotonic()
    assert reader.read() == ([], False)
    assert time.monotonic() - t0 < 0.5
    os.write(w.fileno(), framed[7:])
    assert reader.read() == ([ModelResult(3, OUT, 2.0)], False)


@pytest.mark.parametrize("header", [struct.pack("!i", MAX_REPLY_BYTES + 1), struct.pack("!i", -1) + struct.pack("!Q", 1 << 33)])
def test_a_reply_larger_than_any_honest_one_is_refused_before_it_arrives(header: bytes) -> None:
    reader, _, w = _pipe()
    os.write(w.fileno(), header)
    with pytest.raises(ReplyError, match=r"the worker sent a reply of (\d+ bytes|over 2 GiB) \(at most 65536\)"):
        reader.read()


def test_a_pickle_of_anything_but_a_reply_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    reader, _, w = _pipe()
    w.send_bytes(pickle.dumps(_Evil(tmp_path / "ran")))
    with pytest.raises(ReplyError, match=r"the worker sent a posix.system, which is no reply"):
        reader.read()
    assert not (tmp_path / "ran").exists()
    reader, _, w = _pipe()
    w.send_bytes(b"\x80\x04not a pickle")
    with pytest.raises(ReplyError, match=r"does not unpickle"):
        reader.read()


@pytest.mark.parametrize(("payload", "match"), [
    # a memo store at index 200 000 000: the unpickler grew its memo to it (3.3 s, 4.6 GB at 3e8)
    (b"\x80\x04Nr" + (200_000_000).to_bytes(4, "little") + b".", "a pickle with LONG_BINPUT, which no reply has"),
    (pickle.dumps(None, 4), "the worker sent a NoneType, which is no reply"),  # a flood of them cost 0.9 s a poll
    (pickle.dumps(ModelResult("1", None, 0.0), 4), "a ModelResult whose seq is a str"),  # type: ignore[arg-type]
    (pickle.dumps(ModelResult(1, dataclasses.replace(OUT, probs=("x",)), 0.0), 4),
     "a ModelOutput whose probs is a tuple"),
])
def test_a_reply_that_is_no_reply_of_the_protocol_is_refused(payload: bytes, match: str) -> None:
    """Only the protocol's replies, whole and of their fields' types, pass (security reviews)."""
    reader, _, w = _pipe()
    w.send_bytes(payload)
    t0 = time.monotonic()
    with pytest.raises(ReplyError, match=match):
        reader.read()
    assert time.monotonic() - t0 < 0.5


def test_a_flood_of_replies_is_read_a_bounded_amount_at_a_time() -> None:
    reader, r, w = _pipe()
    fcntl.fcntl(w.fileno(), fcntl.F_SETPIPE_SZ, 4 * MAX_REPLY_BYTES)  # room for the flood, unread
    stale = ModelResult(0, OUT, 1.0)
    size = len(pickle.dumps(stale, 4)) + 4
    for _ in range(2 * MAX_REPLY_BYTES // size):  # two drains' worth, and more waiting in the pipe
        w.send(stale)
    got, _ = reader.read()
    assert 0 < len(got) <= (MAX_REPLY_BYTES + 4) // size + 1
    assert mp.connection.wait([r], timeout=0)  # the rest wakes the deadline thread again
