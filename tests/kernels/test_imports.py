"""The layout of `reelserve.kernels` beyond what `tests/test_layout.py` checks for the whole tree:
op files never import `aot.py`, function-level imports only defer triton, and no submodule name
shadows a public dispatcher. Read from the source with the reader the export fingerprint uses."""

from __future__ import annotations

import reelserve.kernels
from reelserve.config import REPO_ROOT
from reelserve.export.source_tree import all_modules, imports, package_dirs

PACKAGE = "reelserve.kernels"
OPS = {"attention", "mean_pool", "l2_norm"}  # the op files: each imports triton


def _short(name: str) -> str:
    return name.removeprefix(PACKAGE).lstrip(".") or "__init__"


def _siblings() -> dict[str, list[tuple[str, bool]]]:
    """kernels module (short name) -> (kernels module it imports, inside a function?) for each import."""
    dirs = package_dirs(REPO_ROOT)
    found = {}
    for name, path in all_modules(REPO_ROOT).items():
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            ours = [i for i in imports(name, path, dirs) if i.module.startswith(PACKAGE)]
            found[_short(name)] = [(_short(i.module), i.in_function) for i in ours]
    return found


def test_the_op_files_are_there() -> None:
    modules = set(_siblings())
    assert modules >= OPS, sorted(modules)
    assert "pooling" not in modules, "pooling.py was split into mean_pool.py and l2_norm.py"
    # importing a submodule sets it as an attribute of the package: it must not shadow a dispatcher
    assert not modules & set(reelserve.kernels.__all__), modules & set(reelserve.kernels.__all__)


def test_op_files_do_not_import_aot_and_aot_imports_every_op() -> None:
    graph = {name: {target for target, _ in found} for name, found in _siblings().items()}
    for name in OPS | {"_common", "plugin", "reference", "_dispatch", "custom_ops", "__init__"}:
        assert "aot" not in graph[name], f"{name}.py imports aot.py"
    assert graph["aot"] >= OPS, graph["aot"]


def test_function_level_imports_only_defer_triton() -> None:
    """A sibling imported inside a function must be an op file (it imports triton); anything else
    there would be a cycle dodged rather than removed."""
    for name, found in _siblings().items():
        for target, in_function in found:
            assert not in_function or target in OPS, f"{name}.py imports {target} inside a function"
