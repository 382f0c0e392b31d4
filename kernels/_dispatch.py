"""The dispatch rule and each op's eager path: our Triton kernel on CUDA tensors, else the reference.

`reelserve.kernels` (the public dispatchers) and `custom_ops` (the bodies of the
`torch.ops.reelserve.*` ops) both call these functions, so the rule lives in one place and
neither of those modules imports the other's caller. The op modules are imported inside the
functions on purpose: they import triton, which CPU serving must not need.
"""

from __future__ import annotations

import os

import torch

from .reference import attention_reference, l2_normalize_reference, masked_mean_pool_reference

_MODES = ("auto", "triton", "reference")


def use_triton(*tensors: torch.Tensor | None) -> bool:
    """The dispatch rule, in one place: Triton for CUDA tensors unless the env says otherwise."""
    mode = os.environ.get("REELSERVE_KERNELS", "auto")
    if mode not in _MODES:
        raise ValueError(f"REELSERVE_KERNELS must be one of {_MODES}, got {mode!r}")
    if mode == "reference" or torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return False  # exporters and compilers see the reference ops
    return mode == "triton" or all(t.is_cuda for t in tensors if t is not None)


def fused_attention_eager(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """`[B, H, L, D]` attention, `key_padding_mask` `[B, Lk]` bool: Triton or the reference."""
    if use_triton(q, k, v, key_padding_mask):
        from .attention import fused_attention_triton  # lazy: imports triton

        return fused_attention_triton(q, k, v, key_padding_mask, causal=causal, scale=scale)
    return attention_reference(q, k, v, key_padding_mask, causal=causal, scale=scale)


def masked_mean_pool_eager(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`[B, L, D]`, `mask [B, L]` bool -> `[B, D]`: Triton or the reference."""
    if use_triton(x, mask):
        from .mean_pool import masked_mean_pool_triton  # lazy: imports triton

        return masked_mean_pool_triton(x, mask)
    return masked_mean_pool_reference(x, mask)


def l2_normalize_eager(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit L2 norm over the last dim: Triton or the reference."""
    if use_triton(x):
        from .l2_norm import l2_normalize_triton  # lazy: imports triton

        return l2_normalize_triton(x, eps)
    return l2_normalize_reference(x, eps)
