"""What the SDK costs per call: `VideoFeaturesClient` vs raw `tritonclient.grpc` on the same server.

Both send the same request over one reused channel, sequentially, interleaved in rounds so drift
in the server hits both alike; the SDK's overhead is the difference of the medians (request
building, result parsing into dataclasses, metrics, retry bookkeeping).

Run: `python -m reelserve.loadtests.client_overhead` (starts its own tritonserver on loopback from
the exported model repository) or `--url HOST:PORT` for a running one.
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from prometheus_client import CollectorRegistry

from reelserve.client import VideoFeaturesClient
from reelserve.config import DEFAULT
from reelserve.spec import contract as c


def _raw_call(raw: grpcclient.InferenceServerClient, model: str, inputs: dict[str, list[bytes]], outputs) -> None:
    tensors = []
    for name, items in inputs.items():
        t = grpcclient.InferInput(name, [len(items), 1], "BYTES")
        t.set_data_from_numpy(np.array([[i] for i in items], dtype=object))
        tensors.append(t)
    result = raw.infer(model, tensors, outputs=[grpcclient.InferRequestedOutput(o.name) for o in outputs])
    for o in outputs:
        result.as_numpy(o.name)


def measure(url: str, rounds: int, video: bytes) -> list[tuple[str, str, float, float]]:
    raw = grpcclient.InferenceServerClient(url)
    sdk = VideoFeaturesClient(url, registry=CollectorRegistry())
    text = ["what a cute kitten, where was this filmed?"]
    cases = {
        "text_features": (
            lambda: _raw_call(raw, c.TEXT_FEATURES, {"text": [t.encode() for t in text]}, c.TEXT_FEATURES_OUTPUTS),
            lambda: sdk.text_features(text),
        ),
        "video_features": (
            lambda: _raw_call(raw, c.VIDEO_FEATURES, {"video": [video], "text": [b"title"]}, c.VIDEO_FEATURES_OUTPUTS),
            lambda: sdk.video_features([video], ["title"]),
        ),
    }
    rows = []
    for name, (raw_fn, sdk_fn) in cases.items():
        n = rounds if name == "text_features" else max(20, rounds // 10)
        times: dict[str, list[float]] = {"raw tritonclient": [], "reelserve SDK": []}
        for fn in (raw_fn, sdk_fn):  # warm both paths
            fn()
        for _ in range(n):
            for label, fn in (("raw tritonclient", raw_fn), ("reelserve SDK", sdk_fn)):
                t0 = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - t0)
        for label, samples in times.items():
            ms = np.asarray(samples) * 1000
            rows.append((name, label, float(np.median(ms)), float(np.percentile(ms, 99))))
    sdk.close()
    raw.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server's gRPC address (default: start one)")
    parser.add_argument("--model-repository", type=Path, default=DEFAULT.server.model_repository)
    parser.add_argument("--rounds", type=int, default=300, help="text_features calls per path (default 300)")
    args = parser.parse_args(argv)

    from reelserve.samples import SampleVideo

    video = SampleVideo("clip", "", "coffee", "zoom", "h264").render(seconds=1.0, size=(144, 256))
    with ExitStack() as stack:
        url = args.url
        if url is None:
            from reelserve.triton.server import TritonServer

            from .served import replay_server_config

            cfg = replay_server_config(args.model_repository)
            server = stack.enter_context(TritonServer(cfg))
            server.wait_ready(models=[c.VIDEO_FEATURES, c.TEXT_FEATURES])
            url = server.grpc_url
        rows = measure(url, args.rounds, video)
    print(f"{'call':15s} {'client':17s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for name, label, p50, p99 in rows:
        print(f"{name:15s} {label:17s} {p50:8.3f} {p99:8.3f}")
    by = {(n, lab): p50 for n, lab, p50, _ in rows}
    for name in dict.fromkeys(n for n, *_ in rows):
        overhead = by[(name, "reelserve SDK")] - by[(name, "raw tritonclient")]
        print(f"SDK overhead per {name} call (p50 difference): {overhead * 1000:+.0f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
