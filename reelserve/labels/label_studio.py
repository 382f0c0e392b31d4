"""Label Studio file formats for the AI-labeling loop: pre-annotated import tasks out, JSON exports back in.

The loop: reelserve scores unlabeled videos against a label bank, `suggest_tasks` turns the scores into
Label Studio import tasks whose predictions pre-fill the single-choice `label` control (most uncertain
videos first, so annotators spend their time where the model is least sure), and `read_export` turns the
project's JSON export back into one `(video, label)` example per annotated task.

Formats follow Label Studio's documented task format (https://labelstud.io/guide/task_format) and the
JSON export (https://labelstud.io/guide/export#Label-Studio-JSON-format-of-annotated-tasks); the tests
check them with the validators of `label-studio-sdk` (`LabelInterface.validate*`, its converter, its types).
Local files reach Label Studio through its local-files storage: `/data/local-files/?d=<path relative to
LOCAL_FILES_DOCUMENT_ROOT>` (https://labelstud.io/guide/storage#Local-storage); `url_for`/`path_for` map both ways.
Standard library only: the SDK is a test dependency.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, unquote
from xml.sax.saxutils import quoteattr

__all__ = [
    "FROM_NAME",
    "LOCAL_FILES_PREFIX",
    "TEXT_KEY",
    "TO_NAME",
    "Annotated",
    "LabelStudioFormatError",
    "Suggestion",
    "labeling_config",
    "load_export",
    "path_for",
    "read_export",
    "suggest_tasks",
    "url_for",
]

FROM_NAME = "label"  # the <Choices> control: `from_name` of every result we write and read
TO_NAME = "video"  # the <Video> object tag it labels: `to_name`
TEXT_KEY = "text"  # task data key of the title shown beside the video
LOCAL_FILES_PREFIX = "/data/local-files/?d="  # Label Studio's local-files storage URL
_QUOTE = {'"': "&quot;"}  # attributes always double-quoted: Label Studio checks configs with `name="..."` regexes
_DATA_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class LabelStudioFormatError(ValueError):
    """A Label Studio export that does not have the shape we read; the message names the task."""


@dataclass(frozen=True)
class Suggestion:
    """One scored video to pre-annotate.

    `video` is what the annotator's Label Studio opens (a URL from `url_for`, or an http(s) URL);
    `label_probs` maps bank label -> probability; entropy and margin (top-1 minus top-2) rank
    uncertainty; `model_version` names what scored it, e.g. "video_features:1 bank topics/3".
    """

    video: str
    text: str
    label_probs: Mapping[str, float]
    label_entropy: float
    label_margin: float
    model_version: str


@dataclass(frozen=True)
class Annotated:
    """One annotated task read back: the video (a path again when it was a local-files URL) and its label."""

    video: str | None
    text: str | None
    label: str
    task_id: int | None


def labeling_config(label_names: Sequence[str], *, data_key: str = "video") -> str:
    """The labeling config XML: one video, its title, a single choice among the bank's labels.

    `data_key` is the task data key holding the video URL (`$video` by default); the object tag
    stays named `TO_NAME`, so predictions and exports do not depend on it.
    """
    names = list(label_names)
    if not names:
        raise ValueError("labeling_config needs at least one label name")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(f"label names must be non-empty strings, got {bad!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate label names: {dupes!r}")
    _check_data_key(data_key)
    choices = "\n".join(f"    <Choice value={quoteattr(n, _QUOTE)}/>" for n in names)
    return (
        "<View>\n"
        f'  <Video name="{TO_NAME}" value="${data_key}"/>\n'
        f'  <Text name="title" value="${TEXT_KEY}"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def suggest_tasks(suggestions: Sequence[Suggestion], *, top_k: int = 1, data_key: str = "video") -> list[dict]:
    """Label Studio import tasks with predictions, most uncertain first.

    Order: highest entropy, then smallest margin, then input order. Each task carries `top_k`
    predictions (one per most probable label, best first; a single-choice control holds one label
    per prediction), and its entropy/margin in the data so Label Studio's Data Manager can sort by them.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    _check_data_key(data_key)
    for i, s in enumerate(suggestions):
        _check_suggestion(i, s)
    order = sorted(range(len(suggestions)), key=lambda i: (-suggestions[i].label_entropy, suggestions[i].label_margin))
    return [_task(suggestions[i], top_k, data_key) for i in order]


def url_for(path: Path, *, prefix: str | None = None, root: Path | None = None) -> str:
    """The URL Label Studio opens for a local file.

    No prefix: the absolute path as is (for tools that read the task file on this machine).
    With a prefix (e.g. `LOCAL_FILES_PREFIX`): prefix + the path relative to `root`, POSIX and
    percent-quoted so `&`, `#`, `+`, spaces survive the query string; `root` is Label Studio's
    LOCAL_FILES_DOCUMENT_ROOT as this machine sees it. Without `root` the path must be relative already.
    """
    path = Path(path)
    if prefix is None:
        return path.absolute().as_posix()
    if root is not None:
        try:
            rel = path.absolute().relative_to(Path(root).absolute())
        except ValueError:
            raise ValueError(f"{path} is not under the local-files root {root}") from None
    elif path.is_absolute():
        raise ValueError(f"{path} is absolute: give root= (Label Studio's LOCAL_FILES_DOCUMENT_ROOT)")
    else:
        rel = path
    if rel.as_posix() in ("", "."):
        raise ValueError(f"{path} names the root itself, not a file under it")
    return prefix + quote(rel.as_posix(), safe="/")


def path_for(url: str, *, prefix: str | None = None, root: Path | None = None) -> str:
    """Inverse of `url_for`: a URL that starts with `prefix` becomes a path again; any other URL is returned as is."""
    if not prefix or not url.startswith(prefix):
        return url
    rel = unquote(url[len(prefix) :])
    return (Path(root) / rel).as_posix() if root is not None else rel


def read_export(
    data: object,
    *,
    prefix: str | None = None,
    root: Path | None = None,
    from_name: str = FROM_NAME,
    data_key: str = "video",
) -> list[Annotated]:
    """Examples from a Label Studio JSON export (a list of tasks with "data" and "annotations").

    Per task the latest annotation that was not cancelled (skipped) decides; its `choices` result
    from `from_name` (or the only choices result) is the label. Tasks with no such annotation or
    no choice are left out. Video URLs under `prefix` map back to paths (see `path_for`).
    """
    if not isinstance(data, list):
        raise LabelStudioFormatError(f"a Label Studio JSON export is a list of tasks, got {type(data).__name__}")
    out: list[Annotated] = []
    for index, task in enumerate(data):
        if not isinstance(task, dict):
            raise LabelStudioFormatError(f"task {index}: expected an object, got {type(task).__name__}")
        where = _where(index, task)
        task_data = task.get("data")
        if not isinstance(task_data, dict):
            raise LabelStudioFormatError(f'{where}: no "data" object')
        annotation = _latest_annotation(where, task.get("annotations"))
        if annotation is None:
            continue
        label = _label_of(where, annotation, from_name)
        if label is None:
            continue
        video = task_data.get(data_key)
        text = task_data.get(TEXT_KEY)
        task_id = task.get("id")
        out.append(
            Annotated(
                video=path_for(video, prefix=prefix, root=root) if isinstance(video, str) else None,
                text=text if isinstance(text, str) else None,
                label=label,
                task_id=task_id if isinstance(task_id, int) and not isinstance(task_id, bool) else None,
            )
        )
    return out


def load_export(path: Path, **kw: object) -> list[Annotated]:
    """`read_export` of a JSON export file; keywords pass through (prefix, root, from_name, data_key)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabelStudioFormatError(f"{path}: not a JSON file ({exc})") from exc
    try:
        return read_export(data, **kw)  # type: ignore[arg-type]
    except LabelStudioFormatError as exc:
        raise LabelStudioFormatError(f"{path}: {exc}") from exc


# --- writing -------------------------------------------------------------------------------------------------


def _check_data_key(data_key: str) -> None:
    if not isinstance(data_key, str) or not _DATA_KEY.match(data_key) or data_key == TEXT_KEY:
        raise ValueError(f"data_key must be an identifier other than {TEXT_KEY!r}, got {data_key!r}")


def _check_suggestion(index: int, s: Suggestion) -> None:
    """Reject what Label Studio would refuse or what would sort wrongly (NaN never compares)."""
    name = f"suggestion {index} ({getattr(s, 'video', '?')!r})"
    if not isinstance(s, Suggestion):
        raise ValueError(f"suggestion {index}: expected a Suggestion, got {type(s).__name__}")
    if not isinstance(s.video, str) or not s.video:
        raise ValueError(f"{name}: video must be a non-empty string")
    if not isinstance(s.text, str):
        raise ValueError(f"{name}: text must be a string, got {type(s.text).__name__}")
    if not isinstance(s.model_version, str) or not s.model_version:
        raise ValueError(f"{name}: model_version must be a non-empty string")
    if not s.label_probs:
        raise ValueError(f"{name}: label_probs is empty")
    for label, p in s.label_probs.items():
        if not isinstance(label, str) or not label:
            raise ValueError(f"{name}: label names must be non-empty strings, got {label!r}")
        if not _is_real(p) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{name}: probability of {label!r} must be finite in [0, 1], got {p!r}")
    if not _is_real(s.label_entropy) or s.label_entropy < 0:
        raise ValueError(f"{name}: label_entropy must be finite and >= 0, got {s.label_entropy!r}")
    if not _is_real(s.label_margin) or not 0.0 <= s.label_margin <= 1.0:
        raise ValueError(f"{name}: label_margin must be finite in [0, 1], got {s.label_margin!r}")


def _is_real(x: object) -> bool:
    """A finite number (numpy scalars included); not a bool, not a numeric string."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _task(s: Suggestion, top_k: int, data_key: str) -> dict:
    ranked = sorted(s.label_probs.items(), key=lambda kv: -float(kv[1]))[:top_k]  # stable: ties keep bank order
    predictions = []
    for label, p in ranked:
        score = float(p)
        region = {
            "id": _region_id(s.video, label, s.model_version),
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "choices",
            "value": {"choices": [label]},
            "score": score,
        }
        predictions.append({"model_version": s.model_version, "score": score, "result": [region]})
    return {
        "data": {
            data_key: s.video,
            TEXT_KEY: s.text,
            "reelserve_entropy": float(s.label_entropy),
            "reelserve_margin": float(s.label_margin),
        },
        "predictions": predictions,
    }


def _region_id(video: str, label: str, model_version: str) -> str:
    """Stable across runs (re-imports and diffs stay quiet), short like Label Studio's own region ids."""
    return hashlib.sha1(f"{video}\0{label}\0{model_version}".encode()).hexdigest()[:10]


# --- reading -------------------------------------------------------------------------------------------------


def _where(index: int, task: dict) -> str:
    task_id = task.get("id")
    return f"task {index} (id {task_id})" if task_id is not None else f"task {index}"


def _latest_annotation(where: str, annotations: object) -> dict | None:
    """The latest non-cancelled annotation: by created_at where every one has it, else the last listed."""
    if annotations is None:
        return None
    if not isinstance(annotations, list):
        raise LabelStudioFormatError(f'{where}: "annotations" must be a list, got {type(annotations).__name__}')
    kept: list[dict] = []
    for j, a in enumerate(annotations):
        if not isinstance(a, dict):
            raise LabelStudioFormatError(f"{where}: annotation {j} is not an object")
        if not (a.get("was_cancelled") or a.get("skipped")):
            kept.append(a)
    if not kept:
        return None
    stamps = [_timestamp(a.get("created_at")) for a in kept]
    if all(t is not None for t in stamps):
        return kept[max(range(len(kept)), key=lambda j: (stamps[j], j))]
    return kept[-1]


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))  # 3.10 does not read "Z"
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def _label_of(where: str, annotation: dict, from_name: str) -> str | None:
    result = annotation.get("result")
    if result is None:
        return None
    if not isinstance(result, list):
        raise LabelStudioFormatError(f'{where}: annotation "result" must be a list, got {type(result).__name__}')
    choices = [r for r in result if isinstance(r, dict) and r.get("type") == "choices"]
    named = [r for r in choices if r.get("from_name") == from_name]
    if len(named) > 1:
        raise LabelStudioFormatError(f"{where}: {len(named)} choices results from {from_name!r}, expected one")
    if named:
        region = named[0]
    elif len(choices) == 1:
        region = choices[0]
    elif choices:
        found = sorted({str(r.get("from_name")) for r in choices})
        raise LabelStudioFormatError(f"{where}: no choices result from {from_name!r} among {found}")
    else:
        return None
    value = region.get("value")
    picked = value.get("choices") if isinstance(value, dict) else None
    if not isinstance(picked, list):
        raise LabelStudioFormatError(f'{where}: choices result has no "value": {{"choices": [...]}} list')
    if not picked:
        return None
    if len(picked) > 1:
        raise LabelStudioFormatError(f"{where}: {len(picked)} choices {picked!r} for the single-choice {from_name!r}")
    if not isinstance(picked[0], str):
        raise LabelStudioFormatError(f"{where}: choice {picked[0]!r} is not a string")
    return picked[0]
