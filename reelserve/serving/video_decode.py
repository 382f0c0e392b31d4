"""Container bytes -> `num_frames` evenly sampled, centre-cropped RGB frames (PyAV / FFmpeg).

The vision encoder sees a fixed T frames per clip, spread over the whole clip. Decoding
every frame is unavoidable for inter-coded video, but colour conversion and scaling are
the expensive part, so we first count the video packets (demux only, no decode), pick the
T indices, then decode once and convert only the picked frames.

Every failure of a user-supplied upload (not a container, no video, over a limit, nothing
decodes) becomes `InvalidInputError("video", ...)`; no PyAV exception escapes.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import av
import numpy as np

from reelserve.config import VideoConfig
from reelserve.serving.errors import InvalidInputError

FIELD = "video"
DEFAULT_VIDEO = VideoConfig()


def _refuse_nested_open(url: str, flags: int, options: dict) -> None:
    """Playlist demuxers (hls, concat, ...) may try to open other URLs or local files: never."""
    raise PermissionError(f"refusing to open {url!r} referenced from inside an upload")


def _reason(exc: Exception) -> str:
    """FFmpeg's own words ("Invalid data found when processing input") without errno and file name."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _is_still_image(format_name: str) -> bool:
    """png_pipe, jpeg_pipe, image2, ...: a single picture is not a video."""
    return any(name.endswith("_pipe") or name.startswith("image2") for name in format_name.split(","))


def _open(data: bytes) -> av.container.InputContainer:
    try:
        container = av.open(io.BytesIO(data), mode="r", io_open=_refuse_nested_open)
    except Exception as exc:  # av.error.FFmpegError, or anything PyAV/io_open raises on garbage
        raise InvalidInputError(FIELD, f"not a video container FFmpeg can read ({_reason(exc)})") from None
    if _is_still_image(container.format.name):
        container.close()
        raise InvalidInputError(FIELD, f"a still image ({container.format.name}), not a video")
    return container


def _video_stream(container: av.container.InputContainer, cfg: VideoConfig) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams) or "none"
        raise InvalidInputError(FIELD, f"the container has no video stream (streams: {kinds})")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # PyAV has no decoder for this codec id
        raise InvalidInputError(FIELD, "the video stream's codec is unknown or has no decoder")
    _check_pixels(stream.codec_context.width, stream.codec_context.height, cfg)
    return stream


def _check_pixels(width: int, height: int, cfg: VideoConfig) -> None:
    """Decompression-bomb guard: refuse before (header) and while (each frame) decoding."""
    if width * height > cfg.max_source_pixels:
        raise InvalidInputError(
            FIELD, f"frame size {width}x{height} is over the limit of {cfg.max_source_pixels} pixels"
        )


def _count_packets(data: bytes, cfg: VideoConfig) -> int:
    """Video packets that carry data, by demuxing only; refuses streams longer than the limit."""
    container = _open(data)
    try:
        stream = _video_stream(container, cfg)
        count = 0
        try:
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:
                    count += 1
                    if count > cfg.max_decoded_frames:
                        limit = cfg.max_decoded_frames
                        raise InvalidInputError(FIELD, f"over the limit of {limit} video frames (packets); refused")
        except InvalidInputError:
            raise
        except Exception:  # truncated or corrupt tail: what demuxed so far is the clip
            pass
        if count == 0 and stream.frames:
            count = min(stream.frames, cfg.max_decoded_frames)
        return count
    finally:
        container.close()


def sample_indices(total: int, num: int) -> list[int]:
    """`num` frame indices spread evenly over `total` frames (segment centres); all of them if fewer."""
    if total <= num:
        return list(range(total))
    return [int(i) for i in ((np.arange(num) + 0.5) * total / num).astype(np.int64)]


def _to_square(frame: av.VideoFrame, size: int, reformatter: av.video.reformatter.VideoReformatter) -> np.ndarray:
    """Scale the shorter side to `size` in swscale, centre-crop in numpy, then undo phone rotation."""
    width, height = frame.width, frame.height
    if width <= height:
        new_w, new_h = size, max(size, round(height * size / width))
    else:
        new_w, new_h = max(size, round(width * size / height)), size
    rgb = reformatter.reformat(
        frame, width=new_w, height=new_h, format="rgb24", interpolation="BILINEAR", src_color_range=frame.color_range
    ).to_ndarray()
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return _upright(rgb[top : top + size, left : left + size], frame)


def _upright(rgb: np.ndarray, frame: av.VideoFrame) -> np.ndarray:
    """Undo phone rotation (the display matrix, counter-clockwise degrees)."""
    quarter_turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=quarter_turns) if quarter_turns else rgb)


def _whole(frame: av.VideoFrame, max_side: int, reformatter: av.video.reformatter.VideoReformatter) -> np.ndarray:
    """The whole frame, upright, its longer side scaled down to `max_side` (never up): what OCR reads."""
    scale = min(1.0, max_side / max(frame.width, frame.height))
    width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    rgb = reformatter.reformat(
        frame, width=width, height=height, format="rgb24", interpolation="AREA", src_color_range=frame.color_range
    ).to_ndarray()
    return _upright(rgb, frame)


def _frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
    """Every decodable frame in display order: skips packets the decoder rejects, stops where demuxing breaks."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except Exception:  # truncated or corrupt container: the clip ends here
            break
        try:
            yield from stream.decode(packet)
        except av.error.FFmpegError:  # one corrupt packet: the next keyframe recovers
            continue
    try:  # drain the frames held back for B-frame reordering (a no-op after a clean end)
        yield from stream.decode(None)
    except Exception:
        return


@dataclass
class _Picked:
    squares: dict[int, np.ndarray] = field(default_factory=dict)  # frame index -> model frame
    wholes: dict[int, np.ndarray] = field(default_factory=dict)  # frame index -> whole frame for OCR
    decoded: int = 0


def _text_slots(real: int, num: int) -> list[int]:
    """Which of the `real` sampled frames OCR reads: `num` of them, spread over the clip."""
    return sample_indices(real, num) if num > 0 else []


def _decode_picked(data: bytes, picks: Sequence[int], cfg: VideoConfig, deadline: float, text: TextFrames) -> _Picked:
    """Decode the whole stream once, converting only the frames at `picks` (and OCR's share of them)."""
    wanted = set(picks)
    wanted_whole = {picks[slot] for slot in _text_slots(len(picks), text.num)}
    out = _Picked()
    reformatter = av.video.reformatter.VideoReformatter()
    container = _open(data)
    try:
        stream = _video_stream(container, cfg)
        stream.thread_type = "SLICE"  # frame threading conceals corrupt packets differently run to run
        for frame in _frames(container, stream):
            _check_pixels(frame.width, frame.height, cfg)
            if out.decoded in wanted:
                out.squares[out.decoded] = _to_square(frame, cfg.image_size, reformatter)
            if out.decoded in wanted_whole:
                out.wholes[out.decoded] = _whole(frame, text.max_side, reformatter)
            out.decoded += 1
            if out.decoded >= cfg.max_decoded_frames:
                break  # never walk further into a stream
            if time.monotonic() > deadline:
                raise InvalidInputError(FIELD, f"decoding took over the limit of {cfg.max_decode_seconds:g} s; refused")
    finally:
        container.close()
    return out


def _sample(data: bytes, cfg: VideoConfig, text: TextFrames) -> tuple[_Picked, list[int]]:
    """-> (the converted frames, the sampled indices in order)."""
    deadline = time.monotonic() + cfg.max_decode_seconds
    picks = sample_indices(_count_packets(data, cfg), cfg.num_frames)
    picked = _decode_picked(data, picks, cfg, deadline, text)
    actual = sample_indices(picked.decoded, cfg.num_frames)
    if actual != picks:  # packet count != frame count (corrupt packets, truncated tail): sample what decoded
        picked = _decode_picked(data, actual, cfg, deadline, text)
        actual = [i for i in sample_indices(picked.decoded, cfg.num_frames) if i in picked.squares]
    if not actual:
        raise InvalidInputError(FIELD, "the video stream has no decodable frames")
    return picked, actual


@dataclass(frozen=True)
class TextFrames:
    """Which whole frames to keep for OCR: `num` of the sampled ones, longer side at most `max_side` px."""

    num: int = 0
    max_side: int = 640


@dataclass(frozen=True)
class DecodedVideo:
    frames: np.ndarray  # uint8 [T, S, S, 3] RGB, zero-padded past the clip's end
    mask: np.ndarray  # bool [T], True = real frame
    text_frames: list[np.ndarray]  # uint8 [H, W, 3] RGB whole frames for OCR, in clip order (sizes may differ)


def decode_clip(data: bytes, cfg: VideoConfig = DEFAULT_VIDEO, text: TextFrames = TextFrames()) -> DecodedVideo:
    """Sample `cfg.num_frames` model frames (and `text.num` whole frames among them) from container bytes.

    Clips with fewer than `num_frames` frames give all of them, in order, then zero padding
    with mask False.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInputError(FIELD, f"expected container bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise InvalidInputError(FIELD, "empty: no bytes were sent")
    if len(data) > cfg.max_video_bytes:
        raise InvalidInputError(FIELD, f"{len(data)} bytes is over the limit of {cfg.max_video_bytes} bytes")

    try:
        picked, actual = _sample(data, cfg, text)
    except InvalidInputError:
        raise
    except Exception as exc:  # anything else PyAV raises on a hostile or broken upload
        raise InvalidInputError(FIELD, f"could not decode the video ({_reason(exc)})") from None

    size = cfg.image_size
    frames = np.zeros((cfg.num_frames, size, size, 3), np.uint8)
    mask = np.zeros(cfg.num_frames, bool)
    for slot, index in enumerate(actual):
        frames[slot] = picked.squares[index]
        mask[slot] = True
    wholes = [picked.wholes.get(actual[slot]) for slot in _text_slots(len(actual), text.num)]
    return DecodedVideo(frames, mask, [w for w in wholes if w is not None])
