"""Model side of tiny_node: bundles, the onnxruntime wrapper, and the worker process.

Importing this package is cheap on purpose: the node process only needs
:mod:`tiny_node.model.worker` (numpy + multiprocessing); onnxruntime and OpenCV are
imported by :mod:`tiny_node.model.runtime`, which runs inside the worker process.
"""
