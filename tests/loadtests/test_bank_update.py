"""The label-bank update benchmark runs end to end: every call answered, every version reached callers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from reelserve.loadtests import bank_update

pytestmark = pytest.mark.integration


def test_updates_under_load_reach_callers_and_lose_nothing(model_repository: Path) -> None:
    report = bank_update.run(model_repository, updates=2, concurrency=2, gap_s=0.5)
    assert report["calls_failed"] == 0 and report["calls_answered"] > 0
    assert len(report["pickup_s"]) == len(report["switch_s"]) == 2
    assert all(math.isfinite(p) for p in report["pickup_s"]), report  # each new version was answered with
    assert not report["server_restarted"]
