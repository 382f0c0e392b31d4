"""The load-test report tells an overload at a glance: goodput and errors beside latency, failed runs marked."""

from __future__ import annotations

from pathlib import Path

from reelserve.loadtests import report, stats
from reelserve.loadtests.runner import RunResult, Sample


def _run(rate: float, ok: int, failed: int) -> RunResult:
    samples = [Sample("video_short", "video_features", i * 0.1, i * 0.1, i * 0.1 + 0.2, "OK") for i in range(ok)]
    samples += [
        Sample("video_short", "video_features", i * 0.1, i * 0.1, i * 0.1 + 2.0, "DEADLINE_EXCEEDED")
        for i in range(failed)
    ]
    return RunResult("open", "reelserve", rate, None, "poisson", 10.0, 12.0, samples)


def test_goodput_is_ok_answers_per_second_of_sending() -> None:
    row = stats.summarize(_run(8.0, ok=30, failed=50), slo_ms=250.0)
    assert row["goodput_rps"] == 3.0


def test_runs_where_most_requests_failed_are_marked(tmp_path: Path) -> None:
    runs = [_run(4.0, ok=38, failed=2), _run(8.0, ok=2, failed=78)]
    rows = [stats.summarize(r, slo_ms=250.0) for r in runs]
    assert [report.mostly_failed(r) for r in rows] == [False, True]
    lines = report.summary_lines(rows)
    assert "MOSTLY FAILED" not in lines[1] and "MOSTLY FAILED" in lines[2]
    png = report.plot(rows, runs, tmp_path / "report.png", slo_ms=250.0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
