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
    blocks = {v.name: out.split(v.name + " ", 1)[1].split("\n", 4)[:4] for v in demo_videos()}
    assert "zero-shot: a cat" in blocks["cat_nap"][3], blocks["cat_nap"]
    # on-screen text, read by OCR, next to the tags: the demo clips print it on their frames
    assert blocks["cat_nap"][1].strip() == "on-screen text: (none)", blocks["cat_nap"]
    coffee = blocks["morning_coffee"][1].replace(" ", "").casefold()
    assert coffee == "on-screentext:freshcoffee/only$3.50today", blocks["morning_coffee"]
    assert "LAUNCH" in blocks["rocket_launch"][1] and "DAY" in blocks["rocket_launch"][1], blocks["rocket_launch"]
    assert re.search(r"semantic IDs: \(\d+, \d+, \d+\)", out)
    # transcripts and their language beside the OCR text: two clips are narrated (espeak-ng)
    heard = out.split("video_features_full (transcribe=True)", 1)[1]
    speech = {v.name: heard.split(v.name + " ", 1)[1].splitlines()[0] for v in demo_videos()}
    assert "speech: (en)" in speech["rocket_launch"] and "rocket" in speech["rocket_launch"].lower(), speech
    assert "speech: (es)" in speech["morning_coffee"] and "café" in speech["morning_coffee"], speech
    assert "speech: (no speech)" in speech["cat_nap"], speech
    assert "cosine similarity of embeddings" in out
    assert re.search(r"p50 [\d.]+ ms, p99 [\d.]+ ms", out)
    if DEFAULT.text.tower == "e5":  # a Chinese and a Spanish label pick their videos; so do searches
        assert "zero-shot: 火箭发射" in blocks["rocket_launch"][3], blocks["rocket_launch"]
        assert "zero-shot: motocicletas" in blocks["motorcycle_tour"][3], blocks["motorcycle_tour"]
        assert "'一杯早上的咖啡') -> top label 'coffee', nearest video morning_coffee" in out, out
        assert "nearest video rocket_launch" in out.split("un cohete despegando", 1)[1].splitlines()[0], out
