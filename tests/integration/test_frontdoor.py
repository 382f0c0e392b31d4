"""Faults through the front door: two real tritonserver replicas, the relay and the real nginx.

(a) a raw tritonclient caller whose calls time out (`client_timeout=0.02`: its gRPC deadline
cancels them) costs the other callers nothing, and no replica crashes; (b) SIGKILL of one
replica's tritonserver, then of one python stub, under load: 0 errors for SDK callers and for raw
callers without retries; (c) overload at 2x capacity with a 2 s deadline: goodput holds (bounded
queue, deadlines dropped in the server) and the server recovers at once. The figures of (c) at
full length are `python -m reelserve.loadtests.overload` (docs/benchmarks.md); here the bounds
are loose, for a slow machine. The tests wait for states, never for fixed times.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import replace

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from prometheus_client import CollectorRegistry
from tritonclient.utils import InferenceServerException

from reelserve.config import DEFAULT
from reelserve.frontdoor.nginx import find_nginx
from reelserve.samples import demo_videos
from reelserve.spec import contract as c
from reelserve.triton.errors import ServerStartError
from reelserve.triton.ports import on_free_ports

pytestmark = pytest.mark.integration

CALLER_TIMEOUT_S = 120.0  # the steady callers' own deadline: long, they must never give up


def _nginx_or_skip() -> None:
    try:
        find_nginx()
    except ServerStartError:
        pytest.skip("nginx is not installed (Debian package `nginx`; .ci/run installs it)")


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout_s:.0f} s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def front_door(model_repository, tmp_path_factory):
    _nginx_or_skip()
    from reelserve.frontdoor.deployment import FrontDoorDeployment, replica_layout

    cfg = replace(on_free_ports(DEFAULT.server, model_repository), watchdog_poll_s=0.2)
    events: list[str] = []
    deployment = FrontDoorDeployment(
        replica_layout(cfg, 2, free_ports=True), log=events.append, run_dir=tmp_path_factory.mktemp("frontdoor")
    )
    with deployment:
        deployment.events = events  # type: ignore[attr-defined]
        yield deployment
    assert not deployment.failures, deployment.failures


@pytest.fixture(scope="module")
def clip() -> bytes:
    return demo_videos()[2].render()


def _inputs(clip: bytes) -> list:
    out = []
    for name, value in ((c.VIDEO.name, clip), (c.TEXT.name, b"latte art in a small coffee shop")):
        t = grpcclient.InferInput(name, [1, 1], "BYTES")
        t.set_data_from_numpy(np.array([[value]], dtype=object))
        out.append(t)
    return out


class RawCallers:
    """Raw tritonclient callers through the front door, no retries: every error they see counts."""

    def __init__(self, url: str, clip: bytes, n: int) -> None:
        self.url, self.clip = url, clip
        self.outcomes: Counter = Counter()
        self.errors: list[str] = []
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(n)]

    def _loop(self) -> None:
        client = grpcclient.InferenceServerClient(self.url)
        try:
            while not self.done.is_set():
                try:
                    result = client.infer(c.VIDEO_FEATURES, _inputs(self.clip), client_timeout=CALLER_TIMEOUT_S)
                    outcome = "ok" if result.as_numpy(c.EMBEDDING.name).shape[-1] > 0 else "empty"
                except InferenceServerException as e:
                    outcome = str(e.status())
                    with self.lock:
                        self.errors.append(f"{e.status()}: {e.message()}")
                with self.lock:
                    self.outcomes[outcome] += 1
        finally:
            client.close()

    def ok(self) -> int:
        with self.lock:
            return self.outcomes["ok"]

    def __enter__(self) -> RawCallers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for t in self.threads:
            t.join(CALLER_TIMEOUT_S + 10)


def _metric(deployment, name: str) -> float:
    total = 0.0
    for family in deployment.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


def test_timed_out_calls_cost_only_their_own_requests(front_door, clip):
    pids = [s.pid for s in front_door.servers]
    abandoned_before = _metric(front_door, "reelserve_frontdoor_abandoned_total")
    # uploads no one sent before: the response cache would answer a repeat of `clip` in ~30 ms
    fresh = iter([demo_videos()[2].render(seed=seed) for seed in range(1, 14)])
    impatient = grpcclient.InferenceServerClient(front_door.grpc_url)
    timed_out = Counter()
    with RawCallers(front_door.grpc_url, clip, n=2) as steady:
        wait_for(lambda: steady.ok() >= 4, 120, "steady callers answered")
        for _ in range(10):
            with pytest.raises(InferenceServerException) as e:
                impatient.infer(c.VIDEO_FEATURES, _inputs(next(fresh)), client_timeout=0.02)
            timed_out[str(e.value.status())] += 1
        ok_at_timeouts = steady.ok()
        wait_for(lambda: steady.ok() >= ok_at_timeouts + 6, 120, "steady callers answered after the timeouts")
    # On an idle front door a call is admitted at once, so these reach Triton and are abandoned
    # there (every video_features call takes longer than 50 ms); under load admission may refuse
    # them before they do.
    for _ in range(3):
        with pytest.raises(InferenceServerException) as e:
            impatient.infer(c.VIDEO_FEATURES, _inputs(next(fresh)), client_timeout=0.05)
        timed_out[str(e.value.status())] += 1
        time.sleep(1.0)  # let it finish in Triton: the next one finds the front door idle again
    impatient.close()
    assert steady.errors == [], steady.errors
    # the impatient caller's own calls fail: past their deadline, or refused while the slots are busy
    assert sum(timed_out.values()) == 13, timed_out
    assert set(timed_out) <= {"StatusCode.DEADLINE_EXCEEDED", "StatusCode.UNAVAILABLE"}, timed_out
    assert [s.pid for s in front_door.servers] == pids, "a replica crashed (its cancelled calls reached Triton)"
    assert all(s.is_running() for s in front_door.servers)
    # the relay finished the abandoned calls, dropped their answers and counted them
    wait_for(
        lambda: _metric(front_door, "reelserve_frontdoor_abandoned_total") >= abandoned_before + 3,
        60,
        "the abandoned calls counted",
    )


def test_streaming_is_refused_plainly(front_door, clip):
    client = grpcclient.InferenceServerClient(front_door.grpc_url)
    errors: list = []
    client.start_stream(callback=lambda result, error: errors.append(error))
    try:
        client.async_stream_infer(c.VIDEO_FEATURES, _inputs(clip))
    except InferenceServerException as e:  # the refusal can close the stream before the request is written
        assert "no longer in valid state" in str(e), e
    wait_for(lambda: errors, 30, "the stream's answer")
    client.stop_stream()
    client.close()
    assert errors[0] is not None and "streaming inference is not served through the front door" in str(errors[0])
    assert all(s.is_running() for s in front_door.servers)


def test_the_metrics_port_carries_every_replicas_triton_metrics(front_door, clip):
    """One scrape target per host (a Kubernetes pod): the replicas listen on loopback only."""
    client = grpcclient.InferenceServerClient(front_door.grpc_url)
    for _ in range(2):
        client.infer(c.VIDEO_FEATURES, _inputs(clip))
    client.close()
    with urllib.request.urlopen(front_door.metrics_url, timeout=10) as response:
        lines = response.read().decode().splitlines()
    for k in (1, 2):
        sample = f'nv_inference_request_success{{replica="replica{k}",model="preprocess"'
        assert any(line.startswith(sample) for line in lines), sample
        assert f'reelserve_replica_up{{replica="replica{k}"}} 1.0' in lines
    assert sum(line == "# TYPE nv_inference_request_success counter" for line in lines) == 1
    assert any(line.startswith("reelserve_frontdoor_admission_wait_seconds_total ") for line in lines)


def test_grpc_health_and_priority_through_nginx(front_door, clip):
    """What a balancing client sees: the front door SERVING, and a backfill call answered like any other."""
    from reelserve.client import VideoFeaturesClient
    from reelserve.frontdoor.health import CHECK, SERVING

    channel = grpc.insecure_channel(front_door.grpc_url)
    assert channel.unary_unary(CHECK)(b"", timeout=10) == bytes([0x08, SERVING])
    channel.close()
    with VideoFeaturesClient(front_door.grpc_url, priority="backfill", registry=CollectorRegistry()) as sdk:
        assert sdk.video_features([clip], ["latte art"])[0].embedding.shape[-1] > 0
    raw = grpcclient.InferenceServerClient(front_door.grpc_url)
    with pytest.raises(InferenceServerException, match=c.PRIORITY_HEADER) as e:
        raw.infer(c.VIDEO_FEATURES, _inputs(clip), headers={c.PRIORITY_HEADER: "urgent"})
    raw.close()
    assert str(e.value.status()) == "StatusCode.INVALID_ARGUMENT"


def test_overload_sheds_and_recovers(front_door):
    from reelserve.client import RetryPolicy
    from reelserve.loadtests import overload, runner, stats
    from reelserve.loadtests.targets import ReelserveTarget
    from reelserve.loadtests.workload import build_mix

    deadline_s = 2.0

    async def go() -> tuple[float, dict, float | None]:
        mix = build_mix({"video_short": 1.0}, seed=0)
        target = ReelserveTarget(front_door.grpc_url, deadline_s=deadline_s, retry=RetryPolicy())
        try:
            closed = await runner.closed_loop(target, mix, concurrency=4, duration_s=10.0, max_requests=10_000)
            capacity = stats.summarize(closed, 1000.0)["throughput_rps"]
            load = runner.open_loop(target, mix, rate=2 * capacity, duration_s=20.0, max_requests=10_000,
                                    drain_timeout_s=deadline_s + 30.0)  # fmt: skip
            probe = overload.probe_after(target, mix, 20.0, 2.0, 15.0)
            run, probe_run = await asyncio.gather(load, probe)
            row = overload.overload_row(run, deadline_s=deadline_s, capacity_rps=capacity, slo_ms=1000.0)
            return capacity, row, overload.recovery_s(probe_run, 1000.0, 0.0)  # 1 s: a slow machine's bound
        finally:
            await target.close()

    capacity, row, recovery = asyncio.run(go())
    assert capacity > 0
    # Without shedding and server-side deadlines this was 0 (docs/benchmarks.md, "Overload"); the
    # bench's goal is 80% at full length; a slow shared machine gets a looser bound here.
    assert row["goodput_of_capacity"] >= 0.5, row
    assert recovery is not None and recovery <= 10.0, (recovery, row)
    assert all(s.is_running() for s in front_door.servers)


def _stub_pid(server, model: str) -> int:
    for pid, argv in server.stub_processes().items():
        if len(argv) > 1 and f"/{model}/" in argv[1]:
            return pid
    raise AssertionError(f"no python stub of {model} in {server}")


@pytest.mark.parametrize("fault", ["tritonserver", "stub"])
def test_a_replica_dies_under_load_and_no_caller_sees_it(front_door, clip, fault):
    from reelserve.client import VideoFeaturesClient

    victim = front_door.servers[0]
    restarts = len(front_door.supervisors[0].restarts)
    sdk_outcomes: Counter = Counter()
    done = threading.Event()

    def sdk_loop() -> None:
        with VideoFeaturesClient(front_door.grpc_url, deadline_s=CALLER_TIMEOUT_S) as client:
            while not done.is_set():
                try:
                    client.video_features([clip], ["latte art in a small coffee shop"])
                    sdk_outcomes["ok"] += 1
                except Exception as e:  # noqa: BLE001 - every failure is the finding
                    sdk_outcomes[type(e).__name__ + ": " + str(e)[:200]] += 1

    sdk = threading.Thread(target=sdk_loop, daemon=True)
    with RawCallers(front_door.grpc_url, clip, n=2) as raw:
        sdk.start()
        wait_for(lambda: raw.ok() >= 4 and sdk_outcomes["ok"] >= 2, 120, "load flowing through both replicas")
        pid = victim.pid if fault == "tritonserver" else _stub_pid(victim, c.OCR)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(front_door.supervisors[0].restarts) > restarts, 240, "the replica restarted")
        ok_after = raw.ok()
        wait_for(lambda: raw.ok() >= ok_after + 6, 120, "answers after the restart")
        done.set()
        sdk.join(CALLER_TIMEOUT_S + 10)
    assert raw.errors == [], raw.errors
    assert set(sdk_outcomes) == {"ok"}, sdk_outcomes
    assert (
        front_door.supervisors[0]
        .restarts[-1]
        .reason.startswith("tritonserver exited" if fault == "tritonserver" else "python-backend stub of ocr died")
    )
    assert all(s.is_running() for s in front_door.servers)
    assert front_door.states[0].serving and front_door.states[1].serving
