"""Our kernels as torch custom ops, and their ONNX function bodies, against the PyTorch reference.

The function bodies (`export.gpu.plugin_onnx.FusedAttention` / `MaskedMeanPool`) are what ONNX Runtime
runs when the GPU-target graphs are checked on CPU, so they must be the reference op for op,
corner cases included (causal alignment, explicit scale, rows with no real key).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from reelserve.kernels import fused_attention, masked_mean_pool
from reelserve.kernels.custom_ops import as_custom_ops, custom_ops_enabled
from reelserve.kernels.reference import attention_reference, masked_mean_pool_reference


def _mask(b: int, length: int) -> torch.Tensor:
    m = torch.ones(b, length, dtype=torch.bool)
    m[0, length // 2 :] = False
    if b > 2:
        m[2] = False  # a row with no real position
    return m


def test_context_routes_dispatch_through_the_custom_ops_and_restores() -> None:
    q = torch.randn(3, 2, 6, 32)
    mask = _mask(3, 6)
    assert not custom_ops_enabled()
    with as_custom_ops():
        assert custom_ops_enabled()
        program = torch.export.export(_Attend(), (q, mask))  # the op survives tracing whole
    assert not custom_ops_enabled()
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "reelserve.fused_attention.default" in targets, targets
    with as_custom_ops():
        got = fused_attention(q, q, q, mask)
        pooled = masked_mean_pool(q[:, 0], mask)
    torch.testing.assert_close(got, attention_reference(q, q, q, mask))
    torch.testing.assert_close(pooled, masked_mean_pool_reference(q[:, 0], mask))


class _Attend(torch.nn.Module):
    def forward(self, q, mask):
        return fused_attention(q, q, q, mask)


def _single_node_model(
    op_type: str, inputs: dict[str, tuple[int, list]], attrs: dict, out_rank: int
) -> onnx.ModelProto:
    from reelserve.export.gpu.plugin_onnx import DOMAIN, FUNCTIONS

    node = onnx.helper.make_node(op_type, list(inputs), ["out"], domain=DOMAIN, **attrs)
    graph = onnx.helper.make_graph(
        [node],
        "g",
        [onnx.helper.make_tensor_value_info(n, t, shape) for n, (t, shape) in inputs.items()],
        [onnx.helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [f"d{i}" for i in range(out_rank)])],
    )
    # IR 10, as the exported graphs carry: make_model's default follows the onnx package (IR 14 in
    # onnx 1.23), which an older ONNX Runtime refuses (1.30 reads up to 13, Triton 2.51's up to 10).
    model = onnx.helper.make_model(
        graph,
        ir_version=10,
        opset_imports=[onnx.helper.make_opsetid("", 18), onnx.helper.make_opsetid(DOMAIN, 1)],
        functions=[FUNCTIONS[op_type].to_function_proto()],
    )
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize(
    "lq,lk,causal,scale", [(5, 5, False, 0.0), (4, 9, True, 0.0), (7, 7, True, 0.3), (3, 1, False, 0.0)]
)
def test_fused_attention_function_body_is_the_reference(lq, lk, causal, scale) -> None:
    f = onnx.TensorProto.FLOAT
    i32 = onnx.TensorProto.INT32
    model = _single_node_model(
        "FusedAttention",
        {"q": (f, [3, 2, lq, 32]), "k": (f, [3, 2, lk, 32]), "v": (f, [3, 2, lk, 32]), "mask": (i32, [3, lk])},
        {"causal": int(causal), "scale": scale},
        out_rank=4,
    )
    g = torch.Generator().manual_seed(lq * 10 + lk)
    q, k, v = (torch.randn(3, 2, n, 32, generator=g) for n in (lq, lk, lk))
    mask = _mask(3, lk)
    feeds = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "mask": mask.to(torch.int32).numpy()}
    got = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    want = attention_reference(q, k, v, mask, causal=causal, scale=scale or None).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    assert not np.isnan(got).any() and np.abs(got[2]).max() == 0.0  # the row with no real key


def test_masked_mean_pool_function_body_is_the_reference() -> None:
    f, i32 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT32
    model = _single_node_model("MaskedMeanPool", {"x": (f, [3, 7, 16]), "mask": (i32, [3, 7])}, {}, out_rank=2)
    x = torch.randn(3, 7, 16)
    mask = _mask(3, 7)
    got = ort.InferenceSession(model.SerializeToString()).run(
        None, {"x": x.numpy(), "mask": mask.to(torch.int32).numpy()}
    )
    np.testing.assert_allclose(got[0], masked_mean_pool_reference(x, mask).numpy(), atol=1e-6)
