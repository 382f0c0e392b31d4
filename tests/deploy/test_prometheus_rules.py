"""The SLO rules as code: `promtool check rules` and `promtool test rules` (Debian's prometheus package)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from reelserve.client._metrics import LATENCY_BUCKETS
from reelserve.config import DEFAULT, REPO_ROOT

RULES = REPO_ROOT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: `.ci/run` installs Debian's `prometheus` package (apt-get install prometheus)"
    return path


def test_rules_are_valid(promtool) -> None:
    run = subprocess.run([promtool, "check", "rules", "slo_rules.yml"], cwd=RULES, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_rules_unit_tests_pass(promtool) -> None:
    run = subprocess.run([promtool, "test", "rules", "slo_rules_test.yml"], cwd=RULES, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_latency_rules_use_the_configured_slo() -> None:
    """The `le` bucket of every latency SLI is `SloConfig`'s bound: the harness, bench and rules share one SLO."""
    text = (RULES / "slo_rules.yml").read_text()
    slo = DEFAULT.slo
    for model, bound_ms in (
        ("video_features", slo.video_features_p99_ms),
        ("video_features_full", slo.video_features_full_p99_ms),
    ):
        buckets = {float(le) for le in re.findall(rf'model="{model}", outcome="ok", le="([0-9.]+)"', text)}
        assert buckets == {bound_ms / 1000}, model
        assert bound_ms / 1000 in LATENCY_BUCKETS  # the client's histogram has that edge
    assert f"video_features {slo.video_features_p99_ms:g} ms" in text
    assert f"video_features_full {slo.video_features_full_p99_ms / 1000:g} s" in text
