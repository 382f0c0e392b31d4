"""`reelserve` command line: help for every command, plain errors for a bad model repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reelserve.cli import build_parser

SUBCOMMANDS = ("export", "serve", "demo", "gpu-check")


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "reelserve.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_building_the_cli_imports_no_client_and_no_torch() -> None:
    """`reelserve gpu-check` runs on a GPU image with torch alone; `--help` stays fast."""
    probe = "import json, sys; import reelserve.cli as cli; cli.build_parser(); print(json.dumps(list(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    heavy = set(json.loads(result.stdout)) & {"tritonclient", "grpc", "torch", "reelserve.client"}
    assert not heavy, f"building the parser imported {sorted(heavy)}"


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


def test_gpu_export_flags_are_checked_before_any_work() -> None:
    only = _cli("export", "--onnx-only")
    assert only.returncode == 2 and "--onnx-only applies to --target gpu" in only.stderr, only.stderr
    no_out = _cli("export", "--target", "gpu", "--onnx-only")
    assert no_out.returncode == 2 and "give --out DIR" in no_out.stderr, no_out.stderr


def test_gpu_check_refuses_without_a_gpu_and_says_why(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: gpu-check would run for real (minutes)")
    result = _cli("gpu-check", "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "cannot run here: no CUDA GPU" in result.stderr


def test_export_ocr_frames_flag_reaches_the_config(capsys) -> None:
    from reelserve.cli import build_parser, export_config

    cfg = export_config(build_parser().parse_args(["export", "--ocr-frames", "1", "--text-tower", "minilm"]))
    assert cfg.ocr.frames == 1 and cfg.text.tower == "minilm"
    assert export_config(build_parser().parse_args(["export"])).ocr.frames == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["export", "--ocr-frames", "-1"])
    assert "--ocr-frames: must be 0 or more, got -1" in capsys.readouterr().err


def test_export_asr_flag_reaches_the_config(capsys) -> None:
    from reelserve.cli import build_parser, export_config

    assert export_config(build_parser().parse_args(["export"])).asr.model == "base"
    for model in ("tiny-en", "off"):
        assert export_config(build_parser().parse_args(["export", "--asr", model])).asr.model == model
    with pytest.raises(SystemExit):
        build_parser().parse_args(["export", "--asr", "large"])
    assert "invalid choice: 'large'" in capsys.readouterr().err


def test_serve_help_documents_replicas_and_the_front_door(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--replicas" in out and "nginx" in out and "front door" in out
    assert "a cancelled ensemble call crashes tritonserver 2.51" in out


def test_serve_refuses_zero_replicas_plainly() -> None:
    result = _cli("serve", "--replicas", "0", timeout=60)
    assert result.returncode == 2
    assert "--replicas must be at least 1, got 0" in result.stderr


def test_serve_replicas_with_a_missing_repository_is_a_plain_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = _cli("serve", "--replicas", "2", "--model-repository", str(missing), timeout=120)
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
