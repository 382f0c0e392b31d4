"""Overload: what callers get when more arrives than the server can do, and how fast it recovers.

Capacity first (closed loop at `--concurrency` workers: the throughput of a saturated server),
then open-loop Poisson at each factor of it (1x, 1.5x, 2x by default) with the SDK's deadline.
Reported per factor: goodput (answers OK within the deadline per second of sending), p99 of the
answered, errors by status, and recovery: a light probe (constant `--probe-rps`) starts the moment
the overload stops sending, and recovery is when the first window of `RECOVERY_WINDOW` probes in a
row answers OK within the recovery bound begins (seconds after the overload ended; None: not
within the probe). The bound is the SLO, or 1.2x the p99 of the same probe on the idle server
before any overload when this machine cannot meet the SLO even idle (it says which). Run:
`python -m reelserve.loadtests.overload --url HOST:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from reelserve.config import DEFAULT

from . import runner, stats
from .harness import warm_up
from .workload import build_mix

RECOVERY_WINDOW = 5  # probes in a row within the recovery bound: recovered
IDLE_MARGIN = 1.2  # the recovery bound when the idle server misses the SLO: its own idle p99 x this


def recovery_s(probe: runner.RunResult, bound_ms: float, started_s: float) -> float | None:
    """Seconds after `started_s` at which the first `RECOVERY_WINDOW` good probes in a row begin."""
    good = [s.status == "OK" and s.latency_s * 1000.0 <= bound_ms for s in probe.samples]
    for i in range(len(good) - RECOVERY_WINDOW + 1):
        if all(good[i : i + RECOVERY_WINDOW]):
            return max(0.0, probe.samples[i].intended_s - started_s)
    return None


def overload_row(run: runner.RunResult, *, deadline_s: float, capacity_rps: float, slo_ms: float) -> dict:
    """Goodput, p99 of the answered and errors of one overload run."""
    ok = np.array([s.latency_s for s in run.samples if s.status == "OK"])
    in_time = int(np.count_nonzero(ok <= deadline_s))
    row = stats.summarize(run, slo_ms)
    return {
        "offered_rps": run.offered_rps,
        "factor": run.offered_rps / capacity_rps,
        "sent": row["sent"],
        "goodput_rps": in_time / run.duration_s,
        "goodput_of_capacity": in_time / run.duration_s / capacity_rps,
        "p99_answered_ms": row["latency_ms"]["p99"],
        "errors": {k: v for k, v in row["statuses"].items() if k != "OK"},
    }


async def probe_after(target, mix, delay_s: float, rps: float, duration_s: float) -> runner.RunResult:
    """A light constant-rate probe starting `delay_s` from now: run beside an overload to time recovery."""
    await asyncio.sleep(delay_s)
    return await runner.open_loop(target, mix, rate=rps, duration_s=duration_s, max_requests=10_000,
                                  process="constant", drain_timeout_s=10.0)  # fmt: skip


async def measure(args: argparse.Namespace) -> dict:
    from reelserve.client import RetryPolicy

    from .targets import ReelserveTarget

    mix = build_mix({"video_short": 1.0}, seed=args.seed)
    target = ReelserveTarget(args.url, deadline_s=args.deadline_s, retry=RetryPolicy())
    try:
        await warm_up(target, mix, 3)
        closed = await runner.closed_loop(target, mix, concurrency=args.concurrency,
                                          duration_s=args.capacity_s, max_requests=100_000)  # fmt: skip
        capacity = stats.summarize(closed, args.slo_ms)["throughput_rps"]
        print(f"capacity (closed loop, {args.concurrency} workers): {capacity:.2f} req/s", file=sys.stderr)
        idle = await probe_after(target, mix, 0.0, args.probe_rps, args.probe_s)
        idle_p99 = stats.summarize(idle, args.slo_ms)["latency_ms"]["p99"]
        bound = max(args.slo_ms, IDLE_MARGIN * idle_p99)
        print(f"idle probe p99 {idle_p99:.0f} ms; recovery bound {bound:.0f} ms", file=sys.stderr)
        rows = []
        for i, factor in enumerate(args.factors):
            rate = factor * capacity
            load = runner.open_loop(target, mix, rate=rate, duration_s=args.duration, max_requests=100_000,
                                    seed=args.seed + i, drain_timeout_s=args.deadline_s + 30.0)  # fmt: skip
            probe = probe_after(target, mix, args.duration, args.probe_rps, args.probe_s)
            run, probe_run = await asyncio.gather(load, probe)
            row = overload_row(run, deadline_s=args.deadline_s, capacity_rps=capacity, slo_ms=args.slo_ms)
            row["recovery_s"] = recovery_s(probe_run, bound, 0.0)
            row["probe_errors"] = dict(Counter(s.status for s in probe_run.samples if s.status != "OK"))
            rows.append(row)
            print(_line(row), file=sys.stderr, flush=True)
            await asyncio.sleep(args.pause_s)
        return {"capacity_rps": capacity, "deadline_s": args.deadline_s, "slo_ms": args.slo_ms,
                "idle_probe_p99_ms": idle_p99, "recovery_bound_ms": bound, "duration_s": args.duration,
                "rows": rows}  # fmt: skip
    finally:
        await target.close()


def _line(row: dict) -> str:
    recovery = "never" if row["recovery_s"] is None else f"{row['recovery_s']:.1f} s"
    errors = ", ".join(f"{k} {v}" for k, v in sorted(row["errors"].items())) or "none"
    return (
        f"{row['factor']:.1f}x ({row['offered_rps']:.2f} req/s): goodput {row['goodput_rps']:.2f} req/s "
        f"({100 * row['goodput_of_capacity']:.0f}% of capacity), p99 answered {row['p99_answered_ms']:.0f} ms, "
        f"errors: {errors}; recovery {recovery}"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reelserve.loadtests.overload", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="the gRPC address under test, HOST:PORT")
    p.add_argument("--factors", type=lambda s: [float(x) for x in s.split(",")], default=[1.0, 1.5, 2.0],
                   help="offered load as multiples of the measured capacity (default 1,1.5,2)")  # fmt: skip
    p.add_argument("--duration", type=float, default=60.0, help="seconds of overload per factor (default %(default)s)")
    p.add_argument("--deadline-s", type=float, default=2.0, help="the SDK's deadline per call (default %(default)s)")
    p.add_argument("--slo-ms", type=float, default=DEFAULT.slo.video_features_p99_ms, help="default %(default)s")
    p.add_argument("--concurrency", type=int, default=4, help="closed-loop workers for capacity (default 4)")
    p.add_argument("--capacity-s", type=float, default=30.0, help="seconds of the capacity run (default 30)")
    p.add_argument("--probe-rps", type=float, default=2.0, help="recovery probe rate (default 2)")
    p.add_argument("--probe-s", type=float, default=20.0, help="recovery probe length (default 20)")
    p.add_argument("--pause-s", type=float, default=10.0, help="quiet seconds between factors (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = asyncio.run(measure(args))
    capacity = result["capacity_rps"]
    print(
        f"capacity {capacity:.2f} req/s; deadline {args.deadline_s:g} s; {args.duration:g} s per factor; "
        f"idle probe p99 {result['idle_probe_p99_ms']:.0f} ms, recovery bound {result['recovery_bound_ms']:.0f} ms"
    )
    for row in result["rows"]:
        print(_line(row))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
