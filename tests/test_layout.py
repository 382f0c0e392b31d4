"""The tree's shape, checked from the source: no import cycle, layers that hold, files of one job.

Imports are read from the AST of every module, function-level imports included (a lazy import
hides a cycle from Python's import machinery, not from this test). Module names come from the
package-dir map in pyproject.toml, as the installed package sees them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from reelserve.config import REPO_ROOT

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

MAX_LINES = 500  # per non-test module: one job per file


@cache
def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of every reelserve package."""
    tool = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dirs = tool["package-dir"]
    found: dict[str, Path] = {}
    for package in tool["packages"]:
        top = max((p for p in package_dirs if package == p or package.startswith(p + ".")), key=len)
        below = package[len(top) :].strip(".")
        folder = REPO_ROOT / package_dirs[top] / Path(*below.split(".") if below else ())
        assert folder.is_dir(), f"pyproject.toml lists {package}, but {folder} does not exist"
        for path in sorted(folder.glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def _imported(name: str, path: Path) -> Iterator[str]:
    """Every module name `path` imports anywhere in its body (relative imports resolved)."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # `from pkg import module` depends on pkg.module; `from module import name` on module
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules()]
            yield from submodules
            if len(submodules) < len(node.names):
                yield base


@cache
def graph() -> dict[str, set[str]]:
    """reelserve module -> the reelserve modules it imports."""
    known = modules()
    return {name: {m for m in _imported(name, path) if m in known and m != name} for name, path in known.items()}


def _closure(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for m in graph()[todo.pop()] - seen:
            seen.add(m)
            todo.append(m)
    return seen


def _third_party(names: set[str]) -> set[str]:
    return {m.split(".")[0] for n in names for m in _imported(n, modules()[n]) if not m.startswith("reelserve")}


def test_the_map_finds_every_package() -> None:
    names = set(modules())
    for package in ("reelserve.spec.contract", "reelserve.serving.steps", "reelserve.kernels", "reelserve.client"):
        assert package in names


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components of the import graph: every one a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph()[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph()):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_client_needs_no_torch_and_no_server_code() -> None:
    reach = {m for name in modules() if name.startswith("reelserve.client") for m in _closure(name)}
    assert reach <= {n for n in modules() if n.startswith(("reelserve.client", "reelserve.spec"))} | {
        "reelserve.config"
    }, reach
    client = {n for n in modules() if n.startswith("reelserve.client")} | reach
    assert not _third_party(client) & {"torch", "triton", "onnxruntime", "onnx", "av", "tensorrt"}


def test_kernels_import_nothing_of_serving() -> None:
    for name in (n for n in modules() if n.startswith("reelserve.kernels")):
        outside = {m for m in _closure(name) if not m.startswith("reelserve.kernels")}
        assert not outside, f"{name} reaches {sorted(outside)}"


def test_the_spec_is_plain_data() -> None:
    spec = {n for n in modules() if n.startswith("reelserve.spec")}
    for name in spec:
        assert _closure(name) <= spec | {"reelserve.config"}, name
    assert not _third_party(spec | {"reelserve.config"}) & {"numpy", "torch", "tritonclient", "onnxruntime"}


def test_no_module_over_the_size_of_one_job() -> None:
    sizes = {str(p.relative_to(REPO_ROOT)): len(p.read_text().splitlines()) for p in modules().values()}
    long = {path: n for path, n in sizes.items() if n > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"
