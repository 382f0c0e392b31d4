"""Every kernel x autotune config compiles for sm_80 and sm_90 without a GPU: 0 spills, shared memory in budget.

Runs `python -m reelserve.kernels.aot` in a subprocess without TRITON_INTERPRET (the interpreter
replaces `@triton.jit` functions at import, so the compile needs a clean interpreter). The table
of registers / spills / shared memory per kernel is printed (`pytest -s` shows it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def reports() -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    run = subprocess.run(
        [sys.executable, "-m", "reelserve.kernels.aot", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert run.stdout.strip(), f"AOT compile printed nothing (exit {run.returncode}):\n{run.stderr[-3000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_every_kernel_and_config_compiles_for_ampere_and_hopper(reports) -> None:
    from reelserve.kernels.aot import CompileReport, format_table

    rows = [CompileReport(**{k: v for k, v in r.items() if k != "ok"}) for r in reports]
    print("\n" + format_table(rows))
    kernels = {r.kernel for r in rows}
    assert kernels == {"fused_attention", "masked_mean_pool", "l2_normalize"}, kernels
    assert {r.arch for r in rows} == {80, 90}
    bad = [r for r in rows if not r.ok]
    assert not bad, "configs that spill or overflow shared memory:\n" + format_table(bad)


def test_attention_covers_the_head_dims_and_dtypes(reports) -> None:
    variants = {r["variant"] for r in reports if r["kernel"] == "fused_attention"}
    for dtype in ("fp16", "bf16"):
        for d in (32, 64, 128):
            assert any(v.startswith(f"{dtype} d={d} ") for v in variants), (dtype, d, variants)
