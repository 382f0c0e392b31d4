"""On-screen text through a real tritonserver: the `ocr` step of `video_features`, on clips the test prints on."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from reelserve.client import VideoFeaturesClient
from reelserve.samples import encode_frames, ken_burns_frames, load_photo
from reelserve.serving.ocr import line_key

pytestmark = pytest.mark.integration


def _font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans Bold from the matplotlib wheel (PyPI): no system fonts."""
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans-Bold.ttf"), size)


def printed_clip(photo: str, lines: list[str], *, size=(288, 512), codec="h264", seconds=1.5) -> bytes:
    """A clip of `photo` with `lines` drawn on every frame (white, black outline), like an uploader's caption."""
    frames = ken_burns_frames(load_photo(photo), n=round(seconds * 12), size=size, motion="zoom")
    font = _font(max(12, size[1] // 18))
    out = []
    for frame in frames:
        img = Image.fromarray(frame)
        draw = ImageDraw.Draw(img)
        for i, line in enumerate(lines):
            draw.text(
                (12, size[1] * 0.6 + i * font.size * 1.4),
                line,
                font=font,
                fill="white",
                stroke_width=2,
                stroke_fill="black",
            )
        out.append(np.asarray(img))
    return encode_frames(out, codec=codec)


def squeezed(text: str) -> list[str]:
    """Lines without their spaces: PP-OCR sometimes drops the space between two bold capitalised words."""
    return [line_key(line) for line in text.splitlines()]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_ocr_text_contains_the_printed_words(client: VideoFeaturesClient) -> None:
    (f,) = client.video_features([printed_clip("astronaut", ["SPACE WALK", "live at 9pm"])], ["my video"])
    for word in ("SPACE", "WALK", "live", "at", "9pm"):
        assert word in f.ocr_text, f.ocr_text
    assert squeezed(f.ocr_text) == squeezed("SPACE WALK\nlive at 9pm"), f.ocr_text


def test_no_printed_text_gives_empty_ocr_text(client: VideoFeaturesClient) -> None:
    (f,) = client.video_features([printed_clip("chelsea", [])], ["my cat"])
    assert f.ocr_text == ""


def test_printed_words_move_the_embedding_and_the_zero_shot_scores(client: VideoFeaturesClient) -> None:
    """The same cat clip and title, with and without "FRESH COFFEE" printed on it."""
    plain, printed = client.video_features(
        [printed_clip("chelsea", []), printed_clip("chelsea", ["FRESH COFFEE", "FRESH COFFEE"])], ["", ""]
    )
    assert "COFFEE" in printed.ocr_text
    assert cosine(plain.embedding, printed.embedding) < 0.99
    assert printed.label_scores["coffee"] > plain.label_scores["coffee"] + 0.02
    assert plain.top_label == "a cat"


def test_batch_of_different_resolutions_and_codecs(client: VideoFeaturesClient) -> None:
    """One request, three clips of different sizes: each gets its own words (frames padded, then cropped back)."""
    videos = [
        printed_clip("rocket", ["LAUNCH DAY"], size=(640, 360), codec="vp9"),
        printed_clip("coffee", [], size=(160, 288)),
        printed_clip("coffee", ["OPEN 24 HOURS"], size=(360, 640), codec="mpeg4"),
    ]
    got = [squeezed(f.ocr_text) for f in client.video_features(videos, ["a", "b", "c"])]
    assert got == [["launchday"], [], ["open24hours"]], got


def test_concurrent_requests_each_get_their_own_text(client: VideoFeaturesClient) -> None:
    words = ["ALPHA 1", "BRAVO 2", "CHARLIE 3", "DELTA 4", "ECHO 5", "FOXTROT 6"]
    sizes = [(288, 512), (360, 640), (240, 426)]
    clips = [printed_clip("coffee", [w], size=sizes[i % 3]) for i, w in enumerate(words)]
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda v: client.video_features([v], ["x"])[0].ocr_text, clips))
    assert [squeezed(t) for t in got] == [squeezed(w) for w in words], got
