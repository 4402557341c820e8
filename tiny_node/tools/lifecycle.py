"""``tiny-node lifecycle``: drive the node's lifecycle over its services, as ``ros2 lifecycle`` does.

Why: the pip wheels have rclpy but no ``ros2`` command, so a node started with
``--no-autostart`` could not be configured without a ROS install. The node's lifecycle
services (``<node>/get_state``, ``<node>/change_state``) are called directly.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tiny_node.argtypes import positive

#: Transition labels as ``ros2 lifecycle set`` takes them (``shutdown``: from the current state).
TRANSITIONS = ("configure", "cleanup", "activate", "deactivate", "shutdown")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The subcommand's arguments."""
    def transition(text: str) -> str:
        if text not in TRANSITIONS:  # not choices=: argparse refuses an empty nargs="*" list with them
            raise argparse.ArgumentTypeError(f"{text!r} is not a transition ({', '.join(TRANSITIONS)})")
        return text

    p.add_argument("transitions", nargs="*", type=transition, metavar="TRANSITION",
                   help=f"run these in order ({', '.join(TRANSITIONS)}); none: print the state")
    p.add_argument("--node", default="/tiny_node", help="the node's full name (default /tiny_node; "
                   "e.g. /ego/tiny_node when started with -r __ns:=/ego)")
    p.add_argument("--timeout", type=positive(float), default=60.0,
                   help="seconds to wait for the node's services and for each transition (configure "
                   "loads and warms up the model)")


class _Client:
    """A short-lived ROS node calling one node's lifecycle services, in a private context."""

    def __init__(self, node: str, timeout_s: float) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.target = "/" + node.strip("/")
        self.timeout_s = timeout_s
        self.context = Context()
        rclpy.init(args=[], context=self.context)  # not sys.argv: the command's own options are no ROS arguments
        self.node = Node("tiny_node_lifecycle", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def call(self, srv_type: Any, name: str, request: Any) -> Any:
        """The answer of ``<node>/<name>``; RuntimeError naming the service when none comes in time."""
        service = f"{self.target}/{name}"
        client: Any = self.node.create_client(srv_type, service)
        try:
            if not client.wait_for_service(timeout_sec=self.timeout_s):
                raise RuntimeError(f"no service {service} within {self.timeout_s:g} s: is the node running "
                                   "(on this ROS_DOMAIN_ID), and is --node its full name?")
            future = client.call_async(request)
            self.executor.spin_until_future_complete(future, timeout_sec=self.timeout_s)
            if not future.done() or future.result() is None:
                raise RuntimeError(f"{service}: no answer within {self.timeout_s:g} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def state(self) -> str:
        """The node's current lifecycle state label (``unconfigured``, ``inactive``, ``active``, ...)."""
        from lifecycle_msgs.srv import GetState

        return str(self.call(GetState, "get_state", GetState.Request()).current_state.label)

    def change(self, transition: str) -> bool:
        """Run ``transition``; whether the node completed it. RuntimeError if its state has no such one.

        Asked among the state's available transitions first, as ``ros2 lifecycle set`` does:
        Jazzy's rclpy leaves a request for a transition the state lacks unanswered.
        """
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions

        available = self.call(GetAvailableTransitions, "get_available_transitions",
                              GetAvailableTransitions.Request()).available_transitions
        ids = {str(t.transition.label): int(t.transition.id) for t in available}
        if transition not in ids:
            raise RuntimeError(f"{self.target} is {self.state()}: no {transition} from there "
                               f"(available: {', '.join(ids) or 'none'})")
        request = ChangeState.Request(transition=Transition(id=ids[transition]))
        return bool(self.call(ChangeState, "change_state", request).success)

    def close(self) -> None:
        """Destroy the node and shut the private context down."""
        import rclpy

        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def lifecycle_command(args: argparse.Namespace) -> int:
    """Print the state, or run the transitions in order: 0 when all succeed, 1 at the first refused.

    A bad ``--node`` is one line, status 2; Ctrl-C one line, status 130 (a transition already
    asked for goes on in the node).
    """
    try:
        from tiny_node.ros_names import node_name_problem

        if why := node_name_problem(args.node):
            print(f"tiny-node lifecycle: --node {args.node!r}: not a node's full name: {why}", file=sys.stderr)
            return 2
        return _run(args)
    except KeyboardInterrupt:  # rclpy's import too takes a moment
        print("\ntiny-node lifecycle: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    """``lifecycle_command`` on a checked ``--node``."""
    client = _Client(args.node, args.timeout)
    try:
        for transition in args.transitions:
            if not client.change(transition):
                print(f"tiny-node lifecycle: {client.target} refused {transition} (state now "
                      f"{client.state()}; its log says why)", file=sys.stderr)
                return 1
            print(f"{transition}: ok")
        # after shutdown the node's process ends (finalized is terminal): no state to ask for
        last = args.transitions[-1] if args.transitions else None
        print(f"{client.target}: {'finalized' if last == 'shutdown' else client.state()}")
        return 0
    except RuntimeError as exc:
        print(f"tiny-node lifecycle: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
