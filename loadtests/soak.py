"""`make soak`: a bounded soak on loopback — throughput, errors and server memory, window by window.

Starts its own tritonserver (loopback, free ports), warms up, then sends an open-loop Poisson
request mix at a fixed rate for `--minutes`, in windows of `--window-s`. After each window it
records throughput, errors by status, p50/p99 and the resident memory (RSS) of tritonserver and
of its python-backend stubs. The bar is flat memory: the median RSS of the last third of the
windows may exceed the middle third's by at most `--max-growth-mib` (the first third is warm-up); the run fails (exit 1)
if memory grows past that or any request fails. Writes soak.json and soak.png to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

from reelserve.config import DEFAULT
from reelserve.spec import contract as c

from . import runner, stats
from .workload import DEFAULT_MIX, build_mix, parse_mix

MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def memory_growth_mib(rows: list[dict], key: str = "total_rss_mib") -> float:
    """Median RSS of the last third of the windows minus that of the middle third.

    The first third is the allocators' warm-up (ONNX Runtime arenas and the stubs' shared memory
    grow to the largest batch and frame sizes seen), not a leak; a leak keeps growing after it.
    """
    third = max(1, len(rows) // 3)
    middle = rows[third:-third] or rows[:third]
    return statistics.median(r[key] for r in rows[-third:]) - statistics.median(r[key] for r in middle)


def format_row(r: dict) -> str:
    errors = sum(n for s, n in r["statuses"].items() if s != "OK")
    return (
        f"{r['t_s']:7.0f} {r['sent']:6d} {r['ok']:6d} {errors:6d} {r['throughput_rps']:7.1f} "
        f"{r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['server_rss_mib']:10.1f} {r['stubs_rss_mib']:10.1f}"
    )


HEADER = (
    f"{'t s':>7s} {'sent':>6s} {'ok':>6s} {'errors':>6s} {'rps':>7s} {'p50 ms':>8s} {'p99 ms':>8s} "
    f"{'server MiB':>10s} {'stubs MiB':>10s}"
)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(t, [r["server_rss_mib"] for r in rows], label="tritonserver")
    top.plot(t, [r["stubs_rss_mib"] for r in rows], label="python-backend stubs")
    top.plot(t, [r["total_rss_mib"] for r in rows], label="total")
    top.set_ylabel("RSS (MiB)")
    top.legend()
    bottom.plot(t, [r["throughput_rps"] for r in rows], color="tab:blue")
    bottom.set_ylabel("OK answers/s", color="tab:blue")
    bottom.set_ylim(bottom=0)
    latency = bottom.twinx()
    latency.plot(t, [r["p99_ms"] for r in rows], color="tab:red")
    latency.set_ylabel("p99 latency (ms)", color="tab:red")
    latency.set_ylim(bottom=0)
    bottom.set_xlabel("time since start (s)")
    fig.suptitle("reelserve soak: memory should stay flat")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reelserve.loadtests.soak", description=__doc__.split("\n")[0])
    p.add_argument("--model-repository", type=Path, default=DEFAULT.server.model_repository)
    p.add_argument("--minutes", type=float, default=3.0, help="how long to send (default: %(default)s)")
    p.add_argument("--window-s", type=float, default=15.0, help="one table row per window (default: %(default)s)")
    p.add_argument("--rate", type=float, default=6.0, help="offered requests/s (default: %(default)s)")
    p.add_argument("--mix", type=parse_mix, default=DEFAULT_MIX, help="e.g. video_short=0.5,text=0.5")
    p.add_argument("--max-growth-mib", type=float, default=32.0, help="allowed RSS growth (default: %(default)s)")
    p.add_argument("--deadline-s", type=float, default=30.0)
    p.add_argument("--out", type=Path, default=Path("soak-report"))
    return p


def main(argv: list[str] | None = None) -> int:
    from reelserve.client import RetryPolicy
    from reelserve.triton.errors import ServerStartError
    from reelserve.triton.server import TritonServer

    from .harness import warm_up
    from .served import replay_server_config
    from .targets import ReelserveTarget

    args = build_parser().parse_args(argv)
    windows = max(1, round(args.minutes * 60 / args.window_s))
    print(f"rendering the request mix ({', '.join(args.mix)}) ...", file=sys.stderr)
    mix = build_mix(args.mix)
    try:
        server = TritonServer(replay_server_config(args.model_repository)).start()
        server.wait_ready(models=[c.VIDEO_FEATURES, c.TEXT_FEATURES])
    except ServerStartError as e:
        print(f"soak: {e}", file=sys.stderr)
        return 1
    rows: list[dict] = []

    async def go() -> None:
        target = ReelserveTarget(server.grpc_url, deadline_s=args.deadline_s, retry=RetryPolicy(max_attempts=1))
        try:
            await warm_up(target, mix, 5)
            started = time.monotonic()
            print(HEADER)
            for i in range(windows):
                run = await runner.open_loop(
                    target, mix, rate=args.rate, duration_s=args.window_s, max_requests=1 << 30, seed=i
                )
                row = stats.summarize(run, slo_ms=1e9)
                stubs = sum(rss_bytes(pid) for pid in server.stub_processes()) / MIB
                srv = rss_bytes(server.pid) / MIB if server.pid else 0.0
                rows.append(
                    {
                        "window": i,
                        "t_s": time.monotonic() - started,
                        "sent": row["sent"],
                        "ok": row["ok"],
                        "statuses": row["statuses"],
                        "throughput_rps": row["throughput_rps"],
                        "p50_ms": row["latency_ms"]["p50"],
                        "p99_ms": row["latency_ms"]["p99"],
                        "server_rss_mib": srv,
                        "stubs_rss_mib": stubs,
                        "total_rss_mib": srv + stubs,
                    }
                )
                print(format_row(rows[-1]), flush=True)
        finally:
            await target.close()

    try:
        asyncio.run(go())
    finally:
        server.stop()
    growth = memory_growth_mib(rows)
    errors = sum(n for r in rows for s, n in r["statuses"].items() if s != "OK")
    sent = sum(r["sent"] for r in rows)
    flat = growth <= args.max_growth_mib
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"sent": sent, "errors": errors, "rss_growth_mib": growth, "flat": flat, "rate": args.rate}
    (args.out / "soak.json").write_text(json.dumps({"summary": summary, "windows": rows}, indent=1))
    plot(rows, args.out / "soak.png")
    print(
        f"sent {sent}, errors {errors}; memory {growth:+.1f} MiB from the middle to the last third of the run: "
        + ("flat" if flat else f"GROWING (over {args.max_growth_mib:g} MiB)")
    )
    print(f"report: {args.out / 'soak.json'}  {args.out / 'soak.png'}")
    return 0 if flat and errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
