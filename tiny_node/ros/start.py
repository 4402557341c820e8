"""The node's start command (``tiny_node``, ``ros2 run tiny_node tiny_node``, launch files).

A module apart from :mod:`tiny_node.ros.node` so that SIGINT / SIGTERM are held from the first
instant (:func:`tiny_node.stopping.hold_stop_signals`), not only once that module is imported.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Hold stop signals, then import and run the node."""
    import sys

    from tiny_node.stopping import end_with_parent, hold_stop_signals

    hold_stop_signals()
    if note := end_with_parent():  # after the hold: a parent already gone is a held SIGTERM
        print(f"tiny_node: warning: {note}", file=sys.stderr)
    from tiny_node.ros.node import main as node_main

    return node_main(argv)
