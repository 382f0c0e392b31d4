"""The bank store: numbered immutable versions, an atomic CURRENT, and the serving side's reader.

Versions are checked whole when read (fields, shapes, norms, checksum); the reader refreshes the
current version every `refresh_s`, keeps pinned versions, refuses banks of another embedding
space and keeps serving the last good version while the store is broken.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from reelserve.config import LABEL_BANKS_ENV
from reelserve.labels import store as store_module
from reelserve.labels.store import (
    BANK_JSON,
    CURRENT,
    DEFAULT_BANK,
    EXPORTED_VERSION,
    PROTOTYPES,
    Bank,
    BankError,
    BankReader,
    BankStore,
    UnknownBankError,
    check_bank_name,
    parse_tag,
    read_version_files,
    store_from_env,
    write_version_files,
)

E = 16
SPACE = "test-space/minilm+effnet-lite0"
OTHER_SPACE = "another-export/e5-small"
LOGGER = "reelserve.labels.store"


def unit_rows(n: int, seed: int, dim: int = E) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def make_bank(
    name: str = "topics",
    *,
    labels: tuple[str, ...] = ("cats", "dogs", "rocket launch"),
    seed: int = 0,
    version: int = 0,
    space: str = SPACE,
    temperature: float = 0.05,
    calibrated: bool = True,
    report: dict | None = None,
) -> Bank:
    return Bank(
        name=name,
        version=version,
        labels=labels,
        prototypes=unit_rows(len(labels), seed),
        temperature=temperature,
        calibrated=calibrated,
        embedding_space=space,
        report={"loo_accuracy": 0.75, "ece": 0.04, "examples": 12, "seed": seed} if report is None else report,
    )


def sha(protos: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(protos, dtype="<f4").tobytes()).hexdigest()


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def edit_meta(folder: Path, **changes) -> None:
    meta = json.loads((folder / BANK_JSON).read_text(encoding="utf-8"))
    meta.update(changes)
    (folder / BANK_JSON).write_text(json.dumps(meta), encoding="utf-8")


def save_protos(folder: Path, protos: np.ndarray, *, fix_checksum: bool) -> None:
    """Replace a version's prototypes; `fix_checksum` also updates bank.json so only the named problem is left."""
    np.save(folder / PROTOTYPES, protos, allow_pickle=False)
    if fix_checksum:
        edit_meta(folder, sha256=sha(protos))


def hidden_leftovers(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".*"))


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    """The default bank as `reelserve export` writes it: `default/0` in a version folder of the repository."""
    folder = tmp_path / "model_repository" / "fusion_heads" / "1" / "default_bank"
    folder.mkdir(parents=True)
    bank = make_bank(DEFAULT_BANK, labels=("sports", "music", "火箭发射", "cooking"), seed=100, calibrated=False)
    write_version_files(folder, bank, created="export")
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "label_banks"


@pytest.fixture
def store(root: Path) -> BankStore:
    return BankStore(root)


def version_dir(root: Path, name: str, n: int) -> Path:
    return root / name / "versions" / str(n)


# --- publishing ----------------------------------------------------------------------------------------------------


def test_publish_numbers_versions_from_one_and_moves_current(store: BankStore, root: Path) -> None:
    assert store.banks() == [] and store.versions("topics") == [] and store.current("topics") is None
    for n in (1, 2, 3):
        published = store.publish(make_bank(seed=n))
        assert published.version == n and published.tag == f"topics/{n}"
        assert store.current("topics") == n
        assert (root / "topics" / CURRENT).read_text() == f"{n}\n"
    assert store.versions("topics") == [1, 2, 3]
    assert store.banks() == ["topics"]
    assert hidden_leftovers(root) == []


def test_publish_ignores_the_given_version_number(store: BankStore) -> None:
    assert store.publish(make_bank(version=7)).version == 1
    assert store.publish(make_bank(version=1)).version == 2


def test_banks_are_numbered_independently(store: BankStore) -> None:
    assert store.publish(make_bank("topics")).version == 1
    assert store.publish(make_bank("news")).version == 1
    assert store.publish(make_bank("topics")).version == 2
    assert store.banks() == ["news", "topics"]
    assert (store.current("news"), store.current("topics")) == (1, 2)


def test_read_returns_exactly_what_was_published(store: BankStore) -> None:
    given = make_bank(
        labels=("cats", "dogs", "火箭发射", "un été à Paris"),
        seed=7,
        temperature=0.0375,
        calibrated=False,
        report={"loo_accuracy": None, "ece": 0.125, "counts": {"cats": 3, "火箭发射": 1}, "spec": "banks/t.yaml"},
    )
    published = store.publish(given)
    got = store.read("topics", published.version)
    assert got.name == "topics" and got.version == 1 and got.tag == "topics/1"
    assert got.labels == given.labels and isinstance(got.labels, tuple)
    assert got.prototypes.dtype == np.float32 and got.prototypes.shape == (4, E)
    assert got.prototypes.tobytes() == given.prototypes.tobytes()  # bit-equal
    assert got.temperature == given.temperature
    assert got.calibrated is False
    assert got.embedding_space == SPACE
    assert got.report == given.report
    assert published.prototypes.tobytes() == given.prototypes.tobytes() and published.labels == given.labels


def test_published_float64_prototypes_are_stored_as_float32(store: BankStore) -> None:
    bank = make_bank()
    wide = Bank(**{**bank.__dict__, "prototypes": bank.prototypes.astype(np.float64)})
    store.publish(wide)
    got = store.read("topics", 1)
    assert got.prototypes.dtype == np.float32
    np.testing.assert_array_equal(got.prototypes, bank.prototypes)


def test_versions_are_never_rewritten(store: BankStore, root: Path) -> None:
    store.publish(make_bank(seed=1))
    first = version_dir(root, "topics", 1)
    before = files_of(first)
    stat_before = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    assert set(before) == {BANK_JSON, PROTOTYPES}
    store.publish(make_bank(seed=2, labels=("a", "b")))
    store.set_current("topics", 1)
    store.publish(make_bank(seed=3))
    assert files_of(first) == before
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == stat_before
    assert store.read("topics", 1).prototypes.tobytes() == make_bank(seed=1).prototypes.tobytes()
    assert store.versions("topics") == [1, 2, 3]


def test_bank_json_records_the_checksum_and_creation_time(store: BankStore, root: Path) -> None:
    bank = store.publish(make_bank(seed=4))
    meta = json.loads((version_dir(root, "topics", 1) / BANK_JSON).read_text(encoding="utf-8"))
    assert meta["bank"] == "topics" and meta["version"] == 1
    assert meta["sha256"] == sha(bank.prototypes)
    assert time.strptime(meta["created"], "%Y-%m-%dT%H:%M:%SZ")
    fields = {
        "bank",
        "version",
        "labels",
        "temperature",
        "calibrated",
        "embedding_space",
        "sha256",
        "created",
        "report",
    }
    assert set(meta) == fields


def test_publish_refuses_a_bad_bank_and_leaves_nothing_behind(store: BankStore, root: Path) -> None:
    store.publish(make_bank(seed=1))
    bad = make_bank(seed=2)
    bad = Bank(**{**bad.__dict__, "prototypes": bad.prototypes * 2})
    with pytest.raises(BankError, match="unit vectors"):
        store.publish(bad)
    assert store.versions("topics") == [1] and store.current("topics") == 1
    assert hidden_leftovers(root) == []  # no staging folder of the failed publish


@pytest.mark.parametrize("temperature", [0.0, -1.0, 100.0])
def test_publish_refuses_a_bad_temperature(store: BankStore, root: Path, temperature: float) -> None:
    with pytest.raises(BankError, match="temperature"):
        store.publish(make_bank(temperature=temperature))
    assert store.versions("topics") == [] and store.current("topics") is None
    assert hidden_leftovers(root) == []


@pytest.mark.parametrize("name", ["../x", "a/b", "Topics", "", ".hidden", "-x", "x" * 64, "topics\n"])
def test_publish_refuses_a_name_that_is_not_a_directory_name(store: BankStore, root: Path, name: str) -> None:
    with pytest.raises(BankError, match="label bank name"):
        store.publish(make_bank(name))
    assert not root.exists()


def test_a_publisher_that_lost_the_race_takes_the_next_number(
    store: BankStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.publish(make_bank(seed=1))
    store.publish(make_bank(seed=2))
    real_versions = store.versions
    stale = iter([[1]])  # the first look sees only version 1: its rename onto versions/2 fails

    def versions(name: str) -> list[int]:
        return next(stale, None) or real_versions(name)

    monkeypatch.setattr(store, "versions", versions)
    assert store.publish(make_bank(seed=3)).version == 3
    assert store.read("topics", 2).prototypes.tobytes() == make_bank(seed=2).prototypes.tobytes()  # untouched
    assert store.read("topics", 3).prototypes.tobytes() == make_bank(seed=3).prototypes.tobytes()
    assert hidden_leftovers(root) == []


def test_a_publish_that_cannot_write_fails_once_and_leaves_nothing(
    store: BankStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.publish(make_bank(seed=1))
    calls = []

    def full_disk(folder: Path, bank: Bank, created: str) -> None:
        calls.append(bank.version)
        (folder / BANK_JSON).write_text("{")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "write_version_files", full_disk)
    with pytest.raises(OSError, match="No space left"):
        store.publish(make_bank(seed=2))
    assert calls == [2]  # not mistaken for a lost race and retried
    assert store.versions("topics") == [1] and store.current("topics") == 1
    assert hidden_leftovers(root) == []


def test_concurrent_publishers_each_get_their_own_version(store: BankStore, root: Path) -> None:
    publishers = 8
    start = threading.Barrier(publishers)
    results: dict[int, Bank] = {}
    errors: list[BaseException] = []

    def publish(i: int) -> None:
        try:
            start.wait()
            results[i] = store.publish(make_bank(seed=1000 + i, report={"publisher": i}))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(publishers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(b.version for b in results.values()) == list(range(1, publishers + 1))
    assert store.versions("topics") == list(range(1, publishers + 1))
    for i, published in results.items():
        got = store.read("topics", published.version)
        assert got.report == {"publisher": i}
        assert got.prototypes.tobytes() == make_bank(seed=1000 + i).prototypes.tobytes()
    assert store.current("topics") in range(1, publishers + 1)
    assert hidden_leftovers(root) == []  # no .publishing-* folders, no .CURRENT.* temporaries


# --- CURRENT and rollback ------------------------------------------------------------------------------------------


def test_set_current_rolls_back_and_forward(store: BankStore) -> None:
    for n in (1, 2, 3):
        store.publish(make_bank(seed=n))
    store.set_current("topics", 1)
    assert store.current("topics") == 1
    store.set_current("topics", 3)
    assert store.current("topics") == 3
    store.set_current("topics", 1)
    assert store.publish(make_bank(seed=4)).version == 4  # numbering follows the versions, not CURRENT
    assert store.current("topics") == 4


@pytest.mark.parametrize("missing", [0, 4, 99])
def test_set_current_to_a_missing_version_changes_nothing(store: BankStore, root: Path, missing: int) -> None:
    store.publish(make_bank(seed=1))
    store.publish(make_bank(seed=2))
    store.set_current("topics", 1)
    before = (root / "topics" / CURRENT).read_bytes()
    with pytest.raises(BankError, match="cannot read"):
        store.set_current("topics", missing)
    assert (root / "topics" / CURRENT).read_bytes() == before and store.current("topics") == 1
    assert hidden_leftovers(root) == []


def test_set_current_to_a_corrupt_version_changes_nothing(store: BankStore, root: Path) -> None:
    store.publish(make_bank(seed=1))
    store.publish(make_bank(seed=2))
    (version_dir(root, "topics", 1) / PROTOTYPES).write_bytes(b"")
    with pytest.raises(BankError):
        store.set_current("topics", 1)
    assert store.current("topics") == 2


def test_set_current_of_an_unknown_bank_is_refused(store: BankStore, root: Path) -> None:
    with pytest.raises(BankError):
        store.set_current("nothing", 1)
    assert not (root / "nothing" / CURRENT).exists()


@pytest.mark.parametrize("text", ["", "garbage", "-1", "1.5", "³"])
def test_a_corrupt_current_pointer_is_a_bank_error(store: BankStore, root: Path, text: str) -> None:
    store.publish(make_bank())
    (root / "topics" / CURRENT).write_text(text)
    with pytest.raises(BankError, match="is not a version number"):
        store.current("topics")


def test_store_listing_ignores_what_is_not_a_bank_or_version(store: BankStore, root: Path) -> None:
    assert store.banks() == []  # no store directory at all
    store.publish(make_bank())
    (root / "README").write_text("not a bank")
    (root / "Upper").mkdir()
    (root / "Upper" / "versions").mkdir()
    (root / "empty").mkdir()
    (root / "topics" / "versions" / ".publishing-abandoned").mkdir()
    (root / "topics" / "versions" / "notes").mkdir()
    assert store.banks() == ["topics"]
    assert store.versions("topics") == [1]


# --- corrupt versions ----------------------------------------------------------------------------------------------


def _truncate_bytes(folder: Path) -> None:
    data = (folder / PROTOTYPES).read_bytes()
    (folder / PROTOTYPES).write_bytes(data[: len(data) - 7])


def _truncate_header(folder: Path) -> None:
    (folder / PROTOTYPES).write_bytes((folder / PROTOTYPES).read_bytes()[:20])


def _empty_prototypes(folder: Path) -> None:
    (folder / PROTOTYPES).write_bytes(b"")


def _edited_unit_rows(folder: Path) -> None:
    protos = np.load(folder / PROTOTYPES)
    save_protos(folder, protos[[1, 0, 2]], fix_checksum=False)  # still unit rows, right shape: only the checksum


def _negated_row(folder: Path) -> None:
    protos = np.load(folder / PROTOTYPES)
    protos[2] = -protos[2]
    save_protos(folder, protos, fix_checksum=False)


def _one_row_fewer(folder: Path) -> None:
    save_protos(folder, np.load(folder / PROTOTYPES)[:2], fix_checksum=True)


def _one_row_more(folder: Path) -> None:
    save_protos(folder, unit_rows(4, seed=9), fix_checksum=True)


def _flat(folder: Path) -> None:
    save_protos(folder, np.load(folder / PROTOTYPES).reshape(-1), fix_checksum=True)


def _float64(folder: Path) -> None:
    save_protos(folder, np.load(folder / PROTOTYPES).astype(np.float64), fix_checksum=True)


def _non_unit(folder: Path) -> None:
    protos = np.load(folder / PROTOTYPES)
    protos[1] *= 1.5
    save_protos(folder, protos, fix_checksum=True)


def _zero_row(folder: Path) -> None:
    protos = np.load(folder / PROTOTYPES)
    protos[0] = 0
    save_protos(folder, protos, fix_checksum=True)


def _nan(folder: Path) -> None:
    protos = np.load(folder / PROTOTYPES)
    protos[0, 3] = np.nan
    save_protos(folder, protos, fix_checksum=True)


def _inf(folder: Path) -> None:
    protos = np.load(folder / PROTOTYPES)
    protos[2, 0] = np.inf
    save_protos(folder, protos, fix_checksum=True)


def _pickled(folder: Path) -> None:
    np.save(folder / PROTOTYPES, np.array([object(), 1], dtype=object), allow_pickle=True)


def _no_prototypes(folder: Path) -> None:
    (folder / PROTOTYPES).unlink()


def _no_bank_json(folder: Path) -> None:
    (folder / BANK_JSON).unlink()


def _bank_json_not_json(folder: Path) -> None:
    (folder / BANK_JSON).write_text('{"bank": "topics", ', encoding="utf-8")


def _bank_json_not_utf8(folder: Path) -> None:
    (folder / BANK_JSON).write_bytes(b'{"bank": "\xff"}')


def _bank_json_a_list(folder: Path) -> None:
    (folder / BANK_JSON).write_text("[1, 2]", encoding="utf-8")


def _unknown_field(folder: Path) -> None:
    edit_meta(folder, owner="someone")


def _missing_field(folder: Path) -> None:
    meta = json.loads((folder / BANK_JSON).read_text(encoding="utf-8"))
    del meta["embedding_space"]
    (folder / BANK_JSON).write_text(json.dumps(meta), encoding="utf-8")


def _labels_empty(folder: Path) -> None:
    edit_meta(folder, labels=[])


def _labels_not_names(folder: Path) -> None:
    edit_meta(folder, labels=["cats", 3, "dogs"])


def _labels_blank(folder: Path) -> None:
    edit_meta(folder, labels=["cats", "", "dogs"])


def _temperature_zero(folder: Path) -> None:
    edit_meta(folder, temperature=0)


def _temperature_bool(folder: Path) -> None:
    edit_meta(folder, temperature=True)


def _temperature_text(folder: Path) -> None:
    edit_meta(folder, temperature="0.05")


def _other_version(folder: Path) -> None:
    edit_meta(folder, version=2)


def _other_bank(folder: Path) -> None:
    edit_meta(folder, bank="news")


def _version_as_text(folder: Path) -> None:
    edit_meta(folder, version="1")


CORRUPTIONS = {
    "truncated prototypes": (_truncate_bytes, "cannot read"),
    "truncated prototypes header": (_truncate_header, "cannot read"),
    "empty prototypes": (_empty_prototypes, "cannot read"),
    "edited prototypes (rows swapped)": (_edited_unit_rows, "checksum mismatch"),
    "edited prototypes (row negated)": (_negated_row, "checksum mismatch"),
    "fewer rows than labels": (_one_row_fewer, r"expected float32 \[3, E\]"),
    "more rows than labels": (_one_row_more, r"float32 \[4, 16\], expected float32 \[3, E\]"),
    "flat prototypes": (_flat, r"float32 \[48\], expected"),
    "float64 prototypes": (_float64, r"float64 \[3, 16\], expected float32"),
    "non-unit row": (_non_unit, "rows must be finite unit vectors"),
    "zero row": (_zero_row, "rows must be finite unit vectors"),
    "NaN": (_nan, "rows must be finite unit vectors"),
    "inf": (_inf, "rows must be finite unit vectors"),
    "pickled prototypes": (_pickled, "cannot read"),
    "missing prototypes": (_no_prototypes, "cannot read"),
    "missing bank.json": (_no_bank_json, "cannot read"),
    "bank.json not JSON": (_bank_json_not_json, "cannot read"),
    "bank.json not UTF-8": (_bank_json_not_utf8, "cannot read"),
    "bank.json a list": (_bank_json_a_list, "fields list, expected"),
    "bank.json unknown field": (_unknown_field, r"fields \[.*'owner'.*\], expected"),
    "bank.json missing field": (_missing_field, r"bank.json: fields \[.*\], expected \[.*'embedding_space'"),
    "no labels": (_labels_empty, "'labels' must be a non-empty list"),
    "a label that is not a name": (_labels_not_names, "'labels' must be a non-empty list"),
    "a blank label": (_labels_blank, "'labels' must be a non-empty list"),
    "temperature zero": (_temperature_zero, "temperature 0 must be a positive number"),
    "temperature bool": (_temperature_bool, "temperature True must be"),
    "temperature text": (_temperature_text, "temperature '0.05' must be"),
    "another version": (_other_version, "holds topics/2, expected topics/1"),
    "another bank": (_other_bank, "holds news/1, expected topics/1"),
    "version as text": (_version_as_text, "holds topics/1, expected topics/1"),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_a_corrupt_version_is_refused_naming_the_problem(store: BankStore, root: Path, corrupt: str) -> None:
    damage, message = CORRUPTIONS[corrupt]
    store.publish(make_bank(seed=1))
    folder = version_dir(root, "topics", 1)
    damage(folder)
    with pytest.raises(BankError, match=message) as refused:
        store.read("topics", 1)
    assert str(folder) in str(refused.value)  # it says which version


def test_a_version_folder_copied_under_another_number_is_refused(store: BankStore, root: Path) -> None:
    store.publish(make_bank(seed=1))
    shutil.copytree(version_dir(root, "topics", 1), version_dir(root, "topics", 5))
    with pytest.raises(BankError, match="holds topics/1, expected topics/5"):
        store.read("topics", 5)
    with pytest.raises(BankError, match="holds topics/1, expected topics/5"):
        store.set_current("topics", 5)
    assert store.current("topics") == 1


def test_a_version_folder_copied_into_another_bank_is_refused(store: BankStore, root: Path) -> None:
    store.publish(make_bank("topics", seed=1))
    shutil.copytree(version_dir(root, "topics", 1), version_dir(root, "news", 1))
    with pytest.raises(BankError, match="holds topics/1, expected news/1"):
        store.read("news", 1)


def test_read_version_files_without_expectation_checks_the_name(tmp_path: Path) -> None:
    folder = tmp_path / "v"
    folder.mkdir()
    write_version_files(folder, make_bank("Not A Name", version=3), created="test")
    with pytest.raises(BankError, match="label bank name"):
        read_version_files(folder)
    write_version_files(folder, make_bank("fine", version=3), created="test")
    assert read_version_files(folder).tag == "fine/3"


def test_a_report_that_is_not_an_object_reads_as_empty(store: BankStore, root: Path) -> None:
    store.publish(make_bank())
    edit_meta(version_dir(root, "topics", 1), report=None)
    assert store.read("topics", 1).report == {}


# --- the serving side: BankReader ----------------------------------------------------------------------------------


def test_without_a_store_only_the_exported_default_exists(exported: Path) -> None:
    reader = BankReader(None, exported)
    assert reader.names() == [DEFAULT_BANK]
    bank = reader.current(DEFAULT_BANK)
    assert bank.tag == "default/0" and bank.version == EXPORTED_VERSION
    assert bank.labels == ("sports", "music", "火箭发射", "cooking")
    assert bank.prototypes.tobytes() == unit_rows(4, seed=100).tobytes()
    assert reader.embedding_space == SPACE
    assert json.loads((exported / BANK_JSON).read_text(encoding="utf-8"))["created"] == "export"
    assert reader.version(DEFAULT_BANK, 0) is bank
    with pytest.raises(UnknownBankError, match=r"unknown label bank 'topics'; this server has \['default'\]"):
        reader.current("topics")
    with pytest.raises(UnknownBankError, match="no bank store"):
        reader.version("topics", 1)
    with pytest.raises(UnknownBankError, match="no bank store"):
        reader.version(DEFAULT_BANK, 1)


def test_the_exported_bank_must_be_default_0(tmp_path: Path) -> None:
    folder = tmp_path / "default_bank"
    folder.mkdir()
    write_version_files(folder, make_bank(DEFAULT_BANK, version=1), created="export")
    with pytest.raises(BankError, match="holds default/1, expected default/0"):
        BankReader(None, folder)
    with pytest.raises(BankError, match="cannot read"):
        BankReader(None, tmp_path / "missing")


def test_an_unknown_bank_lists_the_banks_there_are(store: BankStore, root: Path, exported: Path) -> None:
    store.publish(make_bank("topics"))
    store.publish(make_bank("news"))
    reader = BankReader(root, exported)
    assert reader.names() == ["default", "news", "topics"]
    for name in ("sports", "Topics", "../topics", "topics/1", "", "topics\n"):
        with pytest.raises(UnknownBankError, match=r"this server has \['default', 'news', 'topics'\]"):
            reader.current(name)
    assert reader.current("news").tag == "news/1"


def test_an_empty_or_missing_store_serves_the_exported_default(root: Path, exported: Path) -> None:
    reader = BankReader(root, exported)  # the directory does not exist (yet)
    assert reader.names() == ["default"]
    assert reader.current(DEFAULT_BANK).tag == "default/0"
    with pytest.raises(UnknownBankError):
        reader.current("topics")


def test_a_published_default_bank_replaces_default_0(store: BankStore, root: Path, exported: Path) -> None:
    reader = BankReader(root, exported, refresh_s=0.0)
    assert reader.current(DEFAULT_BANK).tag == "default/0"
    store.publish(make_bank(DEFAULT_BANK, seed=5))
    bank = reader.current(DEFAULT_BANK)
    assert bank.tag == "default/1"
    assert bank.prototypes.tobytes() == make_bank(seed=5).prototypes.tobytes()
    assert reader.version(DEFAULT_BANK, 0).tag == "default/0"  # requests that pinned it still score with it
    assert reader.names() == ["default"]


def test_current_sees_a_new_version_only_after_refresh(store: BankStore, root: Path, exported: Path) -> None:
    refresh = 0.25
    store.publish(make_bank(seed=1))
    reader = BankReader(root, exported, refresh_s=refresh)
    first = reader.current("topics")
    looked = time.monotonic()
    assert first.tag == "topics/1"
    store.publish(make_bank(seed=2))
    still = reader.current("topics")
    if time.monotonic() - looked < refresh:  # (a very slow machine may already be past the interval)
        assert still is first
    time.sleep(refresh + 0.05)
    second = reader.current("topics")
    assert second.tag == "topics/2"
    assert second.prototypes.tobytes() == make_bank(seed=2).prototypes.tobytes()
    pinned = reader.version("topics", 1)  # a request that pinned topics/1 before CURRENT moved
    assert pinned.tag == "topics/1" and pinned.prototypes.tobytes() == first.prototypes.tobytes()
    store.set_current("topics", 1)  # rollback reaches the reader within the interval too
    time.sleep(refresh + 0.05)
    assert reader.current("topics").tag == "topics/1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The reader's clock, moved by hand (publishing still stamps real UTC times)."""
    fake = FakeClock()
    monkeypatch.setattr(
        store_module, "time", SimpleNamespace(monotonic=fake.monotonic, strftime=time.strftime, gmtime=time.gmtime)
    )
    return fake


def test_current_is_looked_up_at_most_every_refresh_s(
    store: BankStore, root: Path, exported: Path, clock: FakeClock
) -> None:
    store.publish(make_bank(seed=1))
    reader = BankReader(root, exported, refresh_s=0.05)
    assert reader.current("topics").tag == "topics/1"
    store.publish(make_bank(seed=2))
    clock.now += 0.049
    assert reader.current("topics").tag == "topics/1"
    clock.now += 0.002
    assert reader.current("topics").tag == "topics/2"
    store.publish(make_bank(seed=3))
    clock.now += 0.01
    assert reader.current("topics").tag == "topics/2"  # the interval counts from the last look-up
    clock.now += 0.05
    assert reader.current("topics").tag == "topics/3"


def test_pinned_versions_are_read_once_and_kept(store: BankStore, root: Path, exported: Path) -> None:
    store.publish(make_bank(seed=1))
    reader = BankReader(root, exported)
    bank = reader.version("topics", 1)
    shutil.rmtree(version_dir(root, "topics", 1))  # immutable: what was read stays what it was
    assert reader.version("topics", 1) is bank


def test_a_missing_pinned_version_is_a_bank_error(store: BankStore, root: Path, exported: Path) -> None:
    store.publish(make_bank(seed=1))
    reader = BankReader(root, exported)
    with pytest.raises(BankError, match="cannot read"):
        reader.version("topics", 2)
    with pytest.raises(BankError, match="label bank name"):
        reader.version("../topics", 1)


def test_a_bank_of_another_embedding_space_is_refused(store: BankStore, root: Path, exported: Path) -> None:
    store.publish(make_bank("topics", space=OTHER_SPACE))
    reader = BankReader(root, exported)
    with pytest.raises(BankError, match="embedding space 'another-export/e5-small'") as refused:
        reader.current("topics")
    assert "topics/1" in str(refused.value) and repr(SPACE) in str(refused.value)
    with pytest.raises(BankError, match="embedding space"):
        reader.version("topics", 1)


def test_a_default_bank_of_another_space_is_refused_as_current(store: BankStore, root: Path, exported: Path) -> None:
    store.publish(make_bank(DEFAULT_BANK, space=OTHER_SPACE))
    reader = BankReader(root, exported)
    with pytest.raises(BankError, match="embedding space"):
        reader.current(DEFAULT_BANK)
    assert reader.version(DEFAULT_BANK, 0).tag == "default/0"


def test_a_new_version_of_another_space_leaves_the_last_good_one_serving(
    store: BankStore, root: Path, exported: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store.publish(make_bank(seed=1))
    reader = BankReader(root, exported, refresh_s=0.0)
    good = reader.current("topics")
    store.publish(make_bank(seed=2, space=OTHER_SPACE))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(3):
            assert reader.current("topics") is good
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "keeping topics/1" in warnings[0].getMessage() and "embedding space" in warnings[0].getMessage()
    with pytest.raises(BankError, match="embedding space"):
        reader.version("topics", 2)  # a request can never pin it either
    store.publish(make_bank(seed=3))  # a good version again: served
    assert reader.current("topics").tag == "topics/3"


@pytest.mark.parametrize("name", ["topics", DEFAULT_BANK])
def test_a_deleted_store_leaves_the_last_good_version_serving(
    store: BankStore, root: Path, exported: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    store.publish(make_bank(name, seed=1))
    store.publish(make_bank(name, seed=2))
    reader = BankReader(root, exported, refresh_s=0.0)
    good = reader.current(name)
    assert good.tag == f"{name}/2"
    shutil.rmtree(root)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert reader.current(name) is good
        assert reader.current(name) is good
    assert len([r for r in caplog.records if "keeping" in r.getMessage()]) == 1
    assert reader.version(name, 2) is good  # pinned: still in memory
    assert reader.names() == ["default"]


def test_a_deleted_bank_leaves_the_last_good_version_serving(store: BankStore, root: Path, exported: Path) -> None:
    store.publish(make_bank("topics", seed=1))
    store.publish(make_bank("news", seed=1))
    reader = BankReader(root, exported, refresh_s=0.0)
    topics, news = reader.current("topics"), reader.current("news")
    shutil.rmtree(root / "topics")
    shutil.rmtree(root / "news")
    assert reader.current("topics") is topics and reader.current("news") is news


def test_each_bank_kept_serving_is_logged(
    store: BankStore, root: Path, exported: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store.publish(make_bank("topics", seed=1))
    store.publish(make_bank("news", seed=1))
    reader = BankReader(root, exported, refresh_s=0.0)
    reader.current("topics"), reader.current("news")
    shutil.rmtree(root)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(2):
            reader.current("topics"), reader.current("news")
    kept = sorted(r.getMessage() for r in caplog.records if "keeping" in r.getMessage())
    assert len(kept) == 2
    assert "'news'" in kept[0] and "news/1" in kept[0]
    assert "'topics'" in kept[1] and "topics/1" in kept[1]


@pytest.mark.parametrize(
    "damage",
    [
        lambda root: (root / "topics" / CURRENT).write_text("garbage"),
        lambda root: (root / "topics" / CURRENT).write_text("9\n"),
        lambda root: (root / "topics" / CURRENT).unlink(),
        lambda root: (version_dir(root, "topics", 2) / PROTOTYPES).write_bytes(b""),
        lambda root: _negated_row(version_dir(root, "topics", 2)),
        lambda root: edit_meta(version_dir(root, "topics", 2), embedding_space=OTHER_SPACE, owner="x"),
    ],
    ids=["current garbage", "current missing version", "current removed", "empty prototypes", "edited", "bad json"],
)
def test_a_broken_store_after_a_good_read_keeps_the_last_good_version(
    store: BankStore, root: Path, exported: Path, caplog: pytest.LogCaptureFixture, damage
) -> None:
    store.publish(make_bank(seed=1))
    reader = BankReader(root, exported, refresh_s=0.0)
    good = reader.current("topics")
    assert good.tag == "topics/1"
    # a second version is published but the reader has not looked yet; then the store breaks
    store.publish(make_bank(seed=2))
    damage(root)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert reader.current("topics") is good
        assert reader.current("topics") is good
    assert len([r for r in caplog.records if "keeping topics/1" in r.getMessage()]) == 1
    # repaired: the reader moves on by itself
    store.publish(make_bank(seed=3))
    assert reader.current("topics").tag == "topics/3"


def test_a_broken_current_with_nothing_cached_serves_the_newest_good_version(
    store: BankStore, root: Path, exported: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fresh instance (nothing served yet) does not refuse a bank its sibling instances keep serving."""
    for seed in (1, 2, 3):
        store.publish(make_bank(seed=seed))
    (version_dir(root, "topics", 3) / PROTOTYPES).write_bytes(b"")  # the newest is broken: skipped
    (root / "topics" / CURRENT).write_text("garbage")
    with caplog.at_level(logging.WARNING, logger="reelserve.labels.store"):
        assert BankReader(root, exported).current("topics").tag == "topics/2"
    assert "keeping topics/2" in caplog.text and "not a version number" in caplog.text


def test_a_broken_current_with_no_good_version_is_refused(store: BankStore, root: Path, exported: Path) -> None:
    store.publish(make_bank(seed=1))
    (root / "topics" / CURRENT).write_text("garbage")
    (version_dir(root, "topics", 1) / PROTOTYPES).write_bytes(b"")
    with pytest.raises(UnknownBankError, match="'topics' cannot be used.*not a version number"):
        BankReader(root, exported).current("topics")
    (root / "topics" / CURRENT).write_text("1")
    with pytest.raises(UnknownBankError, match="cannot be used.*cannot read"):
        BankReader(root, exported).current("topics")


def test_max_versions_evicts_the_least_recently_used(
    store: BankStore, root: Path, exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in (1, 2, 3):
        store.publish(make_bank(seed=n))
    reader = BankReader(root, exported, max_versions=2)
    reads: list[int] = []
    real_read = reader.store.read

    def counting_read(name: str, version: int) -> Bank:
        reads.append(version)
        return real_read(name, version)

    monkeypatch.setattr(reader.store, "read", counting_read)
    one, two = reader.version("topics", 1), reader.version("topics", 2)
    assert reads == [1, 2]
    assert reader.version("topics", 1) is one  # used: now 2 is the least recent
    reader.version("topics", 3)  # evicts 2
    assert reads == [1, 2, 3]
    assert reader.version("topics", 1) is one
    again = reader.version("topics", 2)  # re-read from the store
    assert reads == [1, 2, 3, 2]
    assert again is not two and again.prototypes.tobytes() == two.prototypes.tobytes() and again.tag == "topics/2"
    assert reader.version("topics", 2) is again
    assert reader.version(DEFAULT_BANK, 0).tag == "default/0"  # the exported bank is never evicted nor read
    assert reads == [1, 2, 3, 2]


def test_readers_and_publishers_at_once(store: BankStore, root: Path, exported: Path) -> None:
    store.publish(make_bank(seed=0))
    reader = BankReader(root, exported, refresh_s=0.0, max_versions=3)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: set[str] = set()

    def read() -> None:
        try:
            while not stop.is_set():
                bank = reader.current("topics")
                seen.add(bank.tag)
                pinned = reader.version("topics", bank.version)
                assert pinned.prototypes.tobytes() == bank.prototypes.tobytes()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for n in range(1, 9):
            store.publish(make_bank(seed=n))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert errors == []
    assert reader.current("topics").tag == "topics/9"
    assert seen <= {f"topics/{n}" for n in range(1, 10)}


# --- names, tags and the environment -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "parsed"),
    [("topics/3", ("topics", 3)), ("default/0", ("default", 0)), ("a_b-9/12", ("a_b-9", 12)), ("x/007", ("x", 7))],
)
def test_parse_tag_accepts_bank_slash_number(tag: str, parsed: tuple[str, int]) -> None:
    assert parse_tag(tag) == parsed


@pytest.mark.parametrize(
    "tag",
    [
        "topics",
        "topics/",
        "/3",
        "Topics/3",
        "topics/x",
        "topics/-1",
        "topics/+1",
        "topics/ 3",
        "topics/3 ",
        "topics/1.5",
        "topics/3/4",
        "../x/1",
        "a/../b/1",
        "topics\n/3",
        "topics/3\n",
        "topics/³",
        "topics/١",
        "",
    ],
)
def test_parse_tag_refuses_anything_else(tag: str) -> None:
    with pytest.raises(BankError, match="is not 'bank/number'"):
        parse_tag(tag)


@pytest.mark.parametrize("name", ["topics", "default", "a", "0", "a_b-c", "x" * 63])
def test_check_bank_name_accepts_directory_names(name: str) -> None:
    assert check_bank_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "..",
        ".",
        "a/b",
        "/abs",
        "a\\b",
        ".hidden",
        "-x",
        "_x",
        "Topics",
        "a b",
        "",
        "x" * 64,
        "topics\n",
        "é",
        3,
    ],
)
def test_check_bank_name_refuses_path_like_names(name: object) -> None:
    with pytest.raises(BankError, match="must match"):
        check_bank_name(name)  # type: ignore[arg-type]


def test_store_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(LABEL_BANKS_ENV, raising=False)
    assert store_from_env() is None
    monkeypatch.setenv(LABEL_BANKS_ENV, "")
    assert store_from_env() is None
    monkeypatch.setenv(LABEL_BANKS_ENV, "label_banks")
    with pytest.raises(BankError, match=f"{LABEL_BANKS_ENV}='label_banks' must be an absolute path"):
        store_from_env()
    monkeypatch.setenv(LABEL_BANKS_ENV, "./x/../y")
    with pytest.raises(BankError, match="absolute"):
        store_from_env()
    monkeypatch.setenv(LABEL_BANKS_ENV, str(tmp_path / "banks"))
    got = store_from_env()
    assert isinstance(got, Path) and got == tmp_path / "banks"  # it need not exist yet
