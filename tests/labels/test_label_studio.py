"""Label Studio import tasks and exports: our writer/reader, and Label Studio's own SDK validating what we write."""

from __future__ import annotations

import datetime as dt
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from reelserve.labels.label_studio import (
    FROM_NAME,
    LOCAL_FILES_PREFIX,
    TO_NAME,
    Annotated,
    LabelStudioFormatError,
    Suggestion,
    labeling_config,
    load_export,
    path_for,
    read_export,
    suggest_tasks,
    url_for,
)

BANK = ["cooking", "travel", "pets & animals", 'say "hi"', "<gaming>", "música"]
MODEL_VERSION = "video_features:1 bank topics/3"


def _sdk():
    return pytest.importorskip("label_studio_sdk", reason="validating against Label Studio needs 'label-studio-sdk'")


def _sugg(video: str, probs: dict[str, float], entropy: float = 1.0, margin: float = 0.5, text: str = "") -> Suggestion:
    return Suggestion(video, text, probs, entropy, margin, MODEL_VERSION)


def _region(label, from_name: str = FROM_NAME) -> dict:
    choices = label if isinstance(label, list) else [label]
    return {"from_name": from_name, "to_name": TO_NAME, "type": "choices", "value": {"choices": choices}}


def _export_task(task_id: int, annotations: list[dict] | None, video: str = "v.mp4") -> dict:
    task = {"id": task_id, "data": {"video": video, "text": "t"}}
    if annotations is not None:
        task["annotations"] = annotations
    return task


# --- labeling config -----------------------------------------------------------------------------------------


def test_labeling_config_structure_and_escaping() -> None:
    root = ET.fromstring(labeling_config(BANK))
    assert root.tag == "View"
    video, title, choices = list(root)
    assert (video.tag, video.attrib) == ("Video", {"name": "video", "value": "$video"})
    assert (title.tag, title.attrib) == ("Text", {"name": "title", "value": "$text"})
    assert choices.tag == "Choices"
    assert choices.attrib == {"name": FROM_NAME, "toName": TO_NAME, "choice": "single", "showInline": "true"}
    assert [c.attrib["value"] for c in choices] == BANK
    assert "value='" not in labeling_config(BANK)  # always double-quoted attributes


def test_labeling_config_data_key() -> None:
    video = ET.fromstring(labeling_config(["a"], data_key="clip")).find("Video")
    assert video is not None and video.attrib == {"name": TO_NAME, "value": "$clip"}


@pytest.mark.parametrize(
    ("names", "data_key", "match"),
    [
        ([], "video", "at least one"),
        (["a", "b", "a"], "video", "duplicate label names: \\['a'\\]"),
        (["a", " "], "video", "non-empty strings"),
        (["a"], "my video", "data_key"),
        (["a"], "text", "data_key"),
        (["a"], "$video", "data_key"),
    ],
)
def test_labeling_config_rejects(names, data_key, match) -> None:
    with pytest.raises(ValueError, match=match):
        labeling_config(names, data_key=data_key)


# --- suggest_tasks -------------------------------------------------------------------------------------------


def test_order_entropy_desc_then_margin_asc_then_input_order() -> None:
    p = {"cooking": 0.6, "travel": 0.4}
    items = [
        _sugg("a", p, entropy=0.5, margin=0.1),
        _sugg("b", p, entropy=1.5, margin=0.3),
        _sugg("c", p, entropy=1.5, margin=0.1),
        _sugg("d", p, entropy=0.5, margin=0.1),  # exact tie with "a": input order
        _sugg("e", p, entropy=2.0, margin=0.9),
        _sugg("f", p, entropy=1.5, margin=0.1),  # tie with "c"
        _sugg("g", p, entropy=0.0, margin=1.0),
    ]
    tasks = suggest_tasks(items)
    assert [t["data"]["video"] for t in tasks] == ["e", "c", "f", "b", "a", "d", "g"]
    assert suggest_tasks([]) == []


def test_task_shape() -> None:
    s = _sugg("https://cdn/x.mp4", {"travel": 0.2, "cooking": 0.7, "pets & animals": 0.1}, 0.8, 0.5, "pasta")
    (task,) = suggest_tasks([s])
    (pred,) = task["predictions"]
    (region,) = pred["result"]
    assert task["data"] == {
        "video": "https://cdn/x.mp4",
        "text": "pasta",
        "reelserve_entropy": 0.8,
        "reelserve_margin": 0.5,
    }
    assert pred == {"model_version": MODEL_VERSION, "score": 0.7, "result": [region]}
    assert {k: v for k, v in region.items() if k != "id"} == {
        "from_name": "label",
        "to_name": "video",
        "type": "choices",
        "value": {"choices": ["cooking"]},
        "score": 0.7,
    }
    assert isinstance(region["id"], str) and len(region["id"]) == 10
    assert suggest_tasks([s])[0]["predictions"][0]["result"][0]["id"] == region["id"]  # stable across calls
    other = suggest_tasks([_sugg("https://cdn/y.mp4", {"cooking": 0.7})])[0]["predictions"][0]["result"][0]["id"]
    assert other != region["id"]


def test_custom_data_key() -> None:
    (task,) = suggest_tasks([_sugg("v.mp4", {"cooking": 1.0})], data_key="clip")
    assert task["data"]["clip"] == "v.mp4" and "video" not in task["data"]


def test_top_k_one_prediction_per_label_best_first_ties_in_bank_order() -> None:
    probs = {"cooking": 0.1, "travel": 0.4, "<gaming>": 0.4, "música": 0.1}
    (task,) = suggest_tasks([_sugg("v", probs)], top_k=3)
    got = [(p["result"][0]["value"]["choices"], p["score"]) for p in task["predictions"]]
    assert got == [(["travel"], 0.4), (["<gaming>"], 0.4), (["cooking"], 0.1)]
    (task,) = suggest_tasks([_sugg("v", probs)], top_k=10)
    assert len(task["predictions"]) == 4
    assert len({p["result"][0]["id"] for p in task["predictions"]}) == 4


def test_numpy_scores_become_json_floats() -> None:
    probs = {"cooking": np.float32(0.75), "travel": np.float64(0.25)}
    s = Suggestion("v", "", probs, np.float32(0.56), np.float64(0.5), MODEL_VERSION)
    text = json.dumps(suggest_tasks([s]))
    assert json.loads(text)[0]["predictions"][0]["score"] == 0.75


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -0.01, 1.01, "0.5", None, True])
def test_probabilities_must_be_finite_in_unit_interval(bad) -> None:
    items = [_sugg("ok.mp4", {"cooking": 1.0}), _sugg("bad.mp4", {"cooking": 0.5, "travel": bad})]
    with pytest.raises(ValueError, match=r"suggestion 1 \('bad.mp4'\): probability of 'travel'"):
        suggest_tasks(items)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"label_entropy": math.nan}, "label_entropy"),
        ({"label_entropy": -1.0}, "label_entropy"),
        ({"label_margin": math.inf}, "label_margin"),
        ({"label_margin": 1.5}, "label_margin"),
        ({"label_probs": {}}, "label_probs is empty"),
        ({"label_probs": {"": 0.5}}, "label names"),
        ({"model_version": ""}, "model_version"),
        ({"video": ""}, "video"),
        ({"text": None}, "text"),
    ],
)
def test_suggestion_fields_checked(kwargs, match) -> None:
    fields = {"video": "v.mp4", "text": "", "label_probs": {"a": 1.0}, "label_entropy": 0.0, "label_margin": 1.0}
    fields |= {"model_version": MODEL_VERSION} | kwargs
    with pytest.raises(ValueError, match=rf"suggestion 0 .*{match}"):
        suggest_tasks([Suggestion(**fields)])


@pytest.mark.parametrize("top_k", [0, -1, 1.5, True])
def test_top_k_must_be_positive_int(top_k) -> None:
    with pytest.raises(ValueError, match="top_k"):
        suggest_tasks([_sugg("v", {"a": 1.0})], top_k=top_k)


# --- url_for / path_for --------------------------------------------------------------------------------------


def test_url_for_without_prefix_is_the_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert url_for(tmp_path / "a b.mp4") == (tmp_path / "a b.mp4").as_posix()
    monkeypatch.chdir(tmp_path)
    assert url_for(Path("rel.mp4"), prefix=None) == (tmp_path / "rel.mp4").as_posix()


@pytest.mark.parametrize("name", ["clips/a.mp4", "clips/with space.mp4", "a&b=c#d+e?.mp4", "ü/vidéo 100%.mp4"])
def test_url_for_local_files_and_back(tmp_path: Path, name: str) -> None:
    url = url_for(tmp_path / name, prefix=LOCAL_FILES_PREFIX, root=tmp_path)
    assert url.startswith("/data/local-files/?d=")
    assert not set(url[len(LOCAL_FILES_PREFIX) :]) & set(" &#+?=")  # what would break the query string is quoted
    assert path_for(url, prefix=LOCAL_FILES_PREFIX, root=tmp_path) == (tmp_path / name).as_posix()
    assert path_for(url, prefix=LOCAL_FILES_PREFIX) == name


def test_url_for_plain_names_stay_readable(tmp_path: Path) -> None:
    url = url_for(tmp_path / "ds1" / "v_001.mp4", prefix=LOCAL_FILES_PREFIX, root=tmp_path)
    assert url == "/data/local-files/?d=ds1/v_001.mp4"
    assert url_for(Path("ds1/v.mp4"), prefix="https://cdn.example.com/") == "https://cdn.example.com/ds1/v.mp4"


def test_url_for_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not under the local-files root"):
        url_for(Path("/elsewhere/v.mp4"), prefix=LOCAL_FILES_PREFIX, root=tmp_path)
    with pytest.raises(ValueError, match="is absolute: give root="):
        url_for(tmp_path / "v.mp4", prefix=LOCAL_FILES_PREFIX)
    with pytest.raises(ValueError, match="names the root itself"):
        url_for(tmp_path, prefix=LOCAL_FILES_PREFIX, root=tmp_path)


def test_path_for_leaves_other_urls() -> None:
    assert path_for("https://cdn/x.mp4", prefix=LOCAL_FILES_PREFIX) == "https://cdn/x.mp4"
    assert path_for("/data/local-files/?d=x.mp4", prefix=None) == "/data/local-files/?d=x.mp4"


# --- read_export ---------------------------------------------------------------------------------------------


def test_read_export_picks_latest_non_cancelled_and_skips_the_rest() -> None:
    old = {"id": 1, "created_at": "2025-03-01T10:00:00Z", "result": [_region("travel")]}
    new = {"id": 2, "created_at": "2025-03-01T10:05:00.123456Z", "result": [_region("cooking")]}
    cancelled = {"id": 3, "created_at": "2025-03-02T00:00:00Z", "was_cancelled": True, "result": []}
    data = [
        _export_task(10, [new, old, cancelled], "a.mp4"),  # listed out of order: created_at decides
        _export_task(11, [cancelled]),
        _export_task(12, []),
        _export_task(13, None),
        _export_task(14, [{"result": [_region("travel")]}, {"result": [_region("pets & animals")]}], "e.mp4"),
        _export_task(15, [{"result": []}]),  # submitted with nothing chosen
        _export_task(16, [{"result": [_region([])]}]),
        _export_task(17, [{"skipped": True, "result": [_region("travel")]}]),  # older exports' name for cancelled
        {"data": {"text": "no video"}, "annotations": [{"result": [_region("travel", from_name="topic")]}]},
    ]
    assert read_export(data) == [
        Annotated("a.mp4", "t", "cooking", 10),
        Annotated("e.mp4", "t", "pets & animals", 14),  # no created_at: the last listed
        Annotated(None, "no video", "travel", None),  # the only choices result, whatever its name
    ]


def test_read_export_mixed_timezones_and_naive_stamps() -> None:
    a = {"created_at": "2025-03-01T12:00:00+02:00", "result": [_region("travel")]}  # 10:00 UTC
    b = {"created_at": "2025-03-01T11:00:00", "result": [_region("cooking")]}  # naive = UTC
    assert [x.label for x in read_export([_export_task(1, [b, a])])] == ["cooking"]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"tasks": []}, "list of tasks, got dict"),
        ([_export_task(1, []), "oops"], "task 1: expected an object"),
        ([_export_task(1, []), {"id": 42, "annotations": []}], r'task 1 \(id 42\): no "data"'),
        ([_export_task(1, []), {"id": 42, "data": "v.mp4"}], r'task 1 \(id 42\): no "data"'),
        ([_export_task(1, []), _export_task(42, {"result": []})], r'task 1 \(id 42\): "annotations" must be a list'),
        ([_export_task(1, []), _export_task(42, ["x"])], r"task 1 \(id 42\): annotation 0 is not an object"),
        ([_export_task(1, []), _export_task(42, [{"result": {}}])], r'task 1 \(id 42\): annotation "result"'),
        (
            [_export_task(1, []), _export_task(42, [{"result": [_region(["cooking", "travel"])]}])],
            r"task 1 \(id 42\): 2 choices \['cooking', 'travel'\] for the single-choice 'label'",
        ),
        ([_export_task(1, []), _export_task(42, [{"result": [_region([7])]}])], r"task 1 \(id 42\): choice 7 is not"),
        (
            [_export_task(1, []), _export_task(42, [{"result": [_region("a"), _region("b")]}])],
            r"task 1 \(id 42\): 2 choices results from 'label'",
        ),
        (
            [_export_task(1, []), _export_task(42, [{"result": [_region("a", "x"), _region("b", "y")]}])],
            r"task 1 \(id 42\): no choices result from 'label' among \['x', 'y'\]",
        ),
        (
            [_export_task(1, []), _export_task(42, [{"result": [{"type": "choices", "value": "a"}]}])],
            r'task 1 \(id 42\): choices result has no "value"',
        ),
    ],
)
def test_read_export_errors_name_the_task(data, match) -> None:
    with pytest.raises(LabelStudioFormatError, match=match):
        read_export(data)


def test_load_export(tmp_path: Path) -> None:
    good = tmp_path / "export.json"
    good.write_text(json.dumps([_export_task(5, [{"result": [_region("travel")]}], "/data/local-files/?d=a%20b.mp4")]))
    assert load_export(good, prefix=LOCAL_FILES_PREFIX, root=Path("/videos")) == [
        Annotated("/videos/a b.mp4", "t", "travel", 5)
    ]
    bad = tmp_path / "export.csv"
    bad.write_text("id,label\n1,travel\n")
    with pytest.raises(LabelStudioFormatError, match=r"export\.csv: not a JSON file"):
        load_export(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"id": 3}]))
    with pytest.raises(LabelStudioFormatError, match=r'wrong\.json: task 0 \(id 3\): no "data"'):
        load_export(wrong)


# --- against Label Studio's SDK ------------------------------------------------------------------------------


@pytest.mark.parametrize("data_key", ["video", "clip"])
def test_sdk_accepts_the_labeling_config(data_key: str) -> None:
    _sdk()
    from label_studio_sdk.label_interface import LabelInterface

    li = LabelInterface(labeling_config(BANK, data_key=data_key))
    li.validate()  # Label Studio's config JSON schema, unique names, toName targets
    control = li.get_control(FROM_NAME)
    assert type(control).__name__ == "ChoicesTag"
    assert control.labels == BANK and not control.is_multiple_choice and control.to_name == [TO_NAME]
    video = li.get_object(TO_NAME)
    assert type(video).__name__ == "VideoTag" and video.value_name == data_key
    assert li.get_object("title").value_name == "text"


def _suggestions(root: Path) -> list[Suggestion]:
    rows = [
        ("clips/pasta.mp4", "how to cook pasta", [0.7, 0.2, 0.05, 0.03, 0.01, 0.01], 0.9, 0.5),
        ("clips/beach trip.mp4", "beach", [0.3, 0.35, 0.2, 0.05, 0.05, 0.05], 1.6, 0.05),
        ("clips/cat&dog.mp4", "cat meets dog", [0.1, 0.1, 0.4, 0.3, 0.05, 0.05], 1.5, 0.1),
        ("clips/speedrun.mp4", "any% run", [0.0, 0.0, 0.0, 0.0, 1.0, 0.0], 0.0, 1.0),
        ("clips/canción.mp4", "música", [0.1, 0.1, 0.1, 0.1, 0.1, 0.5], 1.5, 0.4),
    ]
    return [
        Suggestion(
            url_for(root / v, prefix=LOCAL_FILES_PREFIX, root=root),
            t,
            dict(zip(BANK, p, strict=True)),
            e,
            m,
            MODEL_VERSION,
        )
        for v, t, p, e, m in rows
    ]


@pytest.mark.parametrize("top_k", [1, 3])
def test_sdk_validates_every_task_and_prediction(tmp_path: Path, top_k: int) -> None:
    _sdk()
    from label_studio_sdk.label_interface import LabelInterface
    from label_studio_sdk.types import PredictionRequest

    li = LabelInterface(labeling_config(BANK))
    tasks = suggest_tasks(_suggestions(tmp_path), top_k=top_k)
    assert len(tasks) == 5
    for n, task in enumerate(tasks, start=1):
        json.dumps(task)  # importable as a JSON file
        # validate_task checks the data each object tag needs; with predictions in the task it calls
        # validate_prediction() without its argument (SDK 2.0.5), so predictions are checked one by one below.
        assert li.validate_task({"data": task["data"]})
        assert len(task["predictions"]) == top_k
        for pred in task["predictions"]:
            assert li.validate_prediction(pred, return_errors=True) == []
            for i, region in enumerate(pred["result"]):
                assert li.validate_region(region, return_errors=True, region_index=i) == []
            parsed = PredictionRequest.model_validate({**pred, "task": n})  # the API's prediction type
            assert parsed.model_version == MODEL_VERSION and parsed.score == pred["score"]


def test_sdk_validator_is_not_a_rubber_stamp(tmp_path: Path) -> None:
    """The same validator rejects what Label Studio would: a label outside the bank, a wrong target, a bad score."""
    _sdk()
    from label_studio_sdk.label_interface import LabelInterface

    li = LabelInterface(labeling_config(BANK[:2]))  # "pets & animals" is not in this project's bank
    (task,) = suggest_tasks([_sugg("v.mp4", {"pets & animals": 0.9, "cooking": 0.1})])
    assert li.validate_prediction(task["predictions"][0], return_errors=True)
    (task,) = suggest_tasks([_sugg("v.mp4", {"cooking": 0.9})])
    pred = task["predictions"][0]
    assert li.validate_prediction(pred, return_errors=True) == []
    assert li.validate_prediction({**pred, "score": 1.5}, return_errors=True)
    wrong_target = {**pred, "result": [{**pred["result"][0], "to_name": "title"}]}
    assert li.validate_prediction(wrong_target, return_errors=True)
    assert not li.validate_task({"data": {"text": "no video"}})


def test_round_trip_through_an_annotators_export(tmp_path: Path) -> None:
    """suggest -> import -> annotate (accept, correct, cancel, leave) -> JSON export -> examples.

    Annotations are built with the SDK's own `Annotation` type and serialised as its API does;
    Label Studio's converter reads the same export, and must pick the same annotation per task.
    """
    _sdk()
    from label_studio_sdk.converter import Converter
    from label_studio_sdk.label_interface import LabelInterface
    from label_studio_sdk.types import Annotation

    config = labeling_config(BANK)
    li = LabelInterface(config)
    tasks = suggest_tasks(_suggestions(tmp_path))
    # Most uncertain first: beach (1.6), then cat&dog and canción tie on 1.5 -> smaller margin first.
    order = [path_for(t["data"]["video"], prefix=LOCAL_FILES_PREFIX) for t in tasks]
    assert order == [
        "clips/beach trip.mp4",
        "clips/cat&dog.mp4",
        "clips/canción.mp4",
        "clips/pasta.mp4",
        "clips/speedrun.mp4",
    ]

    t0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.timezone.utc)
    ids = iter(range(100, 200))

    def annotate(task_id: int, result: list[dict], minutes: int, cancelled: bool = False) -> dict:
        ann = Annotation(
            id=next(ids),
            task=task_id,
            project=1,
            completed_by=7,
            created_username="annotator@example.com, 7",
            created_ago="0 minutes",
            created_at=t0 + dt.timedelta(minutes=minutes),
            updated_at=t0 + dt.timedelta(minutes=minutes),
            lead_time=12.5,
            result=result,
            was_cancelled=cancelled,
            ground_truth=False,
            last_action="submitted",
        )
        out = json.loads(ann.json())
        if not cancelled:
            assert li.validate_annotation(out)
        return out

    def accept(task: dict) -> list[dict]:
        regions = task["predictions"][0]["result"]
        return [{**{k: v for k, v in r.items() if k != "score"}, "origin": "prediction"} for r in regions]

    def choose(label: str) -> list[dict]:
        return [{"id": "ann01", "origin": "manual", **_region(label)}]

    beach, catdog, cancion, pasta, speedrun = tasks
    annotations = {
        0: [annotate(1, accept(beach), 1)],  # prediction accepted as is
        1: [annotate(2, accept(catdog), 2), annotate(2, choose('say "hi"'), 30)],  # corrected later
        2: [annotate(3, [], 3, cancelled=True)],  # skipped by the annotator
        3: [],  # never opened
        4: [annotate(5, choose("<gaming>"), 40), annotate(5, [], 50, cancelled=True)],
    }
    export = []
    for i, task in enumerate(tasks):
        export.append(
            {
                "id": i + 1,
                "data": task["data"],
                "annotations": annotations[i],
                "predictions": [{**p, "id": 900 + i, "task": i + 1} for p in task["predictions"]],
                "meta": {},
                "created_at": "2025-03-01T08:00:00.000000Z",
                "updated_at": "2025-03-01T10:00:00.000000Z",
                "inner_id": i + 1,
                "total_annotations": sum(not a["was_cancelled"] for a in annotations[i]),
                "cancelled_annotations": sum(a["was_cancelled"] for a in annotations[i]),
                "total_predictions": len(task["predictions"]),
                "project": 1,
            }
        )
    path = tmp_path / "project-1-at-2025-03-01.json"
    path.write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")

    got = load_export(path, prefix=LOCAL_FILES_PREFIX, root=tmp_path)
    assert [(Path(a.video).relative_to(tmp_path).as_posix(), a.label, a.task_id) for a in got] == [
        ("clips/beach trip.mp4", "travel", 1),
        ("clips/cat&dog.mp4", 'say "hi"', 2),
        ("clips/speedrun.mp4", "<gaming>", 5),
    ]
    assert all(Path(a.video).parent == tmp_path / "clips" for a in got)

    converter = Converter(config, project_dir=str(tmp_path), download_resources=False)
    theirs = {}
    for task in export:
        labelled = [item for item in converter.annotation_result_from_task(task) if item["output"]]
        if labelled:  # the converter yields every kept annotation, latest first
            theirs[task["id"]] = labelled[0]["output"][FROM_NAME][0]["choices"][0]
    assert theirs == {a.task_id: a.label for a in got}
