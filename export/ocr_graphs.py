"""PP-OCR's graphs as served: the scalar affine layers folded into the convolutions, HardSwish in two ops.

PP-OCRv4's detector and recogniser (PP-LCNetV3 blocks) follow every convolution with a learnable
affine (a `Mul` by one scalar, an `Add` of another), spell HardSwish as Add, Clip, Mul, Div, and
put a second scalar affine after it. ONNX Runtime fuses none of this, and each element-wise op
between two NCHWc convolutions costs a layout reorder on each side: on 2 cores the element-wise
ops and the reorders were half the detector's time. Folded, the same maths reads each frame's
text 1.3x faster (docs/benchmarks.md, "PP-OCR graphs folded").

Three rewrites, each the same function up to float rounding:
- `Conv -> Mul(s) -> Add(b)` becomes one Conv with weights `s W` and bias `s B + b`;
- `x * Clip(x + 3, 0, 6) / 6` becomes `x * HardSigmoid(x; 1/6, 1/2)`;
- `Mul(c) -> Add(b) -> Conv` (the affine after the activation): `c` goes into the Conv's weights; `b`
  into its bias when the Conv is 1x1, unpadded and ungrouped (each output sums `b W` over its
  inputs), else it stays as an `Add` of `b / c` before the Conv, which zero padding leaves exact.

The reference is the package's own graph: the export reads captioned frames with both and
refuses a folded graph whose lines or outputs differ (`write_ocr_graphs`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from reelserve.serving.ocr import GRAPH_FILES, OnScreenTextReader
from reelserve.serving.onnx_runtime import RecordingSession, ort_session

from .parity import ExportError, check_parity


class _Graph:
    """A graph's nodes with who produces and who reads each value, and its constants as arrays."""

    def __init__(self, model) -> None:
        from onnx import numpy_helper

        self.model, self.graph = model, model.graph
        self.constants: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        for node in self.graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.producer = {out: node for node in self.graph.node for out in node.output}
        self.readers: dict[str, list] = defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                self.readers[name].append(node)
        self.outputs = {o.name for o in self.graph.output}
        self.dropped: set[int] = set()

    def scalar(self, name: str) -> float | None:
        value = self.constants.get(name)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def only_reader(self, name: str, op_type: str):
        """The node that alone reads `name`, if it is an `op_type` and `name` is not a graph output."""
        readers = self.readers.get(name, [])
        if len(readers) == 1 and readers[0].op_type == op_type and name not in self.outputs:
            return readers[0]
        return None

    def scalar_operand(self, node, other: str) -> float | None:
        """The scalar constant `node` combines with `other`, if its other input is one."""
        rest = [name for name in node.input if name != other]
        return self.scalar(rest[0]) if len(rest) == 1 and len(node.input) == 2 else None

    def add_constant(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        base, n = name, 1
        while name in self.constants or name in self.producer:  # a Conv folded twice gets a second set
            name, n = f"{base}.{n}", n + 1
        self.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        self.constants[name] = value
        return name

    def conv_params(self, conv) -> tuple[np.ndarray, np.ndarray]:
        weights = self.constants[conv.input[1]].astype(np.float64)
        bias = conv.input[2] if len(conv.input) > 2 else ""
        return weights, (self.constants[bias].astype(np.float64) if bias else np.zeros(weights.shape[0]))

    def set_conv_params(self, conv, weights: np.ndarray, bias: np.ndarray) -> None:
        """New, private weight and bias tensors (another Conv may share the old ones)."""
        at = conv.output[0]  # outputs are unique; node names need not be
        names = [self.add_constant(f"{at}.folded_w", weights), self.add_constant(f"{at}.folded_b", bias)]
        del conv.input[1:]
        conv.input.extend(names)

    def commit(self) -> None:
        kept = [node for node in self.graph.node if id(node) not in self.dropped]
        del self.graph.node[:]
        self.graph.node.extend(kept)


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _fold_affine_into_conv(g: _Graph) -> int:
    """`Conv -> Mul(s) [-> Add(b)]` -> Conv(s W, s B + b)."""
    folded = 0
    for conv in list(g.graph.node):
        if conv.op_type != "Conv" or conv.input[1] not in g.constants:
            continue
        mul = g.only_reader(conv.output[0], "Mul")
        scale = g.scalar_operand(mul, conv.output[0]) if mul is not None else None
        if scale is None:
            continue
        last, shift = mul, 0.0
        add = g.only_reader(mul.output[0], "Add")
        if add is not None and (b := g.scalar_operand(add, mul.output[0])) is not None:
            last, shift = add, b
        weights, bias = g.conv_params(conv)
        g.set_conv_params(conv, weights * scale, bias * scale + shift)
        conv.output[0] = last.output[0]
        g.dropped.update({id(mul), id(last)})
        folded += 1
    return folded


def _hard_swish(g: _Graph) -> int:
    """`x * Clip(x + 3, 0, 6) / 6` (in any operand order) -> `x * HardSigmoid(x; 1/6, 1/2)`."""
    from onnx import helper

    replaced = 0
    for div in list(g.graph.node):
        if div.op_type != "Div" or g.scalar(div.input[1]) != 6.0:
            continue
        mul = g.producer.get(div.input[0])
        if mul is None or mul.op_type != "Mul" or g.only_reader(mul.output[0], "Div") is not div:
            continue
        clips = [g.producer.get(name) for name in mul.input]
        at = next((i for i, node in enumerate(clips) if node is not None and node.op_type == "Clip"), None)
        if at is None:
            continue
        clip, x = clips[at], mul.input[1 - at]
        add = g.producer.get(clip.input[0])
        if (
            add is None or add.op_type != "Add" or x not in add.input or g.scalar_operand(add, x) != 3.0
            or len(clip.input) != 3 or g.scalar(clip.input[1]) != 0.0 or g.scalar(clip.input[2]) != 6.0
            or g.only_reader(add.output[0], "Clip") is not clip or g.only_reader(clip.output[0], "Mul") is not mul
        ):  # fmt: skip
            continue
        gate = f"{div.output[0]}.hard_sigmoid"
        div.CopyFrom(helper.make_node("Mul", [x, gate], [div.output[0]], name=f"{div.output[0]}.hard_swish"))
        clip.CopyFrom(helper.make_node("HardSigmoid", [x], [gate], name=gate, alpha=1 / 6, beta=0.5))
        g.dropped.update({id(add), id(mul)})
        replaced += 1
    return replaced


def _fold_affine_before_conv(g: _Graph) -> int:
    """`Mul(c) -> Add(b) -> Conv...`: c into every reading Conv's weights; b into their bias where exact."""
    folded = 0
    for mul in list(g.graph.node):
        if mul.op_type != "Mul":
            continue
        inputs = [name for name in mul.input if name not in g.constants]
        if len(inputs) != 1 or (scale := g.scalar_operand(mul, inputs[0])) is None or scale == 0.0:
            continue
        add = g.only_reader(mul.output[0], "Add")
        if add is None or (shift := g.scalar_operand(add, mul.output[0])) is None:
            continue
        convs = g.readers.get(add.output[0], [])
        if add.output[0] in g.outputs or not convs:
            continue
        if any(x.op_type != "Conv" or x.input[0] != add.output[0] or x.input[1] not in g.constants for x in convs):
            continue
        pointwise = all(
            list(a.get("kernel_shape", ())) == [1, 1] and not any(a.get("pads", ())) and a.get("group", 1) == 1
            for a in map(_attributes, convs)
        )
        for conv in convs:
            weights, bias = g.conv_params(conv)
            if pointwise:  # each output channel sums b * W over its inputs
                bias = bias + shift * weights.sum(axis=(1, 2, 3))
            g.set_conv_params(conv, weights * scale, bias)
        if pointwise:
            for conv in convs:
                conv.input[0] = inputs[0]
            g.dropped.update({id(mul), id(add)})
        else:  # Conv(c W)(x + b/c) == Conv(W)(c x + b), padding included
            ratio = g.add_constant(f"{add.output[0]}.shift_over_scale", np.array([shift / scale]))
            del add.input[:]
            add.input.extend([inputs[0], ratio])
            g.dropped.add(id(mul))
        folded += 1
    return folded


def fold_graph(model) -> dict[str, int]:
    """Rewrite a PP-OCR `onnx.ModelProto` in place; -> how many of each pattern were rewritten."""
    counts = {"affine into conv": _fold_affine_into_conv(g := _Graph(model))}
    g.commit()
    counts["hard swish"] = _hard_swish(g := _Graph(model))
    g.commit()
    counts["affine before conv"] = _fold_affine_before_conv(g := _Graph(model))
    g.commit()
    _drop_unread_constants(model)
    return counts


def _drop_unread_constants(model) -> None:
    """The weights a fold replaced (ONNX Runtime warns about each constant nothing reads)."""
    graph = model.graph
    read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [n for n in graph.node if n.op_type != "Constant" or any(out in read for out in n.output)]
    del graph.node[:]
    graph.node.extend(kept)
    initializers = [i for i in graph.initializer if i.name in read]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def fold_file(src: Path, dst: Path) -> dict[str, int]:
    """`src` (the package's graph) -> `dst` folded; -> counts of rewrites and of nodes before and after."""
    import onnx

    model = onnx.load(str(src))
    before = len(model.graph.node)
    counts = fold_graph(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return {**counts, "nodes before": before, "nodes after": len(model.graph.node)}


# (photo, caption, frame size): the demo clips' size and a 360p upload, with printed lines and without
PARITY_FRAMES = (
    ("coffee", "FRESH COFFEE\nonly $3.50 today", (288, 512)),
    ("rocket", "Launch day\nT-minus 10", (360, 640)),
    ("astronaut", "", (288, 512)),
)


def parity_frames() -> tuple[list[np.ndarray], list[list[str]]]:
    """-> RGB frames with their printed lines (`PARITY_FRAMES`)."""
    from reelserve.samples import draw_caption, ken_burns_frames, load_photo

    frames = [draw_caption(ken_burns_frames(load_photo(p), n=1, size=size), text)[0] for p, text, size in PARITY_FRAMES]
    return frames, [text.splitlines() for _, text, _ in PARITY_FRAMES]


def write_ocr_graphs(version_dir: Path) -> list[dict]:
    """The `ocr` step's folded graphs into `version_dir`; -> their parity with the package's graphs.

    On `PARITY_FRAMES` the folded graphs must read the lines the package's graphs read (and those
    must be the printed captions: else nothing was shown), and give the same outputs on every
    model call of those reads (cosine, max |difference|). One ONNX Runtime thread: it runs beside
    the text export.
    """
    frames, captions = parity_frames()
    reference = OnScreenTextReader(threads=1)
    sources = reference.graph_paths()
    folds = {name: fold_file(sources[name], version_dir / GRAPH_FILES[name]) for name in GRAPH_FILES}
    recorders = {name: RecordingSession(runner.session) for name, runner in reference.runners.items()}
    for name, runner in reference.runners.items():
        runner.session = recorders[name]
    want = reference.read_frames(frames)
    served = OnScreenTextReader(threads=1, graphs={name: version_dir / f for name, f in GRAPH_FILES.items()})
    got = served.read_frames(frames)
    if got != want:
        raise ExportError(f"ocr: the folded PP-OCR graphs read {got}, the package's {want}")
    if want != captions:
        raise ExportError(f"ocr: the package's graphs read {want} on the parity frames, not their captions {captions}")
    parity: list[dict] = []
    for name, recorder in recorders.items():
        session = ort_session(version_dir / GRAPH_FILES[name], 1)
        output = session.get_outputs()[0].name
        ref, new = [], []
        for feeds, outputs in recorder.calls:
            ref.append(np.asarray(outputs[0]).reshape(-1))
            new.append(session.run([output], feeds)[0].reshape(-1))
        (p,) = check_parity(  # every call's outputs as one row: one cosine over all of them
            [np.concatenate(ref)[None]], [np.concatenate(new)[None]], [f"{name}.{output}"],
            runtime="folded graph", step="ocr",
        )  # fmt: skip
        parity.append({**p.as_dict(), "calls": len(recorder.calls), **Counter(folds[name])})
    return parity
