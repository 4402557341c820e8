"""Measure how many camera frames cross a process boundary over Fast DDS, best effort.

The parent publishes ``-n`` sensor_msgs/Image frames (640x480 rgb8 = 921,600 bytes by
default) at ``--rate`` Hz; a subscriber in a separate process (sensor-data QoS: best effort,
keep last 5) counts what arrives and how late.  Both run on a private ROS graph (random
``ROS_DOMAIN_ID``, discovery on localhost) with the same Fast DDS set-up::

    python -m tiny_node.tools.dds_throughput                  # as tiny_node runs (configure_dds)
    python -m tiny_node.tools.dds_throughput --profile none   # Fast DDS defaults
    python -m tiny_node.tools.dds_throughput --compare        # none, large_data, packaged

Fast DDS reads its transport set-up once per process, so ``--compare`` runs each variant in
fresh processes.  Numbers are recorded in ``docs/DDS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any, TextIO

from tiny_node.dds import BUILTIN_TRANSPORTS_VAR, PROFILE_VARS, configure_dds, isolated_ros_env

MODULE = "tiny_node.tools.dds_throughput"
PROFILES = ("auto", "packaged", "none", "large_data")
COMPARE = ("none", "large_data", "packaged")
TOPIC = "dds_throughput/image"
READY = "READY"
STOP = "STOP"


def apply_profile(mode: str, env: dict[str, str]) -> str:
    """Set up Fast DDS transports in ``env`` for ``mode``; return a one-line description.

    ``auto`` is what every tiny_node process does (:func:`configure_dds` on the inherited
    environment, so a user's own profile wins); ``packaged`` forces the packaged profile;
    ``none`` leaves Fast DDS at its defaults; ``large_data`` uses Fast DDS 3's built-in
    ``LARGE_DATA`` transports (TCP + SHM instead of UDP + SHM).
    """
    if mode == "auto":
        path = configure_dds(env)
        if path is not None:
            return f"packaged profile {path}"
        chosen = [f"{v}={env[v]}" for v in (*PROFILE_VARS, BUILTIN_TRANSPORTS_VAR) if env.get(v)]
        return "user's choice: " + (", ".join(chosen) or "no profile (other RMW or not found)")
    for var in (*PROFILE_VARS, BUILTIN_TRANSPORTS_VAR):
        env.pop(var, None)
    env["SKIP_DEFAULT_XML_FILE"] = "1"  # no DEFAULT_FASTDDS_PROFILES.xml from the cwd either
    if mode == "packaged":
        path = configure_dds(env)
        if path is None:
            raise SystemExit("packaged Fast DDS profile not found (or RMW is not Fast DDS)")
        return f"packaged profile {path}"
    if mode == "large_data":
        env[BUILTIN_TRANSPORTS_VAR] = "LARGE_DATA"
        return "FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA"
    if mode == "none":
        return "Fast DDS defaults (no profile)"
    raise ValueError(f"unknown profile mode {mode!r}; one of {', '.join(PROFILES)}")


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def run_subscriber(topic: str, expected_bytes: int, out: TextIO = sys.stdout) -> int:
    """Child role: count frames on ``topic`` until STOP arrives on stdin; print JSON."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    stop = threading.Event()
    seqs: list[int] = []
    latencies_ms: list[float] = []
    wrong_size = 0

    def on_image(msg: Image) -> None:
        nonlocal wrong_size
        now_ns = time.time_ns()
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        latencies_ms.append((now_ns - stamp_ns) / 1e6)
        seqs.append(int(msg.header.frame_id or -1))
        if len(msg.data) != expected_bytes:
            wrong_size += 1

    def wait_for_stop() -> None:
        for line in sys.stdin:
            if line.strip() == STOP:
                break
        stop.set()

    rclpy.init()
    node = rclpy.create_node("dds_throughput_sub")
    node.create_subscription(Image, topic, on_image, qos_profile_sensor_data)
    threading.Thread(target=wait_for_stop, daemon=True).start()
    print(READY, file=out, flush=True)
    try:
        while not stop.is_set():
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    result = {
        "received": len(seqs),
        "unique": len(set(seqs)),
        "wrong_size": wrong_size,
        "latency_ms_p50": _percentile(latencies_ms, 50),
        "latency_ms_p99": _percentile(latencies_ms, 99),
        "latency_ms_max": max(latencies_ms) if latencies_ms else None,
    }
    print(json.dumps(result), file=out, flush=True)
    return 0


def _read_line(stream: IO[str], timeout: float) -> str | None:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else None


def run_publisher(args: argparse.Namespace) -> dict[str, Any]:
    """Parent role: start the subscriber process, publish the frames, collect its counts."""
    env = isolated_ros_env(args.domain_id, dds_profile=False) if args.isolate else dict(os.environ)
    sub_env = dict(env)
    setup = apply_profile(args.profile, env)
    os.environ.clear()
    os.environ.update(env)  # this process's own participant gets the same set-up
    sub_mode = args.sub_profile or args.profile
    sub_setup = apply_profile(sub_mode, sub_env)
    if sub_mode != args.profile:
        setup = f"publisher: {setup}; subscriber: {sub_setup}"

    width, height = args.width, args.height
    size = width * height * 3
    child = subprocess.Popen(
        [sys.executable, "-m", MODULE, "--role", "sub", "--topic", TOPIC,
         "--width", str(width), "--height", str(height)],
        env=sub_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        line = _read_line(child.stdout, 30.0)
        if line is None or line.strip() != READY:
            raise RuntimeError(f"subscriber process did not start (got {line!r})")

        import rclpy
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        rclpy.init()
        try:
            node = rclpy.create_node("dds_throughput_pub")
            pub = node.create_publisher(Image, TOPIC, qos_profile_sensor_data)
            deadline = time.monotonic() + 20.0
            while pub.get_subscription_count() < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("subscriber was not discovered within 20 s")
                time.sleep(0.05)
            time.sleep(args.settle)  # let the subscriber side finish matching too

            msg = Image()
            msg.height, msg.width = height, width
            msg.encoding, msg.is_bigendian, msg.step = "rgb8", 0, width * 3
            msg.data = (bytes(range(256)) * (size // 256 + 1))[:size]
            period = 1.0 / args.rate
            start = time.monotonic()
            late = 0
            for i in range(args.n):
                target = start + i * period
                pause = target - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                elif pause < -period:
                    late += 1
                now_ns = time.time_ns()
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
                msg.header.frame_id = str(i)
                pub.publish(msg)
            elapsed = time.monotonic() - start
            time.sleep(args.drain)
            node.destroy_node()
        finally:
            rclpy.try_shutdown()

        child.stdin.write(STOP + "\n")
        child.stdin.flush()
        line = _read_line(child.stdout, 30.0)
        if not line:
            raise RuntimeError("subscriber process gave no result")
        counts = json.loads(line)
    finally:
        if child.poll() is None:
            try:
                child.stdin.close()
                child.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                child.kill()
                child.wait()

    return {
        "profile": args.profile if sub_mode == args.profile else f"{args.profile}/{sub_mode}",
        "setup": setup,
        "sent": args.n,
        **counts,
        "frame_bytes": size,
        "rate_hz_target": args.rate,
        "rate_hz_actual": (args.n - 1) / elapsed if args.n > 1 and elapsed > 0 else None,
        "publisher_late": late,
        "ros_domain_id": env.get("ROS_DOMAIN_ID"),
        "discovery_range": env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "(default)"),
        "rmw": env.get("RMW_IMPLEMENTATION") or "rmw_fastrtps_cpp (default)",
        "host": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
    }


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def format_result(r: dict[str, Any]) -> str:
    """Return a one-line human summary of one run."""
    pct = 100.0 * r["unique"] / r["sent"] if r["sent"] else 0.0
    return (
        f"{r['profile']:<10} received {r['unique']}/{r['sent']} ({pct:.0f}%)  "
        f"latency p50 {_fmt_ms(r['latency_ms_p50'])}, p99 {_fmt_ms(r['latency_ms_p99'])}  "
        f"[{r['setup']}]"
    )


def compare(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run each profile mode in fresh processes; return the results."""
    results = []
    for mode in COMPARE:
        cmd = [sys.executable, "-m", MODULE, "--profile", mode, "--json",
               "-n", str(args.n), "--rate", str(args.rate),
               "--width", str(args.width), "--height", str(args.height)]
        if not args.isolate:
            cmd.append("--no-isolate")
        if args.sub_profile is not None:  # each variant's publisher against this subscriber
            cmd += ["--sub-profile", args.sub_profile]
        if args.domain_id is not None:
            cmd += ["--domain-id", str(args.domain_id)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"{mode}: exited {done.returncode}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(format_result(result), flush=True)
        results.append(result)
    return results


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    p = argparse.ArgumentParser(
        prog="python -m " + MODULE,
        description="Count best-effort camera frames received by another process over DDS.",
    )
    p.add_argument("--profile", choices=PROFILES, default="auto",
                   help="Fast DDS set-up: auto = as tiny_node runs (default), packaged = force "
                        "config/fastdds_profile.xml, none = Fast DDS defaults, large_data = "
                        "FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA")
    p.add_argument("--sub-profile", choices=PROFILES, default=None,
                   help="Fast DDS set-up of the subscriber process (default: as --profile)")
    p.add_argument("--compare", action="store_true", help="run none, large_data and packaged")
    p.add_argument("-n", type=int, default=150, help="frames to send (default 150)")
    p.add_argument("--rate", type=float, default=30.0, help="frames per second (default 30)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--domain-id", type=int, default=None, help="default: random 1..101")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="keep the inherited ROS_DOMAIN_ID and discovery range")
    p.add_argument("--settle", type=float, default=0.5, help=argparse.SUPPRESS)
    p.add_argument("--drain", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print one JSON object per run")
    p.add_argument("--role", choices=("pub", "sub"), default="pub", help=argparse.SUPPRESS)
    p.add_argument("--topic", default=TOPIC, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tiny_node.tools.dds_throughput``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.role == "sub":
        return run_subscriber(args.topic, args.width * args.height * 3)
    # one line and status 2 for arguments that cannot work, not a traceback mid-run
    if args.n < 1 or args.rate <= 0:
        parser.error("-n must be >= 1 and --rate > 0")
    if args.width < 1 or args.height < 1:
        parser.error("--width and --height must be >= 1")
    if args.domain_id is not None and not 0 <= args.domain_id <= 232:
        parser.error(f"--domain-id must be in 0..232 (1..101 is safe), got {args.domain_id}")
    if args.compare:
        results = compare(args)
        if args.json:
            print(json.dumps(results))
        return 0
    result = run_publisher(args)
    print(json.dumps(result) if args.json else format_result(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
