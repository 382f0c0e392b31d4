"""The load-test harness: its arithmetic, its honesty under a stalled server, and a real run whose
numbers must agree with tritonserver's own counters."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from reelserve.spec import contract as c
from reelserve.loadtests import harness, runner, stats, triton_metrics
from reelserve.loadtests.workload import RequestMix, WorkItem, parse_mix, single_item_mix

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
    assert row["sent"] == 40 and row["ok"] == 40
    # request k is due at k * 25 ms and answered at (k + 1) * 50 ms: latency 50 + 25k ms, so the
    # last one waits ~1 s; a closed-loop view of the same server would say 50 ms throughout
    assert row["latency_ms"]["max"] > 950.0
    assert row["latency_ms"]["p50"] > 450.0
    assert row["slo_attainment"] < 0.2
    assert row["send_lag_p99_ms"] < 50.0  # the generator itself kept its schedule


def test_closed_loop_latency_is_service_time() -> None:
    run = asyncio.run(
        runner.closed_loop(SerialTarget(0.02), single_item_mix(ITEM), concurrency=1, duration_s=0.5, max_requests=100)
    )
    row = stats.summarize(run, slo_ms=100.0)
    assert 15 <= row["sent"] <= 26
    assert 19.0 <= row["latency_ms"]["p50"] < 40.0
    assert 30.0 < row["throughput_rps"] <= 51.0


def test_requests_that_outlive_the_drain_are_reported_not_dropped() -> None:
    run = asyncio.run(
        runner.open_loop(
            SerialTarget(0.3), single_item_mix(ITEM), rate=20.0, duration_s=0.25, max_requests=100,
            process="constant", drain_timeout_s=0.4,
        )
    )  # fmt: skip
    row = stats.summarize(run, slo_ms=1000.0)
    assert row["sent"] == 5
    assert row["statuses"]["UNFINISHED"] >= 2 and sum(row["statuses"].values()) == 5
    assert row["error_rate"] == pytest.approx(row["statuses"]["UNFINISHED"] / 5)


def test_errors_count_against_slo_attainment() -> None:
    run = asyncio.run(
        runner.closed_loop(
            SerialTarget(0.001, status="INTERNAL"), single_item_mix(ITEM), concurrency=1, duration_s=1.0,
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
    assert row["sent"] >= 4 and row["ok"] == row["sent"], row["statuses"]
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
