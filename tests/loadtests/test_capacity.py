"""The capacity ladder: a step lasts long enough for a p99, and passes only over enough answers
(a 30 s step at 0.05 rps once held one call, "met" the SLO and gave a 19.65x capacity ratio)."""

from __future__ import annotations

import asyncio

import pytest

from reelserve.loadtests import capacity
from reelserve.loadtests.capacity import MIN_PASS_CALLS, STEP_CALLS, STEP_MAX_S, can_pass, passes, step_seconds
from reelserve.loadtests.workload import WorkItem


def test_a_ladder_step_lasts_long_enough_for_a_p99_within_a_bound():
    assert step_seconds(20.0, 10.0) == 10.0  # 200 calls in the step's own duration
    assert step_seconds(5.0, 10.0) == STEP_CALLS / 5.0  # 20 s: 100 calls, not the 50 whose p99 is their slowest
    assert step_seconds(0.1, 10.0) == step_seconds(0.0, 10.0) == STEP_MAX_S  # a slow system: bounded
    assert step_seconds(0.5, 45.0) == 45.0  # a longer step duration stands


def test_one_fast_call_is_not_a_p99():
    row = {"ok": 1, "latency_ms": {"p99": 100.0}, "error_rate": 0.0}
    assert not passes(row, 250.0)
    assert passes(row | {"ok": MIN_PASS_CALLS}, 250.0)
    assert not passes(row | {"ok": MIN_PASS_CALLS, "latency_ms": {"p99": 300.0}}, 250.0)
    needed = capacity.calls_needed()  # MIN_PASS_CALLS and a margin for Poisson arrivals
    assert MIN_PASS_CALLS + 13 < needed < MIN_PASS_CALLS + 14
    assert can_pass(needed / STEP_MAX_S, 10.0) and not can_pass(0.9 * needed / STEP_MAX_S, 10.0)


class _Sleeper:
    """A target that answers every call after `seconds`, however many are in flight (no queueing)."""

    def __init__(self, seconds: float) -> None:
        self.name, self.seconds = "sleeper", seconds

    async def send(self, item: WorkItem) -> str:
        await asyncio.sleep(self.seconds)
        return "OK"

    async def close(self) -> None:
        pass


def _measure(seconds: float, slo_ms: float, max_steps: int) -> capacity.SystemResult:
    item = WorkItem("video_short", "video_features")
    return asyncio.run(capacity.measure_system(
        _Sleeper(seconds), item, slo_ms=slo_ms, duration_s=0.2, sequential_n=3, max_steps=max_steps,
        metrics_url=None, progress=False, closed_loop=(1,),
    ))  # fmt: skip


@pytest.fixture
def short_steps(monkeypatch):
    """The ladder's bounds scaled down so a test runs it in seconds."""
    monkeypatch.setattr(capacity, "STEP_CALLS", 10)
    monkeypatch.setattr(capacity, "STEP_MAX_S", 0.5)
    monkeypatch.setattr(capacity, "MIN_PASS_CALLS", 3)


def test_walking_down_stops_where_a_step_could_not_pass(short_steps):
    """Every call misses the SLO: the ladder halves its rate until a step could not send enough
    calls to pass, and stops there, with no capacity (before, it ran steps that sent nothing)."""
    result = _measure(0.03, slo_ms=10.0, max_steps=8)
    rates = [row["offered_rps"] for row in result.ladder]
    assert result.capacity is None and 1 <= len(rates) < 8
    assert all(capacity.can_pass(rate, 0.2) for rate in rates)
    assert not capacity.can_pass(rates[-1] / 2, 0.2)


def test_a_system_within_the_slo_has_a_capacity_over_enough_calls(short_steps):
    result = _measure(0.005, slo_ms=1000.0, max_steps=2)
    assert result.capacity is not None and result.capacity["ok"] >= 3
    assert [row["offered_rps"] for row in result.ladder][1] > result.ladder[0]["offered_rps"]  # it climbed


def test_a_slow_system_starts_where_a_step_can_pass(short_steps):
    """Half the sequential rate of a 0.2 s call (2.5 rps) is below the slowest step that can pass
    (16.4 rps here; in make bench an 830 ms speech call started at 0.6 rps and ran no step at all)."""
    assert capacity.lowest_rate(0.2) == 16.4 and capacity.can_pass(16.4, 0.2)
    result = _measure(0.2, slo_ms=1000.0, max_steps=1)
    assert [row["offered_rps"] for row in result.ladder] == [16.4]
    assert result.capacity is not None and result.capacity["ok"] >= 3
