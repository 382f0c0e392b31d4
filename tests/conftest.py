"""Shared fixtures: the exported model repository and one real tritonserver for the session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reelserve.config import DEFAULT, REPO_ROOT
from reelserve.spec import contract as c

# Tests never reach a model hub; the packaged weights load from site-packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Without a GPU, Triton kernels run in Triton's interpreter; it must be chosen before any
# kernel module is imported (the dispatcher in reelserve.kernels imports them lazily).
if not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def model_repository() -> Path:
    """The CPU-target repository of this tree, exported once (reused when the fingerprint matches).

    `REELSERVE_TEST_REPOSITORY=DIR` tests a repository exported elsewhere, as it is (no export).
    """
    given = os.environ.get("REELSERVE_TEST_REPOSITORY")
    if given:
        return Path(given)
    from reelserve.export.cpu import export_cpu

    root = REPO_ROOT / "model_repository"
    export_cpu(root, DEFAULT, progress=False, log=lambda _msg: None)
    return root


@pytest.fixture(scope="session")
def tritonserver(model_repository: Path):
    """A real tritonserver on free loopback ports, serving the exported repository."""
    from reelserve.triton.ports import on_free_ports
    from reelserve.triton.server import TritonServer

    cfg = on_free_ports(DEFAULT.server, model_repository)
    with TritonServer(cfg) as server:
        server.wait_ready(models=[c.VIDEO_FEATURES, c.TEXT_FEATURES])
        yield server


@pytest.fixture(scope="session")
def client(tritonserver):
    from reelserve.client import VideoFeaturesClient

    with VideoFeaturesClient(tritonserver.grpc_url) as cl:
        yield cl
