"""The response-cache bench: its upload order, the counters it reads, and a short run on a real server."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelserve.loadtests import triton_metrics
from reelserve.loadtests.cache_bench import cache_deltas, main, run, upload_order
from reelserve.spec import contract as c

pytestmark = pytest.mark.integration


def test_upload_order_repeats_only_what_was_uploaded_before() -> None:
    order = upload_order(40, 0.3, seed=3)
    assert len(order) == 40 and len(set(order)) == 28
    seen: set[int] = set()
    for i in order:
        assert i in seen or i == len(seen), "distinct clips go out in order; a repeat follows its first upload"
        seen.add(i)
    assert upload_order(40, 0.3, seed=3) == order
    assert upload_order(5, 0.0) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="duplicate_share"):
        upload_order(10, 1.0)


def test_the_command_refuses_a_share_that_leaves_nothing_to_repeat(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--uploads", "10", "--duplicate-share", "1.0"])
    assert e.value.code == 2 and "duplicate_share must be in [0, 1)" in capsys.readouterr().err


def test_cache_counters_are_read_per_model_and_differenced() -> None:
    text = "\n".join(
        [
            "# HELP nv_cache_num_hits_per_model Number of cache hits per model",
            "# TYPE nv_cache_num_hits_per_model counter",
            f'nv_cache_num_hits_per_model{{model="{c.VISION_ENCODER}",version="1"}} 6',
            "# HELP nv_cache_num_misses_per_model Number of cache misses per model",
            "# TYPE nv_cache_num_misses_per_model counter",
            f'nv_cache_num_misses_per_model{{model="{c.VISION_ENCODER}",version="1"}} 14',
            "# HELP nv_cache_hit_duration_per_model Total cache hit duration per model, in microseconds",
            "# TYPE nv_cache_hit_duration_per_model counter",
            f'nv_cache_hit_duration_per_model{{model="{c.VISION_ENCODER}",version="1"}} 120',
            "",
        ]
    )
    after = triton_metrics.parse_cache(text)
    assert after[c.VISION_ENCODER]["hits"] == 6 and after[c.VISION_ENCODER]["misses"] == 14
    before = {c.VISION_ENCODER: {"hits": 1.0, "misses": 4.0, "hit_us": 20.0, "miss_us": 0.0}}
    row = cache_deltas(before, after)[c.VISION_ENCODER]
    assert row["hits"] == 5 and row["hit_rate"] == pytest.approx(5 / 15) and row["hit_us"] == pytest.approx(20.0)


def test_re_uploads_hit_every_cached_step_and_answer_the_same(model_repository: Path) -> None:
    lines = run(model_repository, uploads=10, duplicate_share=0.3)
    rows = {line.split()[0]: line.split() for line in lines}
    for step in (c.VISION_ENCODER, c.OCR, c.TEXT_ENCODER):
        hits, misses = float(rows[step][1]), float(rows[step][2])
        assert (hits, misses) == (3, 7), f"{step}: 3 re-uploads of 7 clips should hit, got {hits} / {misses}"
    assert lines[-1].endswith("max |embedding difference| 0"), lines[-1]
