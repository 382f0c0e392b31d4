"""Residual k-means: seeded determinism, decreasing error per level, recovery of clear clusters."""

from __future__ import annotations

import itertools

import pytest
import torch

from reelserve.export.semantic_ids import fit_residual_codebooks, kmeans, reconstruction_error


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
