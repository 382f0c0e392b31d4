"""The comments benchmark's parts: a reproducible multilingual corpus and a closed loop that counts every batch."""

from __future__ import annotations

from reelserve.loadtests.text_bench import closed_loop, comments


def test_comments_are_reproducible_and_multilingual() -> None:
    a, b = comments(200, seed=3), comments(200, seed=3)
    assert a == b and len(set(a)) > 100
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in t) for t in a) and any("é" in t or "ç" in t for t in a)


def test_closed_loop_counts_every_batch_it_sent() -> None:
    sent: list[int] = []
    result = closed_loop(lambda chunk: sent.append(len(chunk)), comments(50), batch=7, callers=2, seconds=0.2)
    assert result["batches"] == len(sent) > 0 and set(sent) == {7}
    assert result["texts_per_s"] > 0 and result["p99_ms"] >= result["p50_ms"]
