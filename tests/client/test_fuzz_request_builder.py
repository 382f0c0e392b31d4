"""Property tests of the SDK request builder: any texts and videos round-trip byte for byte; the rest is a clear error.

The builder is the last code between a recsys caller and the wire, so it must never send a
silently different payload and never fail with anything but `InvalidArgumentError` naming the input.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.utils import deserialize_bytes_tensor

from reelserve.client import InvalidArgumentError
from reelserve.client._protocol import bytes_input, text_request, video_request

FAST = settings(max_examples=200, deadline=500, derandomize=True)
item = st.one_of(st.text(max_size=300), st.binary(max_size=2048))
not_bytes = st.one_of(st.integers(), st.none(), st.floats(allow_nan=True), st.lists(st.integers(), max_size=3))


def _wire_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _sent(tensor) -> list[bytes]:
    return [bytes(b) for b in deserialize_bytes_tensor(tensor._get_content())]


@FAST
@given(st.lists(item, min_size=1, max_size=20))
def test_any_items_round_trip_exactly(items: list[str | bytes]) -> None:
    tensor = bytes_input("text", items)
    assert tensor.name() == "text" and tensor.datatype() == "BYTES" and tensor.shape() == [len(items), 1]
    assert _sent(tensor) == [_wire_bytes(v) for v in items]


@FAST
@given(st.lists(st.binary(max_size=4096), min_size=1, max_size=8), st.data())
def test_video_request_pairs_one_text_per_video(videos: list[bytes], data) -> None:
    texts = data.draw(st.one_of(st.none(), st.lists(item, min_size=len(videos), max_size=len(videos))))
    video, text = video_request(videos, texts)
    assert (video.name(), text.name()) == ("video", "text")
    assert _sent(video) == videos
    assert _sent(text) == ([b""] * len(videos) if texts is None else [_wire_bytes(t) for t in texts])


@FAST
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=6), st.lists(item, max_size=8))
def test_mismatched_or_empty_requests_name_the_input(videos: list[bytes], texts: list[str | bytes]) -> None:
    if len(texts) == len(videos):
        texts = texts + ["one too many"]
    try:
        video_request(videos, texts)
        raise AssertionError("a mismatched request was built")
    except InvalidArgumentError as e:
        assert "'text'" in str(e)
    for empty_call, name in ((lambda: video_request([], None), "'video'"), (lambda: text_request([]), "'text'")):
        try:
            empty_call()
            raise AssertionError("an empty request was built")
        except InvalidArgumentError as e:
            assert name in str(e)


@FAST
@given(st.lists(item, max_size=5), not_bytes, st.lists(item, max_size=5))
def test_items_of_other_types_are_refused_by_name(before: list, bad: object, after: list) -> None:
    items = [*before, bad, *after]
    try:
        text_request(items)
        raise AssertionError(f"built a request holding {type(bad).__name__}")
    except InvalidArgumentError as e:
        assert "'text'" in str(e) and f"item {len(before)}" in str(e)


def test_large_item_is_sent_whole() -> None:
    big = np.random.default_rng(0).integers(0, 256, 8 << 20, dtype=np.uint8).tobytes()
    assert _sent(bytes_input("video", [big])) == [big]
