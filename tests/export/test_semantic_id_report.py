"""`reelserve semantic-ids stats` on a tiny fake repository: table, JSON, and every bad input (exit 2, named)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from reelserve.config import DEFAULT
from reelserve.export.semantic_id_report import MANIFEST, add_parser, run
from reelserve.export.semantic_ids import assign_codes, codebook_stats, codebook_version

LEVELS, K, D = 2, 4, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reelserve")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(*argv: str) -> int:
    return run(_parser().parse_args(["semantic-ids", "stats", *map(str, argv)]))


def _books() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((LEVELS, K, D)).astype(np.float32)


def _unit(n: int, d: int = D, seed: int = 1) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


RECORDED = {
    "items": 5,
    "levels": [
        {"level": 1, "codes_used": 2, "utilisation": 0.5, "perplexity": 1.9, "normalised_entropy": 0.46,
         "max_share": 0.6},
        {"level": 2, "codes_used": 4, "utilisation": 1.0, "perplexity": 3.5, "normalised_entropy": 0.9,
         "max_share": 0.4},
    ],
    "unique_codes": 4,
    "collision_rate": 0.2,
    "max_items_per_code": 2,
}  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "model_repository"
    (root / "fusion_heads" / "1").mkdir(parents=True)
    np.savez(root / "fusion_heads" / "1" / "heads.npz", codebooks=_books(), class_embeddings=np.zeros((2, D)))
    (root / "fusion_heads" / "1" / "heads.json").write_text("{}")
    manifest = {"target": "cpu", "semantic_ids": {"levels": LEVELS, "codebook_size": K, "stats": RECORDED}}
    (root / MANIFEST).write_text(json.dumps(manifest))
    return root


def test_defaults_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["semantic-ids", "stats"])
    assert args.model_repository == DEFAULT.server.model_repository and args.embeddings is None and not args.json
    assert args.func is run
    for argv in (["semantic-ids", "--help"], ["semantic-ids", "stats", "--help"]):
        with pytest.raises(SystemExit) as e:
            _parser().parse_args(argv)
        assert e.value.code == 0
    assert "--embeddings" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # a command is required
        _parser().parse_args(["semantic-ids"])
    assert e.value.code == 2


def test_recorded_stats_as_a_table(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("--model-repository", repo) == 0
    out = capsys.readouterr().out
    assert codebook_version(_books()) in out and f"{LEVELS} levels x {K} codes, D={D}" in out
    assert "fitted corpus" in out and "collision rate     0.2000" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert rows == [
        ["1", "2", "0.5000", "1.90", "0.4600", "0.6000"],
        ["2", "4", "1.0000", "3.50", "0.9000", "0.4000"],
    ]


def test_recorded_stats_as_json(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("--model-repository", repo, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == codebook_version(_books())
    assert (report["levels"], report["codebook_size"], report["dim"]) == (LEVELS, K, D)
    assert report["stats"] == RECORDED
    assert report["heads"].endswith("fusion_heads/1/heads.npz")


def test_the_newest_heads_version_is_read(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    newer = _books() + 1
    (repo / "fusion_heads" / "2").mkdir()
    np.savez(repo / "fusion_heads" / "2" / "heads.npz", codebooks=newer)
    (repo / "fusion_heads" / "10").mkdir()  # a version folder without heads is not a candidate
    assert _run("--model-repository", repo, "--json") == 0
    assert json.loads(capsys.readouterr().out)["version"] == codebook_version(newer)


def test_a_mismatched_announced_version_warns(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    heads_json = repo / "fusion_heads" / "1" / "heads.json"
    heads_json.write_text(json.dumps({"semantic_id_version": codebook_version(_books())}))
    assert _run("--model-repository", repo) == 0
    assert capsys.readouterr().err == ""
    heads_json.write_text(json.dumps({"semantic_id_version": "rq2x4-000000000000"}))
    assert _run("--model-repository", repo) == 0
    err = capsys.readouterr().err
    assert "warning" in err and str(heads_json) in err and "rq2x4-000000000000" in err


def test_a_repository_without_stats_says_re_export(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / MANIFEST).write_text(json.dumps({"semantic_ids": {"levels": LEVELS}}))
    assert _run("--model-repository", repo) == 1
    captured = capsys.readouterr()
    assert codebook_version(_books()) in captured.out, "the version is printed even without stats"
    assert "predates" in captured.err and "re-export" in captured.err and MANIFEST in captured.err


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_stats_of_given_embeddings(repo: Path, tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]) -> None:
    x = _unit(50)
    path = tmp_path / f"items{suffix}"
    np.save(path, x) if suffix == ".npy" else np.savez(path, embeddings=x)
    assert _run("--model-repository", repo, "--embeddings", path, "--json") == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["stats"] == codebook_stats(assign_codes(x, _books()), K)
    assert report["stats"]["items"] == 50 and report["source"] == str(path)
    assert captured.err == ""
    assert _run("--model-repository", repo, "--embeddings", path) == 0
    table = capsys.readouterr().out
    assert str(path) in table and "items              50" in table


def test_float64_embeddings_that_are_not_unit_norm_warn(repo: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "raw.npy"
    np.save(path, 3 * _unit(8).astype(np.float64))
    assert _run("--model-repository", repo, "--embeddings", path) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "unit-norm" in err and str(path) in err


def _write(path: Path, value: np.ndarray | bytes) -> Path:
    if path.name == "zip.npy":  # an archive under a .npy name
        np.savez(tmp := path.with_suffix(".tmp.npz"), embeddings=_unit(2))
        tmp.rename(path)
    elif path.name == "array.npz":  # a plain array under a .npz name
        np.save(tmp := path.with_suffix(".tmp.npy"), _unit(2))
        tmp.rename(path)
    elif isinstance(value, bytes):
        path.write_bytes(value)
    elif path.suffix == ".npz":
        np.savez(path, other=value)
    else:
        np.save(path, value)
    return path


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("missing.npy", None, "no such file"),
        ("garbage.npy", b"not an array at all", "unreadable"),
        ("garbage.npz", b"PK\x03\x04 broken zip", "unreadable"),
        ("items.txt", b"0.1 0.2 0.3\n", "expected a .npy or .npz"),
        ("nokey.npz", _unit(4), "no array 'embeddings'"),
        ("wrong_dim.npy", _unit(4, d=D + 1), f"dimension {D + 1} does not match the codebooks' D={D}"),
        ("flat.npy", _unit(1)[0], "must be [N, D]"),
        ("empty.npy", np.zeros((0, D), dtype=np.float32), "empty"),
        ("ints.npy", np.ones((4, D), dtype=np.int64), "must be floats"),
        ("nan.npy", np.where(np.arange(4 * D).reshape(4, D) == 7, np.nan, _unit(4)), "NaN or inf (first: row 2)"),
        ("inf.npy", np.full((2, D), np.inf, dtype=np.float32), "2 rows hold NaN or inf"),
        ("objects.npy", np.array([[None] * D], dtype=object), "unreadable"),
        ("zip.npy", b"", "an .npz archive, not a .npy array"),
        ("array.npz", b"", "a .npy array, not an .npz archive"),
    ],
)
def test_bad_embeddings_exit_2_naming_the_file(
    repo: Path, tmp_path: Path, name: str, value: np.ndarray | bytes | None, message: str, capsys
) -> None:
    path = tmp_path / name if value is None else _write(tmp_path / name, value)
    assert _run("--model-repository", repo, "--embeddings", path) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("reelserve semantic-ids stats: ") and str(path) in lines[0] and message in lines[0]


def _break_heads(repo: Path, how: str) -> Path:
    heads = repo / "fusion_heads" / "1" / "heads.npz"
    if how == "no heads":
        heads.unlink()
    elif how == "garbage":
        heads.write_bytes(b"\x00" * 20)
    elif how == "no key":
        np.savez(heads, class_embeddings=np.zeros((2, D)))
    elif how == "2-d":
        np.savez(heads, codebooks=_books()[0])
    elif how == "nan":
        np.savez(heads, codebooks=np.full((LEVELS, K, D), np.nan, dtype=np.float32))
    elif how == "no repository":
        return repo.parent / "nowhere"
    return heads


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("no repository", "no such model repository"),
        ("no heads", "missing"),
        ("garbage", "unreadable"),
        ("no key", "no array 'codebooks'"),
        ("2-d", "[levels, K, D]"),
        ("nan", "NaN or inf"),
    ],
)
def test_bad_repository_exits_2_naming_the_file(repo: Path, how: str, message: str, capsys) -> None:
    named = _break_heads(repo, how)
    target = named if how == "no repository" else repo
    assert _run("--model-repository", target, "--json") == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert str(named) in captured.err and message in captured.err


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "missing"), ("{not json", "unreadable"), ("[1, 2]", "not a JSON object"),
     ('{"semantic_ids": {"stats": [1]}}', "'semantic_ids.stats' is not a JSON object")],
)  # fmt: skip
def test_bad_manifest_exits_2_naming_it(repo: Path, content: str | None, message: str, capsys) -> None:
    manifest = repo / MANIFEST
    manifest.unlink() if content is None else manifest.write_text(content)
    assert _run("--model-repository", repo) == 2
    err = capsys.readouterr().err
    assert str(manifest) in err and message in err
