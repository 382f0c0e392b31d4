"""A recsys feature pipeline on reelserve: upload events in, one feature row per video out.

    reelserve serve &   # gRPC on 127.0.0.1:8001
    python client/examples/recsys_pipeline.py --events uploads.jsonl --out features.jsonl

`uploads.jsonl` holds one event per line: {"id": "v1", "path": "clip.mp4", "title": "..."} (`id`
defaults to the file name, `title` to ""). Without --events the demo clips of `reelserve.samples`
are used (rendering them needs `pip install av scikit-image`); the pipeline itself needs only the
client (`pip install reelserve`: numpy + gRPC, no torch). A batch holding a bad
upload is retried one video at a time and the bad ones are quarantined with the server's message.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from reelserve.client import InvalidArgumentError, ReelserveError, VideoFeatures, VideoFeaturesClient


@dataclass(frozen=True)
class Upload:
    id: str
    title: str
    video: bytes


def demo_uploads() -> list[Upload]:
    try:
        from reelserve.samples import demo_videos

        return [Upload(v.name, v.title, v.render()) for v in demo_videos()]
    except ImportError as e:
        sys.exit(f"no --events given, and the demo clips cannot be rendered here ({e}); pass --events FILE.jsonl")


def read_events(path: Path) -> Iterator[Upload]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                event = json.loads(line)
                video = Path(event["path"])
                yield Upload(str(event.get("id", video.name)), event.get("title", ""), video.read_bytes())


def batches(uploads: Iterable[Upload], size: int) -> Iterator[list[Upload]]:
    batch: list[Upload] = []
    for upload in uploads:
        batch.append(upload)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def feature_row(upload: Upload, f: VideoFeatures) -> dict:
    return {
        "id": upload.id,
        "embedding": [round(float(x), 6) for x in f.embedding],
        "semantic_ids": list(f.semantic_ids),
        "tags": [[tag, round(score, 4)] for tag, score in f.tags[:3]],
        "topic": f.top_label,
        "on_screen_text": f.ocr_text,
        "text_truncated": f.text_truncated,
        "model_version": f.model_version,
    }


def extract(client: VideoFeaturesClient, batch: list[Upload]) -> tuple[list[dict], list[tuple[str, str]]]:
    """(rows, quarantined (id, reason)) of one batch: one batched call, per-video calls if it is refused."""
    try:
        features = client.video_features_batched([u.video for u in batch], [u.title for u in batch])
        return [feature_row(u, f) for u, f in zip(batch, features, strict=True)], []
    except InvalidArgumentError:
        rows, quarantined = [], []
        for u in batch:
            try:
                rows.append(feature_row(u, client.video_features([u.video], [u.title])[0]))
            except InvalidArgumentError as e:
                quarantined.append((u.id, e.details))
        return rows, quarantined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Turn upload events into recsys feature rows via reelserve.")
    parser.add_argument("--url", default="127.0.0.1:8001", help="reelserve gRPC address (default %(default)s)")
    parser.add_argument("--events", type=Path, help="JSONL of {id, path, title}; default: the demo clips")
    parser.add_argument("--out", type=Path, help="JSONL feature rows (default: stdout)")
    parser.add_argument("--deadline-s", type=float, default=30.0, help="per server call (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="uploads per batch (default %(default)s)")
    args = parser.parse_args(argv)

    uploads = read_events(args.events) if args.events else demo_uploads()
    start, ok, quarantined, status = time.perf_counter(), 0, [], 0
    out: TextIO = args.out.open("w", encoding="utf-8") if args.out else sys.stdout
    try:
        with VideoFeaturesClient(args.url, deadline_s=args.deadline_s) as client:
            client.wait_until_ready(timeout_s=args.deadline_s)
            for batch in batches(uploads, args.batch_size):
                rows, bad = extract(client, batch)
                out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
                ok, quarantined = ok + len(rows), quarantined + bad
    except ReelserveError as e:  # server down, deadline, auth: stop, and say how far we got
        print(f"recsys_pipeline: stopped: {e}", file=sys.stderr)
        status = 1
    finally:
        if out is not sys.stdout:
            out.close()
    for upload_id, reason in quarantined:
        print(f"quarantined {upload_id}: {reason}", file=sys.stderr)
    print(f"{ok} ok, {len(quarantined)} quarantined in {time.perf_counter() - start:.2f}s", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
