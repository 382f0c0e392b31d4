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
ENSEMBLES = (VIDEO_FEATURES, TEXT_FEATURES)

# Steps inside them.
PREPROCESS = "preprocess"  # validates and decodes every input: the one step allowed to refuse a request
VISION_ENCODER = "vision_encoder"
OCR = "ocr"  # reads printed text on a few frames; tokenizes title + that text for the text tower
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
EMBEDDING = Tensor("embedding", "TYPE_FP32", (-1,))
TAGS = Tensor("tags", "TYPE_STRING", (-1,))
TAG_SCORES = Tensor("tag_scores", "TYPE_FP32", (-1,))
LABEL_SCORES = Tensor("label_scores", "TYPE_FP32", (-1,))
SEMANTIC_IDS = Tensor("semantic_ids", "TYPE_INT32", (-1,))
OCR_TEXT = Tensor("ocr_text", "TYPE_STRING", (1,))  # printed text, lines in reading order; "" when none

# Tensors between steps.
FRAMES = Tensor("frames", "TYPE_UINT8", (-1, -1, -1, 3))  # [T, H, W, RGB]
FRAME_MASK = Tensor("frame_mask", "TYPE_BOOL", (-1,))  # [T], True = real frame
TEXT_FRAMES = Tensor("text_frames", "TYPE_UINT8", (-1, -1, -1, 3))  # [N, H, W, RGB] whole frames for OCR, zero-padded
TEXT_FRAME_SIZES = Tensor("text_frame_sizes", "TYPE_INT32", (-1, 2))  # [N, (height, width)]; (0, 0) = no frame
INPUT_IDS = Tensor("input_ids", "TYPE_INT64", (-1,))  # [L]
ATTENTION_MASK = Tensor("attention_mask", "TYPE_INT64", (-1,))  # [L], 1 = real token
TEXT_TRUNCATED = Tensor("text_truncated", "TYPE_BOOL", (1,))
FRAME_LOGITS = Tensor("frame_logits", "TYPE_FP32", (-1, -1))  # [T, classes]
TOKEN_STATES = Tensor("token_states", "TYPE_FP32", (-1, -1))  # [L, hidden]
TAG_IDS = Tensor("tag_ids", "TYPE_INT64", (-1,))  # inside the heads graph; the step maps them to `tags`
FUSION_HEADS_OUTPUTS = (EMBEDDING, TAGS, TAG_SCORES, LABEL_SCORES, SEMANTIC_IDS)  # what the fusion_heads step serves

# Each ensemble's whole wire contract: every input a client sends, every output it gets back.
VIDEO_FEATURES_INPUTS = (VIDEO, TEXT)
VIDEO_FEATURES_OUTPUTS = (EMBEDDING, TAGS, TAG_SCORES, LABEL_SCORES, SEMANTIC_IDS, OCR_TEXT, TEXT_TRUNCATED)
TEXT_FEATURES_INPUTS = (TEXT,)
TEXT_FEATURES_OUTPUTS = (EMBEDDING, LABEL_SCORES, TEXT_TRUNCATED)
