"""UTF-8 text -> padded token ids for the text tower, with the request limits enforced.

Uses the tower's own `tokenizer.json` (Hugging Face `tokenizers`, Rust), which `reelserve
export` writes next to the `preprocess` step with `text_tower.json` (the model card's prefix
and a per-codepoint normalisation applied before the tokenizer). Empty text is legal (a video
may have no title): it yields an all-zero attention mask, which the heads read as "no text".
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from reelserve.config import TextConfig

from .errors import InvalidInputError

FIELD = "text"


def decode_utf8(raw: bytes | str, max_bytes: int) -> str:
    """The request's bytes as text, refusing payloads a tokenizer should never see."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > max_bytes:
        raise InvalidInputError(FIELD, f"is {len(raw)} bytes; the limit is {max_bytes} bytes of UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError(FIELD, f"is not valid UTF-8 (bad byte at offset {e.start})") from None


_SPACES = re.compile(" {2,}")


class TextTokenizer:
    def __init__(
        self,
        tokenizer_json: Path,
        cfg: TextConfig | None = None,
        *,
        prefix: str = "",
        normalization: dict[int, str] | None = None,
    ) -> None:
        self.cfg = cfg = cfg or TextConfig()
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=cfg.max_tokens)
        self.prefix = prefix
        self.normalization = normalization or {}

    @classmethod
    def from_folder(cls, folder: Path, cfg: TextConfig | None = None) -> TextTokenizer:
        """`tokenizer.json` + `text_tower.json` as `reelserve export` writes them (the latter optional)."""
        folder = Path(folder)
        meta_path = folder / "text_tower.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
        table = {int(k): v for k, v in meta.get("normalization", {}).items()}
        return cls(folder / "tokenizer.json", cfg, prefix=meta.get("prefix", ""), normalization=table)

    def _prepare(self, text: str) -> str:
        if self.normalization:
            text = _SPACES.sub(" ", text.translate(self.normalization))
        return self.prefix + text

    def encode(self, texts: Sequence[bytes | str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> input_ids [B, L] int64, attention_mask [B, L] int64, truncated [B] bool.

        L is the longest text in this call (at least 1 and `pad_tokens_to`); texts beyond `max_tokens` are cut
        and flagged, never refused.
        """
        return self.encode_strings([decode_utf8(t, self.cfg.max_text_bytes) for t in texts])

    def encode_strings(self, strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`encode` for text that is already validated (a title plus what OCR read); never refuses."""
        ids: list[list[int]] = []
        truncated = np.zeros(len(strings), dtype=bool)
        nonempty = [i for i, s in enumerate(strings) if s.strip()]
        encodings = self._tok.encode_batch([self._prepare(strings[i]) for i in nonempty]) if nonempty else []
        by_index = dict(zip(nonempty, encodings, strict=True))
        for i in range(len(strings)):
            enc = by_index.get(i)
            ids.append(enc.ids if enc is not None else [])
            truncated[i] = enc is not None and len(enc.overflowing) > 0
        length = max([1, self.cfg.pad_tokens_to, *map(len, ids)])
        input_ids = np.zeros((len(ids), length), dtype=np.int64)
        attention_mask = np.zeros((len(ids), length), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            attention_mask[i, : len(row)] = 1
        return input_ids, attention_mask, truncated


def video_text(title: str, printed: str, spoken: str = "") -> str:
    """What the text tower reads for a video: the uploader's text, then the printed text, then the speech.

    One sequence, so attention mixes them and one pooled vector carries them all; the parts are
    joined by newlines in that order, so truncation at `max_tokens` cuts the transcript first (the
    longest and least deliberate part), then the printed text, and the title only when it alone
    fills the budget (`text_truncated` reports the client's own text only).
    """
    return "\n".join(part for part in (title.strip(), printed.strip(), spoken.strip()) if part)
