"""A label bank's YAML spec, parsed strictly.

A bank has a name (it becomes a directory name) and labels; a label has a name and any mix of
text prompts (any language) and support examples, each a video file or a text::

    name: topics
    labels:
      - name: cat
        prompts: ["a cat", "猫", "un gato"]
        examples: [clips/kitten.mp4, "my kitten sleeping on the sofa"]
      - name: latte-art
        examples: [clips/latte1.mp4, clips/latte2.mp4]   # few-shot only, no prompt

An example string is a video when it ends with a video extension (`VIDEO_SUFFIXES`, any case),
otherwise a text; `{video: path}` or `{text: "..."}` says which outright. Video paths are
relative to the spec file's folder and must be readable files when the spec is parsed (opened,
not decoded). Anything unexpected — an unknown key, a wrong type, a duplicate — is a `SpecError`
naming where it is, never a silent default: a typo such as `prompt:` would otherwise drop the
label's prompts without a word.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import yaml

from .store import BANK_NAME

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".m4v", ".avi")
MAX_LABEL_NAME = 200
_TOP_KEYS = ("name", "labels")
_LABEL_KEYS = ("name", "prompts", "examples")


class SpecError(ValueError):
    """A label-bank spec that cannot be used as written; the message says where."""


@dataclass(frozen=True)
class Example:
    """One support example: a video file (`path` resolved against the spec's folder) or a text."""

    kind: Literal["video", "text"]
    value: str  # the video path as written, or the text itself
    path: Path | None = None  # videos only: absolute

    def __post_init__(self) -> None:
        if self.kind not in ("video", "text"):
            raise SpecError(f"example kind must be 'video' or 'text', got {self.kind!r}")


@dataclass(frozen=True)
class LabelSpec:
    """One label as written: prompts and examples in spec order."""

    name: str
    prompts: tuple[str, ...] = ()
    examples: tuple[Example, ...] = ()


@dataclass(frozen=True)
class BankSpec:
    """A whole bank as written; `load_spec` checked every field."""

    name: str
    labels: tuple[LabelSpec, ...]
    source: Path | None = None  # the spec file it was read from, if any


def is_video_path(value: str) -> bool:
    """Whether an example string names a video file (by its extension, any case)."""
    return value.lower().endswith(VIDEO_SUFFIXES)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _absolute(path: Path) -> Path:
    """Absolute and normalised (no `..`), without following symlinks: the path a user wrote."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _check_readable(path: Path, where: str, value: str) -> None:
    shown = f"video {value!r}" + ("" if str(path) == value else f" ({path})")
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise SpecError(f"{where}: {shown} does not exist") from None
    except IsADirectoryError:
        raise SpecError(f"{where}: {shown} is a directory, not a video file") from None
    except OSError as e:
        raise SpecError(f"{where}: {shown} is not readable ({e.strerror or e})") from None


def _video(value: str, base: Path, where: str) -> Example:
    if not value.strip():
        raise SpecError(f"{where}: empty video path")
    path = _absolute(base / value)
    _check_readable(path, where, value)
    return Example("video", value, path)


def _example(item: object, base: Path, where: str) -> Example:
    if isinstance(item, str):
        if is_video_path(item):
            return _video(item, base, where)
        if not item.strip():
            raise SpecError(f"{where}: empty text example")
        return Example("text", item)
    if isinstance(item, Mapping):
        if len(item) != 1 or next(iter(item)) not in ("video", "text"):
            keys = ", ".join(repr(k) for k in item) or "none"
            raise SpecError(f"{where}: an example mapping has exactly one key, 'video' or 'text' (got {keys})")
        ((kind, value),) = item.items()
        if not isinstance(value, str):
            raise SpecError(f"{where}: {kind} must be a string, got {_type_name(value)}")
        if kind == "video":
            return _video(value, base, where)
        if not value.strip():
            raise SpecError(f"{where}: empty text example")
        return Example("text", value)
    shapes = "a string or a {video: ...} / {text: ...} mapping"
    raise SpecError(f"{where}: an example is {shapes}, got {_type_name(item)}")


def _check_label_name(name: object, where: str) -> str:
    if name is None:
        raise SpecError(f"{where}: missing name")
    if not isinstance(name, str):
        raise SpecError(f"{where}: name must be a string, got {_type_name(name)}")
    if not name.strip():
        raise SpecError(f"{where}: empty name")
    if len(name) > MAX_LABEL_NAME:
        raise SpecError(f"{where}: name is {len(name)} characters (at most {MAX_LABEL_NAME})")
    if "\n" in name or "\r" in name:
        raise SpecError(f"{where}: name contains a newline")
    return name


def _list(value: object, key: str, where: str) -> list:
    if not isinstance(value, list):
        raise SpecError(f"{where}: {key} must be a list, got {_type_name(value)}")
    return value


def _label(item: object, index: int, base: Path) -> LabelSpec:
    where = f"labels[{index}]"
    if not isinstance(item, Mapping):
        raise SpecError(f"{where}: a label is a mapping with {', '.join(_LABEL_KEYS)}, got {_type_name(item)}")
    name = item.get("name")
    if isinstance(name, str) and name.strip():
        where = f"{where} ({name[:MAX_LABEL_NAME]!r})"
    for key in item:
        if key not in _LABEL_KEYS:
            raise SpecError(f"{where}: unknown key {key!r} (expected {', '.join(_LABEL_KEYS)})")
    name = _check_label_name(name, where)
    prompts = []
    for i, prompt in enumerate(_list(item.get("prompts", []), "prompts", where)):
        if not isinstance(prompt, str):
            raise SpecError(f"{where}: prompts[{i}] must be a string, got {_type_name(prompt)}")
        if not prompt.strip():
            raise SpecError(f"{where}: prompts[{i}] is empty")
        prompts.append(prompt)
    raw = _list(item.get("examples", []), "examples", where)
    examples = tuple(_example(x, base, f"{where}: examples[{i}]") for i, x in enumerate(raw))
    if not prompts and not examples:
        raise SpecError(f"{where}: empty label (no prompts and no examples)")
    return LabelSpec(name, tuple(prompts), examples)


def parse_spec(data: object, base: Path) -> BankSpec:
    """A bank from already-loaded YAML data; video paths resolve against `base` (a folder)."""
    if not isinstance(data, Mapping):
        raise SpecError(f"a spec is a mapping with {', '.join(_TOP_KEYS)}, got {_type_name(data)}")
    for key in data:
        if key not in _TOP_KEYS:
            raise SpecError(f"unknown key {key!r} at top level (expected {', '.join(_TOP_KEYS)})")
    name = data.get("name")
    if name is None:
        raise SpecError("missing bank name")
    if not isinstance(name, str):
        raise SpecError(f"bank name must be a string, got {_type_name(name)}")
    if not BANK_NAME.fullmatch(name):
        raise SpecError(f"bank name {name!r} must match {BANK_NAME.pattern} (it becomes a directory name)")
    if "labels" not in data:
        raise SpecError("missing labels")
    raw = _list(data["labels"], "labels", "top level")
    if not raw:
        raise SpecError("a bank needs at least 1 label")
    labels = tuple(_label(item, i, base) for i, item in enumerate(raw))
    _check_unique(labels)
    return BankSpec(name, labels)


def _check_unique(labels: Sequence[LabelSpec]) -> None:
    first: dict[str, int] = {}
    for i, label in enumerate(labels):
        if label.name in first:
            where = f"labels[{i}] ({label.name!r})"
            raise SpecError(f"{where}: duplicate label name (first at labels[{first[label.name]}])")
        first[label.name] = i


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line: what is wrong and where (PyYAML's own text spans lines and names no file)."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem is None:
        return " ".join(str(error).split())
    where = ""
    if error.problem_mark is not None:
        where = f" at line {error.problem_mark.line + 1}, column {error.problem_mark.column + 1}"
    context = f"{error.context}: " if error.context else ""
    return f"{context}{error.problem}{where}"


def load_spec(path: Path) -> BankSpec:
    """Read and check a spec file; every error names the file."""
    path = _absolute(Path(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read the spec ({e})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
    try:
        spec = parse_spec(data, path.parent)
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None
    return replace(spec, source=path)


def _dumped_example(example: Example, folder: Path) -> object:
    if example.kind == "text":
        return {"text": example.value} if is_video_path(example.value) else example.value
    written = example.value
    if example.path is not None:
        try:
            written = _absolute(example.path).relative_to(folder).as_posix()
        except ValueError:
            written = str(_absolute(example.path))
    return written if is_video_path(written) else {"video": written}


def dump_spec(spec: BankSpec, path: Path) -> None:
    """Write `spec` as YAML that `load_spec(path)` reads back equal (apart from `source`).

    Video paths are written relative to the new file's folder when they lie under it, absolute
    otherwise. The file is replaced atomically, so a reader never sees half a spec.
    """
    path = _absolute(Path(path))
    folder = path.parent
    labels = []
    for label in spec.labels:
        entry: dict[str, object] = {"name": label.name}
        if label.prompts:
            entry["prompts"] = list(label.prompts)
        if label.examples:
            entry["examples"] = [_dumped_example(x, folder) for x in label.examples]
        labels.append(entry)
    text = yaml.safe_dump({"name": spec.name, "labels": labels}, sort_keys=False, allow_unicode=True, width=1000)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644  # mkstemp's 0600 would hide it from others
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _checked_addition(example: Example, base: Path, where: str) -> Example:
    if example.kind == "text":
        if not example.value.strip():
            raise SpecError(f"{where}: empty text example")
        return example
    if example.path is None:
        return _video(example.value, base, where)
    path = _absolute(example.path)
    _check_readable(path, where, example.value)
    return replace(example, path=path)


def _identity(example: Example) -> tuple[str, object]:
    """What makes two examples the same: the file for a video (however its path was written), the text."""
    return (example.kind, example.path if example.kind == "video" and example.path is not None else example.value)


def add_examples(spec: BankSpec, additions: Mapping[str, Sequence[Example]]) -> BankSpec:
    """`spec` with examples appended: to the label of that name, or to a new label at the end.

    Exact duplicates (the same text, or the same video file however its path is written) of an
    example already there or earlier in the additions are skipped; video examples must be
    readable files, as in a parsed spec. Used by the Label Studio import, which names labels as
    its annotators wrote them.
    """
    base = spec.source.parent if spec.source is not None else _absolute(Path.cwd())
    labels = list(spec.labels)
    index = {label.name: i for i, label in enumerate(labels)}
    for name, examples in additions.items():
        where = f"additions[{name!r}]" if isinstance(name, str) else "additions"
        _check_label_name(name, where)
        if isinstance(examples, (str, Example)):
            raise SpecError(f"{where}: expected a sequence of examples, got {_type_name(examples)}")
        fresh = []
        for i, example in enumerate(examples):
            if not isinstance(example, Example):
                raise SpecError(f"{where}[{i}]: expected an Example, got {_type_name(example)}")
            fresh.append(_checked_addition(example, base, f"{where}[{i}]"))
        if name in index:
            label = labels[index[name]]
        else:
            if not fresh:
                raise SpecError(f"{where}: a new label needs at least one example")
            label = LabelSpec(name)
            index[name] = len(labels)
            labels.append(label)
        kept = list(label.examples)
        seen = {_identity(x) for x in kept}
        for example in fresh:
            if _identity(example) not in seen:
                seen.add(_identity(example))
                kept.append(example)
        labels[index[name]] = replace(label, examples=tuple(kept))
    return replace(spec, labels=tuple(labels))
