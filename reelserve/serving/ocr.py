"""Printed text on video frames -> lines in reading order, with PP-OCR (`rapidocr-onnxruntime`).

The package does the whole pipeline (DB text detection and its box post-processing, crop and
rectify, CRNN recognition, CTC decoding, boxes sorted top-to-bottom, left-to-right); we only
choose its settings and merge what it reads on several frames of one clip:

- detection at the frame's own resolution (`limit_type: max`): the package's default scales the
  shorter side *up* to 736 px, 3x the work on a 288x512 phone clip for no better reading;
- no angle classifier: text burned into a video is upright, and the classifier costs a model call
  per line;
- its ONNX Runtime sessions are rebuilt with our options (idle worker threads do not spin: the
  other steps need those cores; see `onnx_runtime.ort_session`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from .onnx_runtime import ort_session

_WHITESPACE = re.compile(r"\s+")


def line_key(line: str) -> str:
    """Lines that differ only in case or spacing are the same line seen twice (OCR drops or adds spaces)."""
    return _WHITESPACE.sub("", line).casefold()


def merge_lines(frames_lines: Iterable[Sequence[str]], max_chars: int) -> str:
    """Lines of every frame, in clip order then reading order, each kept once; joined by newlines."""
    seen: set[str] = set()
    kept: list[str] = []
    size = 0
    for lines in frames_lines:
        for raw in lines:
            line = _WHITESPACE.sub(" ", raw).strip()
            key = line_key(line)
            if not key or key in seen:
                continue
            if size + len(line) > max_chars:
                return "\n".join(kept)
            seen.add(key)
            kept.append(line)
            size += len(line) + 1
    return "\n".join(kept)


class OnScreenTextReader:
    """One PP-OCR pipeline (detector + recogniser), loaded once per `ocr` step instance."""

    def __init__(self, *, min_score: float = 0.5, threads: int = 0) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.min_score = min_score
        self.engine = RapidOCR(
            det_limit_type="max",
            det_limit_side_len=960,  # the package's floor for "max"; frames come to us capped lower
            text_score=min_score,
            use_cls=False,
        )
        for runner in (self.engine.text_det.infer, self.engine.text_rec.session):
            path = getattr(runner.session, "_model_path", None)  # ORT keeps the file it loaded
            if path:  # else keep the package's session: slower when idle threads spin, same answers
                runner.session = ort_session(path, threads)

    def read(self, rgb: np.ndarray) -> list[str]:
        """Lines printed on one RGB uint8 frame [H, W, 3], top to bottom; [] when it shows no text."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 8:
            return []
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # the package's convention for arrays (OpenCV's)
        result, _ = self.engine(bgr, use_cls=False)
        if not result:
            return []
        return [text for _box, text, score in result if float(score) >= self.min_score and text.strip()]

    def read_clip(self, frames: Iterable[np.ndarray], max_chars: int) -> str:
        """The clip's printed text: lines of every frame in order, repeated lines once."""
        return merge_lines((self.read(f) for f in frames), max_chars)
