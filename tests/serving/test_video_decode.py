"""decode_clip: even sampling, padding, crop, limits, and clean refusal of bad uploads."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest

from reelserve.config import VideoConfig
from reelserve.samples import encode_frames, load_photo, malformed_videos, render_clip
from reelserve.serving.errors import InvalidInputError
from reelserve.serving.video_decode import TextFrames, decode_clip, sample_indices

CFG = VideoConfig(num_frames=8, image_size=32)


def _decode(data: bytes, cfg: VideoConfig = VideoConfig()) -> tuple[np.ndarray, np.ndarray]:  # noqa: B008
    clip = decode_clip(data, cfg)
    return clip.frames, clip.mask


def ramp_clip(n: int, *, codec: str = "h264", size: tuple[int, int] = (96, 64), step: int = 5) -> bytes:
    """n flat gray frames whose brightness encodes their index: 20 + step * i."""
    width, height = size
    return encode_frames([np.full((height, width, 3), 20 + step * i, np.uint8) for i in range(n)], codec=codec)


def brightness(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(len(frames), -1).mean(axis=1)


def test_sample_indices_are_segment_centres() -> None:
    assert sample_indices(24, 8) == [1, 4, 7, 10, 13, 16, 19, 22]
    assert sample_indices(3, 8) == [0, 1, 2]
    assert sample_indices(0, 8) == []
    assert sample_indices(8, 8) == list(range(8))


def test_normal_clip_shapes_and_dtypes() -> None:
    frames, mask = _decode(render_clip(load_photo("chelsea"), seconds=1.0, size=(144, 256)), CFG)
    assert frames.shape == (8, 32, 32, 3) and frames.dtype == np.uint8
    assert mask.shape == (8,) and mask.dtype == np.bool_ and mask.all()
    assert frames.std() > 10  # a real photo, not a blank


def test_default_config_gives_224_squares() -> None:
    frames, mask = _decode(render_clip(load_photo("coffee"), seconds=1.0))
    assert frames.shape == (8, 224, 224, 3) and mask.all()


def test_short_clip_is_padded() -> None:
    frames, mask = _decode(ramp_clip(3, step=40), CFG)
    assert mask.tolist() == [True] * 3 + [False] * 5
    assert (frames[3:] == 0).all()
    assert np.all(np.diff(brightness(frames[:3])) > 20)  # every frame, in order


def test_one_frame_clip() -> None:
    frames, mask = _decode(ramp_clip(1), CFG)
    assert mask.tolist() == [True] + [False] * 7
    assert abs(brightness(frames[:1])[0] - 20) < 4


@pytest.mark.parametrize("codec", ["h264", "mpeg4", "vp8", "vp9"])
def test_even_sampling_spans_the_whole_clip(codec: str) -> None:
    n, step = 40, 5
    frames, mask = _decode(ramp_clip(n, codec=codec, step=step), CFG)
    assert mask.all()
    means = brightness(frames)
    assert np.all(np.diff(means) > 0), means
    expected = 20 + step * np.array(sample_indices(n, 8))
    np.testing.assert_allclose(means, expected, atol=4)
    assert means[0] < 20 + step * 4 and means[-1] > 20 + step * (n - 5)  # first-ish and last-ish


def test_portrait_is_centre_cropped_not_squashed() -> None:
    width, height = 64, 128  # 1:2 portrait; the centre square is rows 32..96
    img = np.zeros((height, width, 3), np.uint8)
    img[:32] = (255, 0, 0)
    img[32:96] = (0, 200, 0)
    img[96:] = (0, 0, 255)
    frames, _ = _decode(encode_frames([img] * 4), VideoConfig(num_frames=2, image_size=32))
    center = frames[0, 2:-2, 2:-2].reshape(-1, 3).astype(int)  # skip the edge rows swscale blends
    assert center[:, 1].min() > 150 and center[:, 0].max() < 60 and center[:, 2].max() < 60


def test_landscape_is_centre_cropped() -> None:
    img = np.zeros((64, 128, 3), np.uint8)
    img[:, :32] = (255, 0, 0)
    img[:, 32:96] = (0, 200, 0)
    img[:, 96:] = (0, 0, 255)
    frames, _ = _decode(encode_frames([img] * 4), VideoConfig(num_frames=2, image_size=32))
    center = frames[0, 2:-2, 2:-2].reshape(-1, 3).astype(int)
    assert center[:, 1].min() > 150 and center[:, 0].max() < 60 and center[:, 2].max() < 60


def _with_display_matrix(mp4: bytes, matrix: tuple[int, ...]) -> bytes:
    """Patch the tkhd transformation matrix the way phones write portrait recordings."""
    data = bytearray(mp4)
    tkhd = data.find(b"tkhd")
    assert data[tkhd + 4] == 0  # version 0 layout: matrix 40 bytes after the box type
    offset = tkhd + 44
    data[offset : offset + 36] = struct.pack(">9i", *matrix)
    return bytes(data)


def test_phone_rotation_is_applied() -> None:
    img = np.zeros((64, 96, 3), np.uint8)
    img[:, :32] = (255, 255, 255)  # stored landscape, bright left third
    plain = encode_frames([img] * 2)
    rotated = _with_display_matrix(plain, (0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000))
    with av.open(io.BytesIO(rotated)) as container:
        assert next(container.decode(video=0)).rotation == -90
    cfg = VideoConfig(num_frames=1, image_size=48)
    upright, _ = _decode(plain, cfg)
    turned, _ = _decode(rotated, cfg)
    np.testing.assert_array_equal(turned[0], np.rot90(upright[0], k=-1))  # -90 = display turned clockwise


def test_packet_count_disagreeing_with_frames_still_works() -> None:
    """Append packets the decoder rejects: 24 packets demux, 20 or fewer frames decode."""
    src = ramp_clip(20)
    out = io.BytesIO()
    with av.open(io.BytesIO(src)) as inp, av.open(out, mode="w", format="mp4") as dst:
        in_stream = inp.streams.video[0]
        stream = dst.add_stream_from_template(in_stream)
        last = None
        for packet in inp.demux(in_stream):
            if packet.size:
                packet.stream = stream
                dst.mux(packet)
                last = packet
        rng = np.random.default_rng(0)
        for k in range(4):
            junk = av.Packet(rng.integers(0, 256, 50, dtype=np.uint8).tobytes())
            junk.stream, junk.time_base, junk.duration = stream, last.time_base, last.duration
            junk.pts = last.pts + (k + 10) * last.duration
            junk.dts = last.dts + (k + 1) * last.duration
            dst.mux(junk)
    frames, mask = _decode(out.getvalue(), CFG)
    assert mask.all()
    assert np.all(np.diff(brightness(frames)) > 0)


def test_truncated_webm_uses_what_decoded() -> None:
    clip = ramp_clip(40, codec="vp8")
    frames, mask = _decode(clip[: len(clip) * 6 // 10], CFG)
    assert mask.all()
    means = brightness(frames)
    assert np.all(np.diff(means) > 0)
    assert means[-1] < 20 + 5 * 35  # the tail is gone, the sampling covers what is left


@pytest.mark.parametrize("name", sorted(malformed_videos()))
def test_malformed_inputs_are_refused(name: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        _decode(malformed_videos()[name], CFG)
    assert info.value.field == "video"
    assert info.value.message and "Errno" not in info.value.message


@pytest.mark.parametrize(
    "data",
    [
        b"\x00" * 1000,
        b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
        b"ffconcat version 1.0\nfile /etc/passwd\n",
        "not bytes",
    ],
    ids=["zeros", "hls_playlist", "concat_list", "str"],
)
def test_other_garbage_is_refused(data) -> None:
    with pytest.raises(InvalidInputError) as info:
        _decode(data, CFG)
    assert info.value.field == "video"


def test_max_video_bytes() -> None:
    clip = ramp_clip(4)
    with pytest.raises(InvalidInputError, match=f"limit of {len(clip) - 1} bytes"):
        _decode(clip, VideoConfig(num_frames=8, image_size=32, max_video_bytes=len(clip) - 1))


def test_max_source_pixels() -> None:
    with pytest.raises(InvalidInputError, match=r"96x64 .*limit of 6143 pixels"):
        _decode(ramp_clip(4), VideoConfig(num_frames=8, image_size=32, max_source_pixels=96 * 64 - 1))


def test_max_decoded_frames() -> None:
    clip = ramp_clip(12)
    with pytest.raises(InvalidInputError, match="limit of 10 video frames"):
        _decode(clip, VideoConfig(num_frames=8, image_size=32, max_decoded_frames=10))
    _, mask = _decode(clip, VideoConfig(num_frames=8, image_size=32, max_decoded_frames=12))
    assert mask.all()


def test_max_decode_seconds() -> None:
    """A wall-time cap: frames x pixels under their own limits can still take long to decode."""
    from dataclasses import replace

    clip = render_clip(load_photo("coffee"), seconds=2, fps=12, size=(160, 160), motion="zoom")
    with pytest.raises(InvalidInputError, match="over the limit of 0 s"):
        _decode(clip, replace(VideoConfig(), max_decode_seconds=0.0))
    frames, mask = _decode(clip, VideoConfig())
    assert mask.all()


# --- whole frames for OCR -----------------------------------------------------------------------


def test_text_frames_are_spread_sampled_frames_at_source_size() -> None:
    clip = decode_clip(ramp_clip(24, step=8), CFG, TextFrames(num=2, max_side=960))
    assert [f.shape for f in clip.text_frames] == [(64, 96, 3)] * 2  # whole frame, not the 32 px square
    got = [f.mean() for f in clip.text_frames]
    model = brightness(clip.frames)
    # OCR reads sampled slots 2 and 6 of 8 (segment centres), the same pictures the encoder sees
    np.testing.assert_allclose(got, model[[2, 6]], atol=3)


def test_text_frames_scaled_down_to_max_side_never_up() -> None:
    clip = ramp_clip(4, size=(320, 180))
    (big,) = decode_clip(clip, CFG, TextFrames(num=1, max_side=160)).text_frames
    assert big.shape == (90, 160, 3)
    (same,) = decode_clip(clip, CFG, TextFrames(num=1, max_side=4096)).text_frames
    assert same.shape == (180, 320, 3)


def test_text_frames_fewer_when_the_clip_is_short_none_when_off() -> None:
    assert len(decode_clip(ramp_clip(1), CFG, TextFrames(num=3)).text_frames) == 1
    assert decode_clip(ramp_clip(12), CFG, TextFrames(num=0)).text_frames == []
    assert len(decode_clip(ramp_clip(12), CFG, TextFrames(num=20)).text_frames) == 8  # never more than sampled


def test_text_frames_are_upright() -> None:
    img = np.zeros((64, 96, 3), np.uint8)
    img[:, :32] = (255, 255, 255)
    rotated = _with_display_matrix(encode_frames([img] * 2), (0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000))
    (frame,) = decode_clip(rotated, VideoConfig(num_frames=1, image_size=48), TextFrames(num=1)).text_frames
    assert frame.shape == (96, 64, 3)
    np.testing.assert_allclose(frame.astype(float), np.rot90(img, k=-1), atol=8)
