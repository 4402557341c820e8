"""``tiny-node``: run the node, the demo, the benchmark, and make test model bundles."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_run(rest: list[str]) -> int:
    from tiny_node.ros.node import main as node_main

    return node_main(["tiny-node run", *rest])


def _cmd_demo(args: argparse.Namespace) -> int:
    from tiny_node.demo import run_demo

    return run_demo(out_dir=Path(args.out), duration_s=args.duration, speed_kmh=args.speed)


def _cmd_bench(args: argparse.Namespace) -> int:
    from tiny_node.bench import run_bench

    return run_bench(out_dir=Path(args.out), frames=args.frames, cases=args.cases)


def _cmd_bundles(args: argparse.Namespace) -> int:
    from tiny_node.model.testmodels import write_test_bundles

    for name, path in write_test_bundles(Path(args.dir)).items():
        print(f"{name}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tiny-node`` and ``python -m tiny_node``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":  # everything after `run` belongs to the node (ROS args too)
        return _cmd_run(argv[1:])
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        return _cmd_run(argv)  # `python -m tiny_node [--params-file F] [--ros-args ...]`
    parser = argparse.ArgumentParser(prog="tiny-node", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="start the node: tiny-node run --params-file config/tiny_node.yaml "
                   "[--model-bundle DIR] [--no-autostart] [--ros-args ...]")
    demo = sub.add_parser("demo", help="start the node and drive it over DDS with a built-in drive")
    demo.add_argument("--out", default="out/demo", help="where the timeline and summary go")
    demo.add_argument("--duration", type=float, default=6.0, help="seconds of driving")
    demo.add_argument("--speed", type=float, default=50.0, help="initial ego speed, km/h")
    bench = sub.add_parser("bench", help="decision latency / deadline benchmark over DDS at 30 Hz")
    bench.add_argument("--out", default="out/bench")
    bench.add_argument("--frames", type=int, default=600, help="frames per case (30 Hz)")
    bench.add_argument("--cases", nargs="*", default=["fast", "slow", "fast+stress", "slow+stress"],
                       help="cases among fast, slow, rules, fast+stress, slow+stress, rules+stress")
    bundles = sub.add_parser("make-test-bundles", help="write the generated test ONNX bundles")
    bundles.add_argument("dir")
    args = parser.parse_args(argv)
    handler = {"demo": _cmd_demo, "bench": _cmd_bench, "make-test-bundles": _cmd_bundles}[args.cmd]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
