"""`AsyncVideoFeaturesClient`: the asyncio twin of `VideoFeaturesClient`, sharing its request/response code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np
import tritonclient.grpc.aio as aiogrpc
from prometheus_client import CollectorRegistry
from tritonclient.utils import InferenceServerException

from reelserve.spec import contract as c

from . import _protocol as p
from ._call import SERVER_GRACE_S, Call, deadline_exceeded, server_timeout_us, with_deadline
from ._client import DEFAULT_DEADLINE_S, ChannelOptions, ClientSettings
from ._errors import from_status
from ._retry import RetryPolicy
from ._types import TextFeatures, VideoFeatures


class AsyncVideoFeaturesClient(ClientSettings):
    """asyncio client: same calls, deadlines, retries and metrics as `VideoFeaturesClient`."""

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
        self._grpc = aiogrpc.InferenceServerClient(self.url, **(channel or ChannelOptions()).client_kwargs(self.url))
        self._pending: set[asyncio.Future] = set()  # RPCs of timed-out calls, still on the server

    async def __aenter__(self) -> AsyncVideoFeaturesClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, drain_timeout_s: float = 60.0) -> None:
        """Close once the RPCs of timed-out calls have finished (closing would cancel them; see _call.py)."""
        if self._pending:
            await asyncio.wait(self._pending, timeout=drain_timeout_s)
        await self._grpc.close()

    async def is_ready(self, timeout_s: float = 2.0) -> bool:
        try:
            if not await self._grpc.is_server_ready(headers=self.headers, client_timeout=timeout_s):
                return False
            for model in c.ALWAYS_SERVED:
                if not await self._grpc.is_model_ready(model, headers=self.headers, client_timeout=timeout_s):
                    return False
            return True
        except (InferenceServerException, ValueError):  # ValueError: the client was closed
            return False

    async def wait_until_ready(self, timeout_s: float = 60.0, poll_s: float = 0.2) -> None:
        end = time.monotonic() + timeout_s
        while not await self.is_ready(timeout_s=min(2.0, timeout_s)):
            if time.monotonic() > end:
                raise from_status("UNAVAILABLE", f"reelserve at {self.url} not ready after {timeout_s:g}s")
            await asyncio.sleep(poll_s)

    async def _config(self, model: str) -> dict:
        if p.check_ensemble(model) not in self._configs:
            call = Call(model, self.url, self.deadline_s, self.retry, metrics=None)
            for timeout in call.attempts():
                await asyncio.sleep(call.next_sleep)
                try:
                    self._configs[model] = await self._grpc.get_model_config(
                        model, headers=self.headers, as_json=True, client_timeout=timeout
                    )
                    break
                except InferenceServerException as e:
                    call.failed(e)
        return self._configs[model]

    async def embedding_space(self, model: str = c.VIDEO_FEATURES) -> str:
        return p.embedding_space_from_config(await self._config(model))

    async def max_batch_size(self, model: str = c.VIDEO_FEATURES) -> int:
        return p.max_batch_size_from_config(await self._config(model))

    async def _infer(self, model: str, inputs: list, outputs: Sequence[c.Tensor], deadline_s: float | None):
        call = Call(model, self.url, self.deadline_s if deadline_s is None else deadline_s, self.retry, self.metrics)
        for timeout in call.attempts():
            await asyncio.sleep(call.next_sleep)
            rpc = asyncio.ensure_future(
                self._grpc.infer(
                    model,
                    inputs,
                    outputs=p.requested(outputs),
                    timeout=server_timeout_us(timeout),  # the server drops it from its queue after this
                    client_timeout=timeout + SERVER_GRACE_S,  # never cancelled by us: see _call.py
                    headers=with_deadline(self.headers, timeout),
                )
            )
            self._pending.add(rpc)
            rpc.add_done_callback(self._settled)
            try:
                return call.done(await asyncio.wait_for(asyncio.shield(rpc), timeout))
            except asyncio.TimeoutError:
                call.failed(deadline_exceeded())
            except InferenceServerException as e:
                call.failed(e)
            except BaseException as e:  # the caller's task was cancelled: counted, then raised as is
                call.abandon(e)
                raise
        raise AssertionError("unreachable")

    def _settled(self, rpc: asyncio.Future) -> None:
        self._pending.discard(rpc)
        if not rpc.cancelled():
            rpc.exception()  # a late answer of a timed-out call is dropped, its error too

    async def video_features(
        self,
        videos: Sequence[bytes],
        texts: Sequence[str | bytes] | None = None,
        *,
        label_bank: str | None = None,
        transcribe: bool = False,
        deadline_s: float | None = None,
    ) -> list[VideoFeatures]:
        model, outputs = p.video_ensemble(transcribe)
        inputs = p.video_request(videos, texts, label_bank)
        return p.parse_video(await self._infer(model, inputs, outputs, deadline_s))

    async def text_features(
        self, texts: Sequence[str | bytes], *, label_bank: str | None = None, deadline_s: float | None = None
    ) -> list[TextFeatures]:
        inputs = p.text_request(texts, label_bank)
        return p.parse_text(await self._infer(c.TEXT_FEATURES, inputs, p.TEXT_OUTPUTS, deadline_s))

    async def embed(
        self, videos: Sequence[bytes], texts: Sequence[str | bytes] | None = None, *, deadline_s: float | None = None
    ) -> np.ndarray:
        result = await self._infer(c.VIDEO_FEATURES, p.video_request(videos, texts), [c.EMBEDDING], deadline_s)
        return p.parse_embedding(result)

    async def video_features_batched(
        self,
        videos: Sequence[bytes],
        texts: Sequence[str | bytes] | None = None,
        *,
        label_bank: str | None = None,
        transcribe: bool = False,
        concurrency: int = 4,
        deadline_s: float | None = None,
    ) -> list[VideoFeatures]:
        texts = p.paired_texts(videos, texts)
        parts = p.chunks(len(videos), await self.max_batch_size(c.VIDEO_FEATURES))
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(s: slice) -> list[VideoFeatures]:
            async with gate:
                return await self.video_features(
                    videos[s], texts[s], label_bank=label_bank, transcribe=transcribe, deadline_s=deadline_s
                )

        return [f for part in await asyncio.gather(*(one(s) for s in parts)) for f in part]

    async def text_features_batched(
        self,
        texts: Sequence[str | bytes],
        *,
        label_bank: str | None = None,
        concurrency: int = 4,
        deadline_s: float | None = None,
    ) -> list[TextFeatures]:
        p.require_items(texts, c.TEXT.name)
        parts = p.chunks(len(texts), await self.max_batch_size(c.TEXT_FEATURES))
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(s: slice) -> list[TextFeatures]:
            async with gate:
                return await self.text_features(texts[s], label_bank=label_bank, deadline_s=deadline_s)

        return [f for part in await asyncio.gather(*(one(s) for s in parts)) for f in part]
