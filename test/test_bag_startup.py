"""Replay of a recording that starts mid-drive: start-up fail-safes are kept, and reported apart.

A vehicle bag's first camera message usually comes before its first range or odometry message
(30 Hz camera, 20 Hz radar): the core judges that frame fail-safe ("no reading received"), a
brake for that frame alone (no brake hold), as the node would. The decisions stay as decided; ``first_brake`` must
still be the drive's first real brake (a review found it at t = 0 with the real one hidden).
Every bag is written here with rosbags, as a recorder on a vehicle would write it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from tiny_node.bag import msgs as bm
from tiny_node.bag import read_decisions, replay
from tiny_node.bag.replay import MAX_LOG_GAP_S, REALTIME_STARTUP_SLACK_S, realtime_startup, startup_bounds
from tiny_node.bag.report import DecisionRecord, Series, summarize
from tiny_node.config import make_config

T0 = 1_750_000_000 * 10**9
SPEED = 20.0  # m/s: the rules' safe distance is 51 m at this speed (no object speed)
GAP0 = 51.0 + SPEED * 3.0  # the object is inside the safe distance from t = 3 s on
FRAME_NS = 33_333_333


def _image(i: int) -> np.ndarray:
    img = np.full((48, 64, 3), 80, np.uint8)
    img[16:24, i % 40: i % 40 + 16] = 220
    return img


def _drive(t0_ns: int, seconds: float, cam_offset_ns: int, *, imu_from_s: float | None = None) -> list[tuple]:
    """(topic, log ns, message): camera 30 Hz, radar 20 Hz, odometry 50 Hz (IMU 50 Hz from ``imu_from_s``),
    closing on an object; each sensor's first message at ``t0_ns`` + its offset (camera: ``cam_offset_ns``)."""
    items: list[tuple] = []
    for k in range(int(seconds * 600)):  # a 600 Hz grid
        t_ns = t0_ns + k * 1_666_667
        rel = k / 600
        if k % 20 == 0:
            items.append(("/camera/image_raw", t_ns + cam_offset_ns, bm.image_msg(t_ns, _image(k // 20))))
        if k % 30 == 0:
            items.append(("/radar/range", t_ns + 1_000_000, bm.range_msg(t_ns, GAP0 - SPEED * rel, 0.5, 250.0)))
        if k % 12 == 0:
            items.append(("/odom", t_ns + 500_000, bm.odom_msg(t_ns, SPEED)))
            if imu_from_s is not None and rel >= imu_from_s:
                items.append(("/imu", t_ns + 700_000, bm.imu_msg(t_ns, -0.1)))
    return items


def _write(path: Path, items: list[tuple], storage: str = "mcap") -> Path:
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for topic, ns, msg in sorted(items, key=lambda item: item[1]):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=bm.TYPESTORE,
                                                     offered_qos_profiles=[bm.SENSOR_QOS])
            writer.write(conns[topic], ns, bm.serialize(msg))
    return path


@pytest.fixture(scope="module")
def drives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The same 4.5 s drive recorded twice: the sensors' first messages before the camera's, and after."""
    root = tmp_path_factory.mktemp("startup")
    out = {}
    for name, offset in (("sensors_first", 3_000_000), ("camera_first", -20_000_000)):
        bag = _write(root / name, _drive(T0 + 20_000_000, 4.5, offset))
        out[name] = replay(bag, out_dir=root / f"r_{name}", cfg=make_config(), bundle=None).summary
        out[name]["bag"] = root / f"r_{name}" / "bag"
    return out


def test_a_camera_first_bag_reports_the_drives_first_brake_not_the_start_up_fail_safe(drives):
    ref, s = drives["sensors_first"], drives["camera_first"]
    real = ref["first_brake"]
    assert real["reason"].startswith("RSS:") and 2.9 < real["t_s"] < 3.1
    # before the fix: first_brake at 0.000 s, "fail-safe brake: range: no reading received; odom: ..."
    first = s["first_brake"]
    assert first["reason"].startswith("RSS:"), first
    assert abs(first["t_s"] - real["t_s"]) < 0.05  # the same frame or the next: the camera runs 23 ms earlier
    assert ref["startup_failsafe"]["decisions"] == 0 and not any("start-up" in w for w in ref["warnings"])
    start = s["startup_failsafe"]
    assert (start["decisions"], start["frames"], start["brakes"]) == (1, 1, 1)
    assert start["missing"] == {"range": 1, "odom": 1}
    assert start["first_brake"]["t_s"] == 0.0
    assert start["first_brake"]["reason"].startswith("fail-safe brake: range: no reading received; odom: no reading")
    # no brake hold after it: the frame after the sensors' first messages decides on its own (the 2 s
    # hold of that fail-safe braked every later frame until it ran out: 55-61 of them)
    assert start["held_brakes"] == 0
    (window,) = start["windows"]
    assert window["from_s"] == 0.0 and window["missing"] == ["range", "odom"] and window["decisions"] == 1
    assert window["until_s"] == pytest.approx(0.0205, abs=1e-3)  # the radar's first message, 20.5 ms in
    (warning,) = [w for w in s["warnings"] if w.startswith("start-up")]
    assert "1 frame(s) decided before range (1), odom (1) had delivered a first message" in warning
    assert "held for" not in warning and "first_brake" in warning


def test_start_up_decisions_are_kept_as_the_core_made_them(drives):
    """Nothing is dropped or rewritten: the node would brake fail-safe before its sensors report."""
    s = drives["camera_first"]
    assert s["frames"] == s["decisions"] == 135 and s["frames_without_decision"] == 0
    decided = read_decisions(s["bag"])
    assert len(decided) == 135
    first = decided[min(decided)]
    assert first["decision"] == "brake" and "range: no reading received" in first["reason"]
    assert s["brakes"] == sum(d["decision"] == "brake" for d in decided.values())
    # the rest are the drive's: as many as with the sensors first (a frame fewer: the camera runs 23 ms earlier)
    steady = s["brakes"] - s["startup_failsafe"]["brakes"] - s["startup_failsafe"]["held_brakes"]
    assert steady in (drives["sensors_first"]["brakes"] - 1, drives["sensors_first"]["brakes"])


def test_a_fresh_core_after_a_log_time_gap_has_its_own_start_up(tmp_path):
    """After a gap over MAX_LOG_GAP_S the replay goes on with a fresh core, which has no reading either."""
    jump = int((MAX_LOG_GAP_S + 40) * 1e9)
    items = _drive(T0, 1.0, -20_000_000) + _drive(T0 + jump, 4.5, -20_000_000)
    s = replay(_write(tmp_path / "b", items), out_dir=tmp_path / "o", cfg=make_config(), bundle=None,
               plot=False).summary
    assert any("log time jumps" in w for w in s["warnings"])
    start = s["startup_failsafe"]
    assert [(w["from_s"], w["decisions"]) for w in start["windows"]] == [
        (0.0, 1), (pytest.approx(jump * 1e-9, abs=1e-6), 1)]  # from the first message after the gap
    assert start["frames"] == 2 and start["brakes"] == 2
    # after the gap, the fresh core decides as on that part of the drive alone
    alone = replay(_write(tmp_path / "alone", _drive(T0, 4.5, -20_000_000)), out_dir=tmp_path / "o2",
                   cfg=make_config(), bundle=None, plot=False).summary
    assert alone["first_brake"]["reason"].startswith("RSS:")
    assert s["first_brake"]["reason"] == alone["first_brake"]["reason"]
    assert s["first_brake"]["t_s"] == pytest.approx(jump * 1e-9 + alone["first_brake"]["t_s"], abs=1e-6)


@pytest.mark.parametrize("imu_required", [False, True])
def test_the_imu_starts_a_start_up_only_when_the_core_needs_it(tmp_path, imu_required):
    """Without imu_required the core judges frames alike with or without an IMU: a late IMU is no start-up."""
    items = _drive(T0, 1.0, 3_000_000, imu_from_s=0.5)
    s = replay(_write(tmp_path / "b", items, "sqlite3"), out_dir=tmp_path / "o",
               cfg=make_config({"imu_required": imu_required}), bundle=None, plot=False).summary
    start = s["startup_failsafe"]
    if not imu_required:
        assert start["decisions"] == 0 and start["windows"] is None
        return
    assert start["missing"] == {"imu": start["frames"]} and 14 <= start["frames"] <= 16  # the first 0.5 s
    assert start["windows"][0]["until_s"] == pytest.approx(0.5007, abs=1e-3)
    assert all("imu: no reading received" in d["reason"] for d in read_decisions(tmp_path / "o" / "bag").values()
               if d["log_ns"] < T0 + 500_000_000)


def _record(t: float, brake: bool, reason: str, hold: bool = False) -> DecisionRecord:
    return DecisionRecord(int(T0 + t * 1e9), t, brake, "rules", "disabled", reason, 0.0, 50.0, hold, 0)


def test_real_time_takes_start_up_from_the_nodes_own_reasons():
    """In real time only the node knows when it judged a frame: its reason says which sensor never spoke."""
    failsafe = "fail-safe brake: range: no reading received [model not asked]"
    records = [
        _record(0.0, True, failsafe),
        _record(0.03, True, f"holding brake 1.97 s more after: {failsafe} | now: clear: object at 90 m", hold=True),
        _record(2.5, True, "RSS: object at 40 m <= safe distance 51 m"),
        _record(2.53, True, "holding brake 1.97 s more after: RSS: ... | now: clear", hold=True),
        _record(9.0, True, failsafe),  # long after the first range: the node did not get it, a fault
    ]
    series = Series(range_t=[0.02, 0.07], speed_t=[0.01])
    marked = realtime_startup(records, {"camera": "/c", "range": "/r", "odom": "/o"}, series,
                              bounds=startup_bounds(make_config()), open_t=0.0)
    assert [r.startup for r in marked] == [("range",), (), (), (), ()]
    s = summarize(marked, series, deadline_misses=0)
    assert s["startup_failsafe"]["decisions"] == 1 and s["startup_failsafe"]["held_brakes"] == 1
    assert s["first_brake"]["t_s"] == 2.5 and s["brakes"] == 5


def _no_radar_after(items: list[tuple], t_ns: int) -> list[tuple]:
    return [it for it in items if not (it[0] == "/radar/range" and it[1] >= t_ns)]


def test_a_radar_silent_after_a_gap_ends_start_up_at_its_timeout_and_its_fail_safes_are_the_drives(tmp_path):
    """Review 2, finding 1: after a gap the radar never came back; start-up never ended and
    every fail-safe brake (90) was start-up, first_brake null. Now its silence is start-up only
    for range_timeout_s after the fresh core opened, then a fault: steady state."""
    jump = int((MAX_LOG_GAP_S + 10) * 1e9)
    items = _drive(T0, 1.0, 3_000_000) + _no_radar_after(_drive(T0 + jump, 3.0, 3_000_000), T0)
    s = replay(_write(tmp_path / "b", items), out_dir=tmp_path / "o", cfg=make_config(), bundle=None,
               plot=False).summary
    start, gap_s = s["startup_failsafe"], jump * 1e-9
    assert s["brakes"] == 90  # every frame after the gap: kept as decided
    first = s["first_brake"]
    assert first is not None and first["reason"] == "fail-safe brake: range: no reading received"
    assert gap_s + 0.5 < first["t_s"] < gap_s + 0.54  # the first frame past range_timeout_s (0.5 s)
    assert start["frames"] == start["brakes"] == 15 and start["missing"] == {"range": 15}
    (window,) = start["windows"]
    # the bound runs from the window's first camera frame (the fixture's camera runs 2.5 ms late)
    assert window["from_s"] == pytest.approx(gap_s) and gap_s + 0.5 < window["until_s"] < gap_s + 0.504
    assert window["silent"] == ["range"]
    (note,) = [w for w in s["warnings"] if w.startswith("range: no message within")]
    assert "range_timeout_s (0.5 s)" in note and "steady state" in note


@pytest.mark.parametrize("timeout_s", [0.5, 1.0])
def test_a_radar_that_reports_late_ends_its_start_up_at_its_timeout_not_at_its_message(tmp_path, timeout_s):
    """At the bag's start too: the radar's first message 2.5 s in (a radar with no message at all
    is no range topic, warned of already). The frames between the bound and it are faults, the
    drive's, not start-up: before the fix all of them were, and first_brake was none."""
    late = T0 + 2_500_000_000
    items = [it for it in _drive(T0, 3.0, 3_000_000) if not (it[0] == "/radar/range" and it[1] < late)]
    s = replay(_write(tmp_path / "b", items, "sqlite3"), out_dir=tmp_path / "o",
               cfg=make_config({"range_timeout_s": timeout_s}), bundle=None, plot=False).summary
    start = s["startup_failsafe"]
    assert start["frames"] == round(timeout_s * 30)  # the frames within the bound (the camera runs 3 ms late)
    assert s["first_brake"]["reason"] == "fail-safe brake: range: no reading received"
    assert timeout_s < s["first_brake"]["t_s"] < timeout_s + 0.04
    (window,) = start["windows"]
    assert timeout_s < window["until_s"] < timeout_s + 0.004 and window["silent"] == ["range"]  # from the first frame


def test_real_time_bounds_start_up_when_no_range_message_could_be_read():
    """Real time: a radar whose every message is undecodable has no first time; the bound from
    the bag's first frame (range_timeout_s, as in lockstep: the delivery slack is for a first
    message only) still ends its start-up."""
    failsafe = "fail-safe brake: range: no reading received"
    bound = 0.5
    records = [_record(t, True, failsafe) for t in (0.2, bound - 0.01, bound + 0.01, 9.0)]
    marked = realtime_startup(records, {"camera": "/c", "range": "/r", "odom": "/o"}, Series(speed_t=[0.01]),
                              bounds=startup_bounds(make_config()), open_t=0.0)
    assert [r.startup for r in marked] == [("range",), ("range",), (), ()]
    s = summarize(marked, Series(), deadline_misses=0)
    assert s["first_brake"]["t_s"] == bound + 0.01
    # opened later (an epoch before the bag's first message): the bound follows the opening
    later = realtime_startup(records, {"range": "/r"}, Series(), bounds=startup_bounds(make_config()), open_t=8.0)
    assert [r.startup for r in later] == [("range",)] * 3 + [()]  # 9.0 s is past 8.0 + 0.5


def test_the_start_up_bound_runs_from_the_first_frame_not_the_bags_first_message(tmp_path: Path) -> None:
    """A recorder's own message 1 s before the sensors (``/rosout``, ``/tf_static``) must not spend
    the sensors' start-up bound: the camera-first frame stays a start-up fail-safe (review, 11:00)."""
    string = bm.TYPESTORE.types["std_msgs/msg/String"]
    drive = _drive(T0 + 1_000_000_000, 4.5, -20_000_000)
    s = replay(_write(tmp_path / "b", [("/rosout_like", T0, string(data="recorder up")), *drive]),
               out_dir=tmp_path / "o", cfg=make_config(), bundle=None, plot=False).summary
    assert s["first_brake"] is not None and s["first_brake"]["reason"].startswith("RSS")
    assert s["startup_failsafe"]["frames"] >= 1


def test_a_sensor_already_a_fault_is_not_hidden_by_another_sensors_start_up(tmp_path: Path) -> None:
    """The radar silent past range_timeout_s (0.5 s) is a fault from then on, even while odometry
    (odom_timeout_s 2.0) is still within its own start-up bound (review, 11:00)."""
    items = [it for it in _drive(T0, 3.0, 3_000_000)
             if not (it[0] == "/radar/range" and it[1] < T0 + 2_500_000_000)
             and not (it[0] == "/odom" and it[1] < T0 + 1_500_000_000)]
    s = replay(_write(tmp_path / "b", items), out_dir=tmp_path / "o", cfg=make_config({"odom_timeout_s": 2.0}),
               bundle=None, plot=False).summary
    assert s["first_brake"] is not None and 0.5 <= s["first_brake"]["t_s"] < 0.54  # was 1.5: hidden
    assert s["startup_failsafe"]["frames"] == 15


def test_real_time_start_up_is_lockstep_s_rule_slack_for_a_first_message_only():
    """A frame naming a sensor past its bound, or one the bag lacks, is a fault, not start-up; the
    delivery slack stretches a first message's time, not the absence bound (review, 11:00)."""
    both = "fail-safe brake: range: no reading received; odom: no reading received"
    bounds = startup_bounds(make_config({"odom_timeout_s": 2.0}))
    records = [_record(t, True, both) for t in (0.3, 0.7)]
    roles = {"camera": "/c", "range": "/r", "odom": "/o"}
    marked = realtime_startup(records, roles, Series(), bounds=bounds, open_t=0.0)
    assert [r.startup for r in marked] == [("range", "odom"), ()]  # at 0.7 s the radar is past 0.5 s
    no_radar = realtime_startup(records, {"camera": "/c", "odom": "/o"}, Series(), bounds=bounds, open_t=0.0)
    assert [r.startup for r in no_radar] == [(), ()]  # a bag without one: a fault from the start
    # the radar's first message at 0.1 s, delivered within the slack: start-up until then + slack only
    late = [_record(t, True, "fail-safe brake: range: no reading received") for t in (0.2, 0.1 + REALTIME_STARTUP_SLACK_S + 0.01)]
    marked = realtime_startup(late, roles, Series(range_t=[0.1]), bounds=startup_bounds(make_config()), open_t=0.0)
    assert [r.startup for r in marked] == [("range",), ()]


def test_a_silent_sensors_fault_is_dated_from_the_first_camera_frame_not_the_first_message(tmp_path):
    """A bag-replay review: odometry first, the camera 1 s later, the radar from 2.5 s. The warning said
    the radar's absence was a fault "from 0.500 s on", while the start-up window it ended ran to 1.5 s."""
    items = [it for it in _drive(T0, 3.0, 1_000_000_000) if not (it[0] == "/radar/range" and it[1] < T0 + 2_500_000_000)]
    s = replay(_write(tmp_path / "b", items), out_dir=tmp_path / "o", cfg=make_config(), bundle=None,
               plot=False).summary
    (window,) = s["startup_failsafe"]["windows"]
    assert window["first_frame_s"] == pytest.approx(1.0, abs=1e-3) and window["silent"] == ["range"]
    assert window["until_s"] == pytest.approx(1.5, abs=1e-3)
    (note,) = [w for w in s["warnings"] if w.startswith("range: no message within")]
    assert "of the start-up's first camera frame at 1.000 s: from 1.500 s on its absence is a sensor fault" in note
