"""The int8 benchmark's table and verdict; the whole run on the exported repository is a slow test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reelserve.export.quantize import INT8_MIN_COSINE
from reelserve.loadtests.int8_bench import _row, format_rows, ocr_rows, ocr_verdict, run, verdict


def test_rows_carry_min_mean_and_agreement() -> None:
    row = _row("x", 3, cos=np.array([0.99, 1.0, 0.98]), agree=np.array([True, False, True]))
    assert row == {"output": "x", "items": 3, "min_cosine": 0.98, "mean_cosine": 0.99, "agreement": 0.6667}


def test_verdict_takes_the_worst_cosine_and_ignores_the_batch_row() -> None:
    good = [_row("a", 2, cos=np.array([0.999, 0.9991])), _row("codes", 2, agree=np.array([True, True]))]
    assert "servable" in verdict(good) and "0.9990" in verdict(good)
    batch_row = _row("int8 alone vs in a batch", 2, cos=np.array([0.5, 0.5]))
    assert "servable" in verdict([*good, batch_row]), "batch invariance is reported, not the parity bar"
    bad = [*good, _row("embedding", 2, cos=np.array([INT8_MIN_COSINE - 1e-3, 1.0]))]
    assert verdict(bad).startswith("-> not served")


def test_format_rows_aligns_cosines_and_rates() -> None:
    lines = format_rows("t", [_row("cos", 1, cos=np.array([0.5])), _row("agree", 4, agree=np.array([1, 1, 0, 1]))])
    assert lines[1].split()[-2:] == ["0.50000", "0.50000"] and lines[2].endswith("75.0%")


@pytest.mark.slow
def test_run_prints_both_towers(model_repository: Path) -> None:
    lines = run(model_repository)
    assert sum(line.startswith("-> ") for line in lines) == 3
    assert any("texts/s" in line for line in lines) and any("frames/s" in line for line in lines)


def test_ocr_verdict_wants_every_demo_clip_and_nearly_every_frame() -> None:
    def rows(clips: list[bool], frames: list[bool]) -> list[dict]:
        return [_row("clips", len(clips), agree=np.array(clips)), _row("frames", len(frames), agree=np.array(frames))]

    assert ocr_verdict(rows([True] * 7, [True] * 100)).startswith("-> servable")
    assert ocr_verdict(rows([True] * 6 + [False], [True] * 100)).startswith("-> not served")
    assert ocr_verdict(rows([True] * 7, [True] * 97 + [False] * 3)).startswith("-> not served")


def test_ocr_rows_quantize_both_models_and_compare_their_reading(tmp_path: Path) -> None:
    """A small caption set: int8 models are built, timed, and every row counts what it says."""
    rows, lines = ocr_rows(tmp_path, captions=("SALE 50% OFF",), photos=("coffee",), sizes=((288, 512),))
    assert [r["items"] for r in rows] == [7, 1, 1, 1, 1]
    assert rows[3]["agreement"] == 1.0, "fp32 reads this caption"
    assert {line.split(":")[0] for line in lines} == {"OCR detector", "OCR recogniser"}
    assert all("ms/clip" in line for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ocr_detector.onnx", "ocr_recogniser.onnx"]
