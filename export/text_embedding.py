"""Texts -> unit vectors through an exported text graph in ONNX Runtime, cached by content.

The export embeds 1k class names and 21k concept names (the semantic-ID corpus) with the graph
that serves them (`models.text_vector.TextVector`: token states pooled over the real tokens, unit
norm). Texts are sorted by token count so a batch pads little (10% faster than by characters on
the corpus; docs/decisions.md, "The export embeds text through the served ONNX graph"). One
single-threaded run per core, each on its own batches, beats one run split across the cores
(1.12x on the corpus, bit-identical vectors: ONNX Runtime never splits a row's sums across threads).

`EmbeddingCache` keeps those vectors under a key of everything they depend on (the graph's bytes,
the tokenizer's, the texts), so an export whose text side did not change does not embed again.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from reelserve.serving.onnx_runtime import ort_session
from reelserve.serving.text_tokenize import TextTokenizer
from reelserve.spec import contract as c

BATCH = 64
CACHE_ENV = "REELSERVE_CACHE_DIR"  # where cached vectors live; "off" disables the cache


def embed_with_graph(
    graph: Path,
    tokenizer: TextTokenizer,
    texts: Sequence[str],
    *,
    batch: int = BATCH,
    workers: int | None = None,
    desc: str = "",
    progress: bool = False,
) -> np.ndarray:
    """texts -> [N, E] float32 unit vectors, `batch` texts of similar token length per ONNX Runtime call.

    A text that occurs more than once is embedded once (the concept corpus repeats 8% of its names).
    `workers` single-threaded runs share one session (default: one per core this process may use).
    """
    if not texts:
        raise ValueError("embed_with_graph: no texts")
    if workers is None:
        workers = len(os.sched_getaffinity(0))
    if workers < 1:
        raise ValueError(f"embed_with_graph: workers must be >= 1, got {workers}")
    unique = list(dict.fromkeys(texts))  # distinct texts, in first-seen order
    vectors = _embed_distinct(graph, tokenizer, unique, batch=batch, workers=workers, desc=desc, progress=progress)
    row = {t: i for i, t in enumerate(unique)}
    return vectors[[row[t] for t in texts]]


def _embed_distinct(
    graph: Path, tokenizer: TextTokenizer, texts: list[str], *, batch: int, workers: int, desc: str, progress: bool
) -> np.ndarray:
    session = ort_session(graph, threads=1)  # Run is thread-safe; each worker's call stays on its thread
    ids, mask, _ = tokenizer.encode(texts)  # all at once: the lengths order the batches
    lengths = mask.sum(1)
    order = np.argsort(lengths, kind="stable")
    batches = [order[start : start + batch] for start in range(0, len(texts), batch)]
    name = desc or graph.parent.parent.name
    bar = tqdm(total=len(batches), desc=name, unit="batch", disable=None if progress else True)

    def run(rows: np.ndarray) -> np.ndarray:
        width = max(int(lengths[rows].max()), 1)
        feeds = {c.INPUT_IDS.name: ids[rows, :width], c.ATTENTION_MASK.name: mask[rows, :width]}
        return session.run([c.TEXT_VECTOR.name], feeds)[0]

    out: np.ndarray | None = None
    with ThreadPoolExecutor(max_workers=workers) as pool:  # ONNX Runtime releases the GIL while it runs
        for rows, vectors in zip(batches, pool.map(run, batches), strict=True):
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), np.float32)
            out[rows] = vectors
            bar.update(1)
    bar.close()
    assert out is not None
    return out


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, read in 16 MiB chunks (the text graph is ~450 MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def default_cache_dir() -> Path | None:
    """$REELSERVE_CACHE_DIR, else $XDG_CACHE_HOME/reelserve, else ~/.cache/reelserve; None when set to "off"."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit == "off":
        return None
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "reelserve"


class EmbeddingCache:
    """Vectors on disk under a sha256 of their inputs; a damaged or foreign file is recomputed, never trusted."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.hits = 0

    @staticmethod
    def key(parts: Sequence[str], texts: Sequence[str]) -> str:
        """sha256 over `parts` (file digests, recipe names) and the texts, each separated."""
        h = hashlib.sha256()
        for item in (*parts, "\0texts", *texts):
            h.update(item.encode("utf-8") + b"\0")
        return h.hexdigest()

    def get_or_compute(self, key: str, rows: int, compute: Callable[[], np.ndarray]) -> np.ndarray:
        path = self.folder / f"text-vectors-{key[:32]}.npy" if self.folder else None
        if path is not None and path.exists():
            try:
                cached = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                cached = None
            if cached is not None and cached.dtype == np.float32 and cached.ndim == 2 and len(cached) == rows:
                self.hits += 1
                return cached
        vectors = compute()
        if path is not None:
            try:  # best effort: a read-only or full disk costs the next export time, not this one
                path.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npy", delete=False) as f:
                    np.save(f, vectors, allow_pickle=False)
                Path(f.name).replace(path)
            except OSError:
                pass
        return vectors
