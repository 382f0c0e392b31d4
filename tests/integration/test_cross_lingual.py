"""Cross-lingual retrieval through a real tritonserver: a sentence in any of 12 languages lands
nearest its English meaning among the other meanings (`text_features`, the served e5 tower)."""

from __future__ import annotations

import numpy as np
import pytest

from reelserve.config import DEFAULT

from ..models.multilingual_sentences import SENTENCES

pytestmark = pytest.mark.integration


def test_sentences_land_nearest_their_english_meaning(client) -> None:
    if DEFAULT.text.tower != "e5":
        pytest.skip("the served text tower is English-only")
    english = np.stack([f.embedding for f in client.text_features(SENTENCES["en"])])
    right, total, perfect = 0, 0, 0
    for lang, sentences in SENTENCES.items():
        if lang == "en":
            continue
        emb = np.stack([f.embedding for f in client.text_features(sentences)])
        hits = int(((emb @ english.T).argmax(1) == np.arange(len(sentences))).sum())
        right, total, perfect = right + hits, total + len(sentences), perfect + (hits == len(sentences))
    print(
        f"\ncross-lingual through tritonserver: {right}/{total} nearest their English meaning, "
        f"{perfect} of 12 languages all right"
    )
    assert perfect >= 8 and right / total >= 0.9
