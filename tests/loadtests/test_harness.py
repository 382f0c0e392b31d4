"""The load-test harness: its arithmetic, its honesty under a stalled server, and a real run whose
numbers must agree with tritonserver's own counters."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from reelserve.loadtests import harness, runner, stats, triton_metrics
from reelserve.loadtests.workload import RequestMix, WorkItem, parse_mix, single_item_mix
from reelserve.spec import contract as c

ITEM = WorkItem("text", c.TEXT_FEATURES, texts=("hello",))


class SerialTarget:
    """A stand-in server that handles one call at a time, `service_s` each (a saturated single worker)."""

    name = "serial"

    def __init__(self, service_s: float, status: str = "OK") -> None:
        self.service_s, self.status = service_s, status
        self.lock = asyncio.Lock()

    async def send(self, item: WorkItem) -> str:
        async with self.lock:
            await asyncio.sleep(self.service_s)
        return self.status

    async def close(self) -> None:
        pass


def test_constant_arrivals_are_evenly_spaced_and_capped() -> None:
    t = runner.arrival_times(10.0, 2.0, 1000, "constant")
    assert len(t) == 20 and np.allclose(np.diff(t), 0.1)
    assert len(runner.arrival_times(10.0, 2.0, 7, "constant")) == 7


def test_poisson_arrivals_have_the_offered_rate() -> None:
    t = runner.arrival_times(50.0, 200.0, 10**6, "poisson", seed=1)
    assert t.min() >= 0 and t.max() < 200.0 and np.all(np.diff(t) > 0)
    assert abs(len(t) / 200.0 - 50.0) < 2.0  # 10,000 expected arrivals: sd ~0.5 rps
    gaps = np.diff(t)
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05  # exponential gaps: coefficient of variation 1


@pytest.mark.parametrize("rate, process", [(0.0, "poisson"), (-1.0, "constant"), (5.0, "bursty")])
def test_arrivals_refuse_nonsense(rate: float, process: str) -> None:
    with pytest.raises(ValueError):
        runner.arrival_times(rate, 1.0, 10, process)


def test_open_loop_counts_queueing_from_the_intended_send_time() -> None:
    """Offered 40 rps to a 20 rps server: the backlog must show up as latency (no coordinated omission)."""
    target = SerialTarget(0.05)
    run = asyncio.run(
        runner.open_loop(target, single_item_mix(ITEM), rate=40.0, duration_s=1.0, max_requests=100, process="constant")
    )
    row = stats.summarize(run, slo_ms=100.0)
    assert row["sent"] == len(runner.arrival_times(40.0, 1.0, 100, "constant")) == 40 and row["ok"] == 40
    # request k is due at k * 25 ms and, the server being serial, answered no sooner than
    # (k + 1) * 50 ms: latency >= 50 + 25k ms however fast the machine (a slower one only adds),
    # so the last one waits >= 1025 ms; a closed-loop view of the same server would say 50 ms
    assert row["latency_ms"]["max"] > 950.0
    assert row["latency_ms"]["p50"] > 450.0
    assert row["slo_attainment"] < 0.2  # at most k = 0, 1, 2 can be within 100 ms: 3 / 40
    # The generator kept its schedule instead of waiting for answers: when it sent the last
    # request, the serial server could have answered at most ~20 (one per 50 ms in ~1 s), so a
    # backlog was outstanding; a generator gated on answers would have at most one out.
    last_send = max(s.sent_s for s in run.samples)
    assert sum(s.done_s > last_send for s in run.samples) >= 10
    # and its own lag is small beside the queueing it measured (an answer-gated one's is not)
    assert row["send_lag_p99_ms"] < row["latency_ms"]["p50"] / 4


def test_closed_loop_latency_is_service_time() -> None:
    """One worker, 20 ms calls: back to back for the whole window, latency = each call's own time."""
    service_s, duration_s = 0.02, 0.5
    run = asyncio.run(
        runner.closed_loop(
            SerialTarget(service_s), single_item_mix(ITEM), concurrency=1, duration_s=duration_s, max_requests=100
        )
    )
    row = stats.summarize(run, slo_ms=100.0)
    samples = run.samples
    # each call takes >= 20 ms and none starts at or after the window's end: at most 26 fit
    assert 1 <= row["sent"] <= duration_s / service_s + 1 and row["ok"] == row["sent"]
    assert all(s.sent_s < duration_s for s in samples)
    # latency counts from the send (no queueing in a closed loop), and calls never overlap
    assert all(s.intended_s == s.sent_s for s in samples)
    assert all(a.done_s <= b.sent_s for a, b in itertools.pairwise(samples))
    assert row["latency_ms"]["p50"] >= 19.0
    # the window ended the run (not max_requests), and one call was in flight nearly all of it:
    # busy time / wall time, independent of how many calls a machine fits in the window
    assert row["sent"] < 100 and run.wall_s >= duration_s
    busy_s = sum(s.done_s - s.sent_s for s in samples)
    assert busy_s / run.wall_s >= 0.9, (busy_s, run.wall_s)
    # throughput is ok / (last answer); with calls >= 20 ms each back to back it cannot pass 50/s
    assert row["throughput_rps"] == pytest.approx(row["ok"] / max(s.done_s for s in samples))
    assert row["throughput_rps"] <= 1 / service_s + 1


def test_requests_that_outlive_the_drain_are_reported_not_dropped() -> None:
    run = asyncio.run(
        runner.open_loop(
            SerialTarget(0.3), single_item_mix(ITEM), rate=20.0, duration_s=0.25, max_requests=100,
            process="constant", drain_timeout_s=0.4,
        )
    )  # fmt: skip
    row = stats.summarize(run, slo_ms=1000.0)
    assert row["sent"] == len(runner.arrival_times(20.0, 0.25, 100, "constant")) == 5
    unfinished = row["statuses"]["UNFINISHED"]
    assert sum(row["statuses"].values()) == 5 and set(row["statuses"]) <= {"OK", "UNFINISHED"}
    assert unfinished == sum(not np.isfinite(s.done_s) for s in run.samples)
    # The drain timeout ended the run before the backlog could finish (5 serial calls need >= 1.5 s),
    # and a serial 0.3 s server answers at most one call per 0.3 s of the run: whatever the
    # machine's speed, the rest are reported UNFINISHED (>= 3 at the usual ~0.6 s wall time).
    assert run.wall_s < 5 * 0.3
    assert unfinished >= 5 - int(run.wall_s / 0.3) >= 1
    assert row["error_rate"] == pytest.approx(unfinished / 5)


def test_errors_count_against_slo_attainment() -> None:
    # max_requests ends this run, never the (generous) window: 10 calls on any machine
    run = asyncio.run(
        runner.closed_loop(
            SerialTarget(0.001, status="INTERNAL"), single_item_mix(ITEM), concurrency=1, duration_s=600.0,
            max_requests=10,
        )
    )  # fmt: skip
    row = stats.summarize(run, slo_ms=1000.0)
    assert row["sent"] == 10 and row["ok"] == 0 and row["statuses"] == {"INTERNAL": 10}
    assert row["slo_attainment"] == 0.0 and row["error_rate"] == 1.0
    assert not stats.meets_slo(row, p99_ms=1000.0)


def test_mix_draws_follow_weights_and_are_reproducible() -> None:
    a, b = WorkItem("a", c.TEXT_FEATURES, texts=("x",)), WorkItem("b", c.TEXT_FEATURES, texts=("y",))
    mix = RequestMix({"a": 3.0, "b": 1.0}, {"a": [a], "b": [b]}, seed=4)
    draws = [mix.draw().kind for _ in range(4000)]
    again = RequestMix({"a": 3.0, "b": 1.0}, {"a": [a], "b": [b]}, seed=4)
    assert draws == [again.draw().kind for _ in range(4000)]
    assert abs(draws.count("a") / 4000 - 0.75) < 0.03


@pytest.mark.parametrize("spec", ["", "video_short", "nope=1", "text=0", "text=abc"])
def test_parse_mix_refuses_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_mix(spec)


def test_parse_triton_counters_and_summaries() -> None:
    text = """# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="video_features",version="1"} 7
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="video_features",reason="BACKEND",version="1"} 2
nv_inference_request_failure{model="video_features",reason="OTHER",version="1"} 1
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="video_features",version="1"} 700000
# TYPE nv_inference_request_summary_us summary
nv_inference_request_summary_us_count{model="video_features",version="1"} 7
nv_inference_request_summary_us{model="video_features",version="1",quantile="0.99"} 150000
"""
    counters, quantiles = triton_metrics.parse(text)
    assert counters["video_features"]["success"] == 7
    assert counters["video_features"]["failure"] == 3
    assert quantiles["video_features"]["request"]["0.99"] == 150000
    before = {"video_features": dict(counters["video_features"], success=2, request_us=200000)}
    rows = triton_metrics.step_breakdown(before, counters, quantiles)
    assert rows["video_features"]["requests_ok"] == 5
    assert rows["video_features"]["mean_request_ms"] == pytest.approx(100.0)
    assert rows["video_features"]["recent_request_p99_ms"] == pytest.approx(150.0)


def test_loadtest_refuses_non_loopback_targets(capsys) -> None:
    assert harness.main(["--url", "192.0.2.1:8001", "--no-progress"]) == 2
    assert "loopback" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["open", "closed"])
def test_loadtest_agrees_with_tritonserver_metrics(tritonserver, tmp_path: Path, mode: str) -> None:
    """A small real run: report files exist, and per ensemble the harness's OK count equals Triton's
    `nv_inference_request_success` delta and its mean latency is within the stated tolerance."""
    out = tmp_path / mode
    argv = [
        "--url", tritonserver.grpc_url, "--metrics-url", tritonserver.metrics_url, "--mode", mode,
        "--rates", "4", "--concurrency", "2", "--duration", "3", "--mix", "video_short=0.6,text=0.4",
        "--warmup", "1", "--out", str(out), "--no-progress",
    ]  # fmt: skip
    assert harness.main(argv) == 0
    doc = json.loads((out / "report.json").read_text())
    (row,) = doc["runs"]
    if mode == "open":  # the seeded schedule fixes how many are sent, however fast the machine
        plan = doc["meta"]["plan"]
        assert row["sent"] == len(runner.arrival_times(4.0, 3.0, plan["max_requests"], "poisson", seed=plan["seed"]))
    else:  # each of the 2 workers sends at least once and keeps sending until the 3 s window ends
        assert row["sent"] >= 2 and row["wall_s"] >= 3.0
    assert row["sent"] > 0 and row["ok"] == row["sent"], row["statuses"]
    assert set(row["server"]) >= {c.VIDEO_FEATURES, c.TEXT_FEATURES, c.PREPROCESS, c.VISION_ENCODER,
                                  c.TEXT_ENCODER, c.FUSION_HEADS}  # fmt: skip
    for model, check in row["consistency"].items():
        assert check["client_ok"] == check["server_ok"] > 0, (model, check)
        assert check["agree"], (model, check)
    # every ensemble request went through preprocess exactly once
    ensembles = sum(row["server"][m]["requests_ok"] for m in (c.VIDEO_FEATURES, c.TEXT_FEATURES))
    assert row["server"][c.PREPROCESS]["requests_ok"] == ensembles == row["ok"]
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "vision_encoder" in page
    assert len(doc["samples"][0]) == row["sent"]
