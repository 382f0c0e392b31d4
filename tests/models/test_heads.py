"""FusionHeads vs an independent float64 numpy implementation of the same maths; its save and load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reelserve.models.heads import FusionHeads, load_fusion_heads, save_heads

CLASSES, E, LABELS, LEVELS, K = 20, 16, 5, 3, 8
T = 6
TOP_K, TOP_T, VIDEO_WEIGHT = 4, 5, 0.3


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@pytest.fixture(scope="module")
def tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "classes": _unit(rng.normal(size=(CLASSES, E)) + 0.5).astype(np.float32),  # anisotropic, like MiniLM
        "labels": _unit(rng.normal(size=(LABELS, E)) + 0.5).astype(np.float32),
        "codebooks": (rng.normal(size=(LEVELS, K, E)) * np.array([0.5, 0.2, 0.1])[:, None, None]).astype(np.float32),
    }


def _heads(t: dict[str, np.ndarray], *, video_weight: float = VIDEO_WEIGHT, temperature: float = 1.0) -> FusionHeads:
    return FusionHeads(
        torch.from_numpy(t["classes"]),
        torch.from_numpy(t["labels"]),
        torch.from_numpy(t["codebooks"]),
        top_k_tags=TOP_K,
        conse_top_t=TOP_T,
        video_weight=video_weight,
        tag_temperature=temperature,
    ).eval()


@pytest.fixture(scope="module")
def batch() -> dict[str, np.ndarray]:
    """4 items: both (2 padded frames), video only (zero text vector), text only, both (no padding)."""
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(4, T, CLASSES)) * 3).astype(np.float32)
    vectors = _unit(rng.normal(size=(4, E))).astype(np.float32)  # what the text step sends: unit norm...
    vectors[1] = 0.0  # ...or zero for no text
    fmask = np.ones((4, T), bool)
    fmask[0, 4:] = False
    fmask[2] = False
    return {"logits": logits, "fmask": fmask, "vectors": vectors}


def _run(heads: FusionHeads, b: dict[str, np.ndarray]):
    with torch.no_grad():
        return heads(
            torch.from_numpy(b["logits"]),
            torch.from_numpy(b["fmask"]),
            torch.from_numpy(b["vectors"]),
        )


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _expected(
    t: dict[str, np.ndarray], b: dict[str, np.ndarray], video_weight: float = VIDEO_WEIGHT, temp: float = 1.0
):
    """Independent float64 spec of the heads (see the module docstring of reelserve.models.heads)."""
    classes = t["classes"].astype(np.float64)
    center = classes.mean(0)
    out = {"clip_probs": [], "video": [], "text": [], "embedding": []}
    for i in range(len(b["fmask"])):
        real = np.flatnonzero(b["fmask"][i])
        probs = [_softmax(b["logits"][i, j].astype(np.float64) / temp) for j in real]
        clip = np.mean(probs, axis=0) if probs else np.zeros(CLASSES)
        top = np.argsort(-clip)[:TOP_T]
        mixed = (clip[top, None] / clip[top].sum() * classes[top]).sum(0) if probs else np.zeros(E)
        video = _unit(_unit(mixed) - center) if probs else None
        vector = b["vectors"][i].astype(np.float64)
        text = _unit(vector - center) if np.any(vector) else None
        if video is not None and text is not None:
            emb = _unit(video_weight * video + (1 - video_weight) * text)
        else:
            emb = video if video is not None else text if text is not None else np.zeros(E)
        out["clip_probs"].append(clip)
        out["video"].append(video)
        out["text"].append(text)
        out["embedding"].append(emb)
    out["clip_probs"] = np.stack(out["clip_probs"])
    out["embedding"] = np.stack(out["embedding"])
    out["label_bank"] = _unit(t["labels"].astype(np.float64) - center)
    return out


def _rq(x: np.ndarray, codebooks: np.ndarray) -> tuple[np.ndarray, float]:
    """Brute-force residual quantisation; also returns the smallest best-vs-second distance gap."""
    residual = x.astype(np.float64).copy()
    ids, gap = [], np.inf
    for book in codebooks.astype(np.float64):
        d = np.array([[np.sum((r - code) ** 2) for code in book] for r in residual])
        idx = d.argmin(1)
        srt = np.sort(d, axis=1)
        gap = min(gap, float((srt[:, 1] - srt[:, 0]).min()))
        residual = residual - book[idx]
        ids.append(idx)
    return np.stack(ids, 1), gap


def test_embedding_matches_spec(tensors, batch) -> None:
    out = _run(_heads(tensors), batch)
    want = _expected(tensors, batch)
    got = out.embedding.numpy()
    assert got.shape == (4, E) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6, err_msg="embeddings must be unit norm")
    np.testing.assert_allclose(got, want["embedding"], atol=2e-6, err_msg="fused embedding vs numpy spec")


def test_video_only_is_conse_vector(tensors, batch) -> None:
    heads = _heads(tensors)
    out = _run(heads, batch)
    want = _expected(tensors, batch)
    np.testing.assert_allclose(out.embedding[1].numpy(), want["video"][1], atol=2e-6)
    # and it is exactly what FusionHeads.video_vector gives for the pooled clip probabilities
    with torch.no_grad():
        vv = heads.video_vector(torch.from_numpy(want["clip_probs"][1:2]).float())[0]
    torch.testing.assert_close(out.embedding[1], vv, atol=1e-6, rtol=1e-6)


def test_text_only_is_centred_normalised_mean(tensors, batch) -> None:
    out = _run(_heads(tensors), batch)
    want = _expected(tensors, batch)
    np.testing.assert_allclose(out.embedding[2].numpy(), want["text"][2], atol=2e-6)


@pytest.mark.parametrize(
    "video_weight",
    [
        0.0,
        0.3,
        0.5,
        1.0,
    ],
)
def test_both_present_is_weighted_mix(tensors, batch, video_weight: float) -> None:
    out = _run(_heads(tensors, video_weight=video_weight), batch)
    want = _expected(tensors, batch, video_weight=video_weight)
    for i in (0, 3):
        mix = _unit(video_weight * want["video"][i] + (1 - video_weight) * want["text"][i])
        np.testing.assert_allclose(out.embedding[i].numpy(), mix, atol=2e-6, err_msg=f"item {i}, w={video_weight}")
    # single-modality items ignore the weight
    np.testing.assert_allclose(out.embedding[1].numpy(), want["video"][1], atol=2e-6)
    np.testing.assert_allclose(out.embedding[2].numpy(), want["text"][2], atol=2e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_tags_are_topk_of_masked_mean_softmax(tensors, batch, temperature: float) -> None:
    out = _run(_heads(tensors, temperature=temperature), batch)
    clip = _expected(tensors, batch, temp=temperature)["clip_probs"]
    assert out.tag_ids.dtype == torch.int64 and out.tag_ids.shape == (4, TOP_K)
    for i in (0, 1, 3):  # items with frames
        want_ids = np.argsort(-clip[i])[:TOP_K]
        np.testing.assert_array_equal(out.tag_ids[i].numpy(), want_ids, err_msg=f"item {i}")
        np.testing.assert_allclose(out.tag_scores[i].numpy(), clip[i, want_ids], atol=1e-6, rtol=1e-5)
    np.testing.assert_array_equal(out.tag_scores[2].numpy(), 0.0, err_msg="no frames: zero tag scores")


def test_padding_does_not_matter(tensors, batch) -> None:
    heads = _heads(tensors)
    base = _run(heads, batch)
    rng = np.random.default_rng(7)
    noisy = {k: v.copy() for k, v in batch.items()}
    noisy["logits"][~batch["fmask"]] = rng.choice([-1e6, 1e6], size=noisy["logits"][~batch["fmask"]].shape)
    other = _run(heads, noisy)
    for name in ("embedding", "tag_ids", "tag_scores", "label_scores", "semantic_ids"):
        torch.testing.assert_close(
            getattr(other, name), getattr(base, name), atol=0, rtol=0, msg=lambda m, n=name: f"{n}: {m}"
        )


def test_label_scores(tensors, batch) -> None:
    out = _run(_heads(tensors), batch)
    want = _expected(tensors, batch)
    assert out.label_scores.shape == (4, LABELS)
    np.testing.assert_allclose(
        out.label_scores.numpy(), out.embedding.numpy().astype(np.float64) @ want["label_bank"].T, atol=1e-6
    )
    np.testing.assert_allclose(out.label_scores.numpy(), want["embedding"] @ want["label_bank"].T, atol=5e-6)


def test_semantic_ids_are_residual_quantisation(tensors, batch) -> None:
    out = _run(_heads(tensors), batch)
    assert out.semantic_ids.dtype == torch.int32 and out.semantic_ids.shape == (4, LEVELS)
    want, gap = _rq(out.embedding.numpy(), tensors["codebooks"])
    assert gap > 1e-4, "test data too close to a tie to compare float32 with float64"
    np.testing.assert_array_equal(out.semantic_ids.numpy(), want)
    # more points, directly through the quantiser
    x = _unit(np.random.default_rng(3).normal(size=(64, E))).astype(np.float32)
    with torch.no_grad():
        got = _heads(tensors).semantic_ids(torch.from_numpy(x)).numpy()
    want, gap = _rq(x, tensors["codebooks"])
    assert gap > 1e-5
    np.testing.assert_array_equal(got, want)
    assert len({tuple(r) for r in got}) > 10, "codes should spread over the codebooks"


def test_deterministic(tensors, batch) -> None:
    a, b = _run(_heads(tensors), batch), _run(_heads(tensors), batch)
    for name in ("embedding", "tag_ids", "tag_scores", "label_scores", "semantic_ids"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=0, rtol=0)


def test_saved_heads_load_as_they_were(tensors, batch, tmp_path) -> None:
    heads = _heads(tensors, temperature=2.5)
    meta = {"top_k_tags": TOP_K, "conse_top_t": TOP_T, "video_weight": VIDEO_WEIGHT, "tag_temperature": 2.5}
    save_heads(tmp_path, heads, {**meta, "tags": ["猫", "café"]})
    loaded, got_meta = load_fusion_heads(tmp_path)
    assert got_meta["tags"] == ["猫", "café"] and loaded.tag_temperature == 2.5
    want, got = _run(heads, batch), _run(loaded, batch)
    for name in ("embedding", "tag_ids", "tag_scores", "label_scores", "semantic_ids"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), atol=0, rtol=0)
