"""The served ensembles, through a real tritonserver over gRPC, against the PyTorch models."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from reelserve.client import InvalidArgumentError, VideoFeaturesClient
from reelserve.config import DEFAULT
from reelserve.samples import SampleVideo, demo_videos, load_photo, malformed_videos, render_clip
from reelserve.spec import contract as c

pytestmark = pytest.mark.integration

CAT = SampleVideo("cat", "my cat", "chelsea", "zoom", "h264")
CAT_PAN = SampleVideo("cat_pan", "my cat", "chelsea", "pan", "vp9")
COFFEE = SampleVideo("coffee", "my coffee", "coffee", "zoom", "h264")


@pytest.fixture(scope="module")
def clips() -> dict[str, bytes]:
    return {v.name: v.render() for v in (CAT, CAT_PAN, COFFEE)}


@pytest.fixture(scope="module")
def reference(model_repository: Path):
    """The PyTorch pipeline with the exact heads (and tag names) the repository serves.

    Its text side is the served int8 graph (in ONNX Runtime): that graph's parity with the PyTorch
    tower is tests/export/test_text_embedding.py's; here every other step must equal PyTorch.
    """
    from reelserve.config import DEFAULT
    from reelserve.export.cpu import served_text_tower
    from reelserve.models.heads import load_fusion_heads
    from reelserve.models.pipeline import VideoFeaturesModel
    from reelserve.models.vision_tower import load_efficientnet_lite0
    from reelserve.serving.onnx_runtime import ort_session
    from reelserve.serving.video_decode import decode_clip

    heads, meta = load_fusion_heads(model_repository / c.FUSION_HEADS / "1")
    text, tokenizer = served_text_tower(model_repository, DEFAULT)
    model = VideoFeaturesModel(load_efficientnet_lite0(), text, heads).eval()
    session = ort_session(model_repository / c.TEXT_ENCODER / "1" / "model.onnx", threads=1)

    class ServedText(torch.nn.Module):
        def forward(self, ids: torch.Tensor, amask: torch.Tensor) -> torch.Tensor:
            feeds = {c.INPUT_IDS.name: ids.numpy(), c.ATTENTION_MASK.name: amask.numpy()}
            return torch.from_numpy(session.run([c.TEXT_VECTOR.name], feeds)[0])

    model.text = ServedText()

    def run(videos: list[bytes], texts: list[str]):
        clips = [decode_clip(v) for v in videos]
        frames, mask = np.stack([k.frames for k in clips]), np.stack([k.mask for k in clips])
        ids, amask, _ = tokenizer.encode(texts)
        return model(torch.from_numpy(frames), torch.from_numpy(mask), torch.from_numpy(ids), torch.from_numpy(amask))

    return run, meta["tags"]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_ensemble_equals_pytorch(client: VideoFeaturesClient, clips, reference) -> None:
    videos = [clips["cat"], clips["coffee"], clips["cat_pan"]]
    texts = ["My cat Chelsea taking a nap", "", "我家的猫在窗边晒太阳"]
    served = client.video_features(videos, texts)
    run, tag_names = reference
    want = run(videos, texts)
    for i, f in enumerate(served):
        cos = cosine(f.embedding, want.embedding[i].numpy())
        assert cos >= 0.999, f"item {i}: served vs PyTorch embedding cosine {cos:.6f}"
        assert [t for t, _ in f.tags] == [tag_names[int(j)] for j in want.tag_ids[i]]
        np.testing.assert_allclose([s for _, s in f.tags], want.tag_scores[i].numpy(), atol=1e-4)
        np.testing.assert_allclose(list(f.label_scores.values()), want.label_scores[i].numpy(), atol=1e-4)
        assert f.semantic_ids == tuple(int(x) for x in want.semantic_ids[i]), f"item {i} semantic IDs differ"


def test_embeddings_unit_norm_and_shapes(client: VideoFeaturesClient, clips) -> None:
    (f,) = client.video_features([clips["cat"]], ["a cat"])
    assert f.embedding.dtype == np.float32 and f.embedding.ndim == 1
    assert abs(float(np.linalg.norm(f.embedding)) - 1.0) < 1e-5
    assert len(f.tags) == 5 and all(0.0 <= s <= 1.0 for _, s in f.tags)
    assert [s for _, s in f.tags] == sorted((s for _, s in f.tags), reverse=True)
    assert len(f.semantic_ids) == 3 and all(0 <= i < 256 for i in f.semantic_ids)
    assert list(f.label_scores) == list(f.label_probs) == list(DEFAULT.heads.labels)
    assert f.label_bank_version == "default/0"  # the exported bank: no store given
    assert abs(sum(f.label_probs.values()) - 1) < 1e-4 and 0 <= f.label_entropy <= 1 and 0 <= f.label_margin <= 1
    assert 0 < f.tag_entropy < 1 and f.semantic_id_version.startswith("rq3x256-")


def test_similar_videos_are_closer(client: VideoFeaturesClient, clips) -> None:
    cat, cat_pan, coffee = client.video_features([clips["cat"], clips["cat_pan"], clips["coffee"]])
    similar, dissimilar = cosine(cat.embedding, cat_pan.embedding), cosine(cat.embedding, coffee.embedding)
    assert similar > dissimilar + 0.2, f"cat/cat {similar:.3f} vs cat/coffee {dissimilar:.3f}"
    assert cat.tags[0][0] in {"Egyptian cat", "tabby", "tiger cat"}, cat.tags
    assert cat.top_label == "a cat" and coffee.top_label == "coffee"


def test_semantic_ids_deterministic(client: VideoFeaturesClient, clips) -> None:
    first = [f.semantic_ids for f in client.video_features([clips["cat"], clips["coffee"]], ["a", "b"])]
    again = [f.semantic_ids for f in client.video_features([clips["cat"], clips["coffee"]], ["a", "b"])]
    alone = client.video_features([clips["coffee"]], ["b"])[0].semantic_ids
    assert first == again and first[1] == alone


def test_text_features_share_the_video_space(client: VideoFeaturesClient, clips) -> None:
    cat_video, coffee_video = client.video_features([clips["cat"], clips["coffee"]])
    kitten, espresso = client.text_features(["a kitten sleeping", "a cup of espresso"])
    assert abs(float(np.linalg.norm(kitten.embedding)) - 1) < 1e-5
    assert cosine(kitten.embedding, cat_video.embedding) > cosine(kitten.embedding, coffee_video.embedding)
    assert cosine(espresso.embedding, coffee_video.embedding) > cosine(espresso.embedding, cat_video.embedding)
    assert max(kitten.label_scores, key=kitten.label_scores.get) == "a cat"


@pytest.mark.parametrize("kind", sorted(malformed_videos()))
def test_malformed_video_is_invalid_argument_and_server_keeps_serving(client, clips, kind: str) -> None:
    with pytest.raises(InvalidArgumentError, match="input 'video'") as info:
        client.video_features([malformed_videos()[kind]], ["title"])
    assert info.value.status == "INVALID_ARGUMENT"
    (ok,) = client.video_features([clips["cat"]], ["still serving"])
    assert abs(float(np.linalg.norm(ok.embedding)) - 1) < 1e-5


def test_bad_request_does_not_fail_its_dynamic_batch_neighbours(tritonserver, clips) -> None:
    bad = malformed_videos()["random_bytes"]

    def call(video: bytes) -> str:
        with VideoFeaturesClient(tritonserver.grpc_url) as cl:
            try:
                cl.video_features([video], ["t"])
                return "ok"
            except InvalidArgumentError:
                return "invalid"

    videos = [clips["cat"], bad, clips["coffee"], bad, clips["cat_pan"], clips["cat"]] * 2
    with ThreadPoolExecutor(len(videos)) as pool:
        outcomes = list(pool.map(call, videos))
    assert outcomes == ["invalid" if v is bad else "ok" for v in videos]


def test_bad_text_is_invalid_argument(client, clips) -> None:
    with pytest.raises(InvalidArgumentError, match="input 'text'.*UTF-8"):
        client.video_features([clips["cat"]], [b"\xff\xfe title"])
    with pytest.raises(InvalidArgumentError, match="input 'text'.*empty"):
        client.text_features(["   "])


def test_long_text_is_truncated_and_flagged(client, clips) -> None:
    (f,) = client.video_features([clips["cat"]], ["cat " * 400])
    (g,) = client.video_features([clips["cat"]], ["a short title"])
    assert f.text_truncated and not g.text_truncated


def test_batch_of_eight_in_one_request_and_over_max_batch(client, clips) -> None:
    videos = [clips["cat"], clips["coffee"]] * 4
    features = client.video_features(videos, ["t"] * 8)
    assert len(features) == 8
    np.testing.assert_allclose(features[0].embedding, features[2].embedding, atol=1e-5)
    with pytest.raises(InvalidArgumentError, match="batch"):
        client.video_features([clips["cat"]] * 17)


def test_short_and_single_frame_videos(client) -> None:
    photo = load_photo("coffee")
    one = render_clip(photo, seconds=1 / 12, fps=12, size=(160, 160), motion="still")
    three = render_clip(photo, seconds=3 / 12, fps=12, size=(160, 160), motion="zoom")
    f1, f3 = client.video_features([one, three])
    assert f1.top_label == "coffee" and f3.top_label == "coffee"


def test_all_demo_codecs_decode(client) -> None:
    videos = demo_videos()
    features = client.video_features([v.render() for v in videos], [v.title for v in videos])
    assert len(features) == len(videos)


def test_python_stub_uses_the_project_virtualenv(tritonserver) -> None:
    """Each step logs its interpreter and numpy at load time; they must be this virtualenv's."""
    log = tritonserver.log_path.read_text(errors="replace")
    lines = [line for line in log.splitlines() if "reelserve step" in line]
    steps = {c.PREPROCESS, c.VISION_ENCODER, c.OCR, c.TEXT_ENCODER, c.FUSION_HEADS}
    assert {s for s in steps if any(f"step {s} ready" in line for line in lines)} == steps, lines
    site = str(Path(sys.prefix).resolve())
    for line in lines:
        numpy_path = line.rsplit(" from ", 1)[1]
        assert str(Path(numpy_path).resolve()).startswith(site), f"stub numpy outside {site}: {line}"
        assert "numpy 1." in line, f"numpy 2 kills the stub on BYTES inputs: {line}"
