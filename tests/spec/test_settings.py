"""Config sections cross into steps as strict JSON: what is written is what loads, anything else is refused."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pytest

from reelserve.config import DEFAULT, OcrConfig, VideoConfig
from reelserve.spec.settings import SettingsError, decode, encode, read_sections, step_parameters
from reelserve.spec.topology import STEP_SECTIONS


def test_every_section_round_trips() -> None:
    video, text = replace(DEFAULT.video, max_decode_seconds=3.25), replace(DEFAULT.text, tower="猫")
    cfg = replace(DEFAULT, video=video, text=text)
    for step, sections in STEP_SECTIONS.items():
        assert read_sections(step_parameters(cfg, sections), sections, step) == {s: getattr(cfg, s) for s in sections}


def test_a_float_written_as_an_integer_is_still_a_float() -> None:
    data = json.loads(encode(DEFAULT.video)) | {"max_decode_seconds": 20}
    loaded = decode(VideoConfig, json.dumps(data), "preprocess.video")
    assert loaded.max_decode_seconds == 20.0 and isinstance(loaded.max_decode_seconds, float)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d | {"frame": 2}, r"unknown \['frame'\]"),  # a typo never falls back to a default
        (lambda d: {k: v for k, v in d.items() if k != "frames"}, r"missing \['frames'\]"),
        (lambda d: d | {"frames": "2"}, r"preprocess\.ocr\.frames must be int"),
        (lambda d: d | {"frames": True}, r"preprocess\.ocr\.frames must be int"),
        (lambda d: d | {"frames": 2.5}, r"preprocess\.ocr\.frames must be int"),
        (lambda d: d | {"min_score": None}, r"preprocess\.ocr\.min_score must be float"),
    ],
)
def test_a_section_that_does_not_match_is_refused(edit, message: str) -> None:
    text = json.dumps(edit(json.loads(encode(DEFAULT.ocr))))
    with pytest.raises(SettingsError, match=message):
        decode(OcrConfig, text, "preprocess.ocr")


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '"frames"'])
def test_a_section_that_is_not_a_json_object_is_refused(text: str) -> None:
    with pytest.raises(SettingsError, match="preprocess.ocr"):
        decode(OcrConfig, text, "preprocess.ocr")


def test_a_step_gets_exactly_its_sections() -> None:
    sections = STEP_SECTIONS["preprocess"]
    parameters = step_parameters(DEFAULT, sections)
    with pytest.raises(SettingsError, match="reads the config sections"):
        read_sections({k: v for k, v in parameters.items() if k != "video"}, sections, "preprocess")
    with pytest.raises(SettingsError, match="reads the config sections"):  # e.g. the old flat keys
        read_sections(parameters | {"ocr_frames": "2"}, sections, "preprocess")


@dataclass(frozen=True)
class _Shapes:
    sizes: tuple[int, ...]
    limit: float | None


def test_tuples_and_optionals_cross_too() -> None:
    assert decode(_Shapes, encode(_Shapes((4, 8), None)), "x.shapes") == _Shapes((4, 8), None)
    assert decode(_Shapes, '{"sizes": [], "limit": 2}', "x.shapes") == _Shapes((), 2.0)
    with pytest.raises(SettingsError, match=r"x\.shapes\.sizes\[1\] must be int"):
        decode(_Shapes, '{"sizes": [4, "8"], "limit": null}', "x.shapes")
    with pytest.raises(SettingsError, match=r"x\.shapes\.sizes must be a list"):
        decode(_Shapes, '{"sizes": 4, "limit": null}', "x.shapes")
