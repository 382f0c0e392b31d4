"""Calls begun before tritonserver is up: config reads and feature calls retry until it is ready.

The server is started only once every call has logged a retry (a condition, not a sleep), so
each call meets the "starting server" case its docstring promises to retry; one server start
serves the sync and the async clients. The "nothing listening at all" case is a unit test
(`test_client_units.py`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from reelserve.client import AsyncVideoFeaturesClient, RetryPolicy, VideoFeaturesClient
from reelserve.config import DEFAULT
from reelserve.samples import SampleVideo
from reelserve.triton.ports import on_free_ports
from reelserve.triton.server import TritonServer

pytestmark = pytest.mark.integration

# Retry through a whole server start: attempts every <= 0.5 s, bounded by a deadline long enough
# for tritonserver to load the models on a busy 2-core machine.
PATIENT = RetryPolicy(max_attempts=10_000, initial_backoff_s=0.05, max_backoff_s=0.5)
DEADLINE_S = 240.0
CALLS = ("embedding_space", "max_batch_size", "video_features_batched")


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # reported by the test, not lost in the thread
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_calls_begun_before_the_server_is_up_get_the_answers(model_repository, retry_log) -> None:
    cfg = on_free_ports(DEFAULT.server, model_repository)
    server = TritonServer(cfg)  # not started yet: nothing listens on its ports
    url = server.grpc_url
    video = SampleVideo("cat", "my cat", "chelsea", "zoom", "h264").render(seconds=1.0)
    videos, titles = [video] * 3, ["my cat"] * 3

    def client() -> VideoFeaturesClient:
        return VideoFeaturesClient(url, retry=PATIENT, deadline_s=DEADLINE_S, registry=CollectorRegistry())

    def sync_call(name: str) -> Callable[[], object]:
        def call() -> object:
            with client() as cl:
                if name == "video_features_batched":
                    return cl.video_features_batched(videos, titles)
                return getattr(cl, name)()

        return call

    async def async_calls() -> list[object]:
        clients = [
            AsyncVideoFeaturesClient(url, retry=PATIENT, deadline_s=DEADLINE_S, registry=CollectorRegistry())
            for _ in CALLS
        ]
        try:
            return await asyncio.gather(
                clients[0].embedding_space(),
                clients[1].max_batch_size(),
                clients[2].video_features_batched(videos, titles),
            )
        finally:
            for cl in clients:
                await cl.close()

    started = [in_thread(sync_call(name)) for name in CALLS]
    started.append(in_thread(lambda: asyncio.run(async_calls())))
    try:
        # every one of the 6 calls has met "nothing listening" and is retrying: now start the server
        assert retry_log.wait_for_callers(len(CALLS) * 2, timeout_s=60), f"only {len(retry_log.callers)} calls retried"
        server.start(wait=False)
        for thread, _ in started:
            while thread.is_alive() and server.is_running():  # a server that died fails the test now
                thread.join(0.5)
        assert server.is_running(), f"tritonserver exited ({server.returncode}):\n{server.log_tail()}"
        errors = [box["error"] for _, box in started if "error" in box]
        assert not errors, errors
        space, max_batch, features, (aspace, amax_batch, afeatures) = (box["value"] for _, box in started)

        with client() as reference:  # the same answers from a client that never saw the server down
            want_space, want_max = reference.embedding_space(), reference.max_batch_size()
            want = reference.video_features(videos[:1], titles[:1])[0]
    finally:
        server.stop()
    assert space == aspace == want_space and want_space
    assert max_batch == amax_batch == want_max >= 1
    for got in (features, afeatures):
        assert len(got) == len(videos)
        for f in got:
            np.testing.assert_allclose(f.embedding, want.embedding, atol=1e-5)
            assert f.label_scores.keys() == want.label_scores.keys() and f.semantic_ids == want.semantic_ids
