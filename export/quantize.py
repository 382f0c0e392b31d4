"""int8 variants of the exported fp32 graphs: the text graph serves; `int8_bench` measures all three.

The text graph: SmoothQuant-style per-channel smoothing calibrated on held-out texts, then u8
activations scaled per token times s8 weights per output column (Q, K and V as one MatMul), the feed-forward
down projections weight-only int8 (MatMulNBits): centred-embedding cosine to fp32 >= 0.997 on
this 2-core machine (docs/decisions.md, "The text tower serves int8 on CPU"). The vision graph
only statically (scales calibrated on real frames), as a CNN must be: it misses the parity bar
and is not served; nor are the int8 PP-OCR models (their convolutions only, per channel,
QLinearConv), whose text changes (docs/benchmarks.md, "Levers tried and not kept").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
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

    return _ffn_output_matmuls(onnx.load(str(path), load_external_data=False).graph)


def _ffn_output_matmuls(graph) -> list[str]:
    producer = {out: node for node in graph.node for out in node.output}
    gelu_ops = {"Gelu", "FastGelu", "BiasGelu"}

    def from_gelu(name: str) -> bool:
        node = producer.get(name)
        # the dynamo exporter names the decomposed GELU's output `gelu*` when it is not one op
        return node is not None and (node.op_type in gelu_ops or name.startswith("gelu"))

    return [n.name for n in graph.node if n.op_type == "MatMul" and from_gelu(n.input[0])]


INT8_MIN_COSINE = 0.995  # the bar an int8 graph's outputs clear against fp32 to be served (the issue's)
SMOOTHING_ALPHA = 0.5  # SmoothQuant's migration strength: half of each channel's range moves into the weights
FUSED_SMOOTHING_ALPHA = 0.6  # Q, K and V share one smoothing (one MatMul): the best of 0.4-0.7 there (measured)
# u8 x s8 without VNNI (AVX2's vpmaddubsw) adds products in pairs into int16, which saturates past 32767:
# |activation| <= ACTIVATION_LEVELS around ACTIVATION_ZERO_POINT and |weight| <= WEIGHT_LEVELS keep every pair inside.
ACTIVATION_LEVELS, ACTIVATION_ZERO_POINT, WEIGHT_LEVELS = 127, 128, 63
WEIGHT_BLOCK = 64  # weight-only int8: one scale per 64 weights of a column (k128 is faster but not batch-invariant)


def text_calibration_feeds(tokenizer, class_prompt: str, batch: int = 16) -> Iterator[dict[str, np.ndarray]]:
    """Token feeds of texts the int8 parity check never reads: every 60th concept from the 17th, 200 comments.

    `int8_bench` measures parity on every 40th concept (disjoint: 17 + 60k is odd, 40j even) and the demo titles.
    """
    from reelserve.samples import comments
    from reelserve.spec import contract as c

    from .concepts import imagenet_21k_concepts

    texts = [class_prompt.format(name=k.name) for k in imagenet_21k_concepts()[17::60]] + comments(200, seed=7)
    for i in range(0, len(texts), batch):
        ids, mask = tokenizer.encode(texts[i : i + batch])[:2]
        yield {c.INPUT_IDS.name: ids, c.ATTENTION_MASK.name: mask}


def _channel_max(model, tensors: list[str], calibration: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """max |x| per last-axis channel of each tensor over the calibration feeds (padding tokens left out)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from reelserve.spec import contract as c

    kept = len(model.graph.output)
    model.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in tensors)
    try:  # probe outputs on the model itself for as long as it takes to open a session (no second copy)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    finally:
        del model.graph.output[kept:]
    amax: dict[str, np.ndarray] = {}
    for feeds in calibration:
        mask = np.asarray(feeds.get(c.ATTENTION_MASK.name, [])).astype(bool)
        for name, x in zip(tensors, session.run(tensors, dict(feeds)), strict=True):
            rows = x[mask] if x.shape[:-1] == mask.shape else x.reshape(-1, x.shape[-1])
            amax[name] = np.maximum(amax.get(name, 0.0), np.abs(rows).max(0))
    if not amax:
        raise ValueError("no calibration feeds")
    return amax


def _blockwise_int8(w: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """[K, N] fp32 -> MatMulNBits' 8-bit B [N, K/block, block] (uint8, zero point 128) and scales [N * K/block].

    Our own packing: ONNX Runtime 1.32's 8-bit MatMulNBits quantizer rounds to 16 levels (measured).
    """
    k, n = w.shape
    blocks = w.T.reshape(n, k // block, block)
    scale = np.abs(blocks).max(-1) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(blocks / scale[..., None]), -127, 127).astype(np.int16) + 128
    return q.astype(np.uint8), scale.astype(np.float32).reshape(-1)


def _smoothing(amax: np.ndarray, weights: Sequence[np.ndarray]) -> np.ndarray:
    """Per input channel: what the activation is divided by and the weights' rows multiplied by.

    SmoothQuant's amax^a / wmax^(1-a): one weight, a = `SMOOTHING_ALPHA`; weights that read one
    activation and run as one MatMul (Q, K, V) share it, over their row ranges' geometric mean,
    a = `FUSED_SMOOTHING_ALPHA` (docs/decisions.md, "The text tower serves int8 on CPU").
    """
    alpha = SMOOTHING_ALPHA if len(weights) == 1 else FUSED_SMOOTHING_ALPHA
    row_range = np.exp(np.mean([np.log(np.maximum(np.abs(w).max(1), 1e-5)) for w in weights], 0))
    return np.maximum(amax, 1e-5) ** alpha / row_range ** (1 - alpha)


def quantize_text_graph(src: Path, dst: Path, calibration: Iterable[Mapping[str, np.ndarray]]) -> Path:
    """`src` (fp32 text encoder) -> `dst`: every weight MatMul int8, activations scaled per token.

    Per token (each row its own scale, so a text's vector does not depend on its batch), after
    SmoothQuant smoothing (`_smoothing`, channel ranges from `calibration`): u8 x s8
    MatMulIntegerToFloat, weights per output column; MatMuls that read the same activation (Q, K,
    V) run as one and split after, so the activation is quantized once. The feed-forward down
    projections are weight-only int8 (MatMulNBits, `WEIGHT_BLOCK`) instead: the GELU output they
    read has outlier channels that per-token int8 cannot hold. Measured choices: docs/decisions.md,
    "The text tower serves int8 on CPU".
    """
    import onnx
    from onnx import helper
    from onnx import numpy_helper as nh

    model = onnx.load(str(src))
    weights = {i.name: i for i in model.graph.initializer}
    targets = [
        n for n in model.graph.node if n.op_type == "MatMul" and len(getattr(weights.get(n.input[1]), "dims", ())) == 2
    ]
    down = set(_ffn_output_matmuls(model.graph))
    if not down:
        raise ValueError(f"{src}: no MatMul reads a GELU output; is this a text encoder graph?")
    weight_only = {n.name for n in targets if n.name in down and weights[n.input[1]].dims[0] % WEIGHT_BLOCK == 0}
    readers: dict[str, list] = {}  # activation -> the per-token MatMuls that read it, in graph order
    for n in targets:
        if n.name not in weight_only:
            readers.setdefault(n.input[0], []).append(n)
    amax = _channel_max(model, sorted(readers), calibration)
    assert 2 * (ACTIVATION_ZERO_POINT + ACTIVATION_LEVELS) * WEIGHT_LEVELS <= 32767, "int16 pair sums saturate"
    consts = {
        "rq_levels": np.float32(ACTIVATION_LEVELS), "rq_zp": np.uint8(ACTIVATION_ZERO_POINT),
        "rq_one": np.float32(1.0), "rq_eps": np.float32(1e-12), "rq_axes": np.array([-1], np.int64),
    }  # fmt: skip
    model.graph.initializer.extend(nh.from_array(np.asarray(v), k) for k, v in consts.items())
    first_reader = {id(group[0]): group for group in readers.values()}
    rewrite = {id(n) for n in targets}
    nodes, dropped = [], set()
    for node in model.graph.node:
        if id(node) not in rewrite:
            nodes.append(node)
            continue
        a, b = node.input
        if node.name in weight_only:
            w = nh.to_array(weights[b]).astype(np.float32)
            dropped.add(b)
            q, scale = _blockwise_int8(w, WEIGHT_BLOCK)
            model.graph.initializer.extend([nh.from_array(q, f"{b}_q8"), nh.from_array(scale, f"{b}_q8_scale")])
            nodes.append(helper.make_node(
                "MatMulNBits", [a, f"{b}_q8", f"{b}_q8_scale"], list(node.output), name=f"{node.name}_q8",
                domain="com.microsoft", K=w.shape[0], N=w.shape[1], bits=8, block_size=WEIGHT_BLOCK, accuracy_level=4,
            ))  # fmt: skip
            continue
        group = first_reader.get(id(node))
        if group is None:
            continue  # runs inside the first MatMul that reads the same activation
        ws = [nh.to_array(weights[n.input[1]]).astype(np.float32) for n in group]
        dropped.update(n.input[1] for n in group)
        smooth = _smoothing(amax[a], ws)
        w = np.concatenate(ws, axis=1) * smooth[:, None]
        scale = np.abs(w).max(0) / WEIGHT_LEVELS
        scale[scale == 0] = 1.0
        model.graph.initializer.extend([
            nh.from_array(np.rint(w / scale).astype(np.int8), f"{b}_s8"),
            nh.from_array(scale.astype(np.float32), f"{b}_s8_scale"),
            nh.from_array((1.0 / smooth).astype(np.float32), f"{b}_smooth"),
        ])  # fmt: skip
        t = (node.name or b) + "_rq_"
        out = list(node.output) if len(group) == 1 else [t + "out"]
        nodes += [
            helper.make_node("Mul", [a, f"{b}_smooth"], [t + "x"]),
            helper.make_node("Abs", [t + "x"], [t + "abs"]),
            helper.make_node("ReduceMax", [t + "abs", "rq_axes"], [t + "max"], keepdims=1),
            helper.make_node("Max", [t + "max", "rq_eps"], [t + "max_"]),
            helper.make_node("Div", [t + "max_", "rq_levels"], [t + "scale"]),  # per token
            helper.make_node("Div", [t + "x", t + "scale"], [t + "xs"]),
            helper.make_node("QuantizeLinear", [t + "xs", "rq_one", "rq_zp"], [t + "u8"]),  # rounds half to even
            helper.make_node(
                "MatMulIntegerToFloat",
                [t + "u8", f"{b}_s8", "rq_one", f"{b}_s8_scale", "rq_zp"],
                [t + "y"],
                domain="com.microsoft",
            ),  # (u8 - 128) x s8 in int32, times the column scales
            helper.make_node("Mul", [t + "y", t + "scale"], out),
        ]
        if len(group) > 1:
            widths = nh.from_array(np.array([x.shape[1] for x in ws], np.int64), t + "widths")
            model.graph.initializer.append(widths)
            nodes.append(helper.make_node("Split", [t + "out", widths.name], [n.output[0] for n in group], axis=-1))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    kept = [i for i in model.graph.initializer if i.name not in dropped]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
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
