"""Real short videos made from real photos, rendered in memory.

Demos, tests and load tests need video bytes that look like what users upload (portrait, a
slow camera move, h264 or VP9) without shipping binary files or touching the network, so we
render them from the photos that scikit-image bundles, with a Ken-Burns pan or zoom. A clip may
carry a caption burned into its frames, as uploaders print titles and prices on theirs (what the
`ocr` step reads). The output is deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# codec -> (container format, encoder, encoder options). Fast presets: these are fixtures.
_CODECS: dict[str, tuple[str, str, dict[str, str]]] = {
    "h264": ("mp4", "libx264", {"preset": "veryfast", "crf": "23", "x264-params": "mbtree=0"}),
    "mpeg4": ("mp4", "mpeg4", {"b": "1M"}),
    "vp8": ("webm", "libvpx", {"deadline": "realtime", "cpu-used": "8", "crf": "10", "b": "2M"}),
    "vp9": ("webm", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"}),
}
MOTIONS = ("zoom", "pan", "still")
_ZOOM = 0.8  # zoom ends on a window this fraction of the starting one
_PAN_WINDOW = 0.85  # the pan window is this fraction of the largest one, so it can travel


# container format -> (audio encoder, the sample rates it takes; None: any)
_AUDIO_CODECS: dict[str, tuple[str, tuple[int, ...] | None]] = {
    "mp4": ("aac", None),
    "webm": ("libopus", (48000, 24000, 16000, 12000, 8000)),
}


@dataclass(frozen=True)
class Audio:
    """A sound track to mux beside the frames: float samples [channels, n] in [-1, 1] at `rate` Hz."""

    samples: np.ndarray
    rate: int
    layout: str = "mono"  # FFmpeg's name: "mono", "stereo", "5.1", ...

    @property
    def seconds(self) -> float:
        return self.samples.shape[-1] / self.rate


def speak(text: str, voice: str = "en") -> Audio:
    """`text` spoken by espeak-ng (a Debian package: apt-get install espeak-ng) as mono 22.05 kHz audio.

    Synthetic narration for demo clips and tests: no recording ships, nothing is downloaded.
    """
    import shutil
    import subprocess
    import wave

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("narration needs espeak-ng, which is not installed (apt-get install espeak-ng)")
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True, timeout=60)
    with wave.open(io.BytesIO(wav.stdout)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise RuntimeError(f"espeak-ng wrote {w.getnchannels()} channel(s) of {8 * w.getsampwidth()}-bit audio")
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    return Audio((np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0)[None, :], rate)


def _mux_audio(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream, audio: Audio) -> None:
    """Encode `audio` into `stream`, converted to the encoder's sample format and rate on the way."""
    resampler = av.AudioResampler(format=stream.format.name, layout=audio.layout, rate=stream.rate)
    planes = np.ascontiguousarray(audio.samples, dtype=np.float32)
    step = 1024
    for start in range(0, planes.shape[1], step):
        frame = av.AudioFrame.from_ndarray(planes[:, start : start + step], format="fltp", layout=audio.layout)
        frame.sample_rate, frame.pts = audio.rate, start
        for piece in resampler.resample(frame):
            container.mux(stream.encode(piece))
    for piece in resampler.resample(None):
        container.mux(stream.encode(piece))
    container.mux(stream.encode(None))


def encode_frames(
    frames: Iterable[np.ndarray], *, fps: int = 12, codec: str = "h264", audio: Audio | None = None
) -> bytes:
    """Encode RGB uint8 frames [H, W, 3] (even H and W) to mp4 (h264, mpeg4) or webm (vp8, vp9) bytes.

    With `audio`, the container also carries it (AAC in mp4, Opus in webm). bitexact flags keep
    encoder/muxer version strings and random segment UIDs out, so the bytes only depend on the input.
    """
    if codec not in _CODECS:
        raise ValueError(f"codec must be one of {sorted(_CODECS)}, got {codec!r}")
    fmt, encoder, options = _CODECS[codec]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt, container_options={"fflags": "+bitexact"}) as container:
        sound = None
        if audio is not None:  # every stream before the first packet: the header names them all
            audio_encoder, rates = _AUDIO_CODECS[fmt]
            rate = audio.rate if rates is None or audio.rate in rates else rates[0]
            sound = container.add_stream(audio_encoder, rate=rate)
            sound.layout = audio.layout
            sound.codec_context.flags |= av.codec.context.Flags.bitexact
        stream = None
        for i, frame in enumerate(frames):
            rgb = np.ascontiguousarray(frame, dtype=np.uint8)
            if stream is None:
                height, width = rgb.shape[:2]
                if width % 2 or height % 2:
                    raise ValueError(f"frame size must be even for yuv420p, got {width}x{height}")
                stream = container.add_stream(encoder, rate=Fraction(fps), options=dict(options))
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.codec_context.flags |= av.codec.context.Flags.bitexact
                stream.codec_context.thread_count = 1  # one thread: identical bytes on any machine
            video_frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            video_frame.pts, video_frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(video_frame))
        if stream is None:
            raise ValueError("no frames to encode")
        container.mux(stream.encode(None))
        if sound is not None:
            _mux_audio(container, sound, audio)
    return buf.getvalue()


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] from gray, RGBA or float photos."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(img * 255.0 if img.dtype.kind == "f" and img.max() <= 1.0 else img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"expected an image [H, W] or [H, W, 3|4], got shape {img.shape}")
    return np.ascontiguousarray(img[:, :, :3])


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area resize with swscale: anti-aliased, so the camera move does not shimmer."""
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    return frame.reformat(width=width, height=height, interpolation="AREA").to_ndarray()


def _bilinear_crop(img: np.ndarray, cx: float, cy: float, cw: float, ch: float, out_w: int, out_h: int) -> np.ndarray:
    """Sample the window centred at (cx, cy) of size cw x ch to out_w x out_h, sub-pixel (smooth motion)."""
    h, w = img.shape[:2]
    xs = np.clip(cx - cw / 2 + (np.arange(out_w) + 0.5) * cw / out_w - 0.5, 0, w - 1)
    ys = np.clip(cy - ch / 2 + (np.arange(out_h) + 0.5) * ch / out_h - 0.5, 0, h - 1)
    x0 = np.minimum(xs.astype(np.int64), w - 2) if w > 1 else np.zeros(out_w, np.int64)
    y0 = np.minimum(ys.astype(np.int64), h - 2) if h > 1 else np.zeros(out_h, np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    wx, wy = (xs - x0)[None, :, None], (ys - y0)[:, None, None]
    src = img.astype(np.float32)
    rows = src[y0] * (1 - wy) + src[y1] * wy
    out = rows[:, x0] * (1 - wx) + rows[:, x1] * wx
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def ken_burns_frames(
    image: np.ndarray, *, n: int, size: tuple[int, int], motion: str = "zoom", seed: int = 0
) -> list[np.ndarray]:
    """n RGB frames of `size` = (width, height) looking at `image` through a slowly moving window."""
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")
    out_w, out_h = size
    img = _as_rgb(image)
    # Scale the photo so the largest window of the output's aspect maps 1:1 to the output.
    h, w = img.shape[:2]
    scale = max(out_w / w, out_h / h)
    img = _resize(img, max(out_w, round(w * scale)), max(out_h, round(h * scale)))
    h, w = img.shape[:2]
    rng = np.random.default_rng(seed)
    fx, fy = rng.uniform(-0.5, 0.5, size=2)  # where the camera drifts to, as a fraction of the slack

    frames = []
    for i in range(n):
        t = i / (n - 1) if n > 1 else 0.0
        ease = t * t * (3 - 2 * t)
        if motion == "zoom":
            zoom = 1 - (1 - _ZOOM) * ease
            cw, ch = out_w * zoom, out_h * zoom
            cx = w / 2 + fx * (w - cw) * ease
            cy = h / 2 + fy * (h - ch) * ease
        elif motion == "pan":
            cw, ch = out_w * _PAN_WINDOW, out_h * _PAN_WINDOW
            cx = cw / 2 + (w - cw) * ease
            cy = h / 2 + fy * (h - ch)
        else:
            cw, ch = out_w, out_h
            cx, cy = w / 2 + fx * (w - cw), h / 2 + fy * (h - ch)
        frames.append(_bilinear_crop(img, cx, cy, cw, ch, out_w, out_h))
    return frames


def caption_font_path() -> Path:
    """DejaVu Sans Bold, from the matplotlib wheel (a PyPI package: no system fonts needed)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"


def draw_caption(frames: Sequence[np.ndarray], caption: str, *, height_fraction: float = 0.055) -> list[np.ndarray]:
    """Burn `caption` (lines split on newlines) into the lower third of every frame: white, black outline.

    The letters are `height_fraction` of the frame height tall, about what apps use for titles.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not caption.strip():
        return list(frames)
    h, w = frames[0].shape[:2]
    font = ImageFont.truetype(str(caption_font_path()), max(10, round(h * height_fraction)))
    lines = [line for line in caption.splitlines() if line.strip()]
    line_h = round(font.size * 1.35)
    top = round(h * 0.68)
    out = []
    for frame in frames:
        img = Image.fromarray(np.ascontiguousarray(frame))
        draw = ImageDraw.Draw(img)
        for i, line in enumerate(lines):
            left = max(2, (w - draw.textlength(line, font=font)) / 2)
            stroke = max(1, font.size // 12)
            draw.text(
                (left, top + i * line_h), line, font=font, fill=(255, 255, 255), stroke_width=stroke, stroke_fill=0
            )
        out.append(np.asarray(img))
    return out


def render_clip(
    image: np.ndarray,
    *,
    seconds: float = 2.0,
    fps: int = 12,
    size: tuple[int, int] = (288, 512),
    motion: str = "zoom",
    codec: str = "h264",
    seed: int = 0,
    caption: str = "",
    audio: Audio | None = None,
) -> bytes:
    """A short video (mp4 for h264/mpeg4, webm for vp8/vp9) of one photo with a Ken-Burns move.

    `size` is (width, height); the default is portrait 9:16 like short-video apps. `seed` picks
    where the camera drifts to; `caption` is text printed on every frame (`draw_caption`); `audio`
    is its sound track (e.g. `speak(...)`), which may outlast the pictures.
    """
    n = max(1, round(seconds * fps))
    frames = ken_burns_frames(image, n=n, size=size, motion=motion, seed=seed)
    return encode_frames(draw_caption(frames, caption), fps=fps, codec=codec, audio=audio)


def _stereo_left() -> np.ndarray:
    import skimage.data

    return skimage.data.stereo_motorcycle()[0]


def _photo_loader(name: str) -> Callable[[], np.ndarray]:
    import skimage.data

    if name == "motorcycle_left":
        return _stereo_left
    return getattr(skimage.data, name)


# Photos that scikit-image ships inside its wheel (no download).
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle_left",
    "hubble_deep_field",
    "camera",
    "immunohistochemistry",  # stained tissue under a microscope: no ImageNet class, no demo label names it
    "retina",  # a fundus photograph of an eye: likewise
)


def load_photo(name: str) -> np.ndarray:
    """RGB uint8 photo bundled with scikit-image (gray ones, e.g. "camera", come back as RGB)."""
    if name not in PHOTOS:
        raise ValueError(f"photo must be one of {PHOTOS}, got {name!r}")
    return _as_rgb(_photo_loader(name)())


@dataclass(frozen=True)
class SampleVideo:
    """One demo clip: a bundled photo, a camera move, a codec, the title a user gave it, printed text."""

    name: str
    title: str
    photo: str
    motion: str = "zoom"
    codec: str = "h264"
    caption: str = ""  # burned into the frames ("" = none); lines split on newlines
    narration: str = ""  # spoken on the sound track by espeak-ng ("" = a clip without audio)
    voice: str = "en"  # espeak-ng's voice (language) for the narration

    def render(self, *, narrate: bool = True, **kwargs) -> bytes:
        """Container bytes; kwargs go to `render_clip` (seconds, fps, size, seed).

        With `narrate` (and a narration), the clip carries it as speech: this needs espeak-ng.
        """
        kwargs.setdefault("caption", self.caption)
        if narrate and self.narration:
            kwargs.setdefault("audio", speak(self.narration, self.voice))
        return render_clip(load_photo(self.photo), motion=self.motion, codec=self.codec, **kwargs)


def demo_videos() -> list[SampleVideo]:
    """Clips with multilingual titles, some with printed text or narration (English, Spanish), in h264/mp4,
    mpeg4/mp4 and vp9/vp8 webm."""
    return [
        SampleVideo("cat_nap", "My cat Chelsea taking a nap", "chelsea", "zoom", "h264"),
        SampleVideo("cat_window", "我家的猫在窗边晒太阳", "chelsea", "pan", "vp9"),
        SampleVideo(
            "morning_coffee",
            "Café de la mañana ☕",
            "coffee",
            "zoom",
            "h264",
            "FRESH COFFEE\nonly $3.50 today",
            narration="Buenos días. Hoy preparamos un café con leche.",
            voice="es",
        ),
        SampleVideo("astronaut", "Астронавт на орбите", "astronaut", "still", "mpeg4"),
        SampleVideo(
            "rocket_launch",
            "ロケット打ち上げの瞬間",
            "rocket",
            "zoom",
            "vp8",
            "LAUNCH DAY",
            narration="Watch the rocket launch into space. Three, two, one, lift off.",
        ),
        SampleVideo("motorcycle_tour", "Motorrad-Tour am Wochenende", "motorcycle_left", "pan", "h264"),
        SampleVideo("hubble", "Galáxias vistas pelo Hubble", "hubble_deep_field", "zoom", "vp9", "DEEP FIELD"),
    ]


def few_shot_videos() -> tuple[dict[str, list[SampleVideo]], dict[str, SampleVideo]]:
    """Concepts no prompt of the default bank names, as support clips per label and one held-out clip each.

    The held-out clip shows the same kind of picture with another camera move and codec, so a
    label learned from the support clips alone should pick it (`reelserve labels publish`).
    """
    support = {
        "microscopy": [
            SampleVideo("tissue_zoom", "", "immunohistochemistry", "zoom", "h264"),
            SampleVideo("tissue_pan", "", "immunohistochemistry", "pan", "vp9"),
        ],
        "eye-exam": [
            SampleVideo("fundus_zoom", "", "retina", "zoom", "h264"),
            SampleVideo("fundus_pan", "", "retina", "pan", "vp9"),
        ],
    }
    held_out = {
        "microscopy": SampleVideo("tissue_still", "", "immunohistochemistry", "still", "mpeg4"),
        "eye-exam": SampleVideo("fundus_still", "", "retina", "still", "mpeg4"),
    }
    return support, held_out


def write_few_shot_spec(folder: Path, name: str = "demo", **render: object) -> Path:
    """A bank spec (YAML) with prompted labels and the few-shot-only labels of `few_shot_videos`, clips beside it.

    `render` goes to every clip's `render` (e.g. seconds, size: smaller clips for tests).
    """
    import yaml

    folder = Path(folder)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    support, _ = few_shot_videos()
    labels: list[dict] = [
        {"name": "cat", "prompts": ["a cat", "猫", "un gato"]},
        {"name": "coffee", "prompts": ["coffee", "una taza de café"]},
        {"name": "space", "prompts": ["outer space", "a rocket launch"]},
    ]
    for label, clips in support.items():
        paths = []
        for clip in clips:
            path = folder / "clips" / f"{clip.name}.{'webm' if clip.codec.startswith('vp') else 'mp4'}"
            path.write_bytes(clip.render(**render))
            paths.append(str(path.relative_to(folder)))
        labels.append({"name": label, "examples": paths})  # learned from the clips alone: no prompt
    spec = folder / f"{name}.yaml"
    text = yaml.safe_dump({"name": name, "labels": labels}, allow_unicode=True, sort_keys=False)
    spec.write_text(text, encoding="utf-8")
    return spec


def _png_bytes(image: np.ndarray) -> bytes:
    """A PNG file of `image`, via PyAV's PNG encoder."""
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = image.shape[1], image.shape[0], "rgb24"
    packets = ctx.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"))
    packets += ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


def _silent_audio(seconds: float = 0.5, rate: int = 48000) -> bytes:
    """An audio-only webm (Opus silence): a valid container with no video stream."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="webm", container_options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libopus", rate=rate)
        stream.layout = "mono"
        frame_size = 960
        for i in range(max(1, round(seconds * rate / frame_size))):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, frame_size), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, i * frame_size
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


def malformed_videos(seed: int = 0) -> dict[str, bytes]:
    """Inputs a decoder must refuse cleanly: name -> bytes."""
    small = load_photo("chelsea")[:64, :96]
    clip = render_clip(small, seconds=0.5, fps=8, size=(96, 64), motion="still")
    return {
        "empty": b"",
        "random_bytes": np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "png_image": _png_bytes(small),
        "truncated_mp4": clip[:200],
        "audio_only": _silent_audio(),
    }


def corrupt_audio(data: bytes, fmt: str = "mp4", seed: int = 0) -> bytes:
    """The same container with every audio packet's payload replaced by random bytes (timing kept).

    A sound track that demuxes but never decodes, beside a video stream that still does.
    """
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    with av.open(io.BytesIO(data)) as src, av.open(out, mode="w", format=fmt) as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            target = streams[packet.stream.index]
            if packet.stream.type == "audio":
                garbage = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                garbage.pts, garbage.dts, garbage.time_base = packet.pts, packet.dts, packet.time_base
                garbage.duration = packet.duration
                packet = garbage
            packet.stream = target
            dst.mux(packet)
    return out.getvalue()


# Short multilingual comments: what `text_features` sees at volume (text bench, int8 calibration)
PHRASES = [
    "this is so cute", "where did you buy that", "best video today", "my cat does the same thing",
    "qué bonito", "me encanta este café", "太可爱了", "这个咖啡在哪里买的", "かわいすぎる", "どこで買えますか",
    "너무 귀여워요", "اين اشتريت هذا", "बहुत प्यारा है", "quá dễ thương", "lucu banget", "очень мило",
    "que lindo", "çok tatlı", "น่ารักมาก", "wow 🔥🔥", "who else is watching this at 3am",
]  # fmt: skip


def comments(n: int, seed: int = 0) -> list[str]:
    """`n` short multilingual comments (1-4 phrases each), reproducible."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(PHRASES, size=int(rng.integers(1, 5)))) for _ in range(n)]
