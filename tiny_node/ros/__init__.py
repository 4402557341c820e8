"""ROS 2 glue: the lifecycle node and message conversion (the only code that imports rclpy).

Imported before numpy by every way of starting the node, so it pins OpenBLAS to one thread
(unless the user set it): the node does no linear algebra, and under ``mlockall`` each idle
OpenBLAS thread's buffers stay resident and locked (measured: 180 MiB of a rules-only node).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
