"""`l2_normalize_triton` (`reelserve.kernels.l2_norm`) vs `l2_normalize_reference`.

Without a GPU the kernel runs in the Triton interpreter, which must be switched on before triton
is imported. The default run covers every length, dim and dtype at one batch size; the full grid
(every batch size) is marked `slow`.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton / the kernels are imported

import itertools  # noqa: E402
import zlib  # noqa: E402

import pytest  # noqa: E402

from reelserve.kernels.l2_norm import MAX_D, l2_normalize_triton  # noqa: E402
from reelserve.kernels.reference import l2_normalize_reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# Output tolerance per dtype (atol = rtol). Kernel and reference both compute the norm in fp32;
# in low precision the final rounding dominates (fp16 step 2^-11, bf16 step 2^-8).
TOL = {
    torch.float32: {"atol": 1e-5, "rtol": 1e-5},
    torch.float16: {"atol": 2e-3, "rtol": 2e-3},
    torch.bfloat16: {"atol": 2e-2, "rtol": 2e-2},
}

BATCHES = tuple(range(1, 9))
LENGTHS = (1, 2, 7, 31, 64, 65, 127, 300)
DIMS = (32, 48, 384)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_l2_normalize(b: int, length: int, d: int, dtype: torch.dtype) -> None:
    """`[B, L, D]` rows, about half of them zero vectors (row [0, 0] always)."""
    what = f"B{b}-L{length}-D{d}-{str(dtype).removeprefix('torch.')}"
    g = torch.Generator().manual_seed(zlib.crc32(what.encode()))
    real = torch.rand(b, length, generator=g) < 0.5
    real[0, 0] = False
    x = (torch.randn(b, length, d, generator=g) * real[..., None]).to(dtype).to(DEVICE)
    real = real.to(DEVICE)
    got = l2_normalize_triton(x)
    want = l2_normalize_reference(x)
    assert got.shape == x.shape and got.dtype == x.dtype, what
    assert not torch.isnan(got).any(), what
    torch.testing.assert_close(got, want, **TOL[dtype], msg=lambda m: f"{what}: {m}")
    assert torch.all(got[~real] == 0), f"{what}: zero vectors stay zero"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("length,d", list(itertools.product(LENGTHS, DIMS)))
def test_every_length_dim_and_dtype(length: int, d: int, dtype: torch.dtype) -> None:
    check_l2_normalize(3, length, d, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("length,d", list(itertools.product(LENGTHS, DIMS)))
def test_full_grid(length: int, d: int) -> None:
    """Every batch size and dtype for one (length, D)."""
    for b, dtype in itertools.product(BATCHES, DTYPES):
        check_l2_normalize(b, length, d, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_non_contiguous_inputs(dtype: torch.dtype) -> None:
    big = torch.randn(2, 62, 96, generator=torch.Generator().manual_seed(3)).to(dtype).to(DEVICE)
    rows = big[0].t()  # [96, 62], row stride 1
    torch.testing.assert_close(l2_normalize_triton(rows), l2_normalize_reference(rows), **TOL[dtype])
    y3 = big[:, :, ::3]  # [2, 62, 32] not viewable as [R, D] -> reshape copies
    torch.testing.assert_close(l2_normalize_triton(y3), l2_normalize_reference(y3), **TOL[dtype])


def test_tiny_and_empty_shapes() -> None:
    x = torch.randn(2, 1, 5, generator=torch.Generator().manual_seed(23)).to(DEVICE)  # D < 16, L = 1
    torch.testing.assert_close(l2_normalize_triton(x), l2_normalize_reference(x))
    assert l2_normalize_triton(x[:0]).shape == (0, 1, 5)


def test_eps_is_passed_through() -> None:
    x = torch.full((2, 4), 1e-4, device=DEVICE)  # ||x|| = 2e-4 < eps: divided by eps instead
    torch.testing.assert_close(l2_normalize_triton(x, 1e-3), l2_normalize_reference(x, 1e-3))
    torch.testing.assert_close(l2_normalize_triton(x, 1e-3), x / 1e-3)


def test_launcher_rejects_bad_inputs_naming_them() -> None:
    wide = torch.zeros(1, 1, MAX_D + 1, device=DEVICE)
    with pytest.raises(ValueError, match=rf"\(1, 1, {MAX_D + 1}\)"):
        l2_normalize_triton(wide)
    with pytest.raises(ValueError, match=r"float32/float16/bfloat16.*float64"):
        l2_normalize_triton(torch.zeros(2, 8, dtype=torch.float64, device=DEVICE))
    with pytest.raises(ValueError, match=r"last dim.*\(\)"):
        l2_normalize_triton(torch.tensor(1.0, device=DEVICE))
