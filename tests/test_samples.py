"""samples: deterministic in-memory clips from bundled photos, plus the malformed fixtures."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from reelserve.samples import (
    PHOTOS,
    demo_videos,
    encode_frames,
    ken_burns_frames,
    load_photo,
    malformed_videos,
    render_clip,
    speak,
)


def probe(data: bytes) -> tuple[str, str, int, int, str, int]:
    """-> (container, codec, width, height, pix_fmt, decoded frames)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        first = frames[0]
        codec = stream.codec_context.name
        return container.format.name, codec, first.width, first.height, first.format.name, len(frames)


@pytest.mark.parametrize(("codec", "container"), [("h264", "mov"), ("mpeg4", "mov"), ("vp8", "webm"), ("vp9", "webm")])
def test_render_clip_codecs_and_containers(codec: str, container: str) -> None:
    data = render_clip(load_photo("rocket"), seconds=0.5, fps=12, size=(72, 128), codec=codec)
    fmt, name, width, height, pix_fmt, count = probe(data)
    assert container in fmt and name == codec
    assert (width, height, pix_fmt, count) == (72, 128, "yuv420p", 6)
    assert data[4:8] == b"ftyp" if container == "mov" else data[:4] == b"\x1a\x45\xdf\xa3"


@pytest.mark.parametrize("codec", ["h264", "mpeg4", "vp8", "vp9"])
def test_render_clip_is_deterministic(codec: str) -> None:
    photo = load_photo("chelsea")
    first = render_clip(photo, seconds=1.0, size=(144, 256), codec=codec)
    assert all(render_clip(photo, seconds=1.0, size=(144, 256), codec=codec) == first for _ in range(3))
    assert render_clip(photo, seconds=1.0, size=(144, 256), codec=codec, seed=1) != first


def test_default_clip_is_portrait_two_seconds() -> None:
    _, _, width, height, _, count = probe(render_clip(load_photo("coffee")))
    assert (width, height, count) == (288, 512, 24)


@pytest.mark.parametrize("motion", ["zoom", "pan", "still"])
def test_motions(motion: str) -> None:
    frames = ken_burns_frames(load_photo("astronaut"), n=6, size=(72, 128), motion=motion)
    assert len(frames) == 6 and frames[0].shape == (128, 72, 3) and frames[0].dtype == np.uint8
    change = np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean()
    assert change > 5 if motion != "still" else change == 0


def test_grayscale_photo_becomes_rgb() -> None:
    photo = load_photo("camera")
    assert photo.shape[2] == 3 and (photo[..., 0] == photo[..., 2]).all()
    assert probe(render_clip(photo, seconds=0.25, size=(64, 96)))[-1] == 3


def test_all_photos_load_offline() -> None:
    for name in PHOTOS:
        photo = load_photo(name)
        assert photo.ndim == 3 and photo.shape[2] == 3 and photo.dtype == np.uint8 and min(photo.shape[:2]) >= 256


def test_demo_videos() -> None:
    videos = demo_videos()
    assert len(videos) >= 6
    assert len({v.name for v in videos}) == len(videos)
    assert sum(not v.title.isascii() for v in videos) >= 4  # multilingual titles
    assert {v.codec for v in videos} >= {"h264", "vp9"}
    for video in videos:
        assert video.photo in PHOTOS
        assert probe(video.render(narrate=False, seconds=0.25, size=(72, 128)))[-1] == 3
    assert {v.voice for v in videos if v.narration} >= {"en", "es"}  # narrated in English and Spanish


@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_narrated_clips_carry_the_speech_deterministically(codec: str) -> None:
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("narration is synthesised with espeak-ng, which is not installed (apt-get install espeak-ng)")
    speech = speak("Three, two, one, lift off.", "en")
    assert speech.samples.ndim == 2 and speech.seconds > 1.0 and np.abs(speech.samples).max() > 0.1
    clip = render_clip(load_photo("rocket"), seconds=0.5, size=(72, 128), codec=codec, audio=speech)
    assert clip == render_clip(load_photo("rocket"), seconds=0.5, size=(72, 128), codec=codec, audio=speech)
    with av.open(io.BytesIO(clip)) as container:
        (audio,) = container.streams.audio
        assert audio.codec_context.name == {"h264": "aac", "vp9": "opus"}[codec]
        decoded = sum(f.samples for f in container.decode(audio)) / audio.codec_context.sample_rate
    assert abs(decoded - speech.seconds) < 0.1  # the whole narration, longer than the pictures


def test_bad_arguments() -> None:
    photo = load_photo("coffee")
    with pytest.raises(ValueError, match="even"):
        render_clip(photo, size=(71, 128), seconds=0.1)
    with pytest.raises(ValueError, match="codec"):
        render_clip(photo, codec="av1", seconds=0.1)
    with pytest.raises(ValueError, match="motion"):
        render_clip(photo, motion="spin", seconds=0.1)
    with pytest.raises(ValueError, match="no frames"):
        encode_frames([])


def test_malformed_fixtures() -> None:
    bad = malformed_videos()
    assert {"empty", "random_bytes", "png_image", "truncated_mp4", "audio_only"} <= set(bad)
    assert bad["empty"] == b"" and len(bad["truncated_mp4"]) == 200
    assert bad["png_image"].startswith(b"\x89PNG\r\n\x1a\n")
    assert malformed_videos() == bad  # seeded
    with av.open(io.BytesIO(bad["audio_only"])) as container:
        assert not container.streams.video and len(container.streams.audio) == 1
