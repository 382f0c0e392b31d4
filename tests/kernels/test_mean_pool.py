"""`masked_mean_pool_triton` (`reelserve.kernels.mean_pool`) vs `masked_mean_pool_reference`.

Without a GPU the kernels run in the Triton interpreter (numpy, one program at a time), which
must be switched on before triton is imported. The interpreter is slow, so the default run
takes a seeded, balanced subset of the property grid; the full grid is marked `slow`.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton / the kernels are imported

import itertools  # noqa: E402
import random  # noqa: E402
import zlib  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import pytest  # noqa: E402
import triton  # noqa: E402

from reelserve.kernels import mean_pool as mmp  # noqa: E402
from reelserve.kernels.mean_pool import masked_mean_pool_triton  # noqa: E402
from reelserve.kernels.reference import masked_mean_pool_reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

# Output tolerance per dtype (atol = rtol). Kernel and reference both accumulate in fp32 and
# differ only in summation order; in low precision the final rounding dominates
# (fp16 step 2^-11 ~ 4.9e-4, bf16 step 2^-8 ~ 3.9e-3).
TOL = {
    torch.float32: {"atol": 1e-5, "rtol": 1e-5},
    torch.float16: {"atol": 2e-3, "rtol": 2e-3},
    torch.bfloat16: {"atol": 2e-2, "rtol": 2e-2},
}

BATCHES = tuple(range(1, 9))
LENGTHS = (1, 2, 7, 31, 64, 65, 127, 300)
DIMS = (32, 48, 384)
MASKS = ("random", "ragged", "single", "all_valid", "all_padding")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
N_DEFAULT = 24


@dataclass(frozen=True)
class Case:
    b: int
    length: int
    d: int
    mask: str
    dtype: torch.dtype

    def __str__(self) -> str:
        return f"B{self.b}-L{self.length}-D{self.d}-{self.mask}-{str(self.dtype).removeprefix('torch.')}"

    @property
    def seed(self) -> int:
        return zlib.crc32(str(self).encode())  # stable across processes, unlike hash()


def _balanced_subset(n: int, seed: int) -> list[Case]:
    """n cases where each axis cycles through a seeded shuffle of its values: every length, dim,
    mask kind and dtype occurs at least once (for n >= 8), and the combinations are random."""
    rng = random.Random(seed)

    def column(values: tuple) -> list:
        out: list = []
        while len(out) < n:
            out += rng.sample(values, len(values))
        return out[:n]

    axes = [column(axis) for axis in (BATCHES, LENGTHS, DIMS, MASKS, DTYPES)]
    return [Case(*c) for c in zip(*axes, strict=True)]


DEFAULT_CASES = _balanced_subset(N_DEFAULT, seed=2024)


def _mask(kind: str, b: int, length: int, g: torch.Generator) -> torch.Tensor:
    """[B, L] bool, True = real."""
    if kind == "random":  # independent positions, ~half real
        return torch.rand(b, length, generator=g) < 0.5
    if kind == "ragged":  # real tokens first, random lengths in [0, L], row 0 all padding
        lengths = torch.randint(0, length + 1, (b,), generator=g)
        lengths[0] = 0
        return torch.arange(length)[None, :] < lengths[:, None]
    if kind == "single":  # exactly one real position per row
        pos = torch.randint(0, length, (b,), generator=g)
        return torch.arange(length)[None, :] == pos[:, None]
    if kind == "all_valid":
        return torch.ones(b, length, dtype=torch.bool)
    if kind == "all_padding":
        return torch.zeros(b, length, dtype=torch.bool)
    raise AssertionError(kind)


def _inputs(case: Case) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    g = torch.Generator().manual_seed(case.seed)
    x = torch.randn(case.b, case.length, case.d, generator=g).to(case.dtype)
    mask = _mask(case.mask, case.b, case.length, g)
    return x.to(DEVICE), mask.to(DEVICE), g


def _check(got: torch.Tensor, want: torch.Tensor, mask: torch.Tensor, what: str) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, f"{what}: {got.dtype}{tuple(got.shape)}"
    assert not torch.isnan(got).any(), f"{what}: NaN in the output"
    torch.testing.assert_close(got, want, **TOL[got.dtype], msg=lambda m: f"{what}: {m}")
    empty = ~mask.any(dim=1)
    assert torch.all(got[empty] == 0), f"{what}: all-padding rows must be exact zeros"


# ----------------------------------------------------------------------------------------------
# Property sweeps
# ----------------------------------------------------------------------------------------------


def check_masked_mean_pool(case: Case) -> None:
    x, mask, _ = _inputs(case)
    _check(masked_mean_pool_triton(x, mask), masked_mean_pool_reference(x, mask), mask, str(case))


@pytest.mark.parametrize("case", DEFAULT_CASES, ids=str)
def test_seeded_subset(case: Case) -> None:
    check_masked_mean_pool(case)


@pytest.mark.slow
@pytest.mark.parametrize("length,d", list(itertools.product(LENGTHS, DIMS)))
def test_full_grid(length: int, d: int) -> None:
    """Every batch size, mask kind and dtype for one (length, D); all 24 take ~3 min in the interpreter."""
    for b, mask, dtype in itertools.product(BATCHES, MASKS, DTYPES):
        check_masked_mean_pool(Case(b, length, d, mask, dtype))


def test_default_subset_covers_every_axis_value() -> None:
    for axis, values in (("length", LENGTHS), ("d", DIMS), ("mask", MASKS), ("dtype", DTYPES)):
        assert {getattr(c, axis) for c in DEFAULT_CASES} == set(values), axis


# ----------------------------------------------------------------------------------------------
# Layouts, padding contents, corner shapes
# ----------------------------------------------------------------------------------------------


def _strided_inputs(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """x [3, 45, 48] as a transposed view (feature stride 45) and a transposed mask."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 48, 45, generator=g).to(dtype).to(DEVICE).transpose(1, 2)  # [3, 45, 48]
    mask = (torch.rand(45, 3, generator=g) < 0.6).to(DEVICE).t()  # [3, 45]
    mask[1] = False
    assert not x.is_contiguous() and not mask.is_contiguous()
    return x, mask


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_non_contiguous_inputs(dtype: torch.dtype) -> None:
    x, mask = _strided_inputs(dtype)
    _check(masked_mean_pool_triton(x, mask), masked_mean_pool_reference(x, mask), mask, "mean")

    # a sliced view: every other position and every other feature
    big = torch.randn(2, 62, 96, generator=torch.Generator().manual_seed(3)).to(dtype).to(DEVICE)
    xs, ms = big[:, ::2, ::2], torch.ones(2, 31, dtype=torch.bool, device=DEVICE)
    _check(masked_mean_pool_triton(xs, ms), masked_mean_pool_reference(xs, ms), ms, "sliced mean")


def test_padding_contents_are_never_read() -> None:
    """NaN / inf at padded positions must not reach the output (the kernel never loads them)."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(4, 37, 48, generator=g).to(DEVICE)
    mask = (torch.rand(4, 37, generator=g) < 0.5).to(DEVICE)
    mask[0] = False
    mask[1] = True
    clean = x.masked_fill(~mask[..., None], 0.0)
    dirty = x.masked_fill(~mask[..., None], float("nan"))
    dirty[2, ~mask[2]] = float("inf")
    _check(masked_mean_pool_triton(dirty, mask), masked_mean_pool_reference(clean, mask), mask, "mean")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fully_masked_rows_give_zeros_not_nan(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(19)
    x = torch.randn(3, 65, 48, generator=g).to(dtype).to(DEVICE)
    mask = torch.zeros(3, 65, dtype=torch.bool, device=DEVICE)
    mask[2, 64] = True  # the only real token sits alone in the second L block
    out = masked_mean_pool_triton(x, mask)
    assert not torch.isnan(out).any() and not torch.isinf(out).any(), "mean"
    assert torch.all(out[:2] == 0), "mean"


def test_tiny_and_empty_shapes() -> None:
    g = torch.Generator().manual_seed(23)
    x = torch.randn(2, 1, 5, generator=g).to(DEVICE)  # D < 16, L = 1
    mask = torch.tensor([[True], [False]], device=DEVICE)
    _check(masked_mean_pool_triton(x, mask), masked_mean_pool_reference(x, mask), mask, "tiny mean")

    assert masked_mean_pool_triton(x[:0], mask[:0]).shape == (0, 5)
    no_positions = x[:, :0]  # L = 0 pools to zeros, like the reference
    assert torch.all(masked_mean_pool_triton(no_positions, mask[:, :0]) == 0)


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def test_launcher_rejects_bad_shapes_naming_them() -> None:
    x = torch.randn(2, 5, 32, device=DEVICE)
    bad_mask = torch.ones(2, 6, dtype=torch.bool, device=DEVICE)
    good_mask = torch.ones(2, 5, dtype=torch.bool, device=DEVICE)
    with pytest.raises(ValueError, match=r"\(2, 5, 32\).*\(2, 6\)"):
        masked_mean_pool_triton(x, bad_mask)
    with pytest.raises(ValueError, match=r"torch\.bool"):
        masked_mean_pool_triton(x, good_mask.float())
    with pytest.raises(ValueError, match=r"\[B, L, D\].*\(2, 5\)"):
        masked_mean_pool_triton(x[:, :, 0], good_mask)
    with pytest.raises(ValueError, match=r"float32/float16/bfloat16"):
        masked_mean_pool_triton(x.double(), good_mask)


# ----------------------------------------------------------------------------------------------
# Configs: every config computes the right thing; pruning always leaves a legal one
# ----------------------------------------------------------------------------------------------


def _distinct(configs: list[triton.Config]) -> list[triton.Config]:
    """num_warps / num_stages do nothing in the interpreter: there, run each tile shape once."""
    if not INTERPRET:
        return configs
    seen: dict[tuple, triton.Config] = {}
    for cfg in configs:
        seen.setdefault(tuple(sorted(cfg.kwargs.items())), cfg)
    return list(seen.values())


def test_configs_are_enumerable() -> None:
    configs = mmp.masked_mean_pool_configs(full=True)
    assert len(configs) > 1 and all(isinstance(c, triton.Config) for c in configs)
    assert mmp.masked_mean_pool_plugin_configs() == configs, "the plugin's tactics are the autotune space"


def test_every_config_matches_reference() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 150, 48, generator=g).to(DEVICE)  # 150: several L blocks and a ragged tail
    mask = (torch.rand(2, 150, generator=g) < 0.7).to(DEVICE)
    want = masked_mean_pool_reference(x, mask)
    for cfg in _distinct(mmp.masked_mean_pool_configs(full=True)):
        out = torch.empty_like(want)
        mmp._launch(x, mask, out, config=cfg)
        torch.testing.assert_close(out, want, **TOL[x.dtype], msg=lambda m, c=cfg: f"{c}: {m}")


@pytest.mark.parametrize("d", [5, 32, 48, 384, 4096, 16384])
def test_pruning_leaves_legal_configs(d: int) -> None:
    for length in (1, 2, 7, 65, 300, 5000):
        named = {"L_BUCKET": triton.next_power_of_2(length), "D": d}
        split = mmp._prune(mmp.masked_mean_pool_configs(full=True), named)
        assert split
        assert all(c.kwargs["BLOCK_L"] * c.kwargs["BLOCK_D"] <= mmp.MAX_TILE_ELEMS for c in split)


def test_autotuned_launch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU launch path with several configs: pruning, the grid lambda, the L_BUCKET key.

    The interpreter has no driver to time on (autotuning more than one config raises
    '0 active drivers'), so the autotuner is rebuilt with the full config list and a fake
    benchmark that runs each candidate and reports later candidates as faster.
    """
    calls: list[None] = []

    def bench(fn, quantiles):
        fn()
        calls.append(None)
        return [1.0 / len(calls)] * len(quantiles)

    tuner = triton.autotune(
        configs=mmp.masked_mean_pool_configs(full=True),
        key=["L_BUCKET", "D"],
        prune_configs_by={"early_config_prune": mmp._prune},
        do_bench=bench,
    )(mmp._masked_mean_pool_kernel)
    monkeypatch.setattr(mmp, "_masked_mean_pool_tuned", tuner)

    g = torch.Generator().manual_seed(29)
    for length in (33, 50, 64, 65):  # three lengths in one bucket, then a new bucket
        x = torch.randn(2, length, 48, generator=g).to(DEVICE)
        mask = (torch.rand(2, length, generator=g) < 0.7).to(DEVICE)
        _check(masked_mean_pool_triton(x, mask), masked_mean_pool_reference(x, mask), mask, f"L={length} mean")
    assert [k[0] for k in tuner.cache] == [64, 128], f"tuned once per L bucket, got {list(tuner.cache)}"
    assert len(calls) > 2, f"pruning left {len(calls)} candidates"


def test_interpreter_uses_a_single_config() -> None:
    """One config under the interpreter (timing it is meaningless), the whole space on a GPU."""
    assert (len(mmp.masked_mean_pool_configs()) == 1) == INTERPRET


# ----------------------------------------------------------------------------------------------
# GPU only
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (4 GiB tensor)")
def test_int64_batch_offsets() -> None:
    """pid_b * stride_xb past 2**31 elements: the batch offset must be computed in int64."""
    d, length = 64, 2**14
    stride_b = 2**30 + d  # batch item 2 starts past element 2**31
    storage = torch.zeros(2 * stride_b + length * d, dtype=torch.float16, device="cuda")
    x = storage.as_strided((3, length, d), (stride_b, d, 1))
    x[2, :, :] = torch.randn(length, d, device="cuda").half()
    mask = torch.ones(3, length, dtype=torch.bool, device="cuda")
    torch.testing.assert_close(masked_mean_pool_triton(x, mask)[2], masked_mean_pool_reference(x[2:], mask[2:])[0])
