"""Client pieces without a server: retry policy, status mapping, request building, metrics registry."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry

from reelserve.client import (
    DeadlineExceededError,
    InvalidArgumentError,
    ResourceExhaustedError,
    RetryPolicy,
    ServerError,
    UnauthenticatedError,
    UnavailableError,
    VideoFeaturesClient,
)
from reelserve.client import _protocol as p
from reelserve.client._errors import STATUS_LABELS, from_status, status_label
from reelserve.client._metrics import metrics_for


def test_backoffs_are_bounded_full_jitter() -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=0.1, max_backoff_s=0.3, multiplier=2)
    delays = list(policy.backoffs(random.Random(1)))
    assert len(delays) == 4
    for k, d in enumerate(delays):
        assert 0 <= d <= min(0.3, 0.1 * 2**k)
    assert delays == list(policy.backoffs(random.Random(1)))
    assert list(RetryPolicy(max_attempts=1).backoffs()) == []
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


@pytest.mark.parametrize(
    "status, cls, retryable",
    [
        ("StatusCode.INVALID_ARGUMENT", InvalidArgumentError, False),
        ("StatusCode.UNAVAILABLE", UnavailableError, True),
        ("StatusCode.NOT_FOUND", UnavailableError, True),
        ("StatusCode.RESOURCE_EXHAUSTED", ResourceExhaustedError, True),
        ("StatusCode.DEADLINE_EXCEEDED", DeadlineExceededError, False),
        ("StatusCode.UNAUTHENTICATED", UnauthenticatedError, False),
        ("StatusCode.INTERNAL", ServerError, False),
        (None, ServerError, False),
        ("gibberish", ServerError, False),
    ],
)
def test_status_mapping(status, cls, retryable) -> None:
    error = from_status(status, "details")
    assert type(error) is cls and error.retryable is retryable and "details" in str(error)
    assert status_label(error.status) in STATUS_LABELS


def test_request_building_names_the_input() -> None:
    with pytest.raises(InvalidArgumentError, match="input 'text'"):
        p.video_request([b"v1", b"v2"], ["only one"])
    with pytest.raises(InvalidArgumentError, match="input 'video'"):
        p.video_request([], [])
    with pytest.raises(InvalidArgumentError, match="input 'text'"):
        p.text_request([])
    with pytest.raises(InvalidArgumentError, match="item 1 is int"):
        p.bytes_input("text", ["ok", 3])
    tensor = p.bytes_input("text", ["café"])
    assert tensor.shape() == [1, 1] and tensor.datatype() == "BYTES"
    assert p.chunks(20, 16) == [slice(0, 16), slice(16, 20)]


def test_metrics_one_family_set_per_registry() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    assert metrics_for(a) is metrics_for(a) and metrics_for(a) is not metrics_for(b)
    VideoFeaturesClient("127.0.0.1:1", registry=a).close()  # constructing does not connect
    VideoFeaturesClient("127.0.0.1:1", registry=a).close()  # a second client on one registry is fine


def test_unreachable_server_is_unavailable_after_bounded_retries() -> None:
    from reelserve.server import free_port

    registry = CollectorRegistry()
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)
    with VideoFeaturesClient(f"127.0.0.1:{free_port()}", registry=registry, retry=policy, deadline_s=3) as client:
        assert not client.is_ready(timeout_s=0.5)
        with pytest.raises(UnavailableError, match="attempt"):
            client.text_features(["x"])
