"""`fused_attention_triton` against `attention_reference` (its spec), in Triton's interpreter on CPU."""

from __future__ import annotations

import itertools
import os
import random

import pytest
import torch

from reelserve.kernels import fused_attention, use_triton
from reelserve.kernels.attention import fused_attention_triton
from reelserve.kernels.reference import attention_reference

# Kernel vs reference on the same inputs. fp32: both accumulate in fp32 (interpreter dots are
# exact fp32). fp16/bf16: the kernel rounds softmax probabilities to the input dtype before the
# P@V product (as FlashAttention does), the reference does not.
TOL = {
    torch.float32: {"atol": 1e-5, "rtol": 1e-5},
    torch.float16: {"atol": 3e-3, "rtol": 3e-3},
    torch.bfloat16: {"atol": 2.5e-2, "rtol": 2.5e-2},
}
BATCHES = (1, 2, 3, 8)
LENGTHS = (1, 2, 7, 31, 32, 33, 64, 65, 127, 300)
HEAD_DIMS = (32, 64, 128)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MASKS = ("none", "random", "all_padding_row", "single_key")
GRID = list(itertools.product(BATCHES, LENGTHS, LENGTHS, HEAD_DIMS, DTYPES, (False, True), MASKS))
ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"  # CPU tensors run in Triton's interpreter (tests/conftest.py)
# Triton's interpreter multiplies the raw bit patterns of bf16 `tl.dot` operands (it stores bf16
# as uint16; triton-lang/triton#11584, "not supported yet" upstream). bf16 attention is therefore
# checked on a GPU (and compiled ahead of time for sm_80/sm_90), fp32/fp16 in the interpreter.
INTERPRETABLE = [case for case in GRID if ON_GPU or case[4] != torch.bfloat16]
SUBSET = random.Random(2026).sample(INTERPRETABLE, 28)
BF16_SUBSET = random.Random(7).sample([case for case in GRID if case[4] == torch.bfloat16], 12)


def make_mask(kind: str, b: int, lk: int, g: torch.Generator) -> torch.Tensor | None:
    if kind == "none":
        return None
    mask = torch.rand(b, lk, generator=g) > 0.35
    if kind == "all_padding_row":
        mask[0] = False
    elif kind == "single_key":
        mask[:] = False
        mask[torch.arange(b), torch.randint(lk, (b,), generator=g)] = True
    return mask


def run_case(b: int, lq: int, lk: int, d: int, dtype: torch.dtype, causal: bool, mask_kind: str) -> None:
    g = torch.Generator().manual_seed(b * 1_000_003 + lq * 1009 + lk * 31 + d + causal)
    h = 2
    q, k, v = (torch.randn(b, h, n, d, generator=g).to(device=DEVICE, dtype=dtype) for n in (lq, lk, lk))
    mask = make_mask(mask_kind, b, lk, g)
    mask = mask.to(DEVICE) if mask is not None else None
    got = fused_attention_triton(q, k, v, mask, causal=causal)
    want = attention_reference(q, k, v, mask, causal=causal)
    assert not torch.isnan(got).any(), "NaN in kernel output"
    torch.testing.assert_close(
        got, want, **TOL[dtype], msg=lambda m: f"B={b} Lq={lq} Lk={lk} D={d} {dtype} causal={causal} {mask_kind}: {m}"
    )


@pytest.mark.parametrize("case", SUBSET, ids=lambda c: "-".join(map(str, c)).replace("torch.", ""))
def test_attention_seeded_subset(case) -> None:
    run_case(*case)


@pytest.mark.slow
@pytest.mark.parametrize("case", INTERPRETABLE[::7], ids=lambda c: "-".join(map(str, c)).replace("torch.", ""))
def test_attention_sweep(case) -> None:
    run_case(*case)


@pytest.mark.skipif(not ON_GPU, reason="needs an NVIDIA GPU: Triton's interpreter cannot compute bf16 tl.dot (#11584)")
@pytest.mark.parametrize("case", BF16_SUBSET, ids=lambda c: "-".join(map(str, c)).replace("torch.", ""))
def test_attention_bf16_on_gpu(case) -> None:
    run_case(*case)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_fully_padded_rows_are_zero_not_nan(dtype) -> None:
    q, k, v = (torch.randn(2, 2, 9, 32).to(DEVICE, dtype) for _ in range(3))
    mask = torch.ones(2, 9, dtype=torch.bool, device=DEVICE)
    mask[1] = False
    out = fused_attention_triton(q, k, v, mask)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert not torch.isnan(out).any()


def test_causal_with_more_queries_than_keys_masks_early_queries() -> None:
    q, k, v = (torch.randn(1, 1, n, 32, device=DEVICE) for n in (9, 4, 4))
    out = fused_attention_triton(q, k, v, causal=True)
    torch.testing.assert_close(out, attention_reference(q, k, v, causal=True), atol=1e-5, rtol=1e-5)
    assert torch.equal(out[0, 0, :5], torch.zeros(5, 32, device=DEVICE))  # query i sees keys j <= i - 5


def test_non_contiguous_inputs() -> None:
    qkv = torch.randn(2, 17, 3, 2, 64, device=DEVICE)  # [B, L, (q,k,v), H, D] like a fused projection
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    assert not q.is_contiguous()
    torch.testing.assert_close(fused_attention_triton(q, k, v), attention_reference(q, k, v), atol=1e-5, rtol=1e-5)


def test_custom_scale() -> None:
    q, k, v = (torch.randn(1, 2, 5, 32, device=DEVICE) for _ in range(3))
    torch.testing.assert_close(
        fused_attention_triton(q, k, v, scale=0.5), attention_reference(q, k, v, scale=0.5), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize(
    "shapes, error",
    [
        (((2, 2, 5, 32), (2, 2, 6, 32), (2, 2, 5, 32)), "k and v"),
        (((2, 2, 5, 48), (2, 2, 5, 48), (2, 2, 5, 48)), "head dim 48"),
        (((2, 5, 32), (2, 5, 32), (2, 5, 32)), r"\[B, H, L, D\]"),
    ],
)
def test_shape_errors_name_the_shapes(shapes, error) -> None:
    q, k, v = (torch.randn(s) for s in shapes)
    with pytest.raises(ValueError, match=error):
        fused_attention_triton(q, k, v)


def test_mask_shape_error() -> None:
    q = torch.randn(2, 2, 5, 32)
    with pytest.raises(ValueError, match="key_padding_mask"):
        fused_attention_triton(q, q, q, torch.ones(2, 4, dtype=torch.bool))


def test_dispatcher_env_switch(monkeypatch) -> None:
    q = torch.randn(1, 2, 5, 32)
    assert not use_triton(q)  # CPU tensors: reference
    monkeypatch.setenv("REELSERVE_KERNELS", "triton")
    assert use_triton(q)
    q = q.to(DEVICE)
    torch.testing.assert_close(fused_attention(q, q, q), attention_reference(q, q, q), atol=1e-5, rtol=1e-5)
    monkeypatch.setenv("REELSERVE_KERNELS", "reference")
    assert not use_triton(q)
    monkeypatch.setenv("REELSERVE_KERNELS", "fast")
    with pytest.raises(ValueError, match="REELSERVE_KERNELS"):
        use_triton(q)


def test_cpu_tensors_outside_the_interpreter_are_refused_by_name(monkeypatch) -> None:
    """Triton launches on CUDA memory: CPU tensors get our message, not the driver's 'cpu tensor?'."""
    from reelserve.kernels import _common

    monkeypatch.setattr(_common, "INTERPRET", False)
    q = torch.randn(1, 2, 5, 32)
    with pytest.raises(ValueError, match="fused_attention_triton: needs CUDA tensors"):
        fused_attention_triton(q, q, q)
    if ON_GPU:
        with pytest.raises(ValueError, match="different devices"):
            fused_attention_triton(q.cuda(), q, q)


def test_text_tower_runs_through_the_triton_kernels(monkeypatch) -> None:
    """The models call the dispatcher, so forcing Triton changes the path but not the answer."""
    from reelserve.kernels import l2_normalize, masked_mean_pool
    from reelserve.models.bert_encoder import BertConfig, TextTower

    torch.manual_seed(0)
    tower = TextTower(BertConfig(vocab_size=50, hidden=64, layers=2, heads=2, intermediate=128)).eval().to(DEVICE)
    ids = torch.randint(1, 50, (3, 11), device=DEVICE)
    mask = torch.ones(3, 11, dtype=torch.int64, device=DEVICE)
    mask[1, 4:] = 0
    mask[2, 1:] = 0

    def embed() -> torch.Tensor:
        with torch.no_grad():
            return l2_normalize(masked_mean_pool(tower(ids, mask), mask > 0))

    monkeypatch.setenv("REELSERVE_KERNELS", "reference")
    want = embed()
    monkeypatch.setenv("REELSERVE_KERNELS", "triton")
    calls = []
    import reelserve.kernels.attention as attention_module

    original = attention_module.fused_attention_triton

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(attention_module, "fused_attention_triton", counted)
    got = embed()
    assert len(calls) == 2, "each of the 2 layers must call the Triton attention kernel"
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA) for int64 offsets at scale")
def test_large_tensor_offsets_on_gpu() -> None:
    b, h, lq, d = 260, 16, 4096, 128  # 2.2e9 elements: offsets past 2^31 need int64
    q = torch.randn(b, h, lq, d, device="cuda", dtype=torch.float16)
    out = fused_attention_triton(q, q, q)
    torch.testing.assert_close(out[-1:], attention_reference(q[-1:], q[-1:], q[-1:]), **TOL[torch.float16])


def test_autotune_pruning_keeps_only_aot_checked_tiles(monkeypatch) -> None:
    from reelserve.kernels import attention

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    every = attention.attention_configs()
    for head_dim, tiles in attention.TILES.items():
        kept = attention._prune(every, {"LQ_BUCKET": 4096}, HEAD_DIM=head_dim)
        assert {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) for c in kept} == set(tiles)
        short = attention._prune(every, {"LQ_BUCKET": 8}, HEAD_DIM=head_dim)
        assert short and all(c.kwargs["BLOCK_M"] <= 64 for c in short)


def test_interpreter_is_on_without_gpu() -> None:
    if not torch.cuda.is_available():
        assert os.environ.get("TRITON_INTERPRET") == "1"
