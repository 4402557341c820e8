"""Suite runner: many closed-loop runs in parallel processes, resumable, one report.

Each (scenario, mode) pair is one run; runs go to a ``spawn`` process pool (no state shared
with the parent, onnxruntime and OpenCV on one thread each so two workers fit two cores).
Every run is a pure function of its inputs, and results are sorted by (name, mode) before
anything is written, so ``summary.json`` and the timelines are byte-identical whatever the
worker count or completion order.

A finished run leaves ``runs/<name>__<mode>.json`` (its summary and a *config hash* over the
scenario, parameters, bundle manifest, latency budget and the decision/simulation code) and
``timelines/<name>__<mode>.csv``.  A later call with the same output folder reuses runs whose
hash matches, so an interrupted suite resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import importlib
import json
import math
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiny_node.argtypes import at_least
from tiny_node.config import NodeConfig, config_from_file, make_config
from tiny_node.lockstep import budget_ms_arg, late_budget_warning
from tiny_node.model.bundle import DEFAULT_BUNDLE_DIR, manifest_digest
from tiny_node.sim.closed_loop import canonical_json, judged_by_the_undisturbed_drive, run_scenario
from tiny_node.sim.report import write_report, write_text_atomic, write_timing
from tiny_node.sim.scoring import rating_code
from tiny_node.sim.suite import SUITES
from tiny_node.sources import sources_digest

MODES = ("rules", "model")
_PKG = Path(__file__).resolve().parent.parent
# Code whose change invalidates stored runs: the decision core, the model runtime (every module of
# tiny_node/model: the tracker and the conflict brake decide too), the simulator, and the top-level
# modules they import (camera.py: the pinhole camera and mount the renderer, bundle and tracker share).
_CODE_FILES = ("argtypes.py", "camera.py", "clock.py", "config.py", "decision.py", "frames.py", "lockstep.py",
               "rules.py", "sensors.py", "strict_yaml.py", "watchdog.py")
# Libraries whose output reaches a run's result: the renderer's pixels, the model's scores and token ids.
_LIBRARIES = ("numpy", "onnxruntime", "cv2", "tokenizers")


class SuiteError(RuntimeError):
    """The suite could not finish (a worker process died); the runs that finished are stored."""


@dataclass(frozen=True)
class _Task:
    scenario: Any
    mode: str
    cfg_values: dict[str, Any]
    bundle: str | None
    budget_ms: float | None
    out_dir: str
    record_dir: str | None
    storage: str
    config_hash: str

    @property
    def key(self) -> str:
        return run_key(str(self.scenario.name), self.mode)


@dataclass
class SuiteResult:
    """Summaries of every run, sorted by (name, mode), and how the suite went."""

    out_dir: Path
    runs: list[dict[str, Any]]
    wall_s: float
    reused: int = 0
    run_wall_s: dict[str, float] = field(default_factory=dict)  # key -> wall time of fresh runs
    run_cpu_s: dict[str, float] = field(default_factory=dict)  # key -> CPU time of the worker on it
    plotted: list[str] = field(default_factory=list)  # keys whose plots/<key>.png the report drew

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Runs that raised (their summary carries the traceback)."""
        return [r for r in self.runs if r.get("outcome") == "error"]


def run_key(name: str, mode: str) -> str:
    """File-name stem of a run: ``<name>__<mode>`` with path separators made safe."""
    safe = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)
    return f"{safe}__{mode}"


def _jsonable(obj: Any) -> Any:
    """Scenario (dataclasses, enums, paths, arrays) to plain data for hashing."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return _jsonable(obj.value)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return repr(obj)


def code_files() -> list[Path]:
    """The sources a run's result depends on (stored runs go stale with them)."""
    files = ([_PKG / f for f in _CODE_FILES] + sorted((_PKG / "model").glob("*.py"))
             + sorted((_PKG / "sim").glob("*.py")))
    return [p for p in files if p.is_file() and p.name not in ("runner.py", "report.py")]


def code_digest() -> str:
    """SHA-256 over :func:`code_files` and the versions of :data:`_LIBRARIES`.

    Why the versions: an upgraded onnxruntime, OpenCV or numpy can move a score or a pixel, and a
    resumed suite would otherwise reuse runs made with the old ones.
    """
    versions = " ".join(f"{name}=={importlib.import_module(name).__version__}" for name in _LIBRARIES)
    return hashlib.sha256((sources_digest(code_files(), _PKG) + " " + versions).encode()).hexdigest()


def bundle_digest(bundle: Path | None) -> str:
    """SHA-256 of the bundle's manifest (which carries the SHA-256 of each ONNX file)."""
    return "" if bundle is None else manifest_digest(bundle)


def config_hash(scenario: Any, mode: str, cfg: NodeConfig, *, bundle: Path | None,
                budget_ms: float | None, code: str) -> str:
    """Identity of a run: same hash, same result."""
    doc = {"scenario": _jsonable(scenario), "mode": mode, "cfg": dict(sorted(cfg.values.items())),
           "bundle": bundle_digest(bundle) if mode == "model" else "",
           "budget_ms": budget_ms if mode == "model" else None, "code": code, "rating": rating_code()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def name_clashes(named: Iterable[tuple[str, str]]) -> list[str]:
    """Scenarios whose names make one run file name, each group as ``a and b`` (``named``: name, as shown).

    Why by file name (:func:`run_key`), not by name: runs are stored, and summed, by it, so
    'a b' and 'a_b' would overwrite each other's results.
    """
    by_key: dict[str, list[str]] = {}
    for name, shown in named:
        by_key.setdefault(run_key(name, ""), []).append(shown)
    return sorted(" and ".join(same) for same in by_key.values() if len(same) > 1)


def _refuse_existing_bags(record: Path, keys: Iterable[str]) -> None:
    """Raise FileExistsError, before anything runs, if a run's bag is in ``record`` already.

    Why: a bag is never overwritten, so each such run would end as an error and the report
    replace the last one's results with those errors.
    """
    there = sorted(k for k in keys if (record / k).exists())
    if there:
        raise FileExistsError(f"--record {record}: {len(there)} bag(s) of this suite exist already "
                              f"({', '.join(there[:3])}{', ...' if len(there) > 3 else ''}; a run stopped "
                              "half-way leaves its bag too): record into another folder, or remove them")


def _init_worker() -> None:
    """One compute thread per worker process (the pool shares the cores); Ctrl-C is the parent's.

    SIGINT is ignored, then unblocked (a Ctrl-C while the worker imported, held since its start
    by ``stopping.children_start_without_sigint``, is dropped): a terminal's Ctrl-C reaches the whole process group, and
    each worker printed a KeyboardInterrupt traceback. The parent ends the workers (runs under way
    are lost, run again on resume).

    Imports are done up front so per-run wall times measure runs, not start-up. SIGTERM keeps
    its default (the process ends): the executor stops a broken pool's workers with it, and a
    worker that took it as an interrupt went back to the pool's queue and hung its shutdown
    (review); a run it was recording is left without its index (``mcap recover`` mends it).
    """
    from tiny_node.stopping import ignore_sigint  # here: the command's, not what makes a run (code_files)

    ignore_sigint()
    import cv2
    import onnxruntime  # noqa: F401

    import tiny_node.sim.camera
    import tiny_node.sim.sensors
    import tiny_node.sim.world  # noqa: F401
    from tiny_node.sim.scoring import band

    cv2.setNumThreads(1)
    band("CCRs", 50.0, 0.0)  # loads the rating package (pandas) once, outside any run's timing


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End the pool's worker processes at once (SIGTERM: their default, the process ends).

    ``_processes`` is the executor's own record of them; the shutdown that follows then finds
    them gone instead of waiting for their runs.
    """
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()


def _run_task(task: _Task) -> tuple[str, dict[str, Any], tuple[float, float]]:
    """Run one scenario in a worker; write its timeline and run file; (key, summary, (wall, cpu) s)."""
    out = Path(task.out_dir)
    t0, c0 = time.perf_counter(), time.process_time()  # benchmark figures; the simulation never sees them
    recorder = None
    try:
        if task.record_dir is not None:
            from tiny_node.bag import Recorder

            recorder = Recorder(Path(task.record_dir) / task.key, storage=task.storage)
        try:
            cfg, bundle = make_config(task.cfg_values), Path(task.bundle) if task.bundle else None
            if recorder is not None:
                recorder.note_settings(cfg, bundle, task.budget_ms, clock="lockstep")
            result = run_scenario(task.scenario, cfg, bundle=bundle, budget_ms=task.budget_ms,
                                  recorder=recorder, mode=task.mode)
            if recorder is not None:
                recorder.note_complete()
        finally:
            if recorder is not None:
                recorder.close()
        summary = json.loads(canonical_json(result.summary))  # as stored: a reused run reads the same
        write_text_atomic(out / "timelines" / f"{task.key}.csv", result.timeline_csv())
    except Exception as exc:  # one broken run must not lose the suite; it is reported as an error
        summary = {"name": str(task.scenario.name), "mode": task.mode, "outcome": "error",
                   "passed": False, "error": f"{type(exc).__name__}: {exc}",
                   "traceback": traceback.format_exc(), "expect": str(getattr(task.scenario, "expect", "")),
                   "protocol": str(getattr(task.scenario, "protocol", "") or ""),
                   "ego_speed_kmh": float(getattr(task.scenario, "ego_speed_kmh", math.nan))}
    wall = (time.perf_counter() - t0, time.process_time() - c0)
    if summary.get("outcome") != "error":
        write_text_atomic(out / "runs" / f"{task.key}.json",
                      canonical_json({"config_hash": task.config_hash, "summary": summary}))
    return task.key, summary, wall


def _stored(out_dir: Path, key: str, chash: str) -> dict[str, Any] | None:
    """A previous run's summary if its hash matches and its timeline exists."""
    run_file, timeline = out_dir / "runs" / f"{key}.json", out_dir / "timelines" / f"{key}.csv"
    if not (run_file.is_file() and timeline.is_file()):
        return None
    try:
        doc = json.loads(run_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # a torn file from an interrupted run: run it again
    if doc.get("config_hash") != chash:
        return None
    summary: dict[str, Any] = doc["summary"]
    return summary


_Done = tuple[str, dict[str, Any], tuple[float, float]]


def _progress(it: Iterator[_Done], total: int, initial: int, enabled: bool) -> Iterator[_Done]:
    """Wrap results in a tqdm bar (on stderr; off when not a terminal unless forced)."""
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, unit="run", desc="sim", disable=not enabled, smoothing=0.1)
    try:
        for item in it:
            bar.set_postfix_str(item[0][-40:], refresh=False)
            bar.update(1)
            yield item
    finally:
        bar.close()


def run_suite(
    scenarios: Sequence[Any],
    cfg: NodeConfig,
    *,
    bundle: Path | None,
    out_dir: Path,
    workers: int = 2,
    modes: Iterable[str] = MODES,
    record: Path | None = None,
    storage: str = "mcap",
    budget_ms: float | None = None,
    plots: str = "auto",
    resume: bool = True,
    progress: bool = True,
) -> SuiteResult:
    """Run every scenario in every mode (``rules``: rules only; ``model``: model + rules).

    Writes the output folder (see :mod:`tiny_node.sim.report`) and returns the summaries.
    ``record`` writes one bag per run under that folder (such runs are never reused).
    """
    modes = tuple(modes)
    for m in modes:
        if m not in MODES:
            raise ValueError(f"unknown mode {m!r} (known: {', '.join(MODES)})")
    if "model" in modes and bundle is None:
        raise ValueError("mode 'model' needs a model bundle")
    dupes = name_clashes((str(sc.name), repr(str(sc.name))) for sc in scenarios)
    if dupes:
        raise ValueError(f"scenario names must be unique in a suite (as file names); repeated: {'; '.join(dupes)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for sub in ("runs", "timelines"):
        (out_dir / sub).mkdir(exist_ok=True)
    if record is not None:
        record.mkdir(parents=True, exist_ok=True)
    code = code_digest()
    t0 = time.perf_counter()
    done: dict[str, dict[str, Any]] = {}
    tasks: list[_Task] = []
    for sc in scenarios:
        for mode in modes:
            chash = config_hash(sc, mode, cfg, bundle=bundle, budget_ms=budget_ms, code=code)
            task = _Task(sc, mode, dict(cfg.values), str(bundle) if mode == "model" and bundle else None,
                         budget_ms if mode == "model" else None, str(out_dir),
                         str(record) if record is not None else None, storage, chash)
            stored = _stored(out_dir, task.key, chash) if resume and record is None else None
            if stored is not None:
                done[task.key] = stored
            else:
                tasks.append(task)
    if record is not None:
        _refuse_existing_bags(record, [t.key for t in tasks])
    reused = len(done)
    # Longest first, so the last run to finish is a short one (better use of the workers).
    tasks.sort(key=lambda t: (-float(getattr(t.scenario, "duration_s", 0.0)), t.key))
    walls: dict[str, float] = {}
    cpus: dict[str, float] = {}
    total = reused + len(tasks)

    def finish(mapper: Any) -> SuiteResult:
        runs = judged_by_the_undisturbed_drive(
            [done[k] for k in sorted(done, key=lambda k: (done[k]["name"], done[k]["mode"]))])
        result = SuiteResult(out_dir, runs, 0.0, reused, walls, cpus)
        write_report(result, plots=plots, mapper=mapper)
        result.wall_s = time.perf_counter() - t0
        write_timing(result)
        return result

    if workers <= 1 or len(tasks) <= 1:
        results: Iterator[_Done] = map(_run_task, tasks)
        for key, summary, (wall, cpu) in _progress(results, total, reused, progress):
            done[key], walls[key], cpus[key] = summary, wall, cpu
        return finish(map)
    # concurrent.futures, not multiprocessing.Pool: a worker killed outright (the OOM killer, a
    # SIGKILL) breaks the executor and every pending result raises; a Pool replaced the worker,
    # lost its run, and the suite waited for it for ever.
    from tiny_node.stopping import children_start_without_sigint  # the command's (code_files)

    pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker)

    def started_map(fn: Any, *items: Any) -> Iterator[Any]:
        """``pool.map``, which starts any worker not yet running (a run finished before all were)."""
        with children_start_without_sigint():
            return pool.map(fn, *items)

    try:
        with children_start_without_sigint():  # the workers start on submit
            futures = [pool.submit(_run_task, t) for t in tasks]
        for key, summary, (wall, cpu) in _progress((f.result() for f in as_completed(futures)),
                                                   total, reused, progress):
            done[key], walls[key], cpus[key] = summary, wall, cpu
        return finish(started_map)  # the plots use the workers too
    except KeyboardInterrupt:
        # Ctrl-C (the workers ignore it) or SIGTERM: the runs under way are dropped, run again on
        # resume. Waited for, they delayed the stop by a run each, and a second Ctrl-C meanwhile
        # left the executor's threads and the workers waiting on one another for ever (review).
        _stop_workers(pool)
        raise
    except BrokenProcessPool as exc:
        left = sorted(t.key for t in tasks if t.key not in done)
        raise SuiteError(
            f"a simulation worker process died (killed by a signal: out of memory?) with {len(left)} run(s) "
            f"unfinished ({', '.join(left[:5])}{', ...' if len(left) > 5 else ''}); the {len(done)} finished "
            f"are stored in {out_dir / 'runs'}, and the same command resumes from them"
            + (f" (not with --record: remove the bags in {record} or choose another folder; an interrupted "
               "run's mcap is left without its index, `mcap recover` mends it)" if record is not None else "")
            + (" (fewer --workers use less memory)" if workers > 1 else "")) from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --- real time: the node over DDS ----------------------------------------------------------------
def run_suite_realtime(
    scenarios: Sequence[Any],
    *,
    bundle: Path | None,
    out_dir: Path,
    modes: Iterable[str] = MODES,
    params_file: Path | None = None,
    record: Path | None = None,
    storage: str = "mcap",
    plots: str = "auto",
    gap_s: float = 0.5,
    env: dict[str, str] | None = None,
) -> SuiteResult:
    """Stream each scenario to ``tiny-node run`` over DDS in real time; closed loop on ``brake``.

    One node process per mode (``model_bundle`` empty for ``rules``); scenarios run one after
    another on it, each after a lifecycle restart of the node (deactivate, cleanup, configure,
    activate) and ``gap_s`` to settle: a node left active between drives decides through the
    pause (camera timeout: a fail-safe brake, then its hold) and keeps its tracks, so the next
    drive would start braking.  The same world, sensors and report as lockstep; decisions come from the node
    (its real latency), so these results are not expected to be byte-identical.  ``env`` is a
    ROS environment already applied to this process (tests); by default a private graph is made.
    """
    from tiny_node.dds import isolated_ros_env
    from tiny_node.sim.closed_loop import DdsPort, drive, summarise, timeline_csv
    from tiny_node.tools.feeder import Feeder
    from tiny_node.tools.nodeproc import NodeProcess

    modes = tuple(modes)
    if "model" in modes and bundle is None:
        raise ValueError("mode 'model' needs a model bundle")
    cfg = config_from_file(params_file)  # what the node reads: recorded with each bag
    if record is not None:
        _refuse_existing_bags(record, [run_key(str(sc.name), mode) for mode in modes for sc in scenarios])
    for sub in ("runs", "timelines"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    if env is None:
        env = isolated_ros_env()
        os.environ.update(env)  # the feeder's rclpy context lives in this process
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    walls: dict[str, float] = {}
    try:
        for mode in modes:
            params: dict[str, object] = {}
            if mode == "model" and bundle is not None:
                params["model_bundle"] = str(bundle)
            elif params_file is not None:
                params["model_bundle"] = "''"  # rules only, whatever the params file says (YAML '')
            node = NodeProcess(env, params=params, params_file=params_file,
                               log_path=out_dir / f"node_{mode}.log").start()
            feeder: Feeder | None = None
            try:  # from here on the node is stopped whatever happens (a stop while the feeder starts too)
                feeder = Feeder()
                if not feeder.wait_for_node(60.0, alive=node.alive):
                    raise RuntimeError(f"the node did not come up ({mode}); its log:\n{node.output()}")
                for i, sc in enumerate(_progress_list(scenarios, f"realtime {mode}")):
                    if i:
                        feeder.restart_node()
                        time.sleep(gap_s)
                    key = run_key(str(sc.name), mode)
                    recorder = None
                    if record is not None:
                        from tiny_node.bag import Recorder

                        recorder = Recorder(record / key, storage=storage)
                    started = time.perf_counter()
                    try:
                        if recorder is not None:
                            recorder.note_settings(cfg, bundle if mode == "model" else None, None, clock="realtime")
                        port = DdsPort(feeder, recorder=recorder)
                        trace = drive(sc, port, recorder=recorder)
                        if recorder is not None:
                            recorder.note_complete()
                    finally:
                        if recorder is not None:
                            recorder.close()
                    walls[key] = time.perf_counter() - started
                    summary = json.loads(canonical_json(summarise(
                        sc, mode, trace, decisions=port.decisions(), stats=port.stats(), extra={"realtime": True})))
                    write_text_atomic(out_dir / "timelines" / f"{key}.csv", timeline_csv(trace.rows))
                    # no config hash: a real-time drive is never reused (its decisions are the node's, timed)
                    write_text_atomic(out_dir / "runs" / f"{key}.json",
                                  canonical_json({"config_hash": None, "summary": summary}))
                    runs.append(summary)
            finally:  # the node first: a second Ctrl-C during the feeder's close must not leave it running
                try:
                    code = node.stop()
                finally:
                    if feeder is not None:
                        feeder.close()
            if code not in (0, -2, 130):
                print(f"warning: node ({mode}) exited with code {code}; see {out_dir / f'node_{mode}.log'}")
    except BaseException:
        # A drive that fails (the node died, a lifecycle restart refused) ends the suite; the drives
        # that finished keep their report rather than going with the exception.
        if runs:
            print(f"sim: stopped after {len(runs)} drive(s); their report is in {out_dir}", file=sys.stderr)
            _realtime_report(out_dir, runs, walls, plots, t0)
        raise
    return _realtime_report(out_dir, runs, walls, plots, t0)


def _realtime_report(out_dir: Path, runs: list[dict[str, Any]], walls: dict[str, float], plots: str,
                     t0: float) -> SuiteResult:
    runs = judged_by_the_undisturbed_drive(sorted(runs, key=lambda r: (r["name"], r["mode"])))
    result = SuiteResult(out_dir, runs, 0.0, 0, walls)
    write_report(result, plots=plots)
    result.wall_s = time.perf_counter() - t0
    write_timing(result)
    return result


def _progress_list(items: Sequence[Any], desc: str) -> Iterator[Any]:
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, unit="run")


# --- `tiny-node sim` -----------------------------------------------------------------------------
def add_sim_arguments(p: Any) -> None:
    """The options of ``tiny-node sim`` (an ``argparse`` parser)."""
    p.add_argument("--suite", choices=SUITES,
                   help="built-in scenarios (default: smoke, unless --scenario is given; with --only alone, "
                        "every built-in drive, tune's too)")
    p.add_argument("--scenario", action="append", default=[], metavar="FILE",
                   help="a scenario YAML file (repeatable; added to --suite if both are given)")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="keep scenarios whose name matches this glob (repeatable), of --suite if given")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model", metavar="BUNDLE",
                       help="model bundle directory; 'default' = the shipped model, 'test' = the generated "
                       "fast test bundle (default: the params file's model_bundle, else the shipped model "
                       "if installed, else rules only)")
    model.add_argument("--rules-only", action="store_true", help="no model")
    p.add_argument("--compare", action="store_true", help="run rules-only and model+rules, side by side")
    p.add_argument("--budget-ms", type=budget_ms_arg, help="model latency budget in lockstep (default: the bundle's)")
    p.add_argument("--params-file", help="node parameters (ROS params YAML), default: built-in defaults")
    p.add_argument("--workers", type=at_least(1), default=2, help="parallel processes (lockstep; at least 1)")
    p.add_argument("--seed", type=at_least(0), help="override every scenario's seed (an integer >= 0)")
    p.add_argument("--out", default="out/sim", help="output folder")
    p.add_argument("--plots", choices=("auto", "all", "none"), default="auto",
                   help="auto: failed runs and one per protocol")
    p.add_argument("--record", metavar="DIR", help="write one rosbag2 per run into DIR")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--no-resume", action="store_true", help="rerun runs already in --out")
    p.add_argument("--realtime", action="store_true",
                   help="through the node process over DDS in real time (closed loop on its brake)")


def _scenarios(args: Any) -> list[Any]:
    import fnmatch
    import sys

    from tiny_node.sim.scenario import ScenarioError, load_scenario, with_seed

    files = [(load_scenario(Path(f)), str(f)) for f in args.scenario]  # a bad file fails before any work
    chosen: list[tuple[Any, str]] = []
    if args.suite or not files:
        from tiny_node.sim.suite import suite

        # --only alone picks from every built-in drive: from smoke only, `--only 'CCRs_20*'` found nothing
        names = [args.suite] if args.suite else ["all", "tune"] if args.only and not files else ["smoke"]
        chosen += [(s, f"suite {n}") for n in names for s in suite(n)]
    chosen += files
    if args.only:
        unmatched = [pat for pat in args.only if not any(fnmatch.fnmatchcase(s.name, pat) for s, _ in chosen)]
        chosen = [(s, o) for s, o in chosen if any(fnmatch.fnmatchcase(s.name, pat) for pat in args.only)]
        among = f"suite {args.suite}" if args.suite else "the built-in suites" if not files else "the files given"
        if unmatched and not chosen:
            raise ScenarioError(f"no scenario of {among} matches --only {' '.join(unmatched)}"
                                + (" (without --suite, --only picks from every built-in drive)" if args.suite else ""))
        for pat in unmatched:
            print(f"tiny-node sim: warning: --only {pat} matches no scenario of {among}", file=sys.stderr)
    dupes = name_clashes((str(s.name), f"{str(s.name)!r} from {origin}") for s, origin in chosen)
    if dupes:
        raise ScenarioError("scenario names must be unique in a run (as file names); " + "; ".join(dupes))
    if args.seed is not None:
        return [with_seed(s, args.seed) for s, _ in chosen]
    return [s for s, _ in chosen]


DEFAULT_MODEL_DIR = DEFAULT_BUNDLE_DIR  # the bundle the package ships (model factory)


def _bundle(args: Any, cfg: NodeConfig, out_dir: Path) -> Path | None:
    """--model; else the params file's model_bundle; else the shipped default model; else None."""
    if args.rules_only:
        return None
    if args.model is None and not cfg.str("model_bundle"):
        return DEFAULT_MODEL_DIR if (DEFAULT_MODEL_DIR / "manifest.yaml").is_file() else None
    # the params file's model_bundle means what it means to the node ("default" = the shipped one)
    value, what = (args.model, "--model") if args.model is not None else (cfg.str("model_bundle"), "model_bundle")
    if value == "default":
        if not (DEFAULT_MODEL_DIR / "manifest.yaml").is_file():
            raise FileNotFoundError(f"{what} default: no default model at {DEFAULT_MODEL_DIR} "
                                    "(build it: tiny-node model build --install)")
        return DEFAULT_MODEL_DIR
    if value == "test" and args.model is not None:
        from tiny_node.model.testmodels import make_fast_bundle

        return make_fast_bundle(out_dir / "bundles" / "test-fast")
    path = Path(value).expanduser()
    if not (path / "manifest.yaml").is_file():
        raise FileNotFoundError(f"{what} {path}: no manifest.yaml there (not a model bundle)")
    return path


def _folders_refused(folders: Iterable[tuple[str, Path | None]]) -> bool:
    """Whether a folder (option, path) cannot take the suite's files, after one line naming it; made if missing.

    Why a file is made there (:func:`write_problem`): an existing folder root cannot write in
    (``/sys/kernel``) passed ``os.access``.  Asked before the header and before any file is made:
    such a folder ended the command in an OSError traceback after it said the suite was starting,
    and a bad ``--record`` left ``--out``'s ``runs/`` and ``timelines/`` made and empty.
    """
    from tiny_node.writable import folder_problem  # here: a module every run imports goes into the runs' digest

    for option, folder in folders:
        if folder is not None and (problem := folder_problem(folder)):
            print(f"tiny-node sim: error: cannot {problem[0]} {option} folder {folder}: {problem[1]}", file=sys.stderr)
            return True
    return False


def _kept_runs(args: Any) -> str:
    """Where a suite stopped by an error left its finished runs, and what running it again does."""
    runs = Path(args.out) / "runs"
    if args.realtime:
        return f"the finished drives are kept in {runs} (a real-time drive is run again, never reused)"
    if args.record:
        return (f"the finished runs are kept in {runs} and their bags in {args.record} (bags are never "
                "overwritten: to run again, remove them or choose another --record folder)")
    return f"the finished runs are kept in {runs}, and the same command resumes from them"


def sim_command(args: Any) -> int:
    """``tiny-node sim``: run scenarios, write the report, print the table; 0 unless a run errored."""
    import sys

    from tiny_node.config import ConfigError, config_from_file
    from tiny_node.sim.scenario import ScenarioError

    out_dir = Path(args.out)
    record = Path(args.record) if args.record else None
    folders = (("--out", out_dir), ("--record", record))
    # checked before the header, once the inputs are (a bad bundle makes no --out); with --model test before
    # that too, since its bundle is made in --out
    test_bundle = args.model == "test"
    try:
        scenarios = _scenarios(args)
        cfg = config_from_file(args.params_file)
        if test_bundle and _folders_refused(folders):
            return 2
        bundle = _bundle(args, cfg, out_dir)
    except (ScenarioError, ConfigError, OSError) as exc:  # OSError: FileNotFoundError, or making the test bundle
        print(f"tiny-node sim: {exc}", file=sys.stderr)
        return 2
    if bundle is not None:
        from tiny_node.model.bundle import BundleError, load_bundle
        from tiny_node.model.runtime import load_runtime

        try:  # once, up front: a bundle the node would refuse failed every run of the suite, one by one;
            # its sessions and a first run too (a graph without present.* outputs, another image size)
            loaded = load_bundle(bundle)
            load_runtime(loaded, 1).warm_up(1)
        except Exception as exc:  # whatever its first run raises (onnxruntime's own types): no run could use it
            what = "" if isinstance(exc, BundleError) else f"{type(exc).__name__}: "
            print(f"tiny-node sim: model {bundle}: {what}{exc}", file=sys.stderr)
            return 2
        budget, whose = ((loaded.latency_budget_ms, "its latency_budget_ms") if args.budget_ms is None
                         else (args.budget_ms, "--budget-ms"))
        if not args.realtime and (late := late_budget_warning(budget, whose, cfg)):
            print(f"tiny-node sim: warning: {late}", file=sys.stderr)
    if not scenarios:
        print("tiny-node sim: no scenario selected", file=sys.stderr)
        return 2
    if args.compare and bundle is None:
        print("tiny-node sim: " + ("--compare runs rules only beside the model: it needs a model, not --rules-only"
                                   if args.rules_only else "--compare needs --model BUNDLE (or --model test)"),
              file=sys.stderr)
        return 2
    if args.budget_ms is not None and (bundle is None or args.realtime):  # else dropped without a word
        print(f"tiny-node sim: warning: --budget-ms {args.budget_ms:g} not used: " + (
            "in real time the node's model takes the time it takes" if args.realtime
            else "no model runs (rules only)"), file=sys.stderr)
    modes = ("rules", "model") if args.compare else (("model",) if bundle is not None else ("rules",))
    if not test_bundle and _folders_refused(folders):
        return 2
    if record is not None:
        try:  # before the header, which said the suite was starting
            _refuse_existing_bags(record, [run_key(str(sc.name), mode) for sc in scenarios for mode in modes])
        except FileExistsError as exc:
            print(f"tiny-node sim: {exc}", file=sys.stderr)
            return 2
    try:
        if args.realtime:  # before the header: without ROS, one line saying what to install (cli._with_ros)
            import rclpy  # noqa: F401

        print(f"sim: {len(scenarios)} scenario(s) x {', '.join(modes)}"
              + (f" (model {bundle})" if bundle is not None else "")
              + (" in real time over DDS" if args.realtime else f" in lockstep on {args.workers} worker(s)"))
        if args.realtime:
            params = Path(args.params_file) if args.params_file else None
            result = run_suite_realtime(scenarios, bundle=bundle, out_dir=out_dir, modes=modes,
                                        params_file=params, record=record, storage=args.storage,
                                        plots=args.plots)
        else:
            result = run_suite(scenarios, cfg, bundle=bundle, out_dir=out_dir, workers=args.workers,
                               modes=modes, record=record, storage=args.storage, budget_ms=args.budget_ms,
                               plots=args.plots, resume=not args.no_resume)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP raised as it by the CLI
        from tiny_node.stopping import stopped_by  # the command's, not what makes a run (code_files)

        how, status = stopped_by(exc)
        with contextlib.suppress(OSError):  # a terminal already gone (hang-up) is no error
            print(f"\ntiny-node sim: {how}; " + (
                f"the bags recorded so far are in {args.record}, an interrupted run's cut short: to run again, "
                "remove them or choose another --record folder (bags are never overwritten)" if args.record else
                "the finished drives' report is kept, and the same command runs every drive again (a real-time "
                "drive is the node's, timed: never reused)" if args.realtime else
                "the same command resumes (finished runs are kept)"), file=sys.stderr)
        return status
    except OSError as exc:
        # no errno: ours, --record into a folder with this suite's bags (refused before any run); else a
        # write that failed under way (a full disk: a traceback, and where the finished runs were unsaid)
        print(f"tiny-node sim: {exc}" if exc.errno is None else f"tiny-node sim: error: {exc}; {_kept_runs(args)}",
              file=sys.stderr)
        return 2
    except RuntimeError as exc:  # the node did not come up (--realtime): its log is in the message
        print(f"tiny-node sim: {exc}", file=sys.stderr)
        return 1
    print_result(result)
    return 1 if result.errors else 0


def print_result(result: SuiteResult) -> None:
    """The results table, the totals, the speed, and where everything went."""
    from tiny_node.sim.report import model_in_time, silent_model_warnings, totals

    # the longest name sets the column: cut at a fixed width, two look-alike drives read the same
    width = max([34, *(len(str(r["name"])) for r in result.runs)])
    print(f"\n{'scenario':<{width}} {'mode':<6} {'outcome':<17} {'impact':>7} {'band':<7} {'pts':>5} "
          f"{'brake@s':>8} {'TTC@brake':>9}")
    for r in result.runs:
        impact = f"{r.get('relative_impact_speed_kmh') or 0:.1f}" if r.get("collided") else "-"
        pts = f"{r['points']:.2f}" if r.get("points") is not None else "-"
        fb = r.get("first_brake_t_s")
        ttc = r.get("ttc_at_first_brake_s")
        print(f"{r['name']!s:<{width}} {r['mode']:<6} {r.get('outcome')!s:<17} {impact:>7} "
              f"{r.get('band') or '-'!s:<7} {pts:>5} {'-' if fb is None else f'{fb:.2f}':>8} "
              f"{'-' if ttc is None else f'{ttc:.2f}':>9}")
    for r in result.runs:
        if r.get("outcome") in ("no_target", "unresolved"):
            print(f"{r['name']} ({r['mode']}): {r.get('note')}")
    print()
    tot = totals(result.runs)
    for mode, t in tot.items():
        pts = f"{t['points']:.2f}/{t['points_max']:.0f} NCAP points, " if t["points_max"] else ""
        asked = f"; the model answered {in_time} in time" if (in_time := model_in_time(t)) else ""
        print(f"{mode}: {t['passed']}/{t['runs']} passed, {pts}{t['collisions']} collision(s), "
              f"{t['false_activations']}/{t['benign_runs']} false activation(s), {t['errors']} error(s){asked}")
    for line in silent_model_warnings(tot):
        print(line)
    sim_s = sum(float(r.get("sim_time_s") or 0.0) for r in result.runs
                if run_key(str(r["name"]), str(r["mode"])) in result.run_wall_s)
    busy, cpu = sum(result.run_wall_s.values()), sum(result.run_cpu_s.values())
    realtime = any(r.get("realtime") for r in result.runs)
    speed = f", {sim_s / busy:.1f}x real time per run" if busy > 0 and not realtime else ""
    speed += f" ({sim_s / cpu:.1f}x per CPU second)" if cpu > 0 else ""
    print(f"\n{len(result.runs)} run(s) ({result.reused} reused) in {result.wall_s:.1f} s wall{speed}")
    for r in result.errors:
        print(f"error: {r['name']} ({r['mode']}): {r.get('error')}")
    # only when this report drew plots: a folder left by an earlier suite is not this run's
    print(f"report: {result.out_dir / 'report.md'}  summary: {result.out_dir / 'summary.json'}"
          + (f"  plots: {result.out_dir / 'plots'}" if result.plotted else ""))
