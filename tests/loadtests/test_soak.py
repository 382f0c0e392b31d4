"""The soak runner: a short real run on loopback writes its table, JSON and plot; the memory verdict's arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reelserve.loadtests.soak import main, memory_growth_mib


def _rows(totals: list[float]) -> list[dict]:
    return [{"total_rss_mib": t} for t in totals]


def test_growth_ignores_the_warm_up_third_and_sees_a_leak() -> None:
    assert memory_growth_mib(_rows([100, 300, 500, 500, 500, 500, 501, 500, 500])) == pytest.approx(0.0)
    assert memory_growth_mib(_rows([100, 110, 120, 200, 210, 220, 300, 310, 320])) == pytest.approx(100.0)
    assert memory_growth_mib(_rows([50])) == 0.0


@pytest.mark.integration
def test_short_soak_reports_every_window(model_repository: Path, tmp_path: Path, capsys) -> None:
    code = main(
        [
            "--model-repository", str(model_repository), "--minutes", "0.2", "--window-s", "4", "--rate", "3",
            "--mix", "video_short=0.5,text=0.5", "--max-growth-mib", "100000", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((tmp_path / "soak.json").read_text())
    windows = report["windows"]
    assert len(windows) == 3 and all(w["ok"] == w["sent"] > 0 for w in windows)
    assert all(w["server_rss_mib"] > 10 and w["stubs_rss_mib"] > 100 for w in windows), windows
    assert report["summary"]["errors"] == 0 and (tmp_path / "soak.png").stat().st_size > 0
    assert "server MiB" in out and "memory" in out
