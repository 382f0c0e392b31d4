"""`VideoFeaturesClient`: recsys feature calls over gRPC, without building Triton tensors by hand."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from reelserve import contract as c

from ._errors import ReelserveError, from_status
from ._types import TextFeatures, VideoFeatures

DEFAULT_DEADLINE_S = 10.0


def _bytes_input(name: str, items: Sequence[bytes | str]) -> grpcclient.InferInput:
    data = np.array([[i.encode("utf-8") if isinstance(i, str) else bytes(i)] for i in items], dtype=object)
    tensor = grpcclient.InferInput(name, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor


def _error(e: InferenceServerException) -> ReelserveError:
    return from_status(e.status(), e.message() or str(e))


class VideoFeaturesClient:
    """Sync client for the `video_features` and `text_features` ensembles.

    One gRPC channel per client, reused by every call; every call has a finite deadline.
    """

    def __init__(self, url: str, *, deadline_s: float = DEFAULT_DEADLINE_S) -> None:
        self.url = url
        self.deadline_s = deadline_s
        self._grpc = grpcclient.InferenceServerClient(url)
        self._labels: dict[str, list[str]] = {}

    def __enter__(self) -> VideoFeaturesClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._grpc.close()

    def is_ready(self, timeout_s: float = 2.0) -> bool:
        """Server and both ensembles are ready to take calls."""
        try:
            return self._grpc.is_server_ready(client_timeout=timeout_s) and all(
                self._grpc.is_model_ready(m, client_timeout=timeout_s) for m in (c.VIDEO_FEATURES, c.TEXT_FEATURES)
            )
        except InferenceServerException:
            return False

    def label_names(self, model: str = c.VIDEO_FEATURES) -> list[str]:
        """The zero-shot label bank, in `label_scores` order (read once from the server)."""
        if model not in self._labels:
            try:
                config = self._grpc.get_model_config(model, as_json=True, client_timeout=self.deadline_s)
            except InferenceServerException as e:
                raise _error(e) from None
            params = config["config"].get("parameters", {})
            self._labels[model] = json.loads(params["labels"]["string_value"])
        return self._labels[model]

    def _infer(self, model: str, inputs: list, outputs: Sequence[c.Tensor], deadline_s: float | None):
        try:
            return self._grpc.infer(
                model,
                inputs,
                outputs=[grpcclient.InferRequestedOutput(t.name) for t in outputs],
                client_timeout=deadline_s or self.deadline_s,
            )
        except InferenceServerException as e:
            raise _error(e) from None

    def video_features(
        self, videos: Sequence[bytes], texts: Sequence[str | bytes] | None = None, *, deadline_s: float | None = None
    ) -> list[VideoFeatures]:
        """Features of each video (encoded container bytes) with its text (title, caption, ...; may be empty)."""
        texts = [""] * len(videos) if texts is None else texts
        if len(texts) != len(videos):
            raise ValueError(f"got {len(videos)} videos but {len(texts)} texts; pass one text per video")
        outputs = [*c.VIDEO_FEATURES_OUTPUTS, c.TEXT_TRUNCATED]
        result = self._infer(
            c.VIDEO_FEATURES,
            [_bytes_input(c.VIDEO.name, videos), _bytes_input(c.TEXT.name, texts)],
            outputs,
            deadline_s,
        )
        labels = self.label_names()
        version = result.get_response().model_version
        emb = result.as_numpy(c.EMBEDDING.name)
        tags, scores = result.as_numpy(c.TAGS.name), result.as_numpy(c.TAG_SCORES.name)
        label_scores, ids = result.as_numpy(c.LABEL_SCORES.name), result.as_numpy(c.SEMANTIC_IDS.name)
        truncated = result.as_numpy(c.TEXT_TRUNCATED.name)
        return [
            VideoFeatures(
                embedding=emb[i].astype(np.float32),
                tags=[(t.decode("utf-8"), float(s)) for t, s in zip(tags[i], scores[i], strict=True)],
                label_scores=dict(zip(labels, map(float, label_scores[i]), strict=True)),
                semantic_ids=tuple(int(x) for x in ids[i]),
                text_truncated=bool(truncated[i, 0]),
                model_version=version,
            )
            for i in range(len(videos))
        ]

    def text_features(self, texts: Sequence[str | bytes], *, deadline_s: float | None = None) -> list[TextFeatures]:
        """Features of texts alone (comments, captions): an embedding in the videos' space and label scores."""
        outputs = [*c.TEXT_FEATURES_OUTPUTS, c.TEXT_TRUNCATED]
        result = self._infer(c.TEXT_FEATURES, [_bytes_input(c.TEXT.name, texts)], outputs, deadline_s)
        labels = self.label_names(c.TEXT_FEATURES)
        emb, scores = result.as_numpy(c.EMBEDDING.name), result.as_numpy(c.LABEL_SCORES.name)
        truncated = result.as_numpy(c.TEXT_TRUNCATED.name)
        version = result.get_response().model_version
        return [
            TextFeatures(
                embedding=emb[i].astype(np.float32),
                label_scores=dict(zip(labels, map(float, scores[i]), strict=True)),
                text_truncated=bool(truncated[i, 0]),
                model_version=version,
            )
            for i in range(len(texts))
        ]
