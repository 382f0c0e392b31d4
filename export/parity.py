"""Parity with PyTorch: the one check every exported graph and engine passes, on both targets.

`check_parity` compares what a runtime computed (ONNX Runtime on the CPU export's graphs and on
the GPU target's CPU-runnable graphs, TensorRT on its engines) with the PyTorch outputs of the
same inputs: ids must match exactly, floats row by row with cosine >= MIN_COSINE. `parity_clips`
are the inputs both targets check with: real photos and multilingual titles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from reelserve.config import ReelserveConfig
from reelserve.models.vision_tower import IMAGE_SIZE

MIN_COSINE = 0.999


class ExportError(RuntimeError):
    pass


@dataclass(frozen=True)
class Parity:
    output: str
    max_abs_error: float
    min_cosine: float  # over the rows of the output, flattened past the batch dim

    def as_dict(self) -> dict:
        return asdict(self)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-30)
    return np.where(both_zero, 1.0, cos)


def check_parity(
    reference: Sequence[np.ndarray],
    got: Sequence[np.ndarray],
    output_names: Sequence[str],
    *,
    runtime: str = "ONNX Runtime",
    step: str = "",
    min_cosine: float = MIN_COSINE,
) -> list[Parity]:
    """`got` (from `runtime`) vs the PyTorch `reference`, per output; raises ExportError below `min_cosine`.

    `step` prefixes the output's name in errors (`text_encoder.text_vector`) where one report
    holds several graphs. `min_cosine`: lower only for a graph that computes differently on purpose (int8).
    """
    report = []
    for name, want, have in zip(output_names, reference, got, strict=True):
        where = f"{step}.{name}" if step else name
        if want.shape != have.shape:
            raise ExportError(f"{where}: {runtime} shape {have.shape} != PyTorch {want.shape}")
        if np.issubdtype(want.dtype, np.integer):  # ids (tags, semantic IDs) must match exactly
            wrong = int(np.sum(want != have))
            p = Parity(name, float(np.max(np.abs(want.astype(np.int64) - have.astype(np.int64)), initial=0)), 1.0)
            if wrong:
                raise ExportError(f"{where}: {wrong} of {want.size} ids differ between {runtime} and PyTorch")
        else:
            if not (np.isfinite(have).all() and np.isfinite(want).all()):
                raise ExportError(f"{where}: non-finite values (NaN/inf) in {runtime} or PyTorch output")
            have = have.astype(want.dtype)
            p = Parity(name, float(np.max(np.abs(want - have), initial=0)), float(cosine_rows(want, have).min()))
        report.append(p)
        if not p.min_cosine >= min_cosine:
            raise ExportError(f"{where}: {runtime} vs PyTorch cosine {p.min_cosine:.6f} < {min_cosine}")
    return report


def parity_clips(cfg: ReelserveConfig) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Real photos from scikit-image as 3 short 'clips' (with padding), and multilingual titles."""
    import skimage.data
    from skimage.transform import resize

    photos = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut(), skimage.data.rocket()]
    frames = [(resize(p, (IMAGE_SIZE, IMAGE_SIZE), anti_aliasing=True) * 255).astype(np.uint8) for p in photos]
    t = cfg.video.num_frames
    clip = np.zeros((3, t, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)  # [clips, T, H, W, RGB]
    mask = np.zeros((3, t), bool)  # [clips, T]
    clip[0, :3], mask[0, :3] = frames[0], True
    clip[1, :t], mask[1, :] = np.stack([frames[1], np.fliplr(frames[1])] * (t // 2))[:t], True
    clip[2, :2], mask[2, :2] = [frames[2], frames[3]], True
    titles = ["my cat Chelsea napping", "", "Astronauta en la estación espacial y un cohete"]
    return torch.from_numpy(clip), torch.from_numpy(mask), titles
