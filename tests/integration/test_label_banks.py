"""Label banks through a real tritonserver: published while it serves, picked up without a restart.

One server (module scope) with its own bank store; banks are published with the same code as
`reelserve labels publish`, so prototypes come from the served model itself.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from reelserve.cli import main as cli
from reelserve.client import InvalidArgumentError, VideoFeaturesClient
from reelserve.config import DEFAULT
from reelserve.labels.publish import PublishError, publish
from reelserve.labels.spec import BankSpec, LabelSpec, load_spec
from reelserve.labels.store import Bank, BankStore
from reelserve.samples import SampleVideo, few_shot_videos, write_few_shot_spec
from reelserve.spec import contract as c
from reelserve.triton.ports import on_free_ports
from reelserve.triton.server import TritonServer

pytestmark = pytest.mark.integration

SMALL = {"seconds": 1.0, "size": (144, 256)}  # test clips: quick to decode
PICKUP_S = 5.0  # the bound: a published version serves within this


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("label_banks")


@pytest.fixture(scope="module")
def server(model_repository: Path, store: Path):
    cfg = replace(on_free_ports(DEFAULT.server, model_repository), label_banks=store)
    with TritonServer(cfg) as s:
        s.wait_ready(models=[c.VIDEO_FEATURES, c.TEXT_FEATURES])
        yield s


@pytest.fixture(scope="module")
def client(server: TritonServer):
    with VideoFeaturesClient(server.grpc_url, deadline_s=60) as cl:
        yield cl


@pytest.fixture(scope="module")
def demo_spec(tmp_path_factory) -> Path:
    return write_few_shot_spec(tmp_path_factory.mktemp("spec"), "demo", **SMALL)


@pytest.fixture(scope="module")
def demo_bank(client: VideoFeaturesClient, demo_spec: Path, store: Path):
    return publish(client, load_spec(demo_spec), store)


def _text_bank(name: str, *labels: str) -> BankSpec:
    return BankSpec(name, tuple(LabelSpec(label, prompts=(label,)) for label in labels))


def _wait_for_version(client: VideoFeaturesClient, bank: str, tag: str) -> float:
    """Seconds until a new request to `bank` is answered with version `tag` (called right after it was published).

    Each `preprocess` instance is a process that re-reads `CURRENT` on its own clock, so one may
    answer with the new version up to `refresh_s` before the other: return only once both must have.
    """
    start = time.monotonic()
    while True:
        (f,) = client.text_features(["a cat on a sofa"], label_bank=bank)
        if f.label_bank_version == tag:
            break
        assert time.monotonic() - start < 3 * PICKUP_S, f"still {f.label_bank_version}, want {tag}"
        time.sleep(0.05)
    seen = time.monotonic() - start
    time.sleep(max(0.0, DEFAULT.banks.refresh_s + 0.2 - seen))
    return seen


def test_few_shot_label_picks_the_held_out_clip(client, demo_bank) -> None:
    bank, built = demo_bank.bank, demo_bank.built
    assert bank.tag == "demo/1" and built.calibrated and built.loo_items == 4
    assert built.loo_accuracy == 1.0, built.report()
    _, held_out = few_shot_videos()
    for label, clip in held_out.items():
        (f,) = client.video_features([clip.render(**SMALL)], [""], label_bank="demo")
        assert f.label_bank_version == "demo/1" and list(f.label_scores) == list(bank.labels)
        assert f.top_label == label, f.label_probs
        assert f.label_probs[label] > 0.5 and f.label_margin > 0.2, (label, f.label_probs)


def test_uncertainty_is_high_off_topic(client, demo_bank) -> None:
    on_topic = few_shot_videos()[1]["microscopy"].render(**SMALL)
    off_topic = SampleVideo("motorcycle", "", "motorcycle_left", "pan", "h264").render(**SMALL)
    sure, unsure = client.video_features([on_topic, off_topic], ["", ""], label_bank="demo")
    for f in (sure, unsure):
        assert abs(sum(f.label_probs.values()) - 1) < 1e-4
        assert 0 <= f.label_entropy <= 1 and 0 <= f.label_margin <= 1 and 0 <= f.tag_entropy <= 1
    assert unsure.label_entropy > sure.label_entropy + 0.2, (sure.label_entropy, unsure.label_entropy)
    assert unsure.label_margin < sure.label_margin


def test_publish_is_served_within_seconds_without_a_restart(client, server, store) -> None:
    pid = server.pid
    first = publish(client, _text_bank("pickup", "a cat", "coffee"), store).bank
    assert first.tag == "pickup/1"
    _wait_for_version(client, "pickup", first.tag)
    second = publish(client, _text_bank("pickup", "a cat", "coffee", "a rocket launch"), store).bank
    waited = _wait_for_version(client, "pickup", second.tag)
    assert waited < PICKUP_S, f"new version served after {waited:.2f}s"
    (f,) = client.text_features(["a rocket launch at dawn"], label_bank="pickup")
    assert list(f.label_scores) == ["a cat", "coffee", "a rocket launch"] and f.top_label == "a rocket launch"
    assert server.pid == pid and server.is_running()


def test_a_re_upload_is_answered_from_the_cache_with_the_bank_current_now(client, server, store) -> None:
    """The response cache covers vision, OCR and text; the label bank is read and scored on every call."""
    from reelserve.loadtests.triton_metrics import parse_cache, scrape_text

    clip = SampleVideo("coffee", "", "coffee", "zoom", "h264").render(**SMALL)
    publish(client, _text_bank("fresh", "a cat", "a rocket"), store)
    _wait_for_version(client, "fresh", "fresh/1")
    (first,) = client.video_features([clip], ["my morning coffee"], label_bank="fresh")
    hits = parse_cache(scrape_text(server.metrics_url))[c.VISION_ENCODER]["hits"]
    publish(client, _text_bank("fresh", "a cat", "a rocket", "a cup of coffee"), store)
    _wait_for_version(client, "fresh", "fresh/2")
    (again,) = client.video_features([clip], ["my morning coffee"], label_bank="fresh")
    assert parse_cache(scrape_text(server.metrics_url))[c.VISION_ENCODER]["hits"] == hits + 1
    assert (first.label_bank_version, again.label_bank_version) == ("fresh/1", "fresh/2")
    assert list(again.label_scores) == ["a cat", "a rocket", "a cup of coffee"] and again.top_label == "a cup of coffee"
    np.testing.assert_array_equal(first.embedding, again.embedding)
    assert first.semantic_ids == again.semantic_ids


def test_two_banks_side_by_side(client, store) -> None:
    publish(client, _text_bank("animals", "a cat", "a dog", "a horse"), store)
    publish(client, _text_bank("drinks", "coffee", "tea", "beer", "orange juice"), store)
    texts = ["a kitten sleeping", "a cup of espresso"]
    animals = client.text_features(texts, label_bank="animals")
    drinks = client.text_features(texts, label_bank="drinks")
    default = client.text_features(texts)
    assert {f.label_bank_version for f in animals} == {"animals/1"} and animals[0].top_label == "a cat"
    assert {f.label_bank_version for f in drinks} == {"drinks/1"} and drinks[1].top_label == "coffee"
    assert default[0].label_bank_version == "default/0" and list(default[0].label_scores) == list(DEFAULT.heads.labels)
    np.testing.assert_allclose(animals[0].embedding, drinks[0].embedding, atol=1e-6)  # banks change scores only


def test_requests_in_flight_across_updates_are_all_answered(client, store) -> None:
    names_of = {1: ["a cat", "coffee"], 2: ["a cat", "coffee", "music"], 3: ["a cat", "coffee", "music", "sports"]}
    publish(client, _text_bank("live", *names_of[1]), store)
    _wait_for_version(client, "live", "live/1")
    answers: list[tuple[str, list[str]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def caller() -> None:
        while not stop.is_set():
            try:
                for f in client.text_features(["a cat playing", "a latte"], label_bank="live"):
                    answers.append((f.label_bank_version, list(f.label_scores)))
            except BaseException as e:  # every call must be answered: nothing may fail
                errors.append(e)
                return

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
    for version in (2, 3):
        time.sleep(1.0)
        assert publish(client, _text_bank("live", *names_of[version]), store).bank.version == version
    _wait_for_version(client, "live", "live/3")
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(60)
    assert not errors, errors
    seen = {tag for tag, _ in answers}
    assert {"live/1", "live/3"} <= seen, seen
    for tag, names in answers:  # scores always name the labels of the version they were computed with
        assert names == names_of[int(tag.split("/")[1])], (tag, names)


def test_rollback(client, store) -> None:
    publish(client, _text_bank("undo", "a cat"), store)
    publish(client, _text_bank("undo", "a cat", "a dog"), store)
    _wait_for_version(client, "undo", "undo/2")
    assert cli(["labels", "rollback", "undo", "1", "--label-banks", str(store)]) == 0
    assert _wait_for_version(client, "undo", "undo/1") < PICKUP_S
    (f,) = client.text_features(["a dog"], label_bank="undo")
    assert list(f.label_scores) == ["a cat"]


def test_unknown_bank_is_refused_naming_it(client) -> None:
    for call in (
        lambda: client.text_features(["a cat"], label_bank="no-such-bank"),
        lambda: client.video_features([few_shot_videos()[1]["microscopy"].render(**SMALL)], label_bank="no-such-bank"),
    ):
        with pytest.raises(InvalidArgumentError, match=r"label_bank.*no-such-bank"):
            call()


def test_a_bank_of_another_embedding_space_is_refused(client, store) -> None:
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(2, 384)).astype(np.float32)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    foreign = Bank("foreign", 0, ("x", "y"), protos, 0.05, False, "another-export", {})
    BankStore(store).publish(foreign)
    with pytest.raises(InvalidArgumentError, match="embedding space"):
        client.text_features(["a cat"], label_bank="foreign")


def test_corrupt_store_keeps_the_last_good_version(client, store, server) -> None:
    publish(client, _text_bank("fragile", "a cat", "coffee"), store)
    _wait_for_version(client, "fragile", "fragile/1")
    (store / "fragile" / "CURRENT").write_text("not a number\n")
    time.sleep(2 * DEFAULT.banks.refresh_s + 0.5)
    (f,) = client.text_features(["a cat"], label_bank="fragile")
    assert f.label_bank_version == "fragile/1"
    assert "keeping fragile/1" in server.log_path.read_text(errors="replace")
    BankStore(store).set_current("fragile", 1)


def test_publish_refuses_a_video_the_server_refuses(client, store, tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64)
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: broken\nlabels:\n  - name: junk\n    examples: [broken.mp4]\n")
    with pytest.raises(PublishError, match=r"labels\[0\] \('junk'\) examples\[0\].*broken.mp4"):
        publish(client, load_spec(spec), store)
    assert not BankStore(store).versions("broken")  # nothing written


def test_label_studio_round_trip(client, server, demo_bank, demo_spec: Path, tmp_path: Path) -> None:
    _, held_out = few_shot_videos()
    videos = []
    for label, clip in held_out.items():
        path = tmp_path / f"{clip.name}.mp4"
        path.write_bytes(clip.render(**SMALL))
        videos.append((label, path))
    off_topic = tmp_path / "moto.mp4"
    off_topic.write_bytes(SampleVideo("moto", "", "motorcycle_left", "pan", "h264").render(**SMALL))
    tasks_file = tmp_path / "tasks.json"
    url = server.grpc_url
    paths = [str(p) for _, p in videos] + [str(off_topic)]
    assert cli(["labels", "suggest", "--bank", "demo", *paths, "--out", str(tasks_file), "--url", url, "--quiet"]) == 0
    tasks = json.loads(tasks_file.read_text())
    assert len(tasks) == 3 and tasks[0]["data"]["video"] == str(off_topic.absolute())  # most uncertain first
    entropies = [t["data"]["reelserve_entropy"] for t in tasks]
    assert entropies == sorted(entropies, reverse=True)
    assert all("demo/1" in t["predictions"][0]["model_version"] for t in tasks)
    assert tasks_file.with_suffix(".labeling-config.xml").exists()

    # an annotator accepts the suggestions and labels the off-topic clip "motorbike" (a new label)
    export = []
    for i, task in enumerate(tasks):
        choice = task["predictions"][0]["result"][0]["value"]["choices"]
        if task["data"]["video"] == str(off_topic.absolute()):
            choice = ["motorbike"]
        result = [{"from_name": "label", "to_name": "video", "type": "choices", "value": {"choices": choice}}]
        export.append({"id": i + 1, "data": task["data"], "annotations": [{"result": result, "was_cancelled": False}]})
    export_file = tmp_path / "export.json"
    export_file.write_text(json.dumps(export))
    spec_copy = tmp_path / "demo.yaml"
    spec_copy.write_text(demo_spec.read_text())
    for clip in (demo_spec.parent / "clips").iterdir():  # the spec's relative clip paths resolve beside it
        (tmp_path / "clips").mkdir(exist_ok=True)
        (tmp_path / "clips" / clip.name).write_bytes(clip.read_bytes())
    assert cli(["labels", "import", str(export_file), "--bank", "demo", "--spec", str(spec_copy)]) == 0
    updated = {label.name: label for label in load_spec(spec_copy).labels}
    for label, path in videos:
        assert path.resolve() in {e.path.resolve() for e in updated[label].examples if e.path}
    assert [e.path.resolve() for e in updated["motorbike"].examples] == [off_topic.resolve()]
