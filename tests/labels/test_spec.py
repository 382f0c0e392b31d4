"""Label-bank specs are parsed strictly: every mistake is refused with where it is, and what is dumped loads back."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import yaml

from reelserve.labels import spec as spec_module
from reelserve.labels.spec import (
    BankSpec,
    Example,
    LabelSpec,
    SpecError,
    add_examples,
    dump_spec,
    is_video_path,
    load_spec,
    parse_spec,
)

EXAMPLE = """\
name: topics
labels:
  - name: cat
    prompts: ["a cat", "猫", "un gato"]
    examples: [clips/kitten.mp4, "my kitten sleeping on the sofa"]
  - name: latte-art
    examples: [clips/latte1.mp4, clips/latte2.MOV]   # few-shot only, no prompt
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A spec folder with the clips the example spec names."""
    (tmp_path / "clips").mkdir()
    for name in ("kitten.mp4", "latte1.mp4", "latte2.MOV", "extra.webm"):
        (tmp_path / "clips" / name).write_bytes(b"not decoded, only opened")
    return tmp_path


def _write(folder: Path, text: str, name: str = "bank.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _parse(folder: Path, data: object) -> BankSpec:
    return parse_spec(data, folder)


def _one_label(**label: object) -> dict:
    return {"name": "b", "labels": [{"name": "ok", "prompts": ["fine"]}, label]}


def test_the_example_spec_loads(folder: Path) -> None:
    spec = load_spec(_write(folder, EXAMPLE))
    assert spec.name == "topics" and spec.source == folder / "bank.yaml"
    cat, latte = spec.labels
    assert cat.name == "cat" and cat.prompts == ("a cat", "猫", "un gato")
    assert cat.examples == (
        Example("video", "clips/kitten.mp4", folder / "clips" / "kitten.mp4"),
        Example("text", "my kitten sleeping on the sofa"),
    )
    assert latte.prompts == () and [x.kind for x in latte.examples] == ["video", "video"]
    assert latte.examples[1].path == folder / "clips" / "latte2.MOV"  # the extension is matched in any case


@pytest.mark.parametrize("value", ["a.mp4", "A.WEBM", "x/y.mov", "z.mkv", "z.m4v", "z.Avi"])
def test_video_extensions(value: str) -> None:
    assert is_video_path(value)


@pytest.mark.parametrize("value", ["a cat", "mp4", "clip.mp4 is funny", "x.gif", "movie.mp4.txt"])
def test_other_strings_are_texts(value: str) -> None:
    assert not is_video_path(value)


def test_explicit_mappings_say_which_kind(folder: Path) -> None:
    (folder / "clips" / "raw_capture").write_bytes(b"x")
    spec = _parse(folder, _one_label(name="m", examples=[{"video": "clips/raw_capture"}, {"text": "see clip.mp4"}]))
    video, text = spec.labels[1].examples
    assert video == Example("video", "clips/raw_capture", folder / "clips" / "raw_capture")
    assert text == Example("text", "see clip.mp4")


def test_an_absolute_video_path_is_kept(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "far.mp4"
    elsewhere.write_bytes(b"x")
    spec = _parse(folder, _one_label(name="far", examples=[str(elsewhere)]))
    assert spec.labels[1].examples[0].path == elsewhere


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "b", "labels": [{"name": "x", "prompts": ["p"]}], "label": []}, r"unknown key 'label' at top level"),
        ({"labels": [{"name": "x", "prompts": ["p"]}]}, r"missing bank name"),
        ({"name": 7, "labels": [{"name": "x", "prompts": ["p"]}]}, r"bank name must be a string, got int"),
        ({"name": "Topics", "labels": [{"name": "x", "prompts": ["p"]}]}, r"bank name 'Topics' must match"),
        ({"name": "a/b", "labels": [{"name": "x", "prompts": ["p"]}]}, r"bank name 'a/b' must match"),
        ({"name": "", "labels": [{"name": "x", "prompts": ["p"]}]}, r"bank name '' must match"),
        ({"name": "a" * 64, "labels": [{"name": "x", "prompts": ["p"]}]}, r"must match"),
        ({"name": "ok\n", "labels": [{"name": "x", "prompts": ["p"]}]}, r"must match"),
        ({"name": "b"}, r"missing labels"),
        ({"name": "b", "labels": []}, r"at least 1 label"),
        ({"name": "b", "labels": {"x": 1}}, r"labels must be a list, got dict"),
        ({"name": "b", "labels": ["cat"]}, r"labels\[0\]: a label is a mapping"),
        (["name", "labels"], r"a spec is a mapping"),
        (None, r"a spec is a mapping .* got null"),
    ],
)
def test_bad_top_level(folder: Path, data: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _parse(folder, data)


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (
            {"name": "latte-art", "prompt": ["x"]},
            r"^labels\[1\] \('latte-art'\): unknown key 'prompt' \(expected name, prompts, examples\)$",
        ),
        ({"prompts": ["x"]}, r"^labels\[1\]: missing name$"),
        ({"name": "", "prompts": ["x"]}, r"^labels\[1\]: empty name$"),
        ({"name": "   ", "prompts": ["x"]}, r"^labels\[1\]: empty name$"),
        ({"name": 3, "prompts": ["x"]}, r"^labels\[1\]: name must be a string, got int$"),
        ({"name": "a\nb", "prompts": ["x"]}, r"labels\[1\] \('a\\nb'\): name contains a newline"),
        ({"name": "x" * 201, "prompts": ["x"]}, r"name is 201 characters \(at most 200\)"),
        ({"name": "ok", "prompts": ["x"]}, r"^labels\[1\] \('ok'\): duplicate label name \(first at labels\[0\]\)$"),
        ({"name": "e"}, r"^labels\[1\] \('e'\): empty label \(no prompts and no examples\)$"),
        ({"name": "e", "prompts": [], "examples": []}, r"labels\[1\] \('e'\): empty label"),
        ({"name": "e", "prompts": ["a", ""]}, r"^labels\[1\] \('e'\): prompts\[1\] is empty$"),
        ({"name": "e", "prompts": [" "]}, r"prompts\[0\] is empty"),
        ({"name": "e", "prompts": "a cat"}, r"labels\[1\] \('e'\): prompts must be a list, got str"),
        ({"name": "e", "prompts": None}, r"prompts must be a list, got null"),
        ({"name": "e", "prompts": ["a", 5]}, r"labels\[1\] \('e'\): prompts\[1\] must be a string, got int"),
        ({"name": "e", "examples": "clips/kitten.mp4"}, r"examples must be a list, got str"),
        ({"name": "e", "examples": [""]}, r"labels\[1\] \('e'\): examples\[0\]: empty text example"),
        ({"name": "e", "examples": [{"text": "  "}]}, r"examples\[0\]: empty text example"),
        ({"name": "e", "examples": [{"video": ""}]}, r"examples\[0\]: empty video path"),
        ({"name": "e", "examples": [3]}, r"examples\[0\]: an example is a string or .* got int"),
        ({"name": "e", "examples": [{"video": "a.mp4", "text": "t"}]}, r"examples\[0\]: .*exactly one key"),
        ({"name": "e", "examples": [{"image": "a.png"}]}, r"examples\[0\]: .*exactly one key.*'image'"),
        ({"name": "e", "examples": [{"text": 1}]}, r"examples\[0\]: text must be a string, got int"),
    ],
)
def test_bad_labels_name_the_place(folder: Path, label: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _parse(folder, _one_label(**label))


def test_a_missing_video_names_label_item_and_path(folder: Path) -> None:
    data = _one_label(name="cat", examples=["a text", "clips/kitten.mp4", "clips/gone.mp4"])
    with pytest.raises(SpecError) as e:
        _parse(folder, data)
    message = str(e.value)
    assert message.startswith("labels[1] ('cat'): examples[2]: video 'clips/gone.mp4'")
    assert str(folder / "clips" / "gone.mp4") in message and message.endswith("does not exist")


def test_a_missing_explicit_video_is_refused(folder: Path) -> None:
    with pytest.raises(SpecError, match=r"examples\[0\]: video 'nothing_here' .* does not exist"):
        _parse(folder, _one_label(name="cat", examples=[{"video": "nothing_here"}]))


def test_a_directory_is_not_a_video(folder: Path) -> None:
    (folder / "clips" / "folder.mp4").mkdir()
    with pytest.raises(SpecError, match=r"labels\[1\] \('cat'\): examples\[0\]: video 'clips/folder.mp4' .*directory"):
        _parse(folder, _one_label(name="cat", examples=["clips/folder.mp4"]))


def test_an_unreadable_video_is_refused(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = open

    def refusing_open(path, *args, **kwargs):
        if str(path).endswith("kitten.mp4"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(spec_module, "open", refusing_open, raising=False)  # root reads any file: fake the refusal
    with pytest.raises(SpecError, match=r"labels\[1\] \('cat'\): examples\[0\]: video .*kitten.mp4.* is not readable"):
        _parse(folder, _one_label(name="cat", examples=["clips/kitten.mp4"]))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_video_file_mode(folder: Path) -> None:
    clip = folder / "clips" / "kitten.mp4"
    clip.chmod(0)
    try:
        with pytest.raises(SpecError, match=r"is not readable"):
            _parse(folder, _one_label(name="cat", examples=["clips/kitten.mp4"]))
    finally:
        clip.chmod(0o644)


def test_load_errors_name_the_file(folder: Path) -> None:
    path = _write(folder, EXAMPLE.replace("prompts:", "prompt:"))
    with pytest.raises(SpecError, match=rf"^{path}: labels\[0\] \('cat'\): unknown key 'prompt'"):
        load_spec(path)


def test_yaml_that_does_not_parse_names_the_file(folder: Path) -> None:
    path = _write(folder, "name: topics\nlabels: [ {name: cat, prompts: [a cat}\n")
    with pytest.raises(SpecError, match=rf"^{path}: not valid YAML"):
        load_spec(path)


def test_a_key_given_twice_is_refused(folder: Path) -> None:
    path = _write(folder, "name: topics\nname: other\nlabels: [{name: cat, prompts: [a cat]}]\n")
    with pytest.raises(SpecError, match=rf"^{path}: not valid YAML.*duplicate key 'name'"):
        load_spec(path)


def test_a_missing_or_empty_file(folder: Path) -> None:
    with pytest.raises(SpecError, match=r"gone.yaml: cannot read the spec"):
        load_spec(folder / "gone.yaml")
    with pytest.raises(SpecError, match=r"empty.yaml: a spec is a mapping"):
        load_spec(_write(folder, "", "empty.yaml"))
    (folder / "binary.yaml").write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(SpecError, match=r"binary.yaml: cannot read the spec"):
        load_spec(folder / "binary.yaml")


def test_video_paths_resolve_against_the_spec_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder / "clips")  # not where the clips are relative to
    spec = load_spec(_write(folder, EXAMPLE))
    assert spec.labels[0].examples[0].path == folder / "clips" / "kitten.mp4"


def test_dump_then_load_is_equal(folder: Path) -> None:
    spec = load_spec(_write(folder, EXAMPLE))
    out = folder / "copy.yaml"
    dump_spec(spec, out)
    again = load_spec(out)
    assert again == BankSpec(spec.name, spec.labels, out)
    text = out.read_text(encoding="utf-8")
    assert "猫" in text and "clips/kitten.mp4" in text  # allow_unicode; relative paths
    assert not list(folder.glob(".copy.yaml.*"))  # no temporary file left behind
    assert out.stat().st_mode & 0o777 == 0o644


def test_dump_keeps_the_kind_of_ambiguous_examples(folder: Path) -> None:
    (folder / "clips" / "raw").write_bytes(b"x")
    spec = _parse(folder, _one_label(name="m", examples=[{"video": "clips/raw"}, {"text": "clip.mp4"}, "plain"]))
    out = folder / "m.yaml"
    dump_spec(spec, out)
    written = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert written["labels"][1]["examples"] == [{"video": "clips/raw"}, {"text": "clip.mp4"}, "plain"]
    assert "examples" not in written["labels"][0]  # empty fields are left out
    assert load_spec(out).labels == spec.labels


def test_dump_elsewhere_writes_absolute_paths(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    spec = load_spec(_write(folder, EXAMPLE))
    out = tmp_path_factory.mktemp("other") / "bank.yaml"
    dump_spec(spec, out)
    again = load_spec(out)
    assert [x.path for x in again.labels[0].examples] == [x.path for x in spec.labels[0].examples]
    assert again.labels[0].examples[0].value == str(folder / "clips" / "kitten.mp4")


def test_add_examples_appends_and_creates(folder: Path) -> None:
    spec = load_spec(_write(folder, EXAMPLE))
    extra = Example("video", "clips/extra.webm")  # no path: resolved against the spec's folder
    same_kitten = Example("video", str(folder / "clips" / "kitten.mp4"), folder / "clips" / "kitten.mp4")
    grown = add_examples(
        spec,
        {
            "cat": [Example("text", "my kitten sleeping on the sofa"), same_kitten, extra, extra],
            "dog": [Example("text", "a puppy"), Example("text", "a puppy"), Example("text", "perro")],
        },
    )
    cat = grown.labels[0]
    assert cat.prompts == spec.labels[0].prompts
    assert cat.examples == (*spec.labels[0].examples, Example("video", "clips/extra.webm", folder / "clips/extra.webm"))
    assert grown.labels[1] == spec.labels[1]
    assert grown.labels[2] == LabelSpec("dog", (), (Example("text", "a puppy"), Example("text", "perro")))
    assert spec.labels[0].examples == load_spec(folder / "bank.yaml").labels[0].examples  # the input is unchanged
    dump_spec(grown, folder / "bank.yaml")
    assert load_spec(folder / "bank.yaml") == grown


@pytest.mark.parametrize(
    ("additions", "message"),
    [
        ({"cat": [Example("video", "clips/none.mp4")]}, r"additions\['cat'\]\[0\]: video 'clips/none.mp4'.*not exist"),
        ({"cat": [Example("text", " ")]}, r"additions\['cat'\]\[0\]: empty text example"),
        ({"cat": ["a text"]}, r"additions\['cat'\]\[0\]: expected an Example, got str"),
        ({"cat": "a text"}, r"additions\['cat'\]: expected a sequence of examples"),
        ({"bird": []}, r"additions\['bird'\]: a new label needs at least one example"),
        ({"": [Example("text", "t")]}, r"additions\[''\]: empty name"),
        ({"a\nb": [Example("text", "t")]}, r"name contains a newline"),
    ],
)
def test_bad_additions_are_refused(folder: Path, additions: dict, message: str) -> None:
    spec = load_spec(_write(folder, EXAMPLE))
    with pytest.raises(SpecError, match=message):
        add_examples(spec, additions)


def test_an_example_kind_is_video_or_text() -> None:
    with pytest.raises(SpecError, match=r"'video' or 'text', got 'image'"):
        Example("image", "a.png")  # type: ignore[arg-type]
