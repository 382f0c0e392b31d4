"""Open-loop and closed-loop load, measured without coordinated omission.

Open loop: arrival times are fixed before the run (Poisson or constant at the offered rate) and
each request's latency counts from its *intended* send time, so a stalled server or a lagging
generator shows up as latency instead of silently lowering the load (Tene, "How NOT to measure
latency"). Closed loop: N workers send back to back; its latency is service time, and it is
reported as such. Every request started is accounted for: it ends OK, with a status, or as
UNFINISHED if it outlives the drain timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from .targets import Target
from .workload import RequestMix, WorkItem

UNFINISHED = "UNFINISHED"  # still in flight when the drain timeout ended the run


@dataclass
class Sample:
    kind: str
    model: str
    intended_s: float  # when it should have been sent, seconds from the run's start
    sent_s: float  # when the generator actually sent it
    done_s: float  # when its answer came back (nan if unfinished)
    status: str

    @property
    def latency_s(self) -> float:
        return self.done_s - self.intended_s


@dataclass
class RunResult:
    mode: str  # "open" or "closed"
    target: str
    offered_rps: float | None  # open loop: the arrival rate; closed loop: None
    concurrency: int | None  # closed loop: workers; open loop: None
    arrival: str | None  # "poisson" | "constant" for open loop
    duration_s: float  # the sending window
    wall_s: float  # start to last answer (or drain timeout)
    samples: list[Sample] = field(default_factory=list)


def arrival_times(rate: float, duration_s: float, max_requests: int, process: str, seed: int = 0) -> np.ndarray:
    """Send times in [0, duration) for `rate` requests/s: exponential gaps (Poisson) or even spacing."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0 requests/s, got {rate}")
    if process == "constant":
        times = np.arange(0.0, duration_s, 1.0 / rate)
    elif process == "poisson":
        rng = np.random.default_rng(seed)
        gaps = rng.exponential(1.0 / rate, size=int(rate * duration_s) + 16)
        while gaps.sum() < duration_s:  # rare: too few draws to cover the window
            gaps = np.concatenate([gaps, rng.exponential(1.0 / rate, size=gaps.size)])
        times = np.cumsum(gaps)
        times = times[times < duration_s]
    else:
        raise ValueError(f"arrival process must be 'poisson' or 'constant', got {process!r}")
    return times[:max_requests]


async def _sleep_until(t: float) -> None:
    delay = t - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


def _snapshot(samples: list[Sample]) -> list[Sample]:
    """Copies taken when the run ends: a request still out is reported UNFINISHED, never dropped,
    and cannot change the report if it answers later."""
    return [replace(s) for s in samples]


async def open_loop(
    target: Target,
    mix: RequestMix,
    *,
    rate: float,
    duration_s: float,
    max_requests: int,
    process: str = "poisson",
    drain_timeout_s: float = 30.0,
    seed: int = 0,
    on_done: Callable[[], None] | None = None,
) -> RunResult:
    schedule = arrival_times(rate, duration_s, max_requests, process, seed)
    result = RunResult("open", target.name, rate, None, process, duration_s, 0.0)
    samples: list[Sample] = []
    tasks: set[asyncio.Task] = set()
    start = time.perf_counter()

    async def one(sample: Sample, item: WorkItem) -> None:
        sample.sent_s = time.perf_counter() - start
        status = await target.send(item)
        sample.status, sample.done_s = status, time.perf_counter() - start
        if on_done:
            on_done()

    for t in schedule:
        await _sleep_until(start + t)
        item = mix.draw()
        sample = Sample(item.kind, item.model, float(t), float("nan"), float("nan"), UNFINISHED)
        samples.append(sample)
        tasks.add(asyncio.create_task(one(sample, item)))
    if tasks:
        await asyncio.wait(tasks, timeout=drain_timeout_s)
    result.samples = _snapshot(samples)
    result.wall_s = time.perf_counter() - start
    return result


async def closed_loop(
    target: Target,
    mix: RequestMix,
    *,
    concurrency: int,
    duration_s: float,
    max_requests: int,
    drain_timeout_s: float = 30.0,
    on_done: Callable[[], None] | None = None,
) -> RunResult:
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    result = RunResult("closed", target.name, None, concurrency, None, duration_s, 0.0)
    samples: list[Sample] = []
    start = time.perf_counter()

    async def worker() -> None:
        while time.perf_counter() - start < duration_s and len(samples) < max_requests:
            item = mix.draw()
            now = time.perf_counter() - start
            sample = Sample(item.kind, item.model, now, now, float("nan"), UNFINISHED)
            samples.append(sample)
            status = await target.send(item)
            sample.status, sample.done_s = status, time.perf_counter() - start
            if on_done:
                on_done()

    # Workers are never cancelled: cancelling would cancel an RPC, which tritonserver 2.51 does not survive.
    workers = {asyncio.create_task(worker()) for _ in range(concurrency)}
    await asyncio.wait(workers, timeout=duration_s + drain_timeout_s)
    result.samples = _snapshot(samples)
    result.wall_s = time.perf_counter() - start
    return result
