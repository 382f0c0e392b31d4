"""The comments benchmark's parts: a reproducible multilingual corpus, a closed loop that counts every batch,
and the in-process comparison of padded calls with runs of similar length."""

from __future__ import annotations

from pathlib import Path

from reelserve.loadtests.text_bench import closed_loop, comments, format_runs, runs_vs_padded, text_precision
from reelserve.serving.steps import TOKENS_PER_RUN


def test_comments_are_reproducible_and_multilingual() -> None:
    a, b = comments(200, seed=3), comments(200, seed=3)
    assert a == b and len(set(a)) > 100
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in t) for t in a) and any("é" in t or "ç" in t for t in a)


def test_closed_loop_counts_every_batch_it_sent() -> None:
    sent: list[int] = []
    result = closed_loop(lambda chunk: sent.append(len(chunk)), comments(50), batch=7, callers=2, seconds=0.2)
    assert result["batches"] == len(sent) > 0 and set(sent) == {7}
    assert result["texts_per_s"] > 0 and result["p99_ms"] >= result["p50_ms"]


def test_runs_vs_padded_compares_the_served_budget_on_the_same_vectors(model_repository: Path) -> None:
    rows = runs_vs_padded(model_repository, batch=4, budgets=(16, TOKENS_PER_RUN), rounds=1)
    assert [r["tokens_per_run"] for r in rows][1:] == [16, TOKENS_PER_RUN] and rows[0]["ratio"] == 1.0
    assert [r["served"] for r in rows] == [False, False, True]
    assert all(r["texts_per_s"] > 0 and r["max_diff"] < 1e-5 for r in rows), rows
    assert 0 < rows[0]["fill"] < 1  # comments of mixed lengths: the padded call does carry padding
    assert format_runs(rows)[-1].endswith("(served)")


def test_the_row_names_the_text_graphs_precision_from_the_manifest(tmp_path, model_repository) -> None:
    import json

    from reelserve.export.cpu import MANIFEST

    assert text_precision(model_repository) == "int8"  # what the export serves
    (tmp_path / MANIFEST).write_text(json.dumps({"parity": {"text_encoder": [{"output": "text_vector"}]}}))
    assert text_precision(tmp_path) == "fp32"
