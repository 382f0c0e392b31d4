"""What on-screen text costs: OCR time per frame, and `video_features` latency with OCR on vs off.

Per frame: the `ocr` step's reader (PP-OCRv4 through `rapidocr-onnxruntime`, our settings) on
frames of the sizes uploads arrive in after `preprocess` caps them (longer side <= 960 px), with
two printed lines and with none. Served: the same repository twice, as exported and with
`ocr_frames` set to 0 in its configs (artifacts linked, not copied), sequential calls of the demo
clips. Run: `python -m reelserve.loadtests.ocr_bench`.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from reelserve.config import DEFAULT

SIZES = ((288, 512), (360, 640), (540, 960))  # (width, height): the demo clips, 360p, a 720p/1080p upload capped
CAPTION = "FRESH COFFEE\nonly $3.50 today"


def _ms(samples: list[float]) -> dict:
    ms = sorted(x * 1000 for x in samples)
    return {"p50_ms": statistics.median(ms), "p90_ms": ms[min(len(ms) - 1, int(0.9 * len(ms)))], "n": len(ms)}


def per_frame(repeats: int = 20) -> list[dict]:
    """OCR time of one frame, by frame size, with and without printed text."""
    from reelserve.samples import draw_caption, ken_burns_frames, load_photo
    from reelserve.serving.ocr import OnScreenTextReader

    o = DEFAULT.ocr
    reader = OnScreenTextReader(min_score=o.min_score, threads=o.ort_threads)
    rows = []
    for size in SIZES:
        for caption in (CAPTION, ""):
            (frame,) = draw_caption(ken_burns_frames(load_photo("coffee"), n=1, size=size), caption)
            lines = reader.read(frame)  # warm-up (ORT allocates on the first run of a shape)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                reader.read(frame)
                times.append(time.perf_counter() - start)
            rows.append({"size": f"{size[0]}x{size[1]}", "text": bool(caption), "lines": len(lines), **_ms(times)})
    return rows


def ocr_off_repository(src: Path, dst: Path) -> Path:
    """`src` with `ocr_frames` 0 in every config: same artifacts (symlinked), OCR off."""
    for model in sorted(p for p in Path(src).iterdir() if (p / "config.pbtxt").exists()):
        (dst / model.name).mkdir(parents=True)
        config = (model / "config.pbtxt").read_text()
        config = re.sub(r'(key: "ocr_frames" value: \{ string_value: )"\d+"', r'\1"0"', config)
        (dst / model.name / "config.pbtxt").write_text(config)
        for version in (p for p in model.iterdir() if p.is_dir()):
            (dst / model.name / version.name).mkdir()
            for f in version.iterdir():
                (dst / model.name / version.name / f.name).symlink_to(f.resolve())
    return dst


def served(model_repository: Path, rounds: int = 6) -> dict[str, dict]:
    """Sequential `video_features` over the demo clips, OCR on (as exported) and off."""
    from reelserve import contract as c
    from reelserve.client import VideoFeaturesClient
    from reelserve.samples import demo_videos
    from reelserve.server import TritonServer, on_free_ports

    videos = demo_videos()
    clips = [v.render() for v in videos]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="reelserve-ocr-off-") as tmp:
        repos = {
            f"OCR on ({DEFAULT.ocr.frames} frames)": Path(model_repository),
            "OCR off": ocr_off_repository(Path(model_repository), Path(tmp)),
        }
        for name, repo in repos.items():
            with TritonServer(on_free_ports(DEFAULT.server, repo)) as server:
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
    lines = [f"{'OCR per frame (W x H)':24s} {'printed text':>13s} {'lines':>6s} {'p50 ms':>8s} {'p90 ms':>8s}"]
    for r in per_frame(repeats):
        text = "2 lines" if r["text"] else "none"
        lines.append(f"{r['size']:24s} {text:>13s} {r['lines']:6d} {r['p50_ms']:8.1f} {r['p90_ms']:8.1f}")
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
