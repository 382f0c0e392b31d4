"""`reelserve loadtest`: drive a reelserve server with real request mixes and report what callers see.

Open loop (default): Poisson or constant arrivals at each offered rate, latency from the intended
send time. Closed loop: a concurrency sweep. Each run is bounded (duration and request count),
scrapes Triton's counters before and after for the per-step server breakdown, and the whole
plan writes report.json, report.png and report.html. Loopback only: a load test is not a way
to hit someone else's server.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import socket
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reelserve.spec import contract as c

from . import report, runner, stats, triton_metrics
from .harness_options import build_parser
from .workload import KINDS, RequestMix, build_mix

if TYPE_CHECKING:
    from .targets import Target

# A run's server-side ensemble mean may trail the client's by the gRPC hop and the SDK; more than
# this (or any difference in request counts) means the numbers do not describe the same requests.
CONSISTENCY_TOLERANCE_MS = 5.0
CONSISTENCY_TOLERANCE_FRACTION = 0.10
SETTLE_S = 2.0  # longest wait for Triton's counters to count the answers we already have


@dataclass(frozen=True)
class Plan:
    mode: str  # "open" | "closed"
    levels: Sequence[float]  # offered rates (open) or concurrencies (closed)
    duration_s: float
    max_requests: int
    arrival: str = "poisson"
    drain_timeout_s: float = 30.0
    seed: int = 0


def is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def _progress(total: int | None, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="req", disable=None if enabled else True, leave=False, file=sys.stderr)


async def run_plan(
    target: Target, mix: RequestMix, plan: Plan, *, slo_ms: float, metrics_url: str | None, progress: bool = True
) -> tuple[list[dict], list[runner.RunResult]]:
    """Every level of `plan` against `target`; rows carry the server breakdown when `metrics_url` is known."""
    rows, runs = [], []
    for i, level in enumerate(plan.levels):
        before = await _quiet_scrape(metrics_url) if metrics_url else None
        if plan.mode == "open":
            expected = len(runner.arrival_times(level, plan.duration_s, plan.max_requests, plan.arrival, plan.seed + i))
            with _progress(expected, f"{target.name} {level:g} rps", progress) as bar:
                run = await runner.open_loop(
                    target, mix, rate=level, duration_s=plan.duration_s, max_requests=plan.max_requests,
                    process=plan.arrival, drain_timeout_s=plan.drain_timeout_s, seed=plan.seed + i, on_done=bar.update,
                )  # fmt: skip
        else:
            with _progress(None, f"{target.name} c={int(level)}", progress) as bar:
                run = await runner.closed_loop(
                    target, mix, concurrency=int(level), duration_s=plan.duration_s, max_requests=plan.max_requests,
                    drain_timeout_s=plan.drain_timeout_s, on_done=bar.update,
                )  # fmt: skip
        row = stats.summarize(run, slo_ms)
        if metrics_url:
            row["server"] = await _server_breakdown(metrics_url, before, client_ok(row))
            row["consistency"] = consistency(row)
        rows.append(row)
        runs.append(run)
    return rows, runs


async def _quiet_scrape(metrics_url: str) -> triton_metrics.Scrape:
    """Triton's counters once the answers already sent (warm-up, a previous level) are all counted.

    The success counter of an ensemble is bumped a moment after its response leaves, so a scrape
    right after the warm-up can miss its last call, which then lands in the next run's counts.
    Re-read until two reads 0.1 s apart agree (at most SETTLE_S).
    """
    deadline = time.monotonic() + SETTLE_S
    last = triton_metrics.scrape(metrics_url)[0]
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = triton_metrics.scrape(metrics_url)[0]
        if now == last:
            return now
        last = now
    return last


async def _server_breakdown(metrics_url: str, before, client: dict[str, int]) -> dict[str, dict[str, float]]:
    """Triton's per-step counters over the run, read once it has counted every OK answer we received.

    Triton bumps an ensemble's success counter a moment after the response is on its way, so a
    scrape right after the last answer can miss that request. Re-read for up to SETTLE_S; what is
    still missing then stays missing (and `consistency` says so).
    """
    deadline = time.monotonic() + SETTLE_S
    while True:
        server = triton_metrics.step_breakdown(before, *triton_metrics.scrape(metrics_url))
        counted = all(server.get(m, {}).get("requests_ok", 0) >= ok for m, ok in client.items())
        if counted or time.monotonic() > deadline:
            return server
        await asyncio.sleep(0.05)


def client_ok(row: dict) -> dict[str, int]:
    """OK answers the client received per ensemble (models with no requests of this run left out)."""
    out = {}
    for model in (c.VIDEO_FEATURES, c.TEXT_FEATURES):
        kinds = [k for k, v in KINDS.items() if v.model == model and k in row["by_kind"]]
        if kinds:
            out[model] = sum(row["by_kind"][k]["ok"] for k in kinds)
    return out


def consistency(row: dict) -> dict[str, dict]:
    """Client vs server per ensemble: request counts must match; mean latencies within tolerance.

    Closed-loop client latency is the call's service time and the server's is its request
    duration, so client >= server by the network hop + SDK. Open-loop client latency also holds
    the generator's send lag, which this subtracts back out. Counts differ if anything else
    called the server during the run.
    """
    out = {}
    for model, ok in client_ok(row).items():
        mine = [row["by_kind"][k] for k, v in KINDS.items() if v.model == model and k in row["by_kind"]]
        weighted = [k["service_mean_ms"] * k["ok"] for k in mine if k["ok"]]
        client_mean = sum(weighted) / ok if ok else float("nan")
        server = row.get("server", {}).get(model, {})
        server_mean = server.get("mean_request_ms", float("nan"))
        gap = client_mean - server_mean
        allowed = CONSISTENCY_TOLERANCE_MS + CONSISTENCY_TOLERANCE_FRACTION * server_mean
        out[model] = {
            "client_ok": ok,
            "server_ok": int(server.get("requests_ok", 0)),
            "client_mean_ms": client_mean,
            "server_mean_ms": server_mean,
            "gap_ms": gap,
            "allowed_gap_ms": allowed,
            "agree": ok == int(server.get("requests_ok", 0)) and -1.0 <= gap <= allowed,
        }
    return out


def _check_args(args: argparse.Namespace) -> str | None:
    if args.duration <= 0 or args.max_requests < 1:
        return "--duration must be > 0 and --max-requests >= 1"
    if args.retries < 1 or args.deadline_s <= 0:
        return "--retries must be >= 1 and --deadline-s > 0"
    for flag, url in (("--url", args.url), ("--metrics-url", args.metrics_url)):
        if url:
            host = url.split("://")[-1].rsplit(":", 1)[0].strip("[]").split("/")[0]
            if not is_loopback(host):
                return f"{flag} {url}: the load test only targets loopback addresses"
    return None


async def warm_up(target: Target, mix: RequestMix, per_kind: int) -> None:
    """Untimed calls of every kind first; a non-OK answer means the target is not serving what we test."""
    for name, items in mix.items.items():
        for i in range(per_kind):
            status = await target.send(items[i % len(items)])
            if status != "OK":
                raise RuntimeError(f"warm-up call ({name}) answered {status}: is the server serving reelserve?")


def main(argv: list[str] | None = None, args: argparse.Namespace | None = None) -> int:
    from reelserve.client import RetryPolicy

    from .targets import ReelserveTarget

    args = args or build_parser().parse_args(argv)
    problem = _check_args(args)
    if problem:
        print(f"reelserve loadtest: {problem}", file=sys.stderr)
        return 2
    levels = args.rates if args.mode == "open" else args.concurrency
    plan = Plan(args.mode, levels, args.duration, args.max_requests, args.arrival, seed=args.seed)
    print(f"rendering the request mix ({', '.join(args.mix)}) ...", file=sys.stderr)
    mix = build_mix(args.mix, seed=args.seed)
    with ExitStack() as stack:
        url, metrics_url = args.url, args.metrics_url
        if url is None:
            from reelserve.triton.errors import ServerStartError
            from reelserve.triton.server import TritonServer

            from .served import replay_server_config

            try:
                server = stack.enter_context(TritonServer(replay_server_config(args.model_repository)))
                server.wait_ready(models=[c.VIDEO_FEATURES, c.TEXT_FEATURES])
            except ServerStartError as e:
                print(f"reelserve loadtest: {e}", file=sys.stderr)
                return 1
            url, metrics_url = server.grpc_url, server.metrics_url

        async def go() -> tuple[list[dict], list[runner.RunResult]]:
            retry = RetryPolicy(max_attempts=args.retries)
            target = ReelserveTarget(url, deadline_s=args.deadline_s, retry=retry, api_key=args.api_key)
            try:
                await warm_up(target, mix, args.warmup)
                return await run_plan(
                    target, mix, plan, slo_ms=args.slo_ms, metrics_url=metrics_url, progress=not args.no_progress
                )
            finally:
                await target.close()

        started = time.time()
        try:
            rows, runs = asyncio.run(go())
        except RuntimeError as e:
            print(f"reelserve loadtest: {e}", file=sys.stderr)
            return 1
    meta = {
        "started_unix": started,
        "url": url,
        "plan": {"mode": plan.mode, "levels": list(plan.levels), "duration_s": plan.duration_s,
                 "max_requests": plan.max_requests, "arrival": plan.arrival, "seed": plan.seed},
        "mix": mix.describe(),
        "slo_ms": args.slo_ms,
        "deadline_s": args.deadline_s,
        "retries": args.retries,
        "latency_from": "intended send time" if plan.mode == "open" else "send time (closed loop)",
        "consistency_tolerance": {"ms": CONSISTENCY_TOLERANCE_MS, "fraction": CONSISTENCY_TOLERANCE_FRACTION},
    }  # fmt: skip
    paths = report.write(args.out, meta, rows, runs)
    print("\n".join(report.summary_lines(rows)))
    for row in rows:
        for model, check in row.get("consistency", {}).items():
            if not check["agree"]:
                print(
                    f"warning: {model}: client saw {check['client_ok']} OK, mean {check['client_mean_ms']:.1f} ms; "
                    f"server counted {check['server_ok']}, mean {check['server_mean_ms']:.1f} ms "
                    "(other traffic on this server?)",
                    file=sys.stderr,
                )
    print(f"report: {paths['json']}  {paths['png']}  {paths['html']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
