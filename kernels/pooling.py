"""Pooling kernels: masked mean pool (optionally fused with L2 normalisation), learned-query
multi-head attention pool, and row-wise L2 normalisation.

Masked mean pool, `x [B, L, D], mask [B, L] -> [B, D]`
    One program owns one batch row and one `BLOCK_D` slice of the features and walks the
    sequence in `BLOCK_L` chunks: it loads the mask chunk, loads only the real positions of x
    (padding is never read, so garbage or NaN there cannot leak in), and accumulates the column
    sum and the real-token count in fp32. The mean is `sum / max(count, 1)`, so an all-padding
    row gives zeros. With `normalize=True` the L2 normalisation `mean / max(||mean||, eps)` is
    fused into the epilogue; the norm needs every feature, so then one program owns the whole
    row (`BLOCK_D = next_power_of_2(D)`, `D <= MAX_FUSED_D`) and the grid is `(B, 1)` instead of
    `(B, cdiv(D, BLOCK_D))`. Fused: masking, the sum, the division, the norm and the cast back.

Attention pool, `x [B, L, H * Dh], mask [B, L], query [H, Dh] -> [B, H * Dh]`
    Keys = values = x split into H heads; one learned query per head. One program owns one
    (batch row, head) pair and runs an online (flash-style) softmax over `BLOCK_L` chunks, all in
    fp32: running max `m`, running denominator `l` and the unnormalised output `acc` are
    rescaled by `alpha = exp2(m_old - m_new)` whenever the max grows. `log2(e)` is folded into
    the query scale, so the scores are already in the log2 domain and `exp2` is used throughout.
    While every position seen so far is padding the running max is -inf; the shift then uses 0
    instead of -inf, so `exp2(-inf - 0) = 0` rather than `exp2(-inf - -inf) = NaN`, and a row
    with no real position ends with `l = 0` and stores zeros. Fused: scores, masking, softmax,
    the weighted sum and the cast back; x is read from memory exactly once.

L2 normalise, `x [..., D] -> [..., D]`
    One program normalises `BLOCK_R` rows held entirely in registers (`BLOCK_D =
    next_power_of_2(D)`): sum of squares in fp32, `x / max(||x||, eps)`, so a zero row stays zero.

Every kernel takes explicit strides (`stride_xb, stride_xl, stride_xd`), so non-contiguous
inputs such as transposed views are read in place. Outputs are freshly allocated and
contiguous. The mask is a bool tensor reinterpreted (zero-copy) as uint8.

Autotuning: the config functions below are the single source of the tile/warp choices; the
autotuners prune them with the problem size, and their keys bucket the sequence length to a
power of two (`L_BUCKET = next_power_of_2(L)`, passed to the kernel only as a key), so a ragged
stream of batches tunes once per bucket instead of once per length. Under the Triton
interpreter (`TRITON_INTERPRET=1`) each op gets one fixed config: timing the interpreter is
meaningless. `pooling_configs()` lists the full config set of every autotuned kernel for
ahead-of-time compilation.

References: the PyTorch specs in `reelserve.kernels.reference` (`masked_mean_pool_reference`,
`attention_pool_reference`, `l2_normalize_reference`); the online softmax of FlashAttention
(Dao et al., 2022) as written in the Triton fused-attention tutorial.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
import triton
import triton.language as tl

__all__ = [
    "MAX_FUSED_D",
    "MAX_HEAD_DIM",
    "aot_cases",
    "attention_pool_configs",
    "attention_pool_triton",
    "l2_normalize_config",
    "l2_normalize_triton",
    "masked_mean_pool_configs",
    "masked_mean_pool_triton",
    "pooling_configs",
]

# Read once at import: the interpreter has to be chosen before any kernel is defined anyway.
_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_LOG2E = math.log2(math.e)

# Largest feature dim held in one program's registers (fused-normalise mean pool, L2 normalise).
MAX_FUSED_D = 16384
# Largest head dim of the attention pool (a [16, Dh] tile must fit the tile budget).
MAX_HEAD_DIM = 1024
# Largest tile (elements) one program loads per step; bounds register pressure.
_MAX_TILE = 16384
MAX_TILE: tl.constexpr = tl.constexpr(_MAX_TILE)  # the same, visible inside kernels
# Attention pool: at most this many x elements per thread (128 spills on sm_80 / sm_90).
_MAX_ATTN_PER_THREAD = 64


# ----------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------


def masked_mean_pool_configs(*, normalize: bool = False, full: bool | None = None) -> list[triton.Config]:
    """Tile/warp configs of the masked mean pool kernel.

    `normalize=False` tunes `BLOCK_L`, `BLOCK_D` and `num_warps` (grid splits D); with
    `normalize=True`, `BLOCK_D` is fixed by the launcher to `next_power_of_2(D)` and only
    `BLOCK_L` and `num_warps` are tuned. `full=None` means the whole set unless running under
    the interpreter, where a single config is returned.
    """
    full = not _INTERPRET if full is None else full
    if normalize:
        if not full:
            return [triton.Config({"BLOCK_L": 16}, num_warps=4)]
        return [
            triton.Config({"BLOCK_L": block_l}, num_warps=num_warps)
            for block_l in (1, 4, 8, 16, 32, 64)
            for num_warps in (4, 8, 16)
        ]
    if not full:
        return [triton.Config({"BLOCK_L": 64, "BLOCK_D": 128}, num_warps=4)]
    return [
        triton.Config({"BLOCK_L": block_l, "BLOCK_D": block_d}, num_warps=num_warps)
        for block_l in (16, 32, 64)
        for block_d in (64, 128, 256)
        for num_warps in (2, 4, 8)
        if 2048 <= block_l * block_d <= 8192
    ]


def attention_pool_configs(*, full: bool | None = None) -> list[triton.Config]:
    """Tile/warp configs of the attention pool kernel (`BLOCK_DH` is fixed by the launcher)."""
    full = not _INTERPRET if full is None else full
    if not full:
        return [triton.Config({"BLOCK_L": 64}, num_warps=4)]
    return [
        triton.Config({"BLOCK_L": block_l}, num_warps=num_warps)
        for block_l in (16, 32, 64, 128)
        for num_warps in (1, 2, 4, 8)
    ]


def l2_normalize_config(rows: int, d: int) -> triton.Config:
    """The (heuristic, untuned) launch config of the L2 normalise kernel for `[rows, d]`.

    A single-pass row op has little to tune: hold whole rows, pack rows until a program moves
    about 4K elements, one warp per 256 elements.
    """
    block_d = max(16, triton.next_power_of_2(d))
    block_r = max(1, min(16, 4096 // block_d, triton.next_power_of_2(max(rows, 1))))
    num_warps = max(1, min(16, block_r * block_d // 256))
    return triton.Config({"BLOCK_R": block_r, "BLOCK_D": block_d}, num_warps=num_warps)


def pooling_configs() -> dict[str, list[triton.Config]]:
    """Every autotuned kernel of this module -> its full config list (for AOT compilation).

    Keys are those of `aot_cases()`: `_masked_mean_pool_kernel` with NORMALIZE False / True and
    `_attention_pool_kernel`. The L2 normalise kernel is not tuned, see `l2_normalize_config`.
    """
    return {
        "masked_mean_pool": masked_mean_pool_configs(normalize=False, full=True),
        "masked_mean_pool_normalize": masked_mean_pool_configs(normalize=True, full=True),
        "attention_pool": attention_pool_configs(full=True),
    }


def _prune_mean_pool(configs, named_args, **kwargs):
    """Drop tiles much longer than the sequence or much wider than the features."""
    l_bucket, d = named_args["L_BUCKET"], named_args["D"]
    block_d_fixed = kwargs.get("BLOCK_D")  # set by the launcher when normalising
    d_cap = max(64, triton.next_power_of_2(d))
    kept = []
    for cfg in configs:
        block_l = cfg.kwargs["BLOCK_L"]
        block_d = cfg.kwargs.get("BLOCK_D", block_d_fixed)
        tile = block_l * block_d
        if block_l > max(16, l_bucket) or block_d > d_cap or tile > _MAX_TILE:
            continue
        if tile < 32 * cfg.num_warps:  # fewer elements than threads
            continue
        kept.append(cfg)
    return kept or [min(configs, key=lambda c: c.kwargs["BLOCK_L"] * c.kwargs.get("BLOCK_D", block_d_fixed))]


def _prune_attention_pool(configs, named_args, **kwargs):
    """Drop tiles longer than the sequence, and tiles that give a thread more than
    `_MAX_ATTN_PER_THREAD` elements: the AOT compile shows those spill registers (the x tile
    is live across the score reduction and the weighted sum)."""
    l_bucket, block_dh = named_args["L_BUCKET"], kwargs["BLOCK_DH"]

    def per_thread(cfg: triton.Config) -> float:
        return cfg.kwargs["BLOCK_L"] * block_dh / (32 * cfg.num_warps)

    kept = [
        cfg
        for cfg in configs
        if cfg.kwargs["BLOCK_L"] <= max(16, l_bucket)
        and cfg.kwargs["BLOCK_L"] * block_dh <= _MAX_TILE
        and 1 <= per_thread(cfg) <= _MAX_ATTN_PER_THREAD
    ]
    return kept or [min(configs, key=lambda c: (per_thread(c), c.kwargs["BLOCK_L"]))]


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------


# AOT signature (triton.tools.compile), in argument order:
#   *{fp32|fp16|bf16} x, *u8 mask, *{same as x} out,
#   i32 L, i32 D, i32 stride_xb, i32 stride_xl, i32 stride_xd, i32 stride_mb, i32 stride_ml,
#   i32 stride_ob, i32 stride_od, i32 L_BUCKET, fp32 eps,
#   constexpr NORMALIZE (0/1), constexpr BLOCK_L, constexpr BLOCK_D
# Grid: (B, cdiv(D, BLOCK_D)), or (B, 1) with NORMALIZE.
@triton.jit(do_not_specialize=["L", "L_BUCKET"])
def _masked_mean_pool_kernel(
    x_ptr,  # [B, L, D], any strides
    mask_ptr,  # [B, L] uint8 (bool viewed as bytes), any strides
    out_ptr,  # [B, D]
    L,
    D,
    stride_xb,
    stride_xl,
    stride_xd,
    stride_mb,
    stride_ml,
    stride_ob,
    stride_od,
    L_BUCKET,  # next_power_of_2(L): autotune key only
    eps,
    NORMALIZE: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    tl.static_assert(BLOCK_L * BLOCK_D <= MAX_TILE, "x tile too large for one program's registers")
    pid_b = tl.program_id(0).to(tl.int64)  # int64: pid_b * stride_xb may pass 2**31
    pid_d = tl.program_id(1)

    offs_l = tl.arange(0, BLOCK_L)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    x_ptrs = x_ptr + pid_b * stride_xb + offs_l[:, None] * stride_xl + offs_d[None, :] * stride_xd
    m_ptrs = mask_ptr + pid_b * stride_mb + offs_l * stride_ml

    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    count = tl.zeros([BLOCK_L], dtype=tl.int32)
    for start in range(0, L, BLOCK_L):
        l_ok = start + offs_l < L
        real = tl.load(m_ptrs, mask=l_ok, other=0) != 0  # [BLOCK_L]
        x = tl.load(x_ptrs, mask=real[:, None] & d_ok[None, :], other=0.0)  # padding is never read
        acc += tl.sum(x.to(tl.float32), axis=0)
        count += real.to(tl.int32)
        x_ptrs += BLOCK_L * stride_xl
        m_ptrs += BLOCK_L * stride_ml

    n = tl.sum(count, axis=0).to(tl.float32)
    mean = acc / tl.maximum(n, 1.0)  # all padding -> 0 / 1
    if NORMALIZE:
        norm = tl.sqrt(tl.sum(mean * mean, axis=0))  # lanes past D are 0
        mean = mean / tl.maximum(norm, eps)
    tl.store(out_ptr + pid_b * stride_ob + offs_d * stride_od, mean.to(out_ptr.dtype.element_ty), mask=d_ok)


# AOT signature, in argument order:
#   *{fp32|fp16|bf16} x, *u8 mask, *{fp32|fp16|bf16} query, *{same as x} out,
#   i32 L, i32 DH, i32 stride_xb, i32 stride_xl, i32 stride_xd, i32 stride_mb, i32 stride_ml,
#   i32 stride_qh, i32 stride_qd, i32 stride_ob, i32 stride_od, i32 L_BUCKET, fp32 qk_scale,
#   constexpr BLOCK_L, constexpr BLOCK_DH
# Grid: (B, H).
@triton.jit(do_not_specialize=["L", "L_BUCKET"])
def _attention_pool_kernel(
    x_ptr,  # [B, L, H * DH], any strides
    mask_ptr,  # [B, L] uint8 (bool viewed as bytes), any strides
    q_ptr,  # [H, DH], any strides
    out_ptr,  # [B, H * DH]
    L,
    DH,
    stride_xb,
    stride_xl,
    stride_xd,
    stride_mb,
    stride_ml,
    stride_qh,
    stride_qd,
    stride_ob,
    stride_od,
    L_BUCKET,  # next_power_of_2(L): autotune key only
    qk_scale,  # softmax scale * log2(e): scores come out in the log2 domain
    BLOCK_L: tl.constexpr,
    BLOCK_DH: tl.constexpr,
):
    tl.static_assert(BLOCK_L * BLOCK_DH <= MAX_TILE, "x tile too large for one program's registers")
    pid_b = tl.program_id(0).to(tl.int64)
    pid_h = tl.program_id(1)

    offs_l = tl.arange(0, BLOCK_L)
    offs_d = tl.arange(0, BLOCK_DH)
    d_ok = offs_d < DH
    cols = pid_h * DH + offs_d  # this head's feature columns
    q = tl.load(q_ptr + pid_h * stride_qh + offs_d * stride_qd, mask=d_ok, other=0.0)
    q = q.to(tl.float32) * qk_scale  # [BLOCK_DH]
    x_ptrs = x_ptr + pid_b * stride_xb + offs_l[:, None] * stride_xl + cols[None, :] * stride_xd
    m_ptrs = mask_ptr + pid_b * stride_mb + offs_l * stride_ml

    m_i = tl.full([], float("-inf"), dtype=tl.float32)  # running max (log2 domain)
    l_i = tl.zeros([], dtype=tl.float32)  # running softmax denominator
    acc = tl.zeros([BLOCK_DH], dtype=tl.float32)  # running unnormalised output
    for start in range(0, L, BLOCK_L):
        l_ok = start + offs_l < L
        real = tl.load(m_ptrs, mask=l_ok, other=0) != 0  # [BLOCK_L]
        x = tl.load(x_ptrs, mask=real[:, None] & d_ok[None, :], other=0.0).to(tl.float32)  # [BLOCK_L, BLOCK_DH]
        s = tl.sum(x * q[None, :], axis=1)  # [BLOCK_L]
        s = tl.where(real, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=0))
        # No real position yet: shift by 0, not -inf, so exp2 never sees -inf - -inf = NaN.
        m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_shift)  # rescales the old state; 0 while it is empty
        p = tl.exp2(s - m_shift)  # [BLOCK_L], 0 at padding
        l_i = l_i * alpha + tl.sum(p, axis=0)
        acc = acc * alpha + tl.sum(p[:, None] * x, axis=0)
        m_i = m_new
        x_ptrs += BLOCK_L * stride_xl
        m_ptrs += BLOCK_L * stride_ml

    out = acc / tl.where(l_i > 0.0, l_i, 1.0)  # no real position -> zeros
    tl.store(out_ptr + pid_b * stride_ob + cols * stride_od, out.to(out_ptr.dtype.element_ty), mask=d_ok)


# AOT signature, in argument order:
#   *{fp32|fp16|bf16} x, *{same as x} out, i32 R, i32 D, i32 stride_xr, i32 stride_xd,
#   i32 stride_or, i32 stride_od, fp32 eps, constexpr BLOCK_R, constexpr BLOCK_D
# Grid: (cdiv(R, BLOCK_R),).
@triton.jit
def _l2_normalize_kernel(
    x_ptr,  # [R, D], any strides
    out_ptr,  # [R, D]
    R,
    D,
    stride_xr,
    stride_xd,
    stride_or,
    stride_od,
    eps,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    tl.static_assert(BLOCK_R * BLOCK_D <= MAX_TILE, "x tile too large for one program's registers")
    offs_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_d = tl.arange(0, BLOCK_D)
    ok = (offs_r < R)[:, None] & (offs_d < D)[None, :]
    x = tl.load(x_ptr + offs_r[:, None] * stride_xr + offs_d[None, :] * stride_xd, mask=ok, other=0.0)
    x = x.to(tl.float32)  # [BLOCK_R, BLOCK_D]
    norm = tl.sqrt(tl.sum(x * x, axis=1))  # [BLOCK_R]
    y = x / tl.maximum(norm, eps)[:, None]  # zero row -> 0 / eps = 0
    tl.store(
        out_ptr + offs_r[:, None] * stride_or + offs_d[None, :] * stride_od, y.to(out_ptr.dtype.element_ty), mask=ok
    )


# TensorRT plugin entry point (`reelserve.export.trt_plugins`): input pointers, int32 scalars,
# output pointer, on contiguous tensors (see `attention._attention_plugin_kernel`).
#   *{fp16|bf16|fp32} x [B, L, D], *i32 mask [B, L], i32 L, i32 D, *{as x} out [B, D],
#   constexpr BLOCK_L, BLOCK_D
# Grid: (B, cdiv(D, BLOCK_D)).
@triton.jit
def _masked_mean_pool_plugin_kernel(x_ptr, mask_ptr, L, D, out_ptr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr):
    _masked_mean_pool_kernel(
        x_ptr, mask_ptr, out_ptr, L, D, L * D, D, 1, L, 1, D, 1, 0, 1e-12,
        NORMALIZE=False, BLOCK_L=BLOCK_L, BLOCK_D=BLOCK_D,
    )  # fmt: skip


def masked_mean_pool_plugin_configs() -> list[triton.Config]:
    """The configs a TensorRT plugin offers as tactics: the launcher's autotune space."""
    return masked_mean_pool_configs(normalize=False, full=True)


def masked_mean_pool_plugin_kernel_spec(
    dtype: str, config: triton.Config
) -> tuple[object, dict[str, str], dict[str, object], dict[str, int]]:
    """(kernel, signature, constexprs, options) for compiling `_masked_mean_pool_plugin_kernel`."""
    ptr = _AOT_DTYPES[dtype]
    signature = {"x_ptr": ptr, "mask_ptr": "*i32", "L": "i32", "D": "i32", "out_ptr": ptr}
    signature |= {name: "constexpr" for name in config.kwargs}
    return _masked_mean_pool_plugin_kernel, signature, dict(config.kwargs), {"num_warps": config.num_warps}


_masked_mean_pool_split_d = triton.autotune(
    configs=masked_mean_pool_configs(normalize=False),
    key=["L_BUCKET", "D"],
    prune_configs_by={"early_config_prune": _prune_mean_pool},
)(_masked_mean_pool_kernel)
_masked_mean_pool_whole_d = triton.autotune(
    configs=masked_mean_pool_configs(normalize=True),
    key=["L_BUCKET", "D"],
    prune_configs_by={"early_config_prune": _prune_mean_pool},
)(_masked_mean_pool_kernel)
_attention_pool_tuned = triton.autotune(
    configs=attention_pool_configs(),
    key=["L_BUCKET", "DH"],
    prune_configs_by={"early_config_prune": _prune_attention_pool},
)(_attention_pool_kernel)


# ----------------------------------------------------------------------------------------------
# Ahead-of-time compilation cases (consumed by `reelserve.kernels.aot`)
# ----------------------------------------------------------------------------------------------

_AOT_DTYPES = {"fp16": "*fp16", "bf16": "*bf16", "fp32": "*fp32"}
_AOT_L_BUCKET = 1 << 20  # prune as for a long sequence: keeps every config legal for some length


def aot_cases() -> dict[str, Callable[[], Iterator[tuple[Any, triton.Config]]]]:
    """`{kernel name: () -> iterator of (aot.KernelCase, config)}` for `reelserve.kernels.aot`.

    One case per dtype x (feature / head dim where it is a constexpr) x every config the
    autotuner could pick there (the prune filter applied for a long sequence), with the
    unit-stride feature dims specialised to 1 as they are at run time for contiguous inputs.
    """
    from .aot import KernelCase

    def _jit(kernel) -> triton.runtime.JITFunction:
        fn = kernel.fn if isinstance(kernel, triton.runtime.Autotuner) else kernel
        if _INTERPRET or not isinstance(fn, triton.runtime.JITFunction):
            raise RuntimeError("kernels are interpreted (TRITON_INTERPRET=1); run the AOT compile without it")
        return fn

    def signature(fn, pointers: dict[str, str], floats: tuple[str, ...], constexprs: dict) -> dict[str, str]:
        sig = {name: "i32" for name in fn.arg_names}
        sig.update(pointers)
        sig.update({name: "fp32" for name in floats})
        sig.update({name: "constexpr" for name in constexprs})
        return sig

    def mean_pool_cases(normalize: bool):
        fn = _jit(_masked_mean_pool_kernel)
        dims = (384, 1280) if normalize else (384,)  # BLOCK_D is a constexpr only when normalising
        for dtype, d in ((dt, d) for dt in _AOT_DTYPES for d in dims):
            block_d = max(16, triton.next_power_of_2(d))
            named = {"L_BUCKET": _AOT_L_BUCKET, "D": d}
            fixed = {"BLOCK_D": block_d} if normalize else {}
            configs = _prune_mean_pool(masked_mean_pool_configs(normalize=normalize, full=True), named, **fixed)
            for config in configs:
                constexprs = {"NORMALIZE": normalize, "stride_xd": 1, "stride_ml": 1, "stride_od": 1}
                constexprs.update({**config.kwargs, **fixed})
                pointers = {"x_ptr": _AOT_DTYPES[dtype], "mask_ptr": "*u8", "out_ptr": _AOT_DTYPES[dtype]}
                case = KernelCase(
                    "masked_mean_pool" + ("_normalize" if normalize else ""),
                    fn,
                    f"{dtype} d={d}" if normalize else f"{dtype} d%16=0",
                    signature(fn, pointers, ("eps",), constexprs),
                    constexprs,
                    ("x_ptr", "mask_ptr", "out_ptr", "D", "stride_xb", "stride_xl", "stride_ob"),
                )
                yield case, config

    def attention_pool_cases():
        fn = _jit(_attention_pool_kernel)
        for dtype, dh in ((dt, dh) for dt in _AOT_DTYPES for dh in (32, 64, 128)):
            block_dh = max(16, triton.next_power_of_2(dh))
            named = {"L_BUCKET": _AOT_L_BUCKET, "DH": dh}
            for config in _prune_attention_pool(attention_pool_configs(full=True), named, BLOCK_DH=block_dh):
                constexprs = {"stride_xd": 1, "stride_ml": 1, "stride_qd": 1, "stride_od": 1, "BLOCK_DH": block_dh}
                constexprs.update(config.kwargs)
                pointers = {p: _AOT_DTYPES[dtype] for p in ("x_ptr", "q_ptr", "out_ptr")} | {"mask_ptr": "*u8"}
                case = KernelCase(
                    "attention_pool",
                    fn,
                    f"{dtype} dh={dh}",
                    signature(fn, pointers, ("qk_scale",), constexprs),
                    constexprs,
                    ("x_ptr", "mask_ptr", "q_ptr", "out_ptr", "DH", "stride_xb", "stride_xl", "stride_qh", "stride_ob"),
                )
                yield case, config

    def l2_normalize_cases():
        fn = _jit(_l2_normalize_kernel)
        for dtype, d, rows in ((dt, d, r) for dt in _AOT_DTYPES for d in (384, 1280, MAX_FUSED_D) for r in (1, 4096)):
            config = l2_normalize_config(rows, d)
            constexprs = {"stride_xd": 1, "stride_od": 1, **config.kwargs}
            pointers = {"x_ptr": _AOT_DTYPES[dtype], "out_ptr": _AOT_DTYPES[dtype]}
            case = KernelCase(
                "l2_normalize",
                fn,
                f"{dtype} d={d} rows={rows}",
                signature(fn, pointers, ("eps",), constexprs),
                constexprs,
                ("x_ptr", "out_ptr", "D", "stride_xr", "stride_or"),
            )
            yield case, config

    return {
        "l2_normalize": l2_normalize_cases,
        "masked_mean_pool": lambda: mean_pool_cases(normalize=False),
        "masked_mean_pool_normalize": lambda: mean_pool_cases(normalize=True),
        "attention_pool": attention_pool_cases,
    }


# ----------------------------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------------------------


def _check_x_mask(name: str, x: torch.Tensor, mask: torch.Tensor) -> None:
    if x.ndim != 3:
        raise ValueError(f"{name}: x must be [B, L, D], got shape {tuple(x.shape)}")
    if mask.shape != x.shape[:2]:
        raise ValueError(
            f"{name}: mask must be [B, L] = {tuple(x.shape[:2])} for x of shape {tuple(x.shape)}, "
            f"got mask of shape {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise ValueError(f"{name}: mask must be torch.bool, got {mask.dtype} (shape {tuple(mask.shape)})")
    if x.dtype not in _DTYPES:
        raise ValueError(f"{name}: x must be float32/float16/bfloat16, got {x.dtype} (shape {tuple(x.shape)})")
    _check_device(name, x, mask)


def _check_device(name: str, *tensors: torch.Tensor) -> None:
    device = tensors[0].device
    if any(t.device != device for t in tensors):
        raise ValueError(f"{name}: tensors on different devices: {[str(t.device) for t in tensors]}")
    if device.type != "cuda" and not _INTERPRET:
        raise ValueError(f"{name}: needs CUDA tensors (or TRITON_INTERPRET=1), got device {device}")


def _launch_masked_mean_pool(
    x: torch.Tensor, mask: torch.Tensor, out: torch.Tensor, normalize: bool, config: triton.Config | None = None
) -> None:
    """Launch into `out`; `config` pins one config instead of autotuning (tests, benchmarks)."""
    b, length, d = x.shape
    m = mask.view(torch.uint8)  # zero-copy: bool is one byte
    args = (x, m, out, length, d, *x.stride(), *m.stride(), *out.stride(), triton.next_power_of_2(length), 1e-12)
    fixed = {"BLOCK_D": max(16, triton.next_power_of_2(d))} if normalize else {}
    if config is None:
        kernel = _masked_mean_pool_whole_d if normalize else _masked_mean_pool_split_d
        kernel[lambda meta: (b, triton.cdiv(d, meta["BLOCK_D"]))](*args, NORMALIZE=normalize, **fixed)
    else:
        meta = {**config.kwargs, **fixed}
        _masked_mean_pool_kernel[(b, triton.cdiv(d, meta["BLOCK_D"]))](
            *args, NORMALIZE=normalize, **meta, num_warps=config.num_warps, num_stages=config.num_stages
        )


def masked_mean_pool_triton(x: torch.Tensor, mask: torch.Tensor, *, normalize: bool = False) -> torch.Tensor:
    """`x [B, L, D]`, `mask [B, L]` bool (True = real) -> `[B, D]` in x.dtype.

    Mean over the real positions, accumulated in fp32; an all-padding row gives zeros. With
    `normalize=True` the result is also L2-normalised (`D <= MAX_FUSED_D`) in the same kernel.
    """
    _check_x_mask("masked_mean_pool_triton", x, mask)
    b, _, d = x.shape
    if normalize and d > MAX_FUSED_D:
        raise ValueError(
            f"masked_mean_pool_triton(normalize=True) holds a whole row per program: D must be <= {MAX_FUSED_D}, "
            f"got x of shape {tuple(x.shape)}"
        )
    out = torch.empty((b, d), dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    _launch_masked_mean_pool(x, mask, out, normalize)
    return out


def _launch_attention_pool(
    x: torch.Tensor,
    mask: torch.Tensor,
    query: torch.Tensor,
    out: torch.Tensor,
    scale: float,
    config: triton.Config | None = None,
) -> None:
    """Launch into `out`; `config` pins one config instead of autotuning (tests, benchmarks)."""
    b, length, _ = x.shape
    h, dh = query.shape
    m = mask.view(torch.uint8)
    args = (x, m, query, out, length, dh, *x.stride(), *m.stride(), *query.stride(), *out.stride())
    args = (*args, triton.next_power_of_2(length), scale * _LOG2E)
    block_dh = max(16, triton.next_power_of_2(dh))
    if config is None:
        _attention_pool_tuned[(b, h)](*args, BLOCK_DH=block_dh)
    else:
        _attention_pool_kernel[(b, h)](
            *args, BLOCK_DH=block_dh, **config.kwargs, num_warps=config.num_warps, num_stages=config.num_stages
        )


def attention_pool_triton(x: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """`x [B, L, D]`, `mask [B, L]` bool, `query [H, Dh]` with `D == H * Dh` -> `[B, D]` in x.dtype.

    Per head h: softmax over the real positions of `Dh**-0.5 * <query[h], x[b, l, head h]>`,
    then the weighted sum of `x[b, l, head h]` (keys = values = x). No real position -> zeros.
    """
    _check_x_mask("attention_pool_triton", x, mask)
    if query.ndim != 2 or query.shape[0] * query.shape[1] != x.shape[2]:
        raise ValueError(
            f"attention_pool_triton: query must be [H, Dh] with H * Dh == D; got query of shape "
            f"{tuple(query.shape)} for x of shape {tuple(x.shape)}"
        )
    if query.shape[1] > MAX_HEAD_DIM:
        raise ValueError(
            f"attention_pool_triton: head dim must be <= {MAX_HEAD_DIM}, got query of shape {tuple(query.shape)}"
        )
    if query.dtype not in _DTYPES:
        raise ValueError(f"attention_pool_triton: query must be float32/float16/bfloat16, got {query.dtype}")
    _check_device("attention_pool_triton", x, query)
    b, _, d = x.shape
    out = torch.empty((b, d), dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    _launch_attention_pool(x, mask, query, out, query.shape[1] ** -0.5)
    return out


def l2_normalize_triton(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """`x [..., D]` -> `x / max(||x||, eps)` over the last dim, same shape and dtype.

    Norm in fp32; a zero row stays zero. Leading dims are flattened with `reshape`, which is a
    view (strides passed through) whenever the layout allows and a copy otherwise.
    """
    if x.ndim < 1:
        raise ValueError(f"l2_normalize_triton: x must have a last dim, got shape {tuple(x.shape)}")
    if x.dtype not in _DTYPES:
        raise ValueError(f"l2_normalize_triton: x must be float32/float16/bfloat16, got {x.dtype}")
    d = x.shape[-1]
    if d > MAX_FUSED_D:
        raise ValueError(
            f"l2_normalize_triton holds a whole row per program: D must be <= {MAX_FUSED_D}, got x of shape "
            f"{tuple(x.shape)}"
        )
    _check_device("l2_normalize_triton", x)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    x2 = x.reshape(-1, d)  # [R, D]
    o2 = out.view(-1, d)
    rows = x2.shape[0]
    cfg = l2_normalize_config(rows, d)
    block_r = cfg.kwargs["BLOCK_R"]
    block_d = cfg.kwargs["BLOCK_D"]
    _l2_normalize_kernel[(triton.cdiv(rows, block_r),)](
        x2, o2, rows, d, *x2.stride(), *o2.stride(), eps, BLOCK_R=block_r, BLOCK_D=block_d, num_warps=cfg.num_warps
    )
    return out
