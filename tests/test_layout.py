"""The tree's shape, checked from the source: no import cycle, layers that hold, files of one job.

Imports are read from the AST of every module (`reelserve.export.source_tree`, the reader the export
fingerprint uses), function-level imports included: a lazy import hides a cycle from Python's
import machinery, not from this test.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from reelserve.config import REPO_ROOT
from reelserve.export.source_tree import all_modules, imports, package_dirs

MAX_LINES = 500  # per non-test module: one job per file


@cache
def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of ours."""
    return all_modules(REPO_ROOT)


def _imported(name: str, path: Path) -> list[str]:
    return [i.module for i in imports(name, path, package_dirs(REPO_ROOT))]


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
