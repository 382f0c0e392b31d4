"""int8 variants of the exported fp32 graphs (ONNX Runtime's quantizer): what `int8_bench` measures.

Neither is served: on this CPU they miss the parity bar (docs/decisions.md, "int8 towers"), and
the bench re-measures that on any machine; nor are the int8 PP-OCR models, whose text changes
(docs/benchmarks.md, "Levers tried and not kept"). The text graph is quantized dynamically (int8 weights
per output channel, activations scaled per call) with the two settings that measured best on the
2-core AVX2 machine: `reduce_range` (7-bit weights: without VNNI the u8 x s8 multiply-add
saturates; text-vector cosine min 0.98 -> 0.995) and the feed-forward output projections kept fp32
(the GELU output they read has outliers; 0.9946 -> 0.9974). The vision graph only statically
(scales calibrated on real frames), as a CNN must be; the OCR models likewise, their convolutions
only (per channel, QLinearConv: the other variants measured changed a demo clip's text).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantizer logs advice ("consider pre-processing") on the root logger at WARNING; not ours to print."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def ffn_output_matmuls(path: Path) -> list[str]:
    """Names of the MatMuls that read a GELU's output (the feed-forward down projections)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    producer = {out: node for node in model.graph.node for out in node.output}
    gelu_ops = {"Gelu", "FastGelu", "BiasGelu"}

    def from_gelu(name: str) -> bool:
        node = producer.get(name)
        # the dynamo exporter names the decomposed GELU's output `gelu*` when it is not one op
        return node is not None and (node.op_type in gelu_ops or name.startswith("gelu"))

    return [n.name for n in model.graph.node if n.op_type == "MatMul" and from_gelu(n.input[0])]


def quantize_text_graph(src: Path, dst: Path) -> Path:
    """`src` (fp32 text encoder) -> `dst`, int8 as the module doc says; the fp32 file is not touched."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep_fp32 = ffn_output_matmuls(src)
    if not keep_fp32:
        raise ValueError(f"{src}: no MatMul reads a GELU output; is this a text encoder graph?")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_root_logger():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=keep_fp32,
            extra_options={"MatMulConstBOnly": True},  # weights only: never attention's Q.K^T or P.V
        )
    return dst


def quantize_vision_graph(src: Path, dst: Path, calibration: Iterable[Mapping[str, np.ndarray]]) -> Path:
    """`src` (fp32 vision encoder) -> `dst`: static QDQ int8, per-channel weights, scales from `calibration`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class _Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self):
            return next(self._it, None)

    dst.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_root_logger():
        quantize_static(str(src), str(dst), _Feeds(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True)
    return dst


def quantize_ocr_graph(src: Path, dst: Path, calibration: Iterable[Mapping[str, np.ndarray]]) -> Path:
    """`src` (a PP-OCR detector or recogniser) -> `dst`: static int8 convolutions, scales from `calibration`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self):
            return next(self._it, None)

    dst.parent.mkdir(parents=True, exist_ok=True)
    folded = dst.with_suffix(".folded.onnx")  # BatchNorm folded, constants as initializers: what the quantizer reads
    with _quiet_root_logger():
        quant_pre_process(str(src), str(folded), skip_symbolic_shape=True)  # its symbolic pass fails on these graphs
        quantize_static(
            str(folded), str(dst), _Feeds(), quant_format=QuantFormat.QOperator, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
        )  # fmt: skip
    folded.unlink()
    return dst
