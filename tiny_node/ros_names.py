"""Whether rcl takes a ROS name the user gave, asked before anything starts.

Why a module: the commands that take a namespace (hil, replay) or a node's full name
(lifecycle) met rcl's refusal only once they had begun, as an rclpy traceback. rclpy is
imported lazily: the lockstep commands run without it, and then nothing is refused here.
"""

from __future__ import annotations

import importlib


def _refused(check: str, name: str) -> str:
    """Why rclpy's ``validate_<check>`` refuses ``name`` ("" when it takes it, or without rclpy).

    The lines after the first point at the offending character; the first opens with the kind of name.
    """
    try:
        from rclpy.exceptions import NameValidationException

        validate = getattr(importlib.import_module(f"rclpy.validate_{check}"), f"validate_{check}")
    except ImportError:  # no rclpy: the run fails on that, with its own message
        return ""
    try:
        validate(name)
    except NameValidationException as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid"
        return first.split(": ", 1)[-1].rstrip(":")
    return ""


def namespace_problem(namespace: str) -> str:
    """Why rcl refuses ``namespace`` ("" when it takes it, or when rclpy is not there to ask).

    Why: the HIL harness started the node, then failed with rclpy's traceback making its own
    feeder; a real-time replay failed so once it had begun.
    """
    return _refused("namespace", namespace)


def topic_name_problem(name: str) -> str:
    """Why rcl refuses the fully qualified topic or service ``name`` ("" when it takes it, or without rclpy)."""
    return _refused("full_topic_name", name)


def node_name_problem(node: str) -> str:
    """Why ``node`` is not a node's full name ("" when it is); rclpy's own rules.

    Why up front: rclpy refused the name only when a client of its services was made, with an
    InvalidServiceNameException traceback (``tiny-node lifecycle``).
    """
    namespace, name = ("/" + node.strip("/")).rsplit("/", 1)
    return (_refused("node_name", name) or _refused("namespace", namespace or "/")
            or topic_name_problem(f"{namespace}/{name}/get_state"))  # the services' names (their length)
