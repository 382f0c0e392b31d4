"""Row-wise L2 normalisation, `x [..., D] -> x / max(||x||, eps)`, in Triton.

Algorithm: leading dims are flattened to rows; one program normalises `BLOCK_R` rows held
entirely in registers (`BLOCK_D = next_power_of_2(D)`, so `D <= MAX_D`): sum of squares in fp32,
`x / max(||x||, eps)`, so a zero row stays zero. Fused: the square-sum, the norm, the division
and the cast back; x is read once and written once. A single-pass row op has little to tune, so
the launch config is a heuristic (`l2_normalize_config`), not an autotune space.

The models call it on the pooled embedding (`l2_normalize(masked_mean_pool(...))`); `aot_cases()`
feeds `kernels.aot`.

Spec: `reelserve.kernels.reference.l2_normalize_reference`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import triton
import triton.language as tl

from ._common import AOT_DTYPES, DTYPES, MAX_TILE, KernelCase, aot_signature, check_device, jit_fn

__all__ = ["MAX_D", "aot_cases", "l2_normalize_config", "l2_normalize_triton"]

# Largest feature dim: a whole row is held in one program's registers.
MAX_D = 16384


def l2_normalize_config(rows: int, d: int) -> triton.Config:
    """The (heuristic, untuned) launch config for `[rows, d]`.

    Hold whole rows, pack rows until a program moves about 4K elements, one warp per 256 elements.
    """
    block_d = max(16, triton.next_power_of_2(d))
    block_r = max(1, min(16, 4096 // block_d, triton.next_power_of_2(max(rows, 1))))
    num_warps = max(1, min(16, block_r * block_d // 256))
    return triton.Config({"BLOCK_R": block_r, "BLOCK_D": block_d}, num_warps=num_warps)


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


def aot_cases() -> Iterator[tuple[KernelCase, triton.Config]]:
    """Every (case, config) `kernels.aot` compiles: per dtype, the models' feature dims and the
    largest one, for one row and for many (the heuristic config differs), unit feature strides."""
    fn = jit_fn(_l2_normalize_kernel)
    for dtype, d, rows in ((dt, d, r) for dt in AOT_DTYPES for d in (384, 1280, MAX_D) for r in (1, 4096)):
        config = l2_normalize_config(rows, d)
        constexprs = {"stride_xd": 1, "stride_od": 1, **config.kwargs}
        pointers = {"x_ptr": AOT_DTYPES[dtype], "out_ptr": AOT_DTYPES[dtype]}
        case = KernelCase(
            "l2_normalize",
            fn,
            f"{dtype} d={d} rows={rows}",
            aot_signature(fn, pointers, ("eps",), constexprs),
            constexprs,
            ("x_ptr", "out_ptr", "D", "stride_xr", "stride_or"),
        )
        yield case, config


def l2_normalize_triton(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """`x [..., D]` -> `x / max(||x||, eps)` over the last dim, same shape and dtype.

    Norm in fp32; a zero row stays zero. Leading dims are flattened with `reshape`, which is a
    view (strides passed through) whenever the layout allows and a copy otherwise.
    """
    if x.ndim < 1:
        raise ValueError(f"l2_normalize_triton: x must have a last dim, got shape {tuple(x.shape)}")
    if x.dtype not in DTYPES:
        raise ValueError(f"l2_normalize_triton: x must be float32/float16/bfloat16, got {x.dtype}")
    d = x.shape[-1]
    if d > MAX_D:
        raise ValueError(
            f"l2_normalize_triton holds a whole row per program: D must be <= {MAX_D}, got x of shape {tuple(x.shape)}"
        )
    check_device("l2_normalize_triton", x)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    x2 = x.reshape(-1, d)  # [R, D]
    o2 = out.view(-1, d)
    rows = x2.shape[0]
    cfg = l2_normalize_config(rows, d)
    block_r, block_d = cfg.kwargs["BLOCK_R"], cfg.kwargs["BLOCK_D"]
    _l2_normalize_kernel[(triton.cdiv(rows, block_r),)](
        x2, o2, rows, d, *x2.stride(), *o2.stride(), eps, BLOCK_R=block_r, BLOCK_D=block_d, num_warps=cfg.num_warps
    )
    return out
