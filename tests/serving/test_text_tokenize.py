"""TextTokenizer with MiniLM's real tokenizer.json: special tokens, empty text, truncation, limits."""

from __future__ import annotations

import numpy as np
import pytest

from reelserve.config import TextConfig
from reelserve.models.bert_encoder import minilm_dir
from reelserve.serving.errors import InvalidInputError
from reelserve.serving.text_tokenize import TextTokenizer, decode_utf8

CLS, SEP = 101, 102


@pytest.fixture(scope="module")
def tok() -> TextTokenizer:
    return TextTokenizer(minilm_dir() / "tokenizer.json", TextConfig(max_tokens=16, max_text_bytes=200))


def test_ids_start_with_cls_and_end_with_sep(tok) -> None:
    texts = ["My cat Chelsea", "Café de la mañana ☕".encode(), "我家的猫", "x"]
    ids, mask, truncated = tok.encode(texts)
    assert ids.dtype == np.int64 and mask.dtype == np.int64 and truncated.dtype == np.bool_
    assert ids.shape == mask.shape and ids.shape[0] == len(texts) and truncated.shape == (len(texts),)
    for i, row in enumerate(ids):
        n = int(mask[i].sum())
        assert n >= 3, f"row {i}: expected [CLS] token(s) [SEP], got {row[:n]}"
        assert row[0] == CLS and row[n - 1] == SEP, f"row {i}: {row[:n]}"
        assert np.all(mask[i, :n] == 1) and np.all(mask[i, n:] == 0), "mask is a prefix of ones"
        assert np.all(row[n:] == 0), "padding id is 0"
    assert not truncated.any()


def test_matches_the_tokenizers_library(tok) -> None:
    from tokenizers import Tokenizer

    ref = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    ref.no_padding()  # the shipped tokenizer.json pads to 128; TextTokenizer pads per batch
    ids, mask, _ = tok.encode(["hello world, this is reelserve"])
    want = ref.encode("hello world, this is reelserve").ids
    assert ids[0, : int(mask[0].sum())].tolist() == want


@pytest.mark.parametrize("text", ["", " ", "\t\n  ", b"", "\u3000"])
def test_empty_or_whitespace_gives_all_zero_mask(tok, text) -> None:
    ids, mask, truncated = tok.encode([text, "a cat"])
    assert np.all(mask[0] == 0) and np.all(ids[0] == 0), f"{text!r}: ids {ids[0]}, mask {mask[0]}"
    assert mask[1].sum() == 4  # [CLS] a cat [SEP]
    assert not truncated[0]


def test_all_empty_batch_has_length_one(tok) -> None:
    ids, mask, truncated = tok.encode(["", "  "])
    assert ids.shape == (2, 1) and mask.shape == (2, 1)
    assert not mask.any() and not truncated.any()


def test_long_text_truncated_and_flagged(tok) -> None:
    long = "cats and coffee " * 12  # 192 bytes (under the byte limit), 36 words + 2 specials
    ids, mask, truncated = tok.encode(["short title", long, "exactly fits"])
    assert truncated.tolist() == [False, True, False]
    assert ids.shape[1] == 16 and mask[1].sum() == 16
    assert ids[1, 0] == CLS and ids[1, 15] == SEP, "truncation keeps [SEP] at the end"


def test_text_of_exactly_max_tokens_is_not_truncated() -> None:
    tok = TextTokenizer(minilm_dir() / "tokenizer.json", TextConfig(max_tokens=5))
    ids, mask, truncated = tok.encode(["cat dog cow", "cat dog cow pig"])  # 3 + 2 specials = 5; 4 + 2 = 6
    assert mask.sum(1).tolist() == [5, 5]
    assert truncated.tolist() == [False, True]


@pytest.mark.parametrize(
    "raw,offset",
    [(b"\xff", 0), (b"ok \xc3\x28 bad", 3), ("café".encode() + b"\x80", 5), (b"abc\xe2\x82", 3)],
)
def test_invalid_utf8_names_the_offset(tok, raw: bytes, offset: int) -> None:
    with pytest.raises(InvalidInputError) as info:
        tok.encode(["fine", raw])
    assert info.value.field == "text"
    assert f"offset {offset}" in str(info.value), str(info.value)
    assert "UTF-8" in str(info.value)


def test_over_max_bytes_names_the_limit(tok) -> None:
    raw = "é" * 101  # 202 bytes of UTF-8 > 200
    with pytest.raises(InvalidInputError) as info:
        tok.encode([raw])
    assert info.value.field == "text"
    assert "200" in info.value.message and "202" in info.value.message, info.value.message
    tok.encode(["é" * 100])  # exactly at the limit is fine
    with pytest.raises(InvalidInputError, match="limit"):
        decode_utf8(b"x" * 201, 200)


def test_batch_padded_to_longest_row(tok) -> None:
    texts = ["a", "a cat on a sofa", "cat"]
    ids, mask, _ = tok.encode(texts)
    lengths = mask.sum(1)
    assert ids.shape[1] == lengths.max() == 7, f"lengths {lengths}"
    for i, text in enumerate(texts):
        alone, alone_mask, _ = tok.encode([text])
        assert alone.shape[1] == lengths[i]
        np.testing.assert_array_equal(ids[i, : lengths[i]], alone[0])
        np.testing.assert_array_equal(mask[i, : lengths[i]], alone_mask[0])


def test_pad_tokens_to_gives_every_request_one_shape() -> None:
    """The GPU target pads to max_tokens so TensorRT's batcher can merge any two requests."""
    padded = TextTokenizer(minilm_dir() / "tokenizer.json", TextConfig(max_tokens=16, pad_tokens_to=16))
    short, _, _ = padded.encode(["hi"])
    long_ids, long_mask, truncated = padded.encode(["a long title " * 20])
    assert short.shape == long_ids.shape == (1, 16)
    assert truncated[0] and long_mask.sum() == 16
    plain, _, _ = TextTokenizer(minilm_dir() / "tokenizer.json", TextConfig(max_tokens=16)).encode(["hi"])
    assert plain.shape[1] < 16 and np.array_equal(short[0, : plain.shape[1]], plain[0])
