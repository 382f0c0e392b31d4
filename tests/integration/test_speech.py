"""Speech through a real tritonserver: the `asr` step of `video_features_full`, on clips narrated by espeak-ng."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from reelserve.client import InvalidArgumentError, VideoFeaturesClient
from reelserve.samples import Audio, corrupt_audio, load_photo, malformed_videos, render_clip, speak
from reelserve.spec import contract as c

pytestmark = pytest.mark.integration

ENGLISH = "Watch the rocket launch into space. Three, two, one, lift off."
SPANISH = "Buenos días. Hoy preparamos un café con leche."
COFFEE = "I make a cup of coffee every morning. Fresh coffee beans, espresso and a hot cappuccino."
SPEECH_DEADLINE_S = 300.0  # Whisper costs seconds per clip; a slow CI machine several times that


@pytest.fixture(scope="module", autouse=True)
def _speech_tools() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("speech is synthesised with espeak-ng, which is not installed (apt-get install espeak-ng)")
    if importlib.util.find_spec("faster_whisper") is None:
        pytest.skip("faster-whisper is not installed (pip install -e '.[asr]')")


def clip(photo: str = "camera", audio: Audio | None = None, codec: str = "h264") -> bytes:
    return render_clip(load_photo(photo), seconds=1.0, fps=8, size=(144, 256), codec=codec, audio=audio)


def converted(audio: Audio, rate: int, layout: str = "mono", seconds: float | None = None) -> Audio:
    """`audio` at another rate (linear interpolation), on every channel of `layout` (5.1: the centre only),
    padded with silence to `seconds`."""
    mono = audio.samples[0]
    n = round(len(mono) * rate / audio.rate)
    mono = np.interp(np.arange(n) * audio.rate / rate, np.arange(len(mono)), mono).astype(np.float32)
    if seconds is not None:
        mono = np.pad(mono, (0, round(seconds * rate) - n))
    channels = {"mono": [0], "stereo": [0, 1], "5.1": [2]}[layout]
    planes = np.zeros(({"mono": 1, "stereo": 2, "5.1": 6}[layout], len(mono)), np.float32)
    planes[channels] = mono
    return Audio(planes, rate, layout)


def noise_and_music(seconds: float = 6.0, rate: int = 44100) -> Audio:
    """A chord over noise: sound, no speech."""
    t = np.arange(round(seconds * rate)) / rate
    chord = sum(0.1 * np.sin(2 * np.pi * hz * t) for hz in (220.0, 277.2, 329.6))
    noise = 0.05 * np.random.default_rng(0).standard_normal(len(t))
    return Audio((chord + noise).astype(np.float32)[None, :], rate)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def hear(client: VideoFeaturesClient, videos: list[bytes], titles: list[str] | None = None):
    return client.video_features(videos, titles, transcribe=True, deadline_s=SPEECH_DEADLINE_S)


def test_english_and_spanish_speech_are_transcribed_with_their_language(client: VideoFeaturesClient) -> None:
    english, spanish = hear(
        client, [clip("rocket", speak(ENGLISH, "en"), "vp8"), clip("coffee", speak(SPANISH, "es"))], ["", "mañana"]
    )
    assert english.asr_language == "en", english.asr_text
    assert "rocket" in english.asr_text.lower() and "launch" in english.asr_text.lower(), english.asr_text
    assert spanish.asr_language == "es", spanish.asr_text
    assert "café" in spanish.asr_text.lower() or "cafe" in spanish.asr_text.lower(), spanish.asr_text


def test_noise_or_music_and_a_clip_without_audio_give_no_transcript(client: VideoFeaturesClient) -> None:
    music, silent = hear(client, [clip("chelsea", noise_and_music()), clip("chelsea")])
    assert (music.asr_text, music.asr_language) == ("", "")
    assert (silent.asr_text, silent.asr_language) == ("", "")


def test_without_speech_the_full_ensemble_answers_as_video_features_does(client: VideoFeaturesClient) -> None:
    video = clip("coffee")
    (plain,) = client.video_features([video], ["my morning"])
    (full,) = hear(client, [video], ["my morning"])
    assert plain.asr_text is None and full.asr_text == ""
    assert cosine(plain.embedding, full.embedding) > 0.9999
    assert (plain.tags, plain.semantic_ids, plain.ocr_text) == (full.tags, full.semantic_ids, full.ocr_text)


def test_speech_about_a_topic_moves_the_embedding_and_labels_toward_it(client: VideoFeaturesClient) -> None:
    silent, spoken = clip("camera"), clip("camera", speak(COFFEE, "en"))
    without, with_speech = hear(client, [silent, spoken])
    assert "coffee" in with_speech.asr_text.lower(), with_speech.asr_text
    (topic,) = client.text_features(["a cup of coffee"])
    before, after = cosine(without.embedding, topic.embedding), cosine(with_speech.embedding, topic.embedding)
    assert after > before + 0.05, (before, after)
    assert with_speech.label_scores["coffee"] > without.label_scores["coffee"] + 0.05
    assert with_speech.semantic_id_version == without.semantic_id_version


def test_every_rate_and_layout_and_a_ten_minute_track_are_transcribed(client: VideoFeaturesClient) -> None:
    speech = speak(ENGLISH, "en")
    variants = [
        converted(speech, 8000),
        converted(speech, 48000, "stereo"),
        converted(speech, 48000, "5.1"),
        converted(speech, 8000, seconds=600.0),  # decoding stops after AsrConfig.max_seconds
    ]
    for out in hear(client, [clip("rocket", audio) for audio in variants]):
        assert out.asr_language == "en" and "rocket" in out.asr_text.lower(), out.asr_text


def test_bad_audio_is_served_without_a_transcript_and_no_video_is_refused(client: VideoFeaturesClient) -> None:
    corrupt = bytearray(clip("chelsea", noise_and_music(2.0, 48000), codec="vp9"))
    at = corrupt.index(b"A_OPUS")  # the codec id of the sound track: a codec FFmpeg does not know
    corrupt[at : at + 6] = b"A_ZZZZ"
    garbled = corrupt_audio(clip("chelsea", speak(ENGLISH, "en")))  # AAC packets of random bytes
    for out in hear(client, [bytes(corrupt), garbled]):
        assert (out.asr_text, out.asr_language) == ("", "")
        assert out.tags[0][0] in ("Egyptian cat", "tabby", "tiger cat")  # the video itself was read
    with pytest.raises(InvalidArgumentError, match="video"):
        hear(client, [malformed_videos()["audio_only"]])


def test_raw_tritonclient_gets_the_speech_outputs_and_invalid_argument(tritonserver) -> None:
    """The wire contract as a non-SDK caller sees it: two string outputs; a refusal names the input."""
    raw = grpcclient.InferenceServerClient(tritonserver.grpc_url)

    def call(video: bytes):
        tensors = []
        for name, value in ((c.VIDEO.name, video), (c.TEXT.name, b"")):
            t = grpcclient.InferInput(name, [1, 1], "BYTES")
            t.set_data_from_numpy(np.array([[value]], dtype=object))
            tensors.append(t)
        return raw.infer(c.VIDEO_FEATURES_FULL, tensors, client_timeout=SPEECH_DEADLINE_S)

    result = call(clip("chelsea"))
    assert result.as_numpy(c.ASR_TEXT.name).tolist() == [[b""]]
    assert result.as_numpy(c.ASR_LANGUAGE.name).tolist() == [[b""]]
    with pytest.raises(InferenceServerException) as refused:
        call(b"not a video")
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT" and "video" in refused.value.message()
    raw.close()
