"""The serving-overhead floor: reelserve's ensembles and configs, no-op steps with the real tensor shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reelserve.client import VideoFeaturesClient
from reelserve.config import DEFAULT
from reelserve.export.repository import write_repository
from reelserve.loadtests.noop_floor import (
    HIDDEN,
    NOOP_STEPS,
    NUM_CLASSES,
    NoopStepModel,
    write_noop_repository,
)
from reelserve.samples import SampleVideo
from reelserve.spec import contract as c
from reelserve.spec.topology import STEP_SECTIONS
from reelserve.triton.ports import on_free_ports
from reelserve.triton.server import TritonServer


@pytest.fixture(scope="module")
def noop_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("noop_repository")
    write_noop_repository(root)
    return root


def test_same_configs_as_reelserve_only_model_py_differs(noop_repository: Path, tmp_path: Path) -> None:
    write_repository(tmp_path, DEFAULT)
    real = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("config.pbtxt"))
    assert real == sorted(p.relative_to(noop_repository) for p in noop_repository.rglob("config.pbtxt"))
    for rel in real:
        assert (noop_repository / rel).read_text() == (tmp_path / rel).read_text(), rel
    for step in (c.PREPROCESS, c.VISION_ENCODER, c.OCR, c.ASR, c.TEXT_ENCODER, c.FUSION_HEADS):
        assert "NoopStepModel as TritonPythonModel" in (noop_repository / step / "1" / "model.py").read_text()
    assert NoopStepModel.steps == NOOP_STEPS


def _run(name: str, version_dir: Path, inputs: dict) -> dict[str, np.ndarray]:
    settings = {section: getattr(DEFAULT, section) for section in STEP_SECTIONS[name]}
    (result,) = NOOP_STEPS[name](settings, version_dir).run([inputs])
    return result


def test_steps_produce_the_real_names_dtypes_and_shapes(noop_repository: Path) -> None:
    texts = np.array([[b"a"], [b"b"]], dtype=object)
    pre = _run(c.PREPROCESS, Path("."), {c.VIDEO.name: texts, c.TEXT.name: texts})
    assert pre[c.FRAMES.name].shape == (2, 8, 224, 224, 3) and pre[c.FRAMES.name].dtype == np.uint8
    assert pre[c.FRAME_MASK.name].all() and pre[c.FRAME_MASK.name].shape == (2, 8)
    ids, mask = pre[c.INPUT_IDS.name], pre[c.ATTENTION_MASK.name]
    assert ids.dtype == mask.dtype == np.int64 and ids.shape == mask.shape and mask.all()
    assert pre[c.TEXT_TRUNCATED.name].shape == (2, 1) and not pre[c.TEXT_TRUNCATED.name].any()
    text_only = _run(c.PREPROCESS, Path("."), {c.VIDEO.name: None, c.TEXT.name: texts})
    assert set(text_only) == {c.INPUT_IDS.name, c.ATTENTION_MASK.name, c.TEXT_TRUNCATED.name, c.LABEL_BANK_VERSION.name}

    n = DEFAULT.ocr.frames
    assert pre[c.TEXT_FRAMES.name].shape == (2, n, 640, 360, 3) and pre[c.TEXT_FRAMES.name].dtype == np.uint8
    assert pre[c.TEXT_FRAME_SIZES.name].tolist() == [[[640, 360]] * n] * 2
    ocr = _run(c.OCR, Path("."), {c.TEXT.name: texts, **pre})
    assert ocr[c.OCR_TEXT.name].tolist() == [[b""], [b""]]
    np.testing.assert_array_equal(ocr[c.INPUT_IDS.name], ids)
    np.testing.assert_array_equal(ocr[c.ATTENTION_MASK.name], mask)
    asr = _run(c.ASR, Path("."), {c.VIDEO.name: texts, c.TEXT.name: texts, c.OCR_TEXT.name: ocr[c.OCR_TEXT.name]})
    assert asr[c.ASR_TEXT.name].tolist() == asr[c.ASR_LANGUAGE.name].tolist() == [[b""], [b""]]
    np.testing.assert_array_equal(asr[c.INPUT_IDS.name], ids)
    np.testing.assert_array_equal(asr[c.ATTENTION_MASK.name], mask)

    logits = _run(c.VISION_ENCODER, Path("."), pre)[c.FRAME_LOGITS.name]
    assert logits.shape == (2, 8, NUM_CLASSES) and logits.dtype == np.float32
    vectors = _run(c.TEXT_ENCODER, Path("."), pre)[c.TEXT_VECTOR.name]
    assert vectors.shape == (2, HIDDEN) and vectors.dtype == np.float32

    heads_dir = noop_repository / c.FUSION_HEADS / "1"
    out = _run(c.FUSION_HEADS, heads_dir, {c.TEXT_VECTOR.name: vectors})
    np.testing.assert_allclose(np.linalg.norm(out[c.EMBEDDING.name], axis=1), 1.0)
    assert out[c.TAGS.name].shape == out[c.TAG_SCORES.name].shape == (2, DEFAULT.heads.top_k_tags)
    labels = len(DEFAULT.heads.labels)
    assert (
        out[c.LABEL_SCORES.name].shape == out[c.LABEL_PROBS.name].shape == out[c.LABEL_NAMES.name].shape == (2, labels)
    )
    for name in (c.TAG_ENTROPY.name, c.LABEL_ENTROPY.name, c.LABEL_MARGIN.name, c.SEMANTIC_ID_VERSION.name):
        assert out[name].shape == (2, 1), name
    assert out[c.SEMANTIC_IDS.name].shape == (2, DEFAULT.heads.semantic_id_levels)
    assert out[c.SEMANTIC_IDS.name].dtype == np.int32


@pytest.mark.integration
def test_served_noop_floor_answers_like_reelserve(noop_repository: Path) -> None:
    video = SampleVideo("cat", "my cat", "chelsea", "still", "h264").render(seconds=1.0, size=(144, 256))
    cfg = on_free_ports(DEFAULT.server, noop_repository)
    with TritonServer(cfg) as server:
        server.wait_ready(models=[c.VIDEO_FEATURES, c.TEXT_FEATURES])
        with VideoFeaturesClient(server.grpc_url) as client:
            (f,) = client.video_features([video], ["my cat"])
            assert f.embedding.shape == (384,) and abs(float(np.linalg.norm(f.embedding)) - 1) < 1e-6
            assert len(f.tags) == 5 and len(f.semantic_ids) == 3
            assert len(f.label_scores) == len(DEFAULT.heads.labels) and f.label_bank_version == "default/0"
            assert f.text_truncated is False and f.ocr_text == "" and f.asr_text is None
            (heard,) = client.video_features([video], ["my cat"], transcribe=True)
            assert (heard.asr_text, heard.asr_language, heard.ocr_text) == ("", "", "")

            batch = client.video_features([video] * 4, ["a", "b", "c", "d"])
            assert len(batch) == 4 and all(len(b.tags) == 5 and b.embedding.shape == (384,) for b in batch)

            (t,) = client.text_features(["a kitten sleeping"])
            assert t.embedding.shape == (384,) and len(t.label_scores) == len(DEFAULT.heads.labels)
            assert len(client.text_features(["one", "two", "three", "four"])) == 4
