"""`tiny-node replay`: what it refuses before anything runs (--out, --namespace, --wait), and what
a failed run leaves behind. Fast: a half-second lockstep bag, no DDS.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_bag import _outputs, drive

from tiny_node import cli
from tiny_node.bag import BagError, replay
from tiny_node.bag.replay import _Staging
from tiny_node.config import make_config


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("out") / "rec"
    drive(path, seconds=0.5)
    return path


def _cli(args: list[str], capsys) -> tuple[int, str]:
    rc = cli.main(["replay", *args])
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.mark.parametrize("name", ["summary.json", "replay.png"])
def test_another_tools_report_in_the_out_folder_is_refused_and_kept(tmp_path, rec, capsys, name):
    """A `sim` report folder (its own summary.json) given as --out: replay replaced its report."""
    out = tmp_path / "sim_report"
    out.mkdir()
    (out / name).write_text(json.dumps({"suite": "ncap", "scenarios": []}))
    before = _outputs(out)
    with pytest.raises(BagError, match=f"{name} exists and is not an earlier replay's"):
        replay(rec, out_dir=out, cfg=make_config(), bundle=None, plot=False)
    assert _outputs(out) == before and sorted(p.name for p in out.iterdir()) == [name]
    rc, text = _cli([str(rec), "--rules-only", "--no-plot", "--out", str(out)], capsys)
    assert rc == 2 and text.count("\n") == 1 and "not an earlier replay's" in text and _outputs(out) == before


def test_a_report_written_beside_a_running_replay_is_not_replaced_at_its_end(tmp_path, rec):
    """The check again at the swap: another tool may write into --out while a replay runs."""
    out = tmp_path / "out"
    with pytest.raises(BagError, match="not an earlier replay's"), _Staging(out) as staging:
        staging.open(rec)
        staging.summary.write_text("{}")
        (out / "summary.json").write_text("theirs")
        staging.commit()
    assert _outputs(out) == {"summary.json": b"theirs"}


def test_a_failed_replay_removes_every_folder_it_created(tmp_path, rec):
    """--out newa/newb/newc: newa and newb were left behind, empty."""
    (tmp_path / "kept").mkdir()
    for out in (tmp_path / "newa" / "newb" / "newc", tmp_path / "kept" / "x" / "y"):
        with pytest.raises(BagError, match="model bundle"):
            replay(rec, out_dir=out, cfg=make_config(), bundle=tmp_path / "typo", plot=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())


@pytest.mark.parametrize(("namespace", "why"), [
    ("bad ns", "must not contain characters other than alphanumerics"),
    ("1abc", "must not have a token that starts with a number"),
    ("~x", "must not contain characters other than alphanumerics"),
    ("a//b", "must not contain repeated '/'"),
    ("a" * 210, "too long"),
])
def test_a_namespace_rcl_refuses_is_one_line_before_anything_runs(tmp_path, capsys, namespace, why):
    """It was rclpy's InvalidTopicNameException traceback (exit 1) once the replay had begun."""
    rc, text = _cli([str(tmp_path / "no_bag"), "--realtime", "--namespace", namespace], capsys)
    assert rc == 2 and text.count("\n") == 1 and "Traceback" not in text, text
    assert text.startswith(f"tiny-node replay: error: --namespace {namespace!r}: ") and why in text, text


@pytest.mark.parametrize("namespace", ["", "/", "robot1", "/robot1/", "a/b_2", "a" * 200])
def test_a_namespace_the_replay_can_use_passes(namespace):
    from tiny_node.bag.replay import namespace_problem

    assert namespace_problem(namespace) == ""


@pytest.mark.parametrize("wait", ["-1", "0", "nan", "inf", "-inf", "soon"])
def test_wait_must_be_a_finite_time_above_0(tmp_path, capsys, wait):
    """-1 said "no node ... within -1 s", 0 gave up before it looked, inf waited for ever."""
    with pytest.raises(SystemExit) as stop:
        cli.main(["replay", str(tmp_path / "no_bag"), "--realtime", "--wait", wait])
    assert stop.value.code == 2 and "--wait" in capsys.readouterr().err
    rc, text = _cli([str(tmp_path / "no_bag"), "--realtime", "--wait", "0.5"], capsys)
    assert rc == 2 and "bag not found" in text
