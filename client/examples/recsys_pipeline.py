"""A recsys feature pipeline on reelserve: upload events in, one feature row per video out.

    python client/examples/recsys_pipeline.py --url 127.0.0.1:8001 --events uploads.jsonl > features.jsonl

`uploads.jsonl` has one object per line: {"id": "...", "path": "clip.mp4", "title": "..."}.
Without --events, the demo clips rendered from scikit-image's photos are used (needs the
`reelserve[serve]` extras); the client itself needs only `pip install reelserve` (no torch).
Bad uploads are quarantined with the server's message; nothing else stops the batch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from reelserve.client import InvalidArgumentError, VideoFeatures, VideoFeaturesClient


@dataclass(frozen=True)
class Upload:
    id: str
    video: bytes
    title: str


def read_events(path: Path | None) -> list[Upload]:
    if path is None:
        try:
            from reelserve.samples import demo_videos
        except ImportError:
            sys.exit("no --events given and the demo clips need `pip install 'reelserve[serve]'`")
        return [Upload(v.name, v.render(), v.title) for v in demo_videos()]
    uploads = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            event = json.loads(line)
            uploads.append(Upload(event["id"], Path(event["path"]).read_bytes(), event.get("title", "")))
    return uploads


def feature_row(upload: Upload, f: VideoFeatures) -> dict:
    return {
        "id": upload.id,
        "embedding": [round(float(x), 6) for x in f.embedding],
        "semantic_ids": list(f.semantic_ids),
        "tags": [[tag, round(score, 4)] for tag, score in f.tags[:3]],
        "topic": f.top_label,
        "text_truncated": f.text_truncated,
        "model_version": f.model_version,
    }


def extract(client: VideoFeaturesClient, uploads: list[Upload], out: TextIO) -> tuple[int, list[tuple[str, str]]]:
    """Batched call first; if the batch holds a bad upload, fall back to one call per upload."""
    try:
        features = client.video_features_batched([u.video for u in uploads], [u.title for u in uploads])
        pairs = list(zip(uploads, features, strict=True))
        quarantined: list[tuple[str, str]] = []
    except InvalidArgumentError:
        pairs, quarantined = [], []
        for upload in uploads:
            try:
                pairs.append((upload, client.video_features([upload.video], [upload.title])[0]))
            except InvalidArgumentError as e:
                quarantined.append((upload.id, e.details))
    for upload, f in pairs:
        out.write(json.dumps(feature_row(upload, f), ensure_ascii=False) + "\n")
    return len(pairs), quarantined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Turn upload events into recsys feature rows via reelserve.")
    parser.add_argument("--url", default="127.0.0.1:8001", help="reelserve gRPC address (default %(default)s)")
    parser.add_argument("--events", type=Path, help="JSONL of {id, path, title}; default: the demo clips")
    parser.add_argument("--out", type=Path, help="JSONL output (default: stdout)")
    parser.add_argument("--deadline-s", type=float, default=30.0, help="per call (default %(default)s)")
    args = parser.parse_args(argv)

    uploads = read_events(args.events)
    start = time.perf_counter()
    with VideoFeaturesClient(args.url, deadline_s=args.deadline_s) as client:
        client.wait_until_ready(timeout_s=30)
        out = args.out.open("w", encoding="utf-8") if args.out else sys.stdout
        try:
            ok, quarantined = extract(client, uploads, out)
        finally:
            if args.out:
                out.close()
    for upload_id, reason in quarantined:
        print(f"quarantined {upload_id}: {reason}", file=sys.stderr)
    print(f"{ok} ok, {len(quarantined)} quarantined in {time.perf_counter() - start:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
