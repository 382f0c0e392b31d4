"""A repository whose step settings do not match the code fails when tritonserver loads it, naming
the step, the section and the key; it never serves with a default nobody chose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format

from reelserve.config import DEFAULT
from reelserve.export.repository import read_config, write_twin
from reelserve.spec import contract as c
from reelserve.triton.errors import ServerStartError
from reelserve.triton.ports import on_free_ports
from reelserve.triton.server import TritonServer

pytestmark = pytest.mark.integration


def _break_ocr_section(model_dir: Path) -> None:
    """Rename `frames` to `frame` in the step's `ocr` parameter: a typo a hand edit could make."""
    config = read_config(model_dir)
    ocr = json.loads(config.parameters["ocr"].string_value)
    config.parameters["ocr"].string_value = json.dumps({("frame" if k == "frames" else k): v for k, v in ocr.items()})
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))


def test_a_mistyped_setting_fails_the_model_load(model_repository: Path, tmp_path: Path) -> None:
    twin = write_twin(model_repository, tmp_path / "repo", DEFAULT)
    _break_ocr_section(twin / c.OCR)
    server = TritonServer(on_free_ports(DEFAULT.server, twin))
    with pytest.raises(ServerStartError) as failed:
        server.start()
    assert server.returncode is not None, "tritonserver kept running with a model that failed to load"
    message = str(failed.value)
    assert "ocr.ocr does not match OcrConfig" in message, message
    assert "unknown ['frame']" in message and "missing ['frames']" in message, message
