"""PyTorch references of reelserve's kernels: the spec that tests, benchmarks and CPU paths use.

Each op computes in fp32 and casts back, is written with standard ops only (so it exports to
ONNX and runs in ONNX Runtime), and defines the padding corner cases: a fully padded row gives
zeros, never NaN.
"""

from __future__ import annotations

import torch


def attention_reference(
    q: torch.Tensor,  # [B, H, Lq, D]
    k: torch.Tensor,  # [B, H, Lk, D]
    v: torch.Tensor,  # [B, H, Lk, D]
    key_padding_mask: torch.Tensor | None = None,  # [B, Lk] bool, True = real key
    *,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:  # [B, H, Lq, D]
    """Softmax attention with key padding; queries whose keys are all padding return zeros."""
    dtype = q.dtype
    q, k, v = q.float(), k.float(), v.float()
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # [B, H, Lq, Lk]
    valid = torch.ones_like(scores, dtype=torch.bool)
    if key_padding_mask is not None:
        valid = valid & key_padding_mask[:, None, None, :]
    if causal:
        lq, lk = scores.shape[-2], scores.shape[-1]
        valid = valid & torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(lk - lq)
    scores = scores.masked_fill(~valid, torch.finfo(torch.float32).min)
    probs = torch.softmax(scores, dim=-1) * valid.any(dim=-1, keepdim=True)
    return torch.matmul(probs, v).to(dtype)


def masked_mean_pool_reference(
    x: torch.Tensor,  # [B, L, D]
    mask: torch.Tensor,  # [B, L] bool, True = real
) -> torch.Tensor:  # [B, D]
    """Mean over the real positions; an all-padding row pools to zeros."""
    m = mask.to(torch.float32).unsqueeze(-1)  # [B, L, 1]
    total = (x.float() * m).sum(dim=1)
    count = m.sum(dim=1).clamp(min=1.0)
    return (total / count).to(x.dtype)


def l2_normalize_reference(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """x / max(||x||, eps) over the last dim; a zero vector stays zero."""
    xf = x.float()
    norm = torch.linalg.vector_norm(xf, dim=-1, keepdim=True).clamp(min=eps)
    return (xf / norm).to(x.dtype)

