"""The GPU target: plugin ONNX graphs, TensorRT plugins and engines, the GPU model repository.

- `target`: `export_gpu` (`reelserve export --target gpu`) and the GPU repository;
- `plugin_onnx`: the encoders as ONNX with our kernels as `reelserve::*` nodes (plugin and CPU-runnable forms);
- `plugins`: the TensorRT plugins for those nodes (our Triton kernels, ahead of time; imports `tensorrt`);
- `engines`: plugin graph -> TensorRT engine, and a runner for parity checks and timing;
- `check`: `reelserve gpu-check`, the runbook on a GPU machine.
"""
