"""The capacity ladder: the highest open-loop rate a system answers with p99 within an SLO and no errors.

One sequential run first (latency without queueing, and where the ladder starts), then Poisson
steps up by 1.5x while the SLO holds, down by 2x until it does, and one refinement between the
last pass and the first fail. It stops early when the load generator, not the server, lags.
Beside it, closed-loop throughput at fixed concurrencies (`CLOSED_LOOP`): on a slow moment of a
shared machine no system may meet the SLO at any rate, and these still compare them.
Shared by `make bench` (`bench.py`) and the speech bench (`asr_bench.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import stats
from .harness import Plan, run_plan, warm_up
from .workload import WorkItem, single_item_mix

GENERATOR_LAG_LIMIT_MS = 20.0  # above this the generator missed its schedule: the ladder stops there
CLOSED_LOOP = (1, 4)  # concurrencies whose closed-loop throughput every system reports


@dataclass
class SystemResult:
    name: str
    sequential: dict
    ladder: list[dict]
    capacity: dict | None  # the best passing ladder row
    generator_bound: bool
    runs: list  # the ladder's RunResults (raw samples, for the CDF)
    closed: dict[int, dict]  # concurrency -> closed-loop row (throughput whatever the latency)


async def measure_system(
    target, item: WorkItem, *, slo_ms: float, duration_s: float, sequential_n: int, max_steps: int,
    metrics_url: str | None, progress: bool, closed_loop: tuple[int, ...] = CLOSED_LOOP,
) -> SystemResult:  # fmt: skip
    mix = single_item_mix(item)
    await warm_up(target, mix, per_kind=3)
    seq_plan = Plan("closed", [1], duration_s=600.0, max_requests=sequential_n)
    (sequential,), _ = await run_plan(target, mix, seq_plan, slo_ms=slo_ms, metrics_url=metrics_url, progress=progress)
    closed = {1: sequential}
    levels = [n for n in closed_loop if n > 1]
    if levels:
        plan = Plan("closed", levels, duration_s=duration_s, max_requests=100_000)
        rows, _ = await run_plan(target, mix, plan, slo_ms=slo_ms, metrics_url=metrics_url, progress=progress)
        closed |= dict(zip(levels, rows, strict=True))
    rate = 0.5 * 1000.0 / sequential["latency_ms"]["p50"]  # half of what one-at-a-time would do
    ladder, runs, best, bound, failed_at = [], [], None, False, None
    for step in range(max_steps):
        plan = Plan("open", [round(rate, 2)], duration_s, max_requests=100_000, seed=step, drain_timeout_s=30.0)
        (row,), (run,) = await run_plan(target, mix, plan, slo_ms=slo_ms, metrics_url=metrics_url, progress=progress)
        ladder.append(row)
        runs.append(run)
        if row["send_lag_p99_ms"] > GENERATOR_LAG_LIMIT_MS:
            bound = True
            break
        if stats.meets_slo(row, slo_ms):
            best = row
            if failed_at is not None:
                break
            rate *= 1.5
        elif best is None:
            rate /= 2  # even the first step missed the SLO: walk down until one meets it
        elif failed_at is None:
            failed_at = rate
            rate = math.sqrt(best["offered_rps"] * failed_at)  # one refinement between pass and fail
        else:
            break
    return SystemResult(target.name, sequential, ladder, best, bound, runs, closed)
