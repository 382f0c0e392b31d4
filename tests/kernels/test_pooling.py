"""Triton pooling kernels (`reelserve.kernels.pooling`) vs their PyTorch references.

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

from reelserve.kernels import pooling  # noqa: E402
from reelserve.kernels.pooling import (  # noqa: E402
    MAX_FUSED_D,
    attention_pool_triton,
    l2_normalize_triton,
    masked_mean_pool_triton,
    pooling_configs,
)
from reelserve.kernels.reference import (  # noqa: E402
    attention_pool_reference,
    attention_reference,
    l2_normalize_reference,
    masked_mean_pool_reference,
)

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
HEADS = {32: 1, 48: 4, 384: 6}  # D -> H: Dh = 32, 12 (not a power of two), 64
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


def check_masked_mean_pool_normalize(case: Case) -> None:
    x, mask, _ = _inputs(case)
    got = masked_mean_pool_triton(x, mask, normalize=True)
    _check(got, l2_normalize_reference(masked_mean_pool_reference(x, mask)), mask, str(case))
    norms = torch.linalg.vector_norm(got.float(), dim=-1)
    real = mask.any(dim=1)
    tol = TOL[case.dtype]["atol"]
    torch.testing.assert_close(
        norms[real], torch.ones_like(norms[real]), atol=tol, rtol=0, msg=lambda m: f"{case}: {m}"
    )


def check_attention_pool(case: Case) -> None:
    x, mask, g = _inputs(case)
    h = HEADS[case.d]
    query = (2 * torch.randn(h, case.d // h, generator=g)).to(case.dtype).to(DEVICE)  # peaky softmax
    _check(attention_pool_triton(x, mask, query), attention_pool_reference(x, mask, query), mask, str(case))


def check_l2_normalize(case: Case) -> None:
    x, mask, _ = _inputs(case)
    x = x * mask[..., None]  # padded positions become zero vectors
    got = l2_normalize_triton(x)
    want = l2_normalize_reference(x)
    assert got.shape == x.shape and got.dtype == x.dtype
    assert not torch.isnan(got).any()
    torch.testing.assert_close(got, want, **TOL[case.dtype], msg=lambda m: f"{case}: {m}")
    assert torch.all(got[~mask] == 0), f"{case}: zero vectors stay zero"


CHECKS = {
    "mean": check_masked_mean_pool,
    "mean_normalize": check_masked_mean_pool_normalize,
    "attention": check_attention_pool,
    "l2_normalize": check_l2_normalize,
}


@pytest.mark.parametrize("op", CHECKS)
@pytest.mark.parametrize("case", DEFAULT_CASES, ids=str)
def test_seeded_subset(case: Case, op: str) -> None:
    CHECKS[op](case)


@pytest.mark.slow
@pytest.mark.parametrize("op", CHECKS)
@pytest.mark.parametrize("length,d", list(itertools.product(LENGTHS, DIMS)))
def test_full_grid(length: int, d: int, op: str) -> None:
    """Every batch size, mask kind and dtype for one (length, D); all 96 take ~12 min in the interpreter."""
    for b, mask, dtype in itertools.product(BATCHES, MASKS, DTYPES):
        CHECKS[op](Case(b, length, d, mask, dtype))


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
    want = l2_normalize_reference(masked_mean_pool_reference(x, mask))
    _check(masked_mean_pool_triton(x, mask, normalize=True), want, mask, "mean+normalize")

    query = torch.randn(4, 12, generator=torch.Generator().manual_seed(1)).to(dtype).to(DEVICE)
    query_t = query.t().contiguous().t()  # same values, strides (1, 4)
    _check(attention_pool_triton(x, mask, query_t), attention_pool_reference(x, mask, query), mask, "attention")

    # a sliced view: every other position and every other feature
    big = torch.randn(2, 62, 96, generator=torch.Generator().manual_seed(3)).to(dtype).to(DEVICE)
    xs, ms = big[:, ::2, ::2], torch.ones(2, 31, dtype=torch.bool, device=DEVICE)
    _check(masked_mean_pool_triton(xs, ms), masked_mean_pool_reference(xs, ms), ms, "sliced mean")

    rows = big[0].t()  # [96, 62], row stride 1
    torch.testing.assert_close(l2_normalize_triton(rows), l2_normalize_reference(rows), **TOL[dtype])
    y3 = big[:, :, ::3]  # [2, 62, 32] not viewable as [R, D] -> reshape copies
    torch.testing.assert_close(l2_normalize_triton(y3), l2_normalize_reference(y3), **TOL[dtype])


def test_padding_contents_are_never_read() -> None:
    """NaN / inf at padded positions must not reach the output (the kernels never load them)."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(4, 37, 48, generator=g).to(DEVICE)
    mask = (torch.rand(4, 37, generator=g) < 0.5).to(DEVICE)
    mask[0] = False
    mask[1] = True
    clean = x.masked_fill(~mask[..., None], 0.0)
    dirty = x.masked_fill(~mask[..., None], float("nan"))
    dirty[2, ~mask[2]] = float("inf")
    query = torch.randn(4, 12, generator=g).to(DEVICE)
    _check(masked_mean_pool_triton(dirty, mask), masked_mean_pool_reference(clean, mask), mask, "mean")
    want = l2_normalize_reference(masked_mean_pool_reference(clean, mask))
    _check(masked_mean_pool_triton(dirty, mask, normalize=True), want, mask, "normalize")
    _check(attention_pool_triton(dirty, mask, query), attention_pool_reference(clean, mask, query), mask, "attention")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fully_masked_rows_give_zeros_not_nan(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(19)
    x = torch.randn(3, 65, 48, generator=g).to(dtype).to(DEVICE)
    mask = torch.zeros(3, 65, dtype=torch.bool, device=DEVICE)
    mask[2, 64] = True  # the only real token sits alone in the second L block
    query = torch.randn(4, 12, generator=g).to(dtype).to(DEVICE)
    for name, out in (
        ("mean", masked_mean_pool_triton(x, mask)),
        ("normalize", masked_mean_pool_triton(x, mask, normalize=True)),
        ("attention", attention_pool_triton(x, mask, query)),
    ):
        assert not torch.isnan(out).any() and not torch.isinf(out).any(), name
        assert torch.all(out[:2] == 0), name
    torch.testing.assert_close(attention_pool_triton(x, mask, query)[2], x[2, 64])  # one key: weight 1


def test_tiny_and_empty_shapes() -> None:
    g = torch.Generator().manual_seed(23)
    x = torch.randn(2, 1, 5, generator=g).to(DEVICE)  # D < 16, L = 1
    mask = torch.tensor([[True], [False]], device=DEVICE)
    _check(masked_mean_pool_triton(x, mask), masked_mean_pool_reference(x, mask), mask, "tiny mean")
    want = l2_normalize_reference(masked_mean_pool_reference(x, mask))
    _check(masked_mean_pool_triton(x, mask, normalize=True), want, mask, "tiny normalize")
    query = torch.randn(1, 5, generator=g).to(DEVICE)
    _check(attention_pool_triton(x, mask, query), attention_pool_reference(x, mask, query), mask, "tiny attention")
    torch.testing.assert_close(l2_normalize_triton(x), l2_normalize_reference(x))

    assert masked_mean_pool_triton(x[:0], mask[:0]).shape == (0, 5)
    assert attention_pool_triton(x[:0], mask[:0], query).shape == (0, 5)
    assert l2_normalize_triton(x[:0]).shape == (0, 1, 5)
    no_positions = x[:, :0]  # L = 0 pools to zeros, like the reference
    assert torch.all(masked_mean_pool_triton(no_positions, mask[:, :0]) == 0)
    assert torch.all(attention_pool_triton(no_positions, mask[:, :0], query) == 0)


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def test_launchers_reject_bad_shapes_naming_them() -> None:
    x = torch.randn(2, 5, 32, device=DEVICE)
    bad_mask = torch.ones(2, 6, dtype=torch.bool, device=DEVICE)
    good_mask = torch.ones(2, 5, dtype=torch.bool, device=DEVICE)
    for fn in (masked_mean_pool_triton, lambda x, m: attention_pool_triton(x, m, torch.randn(2, 16, device=DEVICE))):
        with pytest.raises(ValueError, match=r"\(2, 5, 32\).*\(2, 6\)"):
            fn(x, bad_mask)
        with pytest.raises(ValueError, match=r"torch\.bool"):
            fn(x, good_mask.float())
        with pytest.raises(ValueError, match=r"\[B, L, D\].*\(2, 5\)"):
            fn(x[:, :, 0], good_mask)
    with pytest.raises(ValueError, match=r"H \* Dh == D.*\(3, 16\).*\(2, 5, 32\)"):
        attention_pool_triton(x, good_mask, torch.randn(3, 16, device=DEVICE))
    with pytest.raises(ValueError, match=r"\(32,\).*\(2, 5, 32\)"):
        attention_pool_triton(x, good_mask, torch.randn(32, device=DEVICE))
    with pytest.raises(ValueError, match=r"float32/float16/bfloat16"):
        masked_mean_pool_triton(x.double(), good_mask)
    with pytest.raises(ValueError, match=r"head dim.*\(1, 1025\)"):
        attention_pool_triton(x.new_zeros(1, 1, 1025), good_mask[:1, :1], x.new_zeros(1, 1025))
    wide = torch.zeros(1, 1, MAX_FUSED_D + 1, device=DEVICE)
    with pytest.raises(ValueError, match=rf"\(1, 1, {MAX_FUSED_D + 1}\)"):
        masked_mean_pool_triton(wide, torch.ones(1, 1, dtype=torch.bool, device=DEVICE), normalize=True)
    with pytest.raises(ValueError, match=rf"\(1, 1, {MAX_FUSED_D + 1}\)"):
        l2_normalize_triton(wide)


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


def test_pooling_configs_are_enumerable() -> None:
    configs = pooling_configs()
    assert set(configs) == {"masked_mean_pool", "masked_mean_pool_normalize", "attention_pool"}
    for name, cfgs in configs.items():
        assert len(cfgs) > 1 and all(isinstance(c, triton.Config) for c in cfgs), name


def test_every_config_matches_reference() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 150, 48, generator=g).to(DEVICE)  # 150: several L blocks and a ragged tail
    mask = (torch.rand(2, 150, generator=g) < 0.7).to(DEVICE)
    query = torch.randn(4, 12, generator=g).to(DEVICE)
    mean = masked_mean_pool_reference(x, mask)
    for normalize, key, want in (
        (False, "masked_mean_pool", mean),
        (True, "masked_mean_pool_normalize", l2_normalize_reference(mean)),
    ):
        for cfg in _distinct(pooling_configs()[key]):
            out = torch.empty_like(want)
            pooling._launch_masked_mean_pool(x, mask, out, normalize, config=cfg)
            torch.testing.assert_close(out, want, **TOL[x.dtype], msg=lambda m, c=cfg, k=key: f"{k} {c}: {m}")
    want = attention_pool_reference(x, mask, query)
    for cfg in _distinct(pooling_configs()["attention_pool"]):
        out = torch.empty_like(want)
        pooling._launch_attention_pool(x, mask, query, out, 12**-0.5, config=cfg)
        torch.testing.assert_close(out, want, **TOL[x.dtype], msg=lambda m, c=cfg: f"attention {c}: {m}")


@pytest.mark.parametrize("d", [5, 32, 48, 384, 4096, MAX_FUSED_D])
def test_pruning_leaves_legal_configs(d: int) -> None:
    for length in (1, 2, 7, 65, 300, 5000):
        named = {"L_BUCKET": triton.next_power_of_2(length), "D": d}
        split = pooling._prune_mean_pool(pooling.masked_mean_pool_configs(normalize=False, full=True), named)
        block_d = max(16, triton.next_power_of_2(d))
        whole = pooling._prune_mean_pool(
            pooling.masked_mean_pool_configs(normalize=True, full=True), named, BLOCK_D=block_d
        )
        block_dh = max(16, triton.next_power_of_2(min(d, pooling.MAX_HEAD_DIM)))
        attn = pooling._prune_attention_pool(pooling.attention_pool_configs(full=True), named, BLOCK_DH=block_dh)
        assert split and whole and attn
        assert all(c.kwargs["BLOCK_L"] * c.kwargs["BLOCK_D"] <= pooling._MAX_TILE for c in split)
        assert all(c.kwargs["BLOCK_L"] * block_d <= pooling._MAX_TILE for c in whole)
        assert all(c.kwargs["BLOCK_L"] * block_dh <= pooling._MAX_TILE for c in attn)
        assert all(c.kwargs["BLOCK_L"] * block_dh <= 64 * 32 * c.num_warps for c in attn), "would spill"


def test_autotuned_launch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU launch path with several configs: pruning, the grid lambda, the L_BUCKET key.

    The interpreter has no driver to time on (autotuning more than one config raises
    '0 active drivers'), so the autotuners are rebuilt with the full config lists and a fake
    benchmark that runs each candidate and reports later candidates as faster.
    """
    tuners = {}
    for name, key, configs, prune in (
        ("_masked_mean_pool_split_d", "D", pooling.masked_mean_pool_configs(full=True), pooling._prune_mean_pool),
        (
            "_masked_mean_pool_whole_d",
            "D",
            pooling.masked_mean_pool_configs(normalize=True, full=True),
            pooling._prune_mean_pool,
        ),
        ("_attention_pool_tuned", "DH", pooling.attention_pool_configs(full=True), pooling._prune_attention_pool),
    ):
        calls: list[None] = []

        def bench(fn, quantiles, calls=calls):
            fn()
            calls.append(None)
            return [1.0 / len(calls)] * len(quantiles)

        kernel = pooling._attention_pool_kernel if "attention" in name else pooling._masked_mean_pool_kernel
        tuner = triton.autotune(
            configs=configs, key=["L_BUCKET", key], prune_configs_by={"early_config_prune": prune}, do_bench=bench
        )(kernel)
        monkeypatch.setattr(pooling, name, tuner)
        tuners[name] = (tuner, calls)

    g = torch.Generator().manual_seed(29)
    query = torch.randn(4, 12, generator=g).to(DEVICE)
    for length in (33, 50, 64, 65):  # three lengths in one bucket, then a new bucket
        x = torch.randn(2, length, 48, generator=g).to(DEVICE)
        mask = (torch.rand(2, length, generator=g) < 0.7).to(DEVICE)
        mean = masked_mean_pool_reference(x, mask)
        _check(masked_mean_pool_triton(x, mask), mean, mask, f"L={length} mean")
        _check(masked_mean_pool_triton(x, mask, normalize=True), l2_normalize_reference(mean), mask, "normalize")
        want = attention_pool_reference(x, mask, query)
        _check(attention_pool_triton(x, mask, query), want, mask, f"L={length} attention")
    for name, (tuner, calls) in tuners.items():
        assert [k[0] for k in tuner.cache] == [64, 128], f"{name}: tuned once per L bucket, got {list(tuner.cache)}"
        assert len(calls) > 2, f"{name}: pruning left {len(calls)} candidates"


def test_interpreter_uses_a_single_config() -> None:
    if not INTERPRET:
        pytest.skip("only meaningful under TRITON_INTERPRET=1")
    assert len(pooling.masked_mean_pool_configs()) == 1
    assert len(pooling.masked_mean_pool_configs(normalize=True)) == 1
    assert len(pooling.attention_pool_configs()) == 1


# ----------------------------------------------------------------------------------------------
# The new reference itself, against independent formulations
# ----------------------------------------------------------------------------------------------


def test_attention_pool_reference_matches_attention_reference() -> None:
    """Attention pooling = attention with one query per head and keys = values = x's heads."""
    g = torch.Generator().manual_seed(13)
    b, length, h, dh = 3, 9, 4, 8
    x = torch.randn(b, length, h * dh, generator=g)
    mask = torch.rand(b, length, generator=g) < 0.5
    mask[0] = False
    query = torch.randn(h, dh, generator=g)
    kv = x.unflatten(-1, (h, dh)).transpose(1, 2)  # [B, H, L, Dh]
    q = query[None, :, None, :].expand(b, h, 1, dh)  # [B, H, 1, Dh]
    for scale in (None, 0.3):
        want = attention_reference(q, kv, kv, mask, scale=scale).reshape(b, h * dh)
        torch.testing.assert_close(attention_pool_reference(x, mask, query, scale=scale), want)


def test_attention_pool_reference_matches_float64_loop() -> None:
    g = torch.Generator().manual_seed(17)
    b, length, h, dh = 2, 6, 2, 3
    x = torch.randn(b, length, h * dh, generator=g)
    mask = torch.tensor([[True, False, True, True, False, True], [False] * 6])
    query = torch.randn(h, dh, generator=g)
    want = torch.zeros(b, h * dh, dtype=torch.float64)
    for bi, hi in itertools.product(range(b), range(h)):
        keys = [x[bi, j, hi * dh : (hi + 1) * dh].double() for j in range(length) if mask[bi, j]]
        if keys:
            p = torch.softmax(torch.stack([k @ query[hi].double() / dh**0.5 for k in keys]), dim=0)
            want[bi, hi * dh : (hi + 1) * dh] = sum(pi * k for pi, k in zip(p, keys, strict=True))
    got = attention_pool_reference(x, mask, query)
    torch.testing.assert_close(got.double(), want, atol=1e-6, rtol=1e-6)
    assert torch.all(got[1] == 0)


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
    query = torch.randn(2, 32, device="cuda").half()
    torch.testing.assert_close(
        attention_pool_triton(x, mask, query)[2], attention_pool_reference(x[2:], mask[2:], query)[0], **TOL[x.dtype]
    )
