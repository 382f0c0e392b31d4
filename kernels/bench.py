"""Benchmark reelserve's Triton kernels against PyTorch on the models' real shapes (GPU only).

Providers per op: `triton` (ours), `sdpa` (torch.nn.functional.scaled_dot_product_attention: the
flash backend where it applies — no mask — and the memory-efficient backend with the padding
mask), `eager` (the PyTorch reference, `kernels/reference.py`). Attention reports TFLOP/s from
4·B·H·Lq·Lk·D (halved when causal), pooling reports GB/s from bytes read + written; both also
as a fraction of the GPU's datasheet peak (`PEAKS`; an unknown GPU is compared with the H100).

Run on a machine with an NVIDIA GPU: `python -m reelserve.kernels.bench` (record the table in
docs/benchmarks.md with the date and the GPU). Without one it says so and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .reference import attention_reference, masked_mean_pool_reference

# Dense fp16/bf16 TFLOP/s and HBM GB/s by the vendor's datasheets (SXM parts): the H200 has the
# H100's arithmetic and faster memory.
PEAKS = {"H100": (989.0, 3350.0), "H200": (989.0, 4800.0)}


def peaks_for(device_name: str) -> tuple[str, float, float]:
    """(label, TFLOP/s, GB/s) of the GPU named `device_name`; the H100's where it is not in PEAKS."""
    for label, (tflops, gbps) in PEAKS.items():
        if label in device_name:
            return label, tflops, gbps
    return "H100", *PEAKS["H100"]


@dataclass(frozen=True)
class AttentionShape:
    name: str
    batch: int
    heads: int
    length: int
    head_dim: int
    padded_fraction: float  # share of keys that are padding, spread over the batch


ATTENTION_SHAPES = (
    AttentionShape("text MiniLM, titles", 64, 12, 64, 32, 0.4),
    AttentionShape("text MiniLM, comments", 256, 12, 128, 32, 0.5),
    AttentionShape("text e5-small, long", 32, 12, 512, 32, 0.3),
    AttentionShape("frames x patches (ViT-B/16)", 128, 12, 197, 64, 0.0),
    AttentionShape("frames x patches, head 128", 64, 8, 1024, 128, 0.0),
)


def _padding_mask(b: int, length: int, fraction: float, device: str) -> torch.Tensor:
    lengths = torch.linspace(length, max(1, int(length * (1 - 2 * fraction))), b, device=device).round()
    return torch.arange(length, device=device)[None, :] < lengths[:, None]


def _time_ms(fn: Callable[[], object]) -> float:
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=25, rep=100))


def bench_attention(dtype: torch.dtype, peak_tflops: float) -> list[dict]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from .attention import fused_attention_triton

    rows = []
    for s in ATTENTION_SHAPES:
        q, k, v = (torch.randn(s.batch, s.heads, s.length, s.head_dim, device="cuda", dtype=dtype) for _ in range(3))
        mask = _padding_mask(s.batch, s.length, s.padded_fraction, "cuda") if s.padded_fraction else None
        flops = 4 * s.batch * s.heads * s.length * s.length * s.head_dim
        providers: dict[str, Callable[[], object]] = {
            "triton": lambda: fused_attention_triton(q, k, v, mask),  # noqa: B023
            "eager": lambda: attention_reference(q, k, v, mask),  # noqa: B023
        }
        if mask is None:

            def flash() -> object:
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    return torch.nn.functional.scaled_dot_product_attention(q, k, v)  # noqa: B023

            providers["sdpa-flash"] = flash
        else:
            attn_mask = mask[:, None, None, :]

            def efficient() -> object:
                with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
                    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # noqa: B023

            providers["sdpa-efficient"] = efficient
        times = {name: _time_ms(fn) for name, fn in providers.items()}
        peer = next(n for n in times if n.startswith("sdpa"))
        for name, ms in times.items():
            tflops = flops / ms / 1e9
            rows.append(
                {
                    "op": "fused_attention",
                    "shape": s.name,
                    "dims": f"B{s.batch} H{s.heads} L{s.length} D{s.head_dim} pad{s.padded_fraction:.0%}",
                    "dtype": str(dtype).removeprefix("torch."),
                    "provider": name,
                    "ms": ms,
                    "throughput": f"{tflops:.1f} TFLOP/s",
                    "vs_peer": times[peer] / ms,
                    "vs_peak": tflops / peak_tflops,
                }
            )
    return rows


def bench_pooling(dtype: torch.dtype, peak_gbps: float) -> list[dict]:
    from .mean_pool import masked_mean_pool_triton

    rows = []
    for b, length, d in ((64, 128, 384), (256, 64, 384), (128, 8, 1280)):
        x = torch.randn(b, length, d, device="cuda", dtype=dtype)
        mask = _padding_mask(b, length, 0.3, "cuda")
        moved = x.numel() * x.element_size() + mask.numel() + b * d * x.element_size()
        providers: dict[str, Callable[[], object]] = {
            "triton": lambda: masked_mean_pool_triton(x, mask),  # noqa: B023
            "eager": lambda: masked_mean_pool_reference(x, mask),  # noqa: B023
        }
        times = {name: _time_ms(fn) for name, fn in providers.items()}
        for name, ms in times.items():
            gbps = moved / ms / 1e6
            rows.append(
                {
                    "op": "masked_mean_pool",
                    "shape": f"B{b} L{length} D{d}",
                    "dims": "pad30%",
                    "dtype": str(dtype).removeprefix("torch."),
                    "provider": name,
                    "ms": ms,
                    "throughput": f"{gbps:.0f} GB/s",
                    "vs_peer": times["eager"] / ms,
                    "vs_peak": gbps / peak_gbps,
                }
            )
    return rows


def format_markdown(rows: list[dict], peak_label: str = "H100") -> str:
    head = f"| op | shape | dims | dtype | provider | ms | throughput | speed-up vs peer | of {peak_label} peak |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['op']} | {r['shape']} | {r['dims']} | {r['dtype']} | {r['provider']} | {r['ms']:.3f} | "
            f"{r['throughput']} | {r['vs_peer']:.2f}x | {r['vs_peak']:.1%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark reelserve's Triton kernels (needs an NVIDIA GPU).")
    parser.add_argument("--dtype", choices=["fp16", "bf16"], default="bf16")
    parser.add_argument("--only", choices=["attention", "pooling"], help="one family of ops")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("kernels/bench.py measures GPU kernels and found no CUDA device here; run it on a GPU machine.")
        return 2
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    name = torch.cuda.get_device_name()
    label, peak_tflops, peak_gbps = peaks_for(name)
    print(
        f"# {name}  torch {torch.__version__}  dtype {args.dtype}  peaks: {label} {peak_tflops:.0f} TFLOP/s, "
        f"{peak_gbps:.0f} GB/s"
    )
    rows = []
    if args.only in (None, "attention"):
        rows += bench_attention(dtype, peak_tflops)
    if args.only in (None, "pooling"):
        rows += bench_pooling(dtype, peak_gbps)
    print(format_markdown(rows, label))
    return 0


if __name__ == "__main__":
    sys.exit(main())
