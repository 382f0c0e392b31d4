"""Text tower: equal to sentence-transformers on the real MiniLM, and to transformers' BertModel."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from reelserve.config import TextConfig
from reelserve.export.cpu import embed_texts
from reelserve.models.bert_encoder import load_hf_bert, load_minilm, minilm_dir, remap_hf_bert_keys
from reelserve.serving.text_tokenize import TextTokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LONG = " ".join(
    f"Sentence number {i} of a very long video description about cats, coffee and rockets." for i in range(60)
)
TEXTS = [
    "My cat Chelsea taking a nap",
    "Café de la mañana ☕",
    "我家的猫在窗边晒太阳",
    "Астронавт на орбите",
    "a",
    LONG,
]


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


@pytest.fixture(scope="module")
def tokenizer_256() -> TextTokenizer:
    return TextTokenizer(minilm_dir() / "tokenizer.json", TextConfig(max_tokens=256))


def test_matches_sentence_transformers(minilm, tokenizer_256) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm_dir()), device="cpu")
    assert st.max_seq_length == 256
    want = st.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    _, _, truncated = tokenizer_256.encode(TEXTS)
    assert truncated.tolist() == [False] * 5 + [True], "the long text must exercise truncation"

    got = embed_texts(minilm, tokenizer_256, TEXTS).numpy()
    assert got.shape == want.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = (got.astype(np.float64) * want.astype(np.float64)).sum(1) / np.linalg.norm(want, axis=1)
    assert np.all(cosines >= 0.9999), (
        f"cosine to sentence-transformers per text: {dict(zip(TEXTS, cosines.round(6), strict=True))}"
    )


def _random_tiny_bert(seed: int):
    import transformers

    cfg = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=40,
        type_vocab_size=2,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    model = transformers.BertModel(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # larger-than-init weights so that every block matters (attention not near-uniform)
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.1 * noise if "LayerNorm.weight" in name else 0.2 * noise)
    return model.eval(), cfg


def test_remap_and_strict_load_match_transformers_bert(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model, cfg = _random_tiny_bert(seed=0)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))

    remapped = remap_hf_bert_keys(state)
    assert not any(k.startswith("pooler.") for k in remapped)
    tower = load_hf_bert(tmp_path)  # strict=True inside: every key mapped, none missing
    assert tower.cfg.hidden == 32 and tower.cfg.layers == 2 and tower.cfg.heads == 4

    g = torch.Generator().manual_seed(1)
    lengths = [33, 7, 1, 20]
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(1, 100, (n,), generator=g)
        mask[i, :n] = 1
    with torch.no_grad():
        got = tower(ids, mask)
        want = model(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)


def test_remap_handles_bert_prefix_and_drops_buffers() -> None:
    """Checkpoints saved from BertFor* models carry a `bert.` prefix and may hold `position_ids`."""
    state = {
        "bert.embeddings.word_embeddings.weight": torch.zeros(1),
        "bert.embeddings.position_ids": torch.zeros(1),
        "bert.encoder.layer.0.attention.self.query.weight": torch.zeros(1),
        "bert.encoder.layer.0.attention.output.LayerNorm.bias": torch.zeros(1),
        "bert.encoder.layer.0.output.dense.weight": torch.zeros(1),
        "pooler.dense.weight": torch.zeros(1),
    }
    assert sorted(remap_hf_bert_keys(state)) == sorted(
        [
            "word_embeddings.weight",
            "layers.0.attention.query.weight",
            "layers.0.attention_norm.bias",
            "layers.0.ff_out.weight",
        ]
    )


def test_remap_drops_prefixed_pooler() -> None:
    state = {"bert.pooler.dense.weight": torch.zeros(1), "bert.pooler.dense.bias": torch.zeros(1)}
    assert remap_hf_bert_keys(state) == {}


def test_padding_invariance(minilm) -> None:
    tok = TextTokenizer(minilm_dir() / "tokenizer.json", TextConfig())
    short, longer = "a cat on a sofa", "a much longer title about a rocket launch seen from the beach at night"
    ids_alone, mask_alone, _ = tok.encode([short])
    ids_batch, mask_batch, _ = tok.encode([longer, short])
    n = int(mask_alone.sum())
    assert ids_batch.shape[1] > n and mask_batch[1].sum() == n
    with torch.no_grad():
        alone = minilm(torch.from_numpy(ids_alone), torch.from_numpy(mask_alone))[0, :n]
        batched = minilm(torch.from_numpy(ids_batch), torch.from_numpy(mask_batch))
    torch.testing.assert_close(batched[1, :n], alone, atol=1e-5, rtol=1e-5)
    # and the longer text is unaffected by sharing the batch
    with torch.no_grad():
        ids_l, mask_l, _ = tok.encode([longer])
        alone_l = minilm(torch.from_numpy(ids_l), torch.from_numpy(mask_l))[0]
    torch.testing.assert_close(batched[0], alone_l, atol=1e-5, rtol=1e-5)
