"""Printed text on video frames -> lines in reading order, with PP-OCR (`rapidocr-onnxruntime`).

The package holds the whole pipeline (DB text detection and its box post-processing, crop and
rectify, CRNN recognition, CTC decoding, boxes sorted top-to-bottom, left-to-right); we choose its
settings, call its steps over many frames at once, and merge what it reads on the frames of a clip:

- detection at the frame's own resolution (`limit_type: max`): the package's default scales the
  shorter side *up* to 736 px, 3x the work on a 288x512 phone clip for no better reading;
- no angle classifier: text burned into a video is upright, and the classifier costs a model call
  per line;
- the step opens the repository's copies of the package's two graphs, with their scalar affine
  layers folded into the convolutions (`export/ocr_graphs.py`: the same lines, 1.3x faster), with
  our session options (idle worker threads do not spin: the other steps need those cores; see
  `onnx_runtime.ort_session`); without `graphs`, the package's own graphs, the reference;
- every frame of a step call is read at once: same-size frames go through the detector
  `DETECT_BATCH` at a time, and the lines found on all of them through the recogniser in one call
  (which sorts them by width and pads each session batch to its widest, as the package does for
  the lines of one frame): 1.09-1.13x the clips/s of frame-by-frame reads, the same lines on every
  clip measured (docs/benchmarks.md, "OCR across the frames of a step call"). These are the
  package's own steps in its order, so `rapidocr-onnxruntime` is pinned.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .onnx_runtime import ort_session

_WHITESPACE = re.compile(r"\s+")
DETECT_BATCH = 2  # same-size frames per detector run: larger batches were no faster on 2 cores
GRAPH_FILES = {"detector": "ocr_detector.onnx", "recogniser": "ocr_recogniser.onnx"}  # in the `ocr` step's folder


def repository_graphs(version_dir: Path) -> dict[str, Path]:
    """The folded PP-OCR graphs the export wrote for the `ocr` step, by model."""
    return {name: version_dir / file for name, file in GRAPH_FILES.items()}


def line_key(line: str) -> str:
    """Lines that differ only in case or spacing are the same line seen twice (OCR drops or adds spaces)."""
    return _WHITESPACE.sub("", line).casefold()


def merge_lines(frames_lines: Iterable[Sequence[str]], max_chars: int) -> str:
    """Lines of every frame, in clip order then reading order, each kept once; joined by newlines."""
    seen: set[str] = set()
    kept: list[str] = []
    size = 0
    for lines in frames_lines:
        for raw in lines:
            line = _WHITESPACE.sub(" ", raw).strip()
            key = line_key(line)
            if not key or key in seen:
                continue
            if size + len(line) > max_chars:
                return "\n".join(kept)
            seen.add(key)
            kept.append(line)
            size += len(line) + 1
    return "\n".join(kept)


class OnScreenTextReader:
    """One PP-OCR pipeline (detector + recogniser), loaded once per `ocr` step instance."""

    def __init__(self, *, min_score: float = 0.5, threads: int = 0, graphs: Mapping[str, Path] | None = None) -> None:
        """`graphs`: the models' ONNX files by name (`GRAPH_FILES`'s keys); None: the package's own."""
        from rapidocr_onnxruntime import RapidOCR

        self.min_score = min_score
        self.engine = RapidOCR(
            det_limit_type="max",
            det_limit_side_len=960,  # the package's floor for "max"; frames come to us capped lower
            text_score=min_score,
            use_cls=False,
        )
        self._normalised: dict[tuple[float, ...], np.ndarray] = {}  # detector_input's tables
        for name, runner in self.runners.items():
            path = graphs[name] if graphs is not None else getattr(runner.session, "_model_path", None)
            if path:  # ORT keeps the file it loaded; else keep the package's session (its idle threads spin)
                runner.session = ort_session(Path(path), threads)

    def graph_paths(self) -> dict[str, Path]:
        """The ONNX file each model was loaded from, by name."""
        return {name: Path(runner.session._model_path) for name, runner in self.runners.items()}

    @property
    def runners(self) -> dict[str, object]:
        """The package's holders of the two ONNX Runtime sessions (`.session`), by model."""
        return {"detector": self.engine.text_det.infer, "recogniser": self.engine.text_rec.session}

    def read(self, rgb: np.ndarray) -> list[str]:
        """Lines printed on one RGB uint8 frame [H, W, 3], top to bottom; [] when it shows no text."""
        return self.read_frames([rgb])[0]

    def read_alone(self, rgb: np.ndarray) -> list[str]:
        """One frame through the package's own pipeline: the reference `read_frames` must equal, and
        the frame-by-frame baseline `loadtests.ocr_bench` times it against."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 8:
            return []
        result, _ = self.engine(np.ascontiguousarray(rgb[:, :, ::-1]), use_cls=False)
        return [text for _box, text, score in result or [] if float(score) >= self.min_score and text.strip()]

    def detector_input(self, image: np.ndarray) -> np.ndarray | None:
        """The package's detector pre-processing of a BGR uint8 image (resize to multiples of 32, scale,
        normalise, CHW), bit for bit; None when the image is too small to resize.

        The package normalises in float64 and then casts: 3-8 ms for a 288x512 frame. Pixels are uint8,
        so the same arithmetic on the 256 values of each channel, looked up, gives the same floats in
        0.7 ms.
        """
        pre = self.engine.text_det.get_preprocess(max(image.shape[:2]))
        resized = pre.resize(image)
        if resized is None or resized.dtype != np.uint8 or resized.ndim != 3 or resized.shape[2] != 3:
            return None if resized is None else pre(image)
        key = (pre.scale, *np.asarray(pre.mean).ravel(), *np.asarray(pre.std).ravel())
        table = self._normalised.get(key)
        if table is None:  # the package's own expression, on every uint8 value: [256, 3] float32
            values = np.arange(256).astype("float32")[:, None]
            table = self._normalised[key] = ((values * pre.scale - pre.mean) / pre.std).astype(np.float32)
        out = np.empty((1, 3, *resized.shape[:2]), np.float32)
        for channel in range(3):
            np.take(table[:, channel], resized[:, :, channel], out=out[0, channel])
        return out

    def read_frames(self, frames: Sequence[np.ndarray]) -> list[list[str]]:
        """Lines printed on each frame (as `read`), detecting and recognising across the frames."""
        engine, detector = self.engine, self.engine.text_det
        images: dict[int, np.ndarray] = {}  # frame index -> BGR image the detector saw (boxes are in its pixels)
        by_shape: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = defaultdict(list)
        for i, rgb in enumerate(frames):
            if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 8:
                continue
            bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # the package's convention for arrays (OpenCV's)
            image, _, _ = engine.preprocess(bgr)
            image, _ = engine.maybe_add_letterbox(image, {})
            tensor = self.detector_input(image)
            if tensor is None:
                continue
            images[i] = image
            by_shape[tensor.shape].append((i, tensor))
        crops: list[np.ndarray] = []
        owners: list[int] = []
        for group in by_shape.values():
            for start in range(0, len(group), DETECT_BATCH):
                chunk = group[start : start + DETECT_BATCH]
                (maps,) = detector.infer(np.concatenate([t for _, t in chunk]))[:1]
                for (i, _), probability in zip(chunk, maps, strict=True):
                    shape = images[i].shape[:2]
                    boxes, _ = detector.postprocess_op(probability[None], shape)
                    boxes = detector.filter_tag_det_res(boxes, shape)
                    if len(boxes) == 0:
                        continue
                    found = engine.get_crop_img_list(images[i], engine.sorted_boxes(boxes))
                    crops += found
                    owners += [i] * len(found)
        lines: list[list[str]] = [[] for _ in frames]
        if crops:
            recognised, _ = engine.text_rec(crops)
            for i, (text, score, *_) in zip(owners, recognised, strict=True):
                if float(score) >= self.min_score and text.strip():
                    lines[i].append(text)
        return lines

    def read_clips(self, clips: Sequence[Sequence[np.ndarray]], max_chars: int) -> list[str]:
        """Each clip's printed text (as `read_clip`), reading the frames of every clip together."""
        flat = [frame for frames in clips for frame in frames]
        lines = self.read_frames(flat)
        texts, start = [], 0
        for frames in clips:
            texts.append(merge_lines(lines[start : start + len(frames)], max_chars))
            start += len(frames)
        return texts

    def read_clip(self, frames: Sequence[np.ndarray], max_chars: int) -> str:
        """The clip's printed text: lines of every frame in order, repeated lines once."""
        return self.read_clips([frames], max_chars)[0]
