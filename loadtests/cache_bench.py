"""Re-uploads answered from Triton's response cache: the hit rate, and a hit's latency vs an upload's.

The same file is uploaded again often (re-posts, client retries, the same clip under several
accounts). reelserve caches the steps whose answer depends on their inputs alone
(`topology.CACHED_STEPS`: vision, OCR, text); preprocess and fusion_heads always run, so a
re-upload is scored against the label bank current at that moment. This bench sends sequential
`video_features` calls to a server as deployed (cache on), `duplicate_share` of them byte-for-byte
repeats of an earlier upload, reads the `nv_cache_*` counters of each cached step before and
after, and checks that a re-upload's answer equals its first upload's.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reelserve.config import DEFAULT
from reelserve.spec.topology import CACHED_STEPS

from . import triton_metrics

DUPLICATE_SHARE = 0.3
_TITLES = ("my cat", "morning coffee", "launch day", "in orbit", "weekend ride", "night sky", "street photo")


def upload_order(uploads: int, duplicate_share: float, seed: int = 0) -> list[int]:
    """Indices into the distinct clips, in sending order; a repeat always follows its first upload."""
    if not 0.0 <= duplicate_share < 1.0:
        raise ValueError(f"duplicate_share must be in [0, 1), got {duplicate_share}")
    repeats = round(uploads * duplicate_share)
    distinct = uploads - repeats
    if distinct < 1:
        raise ValueError(f"{uploads} uploads leave no distinct clip at a {duplicate_share:.0%} duplicate share")
    rng = random.Random(seed)
    order = list(range(distinct))
    for _ in range(repeats):
        at = rng.randint(1, len(order))
        order.insert(at, rng.choice(order[:at]))
    return order


@dataclass(frozen=True)
class Upload:
    clip: bytes
    title: str


def render_uploads(n: int, seed: int = 0) -> list[Upload]:
    """`n` distinct short clips with titles (photo, camera drift and title vary)."""
    from reelserve.samples import PHOTOS, load_photo, render_clip

    photos = {name: load_photo(name) for name in PHOTOS}
    names = list(photos)
    return [
        Upload(
            render_clip(photos[names[i % len(names)]], seconds=1.0, seed=seed + i),
            f"{_TITLES[i % len(_TITLES)]} #{i}",
        )
        for i in range(n)
    ]


def run(model_repository: Path, *, uploads: int = 40, duplicate_share: float = DUPLICATE_SHARE) -> list[str]:
    """Sequential uploads with repeats against a server with the response cache on; -> table lines."""
    from reelserve.client import VideoFeaturesClient
    from reelserve.spec import contract as c
    from reelserve.triton.ports import on_free_ports
    from reelserve.triton.server import TritonServer

    order = upload_order(uploads, duplicate_share)
    distinct = render_uploads(max(order) + 2)  # the last one warms the server up and is never counted
    cfg = on_free_ports(DEFAULT.server, Path(model_repository))
    if cfg.response_cache_mib <= 0:
        raise ValueError("the response cache is off in ServerConfig (response_cache_mib = 0): nothing to measure")
    first_ms: list[float] = []
    repeat_ms: list[float] = []
    first_answer: dict[int, np.ndarray] = {}
    worst_difference = 0.0
    with TritonServer(cfg) as server:
        server.wait_ready(models=[c.VIDEO_FEATURES])
        with VideoFeaturesClient(server.grpc_url, deadline_s=60) as client:
            warm = distinct[-1]
            client.video_features([warm.clip], [warm.title])
            before = triton_metrics.parse_cache(triton_metrics.scrape_text(server.metrics_url))
            for i in order:
                up = distinct[i]
                t0 = time.perf_counter()
                (answer,) = client.video_features([up.clip], [up.title])
                ms = (time.perf_counter() - t0) * 1000
                if i in first_answer:
                    repeat_ms.append(ms)
                    worst_difference = max(worst_difference, float(np.abs(answer.embedding - first_answer[i]).max()))
                else:
                    first_ms.append(ms)
                    first_answer[i] = answer.embedding
            after = triton_metrics.parse_cache(triton_metrics.scrape_text(server.metrics_url))
    return table(first_ms, repeat_ms, cache_deltas(before, after), worst_difference, duplicate_share)


def cache_deltas(before: triton_metrics.Scrape, after: triton_metrics.Scrape) -> dict[str, dict[str, float]]:
    """Per cached step over the run: hits, misses, and the mean cost of a lookup that hit or missed."""
    rows = {}
    for step in CACHED_STEPS:
        if step not in after:
            continue
        start = before.get(step, dict.fromkeys(triton_metrics.CACHE_COUNTERS, 0.0))
        d = {k: after[step][k] - start.get(k, 0.0) for k in triton_metrics.CACHE_COUNTERS}
        rows[step] = {
            "hits": d["hits"],
            "misses": d["misses"],
            "hit_rate": d["hits"] / (d["hits"] + d["misses"]) if d["hits"] + d["misses"] else float("nan"),
            "hit_us": d["hit_us"] / d["hits"] if d["hits"] else float("nan"),
            "miss_us": d["miss_us"] / d["misses"] if d["misses"] else float("nan"),
        }
    return rows


def _p(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) if samples else float("nan")


def table(
    first_ms: list[float],
    repeat_ms: list[float],
    steps: dict[str, dict[str, float]],
    worst_difference: float,
    duplicate_share: float,
) -> list[str]:
    lines = [f"{'video_features, sequential (1 s clips)':40s} {'calls':>6s} {'p50 ms':>8s} {'p99 ms':>8s}"]
    lines.append(f"{'first uploads':40s} {len(first_ms):6d} {_p(first_ms, 50):8.1f} {_p(first_ms, 99):8.1f}")
    label = f"re-uploads ({duplicate_share:.0%} of calls)"
    lines.append(f"{label:40s} {len(repeat_ms):6d} {_p(repeat_ms, 50):8.1f} {_p(repeat_ms, 99):8.1f}")
    lines.append(f"{'cached step':16s} {'hits':>6s} {'misses':>7s} {'hit rate':>9s} {'lookup us (hit/miss)':>22s}")
    for step, r in steps.items():
        lookups = f"{r['hit_us']:10.0f} / {r['miss_us']:<10.0f}"
        lines.append(f"{step:16s} {r['hits']:6.0f} {r['misses']:7.0f} {r['hit_rate']:9.1%} {lookups}")
    if first_ms and repeat_ms:
        speedup = statistics.median(first_ms) / statistics.median(repeat_ms)
        lines.append(f"a re-upload's p50 is {speedup:.1f}x faster than a first upload's")
    lines.append(f"re-uploads answered like their first upload: max |embedding difference| {worst_difference:.2g}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reelserve.loadtests.cache_bench", description=__doc__.split("\n")[0])
    p.add_argument("--model-repository", type=Path, default=DEFAULT.server.model_repository)
    p.add_argument("--uploads", type=int, default=40, help="calls in all (default %(default)s)")
    p.add_argument("--duplicate-share", type=float, default=DUPLICATE_SHARE, help="default %(default)s")
    args = p.parse_args(argv)
    try:
        upload_order(args.uploads, args.duplicate_share)
    except ValueError as e:
        p.error(str(e))
    print("\n".join(run(args.model_repository, uploads=args.uploads, duplicate_share=args.duplicate_share)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
