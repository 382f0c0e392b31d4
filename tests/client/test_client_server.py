"""The SDK against a real tritonserver: sync = async = ensemble, deadlines, retries, recovery, metrics."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from reelserve.client import (
    AsyncVideoFeaturesClient,
    DeadlineExceededError,
    InvalidArgumentError,
    RetryPolicy,
    UnavailableError,
    VideoFeaturesClient,
)
from reelserve.config import DEFAULT
from reelserve.samples import SampleVideo, malformed_videos
from reelserve.spec import contract as c
from reelserve.triton.ports import on_free_ports
from reelserve.triton.server import TritonServer

pytestmark = pytest.mark.integration

CLIPS = [
    SampleVideo("cat", "my cat", "chelsea", "zoom", "h264"),
    SampleVideo("coffee", "Café de la mañana", "coffee", "zoom", "vp9"),
    SampleVideo("rocket", "ロケット", "rocket", "pan", "h264"),
]


# For calls whose duration scales with the machine (a batch of 16 videos on 2 busy cores can take
# well over the default 10 s): a deadline no machine misses. Deadlines are tested on their own below.
SLOW_OK_S = 600.0


@pytest.fixture(scope="module")
def clips() -> list[bytes]:
    return [v.render(seconds=1.0) for v in CLIPS]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_sync_and_async_return_the_same_features(tritonserver, clips) -> None:
    titles = [v.title for v in CLIPS]
    with VideoFeaturesClient(tritonserver.grpc_url, registry=CollectorRegistry(), deadline_s=SLOW_OK_S) as sync:
        want = sync.video_features(clips, titles)
        want_text = sync.text_features(["a kitten", "espresso"])

    async def run():
        async with AsyncVideoFeaturesClient(
            tritonserver.grpc_url, registry=CollectorRegistry(), deadline_s=SLOW_OK_S
        ) as client:
            assert await client.is_ready()
            return await client.video_features(clips, titles), await client.text_features(["a kitten", "espresso"])

    got, got_text = asyncio.run(run())
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g.embedding, w.embedding, atol=1e-6)
        assert g.tags == w.tags and g.semantic_ids == w.semantic_ids and g.label_scores == w.label_scores
    for w, g in zip(want_text, got_text, strict=True):
        np.testing.assert_allclose(g.embedding, w.embedding, atol=1e-6)


def test_embed_is_the_video_features_embedding(client: VideoFeaturesClient, clips) -> None:
    emb = client.embed(clips[:2], ["a", "b"])
    full = client.video_features(clips[:2], ["a", "b"])
    assert emb.shape == (2, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, np.stack([f.embedding for f in full]), atol=1e-6)


def test_batched_calls_split_at_max_batch_size_and_keep_order(tritonserver, clips) -> None:
    registry = CollectorRegistry()
    videos = [clips[i % 3] for i in range(20)]
    with VideoFeaturesClient(tritonserver.grpc_url, registry=registry, deadline_s=SLOW_OK_S) as client:
        assert client.max_batch_size() == 16
        features = client.video_features_batched(videos, [""] * 20, concurrency=2)
        texts = client.text_features_batched([f"comment {i}" for i in range(35)])
    assert len(features) == 20 and len(texts) == 35
    for i, f in enumerate(features):
        np.testing.assert_allclose(f.embedding, features[i % 3].embedding, atol=1e-5)
    calls = "reelserve_client_request_duration_seconds_count"
    assert sample(registry, calls, model=c.VIDEO_FEATURES, outcome="ok") == 2  # 16 + 4
    assert sample(registry, calls, model=c.TEXT_FEATURES, outcome="ok") == 3  # 16 + 16 + 3

    async def run():
        async with AsyncVideoFeaturesClient(
            tritonserver.grpc_url, registry=CollectorRegistry(), deadline_s=SLOW_OK_S
        ) as aclient:
            return await aclient.video_features_batched(videos, concurrency=3)

    for a, s in zip(asyncio.run(run()), features, strict=True):
        np.testing.assert_allclose(a.embedding, s.embedding, atol=1e-6)


def drained(client: VideoFeaturesClient, timeout_s: float = 120.0) -> bool:
    """Wait until every RPC of `client` has its answer (a timed-out call's RPC keeps running)."""
    with client._drained:
        return client._drained.wait_for(lambda: client._pending == 0, timeout=timeout_s)


def test_deadline_shorter_than_the_call_raises_timeout(tritonserver, clips) -> None:
    registry = CollectorRegistry()
    with VideoFeaturesClient(tritonserver.grpc_url, registry=registry) as client:
        client.embedding_space()  # metadata first, so only the inference meets the deadline
        with pytest.raises(DeadlineExceededError, match="deadline"):
            client.video_features(clips * 3, deadline_s=0.005)
        # the call gave up at its deadline, before the answer of 9 videos: its RPC is still out
        # (not waited for, not cancelled)
        assert client._pending == 1

        async def run_async():
            async with AsyncVideoFeaturesClient(tritonserver.grpc_url, registry=CollectorRegistry()) as aclient:
                await aclient.embedding_space()
                with pytest.raises(DeadlineExceededError, match="deadline"):
                    await aclient.video_features(clips * 3, deadline_s=0.005)
                assert len(aclient._pending) == 1 and not any(rpc.done() for rpc in aclient._pending)
            assert not aclient._pending  # close() waited for the late answer instead of cancelling

        asyncio.run(run_async())
        # tritonserver 2.51 segfaults when it answers a gRPC call cancelled mid-flight; the SDK
        # never cancels, so once both late answers came back the server must still be up and serving.
        assert drained(client), "the timed-out call's RPC never came back"
        assert tritonserver.is_running(), f"tritonserver died (exit {tritonserver.returncode})"
        assert len(client.video_features(clips[:1])) == 1
    assert sample(registry, "reelserve_client_errors_total", model=c.VIDEO_FEATURES, status="DEADLINE_EXCEEDED") == 1
    assert sample(registry, "reelserve_client_retries_total", model=c.VIDEO_FEATURES, status="DEADLINE_EXCEEDED") == 0


def test_invalid_argument_is_raised_without_retries(tritonserver) -> None:
    registry = CollectorRegistry()
    with VideoFeaturesClient(tritonserver.grpc_url, registry=registry, retry=RetryPolicy(max_attempts=5)) as client:
        with pytest.raises(InvalidArgumentError, match="input 'video'"):
            client.video_features([malformed_videos()["random_bytes"]], ["t"])
        with pytest.raises(InvalidArgumentError, match="input 'text'"):
            client.text_features([b"\xff\xfe"])
    for model in (c.VIDEO_FEATURES, c.TEXT_FEATURES):
        assert sample(registry, "reelserve_client_errors_total", model=model, status="INVALID_ARGUMENT") == 1
        assert sample(registry, "reelserve_client_retries_total", model=model, status="INVALID_ARGUMENT") == 0
        count = sample(
            registry, "reelserve_client_request_duration_seconds_count", model=model, outcome="invalid_argument"
        )
        assert count == 1
        assert sample(registry, "reelserve_client_in_flight_requests", model=model) == 0


def test_server_stopped_mid_stream_then_restarted(model_repository, clips) -> None:
    """Every call is accounted for; UNAVAILABLE after bounded retries; the same client recovers."""
    cfg = on_free_ports(DEFAULT.server, model_repository)
    registry = CollectorRegistry()
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.05, max_backoff_s=0.2)
    server = TritonServer(cfg).start()
    server.wait_ready(models=[c.VIDEO_FEATURES, c.TEXT_FEATURES])
    outcomes: list[str] = []
    try:
        with VideoFeaturesClient(server.grpc_url, registry=registry, retry=policy, deadline_s=5.0) as client:
            serving = threading.Event()  # set after a few OK calls: the server is stopped mid-stream
            stopper = threading.Thread(target=lambda: serving.wait(120) and server.stop())
            stopper.start()
            # Calls until the stop has finished and 3 in a row were refused; the deadline only keeps
            # a broken server from hanging the test.
            end = time.monotonic() + 120.0
            while stopper.is_alive() or outcomes[-3:] != ["unavailable"] * 3:
                assert time.monotonic() < end, f"still not refused after 120 s: {outcomes[-10:]}"
                try:
                    client.text_features(["a kitten sleeping"])
                    outcomes.append("ok")
                except UnavailableError as e:
                    attempts = re.search(r"(\d+) attempt\(s\)", str(e))
                    assert attempts and server.grpc_url in str(e), e
                    assert 1 <= int(attempts.group(1)) <= policy.max_attempts, "retries must be bounded"
                    outcomes.append("unavailable")
                if outcomes.count("ok") == 3:
                    serving.set()
            stopper.join()
            assert "ok" in outcomes and outcomes[-1] == "unavailable", outcomes
            assert set(outcomes) <= {"ok", "unavailable"}, outcomes  # nothing else, nothing lost
            assert not client.is_ready()

            server = TritonServer(cfg).start()  # same ports, same client object
            server.wait_ready(models=[c.VIDEO_FEATURES, c.TEXT_FEATURES])
            client.wait_until_ready(timeout_s=30)
            (again,) = client.video_features(clips[:1], ["back again"])
            assert abs(float(np.linalg.norm(again.embedding)) - 1) < 1e-5
    finally:
        server.stop()
    calls = len(outcomes)
    ok = sample(registry, "reelserve_client_request_duration_seconds_count", model=c.TEXT_FEATURES, outcome="ok")
    # While stopping, Triton answers UNAVAILABLE, NOT_FOUND (a model already unloaded) or CANCELLED (a
    # call in flight when it shut down): all "not serving now" (UnavailableError), each keeping its
    # own status label in the metrics.
    failed = sum(
        sample(registry, "reelserve_client_errors_total", model=c.TEXT_FEATURES, status=status)
        for status in ("UNAVAILABLE", "NOT_FOUND", "CANCELLED")
    )
    assert ok + failed == calls and failed == outcomes.count("unavailable"), (ok, failed, calls)
    assert sample(registry, "reelserve_client_errors_total", model=c.TEXT_FEATURES, status="OTHER") == 0
    retries = sum(
        sample(registry, "reelserve_client_retries_total", model=c.TEXT_FEATURES, status=status)
        for status in ("UNAVAILABLE", "NOT_FOUND", "CANCELLED")
    )
    assert failed * 0.5 * (policy.max_attempts - 1) <= retries <= failed * (policy.max_attempts - 1) + 2, retries
