"""reelserve's kernels, behind one dispatch point per op.

Models call only these functions. CUDA tensors run our Triton kernels (`attention.py`,
`mean_pool.py`, `l2_norm.py`); everything else runs the PyTorch reference
(`reference.py`), which is also what the CPU ONNX export records. `REELSERVE_KERNELS` forces a
path: `triton` (on CPU this needs `TRITON_INTERPRET=1`, the interpreter the tests use),
`reference`, or `auto` (the default); the rule is `use_triton` in `_dispatch.py`. Triton is
imported only when a kernel is about to run, so CPU serving never needs it.
Inside `custom_ops.as_custom_ops()` (the GPU export), attention and masked mean pool are
recorded as the custom ops `torch.ops.reelserve.*` instead, which TensorRT runs as plugins.
"""

from __future__ import annotations

import torch

from ._dispatch import fused_attention_eager, l2_normalize_eager, masked_mean_pool_eager, use_triton
from .custom_ops import custom_ops_enabled, fused_attention_op, masked_mean_pool_op

__all__ = ["fused_attention", "masked_mean_pool", "l2_normalize", "use_triton"]


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
    return fused_attention_eager(q, k, v, key_padding_mask, causal=causal, scale=scale)


def masked_mean_pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`[B, L, D]` -> `[B, D]`, averaging only where `mask` (`[B, L]`, bool) is True."""
    if custom_ops_enabled():
        return masked_mean_pool_op(x, mask.to(torch.int32))
    return masked_mean_pool_eager(x, mask)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit L2 norm over the last dim; a zero vector stays zero."""
    return l2_normalize_eager(x, eps)
