"""The SDK example pipeline, run as a user would, against the real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reelserve.config import REPO_ROOT
from reelserve.samples import SampleVideo, malformed_videos

pytestmark = pytest.mark.integration


def test_recsys_pipeline_rows_and_quarantine(tmp_path: Path, tritonserver) -> None:
    events = []
    for v in (
        SampleVideo("cat", "my cat", "chelsea"),
        SampleVideo("coffee", "café", "coffee", codec="vp9"),
        SampleVideo("moto", "Motorrad", "motorcycle_left", "pan"),
    ):
        path = tmp_path / f"{v.name}.bin"
        path.write_bytes(v.render(seconds=1.0))
        events.append({"id": v.name, "path": str(path), "title": v.title})
    bad = tmp_path / "bad.bin"
    bad.write_bytes(malformed_videos()["random_bytes"])
    events.insert(1, {"id": "broken", "path": str(bad), "title": "?"})
    (tmp_path / "uploads.jsonl").write_text("\n".join(json.dumps(e) for e in events))

    run = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "client/examples/recsys_pipeline.py"),
            "--url",
            tritonserver.grpc_url,
            "--events",
            str(tmp_path / "uploads.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["cat", "coffee", "moto"]
    assert all(len(r["embedding"]) == 384 and len(r["semantic_ids"]) == 3 for r in rows)
    assert rows[0]["topic"] == "a cat"
    quarantine = [line for line in run.stderr.splitlines() if line.startswith("quarantined broken:")]
    assert len(quarantine) == 1 and "input 'video'" in quarantine[0], run.stderr
    assert "3 ok, 1 quarantined" in run.stderr
