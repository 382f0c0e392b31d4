"""Masked mean pool, `x [B, L, D], mask [B, L] -> [B, D]`, in Triton.

Algorithm: one program owns one batch row and one `BLOCK_D` slice of the features and walks the
sequence in `BLOCK_L` chunks: it loads the mask chunk, loads only the real positions of x
(padding is never read, so garbage or NaN there cannot leak in), and accumulates the column sum
and the real-token count in fp32. The mean is `sum / max(count, 1)`, so an all-padding row gives
zeros. Grid `(B, cdiv(D, BLOCK_D))`. Fused: masking, the sum, the division and the cast back.
The models L2-normalise the pooled embedding with a separate `l2_normalize` (`l2_norm.py`).

The kernel takes explicit strides (`stride_xb, stride_xl, stride_xd`), so non-contiguous inputs
such as transposed views are read in place; the output is freshly allocated and contiguous. The
mask is a bool tensor reinterpreted (zero-copy) as uint8.

Autotuning: `masked_mean_pool_configs()` is the single source of the tile/warp choices; the
autotuner prunes them with the problem size, and its key buckets the sequence length to a power
of two (`L_BUCKET = next_power_of_2(L)`, passed to the kernel only as a key), so a ragged stream
of batches tunes once per bucket instead of once per length. Under the Triton interpreter
(`TRITON_INTERPRET=1`) one fixed config is used: timing the interpreter is meaningless.

Also here: the TensorRT plugin entry point `_masked_mean_pool_plugin_kernel` (compiled by
`reelserve.export` through `kernels.plugin`) and `aot_cases()` for `kernels.aot`.

Spec: `reelserve.kernels.reference.masked_mean_pool_reference`. (The file is not called
`masked_mean_pool.py`: importing a submodule of that name would replace the package's
`masked_mean_pool` dispatcher with the module.)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import triton
import triton.language as tl

from ._common import (
    AOT_DTYPES,
    DTYPES,
    INTERPRET,
    MAX_TILE,
    MAX_TILE_ELEMS,
    KernelCase,
    aot_signature,
    check_device,
    jit_fn,
)

__all__ = [
    "aot_cases",
    "masked_mean_pool_configs",
    "masked_mean_pool_plugin_configs",
    "masked_mean_pool_plugin_kernel_spec",
    "masked_mean_pool_triton",
]

_AOT_L_BUCKET = 1 << 20  # prune as for a long sequence: keeps every config legal for some length


# ----------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------


def masked_mean_pool_configs(*, full: bool | None = None) -> list[triton.Config]:
    """Tile/warp configs (`BLOCK_L`, `BLOCK_D`, `num_warps`; the grid splits D).

    `full=None` means the whole set unless running under the interpreter, where a single config
    is returned.
    """
    full = not INTERPRET if full is None else full
    if not full:
        return [triton.Config({"BLOCK_L": 64, "BLOCK_D": 128}, num_warps=4)]
    return [
        triton.Config({"BLOCK_L": block_l, "BLOCK_D": block_d}, num_warps=num_warps)
        for block_l in (16, 32, 64)
        for block_d in (64, 128, 256)
        for num_warps in (2, 4, 8)
        if 2048 <= block_l * block_d <= 8192
    ]


def _prune(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """Drop tiles much longer than the sequence or much wider than the features."""
    l_bucket, d = named_args["L_BUCKET"], named_args["D"]
    d_cap = max(64, triton.next_power_of_2(d))
    kept = []
    for cfg in configs:
        block_l, block_d = cfg.kwargs["BLOCK_L"], cfg.kwargs["BLOCK_D"]
        tile = block_l * block_d
        if block_l > max(16, l_bucket) or block_d > d_cap or tile > MAX_TILE_ELEMS:
            continue
        if tile < 32 * cfg.num_warps:  # fewer elements than threads
            continue
        kept.append(cfg)
    return kept or [min(configs, key=lambda c: c.kwargs["BLOCK_L"] * c.kwargs["BLOCK_D"])]


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------


# AOT signature (triton.tools.compile), in argument order:
#   *{fp32|fp16|bf16} x, *u8 mask, *{same as x} out,
#   i32 L, i32 D, i32 stride_xb, i32 stride_xl, i32 stride_xd, i32 stride_mb, i32 stride_ml,
#   i32 stride_ob, i32 stride_od, i32 L_BUCKET, constexpr BLOCK_L, constexpr BLOCK_D
# Grid: (B, cdiv(D, BLOCK_D)).
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
    tl.store(out_ptr + pid_b * stride_ob + offs_d * stride_od, mean.to(out_ptr.dtype.element_ty), mask=d_ok)


_masked_mean_pool_tuned = triton.autotune(
    configs=masked_mean_pool_configs(),
    key=["L_BUCKET", "D"],
    prune_configs_by={"early_config_prune": _prune},
)(_masked_mean_pool_kernel)


# ----------------------------------------------------------------------------------------------
# TensorRT plugin entry point
# ----------------------------------------------------------------------------------------------


# TensorRT plugin entry point (`reelserve.export`'s TensorRT plugins): input pointers, int32
# scalars, output pointer, on contiguous tensors (see `attention._attention_plugin_kernel`).
#   *{fp16|bf16|fp32} x [B, L, D], *i32 mask [B, L], i32 L, i32 D, *{as x} out [B, D],
#   constexpr BLOCK_L, BLOCK_D
# Grid: (B, cdiv(D, BLOCK_D)).
@triton.jit
def _masked_mean_pool_plugin_kernel(x_ptr, mask_ptr, L, D, out_ptr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr):
    _masked_mean_pool_kernel(
        x_ptr, mask_ptr, out_ptr, L, D, L * D, D, 1, L, 1, D, 1, 0,
        BLOCK_L=BLOCK_L, BLOCK_D=BLOCK_D,
    )  # fmt: skip


def masked_mean_pool_plugin_configs() -> list[triton.Config]:
    """The configs a TensorRT plugin offers as tactics: the launcher's autotune space."""
    return masked_mean_pool_configs(full=True)


def masked_mean_pool_plugin_kernel_spec(
    dtype: str, config: triton.Config
) -> tuple[object, dict[str, str], dict[str, object], dict[str, int]]:
    """(kernel, signature, constexprs, options) for compiling `_masked_mean_pool_plugin_kernel`."""
    ptr = AOT_DTYPES[dtype]
    signature = {"x_ptr": ptr, "mask_ptr": "*i32", "L": "i32", "D": "i32", "out_ptr": ptr}
    signature |= {name: "constexpr" for name in config.kwargs}
    return _masked_mean_pool_plugin_kernel, signature, dict(config.kwargs), {"num_warps": config.num_warps}


# ----------------------------------------------------------------------------------------------
# Ahead-of-time compilation cases (consumed by `reelserve.kernels.aot`)
# ----------------------------------------------------------------------------------------------


def aot_cases() -> Iterator[tuple[KernelCase, triton.Config]]:
    """Every (case, config) `kernels.aot` compiles: per dtype, every config the autotuner could
    pick (the prune filter applied for a long sequence), with the unit-stride feature dims
    specialised to 1 as they are at run time for contiguous inputs."""
    fn = jit_fn(_masked_mean_pool_kernel)
    named = {"L_BUCKET": _AOT_L_BUCKET, "D": 384}
    for dtype in AOT_DTYPES:
        for config in _prune(masked_mean_pool_configs(full=True), named):
            constexprs = {"stride_xd": 1, "stride_ml": 1, "stride_od": 1, **config.kwargs}
            pointers = {"x_ptr": AOT_DTYPES[dtype], "mask_ptr": "*u8", "out_ptr": AOT_DTYPES[dtype]}
            case = KernelCase(
                "masked_mean_pool",
                fn,
                f"{dtype} d%16=0",
                aot_signature(fn, pointers, (), constexprs),
                constexprs,
                ("x_ptr", "mask_ptr", "out_ptr", "D", "stride_xb", "stride_xl", "stride_ob"),
            )
            yield case, config


# ----------------------------------------------------------------------------------------------
# Launcher
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
    if x.dtype not in DTYPES:
        raise ValueError(f"{name}: x must be float32/float16/bfloat16, got {x.dtype} (shape {tuple(x.shape)})")
    check_device(name, x, mask)


def _launch(x: torch.Tensor, mask: torch.Tensor, out: torch.Tensor, config: triton.Config | None = None) -> None:
    """Launch into `out`; `config` pins one config instead of autotuning (tests, benchmarks)."""
    b, length, d = x.shape
    m = mask.view(torch.uint8)  # zero-copy: bool is one byte
    args = (x, m, out, length, d, *x.stride(), *m.stride(), *out.stride(), triton.next_power_of_2(length))
    if config is None:
        _masked_mean_pool_tuned[lambda meta: (b, triton.cdiv(d, meta["BLOCK_D"]))](*args)
    else:
        _masked_mean_pool_kernel[(b, triton.cdiv(d, config.kwargs["BLOCK_D"]))](
            *args, **config.kwargs, num_warps=config.num_warps, num_stages=config.num_stages
        )


def masked_mean_pool_triton(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`x [B, L, D]`, `mask [B, L]` bool (True = real) -> `[B, D]` in x.dtype.

    Mean over the real positions, accumulated in fp32; an all-padding row gives zeros.
    """
    _check_x_mask("masked_mean_pool_triton", x, mask)
    b, _, d = x.shape
    out = torch.empty((b, d), dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    _launch(x, mask, out)
    return out
