"""Where the load goes: each target turns a `WorkItem` into one call and answers its status name.

Status names are gRPC's ("OK", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", ...) for every target,
so error tables compare across servers; the HTTP target maps its status codes onto them.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Protocol

from reelserve.client import AsyncVideoFeaturesClient, ReelserveError, RetryPolicy
from reelserve.client._errors import status_label
from reelserve.spec import contract as c

from .workload import WorkItem


class Target(Protocol):
    name: str

    async def send(self, item: WorkItem) -> str: ...

    async def close(self) -> None: ...


class ReelserveTarget:
    """Calls through the SDK a recsys service uses (its own deadline; no retries unless asked)."""

    def __init__(
        self, url: str, *, deadline_s: float, retry: RetryPolicy, api_key: str | None = None, name: str = "reelserve"
    ) -> None:
        from prometheus_client import CollectorRegistry

        self.name = name
        # Its own registry: the harness process's metrics do not mix with an application's.
        self.client = AsyncVideoFeaturesClient(
            url, deadline_s=deadline_s, retry=retry, api_key=api_key, registry=CollectorRegistry()
        )

    async def send(self, item: WorkItem) -> str:
        try:
            if item.model in (c.VIDEO_FEATURES, c.VIDEO_FEATURES_FULL):
                transcribe = item.model == c.VIDEO_FEATURES_FULL
                await self.client.video_features(list(item.videos), list(item.texts), transcribe=transcribe)
            else:
                await self.client.text_features(list(item.texts))
        except ReelserveError as e:
            return status_label(e.status)
        return "OK"

    async def close(self) -> None:
        await self.client.close()


_HTTP_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED",
                429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}  # fmt: skip


class HttpJsonTarget:
    """The naive server's JSON-over-HTTP API (`loadtests/naive_server.py`)."""

    def __init__(self, url: str, *, deadline_s: float, name: str) -> None:
        import aiohttp

        self.name, self.url, self.deadline_s = name, url.rstrip("/"), deadline_s
        # No connection cap: an open-loop generator must not queue on the client side.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def send(self, item: WorkItem) -> str:
        import aiohttp

        if item.model == c.VIDEO_FEATURES:
            path = "/video_features"
            body = {"video": base64.b64encode(item.videos[0]).decode(), "text": item.texts[0]}
        else:
            path, body = "/text_features", {"text": item.texts[0]}
        try:
            timeout = aiohttp.ClientTimeout(total=self.deadline_s)
            async with self._session.post(self.url + path, json=body, timeout=timeout) as response:
                await response.read()
                return "OK" if response.status == 200 else _HTTP_STATUS.get(response.status, "INTERNAL")
        except asyncio.TimeoutError:
            return "DEADLINE_EXCEEDED"
        except aiohttp.ClientError:
            return "UNAVAILABLE"

    async def close(self) -> None:
        await self._session.close()
