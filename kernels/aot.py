"""Ahead-of-time compile every kernel and autotune config for sm_80 / sm_90, without a GPU.

`triton.compile` on an `ASTSource` emits PTX and a cubin (ptxas ships in the triton wheel);
`cuobjdump --dump-resource-usage` on the cubin gives registers, stack and local memory, which
is where register spills land. A config that spills or overflows shared memory on either chip
does not belong in the autotune space: `tests/kernels/test_aot_compile.py` enforces that.

Run: `python -m reelserve.kernels.aot` (prints a table; `--json` for machines). Must run without
`TRITON_INTERPRET` (the interpreter replaces `@triton.jit` functions at import time).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

# Max shared memory per block (opt-in), bytes: A100 (sm_80) 163 KiB, H100 (sm_90) 227 KiB.
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}
ARCHES = (80, 90)
DTYPES = {"fp16": "*fp16", "bf16": "*bf16", "fp32": "*fp32"}


@dataclass(frozen=True)
class CompileReport:
    kernel: str
    arch: int
    variant: str  # dtype / head dim / flags
    config: str  # BLOCK sizes, warps, stages
    registers: int
    spill_bytes: int  # stack + local memory per thread
    shared_bytes: int  # static + dynamic shared memory per block
    shared_limit: int

    @property
    def ok(self) -> bool:
        return self.spill_bytes == 0 and self.shared_bytes <= self.shared_limit


@dataclass(frozen=True)
class KernelCase:
    name: str
    fn: object  # the JITFunction
    variant: str
    signature: dict[str, str]
    constexprs: dict[str, object]
    divisible_by_16: tuple[str, ...]  # args Triton would specialise as multiples of 16 at run time


def _jit(kernel) -> object:
    fn = kernel.fn if isinstance(kernel, triton.runtime.Autotuner) else kernel
    if not hasattr(fn, "arg_names"):
        raise RuntimeError("kernels are interpreted (TRITON_INTERPRET=1); run the AOT compile without it")
    return fn


def _config_str(config: triton.Config) -> str:
    blocks = " ".join(f"{k}={v}" for k, v in sorted(config.kwargs.items()))
    return f"{blocks} warps={config.num_warps} stages={config.num_stages}"


def attention_cases() -> Iterator[tuple[KernelCase, triton.Config]]:
    from . import attention

    fn = _jit(attention._attention_fwd_kernel)
    for dtype, head_dim, has_mask, causal in [
        (dt, d, m, c) for dt in ("fp16", "bf16") for d in (32, 64, 128) for m, c in ((True, False), (False, True))
    ]:
        signature = {name: "i32" for name in fn.arg_names}
        signature.update({p: DTYPES[dtype] for p in ("q_ptr", "k_ptr", "v_ptr", "o_ptr")})
        signature.update({"mask_ptr": "*i8", "qk_scale": "fp32"})
        for config in attention.attention_configs(head_dim):
            constexprs = {
                "HEAD_DIM": head_dim,
                "HAS_MASK": has_mask,
                "CAUSAL": causal,
                "stride_qd": 1,
                "stride_kd": 1,
                "stride_vd": 1,
                "stride_od": 1,
                "stride_mn": 1,
                **config.kwargs,
            }
            for name in constexprs:
                signature[name] = "constexpr"
            case = KernelCase(
                "fused_attention",
                fn,
                f"{dtype} d={head_dim} {'mask' if has_mask else 'causal'}",
                dict(signature),
                constexprs,
                ("q_ptr", "k_ptr", "v_ptr", "o_ptr", "stride_qm", "stride_kn", "stride_vn", "stride_om"),
            )
            yield case, config


CASES: dict[str, Callable[[], Iterator[tuple[KernelCase, triton.Config]]]] = {"fused_attention": attention_cases}


def _register_pooling_cases() -> None:
    try:
        from .pooling import aot_cases
    except ImportError:  # pooling kernels not present
        return
    CASES.update(aot_cases())


def _resource_usage(cubin: bytes) -> tuple[int, int, int]:
    """(registers, stack + local bytes, static shared bytes) from cuobjdump."""
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run(
            [str(cuobjdump), "--dump-resource-usage", f.name], capture_output=True, text=True, check=True
        ).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", text)
    if not m:
        raise RuntimeError(f"cannot read resource usage from cuobjdump:\n{text}")
    reg, stack, shared, local = map(int, m.groups())
    return reg, stack + local, shared


def compile_case(case: KernelCase, config: triton.Config, arch: int) -> CompileReport:
    attrs = {(case.fn.arg_names.index(a),): [["tt.divisibility", 16]] for a in case.divisible_by_16}
    src = ASTSource(fn=case.fn, signature=case.signature, constexprs=case.constexprs, attrs=attrs)
    compiled = triton.compile(
        src,
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": config.num_warps, "num_stages": config.num_stages},
    )
    registers, spills, static_shared = _resource_usage(compiled.asm["cubin"])
    return CompileReport(
        case.name,
        arch,
        case.variant,
        _config_str(config),
        registers,
        spills,
        static_shared + compiled.metadata.shared,
        SHARED_LIMIT[arch],
    )


@dataclass(frozen=True)
class PluginKernel:
    """What a TensorRT AOT plugin needs from one compiled kernel."""

    name: str
    ptx: str
    num_warps: int
    shared: int  # dynamic shared memory, bytes


def compile_plugin_kernel(
    fn, signature: dict[str, str], constexprs: dict[str, object], options: dict[str, int], arch: int | None = None
) -> PluginKernel:
    """Compile one plugin entry point to PTX: for `arch` (80, 90, ...) or, with None, the local GPU."""
    fn = _jit(fn)
    src = ASTSource(fn=fn, signature=signature, constexprs=constexprs)
    target = GPUTarget("cuda", arch, 32) if arch is not None else None
    compiled = triton.compile(src, target=target, options=options)
    if getattr(compiled.metadata, "global_scratch_size", 0) or getattr(compiled.metadata, "profile_scratch_size", 0):
        raise RuntimeError(
            f"{compiled.metadata.name} needs Triton scratch memory, which a TensorRT plugin cannot give it"
        )
    return PluginKernel(
        compiled.metadata.name, compiled.asm["ptx"], compiled.metadata.num_warps, compiled.metadata.shared
    )


def _all_cases(kernels: list[str] | None) -> list[tuple[KernelCase, triton.Config, int]]:
    _register_pooling_cases()
    return [
        (case, config, arch)
        for name, cases in CASES.items()
        if not kernels or name in kernels
        for case, config in cases()
        for arch in ARCHES
    ]


def _compile_index(args: tuple[list[str] | None, int]) -> CompileReport:
    kernels, index = args  # worker processes rebuild the cases: JIT functions do not pickle
    return compile_case(*_all_cases(kernels)[index])


def compile_all(kernels: list[str] | None = None, jobs: int = 1) -> list[CompileReport]:
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("unset TRITON_INTERPRET to compile ahead of time")
    count = len(_all_cases(kernels))
    if jobs <= 1:
        return [_compile_index((kernels, i)) for i in range(count)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(jobs) as pool:
        return pool.map(_compile_index, [(kernels, i) for i in range(count)])


def format_table(reports: list[CompileReport]) -> str:
    rows = [f"{'kernel':16s} {'sm':>3s} {'variant':22s} {'config':44s} {'regs':>4s} {'spill':>5s} {'shared':>7s}"]
    for r in reports:
        flag = "" if r.ok else "  <-- over budget"
        rows.append(
            f"{r.kernel:16s} {r.arch:3d} {r.variant:22s} {r.config:44s} {r.registers:4d} {r.spill_bytes:5d} "
            f"{r.shared_bytes:7d}{flag}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per compiled kernel")
    parser.add_argument("--kernel", action="append", help="only these kernels (repeatable)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compiles (default: cores)")
    args = parser.parse_args(argv)
    reports = compile_all(args.kernel, args.jobs)
    if args.json:
        print(json.dumps([asdict(r) | {"ok": r.ok} for r in reports]))
    else:
        print(format_table(reports))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    raise SystemExit(main())
