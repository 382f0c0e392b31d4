"""The python-backend steps on the exported repository, without Triton: batching is invisible per request,
and one bad request never fails its neighbours."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from reelserve.config import DEFAULT
from reelserve.export.repository import read_step_settings
from reelserve.samples import load_photo, malformed_videos, render_clip
from reelserve.serving import steps as s
from reelserve.serving.errors import InvalidInputError
from reelserve.spec import contract as c
from reelserve.spec.topology import STEP_SECTIONS


def _step(repo: Path, name: str, cls: type[s.Step]) -> s.Step:
    return cls(read_step_settings(repo / name), repo / name / "1")


@pytest.fixture(scope="module")
def vision(model_repository) -> s.VisionEncoderStep:
    return _step(model_repository, c.VISION_ENCODER, s.VisionEncoderStep)


@pytest.fixture(scope="module")
def text_encoder(model_repository) -> s.TextEncoderStep:
    return _step(model_repository, c.TEXT_ENCODER, s.TextEncoderStep)


@pytest.fixture(scope="module")
def preprocess(model_repository) -> s.PreprocessStep:
    return _step(model_repository, c.PREPROCESS, s.PreprocessStep)


@pytest.fixture(scope="module")
def heads(model_repository) -> s.FusionHeadsStep:
    return _step(model_repository, c.FUSION_HEADS, s.FusionHeadsStep)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    from skimage.transform import resize

    return [
        (resize(load_photo(n), (224, 224), anti_aliasing=True) * 255).astype(np.uint8)
        for n in ("chelsea", "coffee", "astronaut", "rocket")
    ]


@pytest.fixture(scope="module")
def good_video() -> bytes:
    return render_clip(load_photo("chelsea"), seconds=1.0, fps=8, size=(144, 256))


def _ok(result) -> dict[str, np.ndarray]:
    assert not isinstance(result, InvalidInputError), f"unexpected refusal: {result}"
    return result


def _texts(preprocess: s.PreprocessStep, *texts: str) -> dict[str, np.ndarray]:
    """Token ids and mask exactly as the preprocess step makes them, and the bank version it pins (no bank asked)."""
    ids, mask, _ = preprocess.tokenizer.encode([t.encode() for t in texts])
    return {
        c.INPUT_IDS.name: ids,
        c.ATTENTION_MASK.name: mask,
        c.LABEL_BANK_VERSION.name: preprocess.pin_bank(None, len(texts)),
    }


def _clip_request(photos, mask: list[bool], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(1, len(mask), 224, 224, 3), dtype=np.uint8)  # padded frames: garbage
    for j, real in enumerate(mask):
        if real:
            frames[0, j] = photos[(j + seed) % len(photos)]
    return {c.FRAMES.name: frames, c.FRAME_MASK.name: np.array([mask])}


# --- vision_encoder ---------------------------------------------------------------------------


def test_vision_batched_requests_equal_alone(vision, photos) -> None:
    a = _clip_request(photos, [True, True, False, False], seed=0)
    b = _clip_request(photos, [True, False, True, True], seed=1)
    together = [_ok(r)[c.FRAME_LOGITS.name] for r in vision.run([a, b])]
    alone = [_ok(vision.run([r])[0])[c.FRAME_LOGITS.name] for r in (a, b)]
    for i, (got, want, req) in enumerate(zip(together, alone, (a, b), strict=True)):
        assert got.shape == (1, 4, 1000) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=f"request {i}")
        mask = req[c.FRAME_MASK.name]
        assert np.all(got[~mask] == 0.0), f"request {i}: padded frames must carry exact zeros"
        assert np.all(np.abs(got[mask]).max(axis=-1) > 1.0), f"request {i}: real frames have real logits"


def test_vision_matches_torch_tower(vision, photos) -> None:
    from reelserve.models.vision_tower import load_efficientnet_lite0

    req = _clip_request(photos, [True, True, True], seed=0)
    got = _ok(vision.run([req])[0])[c.FRAME_LOGITS.name][0]
    with torch.no_grad():
        want = load_efficientnet_lite0()(torch.from_numpy(req[c.FRAMES.name][0])).numpy()
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-3)


def test_vision_all_padding_request(vision, photos) -> None:
    empty = {c.FRAMES.name: np.zeros((1, 3, 224, 224, 3), np.uint8), c.FRAME_MASK.name: np.zeros((1, 3), bool)}
    results = vision.run([empty, _clip_request(photos, [True, False, False], seed=2)])
    assert np.all(_ok(results[0])[c.FRAME_LOGITS.name] == 0)
    assert np.abs(_ok(results[1])[c.FRAME_LOGITS.name][0, 0]).max() > 1.0


# --- text_encoder -----------------------------------------------------------------------------


def test_text_ragged_batching(text_encoder, preprocess) -> None:
    requests = [
        _texts(preprocess, "a cat"),
        _texts(preprocess, "a much longer title about a rocket launch seen from the beach at night", "猫"),
        _texts(preprocess, "Café de la mañana ☕"),
    ]
    lengths = [r[c.INPUT_IDS.name].shape[1] for r in requests]
    assert len(set(lengths)) == 3, f"want different token lengths, got {lengths}"
    feeds = [{k: r[k] for k in (c.INPUT_IDS.name, c.ATTENTION_MASK.name)} for r in requests]
    together = [_ok(r)[c.TEXT_VECTOR.name] for r in text_encoder.run(feeds)]
    for i, (req, got) in enumerate(zip(feeds, together, strict=True)):
        want = _ok(text_encoder.run([req])[0])[c.TEXT_VECTOR.name]
        assert got.shape == (req[c.INPUT_IDS.name].shape[0], 384), f"request {i}: {got.shape}"
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5, err_msg=f"request {i}")  # padding is pooled out
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_length_runs_cover_every_row_once_shortest_first() -> None:
    lengths = np.array([30, 2, 0, 7, 7, 3, 12, 2, 30, 5])
    runs = s.length_runs(lengths, tokens_per_run=16)
    assert sorted(np.concatenate(runs).tolist()) == list(range(len(lengths)))
    longest = [int(lengths[r].max()) for r in runs]
    assert longest == sorted(longest)  # a run never holds a row longer than the next run's shortest
    for r in runs[:-1]:
        assert len(r) * max(int(lengths[r].max()), 1) >= 16  # only the last run may be short of the budget
        assert len(r) == 1 or (len(r) - 1) * max(int(lengths[r[:-1]].max()), 1) < 16  # and none overshoots by a row
    assert s.length_runs(np.array([], dtype=np.int64)) == []


def test_text_runs_pad_only_to_their_own_longest_and_give_each_text_its_vector_alone(
    text_encoder, preprocess, monkeypatch
) -> None:
    """A batch of comments of mixed lengths: fewer padded tokens than one call padded to the longest,
    and every vector as the graph gives that text with no padding at all."""
    from reelserve.samples import comments

    texts = comments(24, seed=3) + [""]
    requests = [_texts(preprocess, *texts[i : i + 5]) for i in range(0, len(texts), 5)]
    feeds = [{k: r[k] for k in (c.INPUT_IDS.name, c.ATTENTION_MASK.name)} for r in requests]
    fed: list[tuple[int, int]] = []
    session_run = text_encoder.session.run

    def counting_run(names, inputs):
        fed.append(inputs[c.INPUT_IDS.name].shape)
        return session_run(names, inputs)

    monkeypatch.setattr(text_encoder.session, "run", counting_run)
    got = np.concatenate([_ok(r)[c.TEXT_VECTOR.name] for r in text_encoder.run(feeds)])
    monkeypatch.undo()
    width = max(f[c.INPUT_IDS.name].shape[1] for f in feeds)
    assert len(fed) > 1 and sum(rows * cols for rows, cols in fed) < len(texts) * width, fed
    row = 0
    for f in feeds:
        for ids, mask in zip(f[c.INPUT_IDS.name], f[c.ATTENTION_MASK.name], strict=True):
            n = max(int(mask.sum()), 1)
            alone = {c.INPUT_IDS.name: ids[None, :n], c.ATTENTION_MASK.name: mask[None, :n]}
            (want,) = text_encoder.session.run([c.TEXT_VECTOR.name], alone)
            np.testing.assert_allclose(got[row], want[0], atol=1e-5, rtol=1e-5, err_msg=f"text {row}: {texts[row]!r}")
            row += 1
    np.testing.assert_array_equal(got[-1], 0.0)  # the empty text, in a run with others, is still "no text"


def test_text_with_no_tokens_is_the_zero_vector(text_encoder) -> None:
    """An empty title (video_features) has no tokens; the heads read the zero vector as "no text"."""
    empty = {c.INPUT_IDS.name: np.zeros((1, 2), np.int64), c.ATTENTION_MASK.name: np.zeros((1, 2), np.int64)}
    np.testing.assert_array_equal(_ok(text_encoder.run([empty])[0])[c.TEXT_VECTOR.name], 0.0)


# --- fusion_heads -----------------------------------------------------------------------------


def _heads_input(preprocess, text_encoder, *texts: str) -> dict[str, np.ndarray]:
    tok = _texts(preprocess, *texts)
    vector = _ok(text_encoder.run([{k: tok[k] for k in (c.INPUT_IDS.name, c.ATTENTION_MASK.name)}])[0])
    return {
        c.TEXT_VECTOR.name: vector[c.TEXT_VECTOR.name],
        c.LABEL_BANK_VERSION.name: tok[c.LABEL_BANK_VERSION.name],  # pinned by preprocess
    }


def test_heads_text_features_path_equals_text_only(heads, preprocess, text_encoder, model_repository) -> None:
    from reelserve.models.heads import load_fusion_heads

    text = _heads_input(preprocess, text_encoder, "my cat Chelsea napping on the sofa")
    no_frames = {**text, c.FRAME_LOGITS.name: None, c.FRAME_MASK.name: None}
    masked_frames = {
        **text,
        c.FRAME_LOGITS.name: np.random.default_rng(0).normal(size=(1, 8, 1000)).astype(np.float32) * 50,
        c.FRAME_MASK.name: np.zeros((1, 8), bool),
    }
    got_none, got_masked = (_ok(r) for r in heads.run([no_frames, masked_frames]))
    np.testing.assert_allclose(got_none[c.EMBEDDING.name], got_masked[c.EMBEDDING.name], atol=1e-6)
    np.testing.assert_allclose(got_none[c.LABEL_SCORES.name], got_masked[c.LABEL_SCORES.name], atol=1e-6)

    # independent of the step: the exported heads in PyTorch, text only
    torch_heads, _ = load_fusion_heads(model_repository / c.FUSION_HEADS / "1")
    with torch.no_grad():
        want = torch_heads(
            torch.zeros(1, 1, 1000),
            torch.zeros(1, 1, dtype=torch.bool),
            torch.from_numpy(text[c.TEXT_VECTOR.name]),
        )
    np.testing.assert_allclose(got_none[c.EMBEDDING.name], want.embedding.numpy(), atol=1e-5)
    # the exported default bank (`default/0`) scores as the PyTorch heads' label bank does
    names = [n.decode() for n in got_none[c.LABEL_NAMES.name][0]]
    assert names == list(DEFAULT.heads.labels)
    np.testing.assert_allclose(got_none[c.LABEL_SCORES.name], want.label_scores.numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got_none[c.EMBEDDING.name], axis=1), 1.0, atol=1e-5)
    assert got_none[c.SEMANTIC_IDS.name].dtype == np.int32
    np.testing.assert_array_equal(got_none[c.SEMANTIC_IDS.name], want.semantic_ids.numpy())


def _token_count(preprocess: s.PreprocessStep, text: str) -> int:
    """What the served tower's own tokenizer gives (specials and the tower's prefix included)."""
    return int(preprocess.tokenizer.encode([text])[1].sum())


def test_text_features_empty_text_refused_alone(preprocess) -> None:
    """Without a video (text_features), empty text is refused by preprocess, before the fan-out."""
    results = preprocess.run(
        [
            {c.TEXT.name: np.array([[b"  "]], dtype=object)},
            {c.TEXT.name: np.array([[b"a rocket launch"]], dtype=object)},
        ]
    )
    assert isinstance(results[0], InvalidInputError), results[0]
    assert results[0].field == "text" and "empty" in results[0].message
    assert _ok(results[1])[c.ATTENTION_MASK.name].sum() == _token_count(preprocess, "a rocket launch")


def test_video_features_allows_empty_title(preprocess, good_video) -> None:
    out = _ok(
        preprocess.run(
            [{c.VIDEO.name: np.array([[good_video]], dtype=object), c.TEXT.name: np.array([[b""]], dtype=object)}]
        )[0]
    )
    assert not out[c.ATTENTION_MASK.name].any() and out[c.FRAME_MASK.name].all()


def test_heads_video_and_text_requests_batch_together(heads, vision, photos, preprocess, text_encoder) -> None:
    clip = _clip_request(photos, [True, True, True, False, False, False, False, False], seed=0)
    logits = _ok(vision.run([clip])[0])[c.FRAME_LOGITS.name]
    video_req = {
        **_heads_input(preprocess, text_encoder, "my cat"),
        c.FRAME_LOGITS.name: logits,
        c.FRAME_MASK.name: clip[c.FRAME_MASK.name],
    }
    text_req = {
        **_heads_input(preprocess, text_encoder, "a much longer title about outer space and rockets"),
        c.FRAME_LOGITS.name: None,
        c.FRAME_MASK.name: None,
    }
    together = [_ok(r) for r in heads.run([video_req, text_req])]
    for req, got in zip((video_req, text_req), together, strict=True):
        want = _ok(heads.run([req])[0])
        for name in (c.EMBEDDING.name, c.TAG_SCORES.name, c.LABEL_SCORES.name):
            np.testing.assert_allclose(got[name], want[name], atol=1e-5, err_msg=name)
        np.testing.assert_array_equal(got[c.SEMANTIC_IDS.name], want[c.SEMANTIC_IDS.name])
        np.testing.assert_array_equal(got[c.TAGS.name], want[c.TAGS.name])
    tags = [t.decode() for t in together[0][c.TAGS.name][0]]
    assert any("cat" in t or "tabby" in t or "Egyptian" in t for t in tags), tags


# --- preprocess -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(malformed_videos()))
def test_preprocess_bad_video_beside_good(preprocess, good_video, kind: str) -> None:
    bad = malformed_videos()[kind]
    title = np.array([[b"title"]], dtype=object)
    results = preprocess.run(
        [
            {c.VIDEO.name: np.array([[good_video]], dtype=object), c.TEXT.name: title},
            {c.VIDEO.name: np.array([[bad]], dtype=object), c.TEXT.name: title},
            {c.VIDEO.name: np.array([[good_video]], dtype=object), c.TEXT.name: title},
        ]
    )
    assert isinstance(results[1], InvalidInputError), f"{kind}: {results[1]!r}"
    assert results[1].field == "video"
    for r in (results[0], results[2]):
        out = _ok(r)
        assert out[c.FRAMES.name].shape == (1, 8, 224, 224, 3) and out[c.FRAMES.name].dtype == np.uint8
        assert out[c.FRAME_MASK.name].shape == (1, 8) and out[c.FRAME_MASK.name].all()
        assert out[c.FRAMES.name].std() > 10
    np.testing.assert_array_equal(_ok(results[0])[c.FRAMES.name], _ok(results[2])[c.FRAMES.name])


def test_preprocess_bad_utf8_beside_good(preprocess) -> None:
    results = preprocess.run(
        [{c.TEXT.name: np.array([[b"ok \xff"]], dtype=object)}, {c.TEXT.name: np.array([[b"a cat"]], dtype=object)}]
    )
    assert isinstance(results[0], InvalidInputError) and results[0].field == "text"
    assert _ok(results[1])[c.ATTENTION_MASK.name].sum() == _token_count(preprocess, "a cat")


# --- ocr --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ocr(model_repository) -> s.OcrStep:
    return _step(model_repository, c.OCR, s.OcrStep)


def _captioned(photo: str, caption: str, size: tuple[int, int] = (288, 512)) -> bytes:
    return render_clip(load_photo(photo), seconds=1.0, fps=8, size=size, caption=caption)


def _ocr_request(preprocess: s.PreprocessStep, videos: list[bytes], titles: list[str]) -> dict[str, np.ndarray]:
    """preprocess -> ocr exactly as the video_features ensemble wires them."""
    out = _ok(
        preprocess.run(
            [
                {
                    c.VIDEO.name: np.array([[v] for v in videos], dtype=object),
                    c.TEXT.name: np.array([[t.encode()] for t in titles], dtype=object),
                }
            ]
        )[0]
    )
    return {
        c.TEXT.name: np.array([[t.encode()] for t in titles], dtype=object),
        c.TEXT_FRAMES.name: out[c.TEXT_FRAMES.name],
        c.TEXT_FRAME_SIZES.name: out[c.TEXT_FRAME_SIZES.name],
    }


def test_pack_text_frames_round_trips_mixed_sizes() -> None:
    from reelserve.serving.video_decode import DecodedVideo

    rng = np.random.default_rng(0)
    a = [rng.integers(0, 256, (40, 30, 3), dtype=np.uint8), rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)]
    b = [rng.integers(0, 256, (20, 70, 3), dtype=np.uint8)]  # a short clip: one whole frame
    clips = [DecodedVideo(np.zeros(0), np.zeros(0), fs) for fs in (a, b, [])]
    packed, sizes = s.pack_text_frames(clips, 2)
    assert packed.shape == (3, 2, 40, 70, 3) and sizes.dtype == np.int32
    assert sizes.tolist() == [[[40, 30], [40, 30]], [[20, 70], [0, 0]], [[0, 0], [0, 0]]]
    back = s.unpack_text_frames(packed, sizes)
    assert [len(x) for x in back] == [2, 1, 0]
    for got, want in zip([*back[0], *back[1]], [*a, *b], strict=True):
        np.testing.assert_array_equal(got, want)
    off, off_sizes = s.pack_text_frames(clips, 0)  # OCR off: one empty slot, no zero-sized dimension
    assert off.shape == (3, 1, 1, 1, 3) and not off_sizes.any()


def test_preprocess_hands_ocr_its_configured_frames(preprocess, ocr) -> None:
    req = _ocr_request(
        preprocess, [_captioned("coffee", "FRESH COFFEE"), _captioned("chelsea", "", (128, 96))], ["", ""]
    )
    frames, sizes = req[c.TEXT_FRAMES.name], req[c.TEXT_FRAME_SIZES.name]
    assert frames.shape == (2, 2, 512, 288, 3) and frames.dtype == np.uint8
    assert sizes.tolist() == [[[512, 288]] * 2, [[96, 128]] * 2]
    assert preprocess.ocr.frames == ocr.ocr.frames == 2


def test_ocr_reads_printed_text_and_tokenizes_it_after_the_title(preprocess, ocr) -> None:
    videos = [_captioned("coffee", "FRESH COFFEE\nonly $3.50 today"), _captioned("chelsea", "")]
    titles = ["Café de la mañana", "my cat"]
    out = _ok(ocr.run([_ocr_request(preprocess, videos, titles)])[0])
    printed = [t.decode() for t in out[c.OCR_TEXT.name][:, 0]]
    assert printed == ["FRESH COFFEE\nonly $3.50 today", ""]
    want_ids, want_mask, _ = preprocess.tokenizer.encode(
        ["Café de la mañana\nFRESH COFFEE\nonly $3.50 today".encode(), b"my cat"]
    )
    np.testing.assert_array_equal(out[c.INPUT_IDS.name], want_ids)
    np.testing.assert_array_equal(out[c.ATTENTION_MASK.name], want_mask)


def test_ocr_printed_text_alone_when_there_is_no_title(preprocess, ocr) -> None:
    out = _ok(ocr.run([_ocr_request(preprocess, [_captioned("rocket", "LAUNCH DAY")], [""])])[0])
    assert out[c.OCR_TEXT.name][0, 0] == b"LAUNCH DAY"
    want_ids, _, _ = preprocess.tokenizer.encode([b"LAUNCH DAY"])
    np.testing.assert_array_equal(out[c.INPUT_IDS.name], want_ids)


def test_ocr_long_title_keeps_the_title_and_cuts_printed_text(preprocess, ocr) -> None:
    title = " ".join(["word"] * 400)
    out = _ok(ocr.run([_ocr_request(preprocess, [_captioned("coffee", "FRESH COFFEE")], [title])])[0])
    title_ids, _, truncated = preprocess.tokenizer.encode([title.encode()])
    assert truncated[0]
    np.testing.assert_array_equal(out[c.INPUT_IDS.name], title_ids)  # the title's tokens, all of the budget


def test_ocr_off_gives_empty_text_and_the_title_tokens(model_repository, preprocess) -> None:
    settings = read_step_settings(model_repository / c.OCR)
    settings["ocr"] = replace(settings["ocr"], frames=0)
    off = s.OcrStep(settings, model_repository / c.OCR / "1")
    out = _ok(off.run([_ocr_request(preprocess, [_captioned("coffee", "FRESH COFFEE")], ["my coffee"])])[0])
    assert off.reader is None and out[c.OCR_TEXT.name][0, 0] == b""
    np.testing.assert_array_equal(out[c.INPUT_IDS.name], preprocess.tokenizer.encode([b"my coffee"])[0])


def test_ocr_reads_every_request_of_a_batch_together_and_answers_each(preprocess, ocr, monkeypatch) -> None:
    a = _ocr_request(preprocess, [_captioned("coffee", "FRESH COFFEE"), _captioned("chelsea", "")], ["a", "b"])
    b = _ocr_request(preprocess, [_captioned("rocket", "LAUNCH DAY")], ["c"])
    alone = [_ok(ocr.run([r])[0]) for r in (a, b)]
    calls: list[int] = []
    original = ocr.reader.read_frames
    monkeypatch.setattr(ocr.reader, "read_frames", lambda frames: calls.append(len(frames)) or original(frames))
    together = [_ok(r) for r in ocr.run([a, b])]
    assert calls == [6]  # the frames of all three clips in one read
    assert [t[c.OCR_TEXT.name][:, 0].tolist() for t in together] == [[b"FRESH COFFEE", b""], [b"LAUNCH DAY"]]
    for got, want in zip(together, alone, strict=True):
        for name in (c.OCR_TEXT.name, c.INPUT_IDS.name, c.ATTENTION_MASK.name):
            np.testing.assert_array_equal(got[name], want[name])


def test_ocr_failure_is_logged_and_never_refuses(ocr, preprocess, monkeypatch, caplog) -> None:
    """A clip that breaks the reader loses its printed text; the other clips of the batch keep theirs."""
    req = _ocr_request(
        preprocess, [_captioned("coffee", "FRESH COFFEE"), _captioned("chelsea", "", (128, 96))], ["", ""]
    )
    original = ocr.reader.read_frames
    monkeypatch.setattr(
        ocr.reader, "read_frames", lambda frames: 1 / 0 if any(f.shape[1] == 128 for f in frames) else original(frames)
    )
    out = _ok(ocr.run([req])[0])
    assert out[c.OCR_TEXT.name][:, 0].tolist() == [b"FRESH COFFEE", b""]
    assert "OCR failed" in caplog.text and "ZeroDivisionError" in caplog.text


# --- asr --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asr(model_repository) -> s.AsrStep:
    return _step(model_repository, c.ASR, s.AsrStep)


def _asr_request(videos: list[bytes], titles: list[str], printed: list[str]) -> dict[str, np.ndarray]:
    """What `video_features_full` hands `asr`: the upload, its title and `ocr`'s text."""
    return {
        c.VIDEO.name: np.array([[v] for v in videos], dtype=object),
        c.TEXT.name: np.array([[t.encode()] for t in titles], dtype=object),
        c.OCR_TEXT.name: np.array([[p.encode()] for p in printed], dtype=object),
    }


def test_asr_tokenizes_title_then_printed_text_then_speech(asr, preprocess) -> None:
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("speech is synthesised with espeak-ng, which is not installed (apt-get install espeak-ng)")
    from reelserve.samples import speak

    narrated = render_clip(load_photo("coffee"), seconds=1.0, fps=8, size=(144, 256), audio=speak("A cup of coffee."))
    out = _ok(asr.run([_asr_request([narrated, good_video_bytes()], ["my title", ""], ["FRESH COFFEE", ""])])[0])
    spoken = out[c.ASR_TEXT.name][0, 0].decode()
    assert "coffee" in spoken.lower() and out[c.ASR_LANGUAGE.name][0, 0] == b"en"
    assert out[c.ASR_TEXT.name][1, 0] == out[c.ASR_LANGUAGE.name][1, 0] == b""  # no audio track
    want_ids, want_mask, _ = preprocess.tokenizer.encode([f"my title\nFRESH COFFEE\n{spoken}".encode(), b""])
    np.testing.assert_array_equal(out[c.INPUT_IDS.name], want_ids)
    np.testing.assert_array_equal(out[c.ATTENTION_MASK.name], want_mask)


def good_video_bytes() -> bytes:
    return render_clip(load_photo("chelsea"), seconds=1.0, fps=8, size=(144, 256))


def test_asr_failure_is_logged_and_never_refuses(asr, preprocess, monkeypatch, caplog) -> None:
    monkeypatch.setattr(asr.transcriber, "_run", lambda audio, start: 1 / 0)
    out = _ok(asr.run([_asr_request([good_video_bytes()], ["my cat"], ["HELLO"])])[0])
    assert out[c.ASR_TEXT.name][0, 0] == out[c.ASR_LANGUAGE.name][0, 0] == b""
    assert "ASR failed: ZeroDivisionError" in caplog.text
    np.testing.assert_array_equal(out[c.INPUT_IDS.name], preprocess.tokenizer.encode([b"my cat\nHELLO"])[0])


def test_asr_of_bytes_that_are_no_container_gives_no_text(asr) -> None:
    out = _ok(asr.run([_asr_request([b"not a container", b""], ["a", "b"], ["", ""])])[0])
    assert out[c.ASR_TEXT.name].tolist() == [[b""], [b""]]


def test_every_step_loads_with_the_settings_the_export_wrote(preprocess, vision, ocr, asr, text_encoder, heads) -> None:
    for step in (preprocess, vision, ocr, asr, text_encoder, heads):
        assert step.settings == {name: getattr(DEFAULT, name) for name in STEP_SECTIONS[step.name]}, step.name
    assert vision.max_frames_per_run == DEFAULT.encoder.max_frames_per_run


# --- label banks ------------------------------------------------------------------------------


def _with_bank(*banks: bytes) -> dict[str, np.ndarray]:
    texts = np.array([[b"a cat"]] * len(banks), dtype=object)
    return {c.TEXT.name: texts, c.LABEL_BANK.name: np.array([[b] for b in banks], dtype=object)}


def test_preprocess_pins_the_default_bank_when_none_is_named(preprocess) -> None:
    (out,) = preprocess.run([{c.TEXT.name: np.array([[b"a cat"], [b"coffee"]], dtype=object)}])
    assert _ok(out)[c.LABEL_BANK_VERSION.name].tolist() == [[b"default/0"], [b"default/0"]]
    (named,) = preprocess.run([_with_bank(b"default", b"default")])
    assert _ok(named)[c.LABEL_BANK_VERSION.name].tolist() == [[b"default/0"], [b"default/0"]]


@pytest.mark.parametrize(
    "banks, message",
    [
        ((b"no-such-bank",), "unknown label bank 'no-such-bank'"),
        ((b"default", b"topics"), "names 2 banks"),
        ((b"\xff\xfe",), "not valid UTF-8"),
        ((b"../etc",), "unknown label bank"),
    ],
)
def test_preprocess_refuses_a_bad_label_bank_beside_a_good_request(preprocess, banks, message: str) -> None:
    bad, good = preprocess.run([_with_bank(*banks), _with_bank(b"default")])
    assert isinstance(bad, InvalidInputError) and bad.field == "label_bank" and message in bad.message, bad
    assert _ok(good)[c.LABEL_BANK_VERSION.name].tolist() == [[b"default/0"]]


def test_preprocess_refuses_a_label_bank_per_item_count_mismatch(preprocess) -> None:
    request = {
        c.TEXT.name: np.array([[b"a"], [b"b"]], dtype=object),
        c.LABEL_BANK.name: np.array([[b"default"]], dtype=object),
    }
    (result,) = preprocess.run([request])
    assert isinstance(result, InvalidInputError) and "has 1 items but 'text' has 2" in result.message
