"""Semantic-ID codebooks: residual k-means (the RQ of TIGER-style generative retrieval).

Level 1 clusters the embeddings, level 2 clusters what level 1 left unexplained, and so on;
an item's ID is its code at every level. Deterministic for a seed: k-means++ seeding from a
seeded generator, fixed Lloyd iterations, empty clusters re-seeded from the farthest points.
"""

from __future__ import annotations

import torch


def nearest(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distance to, and index of, each row's nearest centroid (one GEMM, not cdist)."""
    d = (x * x).sum(-1, keepdim=True) - 2 * x @ centroids.T + (centroids * centroids).sum(-1)
    dist, idx = d.min(dim=1)
    return dist.clamp(min=0), idx


def kmeans(x: torch.Tensor, k: int, *, iters: int, generator: torch.Generator) -> torch.Tensor:
    """x [N, D] -> centroids [k, D] (Lloyd's algorithm with k-means++ seeding)."""
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means needs at least k={k} points, got {n}")
    centroids = torch.empty(k, x.shape[1], dtype=x.dtype)
    centroids[0] = x[torch.randint(n, (1,), generator=generator)]
    closest = ((x - centroids[0]) ** 2).sum(-1)
    for i in range(1, k):
        idx = torch.multinomial(closest / closest.sum(), 1, generator=generator) if closest.sum() > 0 else 0
        centroids[i] = x[idx]
        closest = torch.minimum(closest, ((x - centroids[i]) ** 2).sum(-1))
    for _ in range(iters):
        dist, assign = nearest(x, centroids)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        new = sums / counts.clamp(min=1).unsqueeze(-1).to(x.dtype)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):  # re-seed empty clusters at the worst-served points
            new[empty] = x[dist.topk(len(empty)).indices]
        centroids = new
    return centroids


def fit_residual_codebooks(x: torch.Tensor, *, levels: int, codebook_size: int, iters: int, seed: int) -> torch.Tensor:
    """x [N, D] -> codebooks [levels, codebook_size, D]."""
    generator = torch.Generator().manual_seed(seed)
    residual = x.float()
    books = []
    for _ in range(levels):
        book = kmeans(residual, codebook_size, iters=iters, generator=generator)
        residual = residual - book[nearest(residual, book)[1]]
        books.append(book)
    return torch.stack(books)


def reconstruction_error(x: torch.Tensor, codebooks: torch.Tensor) -> list[float]:
    """Mean squared residual after each level: how much each level explains (a fit report)."""
    residual, out = x.float(), []
    for book in codebooks:
        residual = residual - book[nearest(residual, book)[1]]
        out.append(float((residual**2).sum(-1).mean()))
    return out
