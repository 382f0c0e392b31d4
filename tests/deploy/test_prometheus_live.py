"""A real Prometheus on loopback scrapes a real tritonserver and the client's metrics; the SLO rules produce series."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from reelserve.client import InvalidArgumentError, VideoFeaturesClient
from reelserve.config import REPO_ROOT
from reelserve.samples import SampleVideo, malformed_videos
from reelserve.triton.ports import free_port

pytestmark = pytest.mark.integration


def query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture
def prometheus(tmp_path: Path, tritonserver):
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: `.ci/run` installs Debian's `prometheus` package"
    registry = CollectorRegistry()
    client_port = free_port()
    start_http_server(client_port, addr="127.0.0.1", registry=registry)
    triton_metrics = tritonserver.metrics_url.removeprefix("http://").split("/")[0]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{REPO_ROOT / 'deploy/prometheus/slo_rules.yml'}']\n"
        "scrape_configs:\n"
        f"  - {{job_name: tritonserver, static_configs: [{{targets: ['{triton_metrics}']}}]}}\n"
        f"  - {{job_name: reelserve-client, static_configs: [{{targets: ['127.0.0.1:{client_port}']}}]}}\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "prometheus not ready after 30 s"
            time.sleep(0.2)
        yield base, registry
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def wait_for(base: str, promql: str, timeout_s: float = 40) -> list[dict]:
    """The query's series once every value is a number (a rate over a window with one sample is NaN)."""
    end = time.monotonic() + timeout_s
    result: list[dict] = []
    while time.monotonic() < end:
        result = query(base, promql)
        if result and all(math.isfinite(float(r["value"][1])) for r in result):
            return result
        time.sleep(0.5)
    raise AssertionError(f"no finite series for {promql} after {timeout_s:g}s: {result}")


def finite(base: str, promql: str) -> list[dict]:
    result = query(base, promql)
    return result if result and all(math.isfinite(float(r["value"][1])) for r in result) else []


def test_slo_rules_produce_series_from_real_scrapes(prometheus, tritonserver) -> None:
    base, registry = prometheus
    cat = SampleVideo("cat", "my cat", "chelsea")
    availability_q = 'reelserve:availability_errors:ratio_rate5m{model="video_features"}'
    slow_q = 'reelserve:latency_slow:ratio_rate5m{model="video_features"}'
    with VideoFeaturesClient(tritonserver.grpc_url, registry=registry) as client:
        # Both targets scraped before the traffic: a rate needs two scrapes that saw it, and
        # Prometheus's first scrape of a new target can come seconds after it is ready.
        wait_for(base, 'sum(up{job=~"tritonserver|reelserve-client"}) == 2')
        # One good and one refused call per second until the SLIs have data (at least 6 rounds).
        for round_ in range(40):  # a new upload each round: a repeat would be answered from the response cache
            client.video_features([cat.render(seconds=0.5, seed=round_)], [f"my cat, day {round_}"])
            with pytest.raises(InvalidArgumentError):
                client.video_features([malformed_videos()["random_bytes"]], ["bad"])
            if round_ >= 5 and finite(base, availability_q) and finite(base, slow_q):
                break
            time.sleep(1.0)

        availability = wait_for(base, availability_q)
        assert float(availability[0]["value"][1]) == 0.0, availability  # refusals of bad input are free
        slow = wait_for(base, slow_q)
        # half the calls were refused (not "ok within 250 ms"), so at least that share is counted
        assert 0.4 <= float(slow[0]["value"][1]) <= 1.0, slow
        steps = {r["metric"]["model"] for r in wait_for(base, "reelserve:step_request_p99:us > 0")}  # NaN: idle step
        assert {"video_features", "preprocess", "fusion_heads"} <= steps, steps
        # Triton 2.51 keeps no request-time summary for a model with the response cache on
        # (docs/metrics.md); their queue and compute summaries are there
        computing = {r["metric"]["model"] for r in wait_for(base, "reelserve:step_compute_p99:us > 0")}
        assert {"preprocess", "vision_encoder", "ocr", "text_encoder", "fusion_heads"} <= computing, computing
        up = {r["metric"]["job"]: r["value"][1] for r in query(base, "up")}
        assert up == {"tritonserver": "1", "reelserve-client": "1"}, up
