"""The wire contract: model names, tensor names, Triton dtypes and per-item dims.

Recsys clients depend on the ensemble names and tensors below; the model repository
generator, the python-backend steps and the client SDK all read them from here. Dims
exclude the batch dimension (every model has `max_batch_size > 0`); -1 is variable.
"""

from __future__ import annotations

from dataclasses import dataclass

# Ensembles a client calls.
VIDEO_FEATURES = "video_features"
TEXT_FEATURES = "text_features"
# `video_features` plus speech (ASR): the upload path, where seconds per clip are affordable and the
# 250 ms SLO of `video_features` is not (docs/decisions.md, "Speech: its own ensemble").
VIDEO_FEATURES_FULL = "video_features_full"
ENSEMBLES = (VIDEO_FEATURES, TEXT_FEATURES, VIDEO_FEATURES_FULL)  # what a client may call
ALWAYS_SERVED = (VIDEO_FEATURES, TEXT_FEATURES)  # by every export; VIDEO_FEATURES_FULL only with ASR on
# gRPC metadata: the caller's remaining deadline in ms, which the SDK sends because its own gRPC
# deadline is padded (a cancel crashes tritonserver 2.51); the front door's admission reads it.
DEADLINE_HEADER = "x-reelserve-deadline-ms"
# gRPC metadata: the call's priority at the front door's admission, one of PRIORITIES (absent:
# online). Backfill (re-extracting a catalogue) waits behind online calls and is shed first.
PRIORITY_HEADER = "x-reelserve-priority"
PRIORITIES = ("online", "backfill")
# Triton 2.51's own error texts that callers classify by (its gRPC status alone does not say):
TRITON_QUEUE_FULL = "Exceeds maximum queue size"  # UNAVAILABLE: the entry step's queue is full
TRITON_QUEUE_TIMEOUT = "Request timeout expired"  # the per-request timeout passed while queued
TRITON_RESTRICTED = "protocol is restricted"  # UNAVAILABLE for a missing or wrong API key

# Steps inside them.
PREPROCESS = "preprocess"  # validates and decodes every input: the one step allowed to refuse a request
VISION_ENCODER = "vision_encoder"
OCR = "ocr"  # reads printed text on a few frames; tokenizes title + that text for the text tower
ASR = "asr"  # transcribes the audio track; tokenizes title + printed text + transcript for the text tower
TEXT_ENCODER = "text_encoder"
FUSION_HEADS = "fusion_heads"


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # Triton config dtype, e.g. "TYPE_FP32"
    dims: tuple[int, ...]
    optional: bool = False

    @property
    def wire_dtype(self) -> str:
        """The KServe v2 datatype the client sends ("FP32", "BYTES", ...)."""
        return "BYTES" if self.dtype == "TYPE_STRING" else self.dtype.removeprefix("TYPE_")


# Client-facing tensors.
VIDEO = Tensor("video", "TYPE_STRING", (1,))
TEXT = Tensor("text", "TYPE_STRING", (1,))
LABEL_BANK = Tensor("label_bank", "TYPE_STRING", (1,), optional=True)  # absent: the `default` bank
EMBEDDING = Tensor("embedding", "TYPE_FP32", (-1,))
TAGS = Tensor("tags", "TYPE_STRING", (-1,))
TAG_SCORES = Tensor("tag_scores", "TYPE_FP32", (-1,))
TAG_ENTROPY = Tensor("tag_entropy", "TYPE_FP32", (1,))  # of the whole class distribution, / log(classes)
LABEL_BANK_VERSION = Tensor("label_bank_version", "TYPE_STRING", (1,))  # "bank/version" the scores are for
LABEL_NAMES = Tensor("label_names", "TYPE_STRING", (-1,))  # that version's labels, in score order
LABEL_SCORES = Tensor("label_scores", "TYPE_FP32", (-1,))  # cosine to each label's prototype
LABEL_PROBS = Tensor("label_probs", "TYPE_FP32", (-1,))  # softmax(cosine / the bank's fitted temperature)
LABEL_ENTROPY = Tensor("label_entropy", "TYPE_FP32", (1,))  # of label_probs, / log(labels)
LABEL_MARGIN = Tensor("label_margin", "TYPE_FP32", (1,))  # top-1 minus top-2 probability
SEMANTIC_IDS = Tensor("semantic_ids", "TYPE_INT32", (-1,))
SEMANTIC_ID_VERSION = Tensor("semantic_id_version", "TYPE_STRING", (1,))  # the codebook the IDs come from
OCR_TEXT = Tensor("ocr_text", "TYPE_STRING", (1,))  # printed text, lines in reading order; "" when none
ASR_TEXT = Tensor("asr_text", "TYPE_STRING", (1,))  # what is said (Whisper); "" when no speech or no audio track
ASR_LANGUAGE = Tensor("asr_language", "TYPE_STRING", (1,))  # the speech's ISO 639-1 code; "" when no text

# Tensors between steps.
FRAMES = Tensor("frames", "TYPE_UINT8", (-1, -1, -1, 3))  # [T, H, W, RGB]
FRAME_MASK = Tensor("frame_mask", "TYPE_BOOL", (-1,))  # [T], True = real frame
TEXT_FRAMES = Tensor("text_frames", "TYPE_UINT8", (-1, -1, -1, 3))  # [N, H, W, RGB] whole frames for OCR, zero-padded
TEXT_FRAME_SIZES = Tensor("text_frame_sizes", "TYPE_INT32", (-1, 2))  # [N, (height, width)]; (0, 0) = no frame
INPUT_IDS = Tensor("input_ids", "TYPE_INT64", (-1,))  # [L]
ATTENTION_MASK = Tensor("attention_mask", "TYPE_INT64", (-1,))  # [L], 1 = real token
TEXT_TRUNCATED = Tensor("text_truncated", "TYPE_BOOL", (1,))
FRAME_LOGITS = Tensor("frame_logits", "TYPE_FP32", (-1, -1))  # [T, classes]
TEXT_VECTOR = Tensor("text_vector", "TYPE_FP32", (-1,))  # [hidden] pooled tokens, unit norm; zero = no text
TAG_IDS = Tensor("tag_ids", "TYPE_INT64", (-1,))  # inside the heads graph; the step maps them to `tags`
LABEL_OUTPUTS = (LABEL_NAMES, LABEL_SCORES, LABEL_PROBS, LABEL_ENTROPY, LABEL_MARGIN)  # scored against the bank
FUSION_HEADS_OUTPUTS = (  # what the fusion_heads step serves
    EMBEDDING,
    TAGS,
    TAG_SCORES,
    TAG_ENTROPY,
    *LABEL_OUTPUTS,
    SEMANTIC_IDS,
    SEMANTIC_ID_VERSION,
)

# Each ensemble's whole wire contract: every input a client sends, every output it gets back.
VIDEO_FEATURES_INPUTS = (VIDEO, TEXT, LABEL_BANK)
VIDEO_FEATURES_OUTPUTS = (
    EMBEDDING,
    TAGS,
    TAG_SCORES,
    TAG_ENTROPY,
    LABEL_BANK_VERSION,
    *LABEL_OUTPUTS,
    SEMANTIC_IDS,
    SEMANTIC_ID_VERSION,
    OCR_TEXT,
    TEXT_TRUNCATED,
)
VIDEO_FEATURES_FULL_INPUTS = VIDEO_FEATURES_INPUTS
VIDEO_FEATURES_FULL_OUTPUTS = (*VIDEO_FEATURES_OUTPUTS, ASR_TEXT, ASR_LANGUAGE)
TEXT_FEATURES_INPUTS = (TEXT, LABEL_BANK)
TEXT_FEATURES_OUTPUTS = (EMBEDDING, LABEL_BANK_VERSION, *LABEL_OUTPUTS, TEXT_TRUNCATED)
