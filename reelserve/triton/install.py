"""A runnable copy of the tritonserver inside the nvidia-pytriton wheel.

We use only the wheel's binary, backends and python-backend stub, not PyTriton's Python-callable
serving. They live inside site-packages, which may be read-only and lacks a stub in
`backends/python/`, so `find_tritonserver` prepares a writable copy once under `cache_dir()`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from reelserve.config import cache_dir

from .errors import ServerStartError

__all__ = ["STUB_NAME", "TritonInstall", "find_tritonserver"]

STUB_NAME = "triton_python_backend_stub"
_INSTALL_HINT = "pip install 'reelserve[serve]'"
_COMPLETE_MARKER = ".reelserve-complete"


@dataclass(frozen=True)
class TritonInstall:
    """A runnable copy of the wheel's tritonserver (binary, backends, stub) and its shared libs."""

    root: Path  # the writable copy under cache_dir()
    bin: Path  # root/bin/tritonserver
    backends_dir: Path  # root/backends, python stub included; --backend-directory
    caches_dir: Path  # root/caches; --cache-directory
    lib_dir: Path  # the wheel's nvidia_pytriton.libs; goes first in LD_LIBRARY_PATH
    version: str  # nvidia-pytriton version

    @property
    def stub(self) -> Path:
        return self.backends_dir / "python" / STUB_NAME


_install_lock = threading.Lock()


def find_tritonserver() -> TritonInstall:
    """Locate the nvidia-pytriton wheel and return a ready-to-run copy of its tritonserver.

    The copy is made once per (pytriton version, Python version) under
    `cache_dir()/tritonserver/<version>-py<major><minor>`: it is assembled in a temporary folder
    next to it and renamed into place, so concurrent callers (tests, several servers) never see
    a half-copied tree. The wheel's `nvidia_pytriton.libs` is used in place (via LD_LIBRARY_PATH).
    """
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError(f"nvidia-pytriton is not installed, so there is no tritonserver to run: {_INSTALL_HINT}")
    pkg_dir = Path(next(iter(spec.submodule_search_locations)))
    dist_dir = pkg_dir / "tritonserver"
    lib_dir = pkg_dir.parent / "nvidia_pytriton.libs"
    try:
        version = importlib.metadata.version("nvidia-pytriton")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    if not (dist_dir / "bin" / "tritonserver").is_file():
        raise ServerStartError(f"nvidia-pytriton {version} at {pkg_dir} has no tritonserver binary: {_INSTALL_HINT}")
    if not lib_dir.is_dir():
        raise ServerStartError(f"nvidia-pytriton {version}: shared libraries folder {lib_dir} is missing; reinstall it")

    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub_src = dist_dir / "python_backend_stubs" / py / STUB_NAME
    if not stub_src.is_file():
        have = sorted(p.name for p in (dist_dir / "python_backend_stubs").glob("*") if (p / STUB_NAME).is_file())
        raise ServerStartError(
            f"nvidia-pytriton {version} has no python-backend stub for Python {py}"
            f" (it has: {', '.join(have) or 'none'}); run reelserve with one of those Python versions"
        )

    parent = cache_dir() / "tritonserver"
    root = parent / f"{version}-py{sys.version_info.major}{sys.version_info.minor}"
    install = TritonInstall(
        root=root,
        bin=root / "bin" / "tritonserver",
        backends_dir=root / "backends",
        caches_dir=root / "caches",
        lib_dir=lib_dir,
        version=version,
    )
    if _is_complete(install):
        return install
    with _install_lock:
        if not _is_complete(install):
            _prepare_copy(dist_dir, stub_src, install)
    return install


def _is_complete(install: TritonInstall) -> bool:
    return (install.root / _COMPLETE_MARKER).is_file() and install.bin.is_file() and install.stub.is_file()


def _prepare_copy(dist_dir: Path, stub_src: Path, install: TritonInstall) -> None:
    """Copy the wheel's tree and the stub into a temp folder, then rename it to `install.root`."""
    parent = install.root.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{install.root.name}.", dir=parent))
    try:
        shutil.copytree(
            dist_dir,
            tmp,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"),
        )
        stub_dst = tmp / "backends" / "python" / STUB_NAME
        shutil.copy2(stub_src, stub_dst)
        stub_dst.chmod(0o755)
        (tmp / "bin" / "tritonserver").chmod(0o755)
        (tmp / _COMPLETE_MARKER).write_text(f"copied from {dist_dir}\n")
        if install.root.exists() and not _is_complete(install):
            # A broken leftover (files deleted by hand): move it aside, then replace it.
            trash = Path(tempfile.mkdtemp(prefix=f".{install.root.name}.broken.", dir=parent))
            os.replace(install.root, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(tmp, install.root)
        except OSError:
            # Another process renamed its copy into place first; theirs is as good as ours.
            if not _is_complete(install):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not _is_complete(install):
        raise ServerStartError(f"could not prepare tritonserver under {install.root}")
