"""The relay between nginx and the tritonservers: no cancel reaches Triton, no replica loss reaches a caller.

Two things nginx cannot do for gRPC, measured and read in its source (docs/decisions.md, "Front
door"): it forwards a client's abort to the upstream (the grpc module hard-codes
`ignore_client_abort = 0`), and a cancelled ensemble call kills tritonserver 2.51 (SIGSEGV); and it
never retries a gRPC request once it has sent it (`request_body_no_buffering = 1`, so
`grpc_next_upstream` only covers connecting). The relay does both, per RPC, as raw bytes:

* a caller that leaves (deadline, cancel, killed process) is not passed on: the call to Triton
  runs to its end and its answer is dropped (counted as abandoned);
* a call whose replica died under it (connection lost, server shutting down, a python stub gone)
  is sent again to another ready replica, which is safe because feature extraction is a pure
  function of the request. Triton's own answers (errors included) pass through unchanged.

Each replica has its own relay listener (nginx balances across them); a call goes to the ready
replica with the fewest calls in flight, the listener's own on a tie. Admission
(`admission.Admission`) bounds the calls in Triton before any of that. Streaming inference is
refused: a stream a client closes cancels its requests, the crash this layer exists to avoid.
gRPC's health service is answered here, for the front door as a whole (`health`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from reelserve.spec import contract as c
from reelserve.triton.ports import url_host

from .admission import ONLINE, Admission, ServiceTime, Shed
from .health import health_handler
from .metrics import FrontDoorMetrics

__all__ = ["ReplicaState", "Relay", "retry_reason"]

_STREAM_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"
_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
# Triton's own UNAVAILABLE answers: a full queue, a queue timeout, a wrong API key. They are the
# answer (the caller backs off or fixes its key); another replica is not asked.
_TRITON_ANSWERS = (c.TRITON_QUEUE_FULL, c.TRITON_QUEUE_TIMEOUT, c.TRITON_RESTRICTED)
# A python-backend stub that died while holding the request (Triton 2.51 says so in the message).
_STUB_GONE = ("Stub process", "is not healthy")
_SUSPECT_S = 1.0  # a replica that failed a call is skipped this long (the supervisor decides the rest)
_WAIT_POLL_S = 0.05
_MAX_MESSAGE_BYTES = 2**31 - 1  # as the SDK's: Triton and the steps bound the size
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    # reconnect quickly to a replica that restarted (gRPC's default backoff grows to 120 s)
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
# Hop-by-hop and per-call headers that must not be forwarded as metadata.
_DROPPED_METADATA = frozenset({"grpc-timeout", "grpc-accept-encoding", "grpc-encoding", "user-agent", "te",
                               "content-type", "grpc-message-type", "x-forwarded-for"})  # fmt: skip


@dataclass
class ReplicaState:
    """One tritonserver as the relay sees it; `serving` is set by its supervisor."""

    name: str
    grpc_url: str
    serving: bool = False
    suspect_until: float = 0.0
    in_flight: int = 0
    channel: grpc.aio.Channel | None = field(default=None, repr=False)

    def eligible(self, now: float) -> bool:
        return self.serving and now >= self.suspect_until


def retry_reason(error: grpc.aio.AioRpcError) -> str | None:
    """Why a failed upstream call should go to another replica, or None: the answer stands."""
    code, details = error.code(), error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE and not any(answer in details for answer in _TRITON_ANSWERS):
        return "replica_unavailable"  # connection refused or lost: the replica died or is restarting
    if code == grpc.StatusCode.CANCELLED:
        return "replica_cancelled"  # the replica shut down with the call in flight (the relay never cancels)
    if code == grpc.StatusCode.INTERNAL and all(s in details for s in _STUB_GONE):
        return "stub_died"
    return None


class Relay:
    """Relays every unary RPC of Triton's gRPC API to the replicas; one listener per replica."""

    def __init__(
        self,
        replicas: Sequence[ReplicaState],
        metrics: FrontDoorMetrics,
        *,
        host: str = "127.0.0.1",
        in_flight_per_replica: int = 2,
        reserved_online: int = 1,
        wait_for_replica_s: float = 120.0,
    ) -> None:
        """`in_flight_per_replica`, `reserved_online`: admission (`admission.Admission`), from `ServerConfig`."""
        self.replicas = list(replicas)
        self.metrics = metrics
        self.host = host
        self.wait_for_replica_s = wait_for_replica_s  # a caller without a deadline waits at most this

        def slots() -> int:
            return in_flight_per_replica * max(1, sum(r.serving for r in self.replicas))

        self.service_time = ServiceTime()
        self.admission = Admission(
            slots, max_waiting=slots, service_s=self.service_time, reserved_online=reserved_online
        )
        self._servers: list[grpc.aio.Server] = []
        self._tasks: set[asyncio.Task] = set()
        self._ticker: asyncio.Task | None = None
        self.closing = False  # stop() began: health watches end

    # -- lifecycle (inside the relay's event loop) -------------------------------------------------

    async def start(self, ports: Sequence[int]) -> None:
        """Listen on `ports[i]` for replica i."""
        if len(ports) != len(self.replicas):
            raise ValueError(f"{len(self.replicas)} replicas but {len(ports)} relay ports")
        for replica in self.replicas:
            replica.channel = grpc.aio.insecure_channel(replica.grpc_url, options=_CHANNEL_OPTIONS)
        for home, port in enumerate(ports):
            server = grpc.aio.server(options=_CHANNEL_OPTIONS)
            server.add_generic_rpc_handlers([_Handler(self, home)])
            address = f"{url_host(self.host)}:{port}"
            if server.add_insecure_port(address) != port:
                raise OSError(f"relay could not listen on {address}")
            await server.start()
            self._servers.append(server)
        self._ticker = asyncio.ensure_future(self._wake_waiters())

    async def _wake_waiters(self) -> None:
        """Slots grow when a replica comes back (its supervisor's thread says so): hand them on."""
        while True:
            await asyncio.sleep(_WAIT_POLL_S)
            self.admission.wake()

    async def stop(self, grace_s: float = 5.0) -> None:
        self.closing = True
        if self._ticker is not None:
            self._ticker.cancel()
        await asyncio.gather(*(s.stop(grace_s) for s in self._servers))
        if self._tasks:  # abandoned calls still running on a replica: let them end, briefly
            await asyncio.wait(self._tasks, timeout=grace_s)
        for replica in self.replicas:
            if replica.channel is not None:
                await replica.channel.close()

    def serving(self) -> bool:
        """At least one replica takes calls (the front door's gRPC health status)."""
        return any(r.serving for r in self.replicas)

    # -- one call ----------------------------------------------------------------------------------

    def _pick(self, home: int, failed: set[int]) -> int | None:
        """The replica to try now: ready ones only; not yet failed first, then fewest calls in flight, then home."""
        now = time.monotonic()
        eligible = [i for i, r in enumerate(self.replicas) if r.eligible(now)]
        if not eligible:
            return None
        return min(eligible, key=lambda i: (i in failed, self.replicas[i].in_flight, i != home))

    async def forward(self, home: int, method: str, request: bytes, metadata: tuple, give_up_at: float) -> bytes:
        """Send to a ready replica, again to another if that one dies; raises the final error."""
        failed: set[int] = set()
        while True:
            index = self._pick(home, failed)
            if index is None:  # none ready (all restarting, or each just failed): wait for one
                if time.monotonic() >= give_up_at:
                    raise _Unavailable("no tritonserver replica is ready; retry later")
                await asyncio.sleep(_WAIT_POLL_S)
                continue
            replica = self.replicas[index]
            call = replica.channel.unary_unary(method)  # raw bytes both ways: no (de)serialisation
            replica.in_flight += 1
            began = time.monotonic()
            try:
                response = await call(request, metadata=metadata, wait_for_ready=False)
                if method == _INFER_METHOD:
                    self.service_time.observe(time.monotonic() - began)
                return response
            except grpc.aio.AioRpcError as e:
                reason = retry_reason(e)
                if reason is None or time.monotonic() >= give_up_at:
                    raise
                failed.add(index)
                replica.suspect_until = time.monotonic() + _SUSPECT_S
                self.metrics.retries.labels(replica.name, reason).inc()
            finally:
                replica.in_flight -= 1

    async def handle(self, home: int, method: str, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        metadata = tuple((k, v) for k, v in context.invocation_metadata() or () if k not in _DROPPED_METADATA)
        remaining = _caller_deadline_s(metadata, context)
        budget = self.wait_for_replica_s if remaining is None else min(remaining, self.wait_for_replica_s)
        give_up_at = time.monotonic() + budget
        inference = method == _INFER_METHOD
        if inference:  # metadata and health calls are never held back
            try:
                priority = _priority(metadata)
            except ValueError as e:
                self.metrics.requests.labels(grpc.StatusCode.INVALID_ARGUMENT.name).inc()
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            waiting_since = time.monotonic()
            try:
                await self.admission.enter(None if remaining is None else time.monotonic() + remaining, priority)
            except Shed as e:
                code = grpc.StatusCode[e.status]
                if code == grpc.StatusCode.UNAVAILABLE:
                    self.metrics.shed.labels("front_door").inc()
                self.metrics.requests.labels(code.name).inc()
                await context.abort(code, f"{e}; retry with backoff" if code == grpc.StatusCode.UNAVAILABLE else str(e))
            except asyncio.CancelledError:
                self.metrics.abandoned.inc()
                raise
            finally:
                self.metrics.admission_wait.inc(time.monotonic() - waiting_since)
        task = asyncio.ensure_future(self.forward(home, method, request, metadata, give_up_at))
        self._tasks.add(task)
        task.add_done_callback(self._settle)
        if inference:
            task.add_done_callback(lambda _task: self.admission.leave())
        try:
            response = await asyncio.shield(task)  # the caller leaving cancels this await, never the call
        except asyncio.CancelledError:
            if inference:
                self.metrics.abandoned.inc()
            raise
        except grpc.aio.AioRpcError as e:
            self._count_answer(method, e.code(), e.details() or "")
            await context.abort(e.code(), e.details() or "")
        except _Unavailable as e:
            self._count_answer(method, grpc.StatusCode.UNAVAILABLE, str(e))
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
        self._count_answer(method, grpc.StatusCode.OK, "")
        return response

    def _settle(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: an abandoned call's error is not "never retrieved"

    def _count_answer(self, method: str, code: grpc.StatusCode, details: str) -> None:
        if method != _INFER_METHOD:
            return
        self.metrics.requests.labels(code.name).inc()
        if c.TRITON_QUEUE_FULL in details:
            self.metrics.shed.labels("triton_queue").inc()
        elif c.TRITON_QUEUE_TIMEOUT in details:
            self.metrics.timed_out.inc()


class _Unavailable(Exception):
    pass


def _caller_deadline_s(metadata: tuple, context: grpc.aio.ServicerContext) -> float | None:
    """Seconds the caller still waits: the SDK's header (its gRPC deadline is padded, see client/_call.py),
    else the gRPC deadline; None when the caller set none."""
    for key, value in metadata:
        if key == c.DEADLINE_HEADER:
            try:
                return max(0.0, int(value) / 1000.0)
            except ValueError:
                break  # not ours to refuse: fall back to the gRPC deadline
    return context.time_remaining()


def _priority(metadata: tuple) -> int:
    """The call's priority (an index into contract.PRIORITIES) from its header; online without one."""
    for key, value in metadata:
        if key == c.PRIORITY_HEADER:
            if value not in c.PRIORITIES:
                raise ValueError(f"header {c.PRIORITY_HEADER}: {value!r} is not one of {list(c.PRIORITIES)}")
            return c.PRIORITIES.index(value)
    return ONLINE


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, relay: Relay, home: int) -> None:
        self.relay, self.home = relay, home

    def service(self, handler_call_details: grpc.HandlerCallDetails):
        method = handler_call_details.method
        health = health_handler(method, self.relay.serving, closing=lambda: self.relay.closing)
        if health is not None:
            return health
        if method == _STREAM_METHOD:
            return grpc.stream_stream_rpc_method_handler(_refuse_stream)

        async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await self.relay.handle(self.home, method, request, context)

        return grpc.unary_unary_rpc_method_handler(unary)


async def _refuse_stream(_requests, context: grpc.aio.ServicerContext):
    await context.abort(
        grpc.StatusCode.UNIMPLEMENTED,
        "streaming inference is not served through the front door (a closed stream cancels its requests, "
        "which crashes tritonserver 2.51 on ensembles); use ModelInfer",
    )
    yield b""  # pragma: no cover - abort raises
