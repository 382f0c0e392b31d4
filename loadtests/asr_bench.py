"""What speech costs: ASR time per clip, and `video_features` vs `video_features_full` served, with capacity.

Per clip, in process, as the `asr` step does it: decode the audio track (PyAV, 16 kHz mono), Silero
VAD, then Whisper (CTranslate2, the exported model) only where VAD heard speech; clips with English
and Spanish narration (espeak-ng), 30 s of music and noise (VAD only), and no audio track. Served:
sequential calls of the narrated demo clips to `video_features` (no ASR) and `video_features_full`
(ASR), then capacity of each at its own SLO (`SloConfig`) on a narrated upload, open-loop Poisson
ladder (`capacity.measure_system`). Run: `python -m reelserve.loadtests.asr_bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from reelserve.config import DEFAULT
from reelserve.spec import contract as c

from .workload import WorkItem

# The capacity ladder's settings (`capacity.measure_system`), for this bench alone and inside
# `make bench`. Speech calls take ~1 s on 2 cores: 45 s steps let the ladder test rates down to
# 0.75 rps (`capacity.lowest_rate`), where 30 s ones stop at 1.12.
LADDER = {"duration_s": 45.0, "sequential_n": 10, "max_steps": 5}
SPEECH = {
    "English speech (4.4 s)": ("Watch the rocket launch into space. Three, two, one, lift off.", "en"),
    "Spanish speech (3.1 s)": ("Buenos días. Hoy preparamos un café con leche.", "es"),
}


def _ms(samples: list[float]) -> dict:
    ms = sorted(x * 1000 for x in samples)
    return {"p50_ms": statistics.median(ms), "p99_ms": float(np.percentile(ms, 99)), "n": len(ms)}


def _clips() -> dict[str, bytes]:
    from reelserve.samples import Audio, load_photo, render_clip, speak

    def clip(audio: Audio | None) -> bytes:
        return render_clip(load_photo("rocket"), seconds=2.0, size=(288, 512), audio=audio)

    rate = 44100
    t = np.arange(30 * rate) / rate
    music = sum(0.1 * np.sin(2 * np.pi * hz * t) for hz in (220.0, 277.2, 329.6))
    noise = 0.05 * np.random.default_rng(0).standard_normal(len(t))
    clips = {name: clip(speak(text, voice)) for name, (text, voice) in SPEECH.items()}
    clips["music + noise, 30 s (VAD only)"] = clip(Audio((music + noise).astype(np.float32)[None, :], rate))
    clips["no audio track"] = clip(None)
    return clips


def per_clip(model_repository: Path, repeats: int = 3) -> list[dict]:
    """Decode and transcription time per clip, in process, with the exported Whisper model."""
    from reelserve.export.repository import read_step_settings
    from reelserve.serving.asr import WHISPER_DIR, SpeechTranscriber
    from reelserve.serving.audio_decode import decode_audio

    cfg = read_step_settings(Path(model_repository) / c.ASR)["asr"]
    transcriber = SpeechTranscriber(Path(model_repository) / c.ASR / "1" / WHISPER_DIR, cfg)
    rows = []
    for name, data in _clips().items():
        decode, asr = [], []
        for _ in range(repeats + 1):  # the first run is a warm-up
            start = time.perf_counter()
            track = decode_audio(data, cfg.max_seconds)
            decode.append(time.perf_counter() - start)
            out = transcriber.transcribe(track)
            asr.append(out.seconds)
        rows.append(
            {
                "clip": name,
                "decode_ms": statistics.median(decode[1:]) * 1000,
                "asr_ms": statistics.median(asr[1:]) * 1000,
                "text": out.text,
                "language": out.language,
            }
        )
    return rows


def served(model_repository: Path, rounds: int, ladder: dict | None) -> tuple[dict[str, dict], dict[str, dict]]:
    """Sequential latency of the narrated demo clips without and with ASR; capacity of each if `ladder`."""
    from reelserve.client import VideoFeaturesClient
    from reelserve.samples import demo_videos
    from reelserve.triton.server import TritonServer

    from .served import replay_server_config

    videos = [v for v in demo_videos() if v.narration]
    clips = [v.render() for v in videos]
    sequential, capacity = {}, {}
    with TritonServer(replay_server_config(model_repository)) as server:
        server.wait_ready(models=[c.VIDEO_FEATURES, c.VIDEO_FEATURES_FULL])
        with VideoFeaturesClient(server.grpc_url, deadline_s=120.0) as client:
            for transcribe in (False, True):
                for v, clip in zip(videos, clips, strict=True):  # warm-up
                    client.video_features([clip], [v.title], transcribe=transcribe)
                times = []
                for _ in range(rounds):
                    for v, clip in zip(videos, clips, strict=True):
                        start = time.perf_counter()
                        client.video_features([clip], [v.title], transcribe=transcribe)
                        times.append(time.perf_counter() - start)
                sequential[c.VIDEO_FEATURES_FULL if transcribe else c.VIDEO_FEATURES] = _ms(times)
        if ladder is not None:
            item = (clips[0], videos[0].title)
            for model in (c.VIDEO_FEATURES, c.VIDEO_FEATURES_FULL):
                capacity[model] = asyncio.run(_capacity(server, model, item, ladder))
    return sequential, capacity


async def _capacity(server, model: str, item: tuple[bytes, str], ladder: dict) -> dict:
    """Max open-loop rate with p99 within `model`'s own SLO and no errors (`capacity.measure_system`)."""
    from reelserve.client import NO_RETRY

    from .capacity import measure_system
    from .targets import ReelserveTarget

    slo_ms = (
        DEFAULT.slo.video_features_full_p99_ms if model == c.VIDEO_FEATURES_FULL else DEFAULT.slo.video_features_p99_ms
    )
    work = WorkItem(f"narrated upload to {model}", model, videos=(item[0],), texts=(item[1],))
    target = ReelserveTarget(server.grpc_url, deadline_s=4 * slo_ms / 1000, retry=NO_RETRY, name=model)
    try:
        result = await measure_system(
            target, work, slo_ms=slo_ms, metrics_url=server.metrics_url, closed_loop=(1,), **ladder
        )
    finally:
        await target.close()
    best = result.capacity
    return {
        "slo_ms": slo_ms,
        "rps": best["offered_rps"] if best else None,
        "p99_ms": best["latency_ms"]["p99"] if best else None,
    }


def run(model_repository: Path, *, repeats: int = 3, rounds: int = 3, ladder: dict | None = None) -> list[str]:
    """Every measurement; -> printable table lines."""
    lines = [f"{'ASR per clip (in process)':34s} {'decode ms':>9s} {'VAD+Whisper ms':>14s}  transcript"]
    for r in per_clip(model_repository, repeats):
        said = f"({r['language']}) {r['text']}" if r["text"] else '""'
        lines.append(f"{r['clip']:34s} {r['decode_ms']:9.1f} {r['asr_ms']:14.1f}  {said[:60]}")
    sequential, capacity = served(model_repository, rounds, ladder)
    lines += ["", f"{'narrated demo clips, sequential':34s} {'p50 ms':>9s} {'p99 ms':>9s}"]
    for model, r in sequential.items():
        lines.append(f"{model:34s} {r['p50_ms']:9.1f} {r['p99_ms']:9.1f}")
    if capacity:
        lines += ["", *capacity_lines(capacity, ladder["duration_s"])]
    return lines


def capacity_lines(capacity: dict[str, dict], duration_s: float) -> list[str]:
    """The capacity table; "none" says why, as `make bench`'s table does."""
    from .capacity import no_capacity_note

    lines = [f"{'capacity on a narrated upload':34s} {'SLO p99':>9s} {'max rps':>9s} {'p99 there':>10s}"]
    for model, r in capacity.items():
        rps = f"{r['rps']:.2f}" if r["rps"] else "none"
        p99 = f"{r['p99_ms']:.0f} ms" if r["p99_ms"] else "-"
        lines.append(f"{model:34s} {r['slo_ms'] / 1000:8.2f}s {rps:>9s} {p99:>10s}")
    if not all(r["rps"] for r in capacity.values()):
        lines.append(f"none: {no_capacity_note(duration_s)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reelserve.loadtests.asr_bench", description=__doc__.split("\n")[0])
    p.add_argument("--model-repository", type=Path, default=DEFAULT.server.model_repository)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per clip in process (default %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="passes over the narrated clips (default %(default)s)")
    p.add_argument(
        "--duration", type=float, default=LADDER["duration_s"], help="seconds per capacity step (default %(default)s)"
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=LADDER["max_steps"],
        help="capacity steps per ensemble; 0 skips (default %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if not (Path(args.model_repository) / c.ASR).is_dir():
        print(
            f"{args.model_repository} has no asr step: export with ASR on (reelserve export --asr base)",
            file=sys.stderr,
        )
        return 2
    ladder = None
    if args.max_steps > 0:
        ladder = LADDER | {"duration_s": args.duration, "max_steps": args.max_steps, "progress": not args.no_progress}
    print("\n".join(run(args.model_repository, repeats=args.repeats, rounds=args.rounds, ladder=ladder)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
