"""`reelserve demo`: export (or reuse), serve, send real short videos over gRPC, print what came back.

It also publishes a small few-shot label bank from its own clips (`samples.write_few_shot_spec`)
to the running server and shows a label learned from example clips alone picking a held-out clip.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from reelserve.config import ReelserveConfig
from reelserve.spec import contract as c
from reelserve.triton.ports import on_free_ports
from reelserve.triton.server import TritonServer

# Searches in three languages: each should find its video (and its label) in the shared space.
TEXT_QUERIES = ("a kitten sleeping on the sofa", "一杯早上的咖啡", "un cohete despegando hacia el espacio")
# A transcribing call costs seconds per narrated clip on a 2-core CPU server (docs/benchmarks.md).
SPEECH_DEADLINE_S = 120.0


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000, q))


def run_demo(cfg: ReelserveConfig, *, rounds: int = 10, repository: Path | None = None) -> int:
    from reelserve.client import VideoFeaturesClient
    from reelserve.export.cpu import export_cpu
    from reelserve.labels.publish import publish, summary
    from reelserve.labels.spec import load_spec
    from reelserve.samples import demo_videos, few_shot_videos, write_few_shot_spec

    repo = repository or cfg.server.model_repository
    start = time.perf_counter()
    report = export_cpu(repo, cfg)
    export_s = time.perf_counter() - start
    print(f"export: {'reused' if report.reused else 'built'} in {export_s:.1f}s -> {repo}")

    videos = demo_videos()
    narrate = shutil.which("espeak-ng") is not None
    clips = [v.render(narrate=narrate) for v in videos]
    print(f"rendered {len(clips)} clips from scikit-image photos ({sum(map(len, clips)) // 1024} KiB in all)")
    if not narrate:
        print("espeak-ng is not installed (apt-get install espeak-ng): the clips have no narration")

    scratch_dir = tempfile.TemporaryDirectory(prefix="reelserve-demo-")  # the few-shot spec, clips and bank store
    scratch = Path(scratch_dir.name)
    server_cfg = replace(on_free_ports(cfg.server, repo), label_banks=scratch / "label_banks")
    start = time.perf_counter()
    with scratch_dir, TritonServer(server_cfg) as server:
        server.wait_ready(models=list(c.ALWAYS_SERVED))
        print(f"tritonserver ready in {time.perf_counter() - start:.2f}s at {server.grpc_url} (log {server.log_path})")
        with VideoFeaturesClient(server.grpc_url) as client:
            client.text_features(["warm-up"])
            features, uploads = [], []
            for v, clip in zip(videos, clips, strict=True):
                t0 = time.perf_counter()
                features.append(client.video_features([clip], [v.title])[0])
                uploads.append(time.perf_counter() - t0)
            latencies = []  # re-uploads: vision, OCR and text come from the response cache when it is on
            for _ in range(rounds):
                for v, clip in zip(videos, clips, strict=True):
                    t0 = time.perf_counter()
                    client.video_features([clip], [v.title])
                    latencies.append(time.perf_counter() - t0)
            queries = client.text_features(list(TEXT_QUERIES))
            speech, speech_s = [], []
            for v, clip in zip(videos, clips, strict=True):
                t0 = time.perf_counter()
                heard = client.video_features([clip], [v.title], transcribe=True, deadline_s=SPEECH_DEADLINE_S)
                speech.append(heard[0])
                speech_s.append(time.perf_counter() - t0)

            start = time.perf_counter()
            published = publish(client, load_spec(write_few_shot_spec(scratch / "spec")), server_cfg.label_banks)
            publish_s = time.perf_counter() - start
            held_out = {
                label: client.video_features([clip.render()], [""], label_bank="demo")[0]
                for label, clip in few_shot_videos()[1].items()
            }

    cached = ", response cache on" if server_cfg.response_cache_mib > 0 else ", response cache off"
    print()
    for v, f in zip(videos, features, strict=True):
        tags = ", ".join(f"{t} {s:.2f}" for t, s in f.tags[:3])
        print(f"{v.name:16s} {v.title}")
        print(f"{'':16s} on-screen text: {' / '.join(f.ocr_text.splitlines()) or '(none)'}")
        print(f"{'':16s} tags: {tags}")
        print(f"{'':16s} zero-shot: {f.top_label} ({f.label_scores[f.top_label]:.2f})   semantic IDs: {f.semantic_ids}")
    print("\nvideo_features_full (transcribe=True): what is said, and what it changes")
    for v, f, heard, took in zip(videos, features, speech, speech_s, strict=True):
        said = f"({heard.asr_language}) {heard.asr_text}" if heard.asr_text else "(no speech)"
        print(f"{v.name:16s} speech: {said}   [{took:.1f}s]")
        if heard.asr_text:
            moved = float(f.embedding @ heard.embedding)
            print(
                f"{'':16s} zero-shot: {heard.top_label} ({heard.label_scores[heard.top_label]:.2f}), "
                f"cosine to the embedding without speech {moved:.2f}, semantic IDs: {heard.semantic_ids}"
            )
    print()
    emb = np.stack([f.embedding for f in features])
    sim = emb @ emb.T
    names = [v.name[:8] for v in videos]
    print("cosine similarity of embeddings")
    print(" " * 17 + " ".join(f"{n:>8s}" for n in names))
    for v, row in zip(videos, sim, strict=True):
        print(f"{v.name:16s} " + " ".join(f"{x:8.2f}" for x in row))
    print()
    for query, text in zip(TEXT_QUERIES, queries, strict=True):
        nearest = videos[int(np.argmax(emb @ text.embedding))].name
        top = max(text.label_scores, key=text.label_scores.get)
        print(f"text_features({query!r}) -> top label {top!r}, nearest video {nearest}")
    print(f"\nfew-shot label bank {published.bank.tag} published in {publish_s:.1f}s (served at once, no restart):")
    print("\n".join(summary(published)))
    for label, f in held_out.items():
        print(
            f"  held-out {label} clip -> {f.top_label} (p {f.label_probs[f.top_label]:.2f}, "
            f"entropy {f.label_entropy:.2f}, margin {f.label_margin:.2f}; learned from examples only)"
        )
    print(
        f"\nvideo_features latency, sequential: first uploads ({len(uploads)} calls) "
        f"p50 {percentile_ms(uploads, 50):.1f} ms, max {max(uploads) * 1000:.1f} ms; "
        f"re-uploads ({len(latencies)} calls{cached}) p50 {percentile_ms(latencies, 50):.1f} ms, "
        f"p99 {percentile_ms(latencies, 99):.1f} ms"
    )
    return 0
