"""Whether rcl takes a ROS name the user gave, asked before anything starts.

Why a module: the commands that take a namespace (hil, replay) met
rcl's refusal only once they had begun, as an rclpy traceback. rclpy is imported lazily: the
lockstep commands run without it.
"""

from __future__ import annotations


def namespace_problem(namespace: str) -> str:
    """Why rcl refuses ``namespace`` ("" when it takes it, or when rclpy is not there to ask).

    Why: the HIL harness started the node, then failed with rclpy's traceback making its own
    feeder; a real-time replay failed so once it had begun.
    """
    try:
        from rclpy.exceptions import InvalidNamespaceException
        from rclpy.validate_namespace import validate_namespace
    except ImportError:  # no rclpy: the run fails on that, with its own message
        return ""
    try:
        validate_namespace(namespace)
    except InvalidNamespaceException as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid"  # the rule broken; the lines after it point at it
        return first.removeprefix("Invalid namespace: ").rstrip(":")
    return ""
