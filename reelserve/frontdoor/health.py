"""gRPC's own health service (`grpc.health.v1.Health`) at the front door, answered from the replicas' state.

Clients that balance per call (the SDK's round robin, a service mesh) ask it whether an address
takes calls: SERVING while at least one replica is, NOT_SERVING while none is (all restarting).
It is answered here rather than relayed: a relayed `Watch` would be a stream into one replica
(its cancel on a client's exit is what the relay exists to keep from Triton), and one replica's
health is not the front door's. `Watch` repeats the status every `resend_s` so that an idle
stream outlives nginx's read timeout. Messages are hand-encoded: one string in, one enum out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc

__all__ = ["CHECK", "WATCH", "NOT_SERVING", "SERVING", "health_handler", "service_name"]

CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"
SERVING, NOT_SERVING = 1, 2  # HealthCheckResponse.ServingStatus
_POLL_S = 0.1


def service_name(request: bytes) -> str:
    """HealthCheckRequest.service (field 1); ValueError if the message is not one."""
    name, i = "", 0
    while i < len(request):
        key, i = _varint(request, i)
        if key & 7 == 2:  # length-delimited
            size, i = _varint(request, i)
            if i + size > len(request):
                raise ValueError("truncated HealthCheckRequest")
            if key >> 3 == 1:
                name = request[i : i + size].decode("utf-8")
            i += size
        elif key & 7 == 0:
            _, i = _varint(request, i)
        else:
            raise ValueError(f"unexpected wire type {key & 7} in HealthCheckRequest")
    return name


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated HealthCheckRequest")
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i


def _response(serving: bool) -> bytes:
    return bytes([0x08, SERVING if serving else NOT_SERVING])


def health_handler(
    method: str, serving: Callable[[], bool], closing: Callable[[], bool], resend_s: float = 60.0
) -> grpc.RpcMethodHandler | None:
    """The handler of `method` if it is the health service's, else None. Only the server-wide
    service ("") is known; another name answers NOT_FOUND, as the gRPC health protocol says.
    `closing()`: the server is stopping, so watches end now rather than hold its stop to the grace."""

    async def check(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await _known(request, context)
        return _response(serving())

    async def watch(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        await _known(request, context)
        loop = asyncio.get_running_loop()
        last, sent_at = serving(), loop.time()
        yield _response(last)
        while not closing():
            await asyncio.sleep(_POLL_S)
            now = serving()
            if now != last or loop.time() - sent_at >= resend_s:
                last, sent_at = now, loop.time()
                yield _response(now)

    if method == CHECK:
        return grpc.unary_unary_rpc_method_handler(check)
    if method == WATCH:
        return grpc.unary_stream_rpc_method_handler(watch)
    return None


async def _known(request: bytes, context: grpc.aio.ServicerContext) -> None:
    try:
        name = service_name(request)
    except (ValueError, UnicodeDecodeError) as e:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request: {e}")
    if name:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {name!r}: only the server's ('') is served")
