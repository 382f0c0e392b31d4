"""TensorRT plugins for the `reelserve::*` ONNX nodes, implemented by our Triton kernels ahead of time.

NVIDIA's quickly-deployable-plugins (QDP) API (`tensorrt.plugin`, TensorRT >= 10.8): a plugin
is a shape/type function (`@trtp.register`), the type combinations and tactics it offers
(`@trtp.autotune`) and an ahead-of-time implementation (`@trtp.aot_impl`) that returns our
Triton kernel compiled to PTX plus its launch grid as symbolic shape expressions. TensorRT
times every tactic (one per kernel tile) while building, then bakes the winner's PTX into the
engine: serving the engine needs neither Python nor Triton nor a plugin library.

Importing this module registers the plugins; it needs `tensorrt` (and a GPU to build). The
kernels' argument order (inputs, int32 scalars, outputs) is fixed by
`kernels.attention._attention_plugin_kernel` / `kernels.mean_pool._masked_mean_pool_plugin_kernel`.
"""

from __future__ import annotations

import tensorrt as trt
import tensorrt.plugin as trtp

from reelserve.kernels.attention import attention_plugin_kernel_spec, attention_plugin_tiles
from reelserve.kernels.mean_pool import masked_mean_pool_plugin_configs, masked_mean_pool_plugin_kernel_spec
from reelserve.kernels.plugin import PluginKernel, compile_plugin_kernel

from .plugin_onnx import DOMAIN

FLOAT_TYPES = "FP16|BF16|FP32"
_DTYPE_NAMES = {trt.float16: "fp16", trt.bfloat16: "bf16", trt.float32: "fp32"}


def dtype_name(dtype: trt.DataType) -> str:
    try:
        return _DTYPE_NAMES[dtype]
    except KeyError:
        raise ValueError(f"reelserve plugins take fp16, bf16 or fp32 activations, got {dtype}") from None


def static_dim(desc: trtp.TensorDesc, axis: int, what: str) -> int:
    """A dim the kernel compiles in (head dim, feature dim): must be fixed in the network."""
    if desc.has_shape and desc.shape[axis] > 0:  # autotune and launch time: concrete (or -1) dims
        return int(desc.shape[axis])
    if desc.has_shape_expr and desc.shape_expr[axis].is_constant():
        return int(desc.shape_expr[axis].constant_value())
    raise ValueError(f"{what} (axis {axis}) must be static in the TensorRT network, not dynamic")


def _launch(
    kernel: PluginKernel, grid: tuple, extra: list
) -> tuple[bytes, bytes, trtp.KernelLaunchParams, trtp.SymIntExprs]:
    params = trtp.KernelLaunchParams()
    params.grid_x, params.grid_y = grid
    params.block_x = kernel.num_warps * 32
    params.shared_mem = kernel.shared
    return (
        kernel.name.encode(),
        kernel.ptx.encode(),
        params,
        trtp.SymIntExprs.from_tuple([trtp.SymInt32(e) for e in extra]),
    )


# --- reelserve::FusedAttention ------------------------------------------------------------------


@trtp.register(f"{DOMAIN}::FusedAttention")
def fused_attention_desc(
    q: trtp.TensorDesc, k: trtp.TensorDesc, v: trtp.TensorDesc, mask: trtp.TensorDesc, causal: int, scale: float
) -> trtp.TensorDesc:
    return q.like()


@trtp.autotune(f"{DOMAIN}::FusedAttention")
def fused_attention_autotune(q, k, v, mask, causal, scale, outputs) -> list[trtp.AutoTuneCombination]:
    combination = trtp.AutoTuneCombination()
    combination.pos([0, 1, 2, 4], FLOAT_TYPES)
    combination.pos([3], "INT32")
    combination.tactics(list(range(1, len(attention_plugin_tiles(static_dim(q, 3, "head dim"))) + 1)))
    return [combination]


@trtp.aot_impl(f"{DOMAIN}::FusedAttention")
def fused_attention_aot(q, k, v, mask, causal: int, scale: float, outputs, tactic: int):
    head_dim = static_dim(q, 3, "head dim")
    tile = attention_plugin_tiles(head_dim)[tactic - 1]
    spec = attention_plugin_kernel_spec(dtype_name(q.dtype), head_dim, tile, causal=bool(causal), scale=float(scale))
    kernel = compile_plugin_kernel(*spec)
    b, h, lq = q.shape_expr[0], q.shape_expr[1], q.shape_expr[2]
    lk = k.shape_expr[2]
    return _launch(kernel, (trtp.cdiv(lq, tile[0]), b * h), [b, h, lq, lk])


# --- reelserve::MaskedMeanPool ------------------------------------------------------------------


@trtp.register(f"{DOMAIN}::MaskedMeanPool")
def masked_mean_pool_desc(x: trtp.TensorDesc, mask: trtp.TensorDesc) -> trtp.TensorDesc:
    return trtp.from_shape_expr((x.shape_expr[0], x.shape_expr[2]), dtype=x.dtype)


@trtp.autotune(f"{DOMAIN}::MaskedMeanPool")
def masked_mean_pool_autotune(x, mask, outputs) -> list[trtp.AutoTuneCombination]:
    combination = trtp.AutoTuneCombination()
    combination.pos([0, 2], FLOAT_TYPES)
    combination.pos([1], "INT32")
    combination.tactics(list(range(1, len(masked_mean_pool_plugin_configs()) + 1)))
    return [combination]


@trtp.aot_impl(f"{DOMAIN}::MaskedMeanPool")
def masked_mean_pool_aot(x, mask, outputs, tactic: int):
    config = masked_mean_pool_plugin_configs()[tactic - 1]
    kernel = compile_plugin_kernel(*masked_mean_pool_plugin_kernel_spec(dtype_name(x.dtype), config))
    b, length, d = x.shape_expr[0], x.shape_expr[1], x.shape_expr[2]
    return _launch(kernel, (b, trtp.cdiv(d, config.kwargs["BLOCK_D"])), [length, d])


PLUGINS = (f"{DOMAIN}::FusedAttention", f"{DOMAIN}::MaskedMeanPool")
