"""torch -> ONNX with the dynamo exporter, for both targets (the GPU one adds its plugin nodes).

Tensors are named for what they are (`frames`, `input_ids`, `text_vector`, ...) so the names
in `config.pbtxt` are the contract's, never exporter-generated.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch


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
