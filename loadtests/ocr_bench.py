"""What on-screen text costs: OCR time per frame, and `video_features` latency with OCR on vs off.

Per frame: the `ocr` step's reader (PP-OCRv4 through `rapidocr-onnxruntime`, our settings) on
frames of the sizes it gets after `preprocess` caps them (longer side <= `OcrConfig.max_side`,
640 by default; 960 shown for comparison), with two printed lines and with none, and whether it
read both lines (spaces aside). Per clip: the demo clips' OCR frames read frame by frame through
the package's own pipeline vs read together as the `ocr` step does (a step call of 1 or 4 clips),
alternated round by round, and whether both read the same text; and the package's PP-OCR graphs
vs the export's folded ones (`export/ocr_graphs.py`), the text both read. Served: the same repository
twice, as exported and as its twin with `ocr.frames = 0` written by the generator
(`repository.write_twin`: artifacts linked, not copied), sequential calls of the demo clips.
Run: `python -m reelserve.loadtests.ocr_bench`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from reelserve.config import DEFAULT, ReelserveConfig
from reelserve.export.repository import write_twin
from reelserve.spec import contract as c

# (width, height): the demo clips; any 9:16 upload of 360p or more capped at 640 (the default); capped at 960
SIZES = ((288, 512), (360, 640), (540, 960))
CAPTION = "FRESH COFFEE\nonly $3.50 today"


def _ms(samples: list[float]) -> dict:
    ms = sorted(x * 1000 for x in samples)
    return {"p50_ms": statistics.median(ms), "p90_ms": ms[min(len(ms) - 1, int(0.9 * len(ms)))], "n": len(ms)}


def _read_timed(reader, frame: np.ndarray, caption: str, repeats: int) -> dict:
    """One warm-up read (ORT allocates on the first run of a shape), then `repeats` timed ones."""
    from reelserve.serving.ocr import line_key

    lines = reader.read(frame)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        reader.read(frame)
        times.append(time.perf_counter() - start)
    read = [line_key(x) for x in lines] == [line_key(x) for x in caption.splitlines()]
    return {"lines": len(lines), "read": read, **_ms(times)}


def _reader(graphs: Mapping[str, Path] | None = None):
    """The `ocr` step's reader with the default settings; `graphs` None: the package's own graphs."""
    from reelserve.serving.ocr import OnScreenTextReader

    return OnScreenTextReader(min_score=DEFAULT.ocr.min_score, threads=DEFAULT.ocr.ort_threads, graphs=graphs)


def per_frame(repeats: int = 20, reader=None) -> list[dict]:
    """OCR time of one frame, by frame size, with and without printed text."""
    from reelserve.samples import draw_caption, ken_burns_frames, load_photo

    reader = reader or _reader()
    rows = []
    for size in SIZES:
        for caption in (CAPTION, ""):
            (frame,) = draw_caption(ken_burns_frames(load_photo("coffee"), n=1, size=size), caption)
            timed = _read_timed(reader, frame, caption, repeats)
            rows.append({"size": f"{size[0]}x{size[1]}", "text": bool(caption), **timed})
    return rows


def max_side_sweep(
    fractions: tuple[float, ...] = (0.015, 0.02, 0.03),
    sides: tuple[int, ...] = (480, 640, 960),
    repeats: int = 5,
    reader=None,
) -> list[dict]:
    """A 1080x1920 upload with a two-line caption of letters `fraction` of the frame height, capped at each side."""
    import av

    from reelserve.samples import draw_caption, ken_burns_frames, load_photo

    reader = reader or _reader()
    base = ken_burns_frames(load_photo("coffee"), n=1, size=(1080, 1920))[0]
    caption = "Best espresso in town\nopen daily 7am to 5pm"
    rows = []
    for fraction in fractions:
        (frame,) = draw_caption([base], caption, height_fraction=fraction)
        for side in sides:
            scale = side / max(frame.shape[:2])
            width, height = round(frame.shape[1] * scale), round(frame.shape[0] * scale)
            small = av.VideoFrame.from_ndarray(frame, format="rgb24")
            small = small.reformat(width=width, height=height, interpolation="AREA").to_ndarray()
            rows.append({"fraction": fraction, "side": side, **_read_timed(reader, small, caption, repeats)})
    return rows


def demo_clip_frames(cfg: ReelserveConfig = DEFAULT) -> list[list[np.ndarray]]:
    """The whole frames `preprocess` hands the `ocr` step for each demo clip."""
    from reelserve.samples import demo_videos
    from reelserve.serving.video_decode import TextFrames, decode_clip

    text = TextFrames(cfg.ocr.frames, cfg.ocr.max_side)
    return [decode_clip(v.render(), cfg.video, text).text_frames for v in demo_videos()]


def together_vs_alone(clips_per_call: tuple[int, ...] = (1, 4), rounds: int = 8, reader=None) -> list[dict]:
    """ms per clip: frame by frame (the package's pipeline) vs every frame of a step call at once."""
    from reelserve.serving.ocr import merge_lines

    reader = reader or _reader()
    clips = demo_clip_frames()
    max_chars = DEFAULT.ocr.max_chars

    def alone(calls: list[list[list[np.ndarray]]]) -> list[str]:
        return [merge_lines([reader.read_alone(f) for f in frames], max_chars) for call in calls for frames in call]

    def together(calls: list[list[list[np.ndarray]]]) -> list[str]:
        return [text for call in calls for text in reader.read_clips(call, max_chars)]

    rows = []
    for size in clips_per_call:
        calls = [clips[i : i + size] for i in range(0, len(clips), size)]
        same = alone(calls) == together(calls)  # also the warm-up of both
        times: dict[str, list[float]] = {"alone": [], "together": []}
        for _ in range(rounds):  # alternated, so a slow moment of a shared machine hits both
            for name, read in (("alone", alone), ("together", together)):
                start = time.perf_counter()
                read(calls)
                times[name].append((time.perf_counter() - start) / len(clips))
        a, t = (statistics.median(times[k]) * 1000 for k in ("alone", "together"))
        rows.append({"clips_per_call": size, "alone_ms": a, "together_ms": t, "ratio": a / t, "same": same})
    return rows


def folded_vs_package(model_repository: Path, rounds: int = 8) -> dict:
    """ms per demo clip (the step's read, 1 clip per call): the package's PP-OCR graphs vs the served, folded ones."""
    from reelserve.serving.ocr import repository_graphs

    clips, max_chars = demo_clip_frames(), DEFAULT.ocr.max_chars
    readers = {"package": _reader(), "folded": _reader(repository_graphs(model_repository / c.OCR / "1"))}
    texts = {name: [r.read_clip(frames, max_chars) for frames in clips] for name, r in readers.items()}  # + warm-up
    times: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(rounds):  # alternated, so a slow moment of a shared machine hits both
        for name, reader in readers.items():
            start = time.perf_counter()
            for frames in clips:
                reader.read_clip(frames, max_chars)
            times[name].append((time.perf_counter() - start) / len(clips))
    package, folded = (statistics.median(times[k]) * 1000 for k in readers)
    same = texts["package"] == texts["folded"]
    return {"package_ms": package, "folded_ms": folded, "ratio": package / folded, "same": same}


def ocr_off_repository(src: Path, dst: Path, cfg: ReelserveConfig = DEFAULT) -> Path:
    """`src`'s artifacts under the configs the generator writes for `cfg` with OCR off."""
    return write_twin(src, dst, replace(cfg, ocr=replace(cfg.ocr, frames=0)))


def served(model_repository: Path, rounds: int = 6) -> dict[str, dict]:
    """Sequential `video_features` over the demo clips, OCR on (as exported) and off."""
    from reelserve.client import VideoFeaturesClient
    from reelserve.samples import demo_videos
    from reelserve.triton.server import TritonServer

    from .served import replay_server_config

    videos = demo_videos()
    clips = [v.render() for v in videos]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="reelserve-ocr-off-") as tmp:
        repos = {
            f"OCR on ({DEFAULT.ocr.frames} frames)": Path(model_repository),
            "OCR off": ocr_off_repository(Path(model_repository), Path(tmp)),
        }
        for name, repo in repos.items():
            with TritonServer(replay_server_config(repo)) as server:
                server.wait_ready(models=[c.VIDEO_FEATURES])
                with VideoFeaturesClient(server.grpc_url) as client:
                    for v, clip in zip(videos, clips, strict=True):  # warm-up
                        client.video_features([clip], [v.title])
                    times = []
                    for _ in range(rounds):
                        for v, clip in zip(videos, clips, strict=True):
                            start = time.perf_counter()
                            client.video_features([clip], [v.title])
                            times.append(time.perf_counter() - start)
            ms = sorted(x * 1000 for x in times)
            rows[name] = {"p50_ms": statistics.median(ms), "p99_ms": float(np.percentile(ms, 99)), "n": len(ms)}
    return rows


def run(model_repository: Path, *, repeats: int = 20, rounds: int = 6) -> list[str]:
    """Both measurements; -> printable table lines."""
    from reelserve.serving.ocr import repository_graphs

    reader = _reader(repository_graphs(model_repository / c.OCR / "1"))  # as the step reads
    lines = [f"{'OCR per frame (W x H)':24s} {'printed text':>13s} {'read':>6s} {'p50 ms':>8s} {'p90 ms':>8s}"]
    for r in per_frame(repeats, reader):
        text = "2 lines" if r["text"] else "none"
        read = "yes" if r["read"] else "NO"
        lines.append(f"{r['size']:24s} {text:>13s} {read:>6s} {r['p50_ms']:8.1f} {r['p90_ms']:8.1f}")
    lines.append("")
    lines.append(f"{'1080x1920 caption, capped at':30s} {'letters':>8s} {'read':>6s} {'p50 ms':>8s}")
    for r in max_side_sweep(reader=reader):
        read = "yes" if r["read"] else "NO"
        letters = f"{r['fraction'] * 100:.1f}%"
        lines.append(f"{str(r['side']) + ' px':30s} {letters:>8s} {read:>6s} {r['p50_ms']:8.1f}")
    lines.append("")
    lines.append(f"{'OCR per demo clip':30s} {'alone ms':>9s} {'together ms':>12s} {'ratio':>6s} {'same':>5s}")
    for r in together_vs_alone(reader=reader):
        name = f"{r['clips_per_call']} clip(s) per step call"
        same = "yes" if r["same"] else "NO"
        lines.append(f"{name:30s} {r['alone_ms']:9.1f} {r['together_ms']:12.1f} {r['ratio']:5.2f}x {same:>5s}")
    r = folded_vs_package(model_repository)
    same = "yes" if r["same"] else "NO"
    lines.append(f"{'PP-OCR graphs, per demo clip':30s} {'package':>9s} {'folded':>12s} {'ratio':>6s} {'same':>5s}")
    row = f"{r['package_ms']:9.1f} {r['folded_ms']:12.1f} {r['ratio']:5.2f}x {same:>5s}"
    lines.append(f"{'1 clip per step call':30s} {row}")
    lines.append("")
    lines.append(f"{'video_features, sequential':30s} {'p50 ms':>8s} {'p99 ms':>8s}  (7 demo clips x {rounds})")
    for name, r in served(model_repository, rounds).items():
        lines.append(f"{name:30s} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reelserve.loadtests.ocr_bench", description=__doc__.split("\n")[0])
    p.add_argument("--model-repository", type=Path, default=DEFAULT.server.model_repository)
    p.add_argument("--repeats", type=int, default=20, help="OCR runs per frame kind (default %(default)s)")
    p.add_argument("--rounds", type=int, default=6, help="passes over the demo clips per server (default %(default)s)")
    args = p.parse_args(argv)
    print("\n".join(run(args.model_repository, repeats=args.repeats, rounds=args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
