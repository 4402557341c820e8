"""``tiny-node sim``'s output folders: refused up front, write failures as one line, no stale plots. No runs."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tiny_node.cli import main as cli_main
from tiny_node.sim import runner
from tiny_node.sim.report import write_report
from tiny_node.sim.runner import SuiteResult, print_result, run_key


def _one_line_refusal(capsys: pytest.CaptureFixture[str], code: int) -> str:
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""  # refused before the header said the suite was starting
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("extra", [["--rules-only"], ["--compare", "--model", "test"], ["--realtime", "--rules-only"]])
@pytest.mark.parametrize(("option", "given", "why"), [
    ("--out", "afile/sub", "cannot make --out folder {tmp}/afile/sub: Not a directory"),
    ("--out", "afile", "cannot make --out folder {tmp}/afile: File exists"),
    ("--record", "afile/sub", "cannot make --record folder {tmp}/afile/sub: Not a directory"),
    ("--record", "afile", "cannot make --record folder {tmp}/afile: File exists"),
])
def test_an_out_or_record_folder_that_cannot_be_made_is_one_line_naming_it_before_anything(
        tmp_path, capsys, option, given, why, extra):
    # a traceback (or '[Errno 17] File exists' naming no option) after the header, and --out's
    # runs/ and timelines/ made for a --record that failed; --model test made its bundle in --out
    (tmp_path / "afile").write_text("")
    out = tmp_path / "o"
    argv = ["sim", "--suite", "smoke", *extra, "--plots", "none",
            "--out", str(out) if option == "--record" else str(tmp_path / given)]
    if option == "--record":
        argv += ["--record", str(tmp_path / given)]
    err = _one_line_refusal(capsys, cli_main(argv))
    assert f"tiny-node sim: error: {why.format(tmp=tmp_path)}" in err
    assert not (out / "runs").exists() and not (out / "timelines").exists() and not (out / "bundles").exists()


@pytest.mark.parametrize("option", ["--out", "--record"])
def test_a_folder_no_file_can_be_made_in_is_refused_up_front(tmp_path, capsys, monkeypatch, option):
    # root passes os.access on /sys/kernel or a read-only mount: the first write was a traceback
    ro = tmp_path / "ro"
    from tiny_node import writable

    monkeypatch.setattr(writable, "write_problem", lambda folder: "Read-only file system" if folder == ro else "")
    argv = ["sim", "--suite", "smoke", "--rules-only", "--out", str(tmp_path / "o"), option, str(ro)]
    err = _one_line_refusal(capsys, cli_main(argv))
    assert f"cannot write in {option} folder {ro}: Read-only file system" in err
    assert not (tmp_path / "o" / "runs").exists()


@pytest.mark.parametrize(("extra", "kept"), [
    ([], "the finished runs are kept in {out}/runs, and the same command resumes from them"),
    (["--record", "{tmp}/bags"], "the finished runs are kept in {out}/runs and their bags in {tmp}/bags"),
])
def test_a_write_that_fails_under_way_is_one_line_saying_where_the_finished_runs_are(
        tmp_path, capsys, monkeypatch, extra, kept):
    # a full disk: the timelines' failed writes became error runs, then summary.json's raised a traceback
    def full_disk(*args: object, **kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o" / "summary.json"))

    monkeypatch.setattr(runner, "run_suite", full_disk)
    out = tmp_path / "o"
    argv = ["sim", "--suite", "smoke", "--rules-only", "--out", str(out), *(a.format(tmp=tmp_path) for a in extra)]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"tiny-node sim: error: [Errno 28] No space left on device: '{out}/summary.json'; " in err
    assert kept.format(out=out, tmp=tmp_path) in err


# --- plots and score matrix of an earlier suite ----------------------------------------------------
def _run(name: str, *, passed: bool) -> dict[str, Any]:
    return {"name": name, "mode": "rules", "protocol": "CCRs", "expect": "avoid", "ego_speed_kmh": 30.0,
            "band": None, "points": None, "passed": passed, "collided": not passed,
            "outcome": "avoided" if passed else "collision"}


def _fake_plotter(out: Path) -> Callable[..., list[str]]:
    """A ``mapper`` that writes each run's PNG where ``plot_run`` would (no matplotlib: fast)."""
    def mapper(fn: object, runs: Sequence[Mapping[str, Any]]) -> Iterable[str]:
        keys = [run_key(str(r["name"]), str(r["mode"])) for r in runs]
        for k in keys:
            (out / "plots" / f"{k}.png").write_bytes(b"png of this suite")
        return keys

    return mapper


def _report(out: Path, runs: list[dict[str, Any]], plots: str, capsys: pytest.CaptureFixture[str]) -> str:
    result = SuiteResult(out, runs, 1.0)
    write_report(result, plots=plots, mapper=_fake_plotter(out))
    capsys.readouterr()
    print_result(result)
    return capsys.readouterr().out


def test_a_report_keeps_only_the_plots_it_drew_and_names_the_folder_only_then(tmp_path, capsys):
    # --plots all, then --plots none into the same folder: the first suite's PNGs stayed, and the
    # command printed 'plots: o/plots' as this run's
    runs = [_run("a_crash", passed=False), _run("b_pass", passed=True)]
    printed = _report(tmp_path, runs, "all", capsys)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["a_crash__rules.png", "b_pass__rules.png"]
    assert f"plots: {tmp_path / 'plots'}" in printed
    others = ["notes.png", "a_crash__rules.txt", "a crash__rules.png", "x__replay.png"]  # not the plotter's names
    for name in others:
        (tmp_path / "plots" / name).write_bytes(b"someone else's")

    printed = _report(tmp_path, runs, "auto", capsys)  # the failed run, and the first per protocol: a_crash only
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted([*others, "a_crash__rules.png"])
    assert "[b_pass]" not in (tmp_path / "report.md").read_text() and "plots: " in printed

    printed = _report(tmp_path, runs, "none", capsys)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(others)
    assert "plots: " not in printed and "report: " in printed
    for name in others:
        (tmp_path / "plots" / name).unlink()
    _report(tmp_path, runs, "none", capsys)
    assert not (tmp_path / "plots").exists()  # emptied by the report: removed


def test_a_report_without_a_score_matrix_removes_an_earlier_suites(tmp_path, capsys):
    # a benign-only scenario after a CCRs suite: the CCRs score_matrix.png stayed beside a report without it
    (tmp_path / "score_matrix.png").write_bytes(b"the CCRs suite's")
    benign = {**_run("benign_adjacent_lane_car", passed=True), "protocol": "", "expect": "no_brake"}
    _report(tmp_path, [benign], "none", capsys)
    assert not (tmp_path / "score_matrix.png").exists()
    assert "score_matrix" not in (tmp_path / "report.md").read_text()


def test_compare_with_rules_only_says_it_needs_a_model(tmp_path, capsys):
    # it said '--compare needs --model BUNDLE' to a command that cannot take --model beside --rules-only
    argv = ["sim", "--suite", "smoke", "--compare", "--rules-only", "--out", str(tmp_path / "o")]
    err = _one_line_refusal(capsys, cli_main(argv))
    assert "--compare runs rules only beside the model: it needs a model, not --rules-only" in err


@pytest.mark.parametrize(("extra", "why"), [
    (["--rules-only"], "no model runs (rules only)"),
    (["--realtime", "--rules-only"], "in real time the node's model takes the time it takes"),
])
def test_a_budget_no_run_uses_is_a_warning(tmp_path, capsys, monkeypatch, extra, why):
    # --budget-ms without a model, or in real time, was dropped without a word
    def stop(*args: object, **kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner, "run_suite", stop)
    monkeypatch.setattr(runner, "run_suite_realtime", stop)
    argv = ["sim", "--suite", "smoke", *extra, "--budget-ms", "20", "--out", str(tmp_path / "o")]
    assert cli_main(argv) == 2
    assert f"tiny-node sim: warning: --budget-ms 20 not used: {why}" in capsys.readouterr().err


def test_a_ctrl_c_while_the_real_time_suite_imports_rclpy_is_one_line(tmp_path, capsys, monkeypatch):
    # the import moved before the header and out of the command's stop handling: a traceback (review)
    import importlib.abc
    import sys

    class Stopped(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: object, target: object = None) -> None:
            if name == "rclpy":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "rclpy", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Stopped(), *sys.meta_path])
    argv = ["sim", "--realtime", "--rules-only", "--only", "CCRs_20kmh_100pct", "--out", str(tmp_path / "o")]
    assert cli_main(argv) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().startswith("tiny-node sim: interrupted; "), err
