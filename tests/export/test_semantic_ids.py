"""Residual k-means: seeded determinism, decreasing error per level, recovery of clear clusters;
codebook versions, the served assignment rule, code statistics and churn."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from reelserve.export import semantic_ids
from reelserve.export.semantic_ids import (
    assign_codes,
    code_churn,
    codebook_stats,
    codebook_version,
    fit_residual_codebooks,
    kmeans,
    reconstruction_error,
)
from reelserve.models.heads import FusionHeads


def _points(n: int = 300, d: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_fit_is_deterministic_per_seed() -> None:
    x = _points()
    a = fit_residual_codebooks(x, levels=3, codebook_size=8, iters=10, seed=0)
    b = fit_residual_codebooks(x, levels=3, codebook_size=8, iters=10, seed=0)
    c = fit_residual_codebooks(x, levels=3, codebook_size=8, iters=10, seed=1)
    assert a.shape == (3, 8, 8) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert (a - c).abs().max() > 1e-3, "another seed should give other codebooks"


def test_reconstruction_error_decreases_with_levels() -> None:
    x = _points()
    books = fit_residual_codebooks(x, levels=4, codebook_size=8, iters=15, seed=0)
    errors = reconstruction_error(x, books)
    assert len(errors) == 4
    start = float((x**2).sum(-1).mean())  # error with no level at all (= 1 for unit vectors)
    chain = [start, *errors]
    assert all(b < a for a, b in itertools.pairwise(chain)), f"mse per level not decreasing: {chain}"
    # an independent recomputation of the first level's error
    nearest = books[0][torch.cdist(x, books[0]).argmin(1)]
    torch.testing.assert_close(torch.tensor(errors[0]), ((x - nearest) ** 2).sum(-1).mean(), atol=1e-5, rtol=1e-5)


def test_kmeans_recovers_separated_blobs() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 5.0]], dtype=torch.float64)
    labels = torch.arange(3).repeat_interleave(torch.tensor([50, 80, 30]))
    x = centres[labels] + 0.3 * torch.randn(len(labels), 3, generator=g, dtype=torch.float64)
    got = kmeans(x, 3, iters=20, generator=torch.Generator().manual_seed(0))
    assert got.shape == (3, 3)
    # each true centre has exactly one fitted centroid next to it
    d = torch.cdist(centres, got)
    match = d.argmin(1)
    assert sorted(match.tolist()) == [0, 1, 2], f"centroids {got} do not match blobs {centres}"
    assert d.min(1).values.max() < 0.2, f"distance to blob centres: {d.min(1).values}"
    # and the partition equals the true one (up to relabelling)
    assign = torch.cdist(x, got).argmin(1)
    torch.testing.assert_close(assign, match[labels])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_seeds_all_recover_blobs(seed: int) -> None:
    g = torch.Generator().manual_seed(100 + seed)
    centres = torch.tensor([[-5.0, 0.0], [5.0, 0.0], [0.0, 8.0]])
    x = centres.repeat_interleave(40, dim=0) + 0.5 * torch.randn(120, 2, generator=g)
    got = kmeans(x, 3, iters=20, generator=torch.Generator().manual_seed(seed))
    assert torch.cdist(centres, got).min(1).values.max() < 0.3


def test_kmeans_refuses_too_few_points() -> None:
    with pytest.raises(ValueError, match="at least k=5"):
        kmeans(torch.randn(4, 3), 5, iters=3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError):
        fit_residual_codebooks(torch.randn(3, 2), levels=1, codebook_size=4, iters=2, seed=0)


def test_kmeans_with_duplicate_points_has_no_nan() -> None:
    """k equal to n with repeated points: empty clusters are re-seeded, never NaN."""
    x = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 2, dtype=torch.float64)
    got = kmeans(x, 4, iters=5, generator=torch.Generator().manual_seed(0))
    assert not torch.isnan(got).any()


# --- versions, the served assignment rule, health statistics, churn ---


def _books(levels: int = 3, k: int = 8, d: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(levels, k, d, generator=torch.Generator().manual_seed(seed))


def test_codebook_version_is_stable_and_changes_with_any_bit() -> None:
    books = _books()
    version = codebook_version(books)
    assert version.startswith("rq3x8-") and len(version) == len("rq3x8-") + 12
    assert codebook_version(books.clone()) == version
    assert codebook_version(books.numpy()) == version, "a tensor and its numpy array are the same bytes"
    assert codebook_version(books.double()) == version, "hashed as float32 whatever the input dtype"
    assert codebook_version(np.asfortranarray(books.numpy())) == version, "hashed C-contiguous"
    # the definition, written out
    digest = hashlib.sha256(books.numpy().astype("<f4").tobytes()).hexdigest()[:12]
    assert version == f"rq3x8-{digest}"
    nudged = books.clone()
    nudged[2, 7, 7] = torch.nextafter(nudged[2, 7, 7], torch.tensor(np.inf))
    assert codebook_version(nudged) != version
    assert codebook_version(_books(seed=1)) != version
    assert codebook_version(books[:2]).startswith("rq2x8-")
    with pytest.raises(ValueError, match="levels, K, D"):
        codebook_version(books[0])


def _served_semantic_ids(x: torch.Tensor, books: torch.Tensor) -> torch.Tensor:
    """`FusionHeads.semantic_ids` itself, on a stand-in `self` with only the codebooks.

    The method reads nothing but `self.codebooks`, so this tests the served code without building the
    heads: their other constructor arguments (labels, ConSE settings) are not this test's concern.
    """
    return FusionHeads.semantic_ids(SimpleNamespace(codebooks=books.float()), x)


@pytest.mark.parametrize(("n", "levels", "k", "d"), [(1, 1, 2, 3), (257, 3, 16, 8), (500, 4, 32, 24)])
def test_assign_codes_equals_the_served_semantic_ids(n: int, levels: int, k: int, d: int) -> None:
    x = _points(n, d, seed=n)
    books = fit_residual_codebooks(_points(400, d, seed=7), levels=levels, codebook_size=k, iters=5, seed=0)
    got = assign_codes(x, books)
    assert got.dtype == np.int32 and got.shape == (n, levels)
    np.testing.assert_array_equal(got, _served_semantic_ids(x, books).numpy())
    np.testing.assert_array_equal(assign_codes(x.numpy().astype(np.float64), books.numpy()), got)


def test_assign_codes_in_chunks_equals_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    x, books = _points(300, 8, seed=3), _books()
    whole = assign_codes(x, books)
    monkeypatch.setattr(semantic_ids, "ASSIGN_CHUNK", 7)
    np.testing.assert_array_equal(assign_codes(x, books), whole)


def test_assign_codes_recovers_exact_code_sums() -> None:
    """An item that is exactly a sum of one code per level gets those codes back."""
    books = torch.zeros(2, 3, 4)
    books[0] = torch.tensor([[10.0, 0, 0, 0], [0, 10.0, 0, 0], [0, 0, 10.0, 0]])
    books[1] = torch.tensor([[0, 0, 0, 1.0], [0, 0, 0, -1.0], [0, 0, 0, 0.0]])
    want = np.array([[0, 1], [2, 0], [1, 2]], dtype=np.int32)
    x = books[0][want[:, 0]] + books[1][want[:, 1]]
    np.testing.assert_array_equal(assign_codes(x, books), want)
    with pytest.raises(ValueError, match="codebooks"):
        assign_codes(torch.zeros(2, 5), books)


def test_stats_all_items_on_one_code() -> None:
    n, k = 10, 8
    stats = codebook_stats(np.full((n, 2), 3), k)
    assert stats["items"] == n and stats["unique_codes"] == 1
    assert stats["collision_rate"] == round((n - 1) / n, 4) and stats["max_items_per_code"] == n
    for level, row in enumerate(stats["levels"], start=1):
        assert row == {
            "level": level,
            "codes_used": 1,
            "utilisation": 1 / k,
            "perplexity": 1.0,
            "normalised_entropy": 0.0,
            "max_share": 1.0,
        }
    assert "-0.0" not in json.dumps(stats)  # plain Python numbers only, and no negative zero


def test_stats_every_item_a_distinct_code() -> None:
    k = 4
    codes = np.array(list(itertools.product(range(k), range(k))))  # all 16 pairs, each once
    stats = codebook_stats(codes, k)
    assert stats["items"] == 16 and stats["unique_codes"] == 16
    assert stats["collision_rate"] == 0.0 and stats["max_items_per_code"] == 1
    for row in stats["levels"]:  # each level uniform over its 4 codes
        assert row["utilisation"] == 1.0 and row["perplexity"] == 4.0
        assert row["normalised_entropy"] == 1.0 and row["max_share"] == 0.25


def test_stats_by_hand_on_a_skewed_level() -> None:
    # level 1: codes 0,0,0,1 (p = 3/4, 1/4); level 2 distinct; full codes: (0,0) twice, so 3 unique
    codes = np.array([[0, 0], [0, 0], [0, 1], [1, 2]], dtype=np.int32)
    stats = codebook_stats(torch.from_numpy(codes), 4)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    first = stats["levels"][0]
    assert first["utilisation"] == 0.5 and first["max_share"] == 0.75
    assert first["perplexity"] == round(math.exp(entropy), 4)
    assert first["normalised_entropy"] == round(entropy / math.log(4), 4)
    second = stats["levels"][1]
    assert second["codes_used"] == 3 and second["max_share"] == 0.5
    assert stats["unique_codes"] == 3 and stats["collision_rate"] == 0.25 and stats["max_items_per_code"] == 2
    assert all(isinstance(v, int) for v in (stats["items"], stats["unique_codes"], stats["max_items_per_code"]))


def test_stats_refuse_bad_codes() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        codebook_stats(np.zeros((0, 3), dtype=np.int32), 4)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        codebook_stats(np.array([[0, 4]]), 4)
    with pytest.raises(ValueError, match="integers"):
        codebook_stats(np.array([[0.5, 1.0]]), 4)


def test_stats_of_fitted_codebooks_spread_items() -> None:
    x = _points(600, 8)
    books = fit_residual_codebooks(x, levels=2, codebook_size=8, iters=10, seed=0)
    stats = codebook_stats(assign_codes(x, books), 8)
    assert stats["levels"][0]["utilisation"] == 1.0, "k-means re-seeds empty clusters: every code is used"
    assert stats["levels"][0]["perplexity"] > 4, stats
    assert 0 < stats["collision_rate"] < 1 and stats["unique_codes"] <= 64


def test_code_churn() -> None:
    old = np.array([[0, 1], [2, 3], [4, 5], [6, 7]])
    assert code_churn(old, old.copy()) == 0.0
    new = old.copy()
    new[1, 1] = 0  # one level of one item
    new[3] = [7, 6]
    assert code_churn(old, new) == 0.5
    assert code_churn(old, old[:, :1]) == 1.0, "another number of levels changes every full code"
    with pytest.raises(ValueError, match="same items"):
        code_churn(old, old[:3])
