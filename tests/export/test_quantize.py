"""export/quantize.py: which MatMuls stay fp32, and that the int8 graphs run and stay close (tiny graphs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from reelserve.export.onnx_export import export_onnx
from reelserve.export.quantize import ffn_output_matmuls, quantize_text_graph, quantize_vision_graph
from reelserve.serving.onnx_runtime import ort_session
from reelserve.spec import contract as c


class _Block(torch.nn.Module):
    """A transformer feed-forward block: up projection, GELU, down projection."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up, self.down = torch.nn.Linear(32, 64), torch.nn.Linear(64, 32)

    def forward(self, x):
        return self.down(torch.nn.functional.gelu(self.up(x)))


@pytest.fixture(scope="module")
def block_graph(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("block") / "model.onnx"
    export_onnx(_Block(), (torch.randn(2, 5, 32),), path, input_names=["x"], output_names=["y"],
                dynamic_axes={"x": {0: "batch"}})  # fmt: skip
    return path


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_the_down_projection_stays_fp32(block_graph: Path, tmp_path: Path) -> None:
    (down,) = ffn_output_matmuls(block_graph)
    out = quantize_text_graph(block_graph, tmp_path / "int8.onnx")
    nodes = onnx.load(str(out)).graph.node
    assert any(n.name == down and n.op_type == "MatMul" for n in nodes), "the GELU-fed MatMul is fp32"
    assert "MatMulInteger" in _ops(out) or "DynamicQuantizeMatMul" in _ops(out), _ops(out)
    x = np.random.default_rng(0).normal(size=(3, 5, 32)).astype(np.float32)
    want = ort_session(block_graph, threads=1).run(None, {"x": x})[0]
    got = ort_session(out, threads=1).run(None, {"x": x})[0]
    cos = (want * got).sum(-1) / (np.linalg.norm(want, axis=-1) * np.linalg.norm(got, axis=-1))
    assert cos.min() > 0.99, cos.min()


def test_a_graph_without_gelu_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "linear.onnx"
    export_onnx(torch.nn.Linear(4, 4), (torch.randn(2, 4),), path, input_names=["x"], output_names=["y"],
                dynamic_axes={})  # fmt: skip
    with pytest.raises(ValueError, match="no MatMul reads a GELU output"):
        quantize_text_graph(path, tmp_path / "int8.onnx")


def test_the_real_text_graph_keeps_one_matmul_per_layer(model_repository: Path) -> None:
    names = ffn_output_matmuls(model_repository / c.TEXT_ENCODER / "1" / "model.onnx")
    assert len(names) == 12, names  # multilingual-e5-small: 12 layers


def test_vision_static_int8_runs_and_stays_close(tmp_path: Path) -> None:
    class _Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv, self.fc = torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 10)

        def forward(self, frames):  # uint8 NHWC, as the vision graph takes frames
            x = frames.permute(0, 3, 1, 2).float() / 255.0
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    src = tmp_path / "net.onnx"
    frames = np.random.default_rng(0).integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    export_onnx(_Net(), (torch.from_numpy(frames[:2]),), src, input_names=["frames"], output_names=["logits"],
                dynamic_axes={"frames": {0: "n"}})  # fmt: skip
    out = quantize_vision_graph(src, tmp_path / "int8.onnx", ({"frames": frames[i : i + 1]} for i in range(4)))
    assert "QuantizeLinear" in _ops(out)
    want = ort_session(src, threads=1).run(None, {"frames": frames})[0]
    got = ort_session(out, threads=1).run(None, {"frames": frames})[0]
    assert got.shape == want.shape and np.abs(got - want).max() < 0.1 * np.abs(want).max() + 1e-3
