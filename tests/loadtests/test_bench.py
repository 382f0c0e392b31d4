"""`make bench`'s table: ratios first, closed-loop throughput at fixed concurrency beside capacity at
the SLO, so a slow moment of the machine (no system meets the SLO) still gives a comparison."""

from __future__ import annotations

from reelserve.loadtests.bench import FLOOR, NAIVE, table
from reelserve.loadtests.capacity import SystemResult


def _row(rps: float, p50: float = 100.0, p99: float = 200.0) -> dict:
    return {"throughput_rps": rps, "ok": 40, "latency_ms": {"p50": p50, "p99": p99, "mean": p50}, "server": {}}


def _system(name: str, c1: float, c4: float, capacity: float | None) -> SystemResult:
    sequential = _row(c1)
    return SystemResult(
        name, sequential, [], None if capacity is None else _row(capacity), False, [], {1: sequential, 4: _row(c4)}
    )


def test_ratios_come_first_at_each_concurrency_and_at_the_slo():
    lines = table([_system("reelserve", 4.0, 8.0, 7.5), _system(NAIVE, 2.0, 2.0, 2.5)], 250.0, 10.0)
    assert lines[0] == "reelserve / naive throughput: c=1 2.00x, c=4 4.00x; at p99 <= 250 ms 3.00x"
    header = next(line for line in lines if line.startswith("system"))
    assert "c=1 rps" in header and "c=4 rps" in header
    row = next(line for line in lines if line.startswith("reelserve ") and " / " not in line)
    assert "4.00" in row and "8.00" in row and "7.5" in row and row.split()[-1] == "40"  # calls at capacity


def test_a_slow_machine_still_compares_at_fixed_concurrency():
    """No system meets the SLO at any rate: capacity has no ratio, the closed loop does."""
    lines = table([_system("reelserve", 1.5, 3.0, None), _system(NAIVE, 0.5, 0.6, None)], 250.0, 10.0)
    assert lines[0] == "reelserve / naive throughput: c=1 3.00x, c=4 5.00x; at p99 <= 250 ms n/a (a system met no rate)"
    assert any(line.startswith("0.0: no step met the SLO over >= 20 answers") for line in lines)


def test_every_system_is_compared_with_the_naive_one():
    lines = table([_system("reelserve", 4, 8, 7), _system(NAIVE, 2, 2, 2), _system(FLOOR, 40, 80, 70)], 250.0, 10.0)
    assert [line.split(" / ")[0] for line in lines[:2]] == ["reelserve", FLOOR]
