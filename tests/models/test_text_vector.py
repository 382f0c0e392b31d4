"""TextVector: the text step's graph pools a tower's real tokens into a unit vector, zero for no text."""

from __future__ import annotations

import numpy as np
import torch

from reelserve.models.bert_encoder import BertConfig, TextTower
from reelserve.models.text_vector import TextVector

CFG = BertConfig(vocab_size=50, hidden=16, layers=2, heads=2, intermediate=32, max_positions=12)


def _vector() -> TextVector:
    torch.manual_seed(0)
    return TextVector(TextTower(CFG)).eval()


def test_the_vector_is_the_unit_mean_of_the_real_token_states() -> None:
    model = _vector()
    ids = torch.randint(1, CFG.vocab_size, (3, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [0] * 7])
    with torch.no_grad():
        got = model(ids, mask).double().numpy()
        states = model.tower(ids, mask).double().numpy()
    for i in range(2):
        real = states[i, mask[i].numpy() > 0].mean(0)
        np.testing.assert_allclose(got[i], real / np.linalg.norm(real), atol=1e-5)
    np.testing.assert_array_equal(got[2], 0.0)  # no tokens: "no text" for the heads


def test_padding_tokens_change_nothing() -> None:
    model = _vector()
    ids = torch.randint(1, CFG.vocab_size, (1, 5))
    mask = torch.ones(1, 5, dtype=torch.int64)
    padded_ids = torch.cat([ids, torch.randint(1, CFG.vocab_size, (1, 4))], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 4, dtype=torch.int64)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded_ids, padded_mask), model(ids, mask), atol=1e-6, rtol=1e-5)
