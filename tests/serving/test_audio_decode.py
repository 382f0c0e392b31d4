"""decode_audio: 16 kHz mono float from any rate and layout, cut at max_seconds, and never a raise on bad audio."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest

from reelserve.samples import corrupt_audio, encode_frames, malformed_videos
from reelserve.serving.audio_decode import SAMPLE_RATE, decode_audio
from reelserve.serving.video_decode import decode_clip

TONE_HZ = 440.0


def mux(
    seconds: float,
    rate: int,
    layout: str,
    *,
    codec: str = "aac",
    fmt: str = "mp4",
    video: bool = True,
    tone_channels: tuple[int, ...] | None = None,
    amplitude: float = 0.3,
) -> bytes:
    """A container with (optionally) a short gray h264 video and `seconds` of a 440 Hz tone on `tone_channels`."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as container:
        astream = container.add_stream(codec, rate=rate)  # every stream before the first packet (the header)
        astream.layout = layout
        if video:
            vstream = container.add_stream("libx264", rate=Fraction(8), options={"preset": "ultrafast"})
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
            for i in range(8):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 90, np.uint8), format="rgb24")
                frame.pts = i
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode(None))
        channels = av.AudioLayout(layout).nb_channels
        loud = range(channels) if tone_channels is None else tone_channels
        total, step = round(seconds * rate), 1024
        for start in range(0, total, step):
            n = min(step, total - start)
            tone = (amplitude * np.sin(2 * np.pi * TONE_HZ * (start + np.arange(n)) / rate)).astype(np.float32)
            planes = np.zeros((channels, n), np.float32)
            planes[list(loud)] = tone
            frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, start
            container.mux(astream.encode(frame))
        container.mux(astream.encode(None))
    return buf.getvalue()


def dominant_hz(samples: np.ndarray) -> float:
    body = samples[2048:]  # past the AAC priming
    spectrum = np.abs(np.fft.rfft(body * np.hanning(len(body))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(body))


@pytest.mark.parametrize(
    ("rate", "layout", "codec", "tone_channels", "min_peak"),
    [
        (8000, "mono", "aac", None, 0.25),
        (44100, "stereo", "aac", None, 0.25),
        (48000, "stereo", "aac", (0,), 0.1),  # left only: half the mono mix, not lost
        (48000, "5.1", "aac", (2,), 0.25),  # dialogue lives on the centre channel
        (48000, "stereo", "libopus", None, 0.25),
    ],
    ids=["aac-8k-mono", "aac-44.1k-stereo", "aac-48k-left-only", "aac-48k-5.1-centre", "opus-48k-stereo"],
)
def test_any_rate_and_layout_becomes_16k_mono_float(
    rate: int, layout: str, codec: str, tone_channels: tuple[int, ...] | None, min_peak: float
) -> None:
    track = decode_audio(mux(2.0, rate, layout, codec=codec, tone_channels=tone_channels), max_seconds=30)
    assert track.note == ""
    assert track.samples.dtype == np.float32 and track.samples.ndim == 1
    assert track.source_rate == rate and track.channels == av.AudioLayout(layout).nb_channels
    assert track.seconds == pytest.approx(2.0, abs=0.1) and track.seconds == len(track.samples) / SAMPLE_RATE
    assert np.all(np.abs(track.samples) <= 1.0)
    assert min_peak < np.abs(track.samples).max() < 0.5  # the tone, not clipped
    assert dominant_hz(track.samples) == pytest.approx(TONE_HZ, abs=3)  # resampled, not sped up


def test_audio_only_container_decodes() -> None:
    track = decode_audio(mux(1.0, 48000, "mono", codec="libopus", fmt="ogg", video=False), max_seconds=30)
    assert track.note == "" and track.seconds == pytest.approx(1.0, abs=0.1)
    assert dominant_hz(track.samples) == pytest.approx(TONE_HZ, abs=3)


def test_video_without_audio_is_an_empty_track_with_a_note() -> None:
    track = decode_audio(encode_frames([np.full((48, 64, 3), 90, np.uint8)] * 4), max_seconds=30)
    assert track.note == "no audio stream"
    assert track.samples.shape == (0,) and track.samples.dtype == np.float32
    assert track.seconds == 0.0 and track.channels == 0


def test_decoding_stops_at_max_seconds() -> None:
    track = decode_audio(mux(2.0, 44100, "stereo"), max_seconds=0.5)
    assert len(track.samples) == SAMPLE_RATE // 2 and track.seconds == 0.5


def test_a_ten_minute_track_costs_what_its_first_30_seconds_cost() -> None:
    ten_minutes = mux(600.0, 8000, "mono", video=False, amplitude=0.0)
    track = decode_audio(ten_minutes, max_seconds=30)
    assert track.note == ""
    assert len(track.samples) == 30 * SAMPLE_RATE and track.seconds == 30.0  # stopped there, not cut afterwards
    assert not np.any(track.samples)


def test_corrupt_audio_beside_a_good_video_is_a_note_and_the_video_still_decodes() -> None:
    data = corrupt_audio(mux(2.0, 48000, "stereo"))
    track = decode_audio(data, max_seconds=30)
    assert track.note.startswith("undecodable audio: ") and "packets failed" in track.note
    assert track.samples.shape == (0,) and track.source_rate == 48000
    assert decode_clip(data).mask.any()


def test_an_audio_codec_without_a_decoder_is_a_note() -> None:
    data = mux(1.0, 48000, "stereo", fmt="matroska")
    assert data.count(b"A_AAC") == 1
    track = decode_audio(data.replace(b"A_AAC", b"A_ZZZ"), max_seconds=30)  # a codec id FFmpeg does not know
    assert track.note == "undecodable audio: the audio codec is unknown or has no decoder"
    assert track.samples.shape == (0,)


@pytest.mark.parametrize("name", sorted(malformed_videos()))
def test_uploads_the_video_decoder_refuses_never_raise_here(name: str) -> None:
    track = decode_audio(malformed_videos()[name], max_seconds=30)
    if name == "audio_only":  # Opus silence: real audio, no video
        assert track.note == "" and track.seconds == pytest.approx(0.5, abs=0.05)
    else:
        assert track.note and track.samples.shape == (0,)


def test_truncated_container_gives_what_decoded_or_a_note() -> None:
    data = mux(2.0, 44100, "stereo", video=False)
    for cut in (len(data) // 3, len(data) // 2, len(data) - 100):
        track = decode_audio(data[:cut], max_seconds=30)
        assert (track.note == "") == (len(track.samples) > 0)
        assert np.all(np.abs(track.samples) <= 1.0)


def test_not_bytes_and_zero_seconds_are_notes() -> None:
    assert decode_audio("not bytes", max_seconds=30).note.startswith("undecodable audio: expected container bytes")  # type: ignore[arg-type]
    assert decode_audio(mux(0.5, 16000, "mono"), max_seconds=0).note.startswith("audio decoding is off")
