"""export/text_embedding.py: the served int8 graph's text vectors match PyTorch's; a cache keyed by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reelserve.config import DEFAULT
from reelserve.export.parity import MIN_COSINE
from reelserve.export.text_embedding import (
    CACHE_ENV,
    EmbeddingCache,
    default_cache_dir,
    embed_with_graph,
    file_digest,
)
from reelserve.spec import contract as c

TEXTS = [
    "a photo of a tabby",
    "Café de la mañana ☕",
    "我家的猫在窗边晒太阳",
    "a much longer title about a rocket launch seen from the beach at night, with friends",
    "Астронавт на орбите",
    "a",
]


def test_served_graph_vectors_equal_pytorch_in_any_batch(model_repository: Path) -> None:
    from reelserve.export.cpu import embed_texts, served_text_tower

    tower, tokenizer = served_text_tower(model_repository, DEFAULT)
    graph = model_repository / c.TEXT_ENCODER / "1" / "model.onnx"
    want = embed_texts(tower, tokenizer, TEXTS).numpy()
    alone = embed_with_graph(graph, tokenizer, TEXTS, batch=1)
    for batch in (1, 2, 64):  # texts of different lengths share a batch, or not: the same vectors
        got = embed_with_graph(graph, tokenizer, TEXTS, batch=batch)
        assert got.shape == want.shape and got.dtype == np.float32
        cos = (got * want).sum(1)
        assert cos.min() >= MIN_COSINE, f"batch {batch}: int8 cosine to PyTorch {cos.round(6)}"
        np.testing.assert_allclose(got, alone, atol=1e-5)  # activations are scaled per token, never per batch
    reordered = embed_with_graph(graph, tokenizer, TEXTS[::-1], batch=2)[::-1]
    np.testing.assert_allclose(reordered, got, atol=1e-5)
    with pytest.raises(ValueError, match="no texts"):
        embed_with_graph(graph, tokenizer, [])


def test_parallel_runs_give_the_same_bits_as_one(model_repository: Path) -> None:
    from reelserve.export.cpu import served_text_tower

    _, tokenizer = served_text_tower(model_repository, DEFAULT)
    graph = model_repository / c.TEXT_ENCODER / "1" / "model.onnx"
    texts = [f"{t} {i}" for i in range(7) for t in TEXTS]  # several batches of mixed lengths
    one = embed_with_graph(graph, tokenizer, texts, batch=4, workers=1)
    for workers in (2, 3):
        np.testing.assert_array_equal(embed_with_graph(graph, tokenizer, texts, batch=4, workers=workers), one)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        embed_with_graph(graph, tokenizer, texts, workers=0)


def test_a_repeated_text_is_embedded_once_and_answered_at_every_position(model_repository: Path, monkeypatch) -> None:
    from reelserve.export import text_embedding
    from reelserve.export.cpu import served_text_tower

    _, tokenizer = served_text_tower(model_repository, DEFAULT)
    graph = model_repository / c.TEXT_ENCODER / "1" / "model.onnx"
    encode, encoded = tokenizer.encode, []
    monkeypatch.setattr(tokenizer, "encode", lambda texts: encoded.extend(texts) or encode(texts))
    texts = [TEXTS[1], TEXTS[0], TEXTS[1], TEXTS[3], TEXTS[0], TEXTS[1]]
    got = text_embedding.embed_with_graph(graph, tokenizer, texts, batch=2)
    assert encoded == [TEXTS[1], TEXTS[0], TEXTS[3]]  # distinct texts, first seen first
    alone = embed_with_graph(graph, tokenizer, [TEXTS[1], TEXTS[0], TEXTS[3]], batch=2)
    np.testing.assert_array_equal(got, alone[[0, 1, 0, 2, 1, 0]])


def test_cache_computes_once_per_key_and_keys_on_every_input(tmp_path: Path) -> None:
    cache, calls = EmbeddingCache(tmp_path), []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.full((2, 3), len(calls), np.float32)

    key = EmbeddingCache.key(["graph-digest", "tok-digest"], ["a", "b"])
    first = cache.get_or_compute(key, 2, compute)
    again = cache.get_or_compute(key, 2, compute)
    assert len(calls) == 1 and cache.hits == 1 and np.array_equal(first, again)
    others = {
        EmbeddingCache.key(["graph-digest", "tok-digest"], ["a", "c"]),
        EmbeddingCache.key(["other-graph", "tok-digest"], ["a", "b"]),
        EmbeddingCache.key(["graph-digest", "tok-digest"], ["ab"]),  # texts are separated, not joined
        EmbeddingCache.key(["graph-digesttok-digest"], ["a", "b"]),
    }
    assert key not in others and len(others) == 4


def test_cache_recomputes_a_damaged_or_mismatched_file(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    key = EmbeddingCache.key(["x"], ["a", "b"])
    cache.get_or_compute(key, 2, lambda: np.ones((2, 3), np.float32))
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"not an npy file")
    np.testing.assert_array_equal(cache.get_or_compute(key, 2, lambda: np.zeros((2, 3), np.float32)), 0)
    # a file of the wrong row count (another text list under a colliding name) is not trusted either
    assert cache.get_or_compute(key, 5, lambda: np.full((5, 3), 7, np.float32)).shape == (5, 3)
    assert cache.hits == 0


def test_cache_off_or_unwritable_still_answers(tmp_path: Path) -> None:
    assert EmbeddingCache(None).get_or_compute("k", 1, lambda: np.ones((1, 2), np.float32)).shape == (1, 2)
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    out = EmbeddingCache(blocked / "cache").get_or_compute("k", 1, lambda: np.ones((1, 2), np.float32))
    assert out.shape == (1, 2)


def test_default_cache_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    monkeypatch.setenv(CACHE_ENV, "off")
    assert default_cache_dir() is None
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "reelserve"


def test_file_digest(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * (1 << 20))
    b.write_bytes(b"x" * (1 << 20) + b"y")
    assert file_digest(a) != file_digest(b) and file_digest(a) == file_digest(a)
