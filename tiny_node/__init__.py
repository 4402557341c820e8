"""tiny_node: on-board brake / no-brake decisions from a small quantized model under a hard deadline."""

__version__ = "0.1.0"
