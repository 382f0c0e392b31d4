"""Compile one TensorRT-plugin entry point of our kernels to PTX (used by `reelserve.export`).

TensorRT's ahead-of-time plugins launch a kernel from its PTX with inputs, int32 scalars and
outputs only; the entry points are `attention._attention_plugin_kernel` and
`mean_pool._masked_mean_pool_plugin_kernel`, whose `*_plugin_kernel_spec` functions give
the arguments of `compile_plugin_kernel`. Kept apart from `aot.py` (the spill/shared-memory
sweep) so that building an engine imports neither the sweep nor every op.
"""

from __future__ import annotations

from dataclasses import dataclass

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from ._common import jit_fn

__all__ = ["PluginKernel", "compile_plugin_kernel"]


@dataclass(frozen=True)
class PluginKernel:
    """What a TensorRT AOT plugin needs from one compiled kernel."""

    name: str
    ptx: str
    num_warps: int
    shared: int  # dynamic shared memory, bytes


def compile_plugin_kernel(
    fn: object,
    signature: dict[str, str],
    constexprs: dict[str, object],
    options: dict[str, int],
    arch: int | None = None,
) -> PluginKernel:
    """Compile one plugin entry point to PTX: for `arch` (80, 90, ...) or, with None, the local GPU."""
    src = ASTSource(fn=jit_fn(fn), signature=signature, constexprs=constexprs)
    target = GPUTarget("cuda", arch, 32) if arch is not None else None
    compiled = triton.compile(src, target=target, options=options)
    if getattr(compiled.metadata, "global_scratch_size", 0) or getattr(compiled.metadata, "profile_scratch_size", 0):
        raise RuntimeError(
            f"{compiled.metadata.name} needs Triton scratch memory, which a TensorRT plugin cannot give it"
        )
    return PluginKernel(
        compiled.metadata.name, compiled.asm["ptx"], compiled.metadata.num_warps, compiled.metadata.shared
    )
