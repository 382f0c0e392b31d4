"""The layout of `reelserve.kernels`, read from its source: no import cycle, even one hidden in a
function body; op files never import `aot.py`; function-level imports only defer triton."""

from __future__ import annotations

import ast
from pathlib import Path

import reelserve.kernels

KERNELS = Path(reelserve.kernels.__file__).parent
MODULES = {p.stem: p for p in KERNELS.glob("*.py")}
OPS = {"attention", "mean_pool", "l2_norm"}  # the op files: each imports triton


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(sibling module imported, inside a function?) for every import of `path`."""
    tree = ast.parse(path.read_text())
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f) if n is not f}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            by_name = [a.name if a.name in MODULES else "__init__" for a in node.names]  # `from . import x`
            targets = [node.module] if node.module else by_name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("reelserve.kernels"):
            rest = node.module.removeprefix("reelserve.kernels").lstrip(".")
            targets = [rest.split(".")[0] if rest else "__init__"]
        elif isinstance(node, ast.Import):
            names = [a.name.removeprefix("reelserve.kernels.") for a in node.names if a.name.startswith("reelserve.k")]
            targets = [n.split(".")[0] for n in names]
        else:
            continue
        found += [(t, id(node) in nested) for t in targets]
    return found


def _graph() -> dict[str, set[str]]:
    return {name: {t for t, _ in _imports(path)} for name, path in MODULES.items()}


def test_the_op_files_are_there() -> None:
    assert set(MODULES) >= OPS, sorted(MODULES)
    assert "pooling" not in MODULES, "pooling.py was split into mean_pool.py and l2_norm.py"
    # importing a submodule sets it as an attribute of the package: it must not shadow a dispatcher
    assert not set(MODULES) & set(reelserve.kernels.__all__), set(MODULES) & set(reelserve.kernels.__all__)


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != "open", "import cycle: " + " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_op_files_do_not_import_aot_and_aot_imports_every_op() -> None:
    graph = _graph()
    for name in OPS | {"_common", "plugin", "reference", "_dispatch", "custom_ops", "__init__"}:
        assert "aot" not in graph[name], f"{name}.py imports aot.py"
    assert graph["aot"] >= OPS, graph["aot"]


def test_function_level_imports_only_defer_triton() -> None:
    """A sibling imported inside a function must be an op file (it imports triton); anything else
    there would be a cycle dodged rather than removed."""
    for name, path in MODULES.items():
        for target, in_function in _imports(path):
            assert not in_function or target in OPS, f"{name}.py imports {target} inside a function"


def test_no_file_over_500_lines() -> None:
    for name, path in MODULES.items():
        assert len(path.read_text().splitlines()) <= 500, name
