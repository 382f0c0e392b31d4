"""`reelserve demo` end to end, as `make demo` runs it (the repository is already exported)."""

from __future__ import annotations

import re

import pytest

from reelserve.config import DEFAULT
from reelserve.demo import run_demo
from reelserve.samples import demo_videos

pytestmark = pytest.mark.integration


def test_demo_prints_features_for_every_clip(model_repository, capsys) -> None:
    assert run_demo(DEFAULT, rounds=1, repository=model_repository) == 0
    out = capsys.readouterr().out
    assert "export: reused" in out
    for video in demo_videos():
        assert video.name in out and video.title in out
    cat_block = out.split("cat_nap", 1)[1].split("cat_window", 1)[0]
    assert "zero-shot: a cat" in cat_block, cat_block
    assert re.search(r"semantic IDs: \(\d+, \d+, \d+\)", out)
    assert "cosine similarity of embeddings" in out
    assert re.search(r"p50 [\d.]+ ms, p99 [\d.]+ ms", out)
    if DEFAULT.text.tower == "e5":  # searches in Chinese and Spanish find their videos
        assert "'一杯早上的咖啡') -> top label 'coffee', nearest video morning_coffee" in out, out
        assert "nearest video rocket_launch" in out.split("un cohete despegando", 1)[1].splitlines()[0], out
