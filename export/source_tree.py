"""Our source tree as modules and the imports between them, read from the files (never executed).

The export fingerprint hashes the import closure of the export; `tests/test_layout.py` checks the
whole graph for cycles and layers. Both read imports the same way, from the AST, function-level
imports included: a lazy import hides a dependency from Python's import machinery, not from this.
Modules map to files through `[tool.setuptools] package-dir` of the root's `pyproject.toml`
(`reelserve.export` -> `export/`, ...); without one (an installed wheel) everything is under
`reelserve/`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_PACKAGE_DIR = re.compile(r"^package-dir\s*=\s*\{(.*)\}\s*$", re.MULTILINE)  # a TOML inline table is one line
_PAIR = re.compile(r'"([\w.]+)"\s*=\s*"([^"]+)"')


@dataclass(frozen=True)
class Import:
    module: str  # dotted name: `from a import b` gives a.b when that is a module, else a
    in_function: bool  # inside a def: runs when called, not when the importer is imported


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


def all_modules(root: Path) -> dict[str, Path]:
    """Module name -> file for every module of our packages under `root` (scripts in plain folders are not)."""
    dirs = package_dirs(root)
    found: dict[str, Path] = {}
    for package, folder in dirs.items():
        for path in sorted(folder.rglob("*.py")):
            folders = [d for d in (path.parent, *path.parent.parents) if d.is_relative_to(folder)]
            if not all((d / "__init__.py").is_file() for d in folders):
                continue
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join([package, *parts[:-1]] + ([] if parts[-1] == "__init__" else [parts[-1]]))
            if module_file(name, dirs) == path:  # a folder mapped to a package of its own stays that package's
                found[name] = path
    return found


def imports(module: str, path: Path, dirs: Mapping[str, Path]) -> list[Import]:
    """Every import in `path` (the file of `module`), relative ones resolved, wherever it stands."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    in_defs = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(fn)
    }
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: list[Import] = []
    for node in ast.walk(tree):
        nested = id(node) in in_defs
        if isinstance(node, ast.Import):
            found += [Import(alias.name, nested) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package[: len(package) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            submodules = [f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}", dirs)]
            found += [Import(m, nested) for m in submodules]
            if len(submodules) < len(node.names):  # names defined in `base` itself
                found.append(Import(base, nested))
    return found


def import_closure(module: str, root: Path) -> dict[str, Path]:
    """Module name -> file for `module` and everything of ours it imports, transitively.

    Importing a.b.c runs a/__init__ and a/b/__init__ first, so the packages above each module are in it too.
    """
    dirs = package_dirs(root)
    found: dict[str, Path] = {}
    todo = [module]
    while todo:
        parts = todo.pop().split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in found or (path := module_file(name, dirs)) is None:
                continue
            found[name] = path
            todo.extend(imp.module for imp in imports(name, path, dirs))
    return found
