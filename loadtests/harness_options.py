"""The options of `reelserve loadtest`, apart from the harness so that building the CLI imports no client.

Open loop (default): Poisson or constant arrivals at each offered rate, latency from the intended
send time. Closed loop: a concurrency sweep. Each run is bounded (duration and request count) and
the whole plan writes report.json, report.png and report.html. Loopback only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reelserve.config import DEFAULT

from .workload import DEFAULT_MIX, KINDS, parse_mix

DESCRIPTION = "Drive a reelserve server with real request mixes and report what callers see."


def _levels(text: str, kind: type) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"want a comma-separated list of numbers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"want positive numbers, got {text!r}")
    return values


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="reelserve loadtest", description=DESCRIPTION)
    where = p.add_argument_group("server (default: start one on loopback from the model repository)")
    where.add_argument("--url", help="a running reelserve's gRPC address, HOST:PORT (loopback only)")
    where.add_argument("--metrics-url", help="its Triton metrics endpoint, for the server breakdown")
    where.add_argument("--model-repository", type=Path, default=DEFAULT.server.model_repository)
    where.add_argument("--api-key", help="the server's API key, if it wants one")
    load = p.add_argument_group("load")
    load.add_argument("--mode", choices=["open", "closed"], default="open", help="default: %(default)s")
    load.add_argument(
        "--rates", type=lambda s: _levels(s, float), default=[2.0, 4.0, 8.0],
        help="open loop: offered rates, requests/s (default: 2,4,8)",
    )  # fmt: skip
    load.add_argument("--arrival", choices=["poisson", "constant"], default="poisson", help="default: %(default)s")
    load.add_argument(
        "--concurrency", type=lambda s: _levels(s, int), default=[1, 2, 4, 8],
        help="closed loop: workers per run (default: 1,2,4,8)",
    )  # fmt: skip
    load.add_argument("--duration", type=float, default=15.0, help="seconds of sending per run (default %(default)s)")
    load.add_argument("--max-requests", type=int, default=5000, help="cap per run (default %(default)s)")
    load.add_argument(
        "--mix", type=parse_mix, default=dict(DEFAULT_MIX),
        help="request kinds and weights, e.g. video_short=0.7,text=0.3; kinds: "
        + ", ".join(f"{k} ({v.describe})" for k, v in KINDS.items()),
    )  # fmt: skip
    load.add_argument(
        "--slo-ms",
        type=float,
        default=DEFAULT.slo.video_features_p99_ms,
        help="latency SLO for attainment (default %(default)s)",
    )
    load.add_argument("--deadline-s", type=float, default=10.0, help="per-call deadline (default %(default)s)")
    load.add_argument("--retries", type=int, default=1, help="attempts per call, 1 = no retry (default %(default)s)")
    load.add_argument("--warmup", type=int, default=3, help="untimed calls per kind first (default %(default)s)")
    load.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("loadtest-report"), help="report folder (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p
