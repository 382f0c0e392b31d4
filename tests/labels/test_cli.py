"""`reelserve labels ...` without a server: the store commands and the refusals that need no server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reelserve.cli import main
from reelserve.labels.store import Bank, BankStore


def _bank(name: str, labels: tuple[str, ...]) -> Bank:
    protos = np.random.default_rng(len(labels)).normal(size=(len(labels), 8)).astype(np.float32)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    report = {"loo_accuracy": 0.75}
    return Bank(name, 0, labels, protos, 0.07, True, "space-1", report)


def test_list_an_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["labels", "list", "--label-banks", str(tmp_path)]) == 0
    assert "no label banks" in capsys.readouterr().out


def test_list_and_rollback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = BankStore(tmp_path)
    store.publish(_bank("topics", ("a", "b")))
    store.publish(_bank("topics", ("a", "b", "c")))
    assert main(["labels", "list", "--label-banks", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "topics: current 2" in out and "*    2    3 labels" in out and "loo acc 0.750" in out
    assert main(["labels", "rollback", "topics", "1", "--label-banks", str(tmp_path)]) == 0
    assert "current 2 -> 1" in capsys.readouterr().out and store.current("topics") == 1
    assert main(["labels", "rollback", "topics", "9", "--label-banks", str(tmp_path)]) == 2
    assert "cannot roll topics back to 9" in capsys.readouterr().err and store.current("topics") == 1
    assert main(["labels", "list", "nope", "--label-banks", str(tmp_path)]) == 2
    assert "no bank 'nope'" in capsys.readouterr().err


def test_publish_refuses_a_bad_spec_before_calling_any_server(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: topics\nlabels:\n  - name: cat\n    prompt: [a cat]\n")
    argv = ["labels", "publish", str(spec), "--url", "127.0.0.1:1", "--label-banks", str(tmp_path), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "labels[0] ('cat')" in err and "unknown key 'prompt'" in err
    assert not BankStore(tmp_path).banks()


def test_import_refuses_a_spec_of_another_bank(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "topics.yaml"
    spec.write_text("name: topics\nlabels:\n  - name: cat\n    prompts: [a cat]\n")
    (tmp_path / "export.json").write_text("[]")
    argv = ["labels", "import", str(tmp_path / "export.json"), "--bank", "moods", "--spec", str(spec)]
    assert main(argv) == 2
    assert "bank 'topics', not 'moods'" in capsys.readouterr().err
