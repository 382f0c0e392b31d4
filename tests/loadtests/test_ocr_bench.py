"""The OCR benchmark's parts: the OCR-off twin of a repository, and per-frame rows that really read text."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from reelserve.export.repository import read_step_settings
from reelserve.loadtests.ocr_bench import (
    demo_clip_frames,
    folded_vs_package,
    ocr_off_repository,
    per_frame,
    together_vs_alone,
)
from reelserve.spec import contract as c


def test_ocr_off_repository_changes_only_ocr_frames(model_repository: Path, tmp_path: Path) -> None:
    off = ocr_off_repository(model_repository, tmp_path / "off")
    for step in (c.PREPROCESS, c.OCR):
        on, off_settings = (read_step_settings(r / step) for r in (model_repository, off))
        assert on["ocr"].frames > 0 and off_settings["ocr"] == replace(on["ocr"], frames=0)
        assert {k: v for k, v in off_settings.items() if k != "ocr"} == {k: v for k, v in on.items() if k != "ocr"}
    onnx = off / c.TEXT_ENCODER / "1" / "model.onnx"
    assert onnx.is_symlink() and onnx.resolve() == (model_repository / c.TEXT_ENCODER / "1" / "model.onnx").resolve()
    vision = (off / c.VISION_ENCODER / "config.pbtxt").read_text()
    assert vision == (model_repository / c.VISION_ENCODER / "config.pbtxt").read_text()


def test_per_frame_rows_read_the_printed_lines() -> None:
    rows = per_frame(repeats=1)
    assert [(r["size"], r["text"]) for r in rows][:2] == [("288x512", True), ("288x512", False)]
    assert all(r["lines"] == (2 if r["text"] else 0) and r["read"] for r in rows), rows
    assert all(r["p90_ms"] >= r["p50_ms"] > 0 for r in rows)


def test_together_vs_alone_reads_the_same_text_both_ways() -> None:
    rows = together_vs_alone(clips_per_call=(1, 4), rounds=1)
    assert [r["clips_per_call"] for r in rows] == [1, 4]
    assert all(r["same"] and r["alone_ms"] > 0 and r["together_ms"] > 0 for r in rows), rows


def test_folded_vs_package_reads_the_same_text_with_both(model_repository: Path) -> None:
    r = folded_vs_package(model_repository, rounds=1)
    assert r["same"] and r["package_ms"] > 0 and r["folded_ms"] > 0, r


def test_demo_clips_carry_printed_text_to_compare() -> None:
    from reelserve.serving.ocr import OnScreenTextReader

    reader = OnScreenTextReader()
    texts = reader.read_clips(demo_clip_frames(), max_chars=2000)
    assert sum(bool(t) for t in texts) >= 3, texts  # the row would time detection alone otherwise
