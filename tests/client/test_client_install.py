"""`pip install .` with no extras gives a working client and no torch (fresh virtualenv)."""

from __future__ import annotations

import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

from reelserve.config import REPO_ROOT

pytestmark = pytest.mark.integration

PROBE = """
import importlib.util, sys
from reelserve.client import VideoFeaturesClient
assert "torch" not in sys.modules, "the client imported torch"
assert importlib.util.find_spec("torch") is None, "torch got installed with the base package"
with VideoFeaturesClient(sys.argv[1]) as client:
    assert client.is_ready()
    (f,) = client.text_features(["a kitten"])
    print("embedding", len(f.embedding))
"""


def test_client_installs_and_works_without_torch(tmp_path: Path, tritonserver) -> None:
    env_dir = tmp_path / "client-venv"
    try:
        venv.EnvBuilder(with_pip=True).create(env_dir)
    except Exception as e:  # noqa: BLE001 - a Python without ensurepip
        pytest.skip(f"cannot create a virtualenv with pip here: {e}")
    python = env_dir / "bin" / "python"
    start = time.monotonic()
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(REPO_ROOT)], capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    print(f"client-only install: {time.monotonic() - start:.1f}s")
    run = subprocess.run(
        [str(python), "-c", PROBE, tritonserver.grpc_url], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().endswith("embedding 384"), run.stdout
    assert Path(sys.prefix) != env_dir
