"""Developer tools: measurements and helpers run with ``python -m tiny_node.tools.<name>``."""
