"""The capacity ladder: the highest open-loop rate a system answers with p99 within an SLO and no errors.

One sequential run first (latency without queueing, and where the ladder starts), then Poisson
steps up by 1.5x while the SLO holds, down by 2x until it does, and one refinement between the
last pass and the first fail. A step lasts long enough for a p99 (`step_seconds`), and passes only
with `MIN_PASS_CALLS` answers: a step of one or two calls "met" an SLO once (docs/decisions.md,
"The capacity ladder"). It stops early when the load generator, not the server, lags, and when
walking down reaches rates too slow for a step to expect `MIN_PASS_CALLS` with a margin for Poisson
arrivals (`calls_needed`, `lowest_rate`: where a slow system's ladder starts).
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
# A step's p99 over ~25 calls is its slowest call: one unlucky call decided a capacity ratio. Steps last long
# enough for STEP_CALLS calls, up to STEP_MAX_S (or the step duration, if longer); a pass needs MIN_PASS_CALLS.
STEP_CALLS, STEP_MAX_S, MIN_PASS_CALLS = 100, 30.0, 20


def step_seconds(rate: float, duration_s: float) -> float:
    """How long a ladder step at `rate` runs: `STEP_CALLS` calls' worth, within [duration_s, STEP_MAX_S]."""
    return max(duration_s, min(STEP_CALLS / max(rate, 1e-9), STEP_MAX_S))


def calls_needed() -> float:
    """Calls a step must expect to send for a pass: Poisson arrivals vary by sqrt(n), so a step
    expecting exactly `MIN_PASS_CALLS` falls short half the time (make bench's speech ladder did)."""
    return MIN_PASS_CALLS + 3 * math.sqrt(MIN_PASS_CALLS)


def lowest_rate(duration_s: float) -> float:
    """The slowest rate (rps, rounded up to the 0.01 a plan carries) whose step can pass."""
    return math.ceil(100 * calls_needed() / step_seconds(0.0, duration_s)) / 100  # the slowest step's length


def can_pass(rate: float, duration_s: float) -> bool:
    """Whether a step at `rate` expects enough calls for a pass; below that, walking down stops."""
    return rate * step_seconds(rate, duration_s) >= calls_needed()


def no_capacity_note(duration_s: float) -> str:
    """What "no capacity" means, for a table footnote: the floor below which the ladder stops."""
    return (
        f"no step met the SLO over >= {MIN_PASS_CALLS} answers; walking down stops at {lowest_rate(duration_s):.2f}"
        f" rps, below which a {step_seconds(0.0, duration_s):g} s step may not send that many"
    )


def passes(row: dict, slo_ms: float) -> bool:
    """The SLO met over at least `MIN_PASS_CALLS` answers (one call's latency is not a p99)."""
    return row["ok"] >= MIN_PASS_CALLS and stats.meets_slo(row, slo_ms)


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
    # half of what one-at-a-time would do, but no slower than a step that can pass: a call of
    # 830 ms (speech) would start at 0.6 rps, where no step can, and the ladder would run none
    rate = max(0.5 * 1000.0 / sequential["latency_ms"]["p50"], lowest_rate(duration_s))
    ladder, runs, best, bound, failed_at = [], [], None, False, None
    for step in range(max_steps):
        if not can_pass(rate, duration_s):
            break  # walking down: no step this slow could pass
        step_s = step_seconds(rate, duration_s)
        plan = Plan("open", [round(rate, 2)], step_s, max_requests=100_000, seed=step, drain_timeout_s=30.0)
        (row,), (run,) = await run_plan(target, mix, plan, slo_ms=slo_ms, metrics_url=metrics_url, progress=progress)
        ladder.append(row)
        runs.append(run)
        if row["send_lag_p99_ms"] > GENERATOR_LAG_LIMIT_MS:
            bound = True
            break
        if passes(row, slo_ms):
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
