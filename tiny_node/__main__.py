"""``python -m tiny_node`` is the ``tiny-node`` CLI (``python -m tiny_node run`` starts the node)."""

import sys

from tiny_node.cli import main

sys.exit(main())
