"""Request building and response parsing, shared by the sync and async clients (no I/O here)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import tritonclient.grpc as grpcclient

from reelserve.spec import contract as c

from ._errors import InvalidArgumentError
from ._types import TextFeatures, VideoFeatures

VIDEO_OUTPUTS = c.VIDEO_FEATURES_OUTPUTS
TEXT_OUTPUTS = c.TEXT_FEATURES_OUTPUTS


def bytes_input(name: str, items: Sequence[bytes | str]) -> grpcclient.InferInput:
    data = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        if isinstance(item, str):
            data[i, 0] = item.encode("utf-8")
        elif isinstance(item, (bytes, bytearray, memoryview)):
            data[i, 0] = bytes(item)
        else:
            raise InvalidArgumentError(
                "INVALID_ARGUMENT", f"input '{name}': item {i} is {type(item).__name__}, not bytes/str"
            )
    tensor = grpcclient.InferInput(name, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor


def require_items(items: Sequence, name: str) -> None:
    if not items:
        raise InvalidArgumentError("INVALID_ARGUMENT", f"input '{name}': no items given")


def paired_texts(videos: Sequence[bytes], texts: Sequence[str | bytes] | None) -> Sequence[str | bytes]:
    """One text per video (empty when none given), checked before anything is sent or split."""
    require_items(videos, c.VIDEO.name)
    texts = [""] * len(videos) if texts is None else texts
    if len(texts) != len(videos):
        raise InvalidArgumentError(
            "INVALID_ARGUMENT", f"input 'text': {len(texts)} texts for {len(videos)} videos; pass one text per video"
        )
    return texts


def video_request(videos: Sequence[bytes], texts: Sequence[str | bytes] | None) -> list[grpcclient.InferInput]:
    texts = paired_texts(videos, texts)
    return [bytes_input(c.VIDEO.name, videos), bytes_input(c.TEXT.name, texts)]


def text_request(texts: Sequence[str | bytes]) -> list[grpcclient.InferInput]:
    require_items(texts, c.TEXT.name)
    return [bytes_input(c.TEXT.name, texts)]


def requested(outputs: Sequence[c.Tensor]) -> list[grpcclient.InferRequestedOutput]:
    return [grpcclient.InferRequestedOutput(t.name) for t in outputs]


def check_ensemble(model: str) -> str:
    """A name the SDK can call: a typo is refused at once, not retried as Triton's NOT_FOUND until the deadline."""
    if model not in c.ENSEMBLES:
        raise ValueError(f"model must be one of {list(c.ENSEMBLES)}, got {model!r}")
    return model


def labels_from_config(config: dict) -> list[str]:
    """The zero-shot label bank from an ensemble's model config (JSON form)."""
    params = config.get("config", config).get("parameters", {})
    return json.loads(params["labels"]["string_value"])


def max_batch_size_from_config(config: dict) -> int:
    return int(config.get("config", config).get("max_batch_size", 1)) or 1


def parse_video(result, labels: list[str]) -> list[VideoFeatures]:
    version = result.get_response().model_version
    emb = result.as_numpy(c.EMBEDDING.name)
    tags, scores = result.as_numpy(c.TAGS.name), result.as_numpy(c.TAG_SCORES.name)
    label_scores, ids = result.as_numpy(c.LABEL_SCORES.name), result.as_numpy(c.SEMANTIC_IDS.name)
    truncated = result.as_numpy(c.TEXT_TRUNCATED.name)
    printed = result.as_numpy(c.OCR_TEXT.name)
    return [
        VideoFeatures(
            embedding=emb[i].astype(np.float32),
            tags=[(t.decode("utf-8"), float(s)) for t, s in zip(tags[i], scores[i], strict=True)],
            label_scores=dict(zip(labels, map(float, label_scores[i]), strict=True)),
            semantic_ids=tuple(int(x) for x in ids[i]),
            text_truncated=bool(truncated[i, 0]),
            model_version=version,
            ocr_text=printed[i, 0].decode("utf-8"),
        )
        for i in range(emb.shape[0])
    ]


def parse_text(result, labels: list[str]) -> list[TextFeatures]:
    version = result.get_response().model_version
    emb, scores = result.as_numpy(c.EMBEDDING.name), result.as_numpy(c.LABEL_SCORES.name)
    truncated = result.as_numpy(c.TEXT_TRUNCATED.name)
    return [
        TextFeatures(
            embedding=emb[i].astype(np.float32),
            label_scores=dict(zip(labels, map(float, scores[i]), strict=True)),
            text_truncated=bool(truncated[i, 0]),
            model_version=version,
        )
        for i in range(emb.shape[0])
    ]


def parse_embedding(result) -> np.ndarray:
    return result.as_numpy(c.EMBEDDING.name).astype(np.float32)


def chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]
