"""The TensorRT-plugin entry points of our kernels: same answers as the reference, PTX for sm_80/sm_90.

TensorRT hands an AOT plugin contiguous tensors and int32 scalars only; these kernels derive
their strides from the dims. Here they run in Triton's interpreter on CPU (or on a GPU when
present) against the PyTorch reference with the plugin's exact argument order, and are
compiled to PTX ahead of time in a clean subprocess, the way the TensorRT plugins of
`reelserve.export` do at engine build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import triton

from reelserve.kernels import attention
from reelserve.kernels import mean_pool as mmp
from reelserve.kernels.attention import LOG2E, attention_plugin_tiles
from reelserve.kernels.reference import attention_reference, masked_mean_pool_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _mask(b: int, length: int, g: torch.Generator) -> torch.Tensor:
    lengths = torch.randint(0, length + 1, (b,), generator=g)
    lengths[0] = length  # one full row, and (b > 1) possibly an all-padding row
    return (torch.arange(length)[None, :] < lengths[:, None]).to(torch.int32)


@pytest.mark.parametrize(
    "b,h,lq,lk,d,causal", [(2, 3, 17, 17, 32, False), (3, 2, 40, 40, 64, True), (1, 1, 5, 33, 32, False)]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_attention_plugin_kernel_matches_reference(b, h, lq, lk, d, causal, dtype) -> None:
    g = torch.Generator().manual_seed(b * 100 + lq)
    q, k, v = (torch.randn(b, h, n, d, generator=g).to(dtype).to(DEVICE) for n in (lq, lk, lk))
    mask = _mask(b, lk, g).to(DEVICE)
    out = torch.empty_like(q)
    tile = (32, 32, 4, 1) if DEVICE == "cpu" else attention_plugin_tiles(d)[0]
    grid = (triton.cdiv(lq, tile[0]), b * h)
    attention._attention_plugin_kernel[grid](
        q, k, v, mask, b, h, lq, lk, out,
        QK_SCALE=d**-0.5 * LOG2E, HEAD_DIM=d, CAUSAL=causal, BLOCK_M=tile[0], BLOCK_N=tile[1],
    )  # fmt: skip
    want = attention_reference(q, k, v, mask != 0, causal=causal)
    tol = 1e-5 if dtype == torch.float32 else 3e-3
    torch.testing.assert_close(out.float(), want.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("b,length,d", [(3, 7, 384), (2, 70, 100), (4, 1, 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_masked_mean_pool_plugin_kernel_matches_reference(b, length, d, dtype) -> None:
    g = torch.Generator().manual_seed(b + length)
    x = torch.randn(b, length, d, generator=g).to(dtype).to(DEVICE)
    mask = _mask(b, length, g).to(DEVICE)
    out = torch.empty(b, d, dtype=dtype, device=DEVICE)
    config = mmp.masked_mean_pool_configs()[0]
    grid = (b, triton.cdiv(d, config.kwargs["BLOCK_D"]))
    mmp._masked_mean_pool_plugin_kernel[grid](x, mask, length, d, out, **config.kwargs)
    want = masked_mean_pool_reference(x, mask != 0)
    tol = 1e-5 if dtype == torch.float32 else 2e-3
    torch.testing.assert_close(out.float(), want.float(), atol=tol, rtol=tol)


COMPILE_EVERY_TACTIC = """
import json
from reelserve.kernels.attention import attention_plugin_kernel_spec, attention_plugin_tiles
from reelserve.kernels.mean_pool import masked_mean_pool_plugin_configs, masked_mean_pool_plugin_kernel_spec
from reelserve.kernels.plugin import compile_plugin_kernel
rows = []
for arch in (80, 90):
    for dtype in ("fp16", "bf16", "fp32"):
        for tile in attention_plugin_tiles(32):
            k = compile_plugin_kernel(*attention_plugin_kernel_spec(dtype, 32, tile), arch=arch)
            rows.append(["attention", arch, dtype, k.name, k.num_warps, k.shared, k.ptx])
        for config in masked_mean_pool_plugin_configs()[:3]:
            k = compile_plugin_kernel(*masked_mean_pool_plugin_kernel_spec(dtype, config), arch=arch)
            rows.append(["mean_pool", arch, dtype, k.name, k.num_warps, k.shared, k.ptx])
print(json.dumps(rows))
"""


def test_plugin_tactics_compile_to_ptx_for_ampere_and_hopper() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    run = subprocess.run(
        [sys.executable, "-c", COMPILE_EVERY_TACTIC], capture_output=True, text=True, env=env, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(run.stdout.strip().splitlines()[-1])
    assert {(r[0], r[1]) for r in rows} == {(k, a) for k in ("attention", "mean_pool") for a in (80, 90)}
    for kind, arch, dtype, name, warps, shared, ptx in rows:
        assert f".target sm_{arch}" in ptx and f".entry {name}(" in ptx, (kind, arch, dtype)
        # TensorRT launches with inputs, int32 scalars, outputs: 4 + 4 + 1 and 2 + 2 + 1 params
        # (+ Triton's two scratch pointers, unused: compile_plugin_kernel refuses kernels that need them).
        entry = ptx[ptx.index(f".entry {name}(") :].split(")")[0]
        want = (5 + 4) if kind == "attention" else (3 + 2)
        assert entry.count(".param") == want + 2, (kind, entry)
        assert warps * 32 <= 1024 and shared <= 163 * 1024
