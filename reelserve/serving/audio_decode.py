"""Container bytes -> the first audio stream as 16 kHz mono float32, at most `max_seconds` of it (PyAV / FFmpeg).

What Whisper reads. Decoding stops as soon as `max_seconds` of audio have come out, so a
10-minute track costs what 30 s cost. Audio never refuses a request: the video decoder
already judged the upload, and a clip without usable sound is still a clip. So every failure
(no audio stream, a codec FFmpeg cannot decode, corrupt packets, not a container at all)
becomes an empty track with a `note` saying why, for the caller to log; no exception escapes.

Channels are mixed down by swresample's standard matrix (what `ffmpeg -ac 1` does, the path
Whisper's training audio took): 5.1 dialogue on the centre channel keeps its level.
Containers are opened as the video decoder opens them (no nested URLs, FFmpeg's own words).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np

from reelserve.serving.video_decode import _reason, _refuse_nested_open

SAMPLE_RATE = 16_000  # what Whisper and Silero VAD read
_PACKETS_PER_SECOND = 500  # demux cap per second of wanted audio (Opus 2.5 ms frames = 400/s), whatever the pts say
_MAX_FAILED_PACKETS = 200  # a stream that keeps failing past this is corrupt throughout: stop walking it
_PTS_SLACK_S = 1.0  # keep demuxing this far past `max_seconds` (decoder delay, resampler buffering)


@dataclass(frozen=True)
class AudioTrack:
    samples: np.ndarray  # float32 [n] mono 16 kHz in [-1, 1]
    seconds: float  # len(samples) / 16000
    source_rate: int  # the stream's own sample rate (0 when there is no stream)
    channels: int  # the stream's own channel count (0 when there is no stream)
    note: str  # "" or why there is no audio ("no audio stream", "undecodable audio: ...")


def _empty(note: str, source_rate: int = 0, channels: int = 0) -> AudioTrack:
    return AudioTrack(np.zeros(0, np.float32), 0.0, source_rate, channels, note)


@dataclass
class _Walk:
    """What walking the stream's packets found (failures are counted, not raised)."""

    packets: int = 0
    failed: int = 0
    first_error: str = ""


def _packets(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream, max_seconds: float, walk: _Walk
) -> Iterator[av.Packet]:
    """The stream's packets up to `max_seconds` (+ slack) of play time or the packet cap; ends where demuxing breaks."""
    cap = max(1_000, int(max_seconds * _PACKETS_PER_SECOND))
    tb = stream.time_base
    start = None
    demuxer = container.demux(stream)
    while walk.packets < cap and walk.failed < _MAX_FAILED_PACKETS:
        try:
            packet = next(demuxer)
        except StopIteration:
            return
        except Exception as exc:  # truncated or corrupt container: the track ends here
            walk.first_error = walk.first_error or _reason(exc)
            return
        if packet.pts is not None and tb is not None:
            at = float(packet.pts * tb)
            start = at if start is None else start
            if at - start > max_seconds + _PTS_SLACK_S:
                return
        walk.packets += 1
        yield packet


def _frames(stream: av.audio.stream.AudioStream, packets: Iterator[av.Packet], walk: _Walk) -> Iterator[av.AudioFrame]:
    """Decoded frames; a packet the decoder rejects is counted and skipped (the next one may decode)."""
    for packet in packets:
        try:
            yield from stream.decode(packet)
        except Exception as exc:  # av.error.FFmpegError and friends: one corrupt packet
            walk.failed += 1
            walk.first_error = walk.first_error or _reason(exc)
    try:  # flush the decoder's delay (a no-op after a stop)
        yield from stream.decode(None)
    except Exception:
        return


class _Mono16k:
    """Frames -> 16 kHz mono float into a fixed buffer; a mid-stream format change gets a fresh resampler."""

    def __init__(self, limit: int) -> None:
        self.out = np.empty(limit, np.float32)
        self.filled = 0
        self._resampler = self._new()

    @staticmethod
    def _new() -> av.AudioResampler:
        return av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    @property
    def full(self) -> bool:
        return self.filled >= len(self.out)

    def push(self, frame: av.AudioFrame | None) -> None:
        try:
            resampled = self._resampler.resample(frame)
        except ValueError:  # "Frame does not match AudioResampler setup": rate or layout changed
            if frame is None:
                return
            self._resampler = self._new()
            resampled = self._resampler.resample(frame)
        for piece in resampled:
            if self.full:
                return
            mono = piece.to_ndarray().reshape(-1)
            take = min(len(mono), len(self.out) - self.filled)
            self.out[self.filled : self.filled + take] = mono[:take]
            self.filled += take

    def samples(self) -> np.ndarray:
        samples = self.out[: self.filled].copy()
        np.nan_to_num(samples, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)  # a garbage packet may decode to anything
        return np.clip(samples, -1.0, 1.0, out=samples)


def _decode(data: bytes, max_seconds: float) -> AudioTrack:
    try:
        container = av.open(io.BytesIO(data), mode="r", io_open=_refuse_nested_open)
    except Exception as exc:
        return _empty(f"undecodable audio: not a container FFmpeg can read ({_reason(exc)})")
    try:
        if not container.streams.audio:
            return _empty("no audio stream")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        if ctx is None:  # PyAV has no decoder for this codec id
            return _empty("undecodable audio: the audio codec is unknown or has no decoder")
        rate, channels = int(ctx.sample_rate or 0), int(ctx.channels or 0)
        buffer = _Mono16k(round(max_seconds * SAMPLE_RATE))
        walk = _Walk()
        for frame in _frames(stream, _packets(container, stream, max_seconds, walk), walk):
            buffer.push(frame)
            if buffer.full:
                break  # never walk further into a track
        else:
            buffer.push(None)  # the resampler's tail
        samples = buffer.samples()
    finally:
        container.close()
    if not len(samples):
        if walk.failed or walk.first_error:
            detail = f"{walk.failed} of {walk.packets} packets failed" + (
                f": {walk.first_error}" if walk.first_error else ""
            )
            return _empty(f"undecodable audio: {detail}", rate, channels)
        return _empty("empty audio stream (no samples)", rate, channels)
    return AudioTrack(samples, len(samples) / SAMPLE_RATE, rate, channels, "")


def decode_audio(data: bytes, max_seconds: float) -> AudioTrack:
    """The first audio stream of container bytes as 16 kHz mono float32, cut at `max_seconds`; never raises."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return _empty(f"undecodable audio: expected container bytes, got {type(data).__name__}")
    if not len(data):
        return _empty("undecodable audio: empty, no bytes")
    if not max_seconds > 0:
        return _empty(f"audio decoding is off (max_seconds={max_seconds:g})")
    try:
        return _decode(bytes(data), max_seconds)
    except Exception as exc:  # anything else PyAV raises on a hostile upload
        return _empty(f"undecodable audio: {_reason(exc)}")
