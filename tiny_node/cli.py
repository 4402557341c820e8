"""``tiny-node``: run the node, the demo, the benchmark, and make test model bundles."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from tiny_node.argtypes import positive
from tiny_node.stopping import Terminated as _Terminated
from tiny_node.stopping import stopped_by as _stopped_by

#: the ROS 2 Python packages a DDS command imports (rclpy and the message packages beside it)
ROS_MODULES = frozenset({"rclpy", "rosidl_runtime_py", "rosidl_parser", "std_msgs", "sensor_msgs", "nav_msgs",
                         "geometry_msgs", "diagnostic_msgs", "lifecycle_msgs", "rcl_interfaces",
                         "builtin_interfaces", "rosgraph_msgs", "ament_index_python"})


def _with_ros(cmd: str, call: Callable[[], int]) -> int:
    """``call()``; without ROS 2's Python packages, one line saying what to install (exit 2).

    Why: rclpy is not in install_requires (a ROS distro provides it), and a command over DDS
    ended in a traceback; the lockstep commands (sim, replay, model) need none of it.
    """
    try:
        return call()
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ROS_MODULES:
            raise
        print(f"tiny-node {cmd}: needs ROS 2's Python packages ({exc}): pip install 'tiny_node[ros]', or source "
              "a ROS 2 install (README: Running the node, *Without a ROS install*)", file=sys.stderr)
        return 2


def _cmd_run(rest: list[str]) -> int:
    from tiny_node.ros.start import main as start_main

    return start_main(["tiny-node run", *rest])


def _cmd_lifecycle(args: argparse.Namespace) -> int:
    from tiny_node.tools.lifecycle import lifecycle_command

    return lifecycle_command(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from tiny_node.demo import run_demo

    out = _output_folder("demo", args.out)
    if out is None:
        return 2
    return _stopping_its_node("demo", lambda: run_demo(out_dir=out, duration_s=args.duration,
                                                       speed_kmh=args.speed))


def _cmd_bench(args: argparse.Namespace) -> int:
    from tiny_node.bench import run_bench

    out = _output_folder("bench", args.out)
    if out is None:
        return 2
    return _stopping_its_node("bench", lambda: run_bench(out_dir=out, frames=args.frames, cases=args.cases))


def _output_folder(command: str, path: str) -> Path | None:
    """``path``, made if missing; None after a one-line error if it cannot be made or written in.

    Why a file is made there: an existing folder without write permission (or on a read-only
    mount) passed, and the run ended in a traceback from opening the node's log in it.
    """
    from tiny_node.writable import folder_problem

    if problem := folder_problem(Path(path)):
        print(f"tiny-node {command}: error: cannot {problem[0]} output folder {path}: {problem[1]}", file=sys.stderr)
        return None
    return Path(path)


def _stopping_its_node(name: str, run: Callable[[], int]) -> int:
    """Run a command that starts a node process; Ctrl-C or SIGTERM: one line, status 130 / 143.

    Why: the node runs in its own session (a terminal's Ctrl-C does not reach it), so only the
    command's ``finally`` stops it; SIGTERM's default action skipped that and left the node and
    its model worker running for good.
    """
    restore = _sigterm_as_interrupt()
    try:
        return run()
    except KeyboardInterrupt as exc:
        how, status = _stopped_by(exc)
        _say_stopped(f"\ntiny-node {name}: {how} (a node it started is stopped)")
        return status
    finally:
        restore()


def _say_stopped(line: str) -> None:
    """The line a stopped command ends with, on stderr; a terminal already gone is no error.

    Why: after a hang-up the print to the closed terminal failed (EIO), and its exception took
    the place of the status (1 for 129; review).
    """
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr)


def _speed_kmh(text: str) -> float:
    """An argparse type: a speed the node takes as plausible (> 0, at most 360 km/h).

    Why: faster, every frame was the fail-safe "odom: implausible speed" and the demo said nothing.
    """
    from tiny_node.sensors import MAX_PLAUSIBLE_SPEED_MPS

    value = positive(float)(text)
    if value > MAX_PLAUSIBLE_SPEED_MPS * 3.6:
        raise argparse.ArgumentTypeError(f"at most {MAX_PLAUSIBLE_SPEED_MPS * 3.6:g} km/h (the node's plausible "
                                         f"odometry), got {text}")
    return value


def _cmd_sim(args: argparse.Namespace) -> int:
    from tiny_node.sim.runner import sim_command

    # --realtime runs its node in a session of its own: SIGTERM / SIGHUP must unwind to its stop
    restore = _sigterm_as_interrupt()
    try:
        return sim_command(args)
    finally:
        restore()


def _cmd_hil(args: argparse.Namespace) -> int:
    from tiny_node.hil.cli import run_hil

    return _stopping_its_node("hil", lambda: int(run_hil(args, args.hil_argv)))


def _cmd_model(args: argparse.Namespace) -> int:
    """A factory command; Ctrl-C or SIGTERM: one line, status 130 / 143, not a traceback.

    Why SIGTERM too: its default action skipped the ``finally`` blocks (the quantizer's temporary
    folder, the data workers' pool). A build is resumable: every product is written whole or its
    step is not recorded as finished, so the same command goes on from the finished steps.
    """
    from tiny_node.factory.cli import run

    restore = _sigterm_as_interrupt()
    try:
        return int(run(args))
    except KeyboardInterrupt as exc:
        how, status = _stopped_by(exc)
    finally:
        restore()
    # after the except block: the interrupted frames are freed, and the progress bars they held
    # print their last state now, not after this line
    then = ("; the same command resumes from the finished steps (the step cut short is redone)"
            if args.model_cmd == "build" else "")
    _say_stopped(f"\ntiny-node model {args.model_cmd}: {how}{then}")
    return status


def _cmd_bundles(args: argparse.Namespace) -> int:
    from tiny_node.model.testmodels import occupied, write_test_bundles

    refusal = None if args.force else occupied(Path(args.dir))
    if refusal:  # a user's own bundle there would be overwritten
        print(f"tiny-node make-test-bundles: error: {refusal}", file=sys.stderr)
        return 2
    try:
        written = write_test_bundles(Path(args.dir))
    except OSError as exc:  # a file in the way, no permission: one line, not a traceback
        print(f"tiny-node make-test-bundles: error: {exc}", file=sys.stderr)
        return 2
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def _file_identity(path: Path) -> tuple[int, int, int] | None:
    """(device, inode, mtime in ns) of ``path``, None if it does not exist.

    Why not its mtime against the run's start: the file system stamps with a coarse clock (a
    jiffy), so outputs swapped in within milliseconds of the start read as older than it.
    """
    try:
        st = path.stat()
    except OSError:  # none there (or --out is a file: replay says so)
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _bag_name(bag: Path) -> str:
    """The bag's name for its default output folder: its folder's, or a storage file's stem.

    Why: named after the path given, every bag given as ``BAG/metadata.yaml`` replayed into
    ``out/replay/metadata.yaml``, each replacing the last one's outputs.
    """
    from tiny_node.bag.topics import storage_file

    path = bag.resolve()
    if path.name == "metadata.yaml":
        return path.parent.name
    kind = storage_file(path)
    if kind is None:
        return path.name
    return (path.with_suffix("") if kind[1] else path).stem


def _cmd_replay(args: argparse.Namespace) -> int:
    """Replay a bag; bad input is a one-line error and exit status 2, never a traceback."""
    from tiny_node.bag import BagError, replay
    from tiny_node.bag.replay import namespace_problem
    from tiny_node.config import ConfigError, config_from_file
    from tiny_node.model.bundle import resolve_bundle_dir

    if why := namespace_problem(args.namespace):  # else rclpy's traceback once the replay had begun
        print(f"tiny-node replay: error: --namespace {args.namespace!r}: {why}", file=sys.stderr)
        return 2
    from tiny_node.hil.cli import bag_topics

    topics = bag_topics(args)
    out = Path(args.out) if args.out else Path("out/replay") / _bag_name(Path(args.bag))
    summary = out / "summary.json"
    before = _file_identity(summary)  # a previous run's, if any
    progress = _progress_printer()
    restore = _sigterm_as_interrupt()
    try:
        cfg = config_from_file(args.params_file)
        bundle: Path | None = None  # "default" = the shipped bundle, as for the node
        if args.model:
            bundle = resolve_bundle_dir(args.model)
        elif not args.rules_only:
            bundle = resolve_bundle_dir(cfg.str("model_bundle"))
        result = replay(Path(args.bag), out_dir=out, cfg=cfg, bundle=bundle, topics=topics or None,
                        realtime=args.realtime, budget_ms=args.budget_ms, storage=args.storage,
                        namespace=args.namespace, wait_s=args.wait, progress=progress,
                        plot=not args.no_plot)
    except (BagError, ConfigError, OSError) as exc:
        # a new line only to end the progress display (an error before it: none, no blank line)
        print(f"{progress.end() if progress else ''}tiny-node replay: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        how, status = _stopped_by(exc)
        # the stop may come after the outputs were swapped in (the last few ms of a run)
        done = summary.is_file() and _file_identity(summary) != before
        what = ("this run's outputs were complete and are in place" if done
                else "partial output removed; the output folder is as it was")
        _say_stopped(f"{progress.end() if progress else ''}tiny-node replay: {how} ({what})")
        return status
    finally:
        restore()
    s = result.summary
    gaps = s["input"].get("log_gaps") or []
    span = (f"{s['input']['played_s']:.1f} s played; log time spans {s['input']['duration_s']:.1f} s with "
            f"{len(gaps)} gap(s) over 60 s" if gaps else f"{s['input']['duration_s']:.1f} s")
    print(f"\n{s['mode']} replay of {s['input']['bag']} ({span}, model: {s['model']})")
    print("topics: " + ", ".join(f"{role}={name}" for role, name in result.topics.items()))
    first = s["first_brake"]
    timeouts = s.get("camera_timeout_decisions") or 0
    print(f"frames {s['frames']}, decisions {s['decisions']}"
          + (f" ({timeouts} while the camera was out)" if timeouts else "") + f", brakes {s['brakes']}, "
          f"by source {s['by_source']}, bad frames {len(s['bad_frames'])}, "
          f"deadline misses {s['deadline_misses']}, first brake "
          + (f"at {first['t_s']:.3f} s ({first['reason']})" if first else "none"))
    for warning in s["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    speed = s["timing"]["speed_x_realtime"]
    pace = f"{speed}x real time" if speed is not None else f"the bag's {s['input']['played_s']:.2f} s in real time"
    print(f"{s['timing']['wall_s']:.2f} s wall, {pace}")
    print(f"output: {result.bag} (bag), {result.summary_path}"
          + (f", {result.plot_path}" if result.plot_path else ""))
    return 0


def _sigterm_as_interrupt() -> Callable[[], None]:
    """Make SIGTERM and SIGHUP raise :class:`_Terminated` in the main thread; returns what restores them.

    SIGHUP only where it would end the process (not under ``nohup``, which ignores it). Why: the
    demo, bench, hil and realtime sim run their node in a session of its own, which only this
    clean-up stops; a closed terminal ended the command at once and left the node and its model
    worker running, adopted by init (review).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Terminated(signum)

    old = {signal.SIGTERM: signal.signal(signal.SIGTERM, on_signal)}
    if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
        old[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_signal)

    def restore() -> None:
        for signum, handler in old.items():
            signal.signal(signum, handler)
    return restore


class _Progress:
    """A one-line progress display on a terminal, rewritten in place (no newline of its own)."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, done: float, t: float) -> None:
        print(f"\rreplaying {done * 100:5.1f}%  t={t:8.2f} s", end="", file=sys.stderr, flush=True)
        self.shown = True

    def end(self) -> str:
        """What ends the progress line before another message: a newline once it has shown."""
        return "\n" if self.shown else ""


def _progress_printer() -> _Progress | None:
    """A progress display on a terminal; nothing when output is a file or pipe."""
    return _Progress() if sys.stderr.isatty() else None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tiny-node`` and ``python -m tiny_node``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":  # everything after `run` belongs to the node (ROS args too)
        return _with_ros("run", lambda: _cmd_run(argv[1:]))
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        return _with_ros("run", lambda: _cmd_run(argv))  # `python -m tiny_node [--params-file F] [--ros-args ...]`
    try:  # the parser imports the simulator, HIL and factory modules (~0.3 s)
        args = _parser().parse_args(argv)
    except KeyboardInterrupt:  # a Ctrl-C then printed a traceback of whichever import it fell in
        _say_stopped("tiny-node: interrupted before the command started (nothing done)")
        return 130
    args.hil_argv = argv[1:] if args.cmd == "hil" else []
    handler = {"demo": _cmd_demo, "bench": _cmd_bench, "make-test-bundles": _cmd_bundles,
               "replay": _cmd_replay, "lifecycle": _cmd_lifecycle,
               "sim": _cmd_sim, "hil": _cmd_hil, "model": _cmd_model}[args.cmd]
    return _with_ros(args.cmd, lambda: handler(args))


def _parser() -> argparse.ArgumentParser:
    """The parser of every command but ``run`` (whose arguments are the node's own)."""
    parser = argparse.ArgumentParser(prog="tiny-node", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="start the node: tiny-node run --params-file config/tiny_node.yaml "
                   "[--model-bundle DIR] [--no-autostart] [--ros-args ...]")
    demo = sub.add_parser("demo", help="start the node and drive it over DDS with a built-in drive")
    demo.add_argument("--out", default="out/demo-dds", help="where the timeline and summary go "
                      "(not out/demo: that is make demo's simulator report)")
    demo.add_argument("--duration", type=positive(float), default=6.0, help="seconds of driving")
    demo.add_argument("--speed", type=_speed_kmh, default=50.0, help="initial ego speed, km/h (at most 360)")
    bench = sub.add_parser("bench", help="decision latency / deadline benchmark over DDS at 30 Hz")
    bench.add_argument("--out", default="out/bench")
    bench.add_argument("--frames", type=positive(int), default=600, help="frames per case (30 Hz)")
    # default None, not the list: run_bench skips the default +stress cases without stress-ng
    bench.add_argument("--cases", nargs="*", default=None,
                       choices=["fast", "slow", "rules", "fast+stress", "slow+stress", "rules+stress"],
                       help="cases among fast, slow, rules, fast+stress, slow+stress, rules+stress "
                       "(default: fast slow fast+stress slow+stress; the +stress ones need stress-ng)")
    sim = sub.add_parser("sim", help="closed-loop scenario suite (lockstep or over DDS) with a scored report")
    from tiny_node.sim.runner import add_sim_arguments

    add_sim_arguments(sim)
    hil = sub.add_parser("hil", help="hardware-in-the-loop: stream a scenario into the node over DDS, "
                         "inject faults, report pass/fail per fault (docs/HIL.md)")
    from tiny_node.hil.cli import add_arguments as hil_arguments

    hil_arguments(hil)
    bundles = sub.add_parser("make-test-bundles", help="write the generated test ONNX bundles")
    bundles.add_argument("dir")
    bundles.add_argument("--force", action="store_true", help="write into DIR even if it is not empty")
    from tiny_node.lockstep import budget_ms_arg

    rp = sub.add_parser("replay", help="replay a rosbag2 (mcap or sqlite3) through the decision core "
                        "(docs/BAGS.md)")
    rp.add_argument("bag", help="bag directory (metadata.yaml optional), or a .mcap / .db3 file (.zstd too)")
    from tiny_node.hil.cli import BAG_ROLES

    for role, kind in BAG_ROLES:
        rp.add_argument(f"--{role}", metavar="TOPIC", help=f"{kind} topic (default: found by type)")
    model = rp.add_mutually_exclusive_group()
    model.add_argument("--model", metavar="BUNDLE", help="model bundle directory (default: model_bundle "
                       "of the params file, else rules only)")
    model.add_argument("--rules-only", action="store_true", help="no model, even if the params file names one")
    rp.add_argument("--params-file", metavar="F", help="node parameters (ROS params YAML)")
    rp.add_argument("--out", metavar="DIR", help="output folder (default out/replay/<bag name>)")
    rp.add_argument("--realtime", action="store_true", help="publish over DDS with /clock to a running node "
                    "(use_sim_time:=true) and record its decisions")
    rp.add_argument("--budget-ms", type=budget_ms_arg, help="lockstep model latency (default: the bundle's budget)")
    rp.add_argument("--storage", choices=("mcap", "sqlite3"), help="output bag storage (default: the input's)")
    rp.add_argument("--no-plot", action="store_true", help="skip replay.png (saves ~1 s)")
    rp.add_argument("--namespace", default="", help="--realtime: the node's namespace")
    # > 0: at 0 the wait for the node gave up before it looked; inf waited for ever, -1 said "within -1 s"
    rp.add_argument("--wait", type=positive(float), default=30.0, help="--realtime: seconds to wait for the node")
    lc = sub.add_parser("lifecycle", help="print the node's lifecycle state, or run transitions "
                        "(configure, activate, ...): ros2 lifecycle without a ROS install")
    from tiny_node.tools.lifecycle import add_arguments as lifecycle_arguments

    lifecycle_arguments(lc)
    mdl = sub.add_parser("model", help="the model factory: tiny-node model build [--config tracked-det12 "
                         "(the shipped recipe, default)|tiny|...] (needs the 'train' extra)")
    from tiny_node.factory.cli import add_arguments as model_arguments

    model_arguments(mdl)
    return parser


if __name__ == "__main__":
    sys.exit(main())
