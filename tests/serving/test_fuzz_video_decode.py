"""Property tests of the video decoder on hostile bytes: decoded frames or `InvalidInputError('video')`, nothing else.

Arbitrary bytes and byte-level mutations of real containers (flips, truncations, insertions,
deletions) must never crash, hang (each example has a deadline) or leak; a result never depends
on hidden state (the same bytes decode to the same arrays).
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reelserve.config import VideoConfig
from reelserve.samples import load_photo, render_clip
from reelserve.serving.errors import InvalidInputError
from reelserve.serving.video_decode import decode_clip

CFG = replace(VideoConfig(), num_frames=4, image_size=32, max_decode_seconds=5.0)
PROPERTY = settings(
    max_examples=400, deadline=3000, derandomize=True, suppress_health_check=[HealthCheck.data_too_large]
)


@functools.cache
def real_clips() -> dict[str, bytes]:
    photo = load_photo("chelsea")[:96, :128]
    return {
        codec: render_clip(photo, seconds=0.5, fps=8, size=(64, 48), motion="zoom", codec=codec)
        for codec in ("h264", "mpeg4", "vp9")
    }


def decode_or_refuse(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """The decoder's contract on any input: valid arrays, or a refusal of the 'video' input."""
    try:
        clip = decode_clip(data, CFG)
        frames, mask = clip.frames, clip.mask
    except InvalidInputError as e:
        assert e.field == "video", e
        return None
    assert frames.dtype == np.uint8 and frames.shape == (CFG.num_frames, CFG.image_size, CFG.image_size, 3)
    assert mask.dtype == np.bool_ and mask.shape == (CFG.num_frames,) and mask.any()
    assert mask[: int(mask.sum())].all(), "real frames come first, padding after"
    assert not frames[~mask].any(), "padding slots are zeros"
    return frames, mask


@st.composite
def mutated_clip(draw) -> bytes:
    data = bytearray(real_clips()[draw(st.sampled_from(sorted(real_clips())))])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif data:
            del data[at : at + draw(st.integers(1, 256))]
    return bytes(data)


@PROPERTY
@given(st.binary(max_size=64 * 1024))
def test_arbitrary_bytes_decode_or_are_refused(data: bytes) -> None:
    decode_or_refuse(data)


@PROPERTY
@given(mutated_clip())
def test_mutated_real_containers_decode_or_are_refused_deterministically(data: bytes) -> None:
    first = decode_or_refuse(data)
    second = decode_or_refuse(data)
    assert (first is None) == (second is None)
    if first is not None:
        np.testing.assert_array_equal(first[0], second[0])
        np.testing.assert_array_equal(first[1], second[1])


def test_unmutated_clips_decode() -> None:
    for codec, data in real_clips().items():
        assert decode_or_refuse(data) is not None, codec


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status on this OS")


def test_repeated_refusals_do_not_leak() -> None:
    bad = bytearray(real_clips()["h264"])
    bad[len(bad) // 2 :] = bytes(len(bad) - len(bad) // 2)  # a zeroed second half
    samples = [bytes(bad), real_clips()["vp9"][:300], b"\x00" * 4096]
    for data in samples * 20:  # warm-up: allocator pools, codec tables
        decode_or_refuse(data)
    before = _rss_mib()
    for data in samples * 150:
        decode_or_refuse(data)
    assert _rss_mib() - before < 20, "RSS grew by 20 MiB or more over 450 decodes"
