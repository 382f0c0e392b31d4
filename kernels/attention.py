"""Fused attention forward with key padding (FlashAttention-2 style), in Triton.

Algorithm: one program owns BLOCK_M queries of one (batch, head); it streams BLOCK_N keys and
values at a time, keeping the running row max `m_i`, row sum `l_i` and the unnormalised output
`acc` in registers (online softmax, Dao 2023), so the [Lq, Lk] score matrix never reaches memory.
Fused: the 1/sqrt(D) scale with log2(e) (so the kernel uses exp2), the key-padding mask (read as
one byte per key from a `[B, Lk]` tensor), the causal mask and the sequence-tail mask.

Short-video batches are ragged: padding is the common case. A query whose keys are all padding
gets zeros, never NaN (`m_i` stays -inf; the kernel substitutes 0 before exponentiating and
divides by a guarded `l_i`). The causal mask is aligned to the last key (query i sees keys
j <= i + Lk - Lq), as in `kernels.reference.attention_reference`, which is this op's spec.

References: Triton's `06-fused-attention.py` tutorial; FlashAttention-2 (Dao, 2023);
generative-recommenders' ragged HSTU attention (power-of-two length buckets in autotune keys).

Also here: the TensorRT plugin entry point `_attention_plugin_kernel` (compiled by
`reelserve.export` through `kernels.plugin`) and `aot_cases()` for `kernels.aot`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import triton
import triton.language as tl

from ._common import AOT_DTYPES, DTYPES, KernelCase, aot_signature, check_device, jit_fn

LOG2E = 1.4426950408889634
HEAD_DIMS = (32, 64, 128)
# fp32 inputs multiply as fp32, not TF32 (Triton's default for fp32 `tl.dot` on tensor cores, off
# by 2e-3 on unit-variance inputs): fp32 is what PyTorch's matmul and the reference compute, and
# the CPU export records. fp16/bf16 inputs are unaffected.
DOT_PRECISION = tl.constexpr("ieee")


# (BLOCK_M, BLOCK_N, num_warps, num_stages) per head dim: only tiles that compile for sm_80 and
# sm_90 with zero register spills and within shared memory (tests/kernels/test_aot_compile.py).
TILES = {
    32: [(64, 32, 4, 2), (64, 64, 4, 2), (64, 64, 4, 3), (128, 32, 8, 2)],
    64: [(64, 32, 4, 2), (64, 32, 4, 3), (128, 32, 8, 2), (128, 64, 8, 2), (128, 64, 8, 3)],
    128: [(64, 32, 4, 2), (64, 32, 4, 3), (32, 64, 4, 2)],
}


def _config(tile: tuple[int, int, int, int]) -> triton.Config:
    bm, bn, warps, stages = tile
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=warps, num_stages=stages)


def attention_configs(head_dim: int | None = None) -> list[triton.Config]:
    """Autotune space for one head dim (or the union); one small tile under the interpreter."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return [_config((32, 32, 4, 1))]
    tiles = TILES[head_dim] if head_dim is not None else sorted({t for ts in TILES.values() for t in ts})
    return [_config(t) for t in tiles]


def _prune(configs, named_args, **kwargs):
    """Keep this head dim's tiles, and no 128-query tile for a handful of queries."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return configs
    head_dim = kwargs.get("HEAD_DIM", named_args.get("HEAD_DIM"))
    allowed = {(t[0], t[1], t[2], t[3]) for t in TILES[head_dim]}
    kept = [
        c
        for c in configs
        if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) in allowed
        and c.kwargs["BLOCK_M"] <= max(named_args["LQ_BUCKET"], 64)
    ]
    return kept or [_config(TILES[head_dim][0])]


@triton.autotune(
    configs=attention_configs(),
    key=["LQ_BUCKET", "LK_BUCKET", "HEAD_DIM", "HAS_MASK", "CAUSAL"],
    prune_configs_by={"early_config_prune": _prune},
)
@triton.jit
def _attention_fwd_kernel(
    q_ptr,  # [B, H, Lq, D]
    k_ptr,  # [B, H, Lk, D]
    v_ptr,  # [B, H, Lk, D]
    mask_ptr,  # [B, Lk] int8 (1 = real key); unused when HAS_MASK is False
    o_ptr,  # [B, H, Lq, D]
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_mb, stride_mn,
    stride_ob, stride_oh, stride_om, stride_od,
    H, LQ, LK,
    qk_scale,  # softmax scale * log2(e)
    LQ_BUCKET, LK_BUCKET,  # power-of-two buckets of LQ/LK: autotune keys only
    HEAD_DIM: tl.constexpr,  # a power of two (the launcher checks), so no mask along D
    HAS_MASK: tl.constexpr,
    CAUSAL: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):  # fmt: skip
    tl.static_assert(BLOCK_M % 16 == 0 and BLOCK_N % 16 == 0)
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H

    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q_base = q_ptr + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    q = tl.load(
        q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
        mask=offs_m[:, None] < LQ,
        other=0.0,
    )

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    k_base = k_ptr + b.to(tl.int64) * stride_kb + h.to(tl.int64) * stride_kh
    v_base = v_ptr + b.to(tl.int64) * stride_vb + h.to(tl.int64) * stride_vh
    hi = LK
    if CAUSAL:  # keys past the last query's horizon are never visible to this tile
        hi = tl.minimum(LK, (start_m + 1) * BLOCK_M + LK - LQ)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok = offs_n < LK
        k = tl.load(
            k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
            mask=n_ok[None, :],
            other=0.0,
        )  # [HEAD_DIM, BLOCK_N]: K^T, loaded transposed
        key_ok = n_ok  # [BLOCK_N]: past the sequence or padding -> -inf bias on that column
        if HAS_MASK:
            real = tl.load(mask_ptr + b.to(tl.int64) * stride_mb + offs_n * stride_mn, mask=n_ok, other=0)
            key_ok = key_ok & (real != 0)
        s = tl.dot(q, k, input_precision=DOT_PRECISION) * qk_scale  # log2 domain
        s += tl.where(key_ok, 0.0, float("-inf"))[None, :]
        if CAUSAL:  # the only 2-D mask; columns only, otherwise (fewer live registers)
            s = tl.where(offs_n[None, :] <= offs_m[:, None] + (LK - LQ), s, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with no real key yet
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(
            v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
            mask=n_ok[:, None],
            other=0.0,
        )  # [BLOCK_N, HEAD_DIM]
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new

    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]  # fully padded rows: acc == 0 -> zeros
    o_base = o_ptr + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh
    tl.store(
        o_base + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od,
        out.to(o_ptr.dtype.element_ty),
        mask=offs_m[:, None] < LQ,
    )


_attention_fwd = _attention_fwd_kernel.fn  # the un-tuned body, callable from another kernel


# TensorRT plugin entry point (for the TensorRT plugins of `reelserve.export`): TensorRT's AOT
# plugins pass the input pointers, then int32 scalars, then the output pointers, on contiguous
# tensors, so this kernel derives the strides from the dims and runs the same body as the
# launcher above.
#   *{fp16|bf16|fp32} q, k, v [B, H, L, D], *i32 mask [B, Lk], i32 B, H, LQ, LK, *{as q} o,
#   constexpr QK_SCALE (softmax scale * log2 e), HEAD_DIM, CAUSAL, BLOCK_M, BLOCK_N
# Grid: (cdiv(LQ, BLOCK_M), B * H).
@triton.jit
def _attention_plugin_kernel(
    q_ptr, k_ptr, v_ptr, mask_ptr,
    B, H, LQ, LK,
    o_ptr,
    QK_SCALE: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    CAUSAL: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):  # fmt: skip
    _attention_fwd(
        q_ptr, k_ptr, v_ptr, mask_ptr, o_ptr,
        H * LQ * HEAD_DIM, LQ * HEAD_DIM, HEAD_DIM, 1,
        H * LK * HEAD_DIM, LK * HEAD_DIM, HEAD_DIM, 1,
        H * LK * HEAD_DIM, LK * HEAD_DIM, HEAD_DIM, 1,
        LK, 1,
        H * LQ * HEAD_DIM, LQ * HEAD_DIM, HEAD_DIM, 1,
        H, LQ, LK, QK_SCALE, 0, 0,
        HEAD_DIM=HEAD_DIM, HAS_MASK=True, CAUSAL=CAUSAL, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
    )  # fmt: skip


def attention_plugin_tiles(head_dim: int) -> list[tuple[int, int, int, int]]:
    """The tiles a TensorRT plugin offers as tactics (TensorRT times them at build time)."""
    if head_dim not in HEAD_DIMS:
        raise ValueError(f"head dim {head_dim} is not supported; use one of {HEAD_DIMS}")
    return list(TILES[head_dim])


def attention_plugin_kernel_spec(
    dtype: str, head_dim: int, tile: tuple[int, int, int, int], *, causal: bool = False, scale: float | None = None
) -> tuple[object, dict[str, str], dict[str, object], dict[str, int]]:
    """(kernel, signature, constexprs, options) for compiling `_attention_plugin_kernel`."""
    bm, bn, warps, stages = tile
    ptr = AOT_DTYPES[dtype]
    scale = head_dim**-0.5 if scale is None or scale <= 0 else scale
    constexprs = {"QK_SCALE": scale * LOG2E, "HEAD_DIM": head_dim, "CAUSAL": causal, "BLOCK_M": bm, "BLOCK_N": bn}
    signature = {"q_ptr": ptr, "k_ptr": ptr, "v_ptr": ptr, "mask_ptr": "*i32", "B": "i32", "H": "i32"}
    signature |= {"LQ": "i32", "LK": "i32", "o_ptr": ptr} | {name: "constexpr" for name in constexprs}
    return _attention_plugin_kernel, signature, constexprs, {"num_warps": warps, "num_stages": stages}


def aot_cases() -> Iterator[tuple[KernelCase, triton.Config]]:
    """Every (case, config) `kernels.aot` compiles: fp16/bf16 x each head dim x (padding mask |
    causal) x that head dim's tiles, with the unit feature strides specialised to 1."""
    fn = jit_fn(_attention_fwd_kernel)
    for dtype, head_dim, has_mask, causal in [
        (dt, d, m, c) for dt in ("fp16", "bf16") for d in HEAD_DIMS for m, c in ((True, False), (False, True))
    ]:
        pointers = {p: AOT_DTYPES[dtype] for p in ("q_ptr", "k_ptr", "v_ptr", "o_ptr")} | {"mask_ptr": "*i8"}
        for config in attention_configs(head_dim):
            constexprs = {"HEAD_DIM": head_dim, "HAS_MASK": has_mask, "CAUSAL": causal}
            constexprs |= {name: 1 for name in ("stride_qd", "stride_kd", "stride_vd", "stride_od", "stride_mn")}
            constexprs |= config.kwargs
            case = KernelCase(
                "fused_attention",
                fn,
                f"{dtype} d={head_dim} {'mask' if has_mask else 'causal'}",
                aot_signature(fn, pointers, ("qk_scale",), constexprs),
                constexprs,
                ("q_ptr", "k_ptr", "v_ptr", "o_ptr", "stride_qm", "stride_kn", "stride_vn", "stride_om"),
            )
            yield case, config


def fused_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """`[B, H, L, D]` attention; `key_padding_mask` `[B, Lk]` bool, True = real key. Spec: `attention_reference`."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k, v must be [B, H, L, D]; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    b, h, lq, d = q.shape
    if k.shape != v.shape or k.shape[:2] != (b, h) or k.shape[3] != d:
        raise ValueError(f"k and v must be [B={b}, H={h}, Lk, D={d}]; got {tuple(k.shape)}, {tuple(v.shape)}")
    if d not in HEAD_DIMS:
        raise ValueError(f"head dim {d} is not supported; use one of {HEAD_DIMS}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in DTYPES:
        raise ValueError(f"q, k, v must share one of fp32/fp16/bf16; got {q.dtype}, {k.dtype}, {v.dtype}")
    lk = k.shape[2]
    if key_padding_mask is not None and tuple(key_padding_mask.shape) != (b, lk):
        raise ValueError(f"key_padding_mask must be [B={b}, Lk={lk}]; got {tuple(key_padding_mask.shape)}")
    check_device("fused_attention_triton", *(t for t in (q, k, v, key_padding_mask) if t is not None))

    out = torch.empty_like(q)
    if lq == 0 or b * h == 0:
        return out
    mask = key_padding_mask.to(torch.int8) if key_padding_mask is not None else q.new_empty((1, 1), dtype=torch.int8)
    scale = d**-0.5 if scale is None else scale

    def grid(meta):
        return (triton.cdiv(lq, meta["BLOCK_M"]), b * h)

    _attention_fwd_kernel[grid](
        q, k, v, mask, out,
        *q.stride(), *k.stride(), *v.stride(), *mask.stride(), *out.stride(),
        h, lq, lk, scale * LOG2E,
        triton.next_power_of_2(lq), triton.next_power_of_2(lk),
        HEAD_DIM=d,
        HAS_MASK=key_padding_mask is not None, CAUSAL=causal,
    )  # fmt: skip
    return out
