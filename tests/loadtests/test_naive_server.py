"""The naive PyTorch-eager HTTP baseline answers what the served ensemble answers, and refuses what it refuses."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from reelserve.export.quantize import INT8_MIN_COSINE
from reelserve.loadtests.naive_server import NaiveServer
from reelserve.samples import SampleVideo, malformed_videos
from reelserve.triton.errors import ServerStartError

pytestmark = pytest.mark.integration

CAT = SampleVideo("cat", "my cat", "chelsea", "zoom", "h264", caption="NAP TIME")
TITLE = "My cat Chelsea taking a nap"
# Label scores are cosines to the bank's prototypes: the served text tower is int8 (cosine >= 0.995 to fp32,
# docs/decisions.md), the naive server's PyTorch fp32, so they differ by a few thousandths (5.4e-3 measured).
INT8_ATOL = 1e-2


@pytest.fixture(scope="module")
def naive(model_repository: Path):
    with NaiveServer(model_repository) as server:
        yield server


@pytest.fixture(scope="module")
def clip() -> bytes:
    return CAT.render(seconds=2.0)


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_video_features_equal_the_served_ensemble(naive: NaiveServer, client, clip: bytes) -> None:
    status, got = post(naive.url + "/video_features", {"video": base64.b64encode(clip).decode(), "text": TITLE})
    assert status == 200, got
    (served,) = client.video_features([clip], [TITLE])
    assert len(got["embedding"]) == 384
    assert cosine(got["embedding"], served.embedding) >= 0.999
    assert [t for t, _ in got["tags"]] == [t for t, _ in served.tags]
    np.testing.assert_allclose([s for _, s in got["tags"]], [s for _, s in served.tags], atol=1e-3)
    assert tuple(got["semantic_ids"]) == served.semantic_ids
    assert list(got["label_scores"]) == list(served.label_scores)
    np.testing.assert_allclose(list(got["label_scores"].values()), list(served.label_scores.values()), atol=INT8_ATOL)
    assert got["text_truncated"] is False
    assert got["ocr_text"] == served.ocr_text and "NAP" in served.ocr_text  # same OCR, same tokens after the title


def test_text_features_equal_the_served_ensemble(naive: NaiveServer, client) -> None:
    status, got = post(naive.url + "/text_features", {"text": "a kitten sleeping"})
    assert status == 200, got
    (served,) = client.text_features(["a kitten sleeping"])
    assert set(got) == {"embedding", "label_scores", "text_truncated"}
    assert cosine(got["embedding"], served.embedding) >= INT8_MIN_COSINE  # text alone: the int8 graph's bar
    np.testing.assert_allclose(list(got["label_scores"].values()), list(served.label_scores.values()), atol=INT8_ATOL)
    assert max(got["label_scores"], key=got["label_scores"].get) == "a cat"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/video_features", {"video": "not base64!", "text": "t"}, "input 'video': is not valid base64"),
        (
            "/video_features",
            {"video": base64.b64encode(malformed_videos()["random_bytes"]).decode(), "text": "t"},
            "input 'video': not a video container",
        ),
        ("/video_features", {"text": "t"}, "input 'video'"),
        ("/text_features", {"text": "   "}, "input 'text': item 0 is empty"),
        ("/text_features", {"text": "\udc80"}, "input 'text': is not valid UTF-8"),
    ],
    ids=["bad_base64", "random_bytes", "missing_video", "empty_text", "lone_surrogate"],
)
def test_bad_input_is_400_naming_the_field(naive: NaiveServer, path: str, body: dict, message: str) -> None:
    status, got = post(naive.url + path, body)
    assert status == 400 and got["detail"].startswith(message), got


def test_health_and_process(naive: NaiveServer) -> None:
    with urllib.request.urlopen(naive.url + "/healthz", timeout=5) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    assert naive.url.startswith("http://127.0.0.1:") and naive.pid is not None


def test_cli_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "reelserve.loadtests.naive_server", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--model-repository" in out and "--port" in out and "127.0.0.1" in out


def test_a_server_that_dies_says_why(tmp_path: Path) -> None:
    server = NaiveServer(tmp_path / "no_repository", ready_timeout_s=30)
    with pytest.raises(ServerStartError, match=r"(?s)exited before it was ready.*has no heads.npz"):
        server.start()
    assert server.stop() == 2  # argparse's exit status; stopping again is harmless
