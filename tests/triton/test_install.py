"""find_tritonserver (`reelserve/triton/install.py`): a runnable copy of the wheel's tritonserver, made once."""

from __future__ import annotations

import os
import sys

import pytest

from reelserve.triton.errors import ServerStartError
from reelserve.triton.install import find_tritonserver


def test_find_tritonserver_prepares_a_runnable_copy_once() -> None:
    first = find_tritonserver()
    second = find_tritonserver()
    assert first == second
    assert os.access(first.bin, os.X_OK)
    assert os.access(first.stub, os.X_OK)
    assert first.root.name == f"{first.version}-py{sys.version_info.major}{sys.version_info.minor}"
    assert first.lib_dir.is_dir()


def test_missing_pytriton_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pytriton" else real(name, *a))
    with pytest.raises(ServerStartError, match=r"pip install 'reelserve\[serve\]'"):
        find_tritonserver()
