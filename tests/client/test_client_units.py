"""Client pieces without a server: retry policy, status mapping, request building, metrics registry."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest
from prometheus_client import CollectorRegistry
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor

from reelserve.client import (
    AsyncVideoFeaturesClient,
    DeadlineExceededError,
    InvalidArgumentError,
    ReelserveError,
    ResourceExhaustedError,
    RetryPolicy,
    ServerError,
    UnauthenticatedError,
    UnavailableError,
    VideoFeaturesClient,
)
from reelserve.client import _protocol as p
from reelserve.client._call import Call
from reelserve.client._errors import STATUS_LABELS, from_status, status_label
from reelserve.client._metrics import metrics_for

FAMILIES = {
    "reelserve_client_request_duration_seconds",
    "reelserve_client_retries_total",
    "reelserve_client_errors_total",
    "reelserve_client_in_flight_requests",
}


@pytest.mark.parametrize(
    "policy",
    [
        RetryPolicy(),
        RetryPolicy(max_attempts=5, initial_backoff_s=0.1, max_backoff_s=0.3, multiplier=2),
        RetryPolicy(max_attempts=8, initial_backoff_s=0.01, max_backoff_s=10.0, multiplier=3),
    ],
)
def test_backoffs_are_bounded_full_jitter(policy: RetryPolicy) -> None:
    delays = list(policy.backoffs(random.Random(7)))
    assert len(delays) == policy.max_attempts - 1
    for k, d in enumerate(delays):
        assert 0 <= d <= min(policy.max_backoff_s, policy.initial_backoff_s * policy.multiplier**k)
    assert delays == list(policy.backoffs(random.Random(7)))  # a seeded rng is deterministic
    assert len(list(policy.backoffs())) == policy.max_attempts - 1  # unseeded: same count


def test_retry_policy_edges() -> None:
    assert list(RetryPolicy(max_attempts=1).backoffs()) == []
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_attempts"):
            RetryPolicy(max_attempts=bad)


@pytest.mark.parametrize(
    "status, cls, retryable",
    [
        ("StatusCode.INVALID_ARGUMENT", InvalidArgumentError, False),
        ("INVALID_ARGUMENT", InvalidArgumentError, False),
        ("StatusCode.UNAVAILABLE", UnavailableError, True),
        ("StatusCode.NOT_FOUND", UnavailableError, True),
        ("StatusCode.CANCELLED", UnavailableError, True),
        ("StatusCode.RESOURCE_EXHAUSTED", ResourceExhaustedError, True),
        ("StatusCode.DEADLINE_EXCEEDED", DeadlineExceededError, False),
        ("StatusCode.UNAUTHENTICATED", UnauthenticatedError, False),
        ("StatusCode.PERMISSION_DENIED", UnauthenticatedError, False),
        ("StatusCode.INTERNAL", ServerError, False),
        ("StatusCode.UNKNOWN", ServerError, False),
        (None, ServerError, False),
        ("garbage", ServerError, False),
    ],
)
def test_status_mapping(status: str | None, cls: type, retryable: bool) -> None:
    error = from_status(status, "details")
    assert type(error) is cls and error.retryable is retryable
    assert error.details == "details" and "details" in str(error)
    assert not error.status.startswith("StatusCode.")
    assert status_label(error.status) in STATUS_LABELS


def test_status_labels_stay_in_the_closed_set() -> None:
    assert status_label("OK") == "OK" and status_label("INTERNAL") == "INTERNAL"
    for odd in ("garbage", "StatusCode.INTERNAL", "", "ok", "x" * 1000):
        assert status_label(odd) == "OTHER"
    assert len(set(STATUS_LABELS)) == len(STATUS_LABELS)


def test_restricted_protocol_is_an_auth_error_not_retried() -> None:
    error = from_status("StatusCode.UNAVAILABLE", "This protocol is restricted, expecting header 'x'")
    assert type(error) is UnauthenticatedError and not error.retryable and "api_key" in error.details


def test_request_building_names_the_input() -> None:
    with pytest.raises(InvalidArgumentError, match="input 'text'"):
        p.video_request([b"v1", b"v2"], ["only one"])
    with pytest.raises(InvalidArgumentError, match="input 'video'"):
        p.video_request([], [])
    with pytest.raises(InvalidArgumentError, match="input 'video'"):
        p.video_request([], None)
    with pytest.raises(InvalidArgumentError, match="input 'text'"):
        p.text_request([])
    video, text = p.video_request([b"v1", b"v2"], None)  # no texts: one empty text per video
    assert (video.name(), text.name()) == ("video", "text") and text.shape() == [2, 1]
    assert list(deserialize_bytes_tensor(text._get_content())) == [b"", b""]


def test_bytes_input_encodes_str_as_utf8_and_refuses_other_types() -> None:
    tensor = p.bytes_input("text", ["café ☕", b"\xff raw", bytearray(b"ba")])
    assert tensor.shape() == [3, 1] and tensor.datatype() == "BYTES"
    assert list(deserialize_bytes_tensor(tensor._get_content())) == ["café ☕".encode(), b"\xff raw", b"ba"]
    with pytest.raises(InvalidArgumentError, match="input 'text': item 1 is int") as info:
        p.bytes_input("text", ["ok", 3])
    assert info.value.status == "INVALID_ARGUMENT" and not info.value.retryable


def test_chunks() -> None:
    assert p.chunks(20, 16) == [slice(0, 16), slice(16, 20)]
    assert p.chunks(16, 16) == [slice(0, 16)]
    assert p.chunks(0, 16) == []
    items = list(range(37))
    assert [x for s in p.chunks(37, 8) for x in items[s]] == items


def test_metrics_one_family_set_per_registry() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    assert metrics_for(a) is metrics_for(a)
    assert metrics_for(a) is not metrics_for(b)
    assert {m.name for m in a.collect()} >= {n.removesuffix("_total") for n in FAMILIES}
    assert {m.name for m in b.collect()} >= {n.removesuffix("_total") for n in FAMILIES}

    metrics_for(a).errors.labels("video_features", "INTERNAL").inc()
    labels = {"model": "video_features", "status": "INTERNAL"}
    assert a.get_sample_value("reelserve_client_errors_total", labels) == 1
    assert b.get_sample_value("reelserve_client_errors_total", labels) is None


def test_two_clients_share_one_registry() -> None:
    registry = CollectorRegistry()
    first = VideoFeaturesClient("127.0.0.1:1", registry=registry)  # constructing does not connect
    second = VideoFeaturesClient("127.0.0.1:1", registry=registry)  # no "Duplicated timeseries" error
    assert first.metrics is second.metrics is metrics_for(registry)
    first.close()
    second.close()


def nothing_listening() -> str:
    """A loopback address with no server: a port the OS just handed out and took back."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)
# The statuses the SDK retries, as README, `_retry.py` and the clients' docstrings name them.
NOT_SERVING = [
    "StatusCode.UNAVAILABLE",
    "StatusCode.NOT_FOUND",
    "StatusCode.CANCELLED",
    "StatusCode.RESOURCE_EXHAUSTED",
]


def test_retried_statuses_are_exactly_the_documented_ones() -> None:
    retried = [f"StatusCode.{name}" for name in STATUS_LABELS if from_status(name, "details").retryable]
    assert sorted(retried) == sorted(NOT_SERVING)


@pytest.mark.parametrize("metrics", ["counted", "uncounted"])
@pytest.mark.parametrize("status", NOT_SERVING)
def test_call_retries_alike_with_or_without_metrics(metrics: str, status: str) -> None:
    """`metrics=None` (metadata reads) once crashed on the first retry with AttributeError."""
    registry = CollectorRegistry()
    sink = metrics_for(registry) if metrics == "counted" else None
    call = Call("video_features", "127.0.0.1:1", 5.0, FAST_RETRY, sink)
    error = InferenceServerException("not now", status=status)
    attempts = call.attempts()
    next(attempts)
    for _ in range(FAST_RETRY.max_attempts - 1):
        call.failed(error)  # retry: returns, sets the sleep
        assert 0 <= call.next_sleep <= FAST_RETRY.max_backoff_s
        next(attempts)
    with pytest.raises(ReelserveError, match=r"3 attempt\(s\)") as info:
        call.failed(error)
    assert info.value.retryable and info.value.status == status.removeprefix("StatusCode.")
    labels = {"model": "video_features", "status": info.value.status}
    retries = registry.get_sample_value("reelserve_client_retries_total", labels)
    errors = registry.get_sample_value("reelserve_client_errors_total", labels)
    in_flight = registry.get_sample_value("reelserve_client_in_flight_requests", {"model": "video_features"})
    if sink is None:  # metadata reads are not feature calls: nothing recorded
        assert (retries, errors, in_flight) == (None, None, None)
    else:
        assert (retries, errors, in_flight) == (FAST_RETRY.max_attempts - 1, 1, 0)


def test_uncounted_call_can_succeed_and_be_abandoned() -> None:
    call = Call("video_features", "127.0.0.1:1", 5.0, FAST_RETRY, None)
    call.failed(InferenceServerException("starting", status="StatusCode.UNAVAILABLE"))
    assert call.done("config") == "config"
    Call("video_features", "127.0.0.1:1", 5.0, FAST_RETRY, None).abandon(KeyboardInterrupt())


METADATA_CALLS = {
    "embedding_space": lambda client: client.embedding_space(),
    "max_batch_size": lambda client: client.max_batch_size(),
    "video_features_batched": lambda client: client.video_features_batched([b"v1", b"v2"], ["a", "b"]),
}


@pytest.mark.parametrize("name", METADATA_CALLS)
def test_metadata_reads_meet_bounded_retries_sync(name: str, retry_log) -> None:
    registry = CollectorRegistry()
    client = VideoFeaturesClient(nothing_listening(), registry=registry, retry=FAST_RETRY, deadline_s=5)
    with client, pytest.raises(UnavailableError, match=r"3 attempt\(s\)") as info:
        METADATA_CALLS[name](client)
    assert info.value.status == "UNAVAILABLE" and "is `reelserve serve` running" in info.value.details
    assert len(retry_log.lines) == FAST_RETRY.max_attempts - 1, retry_log.lines
    # the config read failed before any feature call was sent: no feature call counted
    assert (
        registry.get_sample_value("reelserve_client_errors_total", {"model": "video_features", "status": "UNAVAILABLE"})
        is None
    )


@pytest.mark.parametrize("name", METADATA_CALLS)
def test_metadata_reads_meet_bounded_retries_async(name: str, retry_log) -> None:
    async def run() -> UnavailableError:
        async with AsyncVideoFeaturesClient(nothing_listening(), registry=CollectorRegistry(), retry=FAST_RETRY,
                                            deadline_s=5) as client:  # fmt: skip
            with pytest.raises(UnavailableError, match=r"3 attempt\(s\)") as info:
                await METADATA_CALLS[name](client)
            return info.value

    error = asyncio.run(run())
    assert error.status == "UNAVAILABLE" and "is `reelserve serve` running" in error.details
    assert len(retry_log.lines) == FAST_RETRY.max_attempts - 1, retry_log.lines


def test_unreachable_server_is_unavailable_after_bounded_retries() -> None:
    registry = CollectorRegistry()
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)
    with VideoFeaturesClient(nothing_listening(), registry=registry, retry=policy, deadline_s=3) as client:
        assert not client.is_ready(timeout_s=0.5)
        with pytest.raises(UnavailableError, match=r"3 attempt\(s\)"):
            client.text_features(["x"])
    assert (
        registry.get_sample_value("reelserve_client_retries_total", {"model": "text_features", "status": "UNAVAILABLE"})
        == 2
    )
    assert registry.get_sample_value("reelserve_client_in_flight_requests", {"model": "text_features"}) == 0


def test_a_model_name_the_sdk_cannot_call_is_refused_at_once() -> None:
    """`embedding_space("typo")` would meet Triton's NOT_FOUND, which is retried until the deadline."""
    with VideoFeaturesClient(nothing_listening(), registry=CollectorRegistry(), retry=FAST_RETRY) as client:
        known = r"model must be one of \['video_features', 'text_features', 'video_features_full'\], got 'typo'"
        for read in (client.embedding_space, client.max_batch_size):
            with pytest.raises(ValueError, match=known):
                read("typo")

    async def read_async() -> None:
        async with AsyncVideoFeaturesClient(nothing_listening(), registry=CollectorRegistry(), retry=FAST_RETRY) as aio:
            with pytest.raises(ValueError, match="got 'vidoe_features'"):
                await aio.embedding_space("vidoe_features")

    asyncio.run(read_async())


def test_queue_timeout_is_a_deadline_not_a_retry() -> None:
    """Triton's "Request timeout expired": the call's deadline passed in the server's queue."""
    err = from_status("StatusCode.UNAVAILABLE", "in ensemble 'video_features', Request timeout expired")
    assert isinstance(err, DeadlineExceededError) and not err.retryable
    assert "dropped it from its queue" in err.details


def test_full_queue_is_retried() -> None:
    err = from_status("StatusCode.UNAVAILABLE", "in ensemble 'video_features', Exceeds maximum queue size")
    assert err.retryable


@pytest.mark.parametrize(("remaining_s", "us"), [(2.0, 2_000_000), (0.0015, 1500), (0.0, 1), (-1.0, 1)])
def test_the_remaining_deadline_becomes_the_server_timeout(remaining_s: float, us: int) -> None:
    from reelserve.client._call import server_timeout_us

    assert server_timeout_us(remaining_s) == us


def test_both_clients_send_the_remaining_deadline_as_the_server_timeout(monkeypatch) -> None:
    """Sync and async alike pass Triton's per-request `timeout` with every inference attempt."""
    from reelserve.client._aio import aiogrpc
    from reelserve.client._client import grpcclient

    sent: list[int] = []

    def sync_infer(self, model, inputs, callback, **kwargs):
        sent.append(kwargs["timeout"])
        callback(None, InferenceServerException("Exceeds maximum queue size", status="StatusCode.UNAVAILABLE"))

    async def async_infer(self, model, inputs, **kwargs):
        sent.append(kwargs["timeout"])
        raise InferenceServerException("Exceeds maximum queue size", status="StatusCode.UNAVAILABLE")

    monkeypatch.setattr(grpcclient.InferenceServerClient, "async_infer", sync_infer)
    monkeypatch.setattr(aiogrpc.InferenceServerClient, "infer", async_infer)
    retry = RetryPolicy(max_attempts=2, initial_backoff_s=0.01)
    with VideoFeaturesClient("127.0.0.1:1", deadline_s=5.0, retry=retry) as client, pytest.raises(ReelserveError):
        client.text_features(["hello"])

    async def go() -> None:
        client = AsyncVideoFeaturesClient("127.0.0.1:1", deadline_s=5.0, retry=retry)
        try:
            with pytest.raises(ReelserveError):
                await client.text_features(["hello"])
        finally:
            await client.close()

    asyncio.run(go())
    assert len(sent) == 4
    assert all(4_000_000 < us <= 5_000_000 for us in sent), sent  # each attempt: what is left of 5 s
