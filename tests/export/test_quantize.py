"""export/quantize.py: which MatMuls go int8 and how, and that the int8 graphs run and stay close (tiny graphs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from reelserve.export.onnx_export import export_onnx
from reelserve.export.parity import cosine_rows
from reelserve.export.quantize import (
    WEIGHT_LEVELS,
    _blockwise_int8,
    ffn_output_matmuls,
    quantize_text_graph,
    quantize_vision_graph,
)
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


class _Layer(_Block):
    """Three projections of one input (as Q, K, V read one LayerNorm output), then the feed-forward block."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = (torch.nn.Linear(32, 32) for _ in range(3))

    def forward(self, x):
        return super().forward(self.q(x) * torch.sigmoid(self.k(x)) + self.v(x))


def _export(module: torch.nn.Module, path: Path) -> Path:
    export_onnx(module, (torch.randn(2, 5, 32),), path, input_names=["x"], output_names=["y"],
                dynamic_axes={"x": {0: "batch"}})  # fmt: skip
    return path


@pytest.fixture(scope="module")
def block_graph(tmp_path_factory) -> Path:
    return _export(_Block(), tmp_path_factory.mktemp("block") / "model.onnx")


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def _calibration(n: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"x": rng.normal(size=(2, 5, 32)).astype(np.float32)} for _ in range(n)]


def test_projections_per_token_int8_and_the_down_projection_weight_only(block_graph: Path, tmp_path: Path) -> None:
    (down,) = ffn_output_matmuls(block_graph)
    out = quantize_text_graph(block_graph, tmp_path / "int8.onnx", _calibration())
    nodes = onnx.load(str(out)).graph.node
    assert [n.op_type for n in nodes if n.op_type.startswith("MatMul")] == ["MatMulIntegerToFloat", "MatMulNBits"]
    assert any(n.name == f"{down}_q8" for n in nodes), "the GELU-fed MatMul is the weight-only one"
    x = np.random.default_rng(0).normal(size=(3, 5, 32)).astype(np.float32)
    want = ort_session(block_graph, threads=1).run(None, {"x": x})[0]
    got = ort_session(out, threads=1).run(None, {"x": x})[0]
    cos = cosine_rows(want.reshape(-1, 32), got.reshape(-1, 32))  # per token
    assert cos.min() > 0.999, cos.min()


def test_a_row_is_quantized_on_its_own(block_graph: Path, tmp_path: Path) -> None:
    """Per-token scales: a row's output does not move when a row 100x larger shares its call."""
    session = ort_session(quantize_text_graph(block_graph, tmp_path / "int8.onnx", _calibration()), threads=1)
    x = np.random.default_rng(2).normal(size=(1, 5, 32)).astype(np.float32)
    alone = session.run(None, {"x": x})[0]
    beside = session.run(None, {"x": np.concatenate([x, 100 * x[:, ::-1]])})[0][:1]
    np.testing.assert_allclose(beside, alone, rtol=1e-5, atol=1e-6)


def test_no_int16_pair_sum_can_saturate(block_graph: Path, tmp_path: Path) -> None:
    """Without VNNI, u8 x s8 adds products in pairs into int16: the weights are kept small enough for any input."""
    out = onnx.load(str(quantize_text_graph(block_graph, tmp_path / "int8.onnx", _calibration())))
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in out.graph.initializer}
    (matmul,) = [n for n in out.graph.node if n.op_type == "MatMulIntegerToFloat"]
    w, zero_point = weights[matmul.input[1]], int(weights[matmul.input[4]])
    assert w.dtype == np.int8 and np.abs(w.astype(int)).max() == WEIGHT_LEVELS
    assert 2 * 255 * WEIGHT_LEVELS <= 32767 and zero_point == 128


def test_projections_of_one_input_run_as_one_matmul(tmp_path: Path) -> None:
    """Q, K and V: one activation quantization, one MatMul, split after; each output still its own."""
    torch.manual_seed(0)
    src = _export(_Layer(), tmp_path / "layer.onnx")
    out = quantize_text_graph(src, tmp_path / "int8.onnx", _calibration())
    ops = _ops(out)
    assert ops.count("MatMulIntegerToFloat") == 2 and ops.count("QuantizeLinear") == 2, ops  # q|k|v, up
    assert ops.count("Split") == 1 and ops.count("MatMulNBits") == 1, ops
    x = np.random.default_rng(4).normal(size=(3, 5, 32)).astype(np.float32)
    want = ort_session(src, threads=1).run(None, {"x": x})[0]
    got = ort_session(out, threads=1).run(None, {"x": x})[0]
    cos = cosine_rows(want.reshape(-1, 32), got.reshape(-1, 32))
    assert cos.min() > 0.999, cos.min()


def test_blockwise_int8_round_trips_within_half_a_step() -> None:
    w = np.random.default_rng(3).normal(size=(128, 6)).astype(np.float32)
    w[:, 5] = 0.0
    q, scale = _blockwise_int8(w, 64)
    assert q.shape == (6, 2, 64) and q.dtype == np.uint8 and scale.shape == (12,)
    back = ((q.astype(np.float32) - 128) * scale.reshape(6, 2, 1)).reshape(6, 128).T
    assert np.all(np.abs(back - w) <= scale.reshape(6, 2).repeat(64, 1).T / 2 + 1e-7)
    np.testing.assert_array_equal(back[:, 5], 0.0)


def test_a_graph_without_gelu_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "linear.onnx"
    export_onnx(torch.nn.Linear(4, 4), (torch.randn(2, 4),), path, input_names=["x"], output_names=["y"],
                dynamic_axes={})  # fmt: skip
    with pytest.raises(ValueError, match="no MatMul reads a GELU output"):
        quantize_text_graph(path, tmp_path / "int8.onnx", _calibration())


def test_the_served_text_graph_is_int8_in_every_layer(model_repository: Path) -> None:
    ops = _ops(model_repository / c.TEXT_ENCODER / "1" / "model.onnx")
    # multilingual-e5-small, 12 layers: Q|K|V (one MatMul), output and up projections per token; down weight-only
    assert ops.count("MatMulIntegerToFloat") == 3 * 12 and ops.count("MatMulNBits") == 12, ops
    assert ops.count("QuantizeLinear") == ops.count("Split") + 2 * 12 == 3 * 12 and "MatMulInteger" not in ops, ops
    assert ops.count("MatMul") == 2 * 12, "only attention's Q.K^T and P.V stay fp32"


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
