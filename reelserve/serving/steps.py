"""The ensemble's python-backend steps as plain numpy classes, unit-testable without Triton.

Each step takes the inputs of every request Triton handed to one `execute` call and returns,
per request, either its outputs or the `InvalidInputError` that request earned: one bad
video never fails its neighbours. Encoders concatenate the requests into one ONNX Runtime
call, which is where dynamic batching pays.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from reelserve.config import AsrConfig, BanksConfig, EncoderConfig, OcrConfig, TextConfig, VideoConfig
from reelserve.labels.prototypes import scores
from reelserve.labels.store import DEFAULT_BANK, EXPORTED_BANK_DIR, BankError, BankReader, parse_tag, store_from_env
from reelserve.spec import contract as c

from .audio_decode import decode_audio
from .errors import InvalidInputError
from .onnx_runtime import ort_session
from .text_tokenize import TextTokenizer, decode_utf8, video_text
from .video_decode import DecodedVideo, TextFrames, decode_clip

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
Result = Arrays | InvalidInputError


def _bytes_items(tensor: np.ndarray | None, field: str) -> list[bytes]:
    """A TYPE_STRING input [B, 1] -> B byte strings."""
    if tensor is None:
        raise InvalidInputError(field, "is missing")
    if tensor.ndim != 2 or tensor.shape[1] != 1:
        raise InvalidInputError(field, f"must have shape [batch, 1], got {list(tensor.shape)}")
    return [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in tensor[:, 0]]


class Step:
    """One python-backend model: the config sections it reads, parsed (`reelserve.spec.settings`), and its files.

    `settings` maps section name -> dataclass, exactly the sections `reelserve.spec.topology`
    says the step reads; the accessors below refuse a section the step was not given.
    """

    name: ClassVar[str]

    def __init__(self, settings: Mapping[str, object], version_dir: Path) -> None:
        self.settings = dict(settings)
        self.version_dir = Path(version_dir)

    def run(self, requests: Sequence[Mapping[str, np.ndarray | None]]) -> list[Result]:
        raise NotImplementedError

    def _section(self, name: str, kind: type):
        value = self.settings[name]
        if not isinstance(value, kind):
            raise TypeError(f"{self.name}: section {name!r} is {type(value).__name__}, expected {kind.__name__}")
        return value

    @property
    def video(self) -> VideoConfig:
        return self._section("video", VideoConfig)

    @property
    def text(self) -> TextConfig:
        return self._section("text", TextConfig)

    @property
    def ocr(self) -> OcrConfig:
        return self._section("ocr", OcrConfig)

    @property
    def asr(self) -> AsrConfig:
        return self._section("asr", AsrConfig)

    @property
    def encoder(self) -> EncoderConfig:
        return self._section("encoder", EncoderConfig)

    @property
    def banks(self) -> BanksConfig:
        return self._section("banks", BanksConfig)

    def bank_reader(self) -> BankReader:
        """The label banks: the server's store ($REELSERVE_LABEL_BANKS) over the exported default bank."""
        b = self.banks
        return BankReader(
            store_from_env(),
            self.version_dir / EXPORTED_BANK_DIR,
            refresh_s=b.refresh_s,
            max_versions=b.max_cached_versions,
        )


class PreprocessStep(Step):
    """Validates, decodes and tokenizes a whole request before the ensemble fans out.

    Every refusal happens here, while no other step of the request is in flight: Triton 2.51
    leaks the request (and can break a sibling step's stub) when a step fails while a parallel
    branch of the same ensemble request is still running (see docs/decisions.md).
    """

    name = c.PREPROCESS

    def __init__(self, settings: Mapping[str, object], version_dir: Path) -> None:
        super().__init__(settings, version_dir)
        self.text_frames = TextFrames(self.ocr.frames, self.ocr.max_side)
        self.tokenizer = TextTokenizer.from_folder(self.version_dir, self.text)
        self.banks_reader = self.bank_reader()

    def pin_bank(self, tensor: np.ndarray | None, items: int) -> np.ndarray:
        """The request's label bank -> the version it is scored with, `[B, 1]` "bank/version" (one bank per request)."""
        if tensor is None:
            name = DEFAULT_BANK
        else:
            given = _bytes_items(tensor, c.LABEL_BANK.name)
            if len(given) != items:
                raise InvalidInputError(c.LABEL_BANK.name, f"has {len(given)} items but 'text' has {items}")
            names = set(given)
            if len(names) != 1:
                raise InvalidInputError(c.LABEL_BANK.name, f"names {len(names)} banks; one request scores against one")
            raw = names.pop()
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInputError(c.LABEL_BANK.name, "is not valid UTF-8") from None
        try:
            bank = self.banks_reader.current(name)
        except BankError as e:
            raise InvalidInputError(c.LABEL_BANK.name, str(e)) from None
        return np.array([[bank.tag.encode("utf-8")]] * items, dtype=object)

    def run_one(self, inputs: Mapping[str, np.ndarray | None]) -> Arrays:
        texts = _bytes_items(inputs.get(c.TEXT.name), c.TEXT.name)
        pinned = self.pin_bank(inputs.get(c.LABEL_BANK.name), len(texts))
        ids, mask, truncated = self.tokenizer.encode(texts)
        out = {
            c.INPUT_IDS.name: ids,
            c.ATTENTION_MASK.name: mask,
            c.TEXT_TRUNCATED.name: truncated[:, None],
            c.LABEL_BANK_VERSION.name: pinned,
        }
        if inputs.get(c.VIDEO.name) is None:  # text_features: the text is all there is
            empty = ~mask.any(axis=1)
            if empty.any():
                raise InvalidInputError(c.TEXT.name, f"item {int(np.argmax(empty))} is empty; text_features needs text")
            return out
        videos = _bytes_items(inputs[c.VIDEO.name], c.VIDEO.name)
        if len(videos) != len(texts):
            raise InvalidInputError(c.TEXT.name, f"has {len(texts)} items but 'video' has {len(videos)}")
        clips = [decode_clip(v, self.video, self.text_frames) for v in videos]
        out[c.FRAMES.name] = np.stack([clip.frames for clip in clips])
        out[c.FRAME_MASK.name] = np.stack([clip.mask for clip in clips])
        out[c.TEXT_FRAMES.name], out[c.TEXT_FRAME_SIZES.name] = pack_text_frames(clips, self.text_frames.num)
        return out

    def run(self, requests: Sequence[Mapping[str, np.ndarray | None]]) -> list[Result]:
        results: list[Result] = []
        for inputs in requests:
            try:
                results.append(self.run_one(inputs))
            except InvalidInputError as e:
                results.append(e)
        return results


def pack_text_frames(clips: Sequence[DecodedVideo], num: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole frames of different sizes -> one zero-padded uint8 [B, N, H, W, 3] and their sizes int32 [B, N, 2].

    N is at least 1 so that no tensor has a zero dimension (OCR off: one 1x1 slot of size (0, 0)).
    """
    kept = [clip.text_frames[:num] for clip in clips]
    height = max([1, *(f.shape[0] for frames in kept for f in frames)])
    width = max([1, *(f.shape[1] for frames in kept for f in frames)])
    packed = np.zeros((len(clips), max(1, num), height, width, 3), np.uint8)
    sizes = np.zeros((len(clips), max(1, num), 2), np.int32)
    for b, frames in enumerate(kept):
        for n, f in enumerate(frames):
            packed[b, n, : f.shape[0], : f.shape[1]] = f
            sizes[b, n] = f.shape[:2]
    return packed, sizes


def unpack_text_frames(frames: np.ndarray, sizes: np.ndarray) -> list[list[np.ndarray]]:
    """The inverse of `pack_text_frames`: per item, its real frames cropped out of the padding."""
    return [[frames[b, n, :h, :w] for n, (h, w) in enumerate(sizes[b]) if h and w] for b in range(len(frames))]


def pad_axis1(arrays: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Stack [B_i, L_i, ...] arrays into [sum B_i, length, ...], zero-padded on axis 1."""
    out = np.zeros((sum(a.shape[0] for a in arrays), length, *arrays[0].shape[2:]), dtype=arrays[0].dtype)
    row = 0
    for a in arrays:
        out[row : row + a.shape[0], : a.shape[1]] = a
        row += a.shape[0]
    return out


class VisionEncoderStep(Step):
    """Runs only the real frames of every request through the vision ONNX graph."""

    name = c.VISION_ENCODER

    def __init__(self, settings: Mapping[str, object], version_dir: Path) -> None:
        super().__init__(settings, version_dir)
        self.session = ort_session(self.version_dir / "model.onnx", self.encoder.ort_threads)
        self.max_frames_per_run = self.encoder.max_frames_per_run
        self.num_classes = self.session.get_outputs()[0].shape[-1]

    def run(self, requests: Sequence[Mapping[str, np.ndarray | None]]) -> list[Result]:
        frames = [np.asarray(r[c.FRAMES.name]) for r in requests]
        masks = [np.asarray(r[c.FRAME_MASK.name], dtype=bool) for r in requests]
        real = np.concatenate([f[m] for f, m in zip(frames, masks, strict=True)])  # [N, H, W, 3]
        logits = np.concatenate(
            [
                self.session.run(None, {c.FRAMES.name: real[i : i + self.max_frames_per_run]})[0]
                for i in range(0, len(real), self.max_frames_per_run)
            ]
            or [np.zeros((0, self.num_classes), np.float32)]
        )
        results: list[Result] = []
        start = 0
        for m in masks:
            out = np.zeros((*m.shape, self.num_classes), dtype=np.float32)  # padded frames stay zero
            out[m] = logits[start : start + int(m.sum())]
            start += int(m.sum())
            results.append({c.FRAME_LOGITS.name: out})
        return results


class OcrStep(Step):
    """Reads the printed text on a video's whole frames and tokenizes it with the title for the text tower.

    It runs beside the vision encoder, so like every step after `preprocess` it never refuses a
    request: the title was validated there, and the frames are decoded RGB. An OCR failure (a bug,
    not bad input) is logged with its traceback and that item gets no printed text.
    """

    name = c.OCR

    def __init__(self, settings: Mapping[str, object], version_dir: Path) -> None:
        super().__init__(settings, version_dir)
        self.tokenizer = TextTokenizer.from_folder(self.version_dir, self.text)
        self.reader = None
        if self.ocr.frames > 0:  # the OCR models load only when OCR is on
            from .ocr import OnScreenTextReader, repository_graphs

            self.reader = OnScreenTextReader(
                min_score=self.ocr.min_score, threads=self.ocr.ort_threads, graphs=repository_graphs(self.version_dir)
            )

    def read(self, clips: Sequence[Sequence[np.ndarray]]) -> list[str]:
        """Printed text of every clip of the step call, read together; a failure is retried clip by clip."""
        if self.reader is None:
            return ["" for _ in clips]
        try:
            return self.reader.read_clips(clips, self.ocr.max_chars)
        except Exception:
            if len(clips) == 1:
                log.exception("OCR failed on %d frame(s); the item gets no on-screen text", len(clips[0]))
                return [""]
        return [self.read([frames])[0] for frames in clips]  # only the clip that fails loses its text

    def run(self, requests: Sequence[Mapping[str, np.ndarray | None]]) -> list[Result]:
        titles = [
            [decode_utf8(t, self.text.max_text_bytes) for t in _bytes_items(r[c.TEXT.name], c.TEXT.name)]
            for r in requests
        ]
        clips = [
            unpack_text_frames(np.asarray(r[c.TEXT_FRAMES.name]), np.asarray(r[c.TEXT_FRAME_SIZES.name]))
            for r in requests
        ]
        everything = self.read([frames for request in clips for frames in request])
        results: list[Result] = []
        start = 0
        for request_titles, request_clips in zip(titles, clips, strict=True):
            printed = everything[start : start + len(request_clips)]
            start += len(request_clips)
            ids, mask, _ = self.tokenizer.encode_strings(
                [video_text(t, p) for t, p in zip(request_titles, printed, strict=True)]
            )
            results.append(
                {
                    c.OCR_TEXT.name: np.array([[p.encode("utf-8")] for p in printed], dtype=object),
                    c.INPUT_IDS.name: ids,
                    c.ATTENTION_MASK.name: mask,
                }
            )
        return results


def _string_items(tensor: np.ndarray, field: str) -> list[str]:
    """A TYPE_STRING tensor another step wrote (valid UTF-8 by construction) -> B strings."""
    return [b.decode("utf-8") for b in _bytes_items(tensor, field)]


class AsrStep(Step):
    """Transcribes each video's audio track and tokenizes title + printed text + transcript for the text tower.

    It runs after `ocr` in `video_features_full`, so the request was validated by `preprocess` and
    its printed text is known. It decodes the audio itself from the container bytes (`preprocess`
    serves `video_features` too, where audio would be a cost for nothing). Like every step after
    `preprocess` it never refuses: no audio, bad audio or a model error give an empty transcript,
    logged; no speech (VAD) gives "" without running Whisper.
    """

    name = c.ASR

    def __init__(self, settings: Mapping[str, object], version_dir: Path) -> None:
        super().__init__(settings, version_dir)
        from .asr import WHISPER_DIR, SpeechTranscriber

        self.tokenizer = TextTokenizer.from_folder(self.version_dir, self.text)
        self.transcriber = SpeechTranscriber(self.version_dir / WHISPER_DIR, self.asr)

    def transcribe(self, video: bytes) -> tuple[str, str]:
        track = decode_audio(video, self.asr.max_seconds)
        out = self.transcriber.transcribe(track)
        # no audio track or no speech is ordinary; a track that would not decode, a failure or a cap is worth a look
        level = logging.WARNING if "undecodable" in out.note or "ASR failed" in out.note else logging.DEBUG
        level = logging.INFO if out.note.startswith("stopped at") else level
        log.log(level, "asr: %s (%.1f s of audio at %d Hz)", out.note, track.seconds, track.source_rate)
        return out.text, out.language

    def run(self, requests: Sequence[Mapping[str, np.ndarray | None]]) -> list[Result]:
        results: list[Result] = []
        for r in requests:
            titles = [decode_utf8(t, self.text.max_text_bytes) for t in _bytes_items(r[c.TEXT.name], c.TEXT.name)]
            printed = _string_items(r[c.OCR_TEXT.name], c.OCR_TEXT.name)
            spoken = [self.transcribe(v) for v in _bytes_items(r[c.VIDEO.name], c.VIDEO.name)]
            ids, mask, _ = self.tokenizer.encode_strings(
                [video_text(t, p, s) for t, p, (s, _) in zip(titles, printed, spoken, strict=True)]
            )
            results.append(
                {
                    c.ASR_TEXT.name: np.array([[s.encode("utf-8")] for s, _ in spoken], dtype=object),
                    c.ASR_LANGUAGE.name: np.array([[lang.encode("utf-8")] for _, lang in spoken], dtype=object),
                    c.INPUT_IDS.name: ids,
                    c.ATTENTION_MASK.name: mask,
                }
            )
        return results


TOKENS_PER_RUN = 64  # rows x longest row per ONNX Runtime call; docs/benchmarks.md, "Texts in runs of similar length"


def length_runs(lengths: np.ndarray, tokens_per_run: int = TOKENS_PER_RUN) -> list[np.ndarray]:
    """Row indices in runs of similar token length, shortest first, so a run pads to its own longest row.

    A run closes once its rows times its longest reach `tokens_per_run`: small enough that little
    is padded, large enough that each call still feeds the matrix products whole tiles.
    """
    order = np.argsort(lengths, kind="stable")
    runs: list[np.ndarray] = []
    start = 0
    for end in range(1, len(order) + 1):
        if end == len(order) or (end - start) * max(int(lengths[order[end - 1]]), 1) >= tokens_per_run:
            runs.append(order[start:end])
            start = end
    return runs


class TextEncoderStep(Step):
    """One unit vector per text: the requests' rows, in runs of similar length, each trimmed to its longest."""

    name = c.TEXT_ENCODER

    def __init__(self, settings: Mapping[str, object], version_dir: Path) -> None:
        super().__init__(settings, version_dir)
        self.session = ort_session(self.version_dir / "model.onnx", self.encoder.ort_threads)
        self.tokens_per_run = TOKENS_PER_RUN

    def run(self, requests: Sequence[Mapping[str, np.ndarray | None]]) -> list[Result]:
        ids = [np.asarray(r[c.INPUT_IDS.name], dtype=np.int64) for r in requests]
        masks = [np.asarray(r[c.ATTENTION_MASK.name], dtype=np.int64) for r in requests]
        width = max(a.shape[1] for a in ids)
        all_ids, all_masks = pad_axis1(ids, width), pad_axis1(masks, width)
        real = all_masks != 0
        lengths = np.where(real.any(1), width - np.argmax(real[:, ::-1], axis=1), 0)  # through the last real token
        vectors: np.ndarray | None = None
        for rows in length_runs(lengths, self.tokens_per_run):
            longest = max(int(lengths[rows].max()), 1)
            feeds = {c.INPUT_IDS.name: all_ids[rows, :longest], c.ATTENTION_MASK.name: all_masks[rows, :longest]}
            (run,) = self.session.run([c.TEXT_VECTOR.name], feeds)
            if vectors is None:
                vectors = np.empty((len(all_ids), run.shape[1]), np.float32)
            vectors[rows] = run
        assert vectors is not None
        results: list[Result] = []
        row = 0
        for a in ids:
            results.append({c.TEXT_VECTOR.name: vectors[row : row + a.shape[0]]})
            row += a.shape[0]
        return results


class FusionHeadsStep(Step):
    """Fusion and heads in one ONNX graph; maps tag ids to names; scores the label bank the request pinned.

    Frames are optional (text_features). It never refuses a request: `preprocess` already did,
    before the ensemble fanned out, and pinned a bank version that exists (versions are immutable).
    """

    name = c.FUSION_HEADS

    def __init__(self, settings: Mapping[str, object], version_dir: Path) -> None:
        super().__init__(settings, version_dir)
        self.session = ort_session(self.version_dir / "model.onnx", self.encoder.ort_threads)
        meta = json.loads((self.version_dir / "heads.json").read_text(encoding="utf-8"))
        self.tag_names = np.array([t.encode("utf-8") for t in meta["tags"]], dtype=object)
        self.num_classes = len(self.tag_names)
        self.semantic_id_version = np.array([[meta["semantic_id_version"].encode("utf-8")]], dtype=object)
        self.banks_reader = self.bank_reader()

    def label_outputs(self, embedding: np.ndarray, pinned: np.ndarray) -> Arrays:
        """Scores of `embedding` [B, E] against the bank version `pinned` ([B, 1] "bank/version", one per request)."""
        bank = self.banks_reader.version(*parse_tag(pinned[0, 0].decode("utf-8")))
        cos, probs, entropy, margin = scores(embedding, bank.prototypes, bank.temperature)
        names = np.array([x.encode("utf-8") for x in bank.labels], dtype=object)
        return {
            c.LABEL_NAMES.name: np.broadcast_to(names, (len(embedding), len(names))),
            c.LABEL_SCORES.name: cos,
            c.LABEL_PROBS.name: probs,
            c.LABEL_ENTROPY.name: entropy.reshape(-1, 1),
            c.LABEL_MARGIN.name: margin.reshape(-1, 1),
        }

    def run(self, requests: Sequence[Mapping[str, np.ndarray | None]]) -> list[Result]:
        vectors = [np.asarray(r[c.TEXT_VECTOR.name], dtype=np.float32) for r in requests]
        logits, fmasks = [], []
        for r, s in zip(requests, vectors, strict=True):
            if r.get(c.FRAME_LOGITS.name) is None:  # text_features: no video at all
                logits.append(np.zeros((s.shape[0], 1, self.num_classes), np.float32))
                fmasks.append(np.zeros((s.shape[0], 1), bool))
            else:
                logits.append(np.asarray(r[c.FRAME_LOGITS.name], dtype=np.float32))
                fmasks.append(np.asarray(r[c.FRAME_MASK.name], dtype=bool))
        frames = max(a.shape[1] for a in logits)
        outputs = self.session.run(
            None,
            {
                c.FRAME_LOGITS.name: pad_axis1(logits, frames),
                c.FRAME_MASK.name: pad_axis1(fmasks, frames),
                c.TEXT_VECTOR.name: np.concatenate(vectors),
            },
        )
        names = [o.name for o in self.session.get_outputs()]
        merged = dict(zip(names, outputs, strict=True))
        results: list[Result] = []
        row = 0
        for r, fm in zip(requests, fmasks, strict=True):
            rows = slice(row, row + fm.shape[0])
            row += fm.shape[0]
            embedding = merged[c.EMBEDDING.name][rows]
            results.append(
                {
                    c.EMBEDDING.name: embedding,
                    c.TAGS.name: self.tag_names[merged[c.TAG_IDS.name][rows]],
                    c.TAG_SCORES.name: merged[c.TAG_SCORES.name][rows],
                    c.TAG_ENTROPY.name: merged[c.TAG_ENTROPY.name][rows],
                    **self.label_outputs(embedding, np.asarray(r[c.LABEL_BANK_VERSION.name])),
                    c.SEMANTIC_IDS.name: merged[c.SEMANTIC_IDS.name][rows].astype(np.int32),
                    c.SEMANTIC_ID_VERSION.name: np.broadcast_to(self.semantic_id_version, (len(embedding), 1)),
                }
            )
        return results


STEPS: dict[str, type[Step]] = {
    step.name: step for step in (PreprocessStep, VisionEncoderStep, OcrStep, AsrStep, TextEncoderStep, FusionHeadsStep)
}
