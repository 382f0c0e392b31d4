"""ONNX Runtime sessions as every step (encoders, heads, OCR) opens them: one set of options."""

from __future__ import annotations

from pathlib import Path


def ort_session(path: Path, threads: int):
    """A CPU session of `path`; `threads` intra-op threads (0: ONNX Runtime decides), idle ones sleep."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    if threads > 0:
        options.intra_op_num_threads = threads
    # Idle ORT worker threads spin by default, burning the cores the other steps (and the other
    # encoder's session) need next: measured +2-4 ms per step on 2 cores (docs/benchmarks.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
