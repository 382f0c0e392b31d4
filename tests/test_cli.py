"""`reelserve` command line: help for every command, plain errors for a bad model repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reelserve.cli import build_parser

SUBCOMMANDS = ("export", "serve", "demo")


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "reelserve.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_top_level_help_subprocess() -> None:
    result = _cli("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: reelserve"), result.stdout
    for name in SUBCOMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: reelserve {command}"), out
    assert "--model-repository" in out if command in ("serve", "demo") else "--out" in out


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("reelserve ")


def test_no_command_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([])
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_serve_missing_repository_is_a_plain_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-repository"
    result = _cli("serve", "--model-repository", str(missing), timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    assert str(missing) in result.stderr, result.stderr
    assert "does not exist" in result.stderr, result.stderr
    assert not missing.exists(), "serve must not create the repository"
