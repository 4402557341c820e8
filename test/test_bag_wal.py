"""A sqlite3 bag from a recording killed before it closed: its write-ahead log is read too.

rosbag2's ``resilient`` preset records sqlite3 in WAL mode; killed, the recorder leaves its last
messages in ``<file>.db3-wal``, which rosbags (opening the database immutable) does not read:
the replay lost them without a word. The bags are written here: rosbags' Writer, then a
recorder process that goes on in WAL mode, one commit per message, and is killed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer

from tiny_node.bag import BagError, read_decisions, replay
from tiny_node.bag import msgs as bm
from tiny_node.bag.topics import BagSource
from tiny_node.config import make_config

T0 = 1_750_000_000 * 10**9
FRAME_NS = 33_333_333
TOPICS = {"/camera/image_raw": bm.IMAGE, "/range": bm.RANGE, "/odom": bm.ODOMETRY}


def _messages(first: int, frames: int) -> list[tuple[str, int, bytes]]:
    """(topic, log ns, CDR) of frames ``first`` .. ``first + frames``: range, odometry, camera each 33 ms."""
    out = []
    for i in range(first, first + frames):
        ns = T0 + i * FRAME_NS
        img = np.full((24, 32, 3), 90 + i % 50, np.uint8)
        out += [("/range", ns, bm.serialize(bm.range_msg(ns, 30.0 - 0.3 * i, 0.2, 100.0))),
                ("/odom", ns + 1_000, bm.serialize(bm.odom_msg(ns, 10.0))),
                ("/camera/image_raw", ns + 2_000_000, bm.serialize(bm.image_msg(ns, img)))]
    return out


_RECORDER = textwrap.dedent("""
    # goes on recording as rosbag2's resilient preset does (WAL, synchronous NORMAL, one commit per
    # message), then dies without closing the database: the WAL stays beside it
    import os, pickle, sqlite3, sys
    con = sqlite3.connect(sys.argv[1], isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    ids = dict(con.execute("SELECT name, id FROM topics"))
    for topic, ns, raw in pickle.load(sys.stdin.buffer):
        con.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)", (ids[topic], ns, raw))
    os._exit(0)
""")


def killed_recording(path: Path, *, closed: int = 60, logged: int = 30, metadata: bool = True) -> Path:
    """A sqlite3 bag: ``closed`` frames in the database, ``logged`` more only in its write-ahead log."""
    import pickle

    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conns = {topic: writer.add_connection(topic, msgtype, typestore=bm.TYPESTORE,
                                              offered_qos_profiles=[bm.SENSOR_QOS])
                 for topic, msgtype in TOPICS.items()}
        for topic, ns, raw in _messages(0, closed):
            writer.write(conns[topic], ns, raw)
    db = next(path.glob("*.db3"))
    subprocess.run([sys.executable, "-c", _RECORDER, str(db)], input=pickle.dumps(_messages(closed, logged)),
                   check=True, timeout=60)
    assert Path(f"{db}-wal").stat().st_size > 0
    if not metadata:  # as rosbag2 leaves a killed recording: it writes metadata.yaml on close
        (path / "metadata.yaml").unlink()
    return path


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.mark.parametrize("metadata", [False, True], ids=["killed", "metadata-of-an-earlier-close"])
def test_a_killed_sqlite3_recording_replays_its_last_messages_too(tmp_path, bag_temp_dirs, metadata):
    bag = killed_recording(tmp_path / "rec", metadata=metadata)
    before = _files(bag)
    made = bag_temp_dirs
    result = replay(bag, out_dir=tmp_path / "out", cfg=make_config(), bundle=None, plot=False)
    s = result.summary
    # before: 180 messages, 60 frames, 2.0 s, and no warning: the last second was gone
    assert s["input"]["messages"] == 270 and s["frames"] == s["decisions"] == 90
    assert s["input"]["duration_s"] == pytest.approx(89 * FRAME_NS * 1e-9 + 0.002, abs=1e-5)
    (warning,) = [w for w in s["warnings"] if "not closed cleanly" in w]
    assert "rec.db3-wal held 90 message(s)" in warning and "(180 without the log, 270 with it)" in warning
    decided = read_decisions(result.bag)
    assert max(decided) == T0 + 89 * FRAME_NS  # the last frame, which was only in the log
    # metadata.yaml (when there is one) still counts 180: it does not make the bag refused
    # the bag is untouched (sqlite writes to the log and its index even to read), and the copy is gone
    assert _files(bag) == before
    assert made and not any(p.exists() for p in made)


def test_without_room_for_the_copy_the_bag_is_refused_before_copying(tmp_path, monkeypatch):
    from collections import namedtuple

    from tiny_node.bag import topics

    bag = killed_recording(tmp_path / "rec", metadata=False)
    before = _files(bag)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(topics.shutil, "disk_usage", lambda where: usage(1 << 40, 1 << 40, 100 << 20))
    with pytest.raises(BagError, match=r"applying the write-ahead log .* needs 0\.0 GiB in .*set TMPDIR") as err:
        BagSource(bag)
    assert "corrupt" not in str(err.value) and _files(bag) == before


def test_a_cleanly_closed_bag_is_read_in_place(tmp_path):
    """No log beside the database: nothing is copied, and nothing is said."""
    bag = killed_recording(tmp_path / "rec")
    for suffix in ("-wal", "-shm"):
        Path(f"{bag / 'rec.db3'}{suffix}").unlink()
    with BagSource(bag) as source:
        assert source._tmp is None and source.warnings == [] and source.message_count == 180


_WAL_ONLY = textwrap.dedent("""
    # a recorder that creates its database in WAL mode (schema and rows of a template) and is
    # killed before the first checkpoint: the tables themselves are only in the log
    import os, sqlite3, sys
    tmpl = sqlite3.connect(sys.argv[2])
    con = sqlite3.connect(sys.argv[1], isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    for (sql,) in tmpl.execute("SELECT sql FROM sqlite_master WHERE type='table' AND sql IS NOT NULL"):
        con.execute(sql)
    for (table,) in tmpl.execute("SELECT name FROM sqlite_master WHERE type='table'"):
        for row in tmpl.execute(f"SELECT * FROM {table}"):
            con.execute(f"INSERT INTO {table} VALUES ({','.join('?' * len(row))})", row)
    os._exit(0)
""")


@pytest.mark.parametrize("first", ["killed", "wal-only"])
def test_a_damaged_split_file_is_named_when_an_earlier_file_was_read_from_a_copy(tmp_path, first):
    """Review 2, finding 3: rec_0.db3 has a log (read from a copy), rec_1.db3 is truncated. The
    copies were removed before the unreadable file was looked for, so the copy of rec_0 did not
    open and the error named rec_0.db3. 'wal-only': rec_0's tables are only in its log, so the
    bag's own rec_0.db3 does not open either, only its copy: the file read is what is tried."""
    killed = killed_recording(tmp_path / "k", closed=10, logged=5, metadata=False)
    split = tmp_path / "split"
    split.mkdir()
    if first == "killed":
        for f in killed.iterdir():
            shutil.copyfile(f, split / f.name.replace("k.db3", "rec_0.db3"))
    else:
        subprocess.run([sys.executable, "-c", _WAL_ONLY, str(split / "rec_0.db3"), str(killed / "k.db3")],
                       check=True, timeout=60)
        assert (split / "rec_0.db3-wal").stat().st_size > 0
        with pytest.raises(ReaderError, match="missing tables"), Reader(split / "rec_0.db3"):
            pass  # the bag's own file, as rosbags opens it (immutable): no tables without its log
    clean = tmp_path / "clean"
    with Writer(clean, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conn = writer.add_connection("/range", bm.RANGE, typestore=bm.TYPESTORE)
        writer.write(conn, T0, bm.serialize(bm.range_msg(T0, 30.0, 0.2, 100.0)))
    (split / "rec_1.db3").write_bytes((clean / "clean.db3").read_bytes()[:3000])  # cut short
    with pytest.raises(BagError) as err:
        BagSource(split)
    assert "corrupt or unreadable bag (rec_1.db3): " in str(err.value), err.value
    with BagSource(split / "rec_0.db3") as one:  # rec_0 alone is readable, from its copy
        assert one.message_count == 45


@pytest.mark.parametrize(("storage", "ext"), [("sqlite3", "db3"), ("mcap", "mcap")])
def test_a_damaged_file_of_a_file_compressed_split_bag_is_named(tmp_path, storage, ext):
    """rec_1 cut short, then compressed: the error names rec_1.<ext>.zstd, not the deleted
    unpacked copy or nothing (review, 11:00); an mcap's hint says to decompress first."""
    import yaml
    from test_bag_startup import T0, _drive, _write

    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        from backports import zstd  # type: ignore[no-redef]

    plain = _write(tmp_path / "plain", _drive(T0, 0.5, 3_000_000), storage)
    data = next(plain.glob(f"*.{ext}")).read_bytes()
    split = tmp_path / "split"
    split.mkdir()
    (split / f"rec_0.{ext}.zstd").write_bytes(zstd.compress(data))
    (split / f"rec_1.{ext}.zstd").write_bytes(zstd.compress(data[: len(data) // 2]))
    meta = yaml.safe_load((plain / "metadata.yaml").read_text())
    info = meta["rosbag2_bagfile_information"]
    info["compression_mode"], info["compression_format"] = "FILE", "zstd"
    info["relative_file_paths"] = [f"rec_0.{ext}.zstd", f"rec_1.{ext}.zstd"]
    info["files"] = [dict(info["files"][0], path=p) for p in info["relative_file_paths"]]
    (split / "metadata.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(BagError, match=rf"corrupt or unreadable bag \(rec_1\.{ext}\.zstd\)") as err:
        BagSource(split).close()
    assert ("decompressed (`zstd -d`)" in str(err.value)) == (storage == "mcap")


def _killed_file_compressed(tmp_path: Path) -> tuple[Path, bytes]:
    """A killed ``--compression-mode file`` sqlite3 recording: ``rec_0.db3.zstd`` (frames -30..-1), then
    the open ``rec_1.db3`` with 30 frames in it and 30 more only in its write-ahead log; and split 0's
    plain bytes."""
    from tiny_node.bag.topics import zstd

    first = tmp_path / "first"
    with Writer(first, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conns = {topic: writer.add_connection(topic, msgtype, typestore=bm.TYPESTORE) for topic, msgtype in TOPICS.items()}
        for topic, ns, raw in _messages(-30, 30):
            writer.write(conns[topic], ns, raw)
    last = killed_recording(tmp_path / "last", closed=30, logged=30, metadata=False)
    bag = tmp_path / "rec"
    bag.mkdir()
    plain0 = next(first.glob("*.db3")).read_bytes()
    (bag / "rec_0.db3.zstd").write_bytes(zstd.compress(plain0))
    db = next(last.glob("*.db3")).name
    for f in list(last.glob(f"{db}*")):  # rec_1.db3 with its -wal (and -shm)
        f.rename(bag / f.name.replace(db, "rec_1.db3"))
    return bag, plain0


def test_a_killed_file_compressed_recording_reads_its_splits_and_its_open_splits_log(tmp_path):
    """``--compression-mode file``: each closed split is compressed, the open one is left with its
    write-ahead log. Read before: the last split only, without its log. Stopped while compressing, a
    split is there twice (the plain file, a partial .zstd): the plain one is read, once (diff review:
    every message of it twice, and a partial .zstd's error named no file)."""
    from tiny_node.bag.topics import zstd

    bag, plain0 = _killed_file_compressed(tmp_path)
    before = _files(bag)
    with BagSource(bag) as source:
        assert source.message_count == 90 * 3 == sum(1 for _ in source.messages())
        assert any("write-ahead log" in w for w in source.warnings), source.warnings
    assert _files(bag) == before  # the bag left untouched
    (bag / "rec_0.db3").write_bytes(plain0)  # killed while compressing split 0: both forms, the .zstd cut short
    (bag / "rec_0.db3.zstd").write_bytes(zstd.compress(plain0)[:100])
    with BagSource(bag) as source:
        assert source.message_count == 90 * 3 == sum(1 for _ in source.messages())
        assert f"{bag / 'rec_0.db3.zstd'}: left out: rec_0.db3 beside it is the same split uncompressed" in " ".join(
            source.warnings)
    (bag / "rec_0.db3").unlink()
    with pytest.raises(BagError, match=r"rec_0\.db3\.zstd: does not decompress"):
        BagSource(bag)


def test_a_write_ahead_log_that_cannot_be_copied_is_named_not_an_unpacked_split(tmp_path, monkeypatch):
    """The log's copy shares the folder the compressed splits were unpacked into: its error deleted them
    all, and the error then named the intact rec_0.db3.zstd (diff review)."""
    import errno
    import shutil as shutil_mod

    bag, _ = _killed_file_compressed(tmp_path)
    copyfile = shutil_mod.copyfile

    def flaky(src, dst, *a, **k):
        if str(src).endswith("-wal"):
            raise OSError(errno.EIO, "Input/output error", str(src))
        return copyfile(src, dst, *a, **k)

    monkeypatch.setattr(shutil_mod, "copyfile", flaky)
    with pytest.raises(BagError) as err:
        BagSource(bag)
    assert "rec_1.db3-wal" in str(err.value) and "(rec_0.db3.zstd)" not in str(err.value), str(err.value)
