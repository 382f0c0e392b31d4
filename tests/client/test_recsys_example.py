"""The SDK's example pipeline, run as a user would (a subprocess), against the real server."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from reelserve.config import REPO_ROOT
from reelserve.samples import SampleVideo

pytestmark = pytest.mark.integration

EXAMPLE = REPO_ROOT / "client" / "examples" / "recsys_pipeline.py"
CLIPS = (
    SampleVideo("cat", "my cat Chelsea", "chelsea"),
    SampleVideo("coffee", "Café de la mañana", "coffee", codec="vp9", caption="ESPRESSO BAR"),
    SampleVideo("moto", "Motorrad-Tour", "motorcycle_left", "pan"),
)


def write_events(tmp_path: Path) -> Path:
    events = []
    for clip in CLIPS:
        path = tmp_path / f"{clip.name}.video"
        path.write_bytes(clip.render(seconds=1.0))
        events.append({"id": clip.name, "path": str(path), "title": clip.title})
    bad = tmp_path / "broken.video"
    bad.write_bytes(random.Random(0).randbytes(4096))
    # Second in the first batch of two: that batch falls back to per-video calls, the next one does not.
    events.insert(1, {"id": "broken", "path": str(bad), "title": "???"})
    path = tmp_path / "uploads.jsonl"
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")
    return path


def test_recsys_pipeline_rows_and_quarantine(tmp_path: Path, tritonserver) -> None:
    events = write_events(tmp_path)
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--url", tritonserver.grpc_url, "--events", str(events), "--batch-size", "2"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr

    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["cat", "coffee", "moto"]
    for r in rows:
        assert len(r["embedding"]) == 384 and all(isinstance(x, float) for x in r["embedding"])
        assert math.isclose(math.hypot(*r["embedding"]), 1.0, abs_tol=1e-3)  # unit norm, rounded to 6 places
        assert len(r["semantic_ids"]) == 3 and all(isinstance(i, int) for i in r["semantic_ids"])
        assert len(r["tags"]) == 3 and all(isinstance(t, str) and 0 <= s <= 1 for t, s in r["tags"])
        assert isinstance(r["topic"], str) and r["topic"]
        assert r["text_truncated"] is False and isinstance(r["model_version"], str)
    assert [r["on_screen_text"].replace(" ", "") for r in rows] == ["", "ESPRESSOBAR", ""]  # only coffee prints
    assert rows[0]["topic"] == "a cat"

    quarantined = [line for line in run.stderr.splitlines() if line.startswith("quarantined ")]
    assert len(quarantined) == 1, run.stderr
    assert quarantined[0].startswith("quarantined broken:") and "input 'video'" in quarantined[0], run.stderr
    assert "3 ok, 1 quarantined" in run.stderr
