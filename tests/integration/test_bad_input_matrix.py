"""Every kind of bad input, through the real server, with the raw tritonclient (no SDK checks first).

Each bad request gets INVALID_ARGUMENT with a message naming the input and, where there is one,
the limit; requests beside it in the same dynamic batch still succeed; the server stays ready.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from reelserve.config import DEFAULT
from reelserve.samples import encode_frames, load_photo, malformed_videos, render_clip
from reelserve.spec import contract as c

pytestmark = pytest.mark.integration
TIMEOUT_S = 120.0  # generous: nothing here may hang, and a client deadline would cancel the RPC
V, T = DEFAULT.video, DEFAULT.text


def _bytes(name: str, items: list[bytes], shape: list[int] | None = None) -> grpcclient.InferInput:
    data = np.array(items, dtype=object).reshape(shape or [len(items), 1])
    tensor = grpcclient.InferInput(name, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor


def _numeric(name: str, array: np.ndarray, datatype: str) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


@dataclass(frozen=True)
class Case:
    model: str
    inputs: Callable[[], list[grpcclient.InferInput]]
    names: tuple[str, ...]  # what the error message must contain (the input, the limit)


@pytest.fixture(scope="module")
def good_clip() -> bytes:
    return render_clip(load_photo("coffee"), seconds=1, fps=8, size=(128, 128), motion="zoom")


def _video_case(video: bytes, *names: str) -> Case:
    return Case(c.VIDEO_FEATURES, lambda: [_bytes("video", [video]), _bytes("text", [b"title"])], ("'video'", *names))


def _no_decodable_frames() -> bytes:
    """A real mp4 whose video stream is intact in the header but whose packets are all zeros."""
    clip = bytearray(render_clip(load_photo("coffee")[:64, :64], seconds=0.5, fps=8, size=(64, 64), motion="still"))
    at = clip.find(b"mdat")
    size = int.from_bytes(clip[at - 4 : at], "big")
    clip[at + 4 : at - 4 + size] = bytes(size - 8)
    return bytes(clip)


def _cases() -> dict[str, Case]:
    bad = malformed_videos()
    bomb = encode_frames([np.zeros((4112, 4112, 3), np.uint8)], fps=1)  # 4.6 KiB, 16.9 Mpx per frame
    long_video = encode_frames(
        (np.full((16, 16, 3), i % 251, np.uint8) for i in range(V.max_decoded_frames + 5)), fps=30
    )
    text = lambda *items: lambda: [_bytes("text", list(items))]  # noqa: E731
    return {
        "empty_video": _video_case(bad["empty"], "empty"),
        "random_bytes": _video_case(bad["random_bytes"], "not a video container"),
        "truncated_mp4": _video_case(bad["truncated_mp4"]),
        "png_not_video": _video_case(bad["png_image"]),
        "audio_only_no_video_stream": _video_case(bad["audio_only"], "video stream"),
        "zero_decodable_frames": _video_case(_no_decodable_frames(), "no decodable frames"),
        "decompression_bomb": _video_case(bomb, "4112x4112", str(V.max_source_pixels)),
        "too_many_frames": _video_case(long_video, str(V.max_decoded_frames)),
        "video_over_byte_cap": _video_case(b"\x00" * (V.max_video_bytes + 1), str(V.max_video_bytes)),
        "video_as_int32": Case(
            c.VIDEO_FEATURES,
            lambda: [_numeric("video", np.zeros((1, 1), np.int32), "INT32"), _bytes("text", [b"t"])],
            ("video", "INT32"),
        ),
        "text_wrong_rank": Case(c.TEXT_FEATURES, lambda: [_bytes("text", [b"a", b"b"], [1, 2])], ("text",)),
        "empty_text": Case(c.TEXT_FEATURES, text(b"   "), ("'text'", "empty")),
        "non_utf8_text": Case(c.TEXT_FEATURES, text(b"\xff\xfe caf\xe9"), ("'text'", "UTF-8")),
        "text_over_byte_cap": Case(
            c.TEXT_FEATURES, text(b"a" * (T.max_text_bytes + 1)), ("'text'", str(T.max_text_bytes))
        ),
        "batch_over_max": Case(
            c.TEXT_FEATURES,
            text(*[b"t"] * (DEFAULT.batching.max_batch_size + 1)),
            (str(DEFAULT.batching.max_batch_size),),
        ),
        "missing_text": Case(c.VIDEO_FEATURES, lambda: [_bytes("video", [bad["random_bytes"]])], ("text",)),
        "missing_video": Case(c.VIDEO_FEATURES, text(b"only a title"), ("video",)),
        "video_and_text_batch_differ": Case(
            c.VIDEO_FEATURES, lambda: [_bytes("video", [b"x", b"y"]), _bytes("text", [b"t"])], ("'video'", "batch size")
        ),
    }


CASES = _cases()


def _infer(url: str, model: str, inputs: list[grpcclient.InferInput]):
    client = grpcclient.InferenceServerClient(url)
    try:
        return client.infer(model, inputs, client_timeout=TIMEOUT_S)
    finally:
        client.close()


def _refusal(url: str, case: Case) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        _infer(url, case.model, case.inputs())
    return info.value


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_invalid_argument_naming_input_and_limit(tritonserver, name: str) -> None:
    error = _refusal(tritonserver.grpc_url, CASES[name])
    print(f"\n{name}: {error.status()} {error.message()}")
    assert error.status() == "StatusCode.INVALID_ARGUMENT", (name, error.status(), error.message())
    for part in CASES[name].names:
        assert part in error.message(), (name, part, error.message())


def test_a_one_frame_video_is_served(tritonserver) -> None:
    one = render_clip(load_photo("coffee"), seconds=1 / 8, fps=8, size=(96, 96), motion="still")
    result = _infer(tritonserver.grpc_url, c.VIDEO_FEATURES, [_bytes("video", [one]), _bytes("text", [b""])])
    assert abs(float(np.linalg.norm(result.as_numpy(c.EMBEDDING.name)[0])) - 1) < 1e-4


def test_text_over_the_token_limit_is_truncated_and_flagged_not_refused(tritonserver) -> None:
    result = _infer(tritonserver.grpc_url, c.TEXT_FEATURES, [_bytes("text", [b"word " * (4 * T.max_tokens), b"short"])])
    assert result.as_numpy(c.TEXT_TRUNCATED.name).ravel().tolist() == [True, False]


def test_bad_neighbours_never_fail_good_requests_in_the_same_batch(tritonserver, good_clip: bytes) -> None:
    bad = [
        "random_bytes",
        "decompression_bomb",
        "png_not_video",
        "non_utf8_text",
        "empty_text",
        "audio_only_no_video_stream",
    ]
    good = Case(c.VIDEO_FEATURES, lambda: [_bytes("video", [good_clip]), _bytes("text", [b"espresso"])], ())
    plan = [good if i % 2 == 0 else CASES[bad[(i // 2) % len(bad)]] for i in range(24)]

    def send(case: Case) -> str:
        try:
            result = _infer(tritonserver.grpc_url, case.model, case.inputs())
        except InferenceServerException as e:
            return e.status()
        norm = float(np.linalg.norm(result.as_numpy(c.EMBEDDING.name)[0]))
        return "ok" if abs(norm - 1) < 1e-4 else f"bad norm {norm}"

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(send, plan))
    assert outcomes == ["ok" if case is good else "StatusCode.INVALID_ARGUMENT" for case in plan], outcomes


def test_server_and_models_ready_after_the_matrix(tritonserver) -> None:
    client = grpcclient.InferenceServerClient(tritonserver.grpc_url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        for model in (
            c.PREPROCESS,
            c.VISION_ENCODER,
            c.TEXT_ENCODER,
            c.FUSION_HEADS,
            c.VIDEO_FEATURES,
            c.TEXT_FEATURES,
        ):
            assert client.is_model_ready(model), model
    finally:
        client.close()
    assert len(tritonserver.stub_processes()) >= 4  # no stub died on the way
