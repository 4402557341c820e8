"""Whether rcl takes a ROS name the user gave, asked before anything starts.

Why a module: the commands that take a namespace (hil, replay) or a node's full name
(lifecycle) met rcl's refusal only once they had begun, as an rclpy traceback. rclpy is
imported lazily: the lockstep commands run without it, and then nothing is refused here.
"""

from __future__ import annotations


def _reason(exc: Exception) -> str:
    """Rclpy's reason, its first line without the kind of name (the lines after it point at it)."""
    first = str(exc).splitlines()[0] if str(exc) else "invalid"
    return first.split(": ", 1)[-1].rstrip(":")


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
        return _reason(exc)
    return ""


def topic_name_problem(name: str) -> str:
    """Why rcl refuses the fully qualified topic or service ``name`` ("" when it takes it, or without rclpy)."""
    try:
        from rclpy.exceptions import NameValidationException
        from rclpy.validate_full_topic_name import validate_full_topic_name
    except ImportError:
        return ""
    try:
        validate_full_topic_name(name)
    except NameValidationException as exc:
        return _reason(exc)
    return ""


def node_name_problem(node: str) -> str:
    """Why ``node`` is not a node's full name ("" when it is); rclpy's own rules.

    Why up front: rclpy refused the name only when a client of its services was made, with an
    InvalidServiceNameException traceback (``tiny-node lifecycle``).
    """
    from rclpy.exceptions import NameValidationException
    from rclpy.validate_namespace import validate_namespace
    from rclpy.validate_node_name import validate_node_name

    namespace, name = ("/" + node.strip("/")).rsplit("/", 1)
    try:
        validate_node_name(name)
        validate_namespace(namespace or "/")
    except NameValidationException as exc:
        return _reason(exc)
    return topic_name_problem(f"{namespace}/{name}/get_state")  # the services' names (their length)
