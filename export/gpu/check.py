"""`reelserve gpu-check`: the GPU runbook. Builds every engine, checks parity, times each encoder three ways.

On a machine with an NVIDIA GPU and TensorRT: runs `export --target gpu` (engines for every
precision, parity vs PyTorch >= 0.999 cosine per output, the GPU model repository), then, per
encoder and batch size, times the TensorRT engine against PyTorch eager (fp16, our Triton
kernels) and `torch.compile` (fp16) on the same inputs, and prints one table. Results go to
`OUT/gpu-benchmark.json`; copy the table into docs/benchmarks.md. Refuses to run, with the
reason, where there is no GPU or no TensorRT.

torch and the GPU target are imported on use: the CLI imports this module to build its parser.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from reelserve.config import DEFAULT


def why_not_runnable() -> str | None:
    """None when this machine can build and time engines, else the reason."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU visible to PyTorch (torch.cuda.is_available() is False)"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the 'tensorrt' package is not installed (pip install 'tensorrt>=10.9' on the GPU machine)"
    return None


def time_call(fn: Callable[[], object], *, warmup: int, iters: int) -> dict[str, float]:
    """Wall time per call with the GPU synchronised after each (what one request waits)."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1e3)
    samples.sort()
    return {"p50_ms": statistics.median(samples), "p90_ms": samples[int(0.9 * (len(samples) - 1))]}


def batch_of(sample: tuple, batch: int, cfg=DEFAULT) -> tuple:
    """Repeat the parity sample's rows to `batch` rows; tokens padded to max_tokens as the GPU target does."""
    import torch

    rows = []
    for x in sample:
        reps = -(-batch // x.shape[0])
        rows.append(x.repeat(reps, *([1] * (x.dim() - 1)))[:batch])
    if rows[0].dtype == torch.int64:  # text: pad ids and mask to max_tokens
        n = cfg.text.max_tokens
        rows = [torch.nn.functional.pad(r, (0, n - r.shape[1])) for r in rows]
    return tuple(rows)


def benchmark(
    out: Path, cpu_repository: Path, batches: tuple[int, ...], warmup: int, iters: int, log=print
) -> list[dict]:
    import torch

    from reelserve.models.text_towers import tower_spec
    from reelserve.models.vision_tower import load_efficientnet_lite0

    from .engines import EngineRunner
    from .plugin_onnx import cast_module
    from .target import encoder_graphs

    rows = []
    text = tower_spec(DEFAULT.text.tower).load()
    for graph in encoder_graphs(DEFAULT, load_efficientnet_lite0(), text, cpu_repository):
        eager = cast_module(graph.module, "fp16").cuda()
        try:
            compiled = torch.compile(cast_module(graph.module, "fp16").cuda())
        except Exception as e:  # report, do not hide
            compiled, compile_error = None, f"{type(e).__name__}: {e}"
        engines = {p: EngineRunner(out / "engines" / f"{graph.name}.{p}.plan") for p in DEFAULT.gpu.precisions}
        for batch in batches:
            inputs = [x.cuda() for x in batch_of(graph.sample, batch)]
            feeds = dict(zip(graph.input_names, inputs, strict=True))
            systems: dict[str, Callable[[], object]] = {f"tensorrt {p}": partial(r, feeds) for p, r in engines.items()}
            systems["torch eager fp16"] = partial(eager, *inputs)
            if compiled is not None:
                systems["torch.compile fp16"] = partial(compiled, *inputs)
            with torch.no_grad():
                for system, fn in systems.items():
                    try:
                        t = time_call(fn, warmup=warmup, iters=iters)
                    except Exception as e:
                        t = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
                    row = {"encoder": graph.name, "batch": batch, "system": system, **t}
                    if "p50_ms" in t:
                        row["items_per_s"] = batch / t["p50_ms"] * 1e3
                    rows.append(row)
                    log(format_row(row))
            if compiled is None:
                rows.append(
                    {"encoder": graph.name, "batch": batch, "system": "torch.compile fp16", "error": compile_error}
                )
    return rows


def format_row(row: dict) -> str:
    if "error" in row:
        return f"{row['encoder']:15s} {row['batch']:5d}  {row['system']:20s}  failed: {row['error']}"
    return (
        f"{row['encoder']:15s} {row['batch']:5d}  {row['system']:20s} {row['p50_ms']:9.3f} {row['p90_ms']:9.3f} "
        f"{row['items_per_s']:10.1f}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("gpu-out"), help="folder for engines and reports (default: %(default)s)"
    )
    parser.add_argument(
        "--cpu-repository", type=Path, default=DEFAULT.server.model_repository, help="default: %(default)s"
    )
    parser.add_argument("--batch", type=int, action="append", help="batch sizes to time (default: 1, 8, 16)")
    parser.add_argument("--iters", type=int, default=100, help="timed calls per cell (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first (default: %(default)s)")
    parser.add_argument("--skip-build", action="store_true", help="reuse the engines already in --out")


def run(args: argparse.Namespace) -> int:
    reason = why_not_runnable()
    if reason:
        print(f"reelserve gpu-check: cannot run here: {reason}", file=sys.stderr)
        return 2
    import torch

    from .target import export_gpu

    device = torch.cuda.get_device_name()
    print(f"device: {device}, torch {torch.__version__}")
    if not args.skip_build:
        report = export_gpu(args.out, DEFAULT, onnx_only=False, cpu_repository=args.cpu_repository)
        for key, entry in report["graphs"].items():
            cos = min(r["min_cosine"] for r in entry["engine_parity"])
            print(f"engine {key:22s} built in {entry['engine']['seconds']:6.1f}s  parity min cosine {cos:.6f}")
    print(f"{'encoder':15s} {'batch':>5s}  {'system':20s} {'p50 ms':>9s} {'p90 ms':>9s} {'items/s':>10s}")
    rows = benchmark(args.out, args.cpu_repository, tuple(args.batch or (1, 8, 16)), args.warmup, args.iters)
    (args.out / "gpu-benchmark.json").write_text(json.dumps({"device": device, "rows": rows}, indent=1))
    print(f"wrote {args.out / 'gpu-benchmark.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reelserve gpu-check", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
