"""Open any rosbag2 (mcap or sqlite3) and find its camera / range / odometry / IMU topics by type.

Messages are read from the storage files named by ``metadata.yaml``, not through the
directory reader: rosbags matches the metadata's topics to the storage's by their QoS text,
and bags written by ``ros2 bag record`` may disagree there (the rosbag2 project's own sample
bags do: the directory reader yields 0 of their 20 messages).  ``ros2 bag`` itself takes the
topics from the storage, and so do we; compressed bags too (zstd per file or per message),
decompressed here.  Every failure becomes a :class:`BagError` naming the bag and the cause.

Things a recording leaves that rosbags' readers do not handle are handled here: a sqlite3
file whose write-ahead log (``<file>.db3-wal``) was never applied (a recording killed, as with
rosbag2's ``resilient`` preset) is read with the log applied, on a copy; a topic whose
message definition rosbags cannot parse is left undecoded instead of refusing the whole bag
(:class:`_StorageReader`); a sqlite3 type recorded without its definition (encoding "") is a
type without one (:class:`_Sqlite3Reader`); and a topic recorded under several types is read
as the sensor type among them, else the type of most of its messages (:class:`BagSource`).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import os
import shutil
import sqlite3
import struct
import sys
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import groupby, islice
from pathlib import Path
from tempfile import TemporaryDirectory
from types import MappingProxyType, TracebackType
from typing import Any, BinaryIO, Protocol

import yaml
from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.rosbag2 import Reader, ReaderError
from rosbags.rosbag2.reader import DirectoryReader
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Reader
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from tiny_node.bag import msgs
from tiny_node.bag.errors import BagError
from tiny_node.strict_yaml import (
    MAX_METADATA_BYTES,
    MAX_WRITTEN_NODES,
    TooManyValuesError,
    read_yaml_text,
    safe_load_unique,
    yaml_problem,
)

if sys.version_info >= (3, 14):
    from compression import zstd
else:  # rosbags' own dependency
    from backports import zstd

ROLES = ("camera", "range", "odom", "imu")
ROLE_TYPES: dict[str, tuple[str, ...]] = {
    "camera": (msgs.IMAGE, msgs.COMPRESSED_IMAGE),
    "range": (msgs.RANGE,),
    "odom": (msgs.ODOMETRY,),
    "imu": (msgs.IMU,),
}
#: every type a role reads
_ROLE_READ = frozenset(t for types in ROLE_TYPES.values() for t in types)
STORAGE_SUFFIX = {".mcap": "mcap", ".db3": "sqlite3"}
#: the first bytes of a zstd frame: a message that begins with them is compressed (CDR's begin 00)
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def storage_file(path: Path) -> tuple[str, bool] | None:
    """(storage, zstd-compressed) of a storage file's name (``x_0.mcap``, ``x_0.db3.zstd``), or None."""
    compressed = path.suffix == ".zstd"
    storage = STORAGE_SUFFIX.get(Path(path.stem).suffix if compressed else path.suffix)
    return None if storage is None else (storage, compressed)


def storage_files(folder: Path) -> dict[Path, tuple[str, bool]]:
    """The storage files in ``folder``, each with :func:`storage_file`'s (storage, zstd-compressed)."""
    return {p: k for p in folder.iterdir() if (k := storage_file(p)) is not None and p.is_file()}


#: messages of a type tried against each distro's definition in a bag without definitions
STORE_SAMPLE = 20
#: largest message a message-compressed bag may decompress to: an 8-byte-per-pixel 4096 x 4096
#: image is 128 MiB; a few KB of zstd can claim many GB, which would exhaust memory
MAX_MESSAGE_BYTES = 256 << 20

#: largest an mcap chunk may decompress to (rosbags decompresses each whole, unbounded): a chunk holds
#: at least one message, so twice the largest message
MAX_CHUNK_BYTES = 2 * MAX_MESSAGE_BYTES
#: an mcap file's first bytes, and the opcodes of the records :func:`_mcap_chunk_problem` reads
MCAP_MAGIC = b"\x89MCAP0\r\n"
_MCAP_FOOTER, _MCAP_CHUNK, _MCAP_CHUNK_INDEX = 0x02, 0x06, 0x08
#: compressed frames a chunk may hold (writers make one): see :func:`_unpacked_size`
MAX_CHUNK_FRAMES = 256

#: left free on the disk a file-compressed bag is unpacked to (other writers share that disk)
UNPACK_MARGIN_BYTES = 256 << 20
#: what to do about it: the temporary folder follows TMPDIR
_ROOM_HINT = "set TMPDIR to a folder on a disk with room (the bag is {how} there while it is read)"
#: beside ``<file>.db3``: sqlite's write-ahead log and its index (a WAL-mode database not closed)
WAL_SUFFIXES = ("-wal", "-shm")
#: longest cause quoted from rosbags in a warning or an error (a definition can be pages long)
MAX_CAUSE_CHARS = 300


def _apsw_errors() -> tuple[type[BaseException], ...]:
    """The base error of apsw: rosbags (0.11 on) reads sqlite3 through it, and its errors are not sqlite3's."""
    try:
        import apsw
    except ImportError:  # an older rosbags on the stdlib sqlite3
        return ()
    return (apsw.Error,)


# What rosbags / sqlite / the decompressors raise on a damaged file.  Caught only around
# calls into the reader and re-raised as BagError with the cause chained.  A garbage record
# length in an mcap is an OverflowError (past 2**63) or a MemoryError (the read of it).
_READ_ERRORS: tuple[type[BaseException], ...] = (
    ReaderError, OSError, sqlite3.Error, struct.error, EOFError, ValueError,
    KeyError, IndexError, UnicodeDecodeError, AssertionError, zstd.ZstdError,
    OverflowError, MemoryError, *_apsw_errors(),
)


def _one_line(exc: BaseException) -> str:
    """``exc`` as one line of at most about :data:`MAX_CAUSE_CHARS`.

    rosbags quotes a whole definition, and names the line it failed on at the end: the head
    and the tail are kept.
    """
    text = "\\n".join(str(exc).splitlines()) or type(exc).__name__
    if len(text) <= MAX_CAUSE_CHARS:
        return text
    return f"{text[: MAX_CAUSE_CHARS // 3]} ... {text[-(MAX_CAUSE_CHARS * 2 // 3):]}"


#: input given a decompressor at a time: what it copies at a frame's end (its input's rest) is at most this
_FEED_BYTES = 1 << 20


class _TooManyFrames(zstd.ZstdError):
    """More than :data:`MAX_CHUNK_FRAMES` compressed frames in one message or chunk."""


def _frames_decompressed(data: bytes, compression: str, piece: int = 1 << 24) -> Iterator[bytes]:
    """``data``'s zstd (or lz4) frames decompressed in turn, in pieces of at most ``piece`` bytes.

    Fed :data:`_FEED_BYTES` at a time. Why: a decompressor copies the rest of its input
    (``unused_data``) at a frame's end; given the whole rest each time, a chunk of empty 9-byte
    frames cost time quadratic in its size (2 MB, 13 s), and 255 of them before one 64 MiB frame
    copied it 255 times (21 s; reviews). More than :data:`MAX_CHUNK_FRAMES` frames raise
    :class:`_TooManyFrames` (writers make one per message or chunk); data that ends inside a frame
    ``zstd.ZstdError``; damaged data what the decompressor raises.
    """
    view = memoryview(data)
    pos, carry, frames = 0, b"", 0
    while carry or pos < len(view):
        frames += 1
        if frames > MAX_CHUNK_FRAMES:
            raise _TooManyFrames(f"more than {MAX_CHUNK_FRAMES} {compression} frames (a writer makes one)")
        d: Any = zstd.ZstdDecompressor() if compression == "zstd" else _lz4_frame().LZ4FrameDecompressor()
        while not d.eof:
            if not d.needs_input:  # output held back by max_length: ask for it
                chunk = b""
            elif carry:
                chunk, carry = carry, b""
            elif pos < len(view):
                chunk, pos = bytes(view[pos:pos + _FEED_BYTES]), pos + _FEED_BYTES
            else:
                raise zstd.ZstdError("Compressed data ended before the end-of-stream marker was reached")
            if out := d.decompress(chunk, max_length=piece):
                yield out
        carry = d.unused_data


def _decompress_bounded(data: bytes, limit: int) -> bytes:
    """``zstd.decompress(data)`` (every frame), raising ``zstd.ZstdError`` past ``limit`` bytes.

    Why: the output is cut at ``limit`` while decompressing, so a bomb never gets allocated; and
    past :data:`MAX_CHUNK_FRAMES` frames (:func:`_frames_decompressed`).
    """
    if not data:
        raise zstd.ZstdError("Compressed data ended before the end-of-stream marker was reached")
    out = bytearray()
    for piece in _frames_decompressed(data, "zstd", min(1 << 24, limit + 1)):
        out += piece
        if len(out) > limit:
            raise zstd.ZstdError(f"decompresses to over {limit} bytes (MAX_MESSAGE_BYTES)")
    return bytes(out)


def _unpacked_size(data: bytes, compression: str, limit: int) -> int:
    """How many bytes ``data`` (zstd or lz4 frames) decompresses to, counted up to just past ``limit``.

    Counted in 16 MiB pieces, never held whole. More than :data:`MAX_CHUNK_FRAMES` frames count
    as past the limit (:func:`_frames_decompressed`). A stream that does not decompress counts
    what it gave: the reader names the damage.
    """
    total = 0
    try:
        for piece in _frames_decompressed(data, compression):
            total += len(piece)
            if total > limit:
                break
    except _TooManyFrames:
        return limit + 1
    except (zstd.ZstdError, RuntimeError, EOFError):
        pass
    return total


def _lz4_frame() -> Any:
    import lz4.frame

    return lz4.frame


def _u64(b: bytes, at: int) -> int:
    return int.from_bytes(b[at:at + 8], "little")


def _u32(b: bytes, at: int) -> int:
    return int.from_bytes(b[at:at + 4], "little")


def _chunk_problem(fh: BinaryIO, end: int, where: str, *, compression: str, data_at: int, size: int,
                   declared: int, limit: int) -> str:
    """Why the chunk whose ``size`` compressed bytes start at ``data_at`` must not be read ('' if it may)."""
    if declared > limit:
        return f"{where} declares {declared} bytes uncompressed"
    if compression in ("zstd", "lz4") and 0 <= data_at < end:
        fh.seek(data_at)
        if _unpacked_size(fh.read(max(0, min(size, end - data_at))), compression, limit) > limit:
            return (f"{where} ({compression}) decompresses to over {limit} bytes, or holds over "
                    f"{MAX_CHUNK_FRAMES} frames")
    return ""


def _indexed_chunks_problem(fh: BinaryIO, end: int, limit: int) -> str:
    """The summary's chunk index checked as rosbags reads chunks through it ('' if fine, or no summary).

    Why: with a summary rosbags never walks the data section; it seeks to each indexed chunk and
    decompresses it with the index's compression and sizes, so a bomb behind a record of bogus
    length, or in a chunk whose own record says otherwise, passed the walk (review).
    """
    footer_at = end - len(MCAP_MAGIC) - 29  # the footer record: opcode, length 20, its 20 bytes
    if footer_at < len(MCAP_MAGIC):
        return ""
    fh.seek(footer_at)
    footer = fh.read(29)
    if footer[0] != _MCAP_FOOTER or (summary := _u64(footer, 9)) == 0:
        return ""  # no summary: rosbags walks the data section, as below
    fh.seek(summary)
    while fh.tell() < footer_at and len(head := fh.read(9)) == 9:
        opcode, length = head[0], _u64(head, 1)
        start = fh.tell()
        if start + length > footer_at:
            return ""  # a summary rosbags cannot read either
        if opcode == _MCAP_CHUNK_INDEX:
            rec = fh.read(length)
            at = 32 + 4 + _u32(rec, 32)  # times, chunk start and length; the message index offsets
            at += 8  # message index length
            name_len = _u32(rec, at)
            compression = rec[at + 4:at + 4 + name_len].decode("utf-8", "replace")
            at += 4 + name_len
            compressed, declared = _u64(rec, at), _u64(rec, at + 8)
            chunk_at = _u64(rec, 16)
            # where rosbags reads the data: after the record's opcode and length, its 40 fixed
            # bytes and the index's compression name (storage_mcap.get_chunk)
            why = _chunk_problem(fh, end, f"the chunk at byte {chunk_at} (summary index)", compression=compression,
                                 data_at=chunk_at + 9 + 40 + len(compression.encode()), size=compressed,
                                 declared=declared, limit=limit)
            if why:
                return why
        fh.seek(start + length)
    return ""


def _mcap_chunk_problem(f: Path, limit: int | None = None) -> str:
    """Why the mcap file ``f`` must not be opened ('' if it may): a chunk that decompresses past ``limit``.

    Why: rosbags decompresses each chunk whole, with no bound (``zstd.decompress``,
    ``lz4.frame.decompress``): an 8 KB file with a 256 MiB zstd chunk took 590 MB, a 65 KB one
    with 2 GiB 4.2 GB and went on (review). Checked as rosbags reads them, before it sees the
    file: the chunks the summary indexes (``_indexed_chunks_problem``), then each chunk record
    of the data section (read in order when there is no summary), its declared size, then its
    data counted as it decompresses. Not an mcap, or one cut short: '' (the reader says what it is).
    """
    limit = MAX_CHUNK_BYTES if limit is None else limit
    try:
        with f.open("rb") as fh:
            if fh.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
                return ""
            end = os.fstat(fh.fileno()).st_size
            if why := _indexed_chunks_problem(fh, end, limit):
                return why
            fh.seek(len(MCAP_MAGIC))
            while len(head := fh.read(9)) == 9:
                opcode, length = head[0], _u64(head, 1)
                start = fh.tell()
                if opcode == _MCAP_FOOTER or start + length > end:  # (a length past the end: damage, named
                    return ""                                         # by the reader with its recover hint)
                if opcode == _MCAP_CHUNK and length >= 40:
                    fixed = fh.read(28)  # message start / end time, uncompressed size, uncompressed crc
                    name = fh.read(min(_u32(fh.read(4), 0), length - 40))
                    size = _u64(fh.read(8), 0)
                    why = _chunk_problem(fh, end, f"the chunk at byte {start - 9}",
                                         compression=name.decode("utf-8", "replace"), data_at=fh.tell(),
                                         size=min(size, start + length - fh.tell()), declared=_u64(fixed, 16),
                                         limit=limit)
                    if why:
                        return why
                fh.seek(start + length)
    except (OSError, ValueError, OverflowError, IndexError):
        return ""  # the reader names it
    return ""


#: the ``message_definitions`` encodings rosbags' sqlite3 reader knows
_READ_ENCODINGS = ("ros2msg", "ros2idl")
#: the columns of rosbags' query of ``message_definitions`` (the only rows :func:`_no_unread_encodings` drops)
_MSGDEF_COLUMNS = ("topic_type", "encoding", "encoded_message_definition", "type_description_hash")


def _no_unread_encodings(cursor: Any, row: Any) -> Any:
    """Row tracer (apsw): a ``message_definitions`` row of an encoding rosbags does not know is no row.

    ``ros2 bag record`` (Iron on) records a type whose definition it cannot find with encoding
    "" (``empty_message_definition_for``); rosbags looks the encoding up and fails with
    ``KeyError('')``, refusing the whole bag. Without the row, the type has no definition, as
    in a Humble bag. Only rows of that query are touched (its columns); None skips a row.
    """
    if len(row) != len(_MSGDEF_COLUMNS) or row[1] in _READ_ENCODINGS:
        return row
    if tuple(name for name, *_ in cursor.getdescription()) != _MSGDEF_COLUMNS:
        return row
    return None


class _Sqlite3Reader(Sqlite3Reader):
    """rosbags' sqlite3 reader, reading a type recorded without its definition as one without.

    Why: rosbags (0.11.9) refuses a bag with any such type as "corrupt" (``KeyError('')``; see
    :func:`_no_unread_encodings`). Its open() runs with an apsw connection hook that sets that
    row tracer on the connections it makes; the tracer is cleared afterwards, so message reads
    pay nothing. (apsw: rosbags 0.11.1 on; the old apsw names, which every apsw has.)
    """

    def open(self) -> None:
        try:
            import apsw
        except ImportError:  # a rosbags before 0.11.1, on the stdlib sqlite3 (setup.py asks for 0.11.6)
            super().open()
            return

        def hook(conn: apsw.Connection) -> None:
            conn.setrowtrace(_no_unread_encodings)

        apsw.connection_hooks.append(hook)
        try:
            super().open()
        finally:
            apsw.connection_hooks.remove(hook)
        if self.dbconn is not None:
            self.dbconn.setrowtrace(None)


class _DirectoryReader(DirectoryReader):
    """rosbags' directory reader, its sqlite3 files read by :class:`_Sqlite3Reader`."""

    STORAGE_PLUGINS = MappingProxyType({**DirectoryReader.STORAGE_PLUGINS, "sqlite3": _Sqlite3Reader})


class _Reader(Reader):
    """rosbags' Reader (a bag folder, or one storage file), sqlite3 read by :class:`_Sqlite3Reader`."""

    STORAGE_PLUGINS = MappingProxyType({**Reader.STORAGE_PLUGINS, "dir": _DirectoryReader, ".db3": _Sqlite3Reader})


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag: its type and how many messages of that type it holds."""

    name: str
    msgtype: str
    count: int
    #: why its messages cannot be decoded here ("" when they can): its definition in the bag is
    #: one rosbags cannot read (:meth:`BagSource.definition_error`)
    definition_error: str = ""
    #: (type, messages) of each other type the topic was recorded under (a merged or converted
    #: bag): those messages are not read as this topic (:class:`BagSource`)
    other_types: tuple[tuple[str, int], ...] = ()

    def __str__(self) -> str:
        return f"{self.name} [{self.msgtype}]"


def _conn_key(conn: Connection) -> tuple[int, int]:
    """A connection across the files of a split bag (ids restart in each file)."""
    return id(conn.owner), conn.id


def _parse_definition(conn: Connection) -> dict[str, Any]:
    """The types of one connection's own definition, parsed as rosbags' AnyReader parses it."""
    data = conn.msgdef.data
    if conn.msgdef.format == MessageDefinitionFormat.MSG:
        return dict(get_types_from_msg(data, conn.msgtype))
    sep = "=" * 80 + "\n"
    typs: dict[str, Any] = {}
    if data.startswith(f"{sep}IDL: "):
        for part in data.split(sep)[1:]:
            typs.update(get_types_from_idl(part.split("\n", 1)[1]))
    else:
        typs.update(get_types_from_idl(data))
    return typs


def _own_typestore(connections: Sequence[Connection]) -> tuple[Typestore, dict[tuple[int, int], str]]:
    """The bag's own definitions as a type store, and why each connection that could not join it failed.

    As rosbags' AnyReader builds it (every definition parsed, registered together, the recorded
    type hashes checked), but connection by connection: AnyReader refuses the whole bag for one
    definition it cannot parse (``wstring<=4`` in a vendor's radar track is valid ROS 2 and
    fails), and the replay needs only a few standard types.
    """
    errors: dict[tuple[int, int], str] = {}
    parsed: list[tuple[Connection, dict[str, Any]]] = []
    for c in connections:
        if c.msgdef.format == MessageDefinitionFormat.NONE:
            continue
        try:
            parsed.append((c, _parse_definition(c)))
        except Exception as exc:  # the parsers raise TypesysError, and anything on odd text
            errors[_conn_key(c)] = f"rosbags cannot parse its message definition: {_one_line(exc)}"
    store = get_typestore(Stores.EMPTY)
    typs: dict[str, Any] = {}
    for _, t in parsed:
        typs.update(t)  # the last definition of a type wins, as in AnyReader
    try:
        store.register(typs)
    except Exception:  # one that parsed but will not generate: find it, register the others
        store = get_typestore(Stores.EMPTY)
        for c, t in parsed:
            try:
                store.register(t)
            except Exception as exc:
                errors[_conn_key(c)] = f"rosbags cannot register its message definition: {_one_line(exc)}"
    for c, _ in parsed:
        if _conn_key(c) in errors or not c.digest:
            continue
        try:
            have = store.hash_rihs01(c.msgtype)
        except Exception as exc:
            errors[_conn_key(c)] = f"its message definition is incomplete: {_one_line(exc)}"
            continue
        if have != c.digest:
            errors[_conn_key(c)] = (f"its message definition does not match the type hash recorded with it "
                                    f"({c.digest}; as rosbags reads the definition: {have})")
    return store, errors


class _StorageReader:
    """rosbags' readers of a bag's storage files as one.

    Connections, messages in log-time order, and a type store of the bag's own definitions
    (:func:`_own_typestore`).

    Why not rosbags' AnyReader, which does the same: it parses every connection's definition
    when it opens, and one definition it cannot parse refuses the whole bag ("corrupt").
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.readers = [_Reader(p) for p in paths]
        self.connections: list[Connection] = []
        self.typestore = get_typestore(Stores.EMPTY)
        self.definition_errors: dict[tuple[int, int], str] = {}
        self._reader_of: dict[int, Reader] = {}
        self._stack: ExitStack | None = None

    def open(self) -> None:
        stack = ExitStack()
        try:
            for reader in self.readers:
                stack.enter_context(reader)
            self.connections = [c for reader in self.readers for c in reader.connections]
            # a connection's owner is its reader's storage: which reader to ask for its messages
            self._reader_of = {id(c.owner): reader for reader in self.readers for c in reader.connections}
            self.typestore, self.definition_errors = _own_typestore(self.connections)
        except BaseException:
            stack.close()
            raise
        self._stack = stack

    @property
    def start_time(self) -> int:
        return min(reader.start_time for reader in self.readers)

    @property
    def end_time(self) -> int:
        return max(reader.end_time for reader in self.readers)

    def messages(self, connections: Sequence[Connection]) -> Generator[tuple[Connection, int, bytes], None, None]:
        """The messages of ``connections``, every file's merged in log-time order."""
        by_owner = groupby(sorted(connections, key=lambda c: id(c.owner)), key=lambda c: id(c.owner))
        streams = [self._reader_of[owner].messages(connections=list(conns)) for owner, conns in by_owner]
        yield from heapq.merge(*streams, key=lambda item: item[1])

    def close(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()


def _recover_hint(storage: str, *, compressed: bool = False) -> str:
    """What to do about a damaged bag of ``storage``, for the error message (with or without metadata.yaml)."""
    if storage == "mcap":
        first = "decompressed (`zstd -d`) and then " if compressed else ""
        return f" (an mcap cut short, e.g. by an interrupted recording, can be {first}rebuilt with `mcap recover`)"
    return ""


#: types a vehicle records in place of a role's, named when that role is missing
_NOT_READ_INSTEAD: Mapping[str, tuple[str, ...]] = {
    "range": ("sensor_msgs/msg/LaserScan", "sensor_msgs/msg/PointCloud2", "radar_msgs/msg/RadarScan",
              "radar_msgs/msg/RadarTracks"),
    "odom": ("geometry_msgs/msg/TwistStamped", "geometry_msgs/msg/TwistWithCovarianceStamped",
             "geometry_msgs/msg/PoseStamped", "sensor_msgs/msg/NavSatFix"),
}


def _without_metadata_hint(folder: Path) -> str:
    """The hint for a damaged metadata.yaml whose storage files read without it; "" if they do not.

    Why: a metadata.yaml cut short or missing a key got the `mcap recover` hint for an intact mcap,
    and nothing said the folder replays once the metadata is moved aside.
    """
    plain = {p: storage for p, (storage, zipped) in storage_files(folder).items() if not zipped}
    if len(set(plain.values())) != 1:
        return ""
    files = sorted(plain, key=_split_index)
    reader = _StorageReader(files)
    try:
        reader.open()
    except _READ_ERRORS:
        return ""
    reader.close()
    return (f" (the {len(files)} storage file(s) beside it read without it: move metadata.yaml aside, and the "
            "folder is read as a recording stopped before it wrote one)")


def _first_unreadable(files: Sequence[Path], names: Sequence[Path]) -> Path | None:
    """The first of a split bag's files that does not open, by its own name, for the error; None if none.

    ``files`` are those read (a copy where a write-ahead log was applied), ``names`` the bag's
    own files in the same order, which the error names. Why: a split recording that was killed
    ends in an mcap cut short; `mcap recover` needs its name.
    """
    for f, name in zip(files, names, strict=True):
        try:
            with _Reader(f):
                pass
        except _READ_ERRORS:
            return name
    return None


def _sidecar(db: Path, suffix: str) -> Path:
    """``<file>.db3-wal`` / ``<file>.db3-shm`` of ``<file>.db3``."""
    return db.with_name(db.name + suffix)


def _checkpoint(db: Path) -> tuple[int, int]:
    """Apply the write-ahead log beside ``db`` (a copy) to it; (messages before, messages after).

    "Before" is what rosbags reads (the database opened immutable, its log ignored). The copy is
    left in rollback-journal mode, without a log, as a cleanly closed recording leaves it.
    """
    with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?immutable=1", uri=True)) as con:
        # killed before its first checkpoint, the tables themselves may be only in the log
        tables = con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'messages'")
        before = con.execute("SELECT count(*) FROM messages").fetchone()[0] if tables.fetchone()[0] else 0
    with contextlib.closing(sqlite3.connect(db.as_uri(), uri=True)) as con:
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise sqlite3.OperationalError("the checkpoint was blocked")
        con.execute("PRAGMA journal_mode=DELETE").fetchone()
        (after,) = con.execute("SELECT count(*) FROM messages").fetchone()
    return int(before), int(after)


def _declared_size(f: Path) -> int:
    """The unpacked size a zstd file declares in its first frame's header; 0 if none (or not zstd)."""
    with f.open("rb") as fh:
        head = fh.read(18)  # the largest zstd frame header
    with contextlib.suppress(zstd.ZstdError):  # not zstd: the reader says so, naming it
        return zstd.get_frame_info(head).decompressed_size or 0
    return 0


def _split_index(path: Path) -> tuple[str, int]:
    """Sort key of a split bag's file ``<name>_<index>.<ext>[.zstd]``: index 10 after 9, not after 1."""
    name = Path(path.stem).stem if path.suffix == ".zstd" else path.stem
    stem, _, index = name.rpartition("_")
    return (stem, int(index)) if index.isdigit() else (name, -1)


def in_bag_folder(path: Path) -> bool:
    """Whether the storage file ``path`` is part of a bag folder: its metadata.yaml, or another split of it, beside it.

    Why not any other storage file: a folder of loose recordings (``~/bags/*.mcap``) is no bag.
    """
    folder = path.parent
    if (folder / "metadata.yaml").exists():
        return True
    stem, index = _split_index(path)
    return index >= 0 and any(p != path and _split_index(p)[0] == stem and _split_index(p)[1] >= 0
                              for p in storage_files(folder))


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


#: Values rosbag2 writes in metadata.yaml per split file (its ``files`` entry and its relative path).
METADATA_VALUES_PER_SPLIT = 14


def _read_metadata(meta: Path) -> dict[str, Any]:
    """``rosbag2_bagfile_information`` of a bag's ``metadata.yaml``, or a BagError naming it.

    Read as the project reads every YAML (:mod:`tiny_node.strict_yaml`): at most 16 MiB and a
    bounded alias expansion. With a plain ``yaml.safe_load`` a 685-byte file whose ``custom_data``
    nested aliases nine deep ran the replay out of memory (review).
    """
    what = f"a bag's metadata.yaml (about {MAX_WRITTEN_NODES // METADATA_VALUES_PER_SPLIT} split files at most)"
    try:
        doc = safe_load_unique(read_yaml_text(meta, MAX_METADATA_BYTES, what), str(meta), what)
    except (OSError, UnicodeDecodeError, TooManyValuesError) as exc:
        raise BagError(f"{meta}: cannot read bag metadata: {exc}") from exc
    except yaml.YAMLError as exc:
        raise BagError(f"{meta}: cannot read bag metadata: invalid YAML: {yaml_problem(exc)}") from exc
    info = doc.get("rosbag2_bagfile_information") if isinstance(doc, Mapping) else None
    if not isinstance(info, Mapping):
        raise BagError(f"{meta}: not rosbag2 metadata (no 'rosbag2_bagfile_information')")
    return dict(info)


class BagSource:
    """An open rosbag2 for reading: topics, messages in log-time order, deserialization."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.custom: dict[str, str] = {}
        #: what the reader did that the user must know of (a write-ahead log applied)
        self.warnings: list[str] = []
        self._recorded_hashes: dict[tuple[str, str], str] = {}  # (topic, type) -> metadata.yaml's hash
        self._chunks_checked: set[Path] = set()  # mcap files whose chunks were sized (_refuse_chunk_bombs)
        self.storage, files, compression = self._locate()
        self._unzip_messages = compression == "message"
        self._tmp: TemporaryDirectory[str] | None = None
        originals = files
        try:
            if compression == "file":
                files = self._unzip_files(files)
            if self.storage == "sqlite3" and compression in ("", "message", "file"):
                # (file: a killed recording's open split, never compressed, keeps its last messages there)
                files = self._apply_wal(files)
            self._refuse_chunk_bombs(files)
            self._reader = _StorageReader([self.path] if compression == "dir" else files)
            self._reader.open()
        except BagError:  # ours, naming the file: as it is
            self._drop_tmp()
            raise
        except _READ_ERRORS as exc:
            # the files read (copies, some of them) are tried while they still exist, and named by
            # the bag's own: after _drop_tmp() a copy does not open, and was named instead of the
            # damaged file
            # (a file-compressed bag: its unpacked copies, once unpacking went through)
            readable_as_files = compression in ("", "message") or (compression == "file" and files is not originals)
            bad = _first_unreadable(files, originals) if len(files) > 1 and readable_as_files else None
            self._drop_tmp()
            # the hint of the file that failed: a killed recording's open mcap split is not compressed
            packed = compression == "file" if bad is None else bad.suffix == ".zstd"
            hint = _recover_hint(self.storage, compressed=packed)
            which = "" if bad is None else f" ({bad.name})"
            raise BagError(f"{self.path}: corrupt or unreadable bag{which}: {exc}{hint}") from exc
        self.connections: list[Connection] = list(self._reader.connections)
        # a bag with no definitions at all (sqlite3 before Iron) is read with the stores below
        self._own_definitions = any(c.msgdef.format != MessageDefinitionFormat.NONE for c in self.connections)
        self._stores: dict[str, Typestore | None] = {}
        errors = self._reader.definition_errors
        # a type none of whose connections has a definition rosbags reads: not decoded with a guess
        self._undefinable = ({c.msgtype for c in self.connections if _conn_key(c) in errors}
                             - {c.msgtype for c in self.connections if _conn_key(c) not in errors})
        counts: dict[str, dict[str, int]] = {}  # topic -> type -> messages, types in connection order
        for c in self.connections:
            by_type = counts.setdefault(c.topic, {})
            by_type[c.msgtype] = by_type.get(c.msgtype, 0) + c.msgcount
        # a topic recorded under several types (a merged or converted bag) is read as a type a role
        # reads (a camera, range, odometry or IMU type) if it has one, else as the type of most of
        # its messages (the first on a tie): given its first connection's type and every type's
        # count, a converted note on a camera topic crashed the replay; by count alone, a second
        # camera with more notes than frames was no camera, and the other one chosen unasked (review)
        types = {name: _read_as(by_type) for name, by_type in counts.items()}
        why: dict[str, str] = {}
        for c in self.connections:
            if c.msgtype == types[c.topic] and _conn_key(c) in errors:
                why.setdefault(c.topic, errors[_conn_key(c)])
        self.topics = {name: TopicInfo(name, types[name], by_type[types[name]], why.get(name, ""),
                                       tuple((t, n) for t, n in by_type.items() if t != types[name]))
                       for name, by_type in counts.items()}
        self.warnings += [_mixed_types_warning(info) for info in self.topics.values() if info.other_types]
        self.message_count = sum(sum(by_type.values()) for by_type in counts.values())
        #: messages of each topic (of its type) the last pass of :meth:`messages` to its end yielded
        self.read: dict[str, int] = {}
        self.start_ns = self._reader.start_time if self.message_count else 0
        self.end_ns = self._reader.end_time - 1 if self.message_count else 0
        if compression == "" and self.message_count and self._first_message_is_zstd():
            self._unzip_messages = True  # no metadata.yaml to say so: each CDR would be "invalid"
            self.warnings.append(f"{self.path}: its messages are each zstd-compressed (a recording with "
                                 f"--compression-mode message) and {self._unsaid_why()}: decompressed")

    def _locate(self) -> tuple[str, list[Path], str]:
        """(storage id, storage files, compression) after checking the bag is complete.

        Compression: "" none, "message" or "file" (zstd), "dir": names only rosbags' directory
        reader knows what to do with.
        """
        path = self.path
        if not path.exists():
            raise BagError(f"bag not found: {path}")
        if path.is_file() and path.name == "metadata.yaml":
            path = self.path = path.parent
        if path.is_file():
            kind = storage_file(path)
            if kind is None:
                raise BagError(f"{path}: not a rosbag2 (expected a bag directory with metadata.yaml, "
                               "or a .mcap / .db3 file, zstd-compressed or not)")
            self._warn_if_split(path)
            return kind[0], [path], "file" if kind[1] else ""
        meta = path / "metadata.yaml"
        if not meta.is_file():
            # rosbag2 writes metadata.yaml on close: a recording stopped by a power cut or a kill has
            # none, its split files are all there is (`ros2 bag reindex` lists them the same way).
            # With --compression-mode file each split is compressed as it closes: a killed
            # recording leaves x_0.mcap.zstd, x_1.mcap.zstd and the open x_2.mcap.
            kinds = storage_files(path)
            for packed in [p for p, (_, zipped) in kinds.items() if zipped and p.with_suffix("") in kinds]:
                # rosbag2 deletes a split only once it is compressed: killed meanwhile, both are there
                del kinds[packed]
                self.warnings.append(f"{packed}: left out: {packed.with_suffix('').name} beside it is the same "
                                     "split uncompressed (the recording was stopped while compressing it)")
            found = sorted(kinds, key=_split_index)
            storages = {storage for storage, _ in kinds.values()}
            if len(storages) == 1:
                return storages.pop(), found, "file" if any(z for _, z in kinds.values()) else ""
            what = "storage files of several kinds" if found else "no .mcap / .db3 file"
            raise BagError(f"{path}: no metadata.yaml, not a rosbag2 directory ({what})")
        try:
            info = _read_metadata(meta)
        except BagError as exc:
            raise BagError(f"{exc}{_without_metadata_hint(path)}") from exc
        storage = str(info.get("storage_identifier", ""))
        if "storage_identifier" not in info:
            raise BagError(f"{path}: metadata.yaml has no storage_identifier (cut short?)"
                           f"{_without_metadata_hint(path)}")
        if storage not in ("mcap", "sqlite3"):
            raise BagError(f"{path}: unknown storage '{storage}' in metadata.yaml (supported: mcap, sqlite3)")
        custom = info.get("custom_data")
        if isinstance(custom, Mapping):
            self.custom = {str(k): str(v) for k, v in custom.items()}
        for entry in info.get("topics_with_message_count") or []:  # mcap files hold no type hash: it is here
            topic = entry.get("topic_metadata") if isinstance(entry, Mapping) else None
            if isinstance(topic, Mapping) and topic.get("type_description_hash"):
                key = (str(topic.get("name")), str(topic.get("type")))
                self._recorded_hashes[key] = str(topic["type_description_hash"])
        compression = str(info.get("compression_mode") or "").lower()
        compression = "" if compression == "none" else compression
        # before rosbags opens one: without a summary it reads (decompresses) every chunk
        self._refuse_chunk_bombs(sorted(p for p in storage_files(path) if p.suffix == ".mcap"))
        try:  # validates version, storage files present, compression supported
            reader = _Reader(path)
            if compression != "file":  # opening one unpacks it whole (we do, below, with room checked)
                with reader:
                    pass
        except _READ_ERRORS as exc:
            hint = _without_metadata_hint(path) or _recover_hint(storage)
            # the split that does not open, by name, as without metadata.yaml: `mcap recover` needs it
            # (a split bag's damaged file was not named; review 2026-12-08)
            listed = info.get("relative_file_paths")
            splits = [f for f in (path / Path(str(n)).name for n in listed) if f.is_file()] \
                if isinstance(listed, list) and compression in ("", "message") else []
            bad = _first_unreadable(splits, splits) if len(splits) > 1 else None
            which = "" if bad is None else f" ({bad.name})"
            raise BagError(f"{path}: corrupt or unreadable bag{which}: {exc}{hint}") from exc
        rel = info.get("relative_file_paths") or []
        files = [path / Path(str(f)).name for f in rel]
        if not files:
            raise BagError(f"{path}: metadata.yaml lists no storage files")
        # (decompressed) names that do not say their storage: let the directory reader handle them
        if compression not in ("", "message", "file") or any(
                Path(f.stem if compression == "file" else f.name).suffix not in STORAGE_SUFFIX for f in files):
            compression = "dir"
        return storage, files, compression

    def _refuse_chunk_bombs(self, files: Sequence[Path]) -> None:
        """A BagError naming the first mcap file of ``files`` with a chunk over :data:`MAX_CHUNK_BYTES`."""
        for f in files:
            if f.suffix == ".mcap" and f not in self._chunks_checked:
                self._chunks_checked.add(f)
                if why := _mcap_chunk_problem(f):
                    raise BagError(f"{f}: {why} (at most {MAX_CHUNK_BYTES} bytes, twice the largest "
                                   "message read): refused rather than decompressed into memory (a damaged or "
                                   "crafted file?)")

    def _unsaid_why(self) -> str:
        """Why nothing read said the messages are compressed: which metadata.yaml, if any, was not read.

        Why: a single file given with its folder's metadata.yaml beside it was said to have none
        (review 2026-12-08), which reads as a damaged bag.
        """
        if not self.path.is_dir() and (self.path.parent / "metadata.yaml").is_file():
            return "the metadata.yaml beside it is not read for a file given alone"
        if self.path.is_dir() and (self.path / "metadata.yaml").is_file():
            return "its metadata.yaml says compression_mode none"
        return "no metadata.yaml says so"

    def _first_message_is_zstd(self) -> bool:
        """Whether the bag's first message begins as a zstd frame (CDR begins with 00)."""
        it = self._reader.messages(self.connections)
        try:
            return bytes(next(it)[2][:4]) == ZSTD_MAGIC
        except StopIteration:
            return False
        except _READ_ERRORS as exc:
            raise BagError(f"{self.path}: corrupt bag (reading messages failed): {exc}") from exc
        finally:
            it.close()

    def _warn_if_split(self, file: Path) -> None:
        """Say so when ``file`` is one of several a ``metadata.yaml`` beside it lists: only it is read."""
        meta = file.parent / "metadata.yaml"
        if not meta.is_file():
            return
        try:
            listed = [Path(str(f)).name for f in _read_metadata(meta).get("relative_file_paths") or []]
        except BagError as exc:
            self.warnings.append(f"{file}: read alone; the metadata.yaml beside it is unreadable ({exc})")
            return
        if len(listed) > 1 and file.name in listed:
            self.warnings.append(f"{file}: only this file of the {len(listed)} its bag is split in is read "
                                 f"(give the folder {file.parent} to replay them all)")

    def _unzip_files(self, files: list[Path]) -> list[Path]:
        """The storage files of a file-compressed bag, decompressed into a folder of ours until :meth:`close`.

        Why not rosbags' directory reader, which does this too: it matches the metadata's topics to
        the storage's by their QoS text and yields no message where they disagree (see module doc).
        """
        self._tmp = TemporaryDirectory(prefix="tiny_node-bag-")
        try:
            self._check_room(sum(_declared_size(f) for f in files if f.suffix == ".zstd"), self._tmp.name,
                             "unpacking this file-compressed bag", "unpacked")
            out = []
            for f in files:
                if f.suffix != ".zstd":  # a killed recording's last split, never compressed
                    out.append(f)
                    continue
                plain = Path(self._tmp.name, f.stem)
                with f.open("rb") as raw, zstd.open(raw, "rb") as src, plain.open("wb") as dst:
                    try:
                        self._unpack(src, dst, f)
                    except (zstd.ZstdError, EOFError) as exc:  # EOFError: the stream cut short
                        raise BagError(f"{f}: does not decompress ({exc}): cut short while rosbag2 compressed it? "
                                       "(stopped then, it leaves the split uncompressed beside it, which is read "
                                       "instead); `zstd -d` gives what it holds up to the cut") from exc
                    except OSError as exc:
                        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                            raise
                        raise BagError(f"{f}: no room to unpack it into {self._tmp.name} ({exc.strerror}; its "
                                       f"size was not in the file): {_ROOM_HINT.format(how='unpacked')}") from exc
                out.append(plain)
        except BagError:
            self._drop_tmp()
            raise
        return out

    def _unpack(self, src: _Readable, dst: BinaryIO, f: Path) -> None:
        """Copy ``src`` (``f`` unpacking) to ``dst``, refusing once the disk would keep less than the margin.

        Why counted here, not only up front: a frame that declares no size counted 0 in the check
        of room, and a 32 KB file unpacked 1 GiB into the temporary folder before the reader
        refused it (a 2 MB one would fill this disk; review). The copy stops at the margin instead.
        """
        assert self._tmp is not None
        room = shutil.disk_usage(self._tmp.name).free - UNPACK_MARGIN_BYTES
        written = 0
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > room:
                raise BagError(f"{f}: unpacks to more than the {max(room, 0) / 2**30:.1f} GiB free in {self._tmp.name} "
                               f"(beyond the {UNPACK_MARGIN_BYTES >> 20} MiB kept free; its size was not in the "
                               f"file): {_ROOM_HINT.format(how='unpacked')}")
            dst.write(chunk)

    def _apply_wal(self, files: list[Path]) -> list[Path]:
        """``files``, each one that has a write-ahead log beside it replaced by a copy with the log applied.

        Why: rosbags opens a ``.db3`` as immutable, so what is still in ``<file>.db3-wal`` is not
        read. rosbag2's ``resilient`` preset records in WAL mode, and a recording killed before
        it closed its database leaves its last messages there (seconds of them, the end of an
        incident). The database, its log and its index are copied into a folder of ours (the
        bag is left untouched: sqlite writes to the log and the index even to read), the log is
        checkpointed into the copy with the sqlite3 module, and the copy is read; a warning says
        how many messages the log held.
        """
        logged = [f for f in files if _sidecar(f, "-wal").is_file() and _sidecar(f, "-wal").stat().st_size > 0]
        if not logged:
            return files
        shared = self._tmp is not None  # the folder the compressed splits were unpacked into
        if self._tmp is None:
            self._tmp = TemporaryDirectory(prefix="tiny_node-bag-")
        made: list[Path] = []  # the copies, removed on an error (not the unpacked splits beside them)
        out = list(files)
        try:
            # the copies, and the database growing by up to its log's size while the log is applied
            need = sum(f.stat().st_size + 2 * _sidecar(f, "-wal").stat().st_size
                       + (_sidecar(f, "-shm").stat().st_size if _sidecar(f, "-shm").is_file() else 0)
                       for f in logged)
            self._check_room(need, self._tmp.name, "applying the write-ahead log of this sqlite3 bag to a copy",
                             "copied")
            for f in logged:
                copy = Path(self._tmp.name, f.name)
                made += [copy, _sidecar(copy, "-wal"), _sidecar(copy, "-shm")]
                for src, dst in [(f, copy)] + [(_sidecar(f, s), _sidecar(copy, s)) for s in WAL_SUFFIXES]:
                    if src.is_file():
                        try:
                            shutil.copyfile(src, dst)
                        except OSError as exc:
                            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                                raise
                            raise BagError(f"{src}: no room to copy it into {self._tmp.name} ({exc.strerror}): "
                                           f"{_ROOM_HINT.format(how='copied')}") from exc
                try:
                    before, after = _checkpoint(copy)
                except sqlite3.Error as exc:
                    raise BagError(f"{f}: its write-ahead log {_sidecar(f, '-wal').name} cannot be applied "
                                   f"(to a copy; the bag is untouched): {exc}") from exc
                self.warnings.append(
                    f"{f.name} was not closed cleanly (a recording killed or stopped by a power cut, or one "
                    f"still running): its write-ahead log {_sidecar(f, '-wal').name} held {after - before} "
                    f"message(s) the database alone does not show ({before} without the log, {after} with "
                    "it); read with the log applied to a copy, the bag itself left as it is")
                out[files.index(f)] = copy
        except BaseException:
            if not shared:
                self._drop_tmp()
            for copy in made:
                copy.unlink(missing_ok=True)
            raise
        return out

    def _check_room(self, need: int, where: str, what: str, how: str) -> None:
        """Refuse before writing ``need`` bytes into ``where`` when its disk does not have them.

        Why: a file-compressed bag is unpacked whole to disk (and a sqlite3 bag with a write-ahead
        log copied); a bag of hundreds of GB filled the disk, failed with "corrupt or unreadable
        bag: No space left on device", and whatever else wrote to that disk failed meanwhile.
        A zstd frame that does not declare its size counts 0 here, and is caught when the disk is
        full (named the same way).
        """
        free = shutil.disk_usage(where).free
        if need + UNPACK_MARGIN_BYTES > free:
            raise BagError(f"{self.path}: {what} needs {need / 2**30:.1f} GiB in {where}, which has "
                           f"{free / 2**30:.1f} GiB free (and {UNPACK_MARGIN_BYTES >> 20} MiB are kept free): "
                           f"{_ROOM_HINT.format(how=how)}")

    def _drop_tmp(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # --- reading --------------------------------------------------------------------------
    def messages(self, topics: set[str] | None = None) -> Iterator[tuple[Connection, int, bytes]]:
        """(connection, log time ns, CDR bytes) in log-time order; damage raises BagError.

        ``topics``: the messages of each of its type (:attr:`TopicInfo.msgtype`; those recorded
        under another type are not this topic's to read); None: every message of the bag, of any
        type (to copy them). A pass to the end records in :attr:`read` how many messages of each
        topic's type it yielded (:meth:`unread_warnings`).
        """
        yield from self._messages([c for c in self.connections if topics is None or (
            c.topic in topics and c.msgtype == self.topics[c.topic].msgtype)])

    def _messages(self, conns: Sequence[Connection], *, count: bool = True) -> Iterator[tuple[Connection, int, bytes]]:
        """The messages of ``conns``; ``count``: a pass to the end updates :attr:`read`."""
        if not conns:
            return
        read = dict.fromkeys((c.topic for c in conns), 0)
        it = self._reader.messages(connections=conns)
        while True:
            try:
                item = next(it)
            except StopIteration:
                if count:
                    self.read.update(read)
                return
            except _READ_ERRORS as exc:
                raise BagError(f"{self.path}: corrupt bag (reading messages failed): {exc}") from exc
            if self._unzip_messages:  # compression_mode: message, each message zstd on its own
                conn, ns, raw = item
                try:
                    item = (conn, ns, _decompress_bounded(raw, MAX_MESSAGE_BYTES))
                except zstd.ZstdError as exc:
                    raise BagError(f"{self.path}: corrupt bag: the message on {conn.topic} at log time {ns} "
                                   f"does not decompress: {exc}") from exc
            if item[0].msgtype == self.topics[item[0].topic].msgtype:
                read[item[0].topic] += 1
            yield item

    def unread_warnings(self) -> list[str]:
        """One warning per topic of which a pass to the end read fewer messages than the bag holds.

        Why: rosbags passes over a message record whose opcode is damaged (in an mcap chunk) without
        a word: a replay of such a bag said every frame was decided, 6 messages short.
        """
        return [f"{self.path}: {topic}: {n} of its {self.topics[topic].count} messages could be read: the others "
                f"are in a damaged part of the bag and were not replayed"
                for topic, n in sorted(self.read.items()) if n < self.topics[topic].count]

    def typestore_for(self, msgtype: str) -> Typestore | None:
        """The bag's own definitions if it has them for ``msgtype``, else the distro's that decodes it.

        Why: a bag without definitions says nothing of the distro it was recorded on, and a
        type may have changed since (Humble's ``sensor_msgs/Range`` has no ``variance``): read
        with Kilted's definition, every message would be undecodable. The first
        :data:`STORE_SAMPLE` messages of the type pick the definition that decodes the most of
        them exactly (the CDR reader checks the size), so one damaged message stays one
        undecodable message.
        """
        if msgtype not in self._stores:
            self._stores[msgtype] = self._resolve_store(msgtype)
        return self._stores[msgtype]

    def _resolve_store(self, msgtype: str) -> Typestore | None:
        if msgtype in self._undefinable:  # the bag defines it, differently from any store: no guess
            return None
        if self._own_definitions and msgtype in self._reader.typestore.fielddefs:
            return self._reader.typestore
        candidates = [s for s in msgs.OLDER_STORES if msgtype in s.fielddefs]
        if len({repr(s.generate_msgdef(msgtype)) for s in candidates}) <= 1:
            return candidates[0] if candidates else None
        # several messages vote: one damaged message (the first, say) must not pick the wrong definition
        sample = [raw for _, _, raw in islice(self._messages([c for c in self.connections if c.msgtype == msgtype],
                                                             count=False), STORE_SAMPLE)]
        decoded = [sum(_decodes(store, raw, msgtype) for raw in sample) for store in candidates]
        # the store that decodes the most (the newest on a tie); none decodes any: candidates[0], and
        # every message is counted undecodable, and said so
        return candidates[decoded.index(max(decoded))]

    def definition_error(self, conn: Connection) -> str:
        """Why ``conn``'s messages are not decoded here ("" when they are): its definition in the bag.

        See :func:`_own_typestore`.
        """
        return self._reader.definition_errors.get(_conn_key(conn), "")

    def recorded_hash(self, conn: Connection) -> str:
        """The RIHS01 type hash recorded with ``conn`` (sqlite3: in the file; mcap: metadata.yaml), or ""."""
        return conn.digest or self._recorded_hashes.get((conn.topic, conn.msgtype), "")

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        """A rosbags message object; raises ValueError with the cause if it cannot."""
        store = self.typestore_for(msgtype)
        if store is None:
            raise ValueError(f"no definition for {msgtype}")
        try:
            return store.deserialize_cdr(raw, msgtype)
        except Exception as exc:  # the deserializer raises anything on truncated data
            raise ValueError(f"cannot deserialize {msgtype} ({len(raw)} bytes): {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Release the files."""
        self._reader.close()
        self._drop_tmp()

    def __enter__(self) -> BagSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _read_as(by_type: Mapping[str, int]) -> str:
    """The type a topic is read as: a type a role reads if it has one, then the most messages, then the first."""
    return max(by_type, key=lambda t: (t in _ROLE_READ, by_type[t]))


def _mixed_types_warning(info: TopicInfo) -> str:
    """The warning for a topic recorded under several types: the one it is read as, and what is not read."""
    found = [f"{info.msgtype} ({info.count} messages)", *(f"{t} ({n})" for t, n in info.other_types)]
    why = "a type a sensor role reads" if info.msgtype in _ROLE_READ else "the type of most of its messages"
    return (f"{info.name}: recorded under {len(found)} types, {', '.join(found[:-1])} and {found[-1]}: read as "
            f"{info.msgtype} ({why}); its "
            f"{sum(n for _, n in info.other_types)} message(s) of {', '.join(t for t, _ in info.other_types)} are "
            "not read (a replay copies them to its output bag unchanged)")


def _decodes(store: Typestore, raw: bytes, msgtype: str) -> bool:
    try:
        store.deserialize_cdr(raw, msgtype)
    except Exception:  # the deserializer raises anything on a definition that does not fit
        return False
    return True


def _listing(topics: Mapping[str, TopicInfo]) -> str:
    return ", ".join(str(t) for t in topics.values()) or "no topics"


def detect_topics(topics: Mapping[str, TopicInfo], overrides: Mapping[str, str] | None = None,
                  bag: str = "bag") -> tuple[dict[str, str], list[str]]:
    """Role -> topic by message type, command-line overrides first; plus warnings.

    Refuses (BagError) a bag without a usable camera topic, and ambiguity: with two cameras
    or two range sensors, guessing which looks forward is not ours to do on an AEB function.
    A topic whose definition rosbags cannot read (:attr:`TopicInfo.definition_error`) still
    counts here, so it can never make another topic the camera by default; chosen as the camera,
    range or odometry it is refused, naming it; as the IMU (optional in the node) it is left out;
    any other is a warning.
    """
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(ROLES)
    if unknown:
        raise BagError(f"unknown topic role(s) {sorted(unknown)} (roles: {', '.join(ROLES)})")
    roles: dict[str, str] = {}
    warnings: list[str] = []
    for role in ROLES:
        want = ROLE_TYPES[role]
        if role in overrides:
            name = overrides[role]
            if name not in topics and "/" + name.strip("/") in topics:  # `front/image_raw`: as ros2 bag names it
                name = "/" + name.strip("/")
            info = topics.get(name)
            if info is None:
                raise BagError(f"--{role} {name}: no such topic in {bag} (found: {_listing(topics)})")
            if info.msgtype not in want:
                raise BagError(f"--{role} {name} is {info.msgtype}, expected {' or '.join(want)}")
            if info.count == 0:
                raise BagError(f"no usable topics: --{role} {name} has no messages in {bag}")
            roles[role] = name
            continue
        found = [t for t in topics.values() if t.msgtype in want]
        usable = [t for t in found if t.count > 0]
        if role == "camera":
            if not found:
                if sum(t.count for t in topics.values()) == 0:
                    raise BagError(f"no usable topics: {bag} holds no messages ({_listing(topics)})")
                raise BagError(f"no camera topic: found {_listing(topics)} "
                               f"(a camera is {' or '.join(want)}; name one with --camera)")
            if not usable:
                raise BagError(f"no usable topics: camera topic(s) {', '.join(t.name for t in found)} "
                               f"have no messages in {bag}")
            # image_transport records a raw camera and its "<raw>/compressed" twin: the raw one is
            # the camera; any other compressed topic (a depth camera beside a colour one) is another
            raw = [t for t in usable if t.msgtype == msgs.IMAGE]
            twins = {f"{t.name}/compressed" for t in raw}
            pick = [t for t in usable if t.msgtype == msgs.IMAGE or t.name not in twins]
        else:
            pick = usable
        if len(pick) > 1:
            raise BagError(f"several {role} topics in {bag}: {', '.join(str(t) for t in pick)}; "
                           f"choose one with --{role}")
        if pick:
            roles[role] = pick[0].name
        elif role in ("range", "odom"):
            # what the bag has instead (a LaserScan, a PointCloud2, a TwistStamped), so the reader
            # sees at once why it is not taken: the node reads these types only
            near = [t for t in topics.values() if t.count and t.msgtype in _NOT_READ_INSTEAD.get(role, ())]
            how = "the nearest return ahead" if role == "range" else "the forward speed in twist.twist.linear.x"
            instead = (f"; found {', '.join(str(t) for t in near)}, which the node does not read (convert it to "
                       f"{' or '.join(want)}: {how})" if near else "")
            warnings.append(f"no {role} topic ({' or '.join(want)}) with messages: the rule path "
                            f"will judge frames fail-safe ({role} missing){instead}")
    said: set[str] = set()
    for role, name in list(roles.items()):
        info = topics[name]
        if not info.definition_error:
            continue
        if role == "imu" and role not in overrides:
            del roles[role]
            said.add(name)
            warnings.append(f"the IMU topic {info} is left out: {info.definition_error}; frames are judged "
                            "without an IMU, as by a node that has none (fail-safe if imu_required)")
            continue
        raise BagError(f"{'--' + role + ' ' if role in overrides else 'the ' + role + ' topic '}{info} of {bag} "
                       f"cannot be decoded: {info.definition_error} (the bag is not damaged: this definition "
                       "is one the rosbags library does not read)")
    warnings += [f"{info}: not decoded, {info.definition_error} (only the camera, range, odometry and IMU "
                 "topics are decoded)" for info in topics.values() if info.definition_error and info.name not in said]
    return roles, warnings
