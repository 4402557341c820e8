"""Model side of tiny_node: bundles, the onnxruntime wrapper, and the worker process.

bundle (manifest + checksums) -> runtime (ORT session, pre/post-processing; vlm for a
small vision-language model: prefill decision, KV-cached rationale) run inside worker_main
(the model's own process), driven by worker.ModelWorker from the node through frames
(shared memory) and protocol (pipe messages). testmodels and testvlm write real test bundles.

Importing :mod:`tiny_node.model.worker` is cheap on purpose: the node process never loads
onnxruntime or OpenCV; only the spawned worker does.
"""
