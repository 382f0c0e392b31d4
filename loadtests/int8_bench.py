"""int8 towers vs fp32: speed and parity, the evidence for which precision serves on CPU.

Text: the served int8 text graph (`export/quantize.py`) and the fp32 graph it was quantized from
(exported afresh here), run as a step would run them, on real texts (every 40th ImageNet-21k concept
name, the default bank's prompts, the demo titles): the text vector's and the item embedding's
cosine to fp32 (the embedding is centred on the class-name mean, which removes the common component
and so magnifies relative error), and what a recommender sees: semantic IDs (full code, level 1) and
the default bank's top label agreement. Batch invariance: the same texts alone vs in batches of 16
(activations are scaled per token, so equal). Speed: texts/s on short multilingual comments. Vision:
static int8 (QDQ, per-channel, calibrated on frames of four demo clips) vs fp32 on the frames of the
three others: logits cosine, top-1 agreement, frames/s. `INT8_MIN_COSINE` is the bar a graph must
clear to be served. OCR: the `ocr` step's PP-OCRv4 detector and recogniser as served (folded,
`export/ocr_graphs.py`), int8 convolutions calibrated on the demo clips' frames
(`export/quantize.py`): ms per demo clip of each model, the demo clips' text, and on held-out
captioned frames (captions x photos x sizes) whether the lines stay the same and whether each reads
the caption exactly. `OCR_MIN_SAME` is the share of frames that must keep their lines.

Run: `python -m reelserve.loadtests.int8_bench` (also the `int8` row of `make bench`).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from reelserve.config import DEFAULT
from reelserve.export.quantize import INT8_MIN_COSINE
from reelserve.spec import contract as c

CONCEPT_STRIDE = 40  # every 40th concept name: ~550 texts
BATCH = 16
OCR_MIN_SAME = 0.99
OCR_CAPTIONS = (
    "FRESH COFFEE\nonly $3.50 today", "SALE 50% OFF\nthis weekend only", "Best espresso in town\nopen daily 7am to 5pm",
    "你好，世界\n今天天气很好", "限时优惠 5折\n仅此一天", "Subscribe for more\n#travel #food",
    "Episode 12: the final race", "Breaking news\nlive from the studio", "DIY tips 101\nstep 3 of 5",
    "Merry Christmas 2026!",
)  # fmt: skip
OCR_PHOTOS = ("coffee", "astronaut", "chelsea", "rocket", "camera")
OCR_SIZES = ((288, 512), (360, 640), (540, 960))  # the demo clips; 360p capped at 640 (default); a 960 cap


def _row(output: str, items: int, cos: np.ndarray | None = None, agree: np.ndarray | None = None) -> dict:
    row: dict = {"output": output, "items": items}
    if cos is not None:
        row |= {"min_cosine": round(float(cos.min()), 6), "mean_cosine": round(float(cos.mean()), 6)}
    if agree is not None:
        row["agreement"] = round(float(np.mean(agree)), 4)
    return row


@torch.no_grad()
def _text_only(heads, vectors: np.ndarray):
    """The exported heads on text vectors, as `text_features` runs them (no frames)."""
    n = len(vectors)
    logits, frame_mask = torch.zeros(n, 1, heads.class_embeddings.shape[0]), torch.zeros(n, 1, dtype=torch.bool)
    return heads(logits, frame_mask, torch.from_numpy(vectors))


def _texts_per_s(graph: Path, tokenizer, texts: Sequence[str], batch: int) -> float:
    """Texts/s of `graph` on `texts` in the given order, `batch` per call (session opened and warmed first)."""
    from reelserve.serving.onnx_runtime import ort_session

    session = ort_session(graph, threads=0)
    calls = [tokenizer.encode(list(texts[i : i + batch]))[:2] for i in range(0, len(texts), batch)]
    session.run(None, {c.INPUT_IDS.name: calls[0][0], c.ATTENTION_MASK.name: calls[0][1]})
    start = time.perf_counter()
    for ids, mask in calls:
        session.run(None, {c.INPUT_IDS.name: ids, c.ATTENTION_MASK.name: mask})
    return len(texts) / (time.perf_counter() - start)


def text_rows(repository: Path, work: Path) -> tuple[list[dict], list[str]]:
    """-> parity rows, speed lines."""
    from reelserve.export.concepts import imagenet_21k_concepts
    from reelserve.export.cpu import served_text_tower, write_text_graph
    from reelserve.export.parity import cosine_rows
    from reelserve.export.text_embedding import embed_with_graph
    from reelserve.models.heads import load_fusion_heads
    from reelserve.models.text_vector import TextVector
    from reelserve.samples import comments, demo_videos

    tower, tokenizer = served_text_tower(repository, DEFAULT)
    sample = [torch.from_numpy(x) for x in tokenizer.encode(["a short title", "a somewhat longer title"])[:2]]
    fp32_graph = write_text_graph(TextVector(tower), tuple(sample), work / "text_fp32.onnx")  # as the export writes it
    int8_graph = repository / c.TEXT_ENCODER / "1" / "model.onnx"  # as served
    heads, _ = load_fusion_heads(repository / c.FUSION_HEADS / "1")
    h = DEFAULT.heads
    concepts = [h.class_prompt.format(name=k.name) for k in imagenet_21k_concepts()[::CONCEPT_STRIDE]]
    texts = [*concepts, *h.labels, *(v.title for v in demo_videos())]

    fp32 = embed_with_graph(fp32_graph, tokenizer, texts, batch=BATCH)  # fp32 is batch-invariant
    alone = embed_with_graph(int8_graph, tokenizer, texts, batch=1)
    batched = embed_with_graph(int8_graph, tokenizer, texts, batch=BATCH)
    ref, q, qb = (_text_only(heads, v) for v in (fp32, alone, batched))

    def codes(out) -> np.ndarray:
        return out.semantic_ids.numpy()

    n = len(texts)
    rows = [
        _row("text vector", n, cos=cosine_rows(fp32, alone)),
        _row("embedding (centred)", n, cos=cosine_rows(ref.embedding.numpy(), q.embedding.numpy())),
        _row("semantic IDs, full code", n, agree=(codes(ref) == codes(q)).all(1)),
        _row("semantic IDs, level 1", n, agree=codes(ref)[:, 0] == codes(q)[:, 0]),
        _row("top label, default bank", n, agree=(ref.label_scores.argmax(1) == q.label_scores.argmax(1)).numpy()),
        _row("int8 alone vs in a batch", n, cos=cosine_rows(q.embedding.numpy(), qb.embedding.numpy()),
             agree=(codes(q) == codes(qb)).all(1)),
    ]  # fmt: skip
    short = comments(512)
    speeds = {
        f"fp32, {BATCH} per call": _texts_per_s(fp32_graph, tokenizer, short, BATCH),
        "int8, alone (batch-invariant)": _texts_per_s(int8_graph, tokenizer, short, 1),
        f"int8, {BATCH} per call": _texts_per_s(int8_graph, tokenizer, short, BATCH),
    }
    base = next(iter(speeds.values()))
    lines = [f"text encoder on comments: {name} {tps:.0f} texts/s ({tps / base:.2f}x)" for name, tps in speeds.items()]
    return rows, lines


def vision_rows(repository: Path, work: Path) -> tuple[list[dict], list[str]]:
    """-> parity rows, speed lines (static int8 of the vision graph)."""
    from reelserve.export.parity import cosine_rows
    from reelserve.export.quantize import quantize_vision_graph
    from reelserve.samples import demo_videos
    from reelserve.serving.onnx_runtime import ort_session
    from reelserve.serving.video_decode import decode_clip

    clips = [decode_clip(v.render(narrate=False)) for v in demo_videos()]
    frames = [k.frames[k.mask] for k in clips]
    calibration, test = np.concatenate(frames[:4]), np.concatenate(frames[4:])
    fp32_graph = repository / c.VISION_ENCODER / "1" / "model.onnx"
    feeds = ({c.FRAMES.name: calibration[i : i + 1]} for i in range(len(calibration)))
    int8_graph = quantize_vision_graph(fp32_graph, work / "vision_int8.onnx", feeds)
    logits, speeds = {}, {}
    for name, graph in (("fp32", fp32_graph), ("int8 static", int8_graph)):
        session = ort_session(graph, threads=0)
        session.run(None, {c.FRAMES.name: test})  # warm-up
        start = time.perf_counter()
        logits[name] = session.run(None, {c.FRAMES.name: test})[0]
        speeds[name] = len(test) / (time.perf_counter() - start)
    ref, q = logits["fp32"], logits["int8 static"]
    rows = [
        _row("frame logits", len(test), cos=cosine_rows(ref, q)),
        _row("top-1 class (the top tag)", len(test), agree=ref.argmax(1) == q.argmax(1)),
    ]
    base = speeds["fp32"]
    lines = [f"vision encoder: {name} {fps:.0f} frames/s ({fps / base:.2f}x)" for name, fps in speeds.items()]
    return rows, lines


def _ms_per_clip(session, feeds: Sequence[dict], clips: int, rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for f in feeds:
            session.run(None, f)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / clips * 1000


def ocr_rows(
    work: Path,
    *,
    captions: Sequence[str] = OCR_CAPTIONS,
    photos: Sequence[str] = OCR_PHOTOS,
    sizes: Sequence[tuple[int, int]] = OCR_SIZES,
    graphs: Mapping[str, Path] | None = None,
) -> tuple[list[dict], list[str]]:
    """-> parity rows, speed lines (static int8 of the OCR detector and recogniser).

    `graphs`: the fp32 graphs to quantize and compare with (the served, folded ones); None: the package's.
    """
    from reelserve.export.quantize import quantize_ocr_graph
    from reelserve.samples import draw_caption, ken_burns_frames, load_photo
    from reelserve.serving.ocr import OnScreenTextReader, line_key
    from reelserve.serving.onnx_runtime import RecordingSession, ort_session

    from .ocr_bench import demo_clip_frames

    reader = OnScreenTextReader(min_score=DEFAULT.ocr.min_score, threads=DEFAULT.ocr.ort_threads, graphs=graphs)
    clips, max_chars = demo_clip_frames(), DEFAULT.ocr.max_chars
    recorders = {name: RecordingSession(runner.session) for name, runner in reader.runners.items()}

    def read_with(sessions: dict, frames: Sequence[np.ndarray]) -> tuple[list[str], list[list[str]]]:
        for name, runner in reader.runners.items():
            runner.session = sessions[name]
        return reader.read_clips(clips, max_chars), reader.read_frames(frames)

    cases = list(itertools.product(photos, captions, sizes))
    frames = [draw_caption(ken_burns_frames(load_photo(p), n=1, size=size), text)[0] for p, text, size in cases]
    read_with(recorders, [])  # records the demo clips' model inputs: calibration and timing feeds
    fp32 = {name: r.session for name, r in recorders.items()}
    threads = DEFAULT.ocr.ort_threads  # as the step opens its sessions (the reader's fp32 ones too)
    int8 = {
        name: ort_session(quantize_ocr_graph(Path(r.session._model_path), work / f"ocr_{name}.onnx", r.feeds), threads)
        for name, r in recorders.items()
    }
    (clips32, frames32), (clips8, frames8) = read_with(fp32, frames), read_with(int8, frames)

    def keys(lines: Sequence[str]) -> list[str]:
        return [line_key(x) for x in lines]

    def same(a: Sequence, b: Sequence, key=lambda lines: lines) -> np.ndarray:
        return np.array([key(x) == key(y) for x, y in zip(a, b, strict=True)])

    captions_read = [text.splitlines() for _, text, _ in cases]
    rows = [
        _row("demo clips: same text", len(clips), agree=same(clips32, clips8)),
        _row("captioned frames: same lines", len(frames), agree=same(frames32, frames8)),
        _row("  same up to case and spaces", len(frames), agree=same(frames32, frames8, keys)),
        _row("  caption read exactly: fp32", len(frames), agree=same(frames32, captions_read, keys)),
        _row("  caption read exactly: int8", len(frames), agree=same(frames8, captions_read, keys)),
    ]
    lines = []
    for name, r in recorders.items():
        ms32 = _ms_per_clip(fp32[name], r.feeds, len(clips))
        ms8 = _ms_per_clip(int8[name], r.feeds, len(clips))
        lines.append(f"OCR {name}: fp32 {ms32:.1f} ms/clip, int8 {ms8:.1f} ms/clip ({ms32 / ms8:.2f}x)")
    return rows, lines


def ocr_verdict(rows: list[dict]) -> str:
    """Served only if every demo clip reads the same and `OCR_MIN_SAME` of the captioned frames keep their lines."""
    clips, frames = rows[0]["agreement"], rows[1]["agreement"]
    ok = clips == 1.0 and frames >= OCR_MIN_SAME
    return (
        f"-> {'servable' if ok else 'not served'}: same text on {clips:.0%} of demo clips and same lines on "
        f"{frames:.1%} of captioned frames (bar 100% and {OCR_MIN_SAME:.0%})"
    )


def format_rows(title: str, rows: list[dict]) -> list[str]:
    lines = [f"{title:32s} {'items':>6s} {'min cos':>9s} {'mean cos':>9s} {'agree':>7s}"]
    for r in rows:
        cos = f"{r['min_cosine']:9.5f} {r['mean_cosine']:9.5f}" if "min_cosine" in r else " " * 19
        agree = f"{r['agreement']:7.1%}" if "agreement" in r else ""
        lines.append(f"{r['output']:32s} {r['items']:6d} {cos} {agree}".rstrip())
    return lines


def verdict(rows: list[dict]) -> str:
    worst = min(r["min_cosine"] for r in rows if "min_cosine" in r and "alone vs" not in r["output"])
    ok = worst >= INT8_MIN_COSINE
    return f"-> {'servable' if ok else 'not served'}: worst cosine to fp32 {worst:.4f} (bar {INT8_MIN_COSINE})"


def run(repository: Path) -> list[str]:
    """Both towers and the OCR models; -> printable lines."""
    from reelserve.serving.ocr import repository_graphs

    with tempfile.TemporaryDirectory(prefix="reelserve-int8-") as tmp:
        text, text_speed = text_rows(repository, Path(tmp))
        vision, vision_speed = vision_rows(repository, Path(tmp))
        ocr, ocr_speed = ocr_rows(Path(tmp), graphs=repository_graphs(repository / c.OCR / "1"))  # as served
    return [
        *format_rows("int8 text graph vs fp32", text), verdict(text), *text_speed,
        *format_rows("int8 vision graph vs fp32", vision), verdict(vision), *vision_speed,
        *format_rows("int8 OCR models vs fp32", ocr), ocr_verdict(ocr), *ocr_speed,
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reelserve.loadtests.int8_bench", description=__doc__.split("\n")[0])
    p.add_argument("--model-repository", type=Path, default=DEFAULT.server.model_repository)
    args = p.parse_args(argv)
    print("\n".join(run(args.model_repository)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
