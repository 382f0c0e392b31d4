"""Faults under load against a real tritonserver kept alive by `Supervisor.run`, the loop `reelserve serve` runs.

Kill a python-backend stub mid-load, then kill tritonserver itself mid-load. Every request sent
is accounted for (a result or an explicit error, none hangs), the same client object works
again once the supervisor has restarted the server, and every model is READY afterwards.
The tests wait for states (load flowing, a restart recorded), never for fixed times.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import tritonclient.grpc as grpcclient

from reelserve.client import ReelserveError, RetryPolicy, VideoFeaturesClient
from reelserve.config import DEFAULT
from reelserve.spec import contract as c
from reelserve.triton.errors import ServerStartError
from reelserve.triton.ports import on_free_ports
from reelserve.triton.server import TritonServer
from reelserve.triton.supervise import Supervisor

pytestmark = pytest.mark.integration
DEADLINE_S = 60.0  # long: a client deadline cancels the RPC, and cancellations crash Triton 2.51
WARM_OK = 20  # OK answers before the fault: load is flowing through every step
AFTER_RESTART = 10  # answers after the restart: load goes on past it


def wait_for(condition, timeout_s: float, what: str) -> None:
    """Poll `condition()` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout_s:.0f} s"
        time.sleep(0.05)


@pytest.fixture
def supervised(model_repository):
    cfg = replace(on_free_ports(DEFAULT.server, model_repository), watchdog_poll_s=0.2)
    server = TritonServer(cfg)
    events: list[str] = []
    supervisor = Supervisor(server, log=events.append)
    stop = threading.Event()
    failure: list[BaseException] = []

    def watch() -> None:
        try:
            supervisor.run(stop)
        except BaseException as e:  # surfaced by the test, not lost in a thread
            failure.append(e)

    thread = threading.Thread(target=watch, daemon=True)
    server.start()
    thread.start()
    yield server, supervisor, events
    stop.set()
    thread.join(30)
    server.stop()
    assert not failure, failure


def _load_until(client: VideoFeaturesClient, done: threading.Event, outcomes: Counter, lock: threading.Lock) -> None:
    while not done.is_set():
        try:
            client.text_features(["a cat asleep on a warm windowsill"], deadline_s=DEADLINE_S)
            outcome = "ok"
        except ReelserveError as e:
            outcome = e.status
        with lock:
            outcomes[outcome] += 1


def _fault_under_load(server: TritonServer, supervisor: Supervisor, fault) -> Counter:
    """Two client threads send for a while; `fault()` strikes mid-load; load goes on past the restart."""
    outcomes: Counter = Counter()
    lock = threading.Lock()
    done = threading.Event()
    retry = RetryPolicy(max_attempts=6, initial_backoff_s=0.1, max_backoff_s=1.0)
    with VideoFeaturesClient(server.grpc_url, retry=retry) as client, ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(_load_until, client, done, outcomes, lock) for _ in range(2)]
        wait_for(lambda: outcomes["ok"] >= WARM_OK, 120, f"{WARM_OK} OK answers before the fault")
        with lock:
            before = sum(outcomes.values())
        fault()
        wait_for(lambda: supervisor.restarts, 120, "the supervisor never restarted the server")
        with lock:
            after_restart = sum(outcomes.values())
        wait_for(lambda: sum(outcomes.values()) >= after_restart + AFTER_RESTART, 120, "answers after the restart")
        done.set()
        for f in futures:
            f.result(timeout=DEADLINE_S * 2)  # no worker hangs
        # the very same client object works after the restart, without being recreated
        (features,) = client.text_features(["still here after the restart"], deadline_s=DEADLINE_S)
        assert len(features.embedding) > 0
    assert before > 0 and outcomes["ok"] > before, outcomes
    print(f"\n{dict(outcomes)}; back in {supervisor.restarts[0].seconds:.1f} s: {supervisor.restarts[0].reason}")
    return outcomes


def _all_ready(server: TritonServer) -> None:
    raw = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        models = [
            c.PREPROCESS,
            c.VISION_ENCODER,
            c.OCR,
            c.TEXT_ENCODER,
            c.FUSION_HEADS,
            c.VIDEO_FEATURES,
            c.TEXT_FEATURES,
        ]
        assert raw.is_server_ready() and all(raw.is_model_ready(m) for m in models)
    finally:
        raw.close()


def test_killed_stub_is_detected_and_the_server_comes_back(supervised) -> None:
    server, supervisor, events = supervised
    stubs = {pid: argv for pid, argv in server.stub_processes().items() if f"/{c.TEXT_ENCODER}/" in argv[1]}
    assert stubs, server.stub_processes()
    outcomes = _fault_under_load(server, supervisor, lambda: os.kill(next(iter(stubs)), signal.SIGKILL))
    assert c.TEXT_ENCODER in supervisor.restarts[0].reason and "stub" in supervisor.restarts[0].reason
    assert set(outcomes) <= {"ok", "INTERNAL", "UNAVAILABLE"}, outcomes  # explicit errors only
    assert not set(server.stub_processes()) & set(stubs)
    _all_ready(server)
    assert any("ready again" in e for e in events), events


def test_killed_tritonserver_is_restarted_and_the_client_recovers(supervised) -> None:
    server, supervisor, _ = supervised
    outcomes = _fault_under_load(server, supervisor, lambda: os.kill(server.pid, signal.SIGKILL))
    assert "tritonserver exited" in supervisor.restarts[0].reason
    assert set(outcomes) <= {"ok", "INTERNAL", "UNAVAILABLE"}, outcomes
    _all_ready(server)


def test_a_crash_loop_ends_supervision_with_the_reason() -> None:
    cfg = replace(DEFAULT.server, max_restarts=0)
    with pytest.raises(ServerStartError, match="crash loop"):
        Supervisor(TritonServer(cfg), log=lambda _: None).restart("tritonserver exited (code -9)")
