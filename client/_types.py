"""What a feature call returns: plain numpy and Python, no Triton types."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VideoFeatures:
    embedding: np.ndarray  # [E] float32, unit L2 norm
    tags: list[tuple[str, float]]  # (tag, calibrated score), best first
    label_scores: dict[str, float]  # zero-shot label -> cosine score
    semantic_ids: tuple[int, ...]  # one code per residual level, coarse to fine
    text_truncated: bool
    model_version: str
    ocr_text: str = ""  # text printed on the frames (OCR), lines in reading order; "" when none

    @property
    def top_label(self) -> str:
        return max(self.label_scores, key=self.label_scores.__getitem__)


@dataclass(frozen=True)
class TextFeatures:
    embedding: np.ndarray  # [E] float32, unit L2 norm, same space as VideoFeatures.embedding
    label_scores: dict[str, float]
    text_truncated: bool
    model_version: str
