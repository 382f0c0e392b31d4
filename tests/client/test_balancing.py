"""The SDK across two real tritonservers on loopback: calls spread over both (sync and async clients),
and one killed mid-load costs no call (each retried on the other within its deadline)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
import urllib.request
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry

from reelserve.client import AsyncVideoFeaturesClient, VideoFeaturesClient
from reelserve.config import DEFAULT
from reelserve.spec import contract as c
from reelserve.triton.ports import on_free_ports
from reelserve.triton.server import TritonServer

pytestmark = pytest.mark.integration

TEXTS = ["a cat on a sofa", "un perro en la playa", "火箭发射"]
DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def two_servers(tritonserver, model_repository):
    """The session's server and one more; the tests below count each one's calls as deltas, and the
    last one kills the second (never the session's, which other tests use)."""
    second = TritonServer(on_free_ports(DEFAULT.server, model_repository))
    try:
        second.start()
        yield [tritonserver, second]
    finally:
        second.stop()


def successes(server: TritonServer) -> int:
    """The server's own count of `text_features` calls answered OK."""
    with urllib.request.urlopen(server.metrics_url, timeout=5) as r:
        text = r.read().decode()
    found = re.search(rf'^nv_inference_request_success{{model="{c.TEXT_FEATURES}",version="1"}} (\S+)$', text, re.M)
    assert found, "no text_features success counter"
    return int(float(found.group(1)))


def calls_since(servers: list[TritonServer], before: list[int], expected: int, settle_s: float = 5.0) -> list[int]:
    """Each server's answered calls since `before`, once they add up to `expected`: Triton counts a
    request after its response is on the wire, so a busy machine's counters trail the client."""
    deadline = time.monotonic() + settle_s
    while True:
        counts = [successes(s) - n for s, n in zip(servers, before, strict=True)]
        if sum(counts) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def test_calls_go_round_robin_over_both_servers(two_servers):
    a, b = two_servers
    before = [successes(s) for s in two_servers]
    with VideoFeaturesClient([a.grpc_url, b.grpc_url], registry=CollectorRegistry()) as sdk:
        assert sdk.url == f"ipv4:{a.grpc_url},{b.grpc_url}"
        for i in range(40):
            sdk.text_features([TEXTS[i % len(TEXTS)]])
    counts = calls_since(two_servers, before, 40)
    assert sum(counts) == 40
    assert min(counts) >= 15, f"calls per server {counts}: not balanced per call"


def test_the_async_client_balances_too(two_servers):
    a, b = two_servers
    before = [successes(s) for s in two_servers]

    async def go() -> None:
        async with AsyncVideoFeaturesClient([a.grpc_url, b.grpc_url], registry=CollectorRegistry()) as sdk:
            # A few calls first: a burst on a fresh channel all goes to the first server connected
            # (round robin picks among the ready ones), which is gRPC's behaviour, not balancing.
            for i in range(4):
                await sdk.text_features([TEXTS[i % 3]])
            await asyncio.gather(*(sdk.text_features([TEXTS[i % 3]]) for i in range(30)))

    asyncio.run(go())
    counts = calls_since(two_servers, before, 34)
    assert sum(counts) == 34 and min(counts) >= 12, counts


def test_a_server_killed_mid_load_costs_no_call(two_servers):
    """Last in this module: it kills the second server."""
    a, b = two_servers
    outcomes: Counter = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def caller(sdk: VideoFeaturesClient) -> None:
        while not stop.is_set():
            try:
                sdk.text_features(TEXTS)
                outcome = "ok"
            except Exception as e:  # every failure counts, whatever its kind
                outcome = type(e).__name__
                with lock:
                    errors.append(repr(e))
            with lock:
                outcomes[outcome] += 1

    def ok() -> int:
        with lock:
            return outcomes["ok"]

    start = [successes(s) for s in two_servers]
    with VideoFeaturesClient([a.grpc_url, b.grpc_url], deadline_s=DEADLINE_S, registry=CollectorRegistry()) as sdk:
        threads = [threading.Thread(target=caller, args=(sdk,)) for _ in range(4)]
        for t in threads:
            t.start()
        _wait(lambda: all(successes(s) - n >= 10 for s, n in zip(two_servers, start, strict=True)), "both answering")
        os.kill(b.pid, signal.SIGKILL)  # mid-load: calls are in flight on it
        at_kill, a_at_kill = ok(), successes(a)
        _wait(lambda: ok() >= at_kill + 40, "calls answered after the kill")
        stop.set()
        for t in threads:
            t.join(DEADLINE_S + 10)
    assert errors == [], errors[:5]
    assert successes(a) - a_at_kill >= 40  # the survivor took them all


def _wait(condition, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout_s:.0f} s"
        time.sleep(0.05)
