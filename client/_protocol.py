"""Request building and response parsing, shared by the sync and async clients (no I/O here)."""

from __future__ import annotations

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


def bank_input(label_bank: str | None, items: int) -> list[grpcclient.InferInput]:
    """The optional `label_bank` input, one copy per item (a request scores against one bank)."""
    if label_bank is None:
        return []
    if not isinstance(label_bank, str) or not label_bank:
        raise InvalidArgumentError("INVALID_ARGUMENT", f"input 'label_bank': {label_bank!r} is not a bank name")
    return [bytes_input(c.LABEL_BANK.name, [label_bank] * items)]


def video_request(
    videos: Sequence[bytes], texts: Sequence[str | bytes] | None, label_bank: str | None = None
) -> list[grpcclient.InferInput]:
    texts = paired_texts(videos, texts)
    return [bytes_input(c.VIDEO.name, videos), bytes_input(c.TEXT.name, texts), *bank_input(label_bank, len(videos))]


def text_request(texts: Sequence[str | bytes], label_bank: str | None = None) -> list[grpcclient.InferInput]:
    require_items(texts, c.TEXT.name)
    return [bytes_input(c.TEXT.name, texts), *bank_input(label_bank, len(texts))]


def video_ensemble(transcribe: bool) -> tuple[str, tuple[c.Tensor, ...]]:
    """The ensemble a video call goes to and the outputs it asks for: with speech, `video_features_full`."""
    if not isinstance(transcribe, bool):
        raise TypeError(f"transcribe must be True or False, got {transcribe!r}")
    if transcribe:
        return c.VIDEO_FEATURES_FULL, c.VIDEO_FEATURES_FULL_OUTPUTS
    return c.VIDEO_FEATURES, c.VIDEO_FEATURES_OUTPUTS


def requested(outputs: Sequence[c.Tensor]) -> list[grpcclient.InferRequestedOutput]:
    return [grpcclient.InferRequestedOutput(t.name) for t in outputs]


def check_ensemble(model: str) -> str:
    """A name the SDK can call: a typo is refused at once, not retried as Triton's NOT_FOUND until the deadline."""
    if model not in c.ENSEMBLES:
        raise ValueError(f"model must be one of {list(c.ENSEMBLES)}, got {model!r}")
    return model


def embedding_space_from_config(config: dict) -> str:
    """The space label banks are built in, from an ensemble's model config (JSON form)."""
    params = config.get("config", config).get("parameters", {})
    return params["embedding_space"]["string_value"]


def max_batch_size_from_config(config: dict) -> int:
    return int(config.get("config", config).get("max_batch_size", 1)) or 1


def _label_fields(result, i: int) -> dict:
    """Item i's scores against the bank version the response names, keyed by that version's label names."""
    names = [n.decode("utf-8") for n in result.as_numpy(c.LABEL_NAMES.name)[i]]
    scores, probs = result.as_numpy(c.LABEL_SCORES.name)[i], result.as_numpy(c.LABEL_PROBS.name)[i]
    return {
        "label_bank_version": result.as_numpy(c.LABEL_BANK_VERSION.name)[i, 0].decode("utf-8"),
        "label_scores": dict(zip(names, map(float, scores), strict=True)),
        "label_probs": dict(zip(names, map(float, probs), strict=True)),
        "label_entropy": float(result.as_numpy(c.LABEL_ENTROPY.name)[i, 0]),
        "label_margin": float(result.as_numpy(c.LABEL_MARGIN.name)[i, 0]),
    }


def parse_video(result) -> list[VideoFeatures]:
    version = result.get_response().model_version
    emb = result.as_numpy(c.EMBEDDING.name)
    tags, scores = result.as_numpy(c.TAGS.name), result.as_numpy(c.TAG_SCORES.name)
    tag_entropy, ids = result.as_numpy(c.TAG_ENTROPY.name), result.as_numpy(c.SEMANTIC_IDS.name)
    id_version = result.as_numpy(c.SEMANTIC_ID_VERSION.name)
    truncated = result.as_numpy(c.TEXT_TRUNCATED.name)
    printed = result.as_numpy(c.OCR_TEXT.name)
    spoken, language = result.as_numpy(c.ASR_TEXT.name), result.as_numpy(c.ASR_LANGUAGE.name)  # None: not asked
    return [
        VideoFeatures(
            **_label_fields(result, i),
            embedding=emb[i].astype(np.float32),
            tags=[(t.decode("utf-8"), float(s)) for t, s in zip(tags[i], scores[i], strict=True)],
            tag_entropy=float(tag_entropy[i, 0]),
            semantic_ids=tuple(int(x) for x in ids[i]),
            semantic_id_version=id_version[i, 0].decode("utf-8"),
            text_truncated=bool(truncated[i, 0]),
            model_version=version,
            ocr_text=printed[i, 0].decode("utf-8"),
            asr_text=None if spoken is None else spoken[i, 0].decode("utf-8"),
            asr_language=None if language is None else language[i, 0].decode("utf-8"),
        )
        for i in range(emb.shape[0])
    ]


def parse_text(result) -> list[TextFeatures]:
    version = result.get_response().model_version
    emb = result.as_numpy(c.EMBEDDING.name)
    truncated = result.as_numpy(c.TEXT_TRUNCATED.name)
    return [
        TextFeatures(
            **_label_fields(result, i),
            embedding=emb[i].astype(np.float32),
            text_truncated=bool(truncated[i, 0]),
            model_version=version,
        )
        for i in range(emb.shape[0])
    ]


def parse_embedding(result) -> np.ndarray:
    return result.as_numpy(c.EMBEDDING.name).astype(np.float32)


def chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]
