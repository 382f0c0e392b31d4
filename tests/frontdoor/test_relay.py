"""Which failed upstream calls the relay sends to another replica, and which answers stand."""

from __future__ import annotations

import grpc
import pytest

from reelserve.frontdoor.relay import ReplicaState, retry_reason


class _Error(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "details", "reason"),
    [
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; connection refused", "replica_unavailable"),
        (grpc.StatusCode.UNAVAILABLE, "Socket closed", "replica_unavailable"),
        (grpc.StatusCode.CANCELLED, "Received RST_STREAM with error code 8", "replica_cancelled"),
        (
            grpc.StatusCode.INTERNAL,
            "Failed to process the request(s) for model 'ocr_0_0', message: Stub process 'ocr_0_0' is not healthy.",
            "stub_died",
        ),
        # Triton's own answers stand: the caller backs off or fixes its request
        (grpc.StatusCode.UNAVAILABLE, "Exceeds maximum queue size", None),
        (grpc.StatusCode.UNAVAILABLE, "Request timeout expired", None),
        (grpc.StatusCode.INVALID_ARGUMENT, "video: not a video container", None),
        (grpc.StatusCode.INTERNAL, "some step failed", None),
        (grpc.StatusCode.UNAVAILABLE, "This protocol is restricted, expecting header 'x-api-key'", None),
    ],
)
def test_retry_reason(code, details, reason):
    assert retry_reason(_Error(code, details)) == reason


def test_a_replica_is_eligible_while_serving_and_not_suspect():
    r = ReplicaState("replica1", "127.0.0.1:1")
    assert not r.eligible(0.0)
    r.serving = True
    assert r.eligible(0.0)
    r.suspect_until = 5.0
    assert not r.eligible(4.9) and r.eligible(5.0)
