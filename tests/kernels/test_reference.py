"""Kernel references vs independent implementations (torch SDPA, python loops, float64 maths)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from reelserve.kernels import fused_attention, l2_normalize, masked_mean_pool
from reelserve.kernels.reference import attention_reference, l2_normalize_reference, masked_mean_pool_reference

# Output tolerance per dtype. The reference computes in fp32 and casts back, so in low precision
# the only difference to an fp32 oracle on the same (rounded) inputs is the final rounding:
# bf16 has 8 mantissa bits (relative step 2^-8 ~ 3.9e-3), fp16 has 11 (2^-11 ~ 4.9e-4).
TOL = {
    torch.float32: {"atol": 2e-5, "rtol": 2e-5},
    torch.bfloat16: {"atol": 1e-2, "rtol": 1.6e-2},
    torch.float16: {"atol": 2e-3, "rtol": 2e-3},
}
LENGTHS = (1, 7, 33)


def _qkv(b: int, h: int, lq: int, lk: int, d: int, dtype: torch.dtype, seed: int):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, lq, d, generator=g).to(dtype)
    k = torch.randn(b, h, lk, d, generator=g).to(dtype)
    v = torch.randn(b, h, lk, d, generator=g).to(dtype)
    return q, k, v


def _padding_mask(b: int, lk: int, seed: int) -> torch.Tensor:
    """[B, Lk] bool with a random number (>= 1) of real keys per row, real keys first."""
    g = torch.Generator().manual_seed(seed + 1000)
    lengths = torch.randint(1, lk + 1, (b,), generator=g)
    lengths[0] = lk  # one full row always
    return torch.arange(lk)[None, :] < lengths[:, None]


def _allowed(key_padding_mask: torch.Tensor | None, b: int, lq: int, lk: int, causal: bool) -> torch.Tensor:
    """[B, 1, Lq, Lk] bool, True = query may attend to key. Causal is bottom-right aligned
    (query i sees keys j <= i + Lk - Lq), which equals SDPA's is_causal when Lq == Lk."""
    allowed = torch.ones(b, 1, lq, lk, dtype=torch.bool)
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :]
    if causal:
        i = torch.arange(lq)[:, None]
        j = torch.arange(lk)[None, :]
        allowed = allowed & (j <= i + (lk - lq))
    return allowed


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("lq,lk", [(n, n) for n in LENGTHS] + [(7, 33), (33, 7), (1, 33)])
def test_attention_matches_sdpa(lq: int, lk: int, causal: bool, dtype: torch.dtype) -> None:
    b, h, d = 3, 2, 16
    seed = 31 * lq + lk + (7 if causal else 0)
    q, k, v = _qkv(b, h, lq, lk, d, dtype, seed)
    kpm = _padding_mask(b, lk, seed)

    got = attention_reference(q, k, v, kpm, causal=causal)
    assert got.dtype == dtype and got.shape == (b, h, lq, d)

    allowed = _allowed(kpm, b, lq, lk, causal)
    want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=allowed)
    if causal and lq == lk and dtype == torch.float32:
        # the same thing through SDPA's own causal flag (top-left == bottom-right when square)
        want_flag = F.scaled_dot_product_attention(
            q.float(), k.float(), v.float(), attn_mask=kpm[:, None, None, :] & torch.ones(lq, lk).tril().bool()
        )
        torch.testing.assert_close(want_flag, want)
    rows = allowed.any(dim=-1).expand(b, h, lq)  # compare only queries with at least one visible key
    torch.testing.assert_close(
        got.float()[rows], want[rows], **TOL[dtype], msg=lambda m: f"{dtype} causal={causal}: {m}"
    )
    # rows that see no key (only possible with causal and Lq > Lk) are exact zeros
    assert torch.all(got[~rows] == 0), "queries with no visible key must give zeros"
    assert not torch.isnan(got).any()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_attention_low_precision_vs_low_precision_sdpa(dtype: torch.dtype) -> None:
    """Against SDPA run in the low dtype itself: both errors add up, so twice the tolerance."""
    b, h, lq, lk, d = 2, 2, 33, 33, 32
    q, k, v = _qkv(b, h, lq, lk, d, dtype, seed=5)
    kpm = _padding_mask(b, lk, seed=5)
    got = attention_reference(q, k, v, kpm)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=kpm[:, None, None, :])
    tol = {key: 2 * value for key, value in TOL[dtype].items()}
    torch.testing.assert_close(got, want, **tol)


def test_attention_without_mask_and_custom_scale() -> None:
    q, k, v = _qkv(2, 4, 7, 33, 8, torch.float32, seed=11)
    for scale in (None, 0.05, 1.0):
        got = attention_reference(q, k, v, None, scale=scale)
        want = F.scaled_dot_product_attention(q, k, v, scale=scale)
        torch.testing.assert_close(got, want, **TOL[torch.float32], msg=lambda m, s=scale: f"scale={s}: {m}")


def test_attention_against_explicit_softmax_loop() -> None:
    """A float64 per-query loop, independent of SDPA's implementation."""
    b, h, lq, lk, d = 2, 2, 7, 7, 4
    q, k, v = _qkv(b, h, lq, lk, d, torch.float32, seed=3)
    kpm = _padding_mask(b, lk, seed=3)
    got = attention_reference(q, k, v, kpm, causal=True)
    want = torch.zeros(b, h, lq, d, dtype=torch.float64)
    for bi, hi, i in itertools.product(range(b), range(h), range(lq)):
        keys = [j for j in range(lk) if kpm[bi, j] and j <= i]
        if not keys:
            continue
        s = torch.stack([(q[bi, hi, i].double() @ k[bi, hi, j].double()) / d**0.5 for j in keys])
        p = torch.softmax(s, dim=0)
        want[bi, hi, i] = sum(p[n] * v[bi, hi, j].double() for n, j in enumerate(keys))
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_fully_masked_rows_are_exact_zeros(dtype: torch.dtype, causal: bool) -> None:
    b, h, l, d = 3, 2, 7, 8  # noqa: E741
    q, k, v = _qkv(b, h, l, l, d, dtype, seed=17)
    kpm = torch.ones(b, l, dtype=torch.bool)
    kpm[1] = False  # batch item 1: every key is padding
    kpm[2, :3] = False  # batch item 2: the first 3 keys are padding -> causal queries 0..2 see nothing
    out = attention_reference(q, k, v, kpm, causal=causal)
    assert not torch.isnan(out).any() and not torch.isinf(out).any()
    assert torch.all(out[1] == 0), f"all-padding item gave {out[1].abs().max()}"
    if causal:
        assert torch.all(out[2, :, :3] == 0)
        assert torch.all(out[2, :, 3:].abs().sum(-1) > 0)
    else:
        assert torch.all(out[2].abs().sum(-1) > 0)
    assert torch.all(out[0].abs().sum(-1) > 0)


def test_masked_keys_do_not_leak() -> None:
    """Changing padded keys / values (even to huge numbers) must not change the output."""
    q, k, v = _qkv(2, 2, 7, 7, 8, torch.float32, seed=23)
    kpm = torch.tensor([[True] * 4 + [False] * 3, [True] * 7])
    out = attention_reference(q, k, v, kpm)
    k2, v2 = k.clone(), v.clone()
    k2[0, :, 4:] = 1e4
    v2[0, :, 4:] = -1e4
    torch.testing.assert_close(attention_reference(q, k2, v2, kpm), out, atol=0, rtol=0)


def _loop_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    b, l, d = x.shape  # noqa: E741
    out = torch.zeros(b, d, dtype=torch.float64)
    for i in range(b):
        rows = [x[i, j].double() for j in range(l) if mask[i, j]]
        if rows:
            out[i] = sum(rows) / len(rows)
    return out


@pytest.mark.parametrize("length", LENGTHS)
def test_masked_mean_pool_matches_loop(length: int) -> None:
    g = torch.Generator().manual_seed(length)
    x = torch.randn(4, length, 5, generator=g)
    mask = torch.rand(4, length, generator=g) > 0.4
    mask[0] = True
    mask[1] = False  # all padding
    mask[2, 0] = True
    x[~mask] = 1e6  # padding values must not matter
    got = masked_mean_pool_reference(x, mask)
    assert got.shape == (4, 5) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _loop_mean(x, mask), atol=1e-5, rtol=1e-5)
    assert torch.all(got[1] == 0), "an all-padding row pools to zeros"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_masked_mean_pool_low_precision(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 33, 16, generator=g).to(dtype)
    mask = torch.rand(3, 33, generator=g) > 0.5
    mask[2] = False
    got = masked_mean_pool_reference(x, mask)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), _loop_mean(x, mask), **TOL[dtype], check_dtype=False)
    assert torch.all(got[2] == 0)


def test_l2_normalize_unit_norm_and_zero_vector() -> None:
    g = torch.Generator().manual_seed(9)
    x = torch.randn(6, 33, generator=g) * torch.tensor([1e-3, 1.0, 10.0, 1e3, 1.0, 1.0])[:, None]
    x[4] = 0.0
    got = l2_normalize_reference(x)
    norms = torch.linalg.vector_norm(got.double(), dim=-1)
    keep = torch.tensor([True, True, True, True, False, True])
    torch.testing.assert_close(norms[keep], torch.ones(5, dtype=torch.float64), atol=1e-6, rtol=0)
    assert torch.all(got[4] == 0) and not torch.isnan(got).any()
    want = x.double() / x.double().norm(dim=-1, keepdim=True).clamp(min=1e-300)
    torch.testing.assert_close(got.double()[keep], want[keep], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_l2_normalize_low_precision(dtype: torch.dtype) -> None:
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(4)).to(dtype)
    got = l2_normalize_reference(x)
    assert got.dtype == dtype
    norms = torch.linalg.vector_norm(got.double(), dim=-1)
    torch.testing.assert_close(norms, torch.ones(4, dtype=torch.float64), **TOL[dtype])
    assert torch.all(l2_normalize_reference(torch.zeros(2, 8, dtype=dtype)) == 0)


def test_dispatchers_return_the_references() -> None:
    q, k, v = _qkv(2, 3, 7, 7, 8, torch.float32, seed=1)
    kpm = _padding_mask(2, 7, seed=1)
    for causal, scale in itertools.product([False, True], [None, 0.3]):
        torch.testing.assert_close(
            fused_attention(q, k, v, kpm, causal=causal, scale=scale),
            attention_reference(q, k, v, kpm, causal=causal, scale=scale),
            atol=0,
            rtol=0,
        )
    torch.testing.assert_close(fused_attention(q, k, v), attention_reference(q, k, v), atol=0, rtol=0)
    x = torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(2))
    mask = torch.tensor([[True] * 7, [False] * 7, [True, False] * 3 + [True]])
    torch.testing.assert_close(masked_mean_pool(x, mask), masked_mean_pool_reference(x, mask), atol=0, rtol=0)
    torch.testing.assert_close(l2_normalize(x), l2_normalize_reference(x), atol=0, rtol=0)
    torch.testing.assert_close(l2_normalize(x, 1e-3), l2_normalize_reference(x, 1e-3), atol=0, rtol=0)
