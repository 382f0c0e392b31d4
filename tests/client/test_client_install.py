"""`pip install .` with no extras gives a working client and no torch (fresh virtualenv, real server)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reelserve.config import REPO_ROOT

pytestmark = pytest.mark.integration

INSTALL_TIMEOUT_S = 300

# Runs inside the fresh virtualenv, from a directory without the sources (so the installed copy is used).
PROBE = """
import importlib.util, sys
from pathlib import Path

import reelserve
from reelserve.client import VideoFeaturesClient

assert Path(reelserve.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), reelserve.__file__
assert "torch" not in sys.modules, "importing the client imported torch"
assert importlib.util.find_spec("torch") is None, "torch got installed with the base package"
extras = [m for m in ("onnxruntime", "av", "pytriton", "tokenizers") if importlib.util.find_spec(m)]
assert not extras, f"serve extras got installed with the base package: {extras}"
with VideoFeaturesClient(sys.argv[1]) as client:
    assert client.is_ready(), f"server at {sys.argv[1]} not ready"
    (f,) = client.text_features(["a kitten"])
    assert "torch" not in sys.modules, "a call imported torch"
    print("embedding", len(f.embedding))
"""


def clean_env() -> dict[str, str]:
    """This process's environment (pip's index settings included) without what points at our .venv."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def make_venv(env_dir: Path) -> Path:
    if importlib.util.find_spec("ensurepip") is None:
        pytest.skip("this Python has no ensurepip: `python -m venv` cannot create an environment with pip")
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(env_dir)], capture_output=True, text=True, timeout=120, env=clean_env()
    )
    if made.returncode != 0 and "ensurepip" in made.stdout + made.stderr:
        pytest.skip(f"`python -m venv` cannot bootstrap pip here (ensurepip): {made.stdout + made.stderr}")
    assert made.returncode == 0, made.stdout + made.stderr
    return env_dir / "bin" / "python"


def test_client_installs_and_works_without_torch(tmp_path: Path, tritonserver) -> None:
    python = make_venv(tmp_path / "client-venv")

    start = time.monotonic()
    # Install from a copy of the sources git knows about: pip builds in-tree, and a stale build/
    # folder in the checkout would otherwise go into the wheel.
    source = tmp_path / "source"
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        if (REPO_ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, source / name)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        env=clean_env(),
    )
    install_s = time.monotonic() - start
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    print(f"\nclient-only install (pip install <sources>, no extras): {install_s:.1f}s")

    run = subprocess.run(
        [str(python), "-c", PROBE, tritonserver.grpc_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert run.stdout.splitlines()[-1:] == ["embedding 384"], run.stdout
