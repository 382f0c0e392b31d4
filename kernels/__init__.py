"""reelserve's kernels, behind one dispatch point per op.

Models call only these functions. CUDA tensors run our Triton kernels (`attention.py`,
`pooling.py`); everything else runs the PyTorch reference (`reference.py`), which is also what
the CPU ONNX export records. `REELSERVE_KERNELS` forces a path: `triton` (on CPU this needs
`TRITON_INTERPRET=1`, the interpreter the tests use), `reference`, or `auto` (the default).
Triton is imported only when a kernel is about to run, so CPU serving never needs it.
Inside `custom_ops.as_custom_ops()` (the GPU export), attention and pooling are recorded as
the custom ops `torch.ops.reelserve.*` instead, which TensorRT runs as plugins.
"""

from __future__ import annotations

import os

import torch

from .custom_ops import custom_ops_enabled, fused_attention_op, masked_mean_pool_op
from .reference import (
    attention_pool_reference,
    attention_reference,
    l2_normalize_reference,
    masked_mean_pool_reference,
)

__all__ = ["fused_attention", "masked_mean_pool", "attention_pool", "l2_normalize", "use_triton"]

_MODES = ("auto", "triton", "reference")


def use_triton(*tensors: torch.Tensor | None) -> bool:
    """The dispatch rule, in one place: Triton for CUDA tensors unless the env says otherwise."""
    mode = os.environ.get("REELSERVE_KERNELS", "auto")
    if mode not in _MODES:
        raise ValueError(f"REELSERVE_KERNELS must be one of {_MODES}, got {mode!r}")
    if mode == "reference" or torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return False  # exporters and compilers see the reference ops
    return mode == "triton" or all(t.is_cuda for t in tensors if t is not None)


def fused_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention over `[B, H, L, D]` tensors; `key_padding_mask` is `[B, Lk]`, True = real key."""
    if custom_ops_enabled():
        if key_padding_mask is None:
            key_padding_mask = torch.ones(k.shape[0], k.shape[2], dtype=torch.bool, device=k.device)
        return fused_attention_op(q, k, v, key_padding_mask.to(torch.int32), causal, scale or 0.0)
    if use_triton(q, k, v, key_padding_mask):
        from .attention import fused_attention_triton

        return fused_attention_triton(q, k, v, key_padding_mask, causal=causal, scale=scale)
    return attention_reference(q, k, v, key_padding_mask, causal=causal, scale=scale)


def masked_mean_pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`[B, L, D]` -> `[B, D]`, averaging only where `mask` (`[B, L]`, bool) is True."""
    if custom_ops_enabled():
        return masked_mean_pool_op(x, mask.to(torch.int32))
    if use_triton(x, mask):
        from .pooling import masked_mean_pool_triton

        return masked_mean_pool_triton(x, mask)
    return masked_mean_pool_reference(x, mask)


def attention_pool(x: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Learned-query multi-head pooling: `[B, L, H*Dh]` with `query` `[H, Dh]` -> `[B, H*Dh]`."""
    if use_triton(x, mask, query):
        from .pooling import attention_pool_triton

        return attention_pool_triton(x, mask, query)
    return attention_pool_reference(x, mask, query)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit L2 norm over the last dim; a zero vector stays zero."""
    if use_triton(x):
        from .pooling import l2_normalize_triton

        return l2_normalize_triton(x, eps)
    return l2_normalize_reference(x, eps)
