"""torch -> ONNX for the CPU target, and the parity check that guards every exported graph.

Tensors are named for what they are (`frames`, `input_ids`, `token_states`, ...) so the names
in `config.pbtxt` are the contract's, never exporter-generated.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

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


def dynamo_program(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    **options,
):
    """torch.onnx's dynamo exporter with our tensor names and dynamic axes; `options` go to it as they are."""
    dynamic_shapes = tuple(  # positional: a wrapper's argument names need not be the tensor names
        {axis: torch.export.Dim.DYNAMIC for axis in dynamic_axes.get(name, {})} for name in input_names
    )
    return torch.onnx.export(
        module.eval(),
        args,
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_shapes=dynamic_shapes,
        dynamo=True,
        verbose=False,
        **options,
    )


def export_onnx(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> float:
    """Write `path` (weights inside the file, no side `.data`); returns seconds taken."""
    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    program = dynamo_program(
        module, args, input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes, optimize=True
    )
    program.save(str(path), external_data=False)
    return time.perf_counter() - start


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-30)
    return np.where(both_zero, 1.0, cos)


def check_parity(
    session, reference: Sequence[np.ndarray], feeds: Mapping[str, np.ndarray], output_names: Sequence[str]
) -> list[Parity]:
    """Run the ONNX Runtime session on `feeds`, compare with the torch outputs; raise below MIN_COSINE."""
    got = session.run(list(output_names), dict(feeds))
    report = []
    for name, want, have in zip(output_names, reference, got, strict=True):
        if want.shape != have.shape:
            raise ExportError(f"{name}: ONNX Runtime shape {have.shape} != PyTorch {want.shape}")
        if np.issubdtype(want.dtype, np.integer):  # ids (tags, semantic IDs) must match exactly
            wrong = int(np.sum(want != have))
            p = Parity(name, float(np.max(np.abs(want.astype(np.int64) - have.astype(np.int64)), initial=0)), 1.0)
            if wrong:
                raise ExportError(f"{name}: {wrong} of {want.size} ids differ between ONNX Runtime and PyTorch")
        else:
            if not (np.isfinite(have).all() and np.isfinite(want).all()):
                raise ExportError(f"{name}: non-finite values (NaN/inf) in ONNX Runtime or PyTorch output")
            p = Parity(name, float(np.max(np.abs(want - have), initial=0)), float(cosine_rows(want, have).min()))
        report.append(p)
        if not p.min_cosine >= MIN_COSINE:
            raise ExportError(f"{name}: ONNX Runtime vs PyTorch cosine {p.min_cosine:.6f} < {MIN_COSINE}")
    return report
