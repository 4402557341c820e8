"""``tiny-node hil``: stream a scenario into a node over DDS, inject faults, report pass/fail."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiny_node.argtypes import finite
from tiny_node.ros_names import namespace_problem
from tiny_node.stopping import Held, Terminated, stopped_by, stops_held

if TYPE_CHECKING:  # the source module imports rclpy: `tiny-node --help` must not need it
    from tiny_node.hil.faults import Fault
    from tiny_node.hil.harness import Interrupted
    from tiny_node.hil.record import CheckResult, RunRecord
    from tiny_node.hil.source import Stream


#: The bag topics ``--bag`` may be given (role, message type), as ``tiny-node replay`` has them.
BAG_ROLES = (("camera", "sensor_msgs/Image or CompressedImage"), ("range", "sensor_msgs/Range"),
             ("odom", "nav_msgs/Odometry"), ("imu", "sensor_msgs/Imu"))


def bag_topics(args: argparse.Namespace) -> dict[str, str]:
    """The bag topics named on the command line, by role."""
    return {role: getattr(args, role) for role, _ in BAG_ROLES if getattr(args, role, None)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``hil`` subcommand's options."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--scenario", type=Path, help="scenario YAML of the simulator (tiny_node.sim)")
    src.add_argument("--suite", help="a simulator suite, cycled (e.g. smoke, ncap)")
    src.add_argument("--bag", type=Path, help="a rosbag2 replayed in real time (open loop)")
    for role, kind in BAG_ROLES:  # a vehicle's recording has several cameras: as `tiny-node replay` takes them
        p.add_argument(f"--{role}", metavar="TOPIC", help=f"with --bag: its {kind} topic (default: found by type)")
    node = p.add_mutually_exclusive_group()
    node.add_argument("--node-cmd", help="command that starts the node (ROS args are appended); "
                      "default: the installed node (python -m tiny_node run)")
    node.add_argument("--attach", action="store_true",
                      help="use a node already running on this ROS domain (ROS_DOMAIN_ID)")
    p.add_argument("--node-pid", type=int, help="with --attach: the node's pid, for the worker faults")
    p.add_argument("--model", default=None,
                   help="model bundle for the node: a directory, 'default' (the shipped model), 'test' "
                        "(generated fast test bundle, the default), or 'none' (rules only); verified "
                        "(every file's SHA-256) before the node starts. Not with --attach")
    p.add_argument("--faults", default="all", help="'all', 'none', or a comma-separated list")
    p.add_argument("--duration", type=finite, default=0.0,
                   help="seconds of streaming at least (the fault schedule may need more)")
    p.add_argument("--out", type=Path, default=Path("out/hil"))
    p.add_argument("--netns", action="store_true",
                   help="node and harness in two network namespaces joined by a veth (needs root)")
    p.add_argument("--soak", type=finite, default=0.0, metavar="S",
                   help="soak benchmark: one node run streaming S seconds in all (a 10 s lead-in, then "
                        "whole cycles of the faults)")
    p.add_argument("--transport", choices=["raw", "compressed"],
                   help="camera transport in every run (default raw; --netns: compressed)")
    p.add_argument("--namespace", default="", help="ROS namespace of the node")
    p.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra node parameter (repeatable), e.g. --param deadline_ms:=40.0")
    p.add_argument("--lead-in", type=finite, default=6.0,
                   help="clean seconds before the first fault (one fault-free episode)")
    p.add_argument("--harness-priority", type=_priority, default=0,
                   help="SCHED_FIFO priority 1..99 of the harness process (default 0 = normal scheduling: "
                        "a FIFO harness made the node miss deadlines, see docs/RELIABILITY.md)")
    p.add_argument("--node-netns", help=argparse.SUPPRESS)  # set by --netns for the inner run


def _priority(text: str) -> int:
    """An argparse type: 0 (normal scheduling) or a SCHED_FIFO priority 1..99.

    Why: any int was taken, and one out of range reached ``sched_setscheduler`` only to be refused
    there, the run going on with normal scheduling.
    """
    value = int(text)
    if not 0 <= value <= 99:
        raise argparse.ArgumentTypeError(f"0 (normal scheduling) or a SCHED_FIFO priority 1..99, got {text}")
    return value


def _out_problem(out: Path) -> str:
    """Why the output folder cannot be made or written ('' when it can); it is made if missing.

    Why up front: a bad ``--out`` (``/dev/null/x``) ended in a traceback, after the bundles were checked.
    """
    from tiny_node.writable import folder_problem  # asked of the file system: os.access lets root pass on sysfs

    problem = folder_problem(out)
    return f"cannot {problem[0]} output folder {out}: {problem[1]}" if problem else ""


def _node_command(text: str | None) -> tuple[list[str] | None, str]:
    """``--node-cmd`` as argv (None: the default node), and why it cannot be run ('' when it can).

    Why: an unbalanced quote was shlex's traceback, a command not found a traceback from the node
    run (no report, the other node runs not run), and ``''`` silently the default node.
    """
    if text is None:
        return None, ""
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        return None, f"--node-cmd {text!r}: {exc}"
    if not argv:
        return None, f"--node-cmd {text!r} names no command (leave it out for the installed node)"
    if shutil.which(argv[0]) is None:
        return None, f"--node-cmd {text!r}: {argv[0]}: no such command (not on PATH, or not an executable file)"
    return argv, ""


def _domain(env: dict[str, str]) -> str:
    """The ROS domain as the start line names it (unset: ROS's default, 0)."""
    value = env.get("ROS_DOMAIN_ID", "")
    return f"ROS_DOMAIN_ID={value}" if value else "ROS_DOMAIN_ID unset (domain 0)"


def verify_bundle(path: Path) -> None:
    """Every file of the bundle against its manifest's SHA-256, before any node starts.

    Why: a node given a bundle that fails its checksum runs on the rules alone and says so only
    in its log; the harness passed such a run, and its report named the model as if validated.
    Raises BundleError naming the file and both hashes.
    """
    from tiny_node.model.bundle import load_bundle

    load_bundle(path)


def _params(items: list[str]) -> dict[str, object]:
    """``NAME:=VALUE`` pairs typed as the node's rcl types a ``-p`` value (``5e-3`` a double, ``null`` a string).

    Why rcl's, not PyYAML's: ``null`` went to the node as the string ``None``, and the harness's
    own reading of a value differed from the node's (review 2026-12-08).
    """
    import yaml

    from tiny_node.strict_yaml import load_ros_params, yaml_problem

    out: dict[str, object] = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"--param needs NAME:=VALUE, got {item!r}")
        if not value.strip():  # rcl: "No value"; passed on, it was the string "None"
            raise ValueError(f"--param {item!r} has no value")
        try:
            out[name] = load_ros_params(value)
        except yaml.YAMLError as exc:  # a value ROS could not read either: refused before the node starts
            raise ValueError(f"--param {item!r}: the value is not valid YAML: {yaml_problem(exc)}") from exc
    return out


def _stream_factory(args: argparse.Namespace) -> tuple[Callable[[], Stream], str]:
    """What to stream; a bad scenario file, suite or bag is an error here, before any node starts."""
    from tiny_node.hil import source

    if args.scenario is not None:
        from tiny_node.sim.scenario import load_scenario

        load_scenario(args.scenario)  # ScenarioError naming the file and field
        return (lambda: source.scenario_stream(args.scenario)), f"scenario {args.scenario}"
    if args.suite is not None:
        from tiny_node.sim.suite import suite

        if not args.suite.strip():  # an unset variable in a CI line ran the default suite
            raise ValueError(f"--suite {args.suite!r} names no suite")

        if not list(suite(args.suite)):
            raise ValueError(f"suite {args.suite!r} has no scenarios")
        return (lambda: source.suite_stream(args.suite)), f"suite {args.suite}"
    if args.bag is not None:
        topics = bag_topics(args)
        source.BagStream(args.bag, topics).close()  # BagError naming the bag (unreadable, no camera, two cameras)
        return (lambda: source.BagStream(args.bag, topics)), f"bag {args.bag}"
    if source.sim_available():
        try:
            source.suite_stream("smoke")
            return (lambda: source.suite_stream("smoke")), "suite smoke"
        except Exception as exc:  # the simulator is there but not usable: say so, use the built-in
            print(f"hil: simulator suite 'smoke' not usable ({exc}); using the built-in approach")
    return source.builtin_stream, "built-in approach (50 km/h towards a stopped car 60 m ahead)"


def _netns_outer(args: argparse.Namespace, argv: list[str]) -> int:
    """Create the two hosts, run the harness inside one of them, always clean up.

    Stopped (Ctrl-C, SIGTERM, SIGHUP), it passes that same signal on to the inner harness, which
    stops its node, writes its partial report and says so in one line, and ends with its status.
    Why the same signal: SIGTERM was passed on as SIGINT, so the line said "interrupted" while the
    command exited 143.
    """
    from tiny_node.hil import netns

    why = netns.unavailable_reason()
    if why:
        print(f"hil --netns: {why}", file=sys.stderr)
        return 2
    inner = [a for a in argv if a != "--netns"]
    args.out.mkdir(parents=True, exist_ok=True)
    domain = random.SystemRandom().randint(1, 101)
    began = time.time()
    # From the harness inside's end (or a stop passed on to it) until the namespaces are deleted, a
    # stop is noted, not raised: raised, it was lost (exit 0), said "before the run began" over a
    # finished report, or left the namespaces behind (review). It is answered after the deletion.
    late, hold = Held(), contextlib.ExitStack()
    passed_on = False  # a stop was passed on to the harness inside: a later one is the same request
    try:
        with netns.two_hosts(args.out.resolve()) as hosts:
            status, passed_on = _run_inside(args, inner, hosts, domain=domain, began=began, late=late, hold=hold)
    finally:
        hold.close()
    if late.signum is not None and not passed_on:
        how = stopped_by(late.stop())[0]
        _say(f"\ntiny-node hil: {how} ({_signame(late.signum)}) after the harness inside had ended (status "
             f"{status}){_report_note(args.out, began)}")
        return 128 + late.signum
    return status


def _run_inside(args: argparse.Namespace, inner: list[str], hosts: Any, *, domain: int, began: float, late: Held,
                hold: contextlib.ExitStack) -> tuple[int, bool]:
    """Run the harness inside ``hosts``; (the command's status, whether a stop was passed on to it)."""
    from tiny_node.hil import netns

    env = netns.ros_env(dict(os.environ), netns.NODE_ADDR, hosts.profile, domain)
    cmd = [*hosts.hil_prefix(), sys.executable, "-m", "tiny_node", "hil", *inner, "--node-netns", hosts.node_ns]
    if getattr(args, "transport", None) is None:  # given as "--transport raw" or "--transport=raw"
        cmd += ["--transport", "compressed"]
    print(f"hil --netns: harness in {hosts.hil_ns} ({netns.HIL_ADDR}), node in {hosts.node_ns} "
          f"({netns.NODE_ADDR}), UDPv4 only, ROS_DOMAIN_ID={domain}", flush=True)

    def on_signal(signum: int, frame: object) -> None:  # must unwind through two_hosts() too
        raise Terminated(signum)

    # SIGHUP only where it would end the process (not under nohup), as the command's own handler
    stops = [signal.SIGTERM] + ([signal.SIGHUP] if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN else [])
    previous = {sig: signal.signal(sig, on_signal) for sig in stops}

    def holding() -> None:
        """From here on the stops are noted in ``late``.

        The handlers above are put back first: the ``finally`` would otherwise replace the hold's with them.
        """
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        previous.clear()
        hold.enter_context(stops_held(late))

    inner_run: subprocess.Popen[bytes] | None = None
    try:
        # Held while it starts: a stop inside Popen left the harness inside running, unknown to this
        # process, which deleted the namespaces and exited 130; it later cleared the folder and wrote
        # a FAIL summary (review). Its own session: a terminal's Ctrl-C reaches only this process,
        # which passes exactly one signal on below; a second one cut the inner clean-up short.
        with stops_held() as held:
            inner_run = subprocess.Popen(cmd, env=env, start_new_session=True)
        if held.signum is not None:
            raise held.stop()
        code = inner_run.wait()
        holding()
        return _inner_status(code, hosts.hil_ns, args.out, began), False
    except KeyboardInterrupt as exc:  # the inner harness reports it: stop it the same way
        holding()  # a second Ctrl-C is the same request, acted on already
        how, status = stopped_by(exc)
        if inner_run is None:
            _say(f"\ntiny-node hil: {how} ({_signame(status - 128)}) before the harness inside "
                 f"{hosts.hil_ns} started: nothing started, no report written")
            return status, True
        inner_run.send_signal(exc.signum if isinstance(exc, Terminated) else signal.SIGINT)
        try:
            code = inner_run.wait(timeout=20)
        except subprocess.TimeoutExpired:
            inner_run.kill()
            inner_run.wait()
            _say(f"\ntiny-node hil: {how} ({_signame(status - 128)}); the harness inside {hosts.hil_ns} did "
                 f"not stop within 20 s and was killed (what it left running in {hosts.node_ns} is ended before "
                 "the namespaces are deleted): its report may be missing or partial")
            return status, True
        if 0 <= code < 128:  # it had ended before the stop reached it: its report stands, the stop is said
            _say(f"\ntiny-node hil: {how} ({_signame(status - 128)}) as the harness inside ended (status "
                 f"{code}){_report_note(args.out, began)}")
            return status, True
        return _inner_status(code, hosts.hil_ns, args.out, began), True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if inner_run is not None and inner_run.poll() is None:  # an error: end the harness (it stops its node)
            with stops_held():
                inner_run.send_signal(signal.SIGINT)
                try:
                    inner_run.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    inner_run.kill()
                    inner_run.wait()


def _report_note(out: Path, began: float) -> str:
    """What the harness inside left in ``out`` since ``began``: its report and verdict, or that it wrote none."""
    for name in ("summary.json", "soak.json"):
        path = out / name
        try:
            if path.stat().st_mtime >= began:
                verdict = json.loads(path.read_text(encoding="utf-8")).get("verdict", "?")
                return f": its report stands, verdict {verdict}, in {out}/ ({name})"
        except (OSError, ValueError, AttributeError):
            continue
    return ": it wrote no report"


def _signame(signum: int) -> str:
    """``SIGINT`` for 2; ``signal N`` for a number Python does not name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _inner_status(code: int, hil_ns: str, out: Path, began: float) -> int:
    """The harness inside's exit status as the command's: ended by a signal (negative), 128 + it, said in a line.

    Why: a stop in its first ~0.4 s (before its handlers) ended it without a word, and Popen's
    -2 / -15 came out as 254 / 241 (review). Any other signal (the OOM killer's SIGKILL) is said too.
    What it left is read, not assumed: a stop as it exited, its report written, was said to have
    found nothing started (review).
    """
    if code >= 0:
        return code
    signum = -code
    how = stopped_by(Held(signum).stop())[0] if signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) else "killed"
    _say(f"\ntiny-node hil: {how} ({_signame(signum)}): the harness inside {hil_ns} was ended by it"
         f"{_report_note(out, began)}")
    return 128 + signum


def _say(line: str) -> None:
    """A stop line on stderr; a terminal already gone (a hang-up) is no error: the status must still be the signal's."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)


def _refusal(args: argparse.Namespace, names: list[str]) -> str:
    """Why the arguments cannot work ('' when they can), checked before the harness or a node starts.

    One line, status 2, no traceback. ``args.namespace`` is made fully qualified here.
    """
    from tiny_node.hil.faults import FAULTS, make_faults
    from tiny_node.hil.harness import attached_pid_problem
    from tiny_node.hil.record import WARMUP_S
    from tiny_node.hil.soak import SOAK_END_S, SOAK_FAULTS, SOAK_LEAD_IN_S, soak_min_s, soak_plan

    if not names and args.faults != "none":  # an unset variable in a CI line ran nothing, and passed
        return f"--faults {args.faults!r} names no fault; give 'none' for a run without faults"
    if "none" in names:  # 'none' with others: which was meant?
        return f"--faults {args.faults}: none stands alone (a run without faults); it cannot be combined with faults"
    unknown = [n for n in names if n not in (*FAULTS, "all")]
    if unknown:
        return f"unknown fault(s) {', '.join(unknown)}; known: all, none, {', '.join(FAULTS)}"
    twice = sorted({n for n in names if names.count(n) > 1})
    if ("all" in names and len(names) > 1) or twice:
        # one check per fault name: a second window would overwrite the first's in the record
        return f"--faults: {'all stands alone' if not twice else 'named twice: ' + ', '.join(twice)}"
    if args.duration < 0:
        return f"--duration {args.duration:g}: a run streams a non-negative number of seconds (0: its faults' length)"
    if args.soak < 0:
        return f"--soak {args.soak:g}: a soak lasts a positive number of seconds"
    if args.soak > 0 and (odd := [n for n in names if n not in (*SOAK_FAULTS, "all")]):
        return f"--soak runs only the main node run's faults, not {', '.join(odd)}"
    if args.soak > 0 and not names:
        return "--soak needs faults to cycle through (all, or a list)"
    cycled = None if names == ["all"] else names
    if args.soak > 0 and not soak_plan(args.soak, cycled):  # it injected nothing and passed
        which = "the faults" if cycled is None else ", ".join(names)
        return (f"--soak {args.soak:g}: too short for one cycle of {which}: at least {soak_min_s(cycled)} s "
                f"(S counts the whole stream: a {SOAK_LEAD_IN_S:g} s lead-in without faults, each fault's window "
                f"and recovery, {SOAK_END_S:g} s at the end)")
    if args.lead_in < WARMUP_S:  # a fault's window would take in frames lost while DDS still matches
        return f"--lead-in {args.lead_in:g}: at least the warm-up, {WARMUP_S:g} s"
    if args.node_pid is not None and not args.attach:
        return "--node-pid names an attached node (--attach); a node the harness starts is found by itself"
    if args.bag is None and (named := bag_topics(args)):
        return " ".join(f"--{role}" for role in named) + ": a bag's topic, with --bag only"
    if args.node_pid is not None and (why := attached_pid_problem(args.node_pid)):
        return why  # its children would be signalled, its memory reported
    if args.transport and (needs := {n: f.transport for n in names if n != "all"
                                     for f in make_faults([n]) if f.transport not in ("", args.transport)}):
        return f"--transport {args.transport}: " + ", ".join(f"{n} needs the {t} transport" for n, t in needs.items())
    if args.attach and args.model is not None:  # it would be ignored, and the report would name it
        return (f"--model {args.model}: has no effect on an attached node, which runs with its own "
                "model_bundle parameter (the harness reads it and reports it)")
    if args.model is not None and not args.model.strip():  # silently the test bundle
        return f"--model {args.model!r} names no bundle (a directory, default, test or none)"
    # rcl takes only a fully qualified namespace (and the node would exit at once); as launch_ros does
    args.namespace = "/" + args.namespace.strip("/") if args.namespace.strip("/") else ""
    if args.namespace and (why := namespace_problem(args.namespace)):  # the node would start, then the harness fail
        return f"--namespace {args.namespace}: {why}"
    return _node_command(args.node_cmd)[1]


def run_hil(args: argparse.Namespace, argv: list[str]) -> int:
    """Entry point of ``tiny-node hil``; 0 when every check passed.

    Stopped (Ctrl-C, SIGTERM, SIGHUP) once it began, it writes a partial report (verdict
    ``INTERRUPTED``), says in one line how it was stopped and where that report is, and returns
    130 / 143 / 129; stopped before (its arguments, the bundle checked), it says so and writes
    nothing. Every stop is answered here: the command's own line ("a node it started is
    stopped") was wrong under ``--attach`` and said nothing of a report (review).
    """
    try:
        return _run_hil(args, argv)
    except KeyboardInterrupt as exc:  # before the run began: once it has, _run_hil reports the stop itself
        how, status = stopped_by(getattr(exc, "cause", exc))
        _say(f"\ntiny-node hil: {how} ({_signame(status - 128)}) before the run began: nothing started, "
             "no report written")
        return status


def _run_hil(args: argparse.Namespace, argv: list[str]) -> int:
    """:func:`run_hil` but for a stop before the run began."""
    if why := _out_problem(args.out):
        print(f"hil: {why}", file=sys.stderr)
        return 2
    if args.netns:
        return _netns_outer(args, argv)
    # SIGTERM (a CI timeout, systemd) unwinds like Ctrl-C (the command's _stopping_its_node): the
    # node it started and its model worker are stopped and the temporary bundles removed in the
    # finally blocks, not left running
    from tiny_node.bag.errors import BagError
    from tiny_node.dds import configure_dds, isolated_ros_env
    from tiny_node.hil import netns
    from tiny_node.hil.faults import make_faults, schedule
    from tiny_node.hil.harness import HarnessConfig, Interrupted, NodePidError, NodeUnavailableError, run_all
    from tiny_node.hil.report import clear_outputs
    from tiny_node.hil.soak import run_soak
    from tiny_node.rt import make_realtime
    from tiny_node.sim.scenario import ScenarioError

    names = [] if args.faults == "none" else [n.strip() for n in args.faults.split(",") if n.strip()]
    if why := _refusal(args, names):
        print(f"hil: {why}", file=sys.stderr)
        return 2
    model_arg = "none" if args.attach else (args.model or "test")
    try:
        node_params = _params(args.param)
    except ValueError as exc:
        print(f"hil: {exc}", file=sys.stderr)
        return 2
    if "model_bundle" in node_params:  # --model wins over it, and it would go unverified without
        print("hil: --param model_bundle: give the bundle with --model (verified before the node starts, "
              "and copied for bundle_corrupt)", file=sys.stderr)
        return 2
    if "use_sim_time" in node_params:  # main runs on the wall clock with no /clock; simtime needs it true
        print("hil: --param use_sim_time: the harness sets it per node run (false in main and bundle, which "
              "publish no /clock; true in simtime, which drives /clock)", file=sys.stderr)
        return 2
    try:
        factory, source_name = _stream_factory(args)
    except (BagError, ScenarioError, ValueError, OSError) as exc:
        print(f"hil: {exc}", file=sys.stderr)
        return 2
    given_model: Path | None = None  # a bundle directory, or "default" (the shipped one, as for the node)
    if model_arg not in ("none", "test"):
        from tiny_node.model.bundle import BundleError, existing_bundle_dir

        try:
            given_model = existing_bundle_dir(model_arg)
            verify_bundle(given_model)
        except BundleError as exc:
            print(f"hil: --model: {exc}", file=sys.stderr)
            return 2
    scheduling = make_realtime(args.harness_priority)
    out: Path = args.out
    node_env = None
    prefix = None
    if args.node_netns:
        env = dict(os.environ)  # set by the outer process: subnet discovery, UDP profile
        node_env = netns.ros_env(env, netns.HIL_ADDR, Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]),
                                 int(env["ROS_DOMAIN_ID"]))
        prefix = ["ip", "netns", "exec", args.node_netns]
    elif args.attach:
        env = dict(os.environ)
        configure_dds(env)
    else:
        env = isolated_ros_env()
    repo = str(Path(__file__).resolve().parents[2])
    for e in (env, node_env):
        if e is not None:
            e["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, e.get("PYTHONPATH", "")]))
    faults = make_faults(names) if names else []
    report = _Report(args=args, out=out, source_name=source_name, scheduling=scheduling, env=env,
                     given_model=given_model, model_arg=model_arg)
    held = Held()  # a stop as the runs end (their temporary bundle removed): said once the report is written
    tmp = Path(tempfile.mkdtemp(prefix="tiny_node_hil_"))
    try:
        if gone := clear_outputs(out):  # an earlier run's verdict must not stand beside this run's files
            print(f"hil: removed {len(gone)} file(s) of an earlier run from {out}/", flush=True)
        model: Path | None = None
        if model_arg == "test":
            from tiny_node.model.bundle import BundleError
            from tiny_node.model.testmodels import make_fast_bundle

            model = make_fast_bundle(tmp / "fast")
            try:  # generated here, but held to what a given bundle is held to
                verify_bundle(model)
            except BundleError as exc:
                print(f"hil: the generated test bundle: {exc}", file=sys.stderr)
                return 2
        elif model_arg != "none":
            model = given_model
        report.model = model
        cfg = HarnessConfig(
            out_dir=out, stream_factory=factory, model=model, env=env, node_env=node_env,
            node_cmd=_node_command(args.node_cmd)[0], node_prefix=prefix,
            attach=args.attach, node_pid=args.node_pid, namespace=args.namespace,
            transport=args.transport, lead_in_s=args.lead_in, node_params=node_params,
        )
        if args.soak > 0:
            try:
                soaked = run_soak(cfg, args.soak, None if names == ["all"] else names)
            except NodePidError as exc:
                print(f"hil: {exc}", file=sys.stderr)
                return 2
            except NodeUnavailableError as exc:
                print(exc, file=sys.stderr)
                return 1
        else:
            print(f"hil: harness {scheduling}; source {source_name}; node {report.node_name}"
                  f"{' in ' + args.node_netns if args.node_netns else ''}; {_domain(env)}", flush=True)
            main_len = schedule([f for f in faults if f.group == "main"], lead_in_s=args.lead_in) + cfg.tail_s
            try:
                records, checks = run_all(cfg, faults, clean_s=max(0.0, args.duration - main_len))
            except NodePidError as exc:  # found once the node answered: the pid it reports is another process
                print(f"hil: {exc}", file=sys.stderr)
                return 2
    except Interrupted as stop:  # the runs' record so far (run_soak wrote its own files)
        with stops_held():  # a second stop is the same request: the partial report is written whole
            return report.stopped(stop)
    except KeyboardInterrupt as exc:  # before a node run began (making the test bundle)
        with stops_held():
            return report.stopped(_before_any_run(exc, faults, args.soak > 0, out))
    finally:
        with stops_held(held):
            shutil.rmtree(tmp, ignore_errors=True)
    if args.soak > 0:
        if held.signum is not None:  # its files are whole (run_soak wrote them): the stop is said, with its status
            verdict = {0: "PASS", 1: "FAIL"}.get(soaked, "SKIP")
            return report.stopped(Interrupted(held.stop(), [], [], "after the soak ended", finished=verdict))
        return soaked
    return report.finish(records, checks, held)


#: Where a stop came that found no node run begun (making the test bundle): no node was started.
BEFORE_ANY_RUN = "before the first node run"


def _before_any_run(exc: KeyboardInterrupt, faults: list[Fault], soak: bool, out: Path) -> Interrupted:
    """A stop before any node run began: every fault not run (a soak's files written here)."""
    from tiny_node.hil.harness import Interrupted, not_run
    from tiny_node.hil.soak import SOAK_FAULTS, write_soak

    planned = [f for f in faults if f.name in SOAK_FAULTS] if soak else faults  # a soak runs the main run's only
    checks = [c for f in planned for c in not_run([f], f.group, f"not run: interrupted {BEFORE_ANY_RUN}")]
    stop = Interrupted(exc, [], checks, BEFORE_ANY_RUN)
    if soak:
        write_soak(out, None, checks, stop.how)
    return stop


@dataclass
class _Report:
    """The run's report and last lines: whole, or partial after a stop."""

    args: argparse.Namespace
    out: Path
    source_name: str
    scheduling: str
    env: dict[str, str]
    given_model: Path | None
    model_arg: str
    model: Path | None = None  # the bundle the node was started with (the generated one for 'test')

    @property
    def node_name(self) -> str:
        """The node as the start line and the report name it."""
        return "attached" if self.args.attach else (self.args.node_cmd or "tiny_node run")

    def _meta(self, records: list[RunRecord]) -> tuple[dict[str, object], str]:
        """The report's header fields, and the model as the last line names it."""
        # the bundle the node ran, as it reported it (an attached node's own; a --node-cmd may set one)
        ran = next((r.model_bundle for r in records if r.group == "main"), None)
        if self.args.attach:
            model_name = (ran or "none (rules only)") if ran is not None else "unknown (the node did not answer)"
        else:
            model_name = str(self.given_model) if self.given_model is not None else self.model_arg
            if ran is not None and ran != str(self.model or ""):
                model_name += f" (the node reports model_bundle {ran or 'empty: rules only'})"
        meta = {"source": self.source_name, "node": self.node_name, "model": model_name,
                "two_hosts": bool(self.args.node_netns), "ros_domain_id": self.env.get("ROS_DOMAIN_ID"),
                "harness_scheduling": self.scheduling}
        return meta, model_name

    def finish(self, records: list[RunRecord], checks: list[CheckResult], held: Held) -> int:
        """Write the report, print the table and the last line; the exit status.

        A stop while it is written (or as the runs ended: ``held``) waits for it, then is said in a
        last line of its own with its status: the report left PASS behind exit 143, the last line
        naming no report (review).
        """
        from tiny_node.hil.harness import Interrupted, global_failures
        from tiny_node.hil.report import console_table, exit_status, skipped_summary, write_report

        with stops_held(held):
            gf = {r.group: global_failures(r) for r in records}
            meta, model_name = self._meta(records)
            summary = write_report(self.out, records, checks, meta, gf)
            result = summary["verdict"]
            with contextlib.suppress(OSError):  # a terminal gone (a hang-up): the report is written
                print("\n" + console_table(checks))
                for group, fails in gf.items():
                    for f in fails:
                        print(f"  run {group}: {f}")
                tot = summary["totals"]
                partial = summary["not_fully_judged"]
                skipped = skipped_summary(checks)
                word = "SKIP: no fault injected, every requested fault was skipped" if result == "SKIP" else result
                print(f"\nhil: {word}: {tot['decisions']}/{tot['frames']} frames decided, "
                      f"{tot['after_deadline_node']} after deadline"
                      f"{'; not all judged: ' + ', '.join(partial) if partial else ''}"
                      f"{'; skipped: ' + skipped if skipped else ''}; model: {model_name}; "
                      f"report in {self.out}/ (summary.json, report.md, *.png)", flush=True)
        if held.signum is not None:
            return self.stopped(Interrupted(held.stop(), records, checks,
                                            "after the last node run, while its report was written", finished=result))
        return exit_status(result)

    def stopped(self, stop: Interrupted) -> int:
        """A partial report of what was collected (a soak's: written by run_soak); one line; 130 / 143 / 129.

        Why: a stopped run wrote no report, and the previous run's PASS stood in the folder.
        Prints survive a terminal gone (a hang-up): the status must still be the signal's. A stop
        that came as the report was written (``stop.finished``): that whole report is named.
        """
        from tiny_node.hil.harness import global_failures
        from tiny_node.hil.report import console_table, write_report

        how, status = stopped_by(stop.cause)
        files = "soak.json, soak.md" if self.args.soak > 0 else "summary.json, report.md"
        node = ("the attached node was not started by it and keeps running" if self.args.attach
                else "no node was started" if stop.where == BEFORE_ANY_RUN
                else "a node it started is stopped")
        if stop.finished:
            _say(f"\ntiny-node hil: {how} ({_signame(status - 128)}) {stop.where} ({node}); the runs had "
                 f"ended, and the report was finished first: verdict {stop.finished}, in {self.out}/ ({files})")
            return status
        if self.args.soak == 0:
            gf = {r.group: global_failures(r) for r in stop.records}
            write_report(self.out, stop.records, stop.checks, self._meta(stop.records)[0], gf, interrupted=stop.how)
            with contextlib.suppress(OSError):
                print("\n" + console_table(stop.checks), flush=True)
        _say(f"\ntiny-node hil: {how} ({node}); partial report (verdict INTERRUPTED, {stop.where}) in "
             f"{self.out}/ ({files})")
        return status
