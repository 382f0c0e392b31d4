"""The front door's gRPC health service and its refusal of a bad priority header, on a real relay listener."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from reelserve.frontdoor.health import CHECK, NOT_SERVING, SERVING, WATCH, service_name
from reelserve.frontdoor.metrics import FrontDoorMetrics
from reelserve.frontdoor.relay import Relay, ReplicaState
from reelserve.spec import contract as c
from reelserve.triton.ports import free_port


@pytest.mark.parametrize(
    ("request_bytes", "name"),
    [(b"", ""), (b"\n\x00", ""), (b"\n\x03abc", "abc"), (b"\x10\x05\n\x01x", "x")],  # an unknown varint field skipped
)
def test_service_name(request_bytes, name):
    assert service_name(request_bytes) == name


@pytest.mark.parametrize("bad", [b"\n\x05ab", b"\x80", b"\x0d\x00\x00\x00\x00"])
def test_service_name_refuses_what_is_not_a_request(bad):
    with pytest.raises(ValueError):
        service_name(bad)


def _status(response: bytes) -> int:
    assert response[0] == 0x08
    return response[1]


async def _with_relay(body) -> None:
    replicas = [ReplicaState(f"replica{k}", f"127.0.0.1:{free_port()}") for k in (1, 2)]  # nothing listens there
    relay = Relay(replicas, FrontDoorMetrics(), wait_for_replica_s=0.5)
    port = free_port()
    await relay.start([port, free_port()])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await body(relay, channel)
    finally:
        await relay.stop(grace_s=1.0)


def test_check_is_serving_while_any_replica_serves():
    async def body(relay: Relay, channel: grpc.aio.Channel) -> None:
        check = channel.unary_unary(CHECK)
        assert _status(await check(b"", timeout=5)) == NOT_SERVING
        relay.replicas[1].serving = True
        assert _status(await check(b"", timeout=5)) == SERVING
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await check(b"\n\x05other", timeout=5)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND

    asyncio.run(_with_relay(body))


def test_watch_sends_each_change_and_ends_when_the_relay_stops():
    async def body(relay: Relay, channel: grpc.aio.Channel) -> None:
        stream = channel.unary_stream(WATCH)(b"", timeout=10)
        updates = stream.__aiter__()
        assert _status(await updates.__anext__()) == NOT_SERVING
        relay.replicas[0].serving = True
        assert _status(await updates.__anext__()) == SERVING
        relay.replicas[0].serving = False
        assert _status(await updates.__anext__()) == NOT_SERVING
        relay.closing = True  # as stop() sets it: the stream ends by itself, not at the grace
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(updates.__anext__(), 2)
        assert await stream.code() == grpc.StatusCode.OK

    asyncio.run(_with_relay(body))


def test_an_unknown_priority_is_refused_naming_the_header():
    async def body(relay: Relay, channel: grpc.aio.Channel) -> None:
        relay.replicas[0].serving = True
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await infer(b"", metadata=((c.PRIORITY_HEADER, "urgent"),), timeout=5)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert c.PRIORITY_HEADER in e.value.details() and "urgent" in e.value.details()

    asyncio.run(_with_relay(body))
