"""`reelserve semantic-ids stats`: the codebook version and health of a model repository's semantic IDs.

Without `--embeddings` it prints what the export measured on its fitting corpus (the manifest's
`semantic_ids.stats`); with `--embeddings FILE` it assigns your own items' served embeddings to the
repository's codebooks and measures those, so a new codebook can be checked on your corpus before
it is rolled out (docs/semantic_ids.md). Bad input is one line on stderr naming the file, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

from reelserve.config import DEFAULT

PROG = "reelserve semantic-ids stats"
MANIFEST = "reelserve-manifest.json"  # as export/cpu.py writes it
HEADS_STEP = "fusion_heads"
UNIT_NORM_TOLERANCE = 1e-3


class InputError(Exception):
    """A file this command cannot use; the message names it."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """`semantic-ids` with its `stats` command, under the top-level subparsers `sub`."""
    p = sub.add_parser(
        "semantic-ids",
        help="semantic-ID codebooks: version and health statistics",
        description="Inspect the residual codebooks (RQ semantic IDs) of a model repository.",
    )
    commands = p.add_subparsers(dest="semantic_ids_command", required=True, metavar="COMMAND")
    p = commands.add_parser(
        "stats",
        help="codebook version, per-level utilisation/perplexity, full-code collisions",
        description="Print the codebook version (levels x size) and the code statistics: those recorded for"
        " the fitted corpus, or, with --embeddings, those of your own items. Bad input exits 2.",
    )
    p.add_argument(
        "--model-repository",
        type=Path,
        default=DEFAULT.server.model_repository,
        metavar="DIR",
        help="the exported repository (default: %(default)s)",
    )
    p.add_argument(
        "--embeddings",
        type=Path,
        default=None,
        metavar="FILE",
        help="a .npy [N, D] float array of served `embedding` outputs (unit-norm, centred space),"
        " or a .npz with key 'embeddings'",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def heads_file(repository: Path) -> Path:
    """The newest version's heads.npz: what Triton's default policy (latest 1) serves."""
    if not repository.is_dir():
        raise InputError(f"{repository}: no such model repository")
    step = repository / HEADS_STEP
    versions = [d for d in step.glob("*") if d.name.isdigit() and (d / "heads.npz").is_file()]
    versions.sort(key=lambda d: int(d.name))
    if not versions:
        raise InputError(f"{step / '1' / 'heads.npz'}: missing (not an exported repository? run `reelserve export`)")
    return versions[-1] / "heads.npz"


def _load(path: Path, key: str | None) -> np.ndarray:
    """One array from a .npy, or `key` from a .npz, without pickles."""
    try:
        loaded = np.load(path, allow_pickle=False)  # an ndarray for .npy bytes, an NpzFile for a zip
        if key is None:
            if not isinstance(loaded, np.ndarray):
                loaded.close()
                raise InputError(f"{path}: an .npz archive, not a .npy array")
            return loaded
        if isinstance(loaded, np.ndarray):
            raise InputError(f"{path}: a .npy array, not an .npz archive with '{key}'")
        with loaded as arrays:
            if key not in arrays.files:
                raise InputError(f"{path}: no array '{key}' (has {sorted(arrays.files)})")
            return arrays[key]
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def load_codebooks(path: Path) -> np.ndarray:
    books = _load(path, "codebooks")
    if books.ndim != 3 or 0 in books.shape or not np.issubdtype(books.dtype, np.floating):
        raise InputError(
            f"{path}: 'codebooks' must be a float [levels, K, D] array, got {books.dtype} {list(books.shape)}"
        )
    if not np.isfinite(books).all():
        raise InputError(f"{path}: 'codebooks' hold NaN or inf")
    return books


def load_embeddings(path: Path, dim: int) -> np.ndarray:
    """Served embeddings [N, dim]: finite floats; a warning (not an error) when rows are not unit-norm."""
    if path.suffix == ".npy":
        x = _load(path, None)
    elif path.suffix == ".npz":
        x = _load(path, "embeddings")
    else:
        raise InputError(f"{path}: expected a .npy or .npz file")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{path}: embeddings must be floats, got {x.dtype}")
    if x.ndim != 2:
        raise InputError(f"{path}: embeddings must be [N, D], got shape {list(x.shape)}")
    if x.shape[0] == 0:
        raise InputError(f"{path}: no embeddings (empty array)")
    if x.shape[1] != dim:
        raise InputError(f"{path}: embedding dimension {x.shape[1]} does not match the codebooks' D={dim}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise InputError(f"{path}: {int(bad.sum())} rows hold NaN or inf (first: row {int(bad.argmax())})")
    drift = float(np.abs(np.linalg.norm(x.astype(np.float64), axis=1) - 1).max())
    if drift > UNIT_NORM_TOLERANCE:
        print(
            f"{PROG}: warning: {path}: rows are not unit-norm (max |norm - 1| = {drift:.3g});"
            " the served codes are assigned to the unit-norm `embedding` output",
            file=sys.stderr,
        )
    return x


def manifest_stats(repository: Path) -> dict | None:
    """The fitted corpus's stats from the manifest; None when the export predates them."""
    path = repository / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: missing (not an exported repository? run `reelserve export`)") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{path}: not a JSON object")
    stats = (manifest.get("semantic_ids") or {}).get("stats")
    if stats is not None and not isinstance(stats, dict):
        raise InputError(f"{path}: 'semantic_ids.stats' is not a JSON object")
    return stats


def format_table(report: dict) -> str:
    """A few aligned lines for a terminal."""
    lines = [
        f"model repository   {report['model_repository']}",
        f"codebook version   {report['version']}  ({report['levels']} levels x {report['codebook_size']} codes,"
        f" D={report['dim']})",
        f"measured on        {report['source']}",
    ]
    stats = report["stats"]
    if stats is None:
        return "\n".join(lines)
    lines += [
        f"items              {stats['items']}",
        f"unique full codes  {stats['unique_codes']}",
        f"collision rate     {stats['collision_rate']:.4f}   (items - unique codes) / items",
        f"max items per code {stats['max_items_per_code']}",
        "",
        f"{'level':>5}  {'used':>6}  {'utilisation':>11}  {'perplexity':>10}  {'norm. entropy':>13}  {'max share':>9}",
    ]
    for row in stats["levels"]:
        used = row.get("codes_used", round(row["utilisation"] * report["codebook_size"]))
        lines.append(
            f"{row['level']:>5}  {used:>6}  {row['utilisation']:>11.4f}  {row['perplexity']:>10.2f}"
            f"  {row['normalised_entropy']:>13.4f}  {row['max_share']:>9.4f}"
        )
    return "\n".join(lines)


def warn_if_announced_differs(heads: Path, version: str) -> None:
    """The server announces heads.json's `semantic_id_version`: it must be the id of the codebooks beside it."""
    try:
        announced = json.loads((heads.parent / "heads.json").read_text(encoding="utf-8")).get("semantic_id_version")
    except (OSError, ValueError, AttributeError):
        return  # an older or hand-made repository: nothing announced to compare with
    if announced is not None and announced != version:
        print(
            f"{PROG}: warning: {heads.parent / 'heads.json'} announces semantic_id_version {announced!r}"
            f" but the codebooks in {heads.name} are {version!r}; re-export the repository",
            file=sys.stderr,
        )


def build_report(args: argparse.Namespace) -> dict:
    """Everything `stats` prints, as one JSON-able dict; raises InputError on bad input."""
    from .semantic_ids import assign_codes, codebook_stats, codebook_version  # torch: not at CLI start-up

    repository: Path = args.model_repository
    heads = heads_file(repository)
    books = load_codebooks(heads)
    levels, size, dim = books.shape
    report = {
        "model_repository": str(repository),
        "heads": str(heads),
        "version": codebook_version(books),
        "levels": int(levels),
        "codebook_size": int(size),
        "dim": int(dim),
    }
    warn_if_announced_differs(heads, report["version"])
    if args.embeddings is None:
        report["source"] = f"the fitted corpus (recorded in {MANIFEST})"
        report["stats"] = manifest_stats(repository)
    else:
        x = load_embeddings(args.embeddings, dim)
        report["source"] = str(args.embeddings)
        report["stats"] = codebook_stats(assign_codes(x, books), size)
    return report


def run(args: argparse.Namespace) -> int:
    """0: stats printed; 1: the repository records no stats (re-export); 2: bad input."""
    try:
        report = build_report(args)
    except InputError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1) if args.json else format_table(report))
    if report["stats"] is None:
        print(
            f"{PROG}: {args.model_repository / MANIFEST} has no semantic_ids.stats: the repository predates"
            " codebook statistics; re-export it (`reelserve export --force`) or pass --embeddings FILE",
            file=sys.stderr,
        )
        return 1
    return 0
