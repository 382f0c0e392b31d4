"""What a feature call returns: plain numpy and Python, no Triton types."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelScores:
    """A response's scores against one label-bank version (see README, "Label banks and few-shot").

    `label_scores` are cosines to each label's prototype; `label_probs` are the bank's calibrated
    probabilities, softmax(cosine / T) with T fitted by leave-one-out on the bank's examples when it
    has enough (else a fixed, uncalibrated T); `label_entropy` is their entropy / log(labels): 0 =
    sure, 1 = no idea; `label_margin` is top-1 minus top-2 probability.
    """

    label_bank_version: str  # "bank/version": which labels these are, unambiguous across updates
    label_scores: dict[str, float]  # label -> cosine, in the bank's order
    label_probs: dict[str, float]  # label -> calibrated probability (they sum to 1)
    label_entropy: float
    label_margin: float

    @property
    def top_label(self) -> str:
        return max(self.label_probs, key=self.label_probs.__getitem__)


@dataclass(frozen=True)
class VideoFeatures(LabelScores):
    embedding: np.ndarray  # [E] float32, unit L2 norm
    tags: list[tuple[str, float]]  # (tag, ImageNet-calibrated probability), best first
    tag_entropy: float  # of the whole class distribution / log(classes): 1 = the tagger has no idea
    semantic_ids: tuple[int, ...]  # one code per residual level, coarse to fine
    semantic_id_version: str  # the codebook the IDs are codes of: never mix two in one index
    text_truncated: bool
    model_version: str
    ocr_text: str  # text printed on the frames (OCR), lines in reading order; "" when none
    # What is said in the audio track and its language (ISO 639-1), from `transcribe=True` calls
    # (the `video_features_full` ensemble): "" when there is no speech or no audio track, None when
    # the call did not ask for speech.
    asr_text: str | None = None
    asr_language: str | None = None


@dataclass(frozen=True)
class TextFeatures(LabelScores):
    embedding: np.ndarray  # [E] float32, unit L2 norm, same space as VideoFeatures.embedding
    text_truncated: bool
    model_version: str
