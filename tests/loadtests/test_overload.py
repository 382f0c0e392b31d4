"""The overload bench's arithmetic: goodput against capacity, and when recovery begins."""

from __future__ import annotations

from reelserve.loadtests import overload
from reelserve.loadtests.runner import RunResult, Sample


def _probe(latencies_ms: list[float | None]) -> RunResult:
    """One probe every 0.5 s; None: an error."""
    samples = [
        Sample("video_short", "video_features", i * 0.5, i * 0.5, i * 0.5 + (ms or 0) / 1000.0,
               "OK" if ms is not None else "UNAVAILABLE")  # fmt: skip
        for i, ms in enumerate(latencies_ms)
    ]
    return RunResult("open", "reelserve", 2.0, None, "constant", 10.0, 10.0, samples)


def test_recovery_starts_at_the_first_window_of_good_probes() -> None:
    probe = _probe([900, None, 300, 200, 200, 200, 200, 600, 200, 200, 200, 200, 200])
    # probes 2..6 are within 350 ms but probe 7 is not: the window must be 5 in a row
    assert overload.recovery_s(probe, 350.0, 0.0) == 1.0
    assert overload.recovery_s(probe, 250.0, 0.0) == 4.0
    assert overload.recovery_s(_probe([900] * 10), 250.0, 0.0) is None


def test_goodput_counts_ok_answers_within_the_deadline() -> None:
    samples = [Sample("video_short", "video_features", 0.0, 0.0, d, "OK") for d in (0.5, 1.5, 2.5)]
    samples.append(Sample("video_short", "video_features", 0.0, 0.0, 2.0, "DEADLINE_EXCEEDED"))
    run = RunResult("open", "reelserve", 2.0, None, "poisson", 2.0, 3.0, samples)
    row = overload.overload_row(run, deadline_s=2.0, capacity_rps=1.0, slo_ms=250.0)
    assert row["goodput_rps"] == 1.0 and row["goodput_of_capacity"] == 1.0 and row["factor"] == 2.0
    assert row["errors"] == {"DEADLINE_EXCEEDED": 1}
