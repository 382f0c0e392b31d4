"""reelserve/serving/onnx_runtime.py: the text graph runs without the fusions whose CPU kernels are slow."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx

from reelserve.serving.onnx_runtime import SLOW_FUSIONS, ort_session
from reelserve.spec import contract as c


def test_served_text_graph_runs_unfused_layer_norms_and_gelus(model_repository: Path, tmp_path: Path) -> None:
    optimized = tmp_path / "optimized.onnx"
    ort_session(model_repository / c.TEXT_ENCODER / "1" / "model.onnx", 1, optimized_model=optimized)
    ops = Counter(node.op_type for node in onnx.load(str(optimized), load_external_data=False).graph.node)
    assert SLOW_FUSIONS == ("SkipLayerNormFusion", "BiasGeluFusion")
    assert ops["SkipLayerNormalization"] == 0 and ops["BiasGelu"] == 0, ops
    # what they would have fused is there, and ONNX Runtime's other fusions still ran
    assert ops["LayerNormalization"] >= 24 and ops["Gelu"] == 12 and ops["FusedMatMul"] > 0, ops
