"""The bank store: immutable, numbered versions of each label bank, and a pointer to the current one.

Layout of a store (a directory; in Kubernetes a volume)::

    STORE/<bank>/versions/<n>/bank.json        names, temperature, embedding space, provenance
    STORE/<bank>/versions/<n>/prototypes.npy   float32 [labels, E], unit rows
    STORE/<bank>/CURRENT                       "<n>": the version new requests get

A version is written into a hidden folder and renamed into place (a rename within one file
system is atomic, and fails if another publisher took the number first); `CURRENT` is replaced
with `os.replace`. Nothing in a version folder changes after that, so a reader that pinned
`topics/3` keeps reading exactly `topics/3`, and a rollback is only a new `CURRENT`.

The serving steps read the store through `BankReader`: the current version of a bank is looked
up at most every `refresh_s`, a version is loaded once and kept, and a store that goes missing
or a version that is corrupt leaves the last good version serving (logged, once per cause).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from reelserve.config import LABEL_BANKS_ENV

log = logging.getLogger(__name__)

DEFAULT_BANK = "default"  # the bank a request gets when it names none: the one `reelserve export` wrote
EXPORTED_VERSION = 0  # `default/0`: the exported default bank, inside the model repository
EXPORTED_BANK_DIR = "default_bank"  # its folder in the version folders of `preprocess` and `fusion_heads`
BANK_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # always .fullmatch: `$` alone lets "name\n" through
NUMBER = re.compile(r"[0-9]+")  # ASCII digits (str.isdigit() also takes "³", which int() refuses)
BANK_JSON, PROTOTYPES, CURRENT = "bank.json", "prototypes.npy", "CURRENT"
_FIELDS = {"bank", "version", "labels", "temperature", "calibrated", "embedding_space", "sha256", "created", "report"}


class BankError(ValueError):
    """A bank or version that cannot be used; the message says which and why."""


class UnknownBankError(BankError):
    """No usable bank of that name (the message lists the ones there are)."""


@dataclass(frozen=True)
class Bank:
    """One version of a bank, as the steps score with it."""

    name: str
    version: int
    labels: tuple[str, ...]
    prototypes: np.ndarray  # [C, E] float32, unit rows
    temperature: float
    calibrated: bool
    embedding_space: str
    report: dict  # what `publish` measured (leave-one-out accuracy, ECE, counts)

    @property
    def tag(self) -> str:
        """`bank/version`: what a response's `label_bank_version` says."""
        return f"{self.name}/{self.version}"


def parse_tag(tag: str) -> tuple[str, int]:
    """`"topics/3"` -> ("topics", 3), strictly."""
    name, sep, number = tag.partition("/")
    if not sep or not BANK_NAME.fullmatch(name) or not NUMBER.fullmatch(number):
        raise BankError(f"label bank version {tag!r} is not 'bank/number'")
    return name, int(number)


def check_bank_name(name: str) -> str:
    if not isinstance(name, str) or not BANK_NAME.fullmatch(name):
        raise BankError(f"label bank name {name!r} must match {BANK_NAME.pattern} (it is a directory name)")
    return name


def _digest(prototypes: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(prototypes, dtype="<f4").tobytes()).hexdigest()


def write_version_files(folder: Path, bank: Bank, created: str) -> None:
    """`bank.json` + `prototypes.npy` of `bank` into `folder` (which must exist)."""
    protos = np.ascontiguousarray(bank.prototypes, dtype=np.float32)
    np.save(folder / PROTOTYPES, protos, allow_pickle=False)
    meta = {
        "bank": bank.name,
        "version": bank.version,
        "labels": list(bank.labels),
        "temperature": float(bank.temperature),
        "calibrated": bool(bank.calibrated),
        "embedding_space": bank.embedding_space,
        "sha256": _digest(protos),
        "created": created,
        "report": bank.report,
    }
    (folder / BANK_JSON).write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")


def read_version_files(folder: Path, *, expect: tuple[str, int] | None = None) -> Bank:
    """A version folder, checked whole: fields, shapes, norms, checksum. Raises BankError saying what is wrong."""
    where = str(folder)
    try:
        meta = json.loads((folder / BANK_JSON).read_text(encoding="utf-8"))
        protos = np.load(folder / PROTOTYPES, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:  # EOFError: np.load of an empty file
        raise BankError(f"{where}: cannot read the bank version ({type(e).__name__}: {e})") from e
    if not isinstance(meta, dict) or set(meta) != _FIELDS:
        got = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise BankError(f"{where}/{BANK_JSON}: fields {got}, expected {sorted(_FIELDS)}")
    labels = meta["labels"]
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) and x for x in labels)):
        raise BankError(f"{where}/{BANK_JSON}: 'labels' must be a non-empty list of names")
    if protos.dtype != np.float32 or protos.ndim != 2 or protos.shape[0] != len(labels):
        got = f"{protos.dtype} {list(protos.shape)}"
        raise BankError(f"{where}/{PROTOTYPES}: {got}, expected float32 [{len(labels)}, E]")
    unit = np.isfinite(protos).all() and np.allclose(np.linalg.norm(protos, axis=1), 1.0, atol=1e-3)
    if not unit:
        raise BankError(f"{where}/{PROTOTYPES}: rows must be finite unit vectors")
    if meta["sha256"] != _digest(protos):
        raise BankError(f"{where}: checksum mismatch (a partial or edited version)")
    temperature = meta["temperature"]
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < 100:
        raise BankError(f"{where}/{BANK_JSON}: temperature {temperature!r} must be a positive number")
    name, version = meta["bank"], meta["version"]
    if expect is not None and (name, version) != expect:
        raise BankError(f"{where}: holds {name}/{version}, expected {expect[0]}/{expect[1]}")
    return Bank(
        name=check_bank_name(name),
        version=int(version),
        labels=tuple(labels),
        prototypes=protos,
        temperature=float(temperature),
        calibrated=bool(meta["calibrated"]),
        embedding_space=str(meta["embedding_space"]),
        report=meta["report"] if isinstance(meta["report"], dict) else {},
    )


class BankStore:
    """Publishing side: numbered versions, written atomically; `CURRENT` moved atomically."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def bank_dir(self, name: str) -> Path:
        return self.root / check_bank_name(name)

    def banks(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if BANK_NAME.fullmatch(p.name) and (p / "versions").is_dir())

    def versions(self, name: str) -> list[int]:
        folder = self.bank_dir(name) / "versions"
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if NUMBER.fullmatch(p.name))

    def current(self, name: str) -> int | None:
        try:
            text = (self.bank_dir(name) / CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        if not NUMBER.fullmatch(text):
            raise BankError(f"{self.bank_dir(name) / CURRENT}: {text!r} is not a version number")
        return int(text)

    def read(self, name: str, version: int) -> Bank:
        return read_version_files(self.bank_dir(name) / "versions" / str(version), expect=(name, version))

    def publish(self, bank: Bank) -> Bank:
        """Write `bank` as the next version of its name and make it current; returns it with its number."""
        versions = self.bank_dir(bank.name) / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        while True:
            number = max([0, *self.versions(bank.name)]) + 1
            numbered = replace(bank, version=number)
            staging = Path(tempfile.mkdtemp(prefix=".publishing-", dir=versions))
            staging.chmod(0o755)  # mkdtemp's 0700 would hide the version from a server running as another user
            try:
                write_version_files(staging, numbered, created)
                read_version_files(staging, expect=(bank.name, number))  # what readers will check, before it is visible
                staging.rename(versions / str(number))
            except BaseException as e:  # leave no staging folder behind, whatever went wrong
                shutil.rmtree(staging, ignore_errors=True)
                if isinstance(e, OSError) and (versions / str(number)).exists():
                    continue  # another publisher took this number: take the next
                raise  # a bank that does not pass, no room to write it, ...: not a lost race, no retry
            try:  # concurrent publishers: the newest version stays current
                current = self.current(bank.name)
                newer = current is not None and current > number and current in self.versions(bank.name)
            except BankError:  # a broken CURRENT: publishing repairs it
                newer = False
            if not newer:
                self.set_current(bank.name, number)
            return numbered

    def set_current(self, name: str, version: int) -> None:
        """Point new requests at `version` (it must exist and be whole): publish and rollback."""
        self.read(name, version)
        pointer = self.bank_dir(name) / CURRENT
        tmp = pointer.with_name(f".{CURRENT}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(f"{version}\n")
        os.replace(tmp, pointer)


def store_from_env() -> Path | None:
    """The store the server was started with ($REELSERVE_LABEL_BANKS, set by `TritonServer`), parsed strictly."""
    value = os.environ.get(LABEL_BANKS_ENV, "")
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute():
        raise BankError(f"${LABEL_BANKS_ENV}={value!r} must be an absolute path")
    return path


class BankReader:
    """Serving side: the current version of each bank (refreshed every `refresh_s`) and pinned versions.

    `exported` is the folder of the default bank `reelserve export` wrote (served as `default/0`
    until a `default` bank is published); its embedding space is the served model's, and a bank
    built against another (another text tower, other heads) is refused, never scored.
    """

    def __init__(self, root: Path | None, exported: Path, *, refresh_s: float = 1.0, max_versions: int = 32) -> None:
        self.store = BankStore(root) if root is not None else None
        self.refresh_s = refresh_s
        self.max_versions = max_versions
        self._exported = read_version_files(exported, expect=(DEFAULT_BANK, EXPORTED_VERSION))
        self.embedding_space = self._exported.embedding_space
        self._versions: OrderedDict[tuple[str, int], Bank] = OrderedDict()
        self._current: dict[str, tuple[float, Bank]] = {}  # name -> (checked at, bank)
        self._warned: set[tuple[str, str]] = set()  # (bank, cause): logged once
        self._lock = threading.Lock()

    def _check(self, bank: Bank) -> Bank:
        if bank.embedding_space != self.embedding_space:
            raise BankError(
                f"label bank {bank.tag} was built for embedding space {bank.embedding_space!r}, this server's is "
                f"{self.embedding_space!r} (another model export): publish it again against this server"
            )
        return bank

    def version(self, name: str, number: int) -> Bank:
        """Exactly `name/number` (immutable once written): what a request pinned in `preprocess`."""
        key = (name, number)
        with self._lock:
            if key in self._versions:
                self._versions.move_to_end(key)
                return self._versions[key]
        if key == (DEFAULT_BANK, EXPORTED_VERSION):
            return self._exported
        if self.store is None:
            raise UnknownBankError(f"label bank {name}/{number}: this server has no bank store (--label-banks)")
        bank = self._check(self.store.read(name, number))
        with self._lock:
            self._versions[key] = bank
            while len(self._versions) > self.max_versions:
                self._versions.popitem(last=False)
        return bank

    def current(self, name: str) -> Bank:
        """The version new requests for `name` get; the last good one while the store is unreadable."""
        now = time.monotonic()
        with self._lock:
            cached = self._current.get(name)
        if cached is not None and now - cached[0] < self.refresh_s:
            return cached[1]
        try:
            bank = self._lookup(name)
            if bank is self._exported and cached is not None and cached[1] is not self._exported:
                # a published `default` that is gone (store unmounted, bank removed): like any other bank,
                # keep the last good one rather than fall back to the exported default/0
                bank = self._keep(name, cached[1], "the bank is gone from the store")
        except UnknownBankError:
            if cached is None:
                raise
            bank = self._keep(name, cached[1], "the bank is gone from the store")
        except (BankError, OSError) as e:
            last = cached[1] if cached is not None else self._newest_good(name)
            if last is None:
                raise UnknownBankError(f"label bank {name!r} cannot be used: {e}") from e
            bank = self._keep(name, last, str(e))
        with self._lock:
            self._current[name] = (now, bank)
        return bank

    def _lookup(self, name: str) -> Bank:
        number = None
        if self.store is not None and BANK_NAME.fullmatch(name):
            number = self.store.current(name)
        if number is not None:
            return self.version(name, number)
        if name == DEFAULT_BANK:
            return self._exported
        raise UnknownBankError(f"unknown label bank {name!r}; this server has {self.names()}")

    def _newest_good(self, name: str) -> Bank | None:
        """With `CURRENT` unreadable and nothing served yet (a fresh instance): the newest version that loads.

        Every `preprocess` instance is its own process with its own last good version; this keeps
        one that never served the bank from refusing it while its siblings keep serving.
        """
        try:
            numbers = self.store.versions(name) if self.store is not None else []
        except (BankError, OSError):
            return None
        for number in reversed(numbers):
            try:
                return self.version(name, number)
            except (BankError, OSError):
                continue
        return None

    def _keep(self, name: str, last: Bank, why: str) -> Bank:
        if (name, why) not in self._warned:
            self._warned.add((name, why))
            log.warning("label bank %r: keeping %s: %s", name, last.tag, why)
        return last

    def names(self) -> list[str]:
        try:
            stored = self.store.banks() if self.store is not None else []
        except OSError:
            stored = []
        return sorted({DEFAULT_BANK, *stored})
