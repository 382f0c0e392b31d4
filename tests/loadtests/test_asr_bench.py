"""The speech benchmark's per-clip rows: speech is transcribed, music and a silent upload cost no Whisper run."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from reelserve.config import DEFAULT
from reelserve.export.repository import write_twin
from reelserve.loadtests.asr_bench import main, per_clip
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
