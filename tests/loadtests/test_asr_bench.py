"""The speech benchmark's per-clip rows: speech is transcribed, music and a silent upload cost no Whisper run."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from reelserve.config import DEFAULT
from reelserve.export.repository import write_twin
from reelserve.loadtests.asr_bench import capacity_lines, main, per_clip
from reelserve.spec import contract as c


def test_per_clip_rows_transcribe_speech_and_skip_whisper_without_it(model_repository: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("the bench's speech needs espeak-ng, which is not installed (apt-get install espeak-ng)")
    rows = {r["clip"]: r for r in per_clip(model_repository, repeats=1)}
    english = next(r for name, r in rows.items() if name.startswith("English"))
    assert english["language"] == "en" and "rocket" in english["text"].lower()
    assert next(r for name, r in rows.items() if name.startswith("Spanish"))["language"] == "es"
    for name in ("music + noise, 30 s (VAD only)", "no audio track"):
        assert rows[name]["text"] == "" and rows[name]["asr_ms"] < english["asr_ms"], rows[name]
    assert all(r["decode_ms"] >= 0 for r in rows.values())


def test_a_repository_without_asr_is_refused_plainly(model_repository: Path, tmp_path: Path, capsys) -> None:
    off = write_twin(model_repository, tmp_path / "off", replace(DEFAULT, asr=replace(DEFAULT.asr, model="off")))
    assert not (off / c.ASR).exists() and not (off / c.VIDEO_FEATURES_FULL).exists()
    assert main(["--model-repository", str(off)]) == 2
    assert "has no asr step: export with ASR on" in capsys.readouterr().err


def test_a_ladder_without_capacity_says_why() -> None:
    capacity = {
        c.VIDEO_FEATURES: {"slo_ms": 250.0, "rps": None, "p99_ms": None},
        c.VIDEO_FEATURES_FULL: {"slo_ms": 10_000.0, "rps": 0.8, "p99_ms": 2400.0},
    }
    lines = capacity_lines(capacity, duration_s=30.0)
    assert lines[1].split()[-2:] == ["none", "-"] and lines[2].split()[-3:] == ["0.80", "2400", "ms"]
    assert lines[-1] == (
        "none: no step met the SLO over >= 20 answers; walking down stops at 1.12 rps,"
        " below which a 30 s step may not send that many"
    )
    assert capacity_lines({c.VIDEO_FEATURES_FULL: capacity[c.VIDEO_FEATURES_FULL]}, 30.0)[-1].endswith("2400 ms")
