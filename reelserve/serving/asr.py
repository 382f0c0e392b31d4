"""Speech -> text with Whisper on CTranslate2 (faster-whisper's model and parts), bounded per item.

CPU Whisper costs seconds per clip, nearly all of it the encoder (one pass over a padded
30 s window, ~1.5 s for base int8 on 2 busy cores), so the order of work is chosen to skip it:

1. Silero VAD (faster-whisper's ONNX, one thread) on the whole track first: no speech means
   no Whisper at all, and an empty transcript, never a hallucinated "Thank you." (a 30 s
   silent track: ~0.1-0.2 s, against ~1.8 s for `transcribe(vad_filter=True)`, which still
   runs the encoder to detect the language of nothing).
2. The speech chunks, joined, are cut into 30 s windows; each window is encoded once and that
   encoder output serves both language detection and decoding (`WhisperModel.transcribe`
   encodes the first window twice: once in `detect_language`, once to decode; ~45 % of a
   speech clip's time).
3. Decoding is bounded: greedy or `beam_size` beams at temperature 0 with no fallback
   re-decodes, no conditioning on the previous window, no timestamps, a token budget per
   item, and no new window once `max_wall_s` has passed.

Never raises: bad audio, a model error or anything else gives an empty transcript with a
note for the caller to log. faster-whisper is imported when a transcriber is built, so
importing this module costs nothing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reelserve.config import AsrConfig
from reelserve.serving.audio_decode import SAMPLE_RATE, AudioTrack

WHISPER_DIR = "whisper"  # the asr step's CTranslate2 Whisper folder in its version folder, written by the export
MIN_SECONDS = 0.25  # shorter than this is no utterance: Whisper would only guess
_WINDOW_FRAMES = 3000  # mel frames in one Whisper window (30 s)
_MAX_LENGTH = 448  # Whisper's decoder positions: prompt + new tokens
# CTranslate2 4.8.5 ends a Whisper decode after about max_length // 2 tokens (1- and 4-token prompts
# measured: max_length 14 -> 7 tokens, 24 -> 12), so `max_length = prompt + 2 * budget`, and
# the tokens are cut to the budget: the cap holds (and costs at most 2x) if that ever changes.
_NO_SPEECH_PROB = 0.6  # faster-whisper's rule: skip a window this sure of no speech ...
_LOW_LOGPROB = -1.0  # ... unless its text is at least this likely


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str  # Whisper's language code (ISO 639-1; "haw" and "yue" are its two exceptions), "" when no text
    seconds: float  # wall time spent
    speech_seconds: float  # audio Whisper read (after VAD)
    note: str  # "" or why the text is empty or partial


class SpeechTranscriber:
    """One Whisper model per instance, loaded once; `transcribe` is called per item, one at a time."""

    def __init__(self, folder: Path, cfg: AsrConfig) -> None:
        # CTranslate2's OpenMP threads (libgomp) sleep as soon as a run ends instead of spinning on
        # cores the other steps need; read once, when ctranslate2 loads, so set before the import.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from faster_whisper import WhisperModel
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens
        from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

        self.cfg = cfg
        self._model = WhisperModel(
            str(folder),
            device=cfg.device,
            compute_type=cfg.compute_type,
            cpu_threads=cfg.cpu_threads,
            num_workers=1,
            local_files_only=True,
        )
        self._pad_or_trim, self._tokenizer_cls, self._suppressed = pad_or_trim, Tokenizer, get_suppressed_tokens
        self._vad_options, self._collect, self._speech_timestamps = VadOptions(), collect_chunks, get_speech_timestamps
        self._tokenizers: dict[str, tuple[object, tuple[int, ...]]] = {}  # language -> (tokenizer, suppressed tokens)
        self.windows_decoded = 0  # Whisper encoder + decoder runs since load: what VAD saves shows here

    def transcribe(self, audio: AudioTrack) -> Transcript:
        """The speech in `audio` as text with its language; "" with a note when there is none. Never raises."""
        start = time.monotonic()
        try:
            text, language, speech_seconds, note = self._run(audio, start)
        except Exception as exc:  # a model or input error must not fail the request
            text, language, speech_seconds, note = "", "", 0.0, f"ASR failed: {type(exc).__name__}: {exc}"
        return Transcript(text, language if text else "", time.monotonic() - start, speech_seconds, note)

    def _run(self, audio: AudioTrack, start: float) -> tuple[str, str, float, str]:
        samples = np.asarray(audio.samples, np.float32).reshape(-1)[: round(self.cfg.max_seconds * SAMPLE_RATE)]
        if not len(samples):
            return "", "", 0.0, f"no audio ({audio.note})" if audio.note else "no audio"
        if len(samples) < MIN_SECONDS * SAMPLE_RATE:
            return "", "", 0.0, f"audio too short ({len(samples) / SAMPLE_RATE:.2f} s)"
        speech = self._speech(samples) if self.cfg.vad else samples
        if not len(speech):
            return "", "", 0.0, "no speech (VAD)"
        text, language, note = self._decode(speech, start)
        return text, language, len(speech) / SAMPLE_RATE, note

    def _speech(self, samples: np.ndarray) -> np.ndarray:
        """The speech chunks Silero VAD finds, joined (faster-whisper's own padding and merging rules)."""
        stamps = self._speech_timestamps(samples, self._vad_options)
        if not stamps:
            return samples[:0]
        chunks, _ = self._collect(samples, stamps)
        return np.concatenate(chunks)

    def _decode(self, speech: np.ndarray, start: float) -> tuple[str, str, str]:
        """Whisper over 30 s windows: one encoder pass each, language from the first; -> (text, language, note)."""
        model, cfg = self._model, self.cfg
        features = model.feature_extractor(speech)
        content_frames = features.shape[-1] - 1  # the extractor appends one frame of padding
        budget, parts, language, tokenizer, suppressed = cfg.max_new_tokens, [], "", None, ()
        for seek in range(0, content_frames, _WINDOW_FRAMES):
            if seek and time.monotonic() - start > cfg.max_wall_s:
                return " ".join(parts), language, f"stopped at the {cfg.max_wall_s:g} s wall-time cap"
            window = self._pad_or_trim(features[:, seek : min(seek + _WINDOW_FRAMES, content_frames)])
            encoded = model.encode(window)
            if tokenizer is None:
                language = self._language(encoded)
                tokenizer, suppressed = self._tokenizer(language)
            tokens = self._generate(encoded, tokenizer, suppressed, budget)
            self.windows_decoded += 1
            if tokens is None:
                continue  # Whisper itself is sure this window holds no speech
            budget -= len(tokens)
            text = tokenizer.decode(tokens).strip()
            if text:
                parts.append(text)
            if budget <= 0:
                return " ".join(parts), language, f"stopped at the {cfg.max_new_tokens}-token cap"
        return " ".join(parts), language, "" if parts else "no speech (Whisper's no-speech probability)"

    def _tokenizer(self, language: str) -> tuple[object, tuple[int, ...]]:
        if language not in self._tokenizers:
            multilingual = self._model.model.is_multilingual
            tokenizer = self._tokenizer_cls(self._model.hf_tokenizer, multilingual, "transcribe", language)
            self._tokenizers[language] = tokenizer, self._suppressed(tokenizer, [-1])
        return self._tokenizers[language]

    def _language(self, encoded: object) -> str:
        if not self._model.model.is_multilingual:
            return "en"
        token, _probability = self._model.model.detect_language(encoded)[0][0]  # "<|es|>"
        return token[2:-2]

    def _generate(
        self, encoded: object, tokenizer: object, suppressed: tuple[int, ...], budget: int
    ) -> list[int] | None:
        """One bounded decode of one window: no timestamps, no previous text, temperature 0; None = no speech."""
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = self._model.model.generate(
            encoded,
            [prompt],
            beam_size=self.cfg.beam_size,
            max_length=min(_MAX_LENGTH, len(prompt) + 2 * budget),  # CTranslate2 stops at about half of it
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=list(suppressed),
        )[0]
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)  # faster-whisper's, length_penalty 1
        if result.no_speech_prob > _NO_SPEECH_PROB and avg_logprob < _LOW_LOGPROB:
            return None
        return tokens[:budget]
