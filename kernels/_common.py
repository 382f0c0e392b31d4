"""Small pieces the op files share: dtype tables, the tile budget, device checks, AOT cases.

Private to `reelserve.kernels`; imports nothing from the package, so every op file, `aot.py`
and `plugin.py` can import it without forming a cycle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

# Read once at import: the interpreter has to be chosen before any kernel is defined anyway.
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# The activation dtypes every launcher takes.
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Triton pointer types of those dtypes, as `triton.compile` signatures spell them.
AOT_DTYPES = {"fp16": "*fp16", "bf16": "*bf16", "fp32": "*fp32"}
# Largest tile (elements) one program loads per step; bounds register pressure.
MAX_TILE_ELEMS = 16384
MAX_TILE: tl.constexpr = tl.constexpr(MAX_TILE_ELEMS)  # the same, visible inside kernels


@dataclass(frozen=True)
class KernelCase:
    """One kernel specialisation to compile ahead of time (`reelserve.kernels.aot`)."""

    name: str
    fn: object  # the JITFunction
    variant: str
    signature: dict[str, str]
    constexprs: dict[str, object]
    divisible_by_16: tuple[str, ...]  # args Triton would specialise as multiples of 16 at run time


def jit_fn(kernel: object) -> triton.runtime.JITFunction:
    """The compilable `JITFunction` behind a kernel or its autotuner; refuses interpreted ones."""
    fn = kernel.fn if isinstance(kernel, triton.runtime.Autotuner) else kernel
    if not isinstance(fn, triton.runtime.JITFunction):
        raise RuntimeError("kernels are interpreted (TRITON_INTERPRET=1); run the AOT compile without it")
    return fn


def aot_signature(
    fn: triton.runtime.JITFunction, pointers: dict[str, str], floats: tuple[str, ...], constexprs: dict
) -> dict[str, str]:
    """A `triton.compile` signature: every argument i32 unless a pointer, a float or a constexpr."""
    sig = {name: "i32" for name in fn.arg_names}
    sig.update(pointers)
    sig.update({name: "fp32" for name in floats})
    sig.update({name: "constexpr" for name in constexprs})
    return sig


def check_device(name: str, *tensors: torch.Tensor) -> None:
    """One device for all tensors, and CUDA unless the interpreter runs the kernels."""
    device = tensors[0].device
    if any(t.device != device for t in tensors):
        raise ValueError(f"{name}: tensors on different devices: {[str(t.device) for t in tensors]}")
    if device.type != "cuda" and not INTERPRET:
        raise ValueError(f"{name}: needs CUDA tensors (or TRITON_INTERPRET=1), got device {device}")
