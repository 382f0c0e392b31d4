"""Ahead-of-time compile every kernel and autotune config for sm_80 / sm_90, without a GPU.

`triton.compile` on an `ASTSource` emits PTX and a cubin (ptxas ships in the triton wheel);
`cuobjdump --dump-resource-usage` on the cubin gives registers, stack and local memory, which
is where register spills land. A config that spills or overflows shared memory on either chip
does not belong in the autotune space: `tests/kernels/test_aot_compile.py` enforces that.

The cases come from each op module's `aot_cases()` (`OPS` below); this module only enumerates,
compiles and reports. Run: `python -m reelserve.kernels.aot` (prints a table; `--json` for
machines). Must run without `TRITON_INTERPRET` (the interpreter replaces `@triton.jit`
functions at import time).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from . import attention, l2_norm, mean_pool
from ._common import KernelCase

# Max shared memory per block (opt-in), bytes: A100 (sm_80) 163 KiB, H100 (sm_90) 227 KiB.
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}
ARCHES = (80, 90)
# The op modules; each has `aot_cases() -> Iterator[(KernelCase, triton.Config)]`.
OPS = (attention, mean_pool, l2_norm)


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


def _config_str(config: triton.Config) -> str:
    blocks = " ".join(f"{k}={v}" for k, v in sorted(config.kwargs.items()))
    return f"{blocks} warps={config.num_warps} stages={config.num_stages}"


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


def _all_cases(kernels: list[str] | None) -> list[tuple[KernelCase, triton.Config, int]]:
    """Every (case, config, arch) to compile, in a fixed order (workers rebuild it by index)."""
    return [
        (case, config, arch)
        for op in OPS
        for case, config in op.aot_cases()
        if not kernels or case.name in kernels
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
