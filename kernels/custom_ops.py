"""reelserve's kernels as torch custom ops (`torch.ops.reelserve.*`): the form exporters keep whole.

Inside `as_custom_ops()`, the dispatch functions of `reelserve.kernels` call these ops instead
of tracing into the reference, so `torch.onnx.export` sees one `fused_attention` /
`masked_mean_pool` node per call, which `reelserve.export.gpu.plugin_onnx` turns into a
`reelserve::FusedAttention` / `reelserve::MaskedMeanPool` ONNX node and TensorRT runs as our
Triton kernel (the TensorRT plugins of `reelserve.export`). Masks cross the op boundary as int32 (1 = real):
TensorRT plugins take int32 everywhere, bool not on every version.

Eager calls run the same code as the dispatch functions (`_dispatch.py`: Triton on CUDA, else
the reference in `reference.py`); the fake implementations give shapes to the exporter.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

from ._dispatch import fused_attention_eager, masked_mean_pool_eager

_ENABLED = contextvars.ContextVar("reelserve_custom_ops", default=False)


def custom_ops_enabled() -> bool:
    return _ENABLED.get()


@contextlib.contextmanager
def as_custom_ops(enabled: bool = True) -> Iterator[None]:
    """Route `fused_attention` and `masked_mean_pool` through the custom ops while exporting."""
    token = _ENABLED.set(enabled)
    try:
        yield
    finally:
        _ENABLED.reset(token)


@torch.library.custom_op("reelserve::fused_attention", mutates_args=())
def fused_attention_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, causal: bool, scale: float
) -> torch.Tensor:
    """`[B, H, L, D]` attention with an int32 `[B, Lk]` key mask; `scale <= 0` means 1/sqrt(D)."""
    return fused_attention_eager(q, k, v, mask != 0, causal=causal, scale=scale if scale > 0 else None)


@fused_attention_op.register_fake
def _(q, k, v, mask, causal, scale):
    return torch.empty_like(q)


@torch.library.custom_op("reelserve::masked_mean_pool", mutates_args=())
def masked_mean_pool_op(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`[B, L, D]` with an int32 `[B, L]` mask -> `[B, D]`."""
    return masked_mean_pool_eager(x, mask != 0)


@masked_mean_pool_op.register_fake
def _(x, mask):
    return x.new_empty((x.shape[0], x.shape[2]))
