"""reelserve's kernels, behind one dispatch point per op.

Models call only these functions. Today every op runs its PyTorch reference
(`reelserve.kernels.reference`), which is also what the CPU ONNX export records; the Triton
kernels for CUDA tensors plug in here without touching the models.
"""

from __future__ import annotations

import torch

from .reference import attention_reference, l2_normalize_reference, masked_mean_pool_reference

__all__ = ["fused_attention", "masked_mean_pool", "l2_normalize"]


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
    return attention_reference(q, k, v, key_padding_mask, causal=causal, scale=scale)


def masked_mean_pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`[B, L, D]` -> `[B, D]`, averaging only where `mask` (`[B, L]`, bool) is True."""
    return masked_mean_pool_reference(x, mask)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit L2 norm over the last dim."""
    return l2_normalize_reference(x, eps)
