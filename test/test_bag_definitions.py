"""A topic whose message definition rosbags cannot read is left undecoded, not the whole bag refused.

rosbags parses every connection's definition when it opens a bag: one vendor topic with valid
ROS 2 it does not parse (``wstring<=4``) made the replay refuse the bag as "corrupt", with an
``mcap recover`` hint that could not help. The bags are written here with rosbags' Writer, the
vendor topic with its definition text given as is.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from tiny_node import cli
from tiny_node.bag import BagError, replay
from tiny_node.bag import msgs as bm
from tiny_node.bag.topics import BagSource
from tiny_node.config import make_config

T0 = 1_750_000_000 * 10**9
VENDOR = "vendor_msgs/msg/RadarTrack"
VENDOR_DEF = "float32 x\nwstring<=4 w\n"  # valid ROS 2 (a bounded wide string); rosbags does not parse it
VENDOR_HASH = "RIHS01_" + "ab" * 32  # as rosbag2 records it (rosbags cannot compute it for this definition)
VENDOR_RAW = [bytes([0, 1, 0, 0, i, 0, 0, 0, 1, 0, 0, 0, 0x41, 0, 0, 0]) for i in range(3)]
BAD_IMAGE_DEF = bm.TYPESTORE.generate_msgdef(bm.IMAGE)[0] + "\nwstring<=4 note\n"


def _bag(path: Path, storage: str = "mcap", *, bad: dict[str, str] | None = None, imu: bool = False,
         rear_camera: bool = False) -> Path:
    """Camera, range, odometry (and IMU, a second camera) for 1 s, plus the vendor topic; ``bad``:
    topic -> a definition to record for it instead of its own."""
    bad = bad or {}
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    topics = {"/camera/image_raw": bm.IMAGE, "/range": bm.RANGE, "/odom": bm.ODOMETRY}
    topics |= {"/imu": bm.IMU} if imu else {}
    # another camera, of another type: a bag holds one definition per type, which all its topics share
    topics |= {"/rear/image_raw/compressed": bm.COMPRESSED_IMAGE} if rear_camera else {}
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for topic, msgtype in topics.items():
            if topic in bad:
                conns[topic] = writer.add_connection(topic, msgtype, msgdef=bad[topic], rihs01=VENDOR_HASH,
                                                     offered_qos_profiles=[bm.SENSOR_QOS])
            else:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=bm.TYPESTORE,
                                                     offered_qos_profiles=[bm.SENSOR_QOS])
        vendor = writer.add_connection("/vendor/radar_tracks", VENDOR, msgdef=VENDOR_DEF, rihs01=VENDOR_HASH,
                                       offered_qos_profiles=[bm.SENSOR_QOS])
        for i in range(30):
            ns = T0 + i * 33_333_333
            writer.write(conns["/range"], ns, bm.serialize(bm.range_msg(ns, 40.0 - i, 0.2, 100.0)))
            writer.write(conns["/odom"], ns + 1, bm.serialize(bm.odom_msg(ns, 10.0)))
            if imu:
                writer.write(conns["/imu"], ns + 2, bm.serialize(bm.imu_msg(ns, -0.1)))
            if i < len(VENDOR_RAW):
                writer.write(vendor, ns + 3, VENDOR_RAW[i])
            img = bm.serialize(bm.image_msg(ns, np.full((24, 32, 3), 100 + i, np.uint8)))
            writer.write(conns["/camera/image_raw"], ns + 1_000_000, img)
            if rear_camera:
                _, jpg = cv2.imencode(".jpg", np.full((24, 32, 3), 100 + i, np.uint8))
                rear = bm.TYPESTORE.types[bm.COMPRESSED_IMAGE](header=bm.header(ns, "rear"), format="jpeg",
                                                               data=np.frombuffer(jpg.tobytes(), np.uint8))
                writer.write(conns["/rear/image_raw/compressed"], ns + 1_000_001, bm.serialize(rear))
    return path


def _vendor_in(bag: Path) -> tuple[str, str, list[bytes]]:
    """(definition, recorded hash, messages) of the vendor topic in ``bag``, as stored."""
    with BagSource(bag) as source:
        (conn,) = [c for c in source.connections if c.topic == "/vendor/radar_tracks"]
        raws = [bytes(raw) for _, _, raw in source.messages({conn.topic})]
        return conn.msgdef.data, source.recorded_hash(conn), raws


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_vendor_topic_rosbags_cannot_parse_is_left_undecoded_and_copied_through(tmp_path, storage):
    bag = _bag(tmp_path / "b", storage)
    # before: BagError "corrupt or unreadable bag: Could not parse: ... (`mcap recover`)", exit 2
    result = replay(bag, out_dir=tmp_path / "out", cfg=make_config(), bundle=None, plot=False)
    s = result.summary
    assert s["frames"] == s["decisions"] == 30 and set(result.topics) == {"camera", "range", "odom"}
    (warning,) = [w for w in s["warnings"] if "/vendor/radar_tracks" in w]
    assert warning.startswith(f"/vendor/radar_tracks [{VENDOR}]: not decoded, rosbags cannot parse its message "
                              "definition") and "wstring<=4 w" in warning
    assert "corrupt" not in warning and "\n" not in warning
    # the output bag: the vendor's messages and its own definition, unchanged
    assert _vendor_in(result.bag) == (VENDOR_DEF, VENDOR_HASH, VENDOR_RAW)


def test_without_a_recorded_hash_the_definition_is_kept_as_comments(tmp_path):
    """rosbags writes a definition only with its type hash, and cannot compute one for a
    definition it cannot read: the output keeps the bytes under an empty definition that quotes it."""
    bag = _bag(tmp_path / "b", "mcap")
    meta_path = bag / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    for topic in meta["rosbag2_bagfile_information"]["topics_with_message_count"]:
        topic["topic_metadata"]["type_description_hash"] = ""
    meta_path.write_text(yaml.safe_dump(meta))
    result = replay(bag, out_dir=tmp_path / "out", cfg=make_config(), bundle=None, plot=False)
    assert any("/vendor/radar_tracks: copied unchanged, under an empty definition" in w
               for w in result.summary["warnings"]), result.summary["warnings"]
    definition, digest, raws = _vendor_in(result.bag)
    assert raws == VENDOR_RAW and digest.startswith("RIHS01_") and digest != VENDOR_HASH
    assert "# float32 x\n# wstring<=4 w\n" in definition
    assert all(line.startswith("#") for line in definition.splitlines())  # no field: it does not pretend


def test_a_definition_that_does_not_match_its_recorded_hash_leaves_that_topic_out(tmp_path):
    """rosbags' AnyReader refused the whole bag for one hash mismatch ("corrupt")."""
    bag = _bag(tmp_path / "b", "sqlite3")
    (db,) = bag.glob("*.db3")
    import sqlite3

    con = sqlite3.connect(db)
    con.execute("UPDATE topics SET type_description_hash = ? WHERE name = '/vendor/radar_tracks'",
                ("RIHS01_" + "cd" * 32,))
    con.execute("UPDATE message_definitions SET encoded_message_definition = 'float32 x' WHERE topic_type = ?",
                (VENDOR,))
    con.commit()
    con.close()
    result = replay(bag, out_dir=tmp_path / "out", cfg=make_config(), bundle=None, plot=False)
    (warning,) = [w for w in result.summary["warnings"] if w.startswith("/vendor/radar_tracks [")]
    assert "does not match the type hash recorded with it" in warning
    assert result.summary["frames"] == 30


RECOVER = "mcap recover"


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_camera_whose_definition_cannot_be_read_is_refused_by_name_not_as_a_corrupt_bag(tmp_path, capsys,
                                                                                         storage):
    bag = _bag(tmp_path / "b", storage, bad={"/camera/image_raw": BAD_IMAGE_DEF})
    with pytest.raises(BagError) as err:
        replay(bag, out_dir=tmp_path / "out", cfg=make_config(), bundle=None, plot=False)
    text = str(err.value)
    assert f"the camera topic /camera/image_raw [{bm.IMAGE}] of {bag} cannot be decoded" in text
    assert "wstring<=4 note" in text and "corrupt" not in text and RECOVER not in text
    rc = cli.main(["replay", str(bag), "--out", str(tmp_path / "o2")])
    out = capsys.readouterr()
    assert rc == 2 and "Traceback" not in out.err and "cannot be decoded" in out.err


def test_a_camera_rosbags_cannot_read_still_counts_among_the_cameras(tmp_path):
    """Left out silently, it would make the other camera the forward one: for AEB, not ours to guess."""
    bag = _bag(tmp_path / "b", bad={"/camera/image_raw": BAD_IMAGE_DEF}, rear_camera=True)
    with pytest.raises(BagError, match="several camera topics"):
        replay(bag, out_dir=tmp_path / "out", cfg=make_config(), bundle=None, plot=False)
    rear = replay(bag, out_dir=tmp_path / "out", cfg=make_config(), bundle=None, plot=False,
                  topics={"camera": "/rear/image_raw/compressed"})
    assert rear.summary["frames"] == 30
    assert any(w.startswith("/camera/image_raw [") and "not decoded" in w for w in rear.summary["warnings"])


def test_an_imu_rosbags_cannot_read_is_left_out_as_the_optional_input_it_is(tmp_path):
    bag = _bag(tmp_path / "b", imu=True, bad={"/imu": bm.TYPESTORE.generate_msgdef(bm.IMU)[0] + "\nwstring<=4 x\n"})
    result = replay(bag, out_dir=tmp_path / "out", cfg=make_config(), bundle=None, plot=False)
    assert set(result.topics) == {"camera", "range", "odom"} and result.summary["frames"] == 30
    (warning,) = [w for w in result.summary["warnings"] if "/imu" in w]
    assert warning.startswith(f"the IMU topic /imu [{bm.IMU}] is left out")
    with pytest.raises(BagError, match=r"--imu /imu \[sensor_msgs/msg/Imu\] of .* cannot be decoded"):
        replay(bag, out_dir=tmp_path / "o2", cfg=make_config(), bundle=None, plot=False, topics={"imu": "/imu"})


def test_rosbags_own_reader_refuses_such_a_bag(tmp_path):
    """The premise: rosbags' AnyReader refuses the whole bag; if it ever stops, this can go."""
    from rosbags.highlevel import AnyReader

    bag = _bag(tmp_path / "b")
    with pytest.raises(Exception, match="wstring"), AnyReader([bag]):
        pass
    with Reader(bag) as reader:  # its storage reader alone is fine
        assert len(reader.connections) == 4


def _without_definition(bag: Path, msgtype: str) -> None:
    """Record ``msgtype`` as ``ros2 bag record`` (Iron on) records a type whose definition it cannot
    find: a ``message_definitions`` row with encoding "" and no definition (its hash kept)."""
    import sqlite3

    (db,) = bag.glob("*.db3")
    con = sqlite3.connect(db)
    assert con.execute("UPDATE message_definitions SET encoding = '', encoded_message_definition = '' "
                       "WHERE topic_type = ?", (msgtype,)).rowcount == 1
    con.commit()
    con.close()


@pytest.mark.parametrize("given", ["folder", "db3"])
def test_a_sqlite3_type_recorded_without_its_definition_is_a_type_without_one(tmp_path, capsys, given):
    """rosbags refused the whole bag: "corrupt or unreadable bag: ''" (its KeyError(''), exit 2)."""
    bag = _bag(tmp_path / "b", "sqlite3")
    _without_definition(bag, VENDOR)
    arg = bag if given == "folder" else next(bag.glob("*.db3"))
    rc = cli.main(["replay", str(arg), "--rules-only", "--no-plot", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 0 and "corrupt" not in err and "Traceback" not in err, err
    # named as a Humble bag's undefined type is, and copied through
    assert (f"/vendor/radar_tracks: no definition of {VENDOR} in the bag: copied unchanged, with an empty "
            "definition") in err
    with BagSource(tmp_path / "out" / "bag") as out:
        (conn,) = [c for c in out.connections if c.topic == "/vendor/radar_tracks"]
        assert conn.msgtype == VENDOR and [bytes(raw) for _, _, raw in out.messages({conn.topic})] == VENDOR_RAW
        decided = sum(1 for _ in out.messages({"/tiny_node/decision"}))
    assert decided == 30  # a decision for every frame


def test_a_role_type_recorded_without_its_definition_is_read_with_the_distros(tmp_path):
    """The range's definition missing from a Jazzy bag: every range read with the stores' Range."""
    bag = _bag(tmp_path / "b", "sqlite3")
    _without_definition(bag, bm.RANGE)
    with BagSource(bag) as source:
        (conn,) = [c for c in source.connections if c.topic == "/range"]
        assert conn.msgdef.data == "" and source.typestore_for(bm.RANGE) is not None
    result = replay(bag, out_dir=tmp_path / "out", cfg=make_config(), bundle=None, plot=False)
    s = result.summary
    assert s["frames"] == s["decisions"] == 30 and s["undecodable_messages"] == {}
    assert not any(r.reason.startswith("fail-safe") for r in result.decisions[1:]), result.decisions


def test_the_row_tracer_is_gone_once_the_bag_is_open(tmp_path):
    """The hook that reads such rows as "no definition" does not outlive the open, nor slow the reads."""
    import apsw

    from tiny_node.bag.topics import _Reader

    bag = _bag(tmp_path / "b", "sqlite3")
    _without_definition(bag, VENDOR)
    hooks = list(apsw.connection_hooks)
    for path in (bag, next(bag.glob("*.db3"))):
        with _Reader(path) as reader:
            storages = reader.storage.storages if path.is_dir() else [reader.storage]  # type: ignore[attr-defined]
            assert [s.dbconn.getrowtrace() for s in storages] == [None]
            assert {c.msgtype: c.msgdef.data for c in reader.connections}[VENDOR] == ""
        assert apsw.connection_hooks == hooks
    (db,) = bag.glob("*.db3")
    db.write_bytes(b"not a database" * 100)
    with pytest.raises(Exception, match="database"), _Reader(db):
        pass
    assert apsw.connection_hooks == hooks  # nor a failed one


def test_rosbags_own_reader_refuses_a_type_recorded_without_its_definition(tmp_path):
    """The premise (rosbags 0.11.9's sqlite3 reader knows ros2msg and ros2idl only); if it ever
    reads such a bag, :class:`tiny_node.bag.topics._Sqlite3Reader` can go."""
    bag = _bag(tmp_path / "b", "sqlite3")
    _without_definition(bag, VENDOR)
    with pytest.raises(KeyError), Reader(next(bag.glob("*.db3"))):
        pass
