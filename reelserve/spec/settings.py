"""How a config section crosses into a step: one JSON parameter per section, parsed strictly.

The generator writes `parameters { key: "video" value: { string_value: "{...}" } }` from the
`ReelserveConfig` it was given; the step parses it back into the same dataclass. A missing or
unknown key, or a value of the wrong type, is an error when the model loads, never a silent
default: a repository written by another version of the code fails loudly instead of serving
with settings nobody chose.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping

from reelserve.config import ReelserveConfig


class SettingsError(ValueError):
    """A step's config parameters do not match the settings this code reads."""


def section_types() -> dict[str, type]:
    """Config section name -> its dataclass, from `ReelserveConfig`'s fields."""
    hints = typing.get_type_hints(ReelserveConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(ReelserveConfig)}


def encode(section: object) -> str:
    """One section as the JSON string a config.pbtxt parameter carries."""
    return json.dumps(dataclasses.asdict(section), sort_keys=True, ensure_ascii=False)


def _value(kind: object, value: object, where: str) -> object:
    origin = typing.get_origin(kind)
    if origin is tuple:
        (item, *rest) = typing.get_args(kind)
        if not isinstance(value, list) or rest != [Ellipsis]:
            raise SettingsError(f"{where} must be a list, got {value!r}")
        return tuple(_value(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        (kind,) = [o for o in options if o is not type(None)]
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }.get(kind)
    if ok is None:
        raise SettingsError(f"{where}: settings of type {kind} cannot cross into a step")
    if not ok(value):
        raise SettingsError(f"{where} must be {kind.__name__}, got {value!r}")
    return float(value) if kind is float else value


def decode(cls: type, text: str, where: str) -> object:
    """The dataclass `cls` from its JSON; every field present, nothing else, each of its type."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SettingsError(f"{where} is not JSON ({e}): {text!r}") from e
    if not isinstance(data, dict):
        raise SettingsError(f"{where} must be a JSON object, got {text!r}")
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown, missing = sorted(set(data) - set(fields)), [f for f in fields if f not in data]
    if unknown or missing:
        raise SettingsError(
            f"{where} does not match {cls.__name__}:"
            + (f" unknown {unknown}" if unknown else "")
            + (f" missing {missing}" if missing else "")
            + " (was the repository exported by another version? re-export it)"
        )
    return cls(**{f: _value(hints[f], data[f], f"{where}.{f}") for f in fields})


def step_parameters(cfg: ReelserveConfig, sections: tuple[str, ...]) -> dict[str, str]:
    """The config.pbtxt parameters of a step that reads `sections` of `cfg`."""
    return {name: encode(getattr(cfg, name)) for name in sections}


def read_sections(parameters: Mapping[str, str], sections: tuple[str, ...], step: str) -> dict[str, object]:
    """The sections a step reads, parsed from its config.pbtxt parameters; exactly those, each whole."""
    extra = sorted(set(parameters) - set(sections))
    absent = [s for s in sections if s not in parameters]
    if extra or absent:
        raise SettingsError(
            f"step {step!r} reads the config sections {list(sections)}, its config.pbtxt has {sorted(parameters)}"
            " (was the repository exported by another version? re-export it)"
        )
    types_ = section_types()
    return {s: decode(types_[s], parameters[s], f"{step}.{s}") for s in sections}
