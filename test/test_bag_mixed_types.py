"""A topic recorded under two types (a merged or converted bag) is read as the type a sensor role reads.

(Else as the type of most of its messages.)

Before, a topic took its first connection's type and every type's count, and the replay fed its
other type's messages to the role (a ``std_msgs/String`` on the camera topic: ``AttributeError``,
a traceback). Now the other type's messages are copied through, counted, and named. The bags
are written here with rosbags' Writer, several connections on one topic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from test_bag_realtime import _StandInNode, _VirtualTime

from tiny_node import cli
from tiny_node.bag import msgs as bm
from tiny_node.bag import realtime, replay
from tiny_node.bag.topics import BagSource
from tiny_node.config import make_config

T0 = 1_750_000_000 * 10**9
FRAME_NS = 33_333_333
STRING = "std_msgs/msg/String"
ROLE_TOPICS = {"/camera/image_raw": bm.IMAGE, "/range": bm.RANGE, "/odom": bm.ODOMETRY}


def _note(i: int) -> bytes:
    return bytes(bm.TYPESTORE.serialize_cdr(bm.TYPESTORE.types[STRING](data=f"converted {i}"), STRING))


def _bag(path: Path, storage: str = "mcap", *, frames: int = 30, notes_first: bool = False) -> Path:
    """Camera, range and odometry at 30 Hz; each of their topics also has one ``std_msgs/String``
    message, on a connection of its own (first, with ``notes_first``)."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns, notes = {}, {}
        for topic, msgtype in ROLE_TOPICS.items():
            add = [(notes, STRING), (conns, msgtype)] if notes_first else [(conns, msgtype), (notes, STRING)]
            for into, t in add:
                into[topic] = writer.add_connection(topic, t, typestore=bm.TYPESTORE,
                                                    offered_qos_profiles=[bm.SENSOR_QOS])
        for i in range(frames):
            ns = T0 + i * FRAME_NS
            writer.write(conns["/range"], ns, bm.serialize(bm.range_msg(ns, 40.0, 0.2, 150.0)))
            writer.write(conns["/odom"], ns + 1, bm.serialize(bm.odom_msg(ns, 5.0)))
            writer.write(conns["/camera/image_raw"], ns + 1_000_000,
                         bm.serialize(bm.image_msg(ns, np.full((24, 32, 3), 90 + i, np.uint8))))
            if i == frames // 2:  # mid-drive: a started sensor, then a message it cannot be
                for k, topic in enumerate(ROLE_TOPICS):
                    writer.write(notes[topic], ns + 2_000_000 + k, _note(k))
    return path


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_role_topic_with_a_message_of_another_type_replays_every_frame_and_copies_it(tmp_path, capsys,
                                                                                      storage):
    bag = _bag(tmp_path / "b", storage)
    # before: AttributeError: 'std_msgs__msg__String' object has no attribute 'header' (a traceback)
    result = replay(bag, out_dir=tmp_path / "out", cfg=make_config(), bundle=None, plot=False)
    s = result.summary
    assert s["frames"] == s["decisions"] == 30 and s["bad_frames"] == [] and s["undecodable_messages"] == {}, s
    for role, (topic, msgtype) in zip(("camera", "range", "odom"), ROLE_TOPICS.items(), strict=True):
        assert s["input"]["topics"][role] == {"topic": topic, "type": msgtype, "messages": 30,
                                              "not_read": {STRING: 1}}
        (warning,) = [w for w in s["warnings"] if w.startswith(f"{topic}:")]
        assert (f"recorded under 2 types, {msgtype} (30 messages) and {STRING} (1): read as {msgtype} (a type a "
                f"sensor role reads); its 1 message(s) of {STRING} are not read") in warning, warning
    # the notes, copied to the output bag unchanged beside their topics' own messages
    with BagSource(result.bag) as out:
        notes = [(c.topic, bytes(raw)) for c, _, raw in out.messages() if c.msgtype == STRING]
        assert notes == [(topic, _note(k)) for k, topic in enumerate(ROLE_TOPICS)]
        assert all(out.topics[topic].count == 30 for topic in ROLE_TOPICS)
    rc = cli.main(["replay", str(bag), "--rules-only", "--no-plot", "--out", str(tmp_path / "o2")])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err and "/camera/image_raw: recorded under 2 types" in err


def test_the_type_of_most_messages_is_the_topics_not_the_first_recorded(tmp_path):
    """The note's connection first: before, the camera topic was a String topic ("no camera topic")."""
    with BagSource(_bag(tmp_path / "b", notes_first=True)) as source:
        info = source.topics["/camera/image_raw"]
        assert (info.msgtype, info.count, info.other_types) == (bm.IMAGE, 30, ((STRING, 1),))
        assert source.message_count == 3 * 31
        # a topic's messages are those of its type; all of them without a topic set (the copy)
        assert {c.msgtype for c, _, _ in source.messages({"/camera/image_raw"})} == {bm.IMAGE}
        assert sum(1 for _ in source.messages()) == 3 * 31
        assert source.read["/camera/image_raw"] == 30 and source.unread_warnings() == []
    result = replay(tmp_path / "b", out_dir=tmp_path / "out", cfg=make_config(), bundle=None, plot=False)
    assert result.topics["camera"] == "/camera/image_raw" and result.summary["decisions"] == 30


def test_a_sensor_type_is_the_topics_even_when_fewer_and_recorded_last(tmp_path):
    with BagSource(_bag(tmp_path / "b", frames=1)) as source:
        assert [(i.msgtype, i.count, i.other_types) for i in source.topics.values()] == [
            (msgtype, 1, ((STRING, 1),)) for msgtype in ROLE_TOPICS.values()]
    with BagSource(_bag(tmp_path / "c", frames=1, notes_first=True)) as source:
        assert [(i.msgtype, i.count, i.other_types) for i in source.topics.values()] == [
            (msgtype, 1, ((STRING, 1),)) for msgtype in ROLE_TOPICS.values()]


def test_a_second_camera_with_more_notes_than_frames_is_still_a_second_camera(tmp_path, capsys):
    """By count alone, /rear/image_raw (10 frames, 20 notes) was a String topic: the other camera was chosen
    unasked, where two cameras must be an error naming both (review of the first fix)."""
    path = tmp_path / "b"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = {t: writer.add_connection(t, m, typestore=bm.TYPESTORE, offered_qos_profiles=[bm.SENSOR_QOS])
                for t, m in (*ROLE_TOPICS.items(), ("/rear/image_raw", bm.IMAGE))}
        notes = writer.add_connection("/rear/image_raw", STRING, typestore=bm.TYPESTORE)
        for i in range(30):
            ns = T0 + i * FRAME_NS
            writer.write(conn["/range"], ns, bm.serialize(bm.range_msg(ns, 40.0, 0.2, 150.0)))
            writer.write(conn["/odom"], ns + 1, bm.serialize(bm.odom_msg(ns, 5.0)))
            image = bm.serialize(bm.image_msg(ns, np.full((24, 32, 3), 90, np.uint8)))
            writer.write(conn["/camera/image_raw"], ns + 1_000_000, image)
            if i % 3 == 0:
                writer.write(conn["/rear/image_raw"], ns + 1_000_001, image)
            else:
                writer.write(notes, ns + 1_000_002, _note(i))
    with BagSource(path) as source:
        info = source.topics["/rear/image_raw"]
        assert (info.msgtype, info.count, info.other_types) == (bm.IMAGE, 10, ((STRING, 20),))
    rc = cli.main(["replay", str(path), "--rules-only", "--no-plot", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "several camera topics" in err and "/rear/image_raw" in err, err


def test_realtime_publishes_only_the_topics_own_type(tmp_path, monkeypatch):
    """The player stand-in decodes each camera message it is sent as an Image (the node would
    refuse a String on its camera topic); before, the String went to it, and the range path read
    ``msg.range`` of the String (AttributeError)."""
    vt = _VirtualTime()
    sent: dict[str, list[bytes]] = {}

    class Player(_StandInNode):
        def __init__(self, roles: object, namespace: str) -> None:
            super().__init__(roles, namespace)
            for role, pub in self.pubs.items():
                self.pubs[role] = type(pub)(publish=lambda raw, role=role, pub=pub: (
                    sent.setdefault(role, []).append(raw), pub.publish(raw)))

    Player.vt = vt
    monkeypatch.setattr(realtime, "time", vt)
    monkeypatch.setattr(realtime, "Player", Player)
    monkeypatch.setattr(realtime, "installed_form", lambda source, msgtype: None)
    result = replay(_bag(tmp_path / "b"), out_dir=tmp_path / "o", cfg=make_config(), bundle=None, realtime=True,
                    plot=False)
    s = result.summary
    assert s["frames"] == s["decisions"] == 30 and s["frames_without_decision"] == 0, s
    assert {role: len(raws) for role, raws in sent.items()} == {"camera": 30, "range": 30, "odom": 30}
    assert s["input"]["topics"]["camera"]["not_read"] == {STRING: 1}
    with BagSource(result.bag) as out:
        assert sum(1 for c, _, _ in out.messages() if c.msgtype == STRING) == 3
