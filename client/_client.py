"""`VideoFeaturesClient`: recsys feature calls over gRPC, without building Triton tensors by hand."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
from prometheus_client import CollectorRegistry
from tritonclient.utils import InferenceServerException

from reelserve.spec import contract as c

from . import _protocol as p
from ._call import SERVER_GRACE_S, Call, deadline_exceeded, server_timeout_us, with_deadline
from ._errors import from_status
from ._metrics import metrics_for
from ._retry import RetryPolicy
from ._target import grpc_target, service_config
from ._types import TextFeatures, VideoFeatures

DEFAULT_DEADLINE_S = 10.0
API_KEY_HEADER = "x-api-key"  # what a gateway in front of reelserve checks
# Triton's `--grpc-restricted-protocol=...:x-api-key=KEY` checks this header (it adds the prefix).
TRITON_API_KEY_HEADER = "triton-grpc-protocol-x-api-key"


def call_headers(api_key: str | None, priority: str) -> dict[str, str]:
    """Metadata on every call: the API key (ours and Triton's header), the priority at the front door."""
    if priority not in c.PRIORITIES:
        raise ValueError(f"priority must be one of {list(c.PRIORITIES)}, got {priority!r}")
    keys = {API_KEY_HEADER: api_key, TRITON_API_KEY_HEADER: api_key} if api_key else {}
    return {**keys, c.PRIORITY_HEADER: priority}


@dataclass(frozen=True)
class ChannelOptions:
    """gRPC channel settings: keepalive so idle channels survive load balancers, TLS if asked.

    The reconnect backoff is capped at `max_reconnect_backoff_s` (gRPC's default grows to 120 s),
    so a client finds a restarted server within about a second instead of minutes.
    """

    keepalive_time_s: float = 30.0
    keepalive_timeout_s: float = 10.0
    max_reconnect_backoff_s: float = 1.0
    tls: bool = False
    root_certificates: str | None = None  # PEM file paths, as tritonclient takes them
    private_key: str | None = None
    certificate_chain: str | None = None

    def client_kwargs(self, target: str) -> dict:
        return {
            "ssl": self.tls,
            "root_certificates": self.root_certificates,
            "private_key": self.private_key,
            "certificate_chain": self.certificate_chain,
            "channel_args": self.channel_args(target),
        }

    def channel_args(self, target: str) -> list[tuple[str, int | str]]:
        """Complete channel arguments (tritonclient then ignores its own keepalive defaults)."""
        backoff_ms = int(self.max_reconnect_backoff_s * 1000)
        return [
            ("grpc.service_config", service_config(target)),  # per-call round robin
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.max_receive_message_length", 2**31 - 1),
            ("grpc.keepalive_time_ms", int(self.keepalive_time_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout_s * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.initial_reconnect_backoff_ms", min(100, backoff_ms)),
            ("grpc.min_reconnect_backoff_ms", min(100, backoff_ms)),
            ("grpc.max_reconnect_backoff_ms", backoff_ms),
        ]


class ClientSettings:
    """What the sync and async clients share: address, deadline, retry policy, headers, metrics."""

    def __init__(
        self,
        url: str | Sequence[str],
        deadline_s: float,
        retry: RetryPolicy | None,
        api_key: str | None,
        registry: CollectorRegistry | None,
        priority: str = "online",
    ) -> None:
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be > 0, got {deadline_s}")
        self.url = grpc_target(url)  # the gRPC target: one server, or several balanced per call
        self.deadline_s = deadline_s
        self.retry = retry or RetryPolicy()
        self.headers = call_headers(api_key, priority)
        self.metrics = metrics_for(registry)
        self._configs: dict[str, dict] = {}


class VideoFeaturesClient(ClientSettings):
    """Sync client for the `video_features` and `text_features` ensembles.

    One gRPC channel per client, reused by every call and thread; every call has a finite
    deadline that covers its retries; UNAVAILABLE, NOT_FOUND (a model loading or unloading),
    CANCELLED (a server stopping mid-call) and RESOURCE_EXHAUSTED are retried with backoff,
    nothing else is. Config reads (`embedding_space`, `max_batch_size`, hence every `*_batched`
    call) are retried alike, within `deadline_s`. `url`: `host:port`, a list of them, or a gRPC
    target naming several servers (`dns:///reelserve-headless.NS.svc:8001`, `ipv4:A:P,B:P`):
    calls go round robin over the healthy ones, and a retry goes to the next (`_target.py`).
    `priority="backfill"` (re-extracting a catalogue): behind online calls at the front door's
    admission, and shed first when it is full.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        deadline_s: float = DEFAULT_DEADLINE_S,
        retry: RetryPolicy | None = None,
        api_key: str | None = None,
        channel: ChannelOptions | None = None,
        registry: CollectorRegistry | None = None,
        priority: str = "online",
    ) -> None:
        super().__init__(url, deadline_s, retry, api_key, registry, priority)
        self._grpc = grpcclient.InferenceServerClient(self.url, **(channel or ChannelOptions()).client_kwargs(self.url))
        self._pending = 0  # RPCs still running on the server (a timed-out call's RPC keeps going)
        self._drained = threading.Condition()

    def __enter__(self) -> VideoFeaturesClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, drain_timeout_s: float = 60.0) -> None:
        """Close the channel once the RPCs of timed-out calls have finished (bounded wait).

        Closing cancels what is still in flight, and a cancelled inference crashes
        tritonserver 2.51 (see `_call.SERVER_GRACE_S`), so the channel is drained first.
        """
        with self._drained:
            self._drained.wait_for(lambda: self._pending == 0, timeout=drain_timeout_s)
        self._grpc.close()

    # -- probes and metadata --------------------------------------------------------------------

    def is_ready(self, timeout_s: float = 2.0) -> bool:
        """Server and both ensembles are ready to take calls (never raises)."""
        try:
            return self._grpc.is_server_ready(headers=self.headers, client_timeout=timeout_s) and all(
                self._grpc.is_model_ready(m, headers=self.headers, client_timeout=timeout_s) for m in c.ALWAYS_SERVED
            )
        except (InferenceServerException, ValueError):  # ValueError: the client was closed
            return False

    def wait_until_ready(self, timeout_s: float = 60.0, poll_s: float = 0.2) -> None:
        end = time.monotonic() + timeout_s
        while not self.is_ready(timeout_s=min(2.0, timeout_s)):
            if time.monotonic() > end:
                raise from_status("UNAVAILABLE", f"reelserve at {self.url} not ready after {timeout_s:g}s")
            time.sleep(poll_s)

    def _config(self, model: str) -> dict:
        """The ensemble's config (embedding space, max batch size): read once, with the calls' retries."""
        if p.check_ensemble(model) not in self._configs:
            call = Call(model, self.url, self.deadline_s, self.retry, metrics=None)
            for timeout in call.attempts():
                time.sleep(call.next_sleep)
                try:
                    self._configs[model] = self._grpc.get_model_config(
                        model, headers=self.headers, as_json=True, client_timeout=timeout
                    )
                    break
                except InferenceServerException as e:
                    call.failed(e)
        return self._configs[model]

    def embedding_space(self, model: str = c.VIDEO_FEATURES) -> str:
        """The id of the space the server embeds in; a label bank is published for exactly one (read once)."""
        return p.embedding_space_from_config(self._config(model))

    def max_batch_size(self, model: str = c.VIDEO_FEATURES) -> int:
        return p.max_batch_size_from_config(self._config(model))

    # -- calls ----------------------------------------------------------------------------------

    def _infer(self, model: str, inputs: list, outputs: Sequence[c.Tensor], deadline_s: float | None):
        call = Call(model, self.url, self.deadline_s if deadline_s is None else deadline_s, self.retry, self.metrics)
        for timeout in call.attempts():
            time.sleep(call.next_sleep)
            try:
                return call.done(self._infer_within(model, inputs, outputs, timeout))
            except InferenceServerException as e:
                call.failed(e)
            except BaseException as e:  # closed channel, interrupt: still counted, then raised as is
                call.abandon(e)
                raise
        raise AssertionError("unreachable")

    def _infer_within(self, model: str, inputs: list, outputs: Sequence[c.Tensor], timeout: float):
        """Wait at most `timeout` for the answer without cancelling the RPC (see `_call.SERVER_GRACE_S`)."""
        done = threading.Event()
        box: dict = {}

        def on_answer(result, error) -> None:
            box["result"], box["error"] = result, error
            done.set()
            with self._drained:
                self._pending -= 1
                self._drained.notify_all()

        with self._drained:
            self._pending += 1
        try:
            self._grpc.async_infer(
                model,
                inputs,
                on_answer,
                outputs=p.requested(outputs),
                timeout=server_timeout_us(timeout),  # the server drops it from its queue after this
                client_timeout=timeout + SERVER_GRACE_S,
                headers=with_deadline(self.headers, timeout),
            )
        except BaseException:  # never sent: nothing to drain
            with self._drained:
                self._pending -= 1
                self._drained.notify_all()
            raise
        if not done.wait(timeout):
            raise deadline_exceeded()
        if box["error"] is not None:
            raise box["error"]
        return box["result"]

    def video_features(
        self,
        videos: Sequence[bytes],
        texts: Sequence[str | bytes] | None = None,
        *,
        label_bank: str | None = None,
        transcribe: bool = False,
        deadline_s: float | None = None,
    ) -> list[VideoFeatures]:
        """Features of each video (container bytes) with its text (title, caption, ...; may be empty).

        Labels are scored against `label_bank`'s current version (None: the `default` bank); the
        result names the version (`label_bank_version`) and its labels. `transcribe=True` also
        transcribes the audio track (`asr_text`, `asr_language`) and lets the speech move the
        embedding, labels and semantic IDs: the upload path's call (`video_features_full`), seconds
        per clip on a CPU server, so give it a `deadline_s` to match; only on servers exported with ASR.
        """
        model, outputs = p.video_ensemble(transcribe)
        inputs = p.video_request(videos, texts, label_bank)
        return p.parse_video(self._infer(model, inputs, outputs, deadline_s))

    def text_features(
        self, texts: Sequence[str | bytes], *, label_bank: str | None = None, deadline_s: float | None = None
    ) -> list[TextFeatures]:
        """Texts alone (comments, captions): an embedding in the videos' space and label scores."""
        inputs = p.text_request(texts, label_bank)
        return p.parse_text(self._infer(c.TEXT_FEATURES, inputs, p.TEXT_OUTPUTS, deadline_s))

    def embed(
        self, videos: Sequence[bytes], texts: Sequence[str | bytes] | None = None, *, deadline_s: float | None = None
    ) -> np.ndarray:
        """Only the item embeddings `[N, E]`: the cheapest call on the wire."""
        result = self._infer(c.VIDEO_FEATURES, p.video_request(videos, texts), [c.EMBEDDING], deadline_s)
        return p.parse_embedding(result)

    def video_features_batched(
        self,
        videos: Sequence[bytes],
        texts: Sequence[str | bytes] | None = None,
        *,
        label_bank: str | None = None,
        transcribe: bool = False,
        concurrency: int = 4,
        deadline_s: float | None = None,
    ) -> list[VideoFeatures]:
        """Any number of videos: split at the server's max batch size, sent concurrently, order kept.

        Parts may meet different versions of the bank while it is republished: each result names its own.
        """
        texts = p.paired_texts(videos, texts)
        parts = p.chunks(len(videos), self.max_batch_size(c.VIDEO_FEATURES))

        def part(s: slice) -> list[VideoFeatures]:
            return self.video_features(
                videos[s], texts[s], label_bank=label_bank, transcribe=transcribe, deadline_s=deadline_s
            )

        with ThreadPoolExecutor(max(1, min(concurrency, len(parts)))) as pool:
            return [f for result in pool.map(part, parts) for f in result]

    def text_features_batched(
        self,
        texts: Sequence[str | bytes],
        *,
        label_bank: str | None = None,
        concurrency: int = 4,
        deadline_s: float | None = None,
    ) -> list[TextFeatures]:
        """Comments at volume: split at the server's max batch size, sent concurrently, order kept."""
        p.require_items(texts, c.TEXT.name)
        parts = p.chunks(len(texts), self.max_batch_size(c.TEXT_FEATURES))

        def part(s: slice) -> list[TextFeatures]:
            return self.text_features(texts[s], label_bank=label_bank, deadline_s=deadline_s)

        with ThreadPoolExecutor(max(1, min(concurrency, len(parts)))) as pool:
            return [f for result in pool.map(part, parts) for f in result]
