"""The GPU target: plugin ONNX graphs, TensorRT plugins and engines, the GPU model repository."""
