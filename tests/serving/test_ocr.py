"""On-screen text: PP-OCR reads words this test prints on frames with a packaged font; lines merge once per clip."""

from __future__ import annotations

import numpy as np
import pytest

from reelserve.samples import draw_caption, ken_burns_frames, load_photo
from reelserve.serving.ocr import OnScreenTextReader, line_key, merge_lines


@pytest.fixture(scope="module")
def reader() -> OnScreenTextReader:
    return OnScreenTextReader()


def _frame(photo: str, caption: str, size: tuple[int, int] = (288, 512)) -> np.ndarray:
    (frame,) = draw_caption(ken_burns_frames(load_photo(photo), n=1, size=size), caption)
    return frame


def test_merge_lines_keeps_order_and_drops_repeats() -> None:
    frames = [["FRESH COFFEE", "only $3.50"], ["FRESHCOFFEE", "  only  $3.50 ", "new line"], [], [""]]
    assert merge_lines(frames, max_chars=100) == "FRESH COFFEE\nonly $3.50\nnew line"
    assert line_key("Fresh  Coffee") == line_key("FRESHCOFFEE")


def test_merge_lines_stops_at_max_chars_on_a_line_boundary() -> None:
    lines = [[f"line number {i}" for i in range(50)]]
    text = merge_lines(lines, max_chars=40)
    assert text == "line number 0\nline number 1"
    assert merge_lines(lines, max_chars=0) == ""


def test_reads_printed_words(reader: OnScreenTextReader) -> None:
    lines = reader.read(_frame("coffee", "FRESH COFFEE\nonly $3.50 today"))
    assert lines == ["FRESH COFFEE", "only $3.50 today"], lines


def test_reads_a_landscape_frame_and_keeps_reading_order(reader: OnScreenTextReader) -> None:
    lines = reader.read(_frame("rocket", "LAUNCH DAY\nWATCH LIVE", size=(640, 360)))
    assert lines == ["LAUNCH DAY", "WATCH LIVE"], lines


@pytest.mark.parametrize("photo", ["chelsea", "astronaut"])
def test_frame_without_text_reads_nothing(reader: OnScreenTextReader, photo: str) -> None:
    assert reader.read(_frame(photo, "")) == []


@pytest.mark.parametrize("shape", [(0, 0, 3), (4, 300, 3), (300, 4, 3), (64, 64, 4), (64, 64)])
def test_degenerate_frames_read_nothing(reader: OnScreenTextReader, shape: tuple[int, ...]) -> None:
    assert reader.read(np.zeros(shape, np.uint8)) == []


def test_read_clip_merges_frames(reader: OnScreenTextReader) -> None:
    a = _frame("coffee", "FRESH COFFEE")
    b = _frame("coffee", "FRESH COFFEE\nopen at 7")
    blank = _frame("chelsea", "")
    assert reader.read_clip([a, blank, b], max_chars=2000) == "FRESH COFFEE\nopen at 7"


def test_recognition_skipped_on_a_frame_without_text(reader: OnScreenTextReader, monkeypatch) -> None:
    """A frame where detection finds no text costs detection only: recognition does not run."""
    rec = reader.engine.text_rec
    calls: list[int] = []
    original = type(rec).__call__
    monkeypatch.setattr(type(rec), "__call__", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    reader.read(_frame("chelsea", ""))
    assert calls == []
    reader.read(_frame("coffee", "FRESH COFFEE"))
    assert calls == [1]


def test_frames_read_together_read_as_the_package_reads_each(reader: OnScreenTextReader, monkeypatch) -> None:
    frames = [
        _frame("coffee", "FRESH COFFEE\nonly $3.50 today"),
        _frame("chelsea", ""),
        _frame("rocket", "LAUNCH DAY\nWATCH LIVE", size=(640, 360)),
        np.zeros((4, 300, 3), np.uint8),
        _frame("coffee", "open at 7"),
        _frame("astronaut", "SPACE WALK"),
    ]
    want = [reader.read_alone(f) for f in frames]
    assert sum(map(len, want)) >= 6, want
    detector_batches: list[int] = []
    recognitions: list[int] = []
    detect, recognise = reader.engine.text_det.infer, reader.engine.text_rec
    monkeypatch.setattr(reader.engine.text_det, "infer", lambda x: detector_batches.append(len(x)) or detect(x))
    monkeypatch.setattr(
        reader.engine, "text_rec", lambda crops, *a: recognitions.append(len(crops)) or recognise(crops, *a)
    )
    assert reader.read_frames(frames) == want
    assert sorted(detector_batches) == [1, 2, 2]  # four 288x512 frames two at a time, the landscape one alone
    assert recognitions == [sum(map(len, want))]  # every line of every frame in one recognition call


def test_sessions_are_ours_idle_threads_do_not_spin(reader: OnScreenTextReader) -> None:
    for runner in (reader.engine.text_det.infer, reader.engine.text_rec.session):
        config = runner.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
        assert config == "0", runner


@pytest.mark.parametrize("shape", [(512, 288, 3), (640, 360, 3), (301, 517, 3), (960, 540, 3)])
def test_detector_input_is_the_packages_preprocessing_bit_for_bit(reader: OnScreenTextReader, shape) -> None:
    image = np.random.default_rng(shape[0]).integers(0, 256, shape, dtype=np.uint8)
    want = reader.engine.text_det.get_preprocess(max(shape[:2]))(image)
    got = reader.detector_input(image)
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got, want)


def test_detector_input_of_an_image_too_small_to_resize_is_none(reader: OnScreenTextReader) -> None:
    assert reader.detector_input(np.zeros((10, 12, 3), np.uint8)) is None
