"""ONNX Runtime sessions as every step (encoders, heads, OCR) opens them: one set of options."""

from __future__ import annotations

from pathlib import Path

# Graph fusions left out because ONNX Runtime's CPU kernels for what they fuse into are slower than
# the ops they replace: in the text graph, SkipLayerNormalization took 9.5% of the time against
# 1.2% for LayerNormalization and its Add, BiasGelu 4.8% against Gelu's 2.7%; without them the
# export's corpus runs 1.09x and text_features 1.08x faster (docs/benchmarks.md, "Two slow fusions").
SLOW_FUSIONS = ("SkipLayerNormFusion", "BiasGeluFusion")


def ort_session(path: Path, threads: int, *, optimized_model: Path | None = None):
    """A CPU session of `path`; `threads` intra-op threads (0: ONNX Runtime decides), idle ones sleep.

    `optimized_model`: also write the graph as ONNX Runtime optimized it, to see what runs.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    if threads > 0:
        options.intra_op_num_threads = threads
    # Idle ORT worker threads spin by default, burning the cores the other steps (and the other
    # encoder's session) need next: measured +2-4 ms per step on 2 cores (docs/benchmarks.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_model is not None:
        options.optimized_model_filepath = str(optimized_model)
    return ort.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(SLOW_FUSIONS)
    )


class RecordingSession:
    """A session that keeps every call's feeds and outputs: the inputs a pipeline really gives a model,
    to calibrate a quantizer with, time, or replay through another graph."""

    def __init__(self, session) -> None:
        self.session = session
        self.calls: list[tuple[dict, list]] = []

    @property
    def feeds(self) -> list[dict]:
        return [feeds for feeds, _ in self.calls]

    def run(self, outputs, feeds, *args):
        result = self.session.run(outputs, feeds, *args)
        self.calls.append((dict(feeds), result))
        return result

    def __getattr__(self, name: str):
        return getattr(self.session, name)
