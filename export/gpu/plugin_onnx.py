"""GPU-target ONNX: our kernels as `reelserve::*` nodes that TensorRT binds to our plugins.

The encoders are exported inside `kernels.custom_ops.as_custom_ops()`, so every attention and
pooling call is one custom op, translated here to one node of the `reelserve` domain
(`FusedAttention`, `MaskedMeanPool`, schemas below). Two forms of each graph:

- the **plugin graph** (`model.onnx`, what TensorRT parses): the nodes carry
  `plugin_namespace="reelserve"` and `aot=1`, which TensorRT's ONNX parser reads as "run the
  plugin `reelserve::<op_type>` with its ahead-of-time kernel" (NVIDIA's quickly-deployable
  plugins sample); no function bodies, so nothing can replace the plugin.
- the **CPU-runnable graph**: the same nodes with their ONNX function bodies (the PyTorch
  reference written in standard ops) attached, so ONNX Runtime runs the whole graph on CPU and
  parity with PyTorch is checked on a machine without a GPU.

Precision is in the graph (TensorRT builds strongly typed networks): an fp16/bf16 graph holds
fp16/bf16 weights and activations; inputs (uint8 frames, int64 ids) and outputs (fp32) keep
the contract's types.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import onnx
import onnxscript
import torch
from onnx.defs import OpSchema
from onnxscript import opset18 as op

from reelserve.kernels.custom_ops import as_custom_ops

from ..onnx_export import dynamo_program

DOMAIN = "reelserve"
PLUGIN_OPS = ("FusedAttention", "MaskedMeanPool")
OPSET = 22  # the first opset with bf16 Conv (and TensorRT 10's parser reads it)
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_FLOATS = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"]
REELSERVE = onnxscript.values.Opset(DOMAIN, 1)


def _plugin_attributes() -> list[OpSchema.Attribute]:
    """Read by TensorRT's ONNX parser: which plugin namespace, and use its AOT implementation."""
    return [
        OpSchema.Attribute("plugin_namespace", OpSchema.AttrType.STRING, "TensorRT plugin namespace", required=False),
        OpSchema.Attribute("aot", OpSchema.AttrType.INT, "1: use the plugin's ahead-of-time kernel", required=False),
    ]


def _schemas() -> list[OpSchema]:
    p = OpSchema.FormalParameter
    attention = OpSchema(
        "FusedAttention",
        DOMAIN,
        1,
        doc="Softmax attention over [B, H, L, D] with an int32 [B, Lk] key mask (1 = real); "
        "queries with no real key give zeros. Spec: reelserve.kernels.reference.attention_reference.",
        inputs=[p("q", "T"), p("k", "T"), p("v", "T"), p("mask", "M")],
        outputs=[p("out", "T")],
        type_constraints=[("T", _FLOATS, "activations"), ("M", ["tensor(int32)"], "mask")],
        attributes=[
            OpSchema.Attribute(
                "causal", onnx.helper.make_attribute("causal", 0), "1: key j visible to query i iff j <= i + Lk - Lq"
            ),
            OpSchema.Attribute("scale", onnx.helper.make_attribute("scale", 0.0), "softmax scale; 0 means 1/sqrt(D)"),
            *_plugin_attributes(),
        ],
    )
    pool = OpSchema(
        "MaskedMeanPool",
        DOMAIN,
        1,
        doc="Mean over the real positions of [B, L, D] with an int32 [B, L] mask -> [B, D]; "
        "an all-padding row gives zeros. Spec: reelserve.kernels.reference.masked_mean_pool_reference.",
        inputs=[p("x", "T"), p("mask", "M")],
        outputs=[p("out", "T")],
        type_constraints=[("T", _FLOATS, "activations"), ("M", ["tensor(int32)"], "mask")],
        attributes=_plugin_attributes(),
    )
    return [attention, pool]


def register_schemas() -> None:
    """Make onnx (checker, shape inference) and onnxscript know our ops; idempotent."""
    for schema in _schemas():
        if not onnx.defs.has(schema.name, schema.domain):
            onnx.defs.register_schema(schema)


register_schemas()


# Function bodies: the references of `kernels/reference.py` in ONNX ops, computed in fp32.
@onnxscript.script(REELSERVE, default_opset=op)
def FusedAttention(q, k, v, mask, causal: int = 0, scale: float = 0.0):
    qf = op.Cast(q, to=onnx.TensorProto.FLOAT)
    kf = op.Cast(k, to=onnx.TensorProto.FLOAT)
    vf = op.Cast(v, to=onnx.TensorProto.FLOAT)
    q_shape = op.Shape(qf)
    head_dim = op.Cast(
        op.Slice(q_shape, op.Constant(value_ints=[3]), op.Constant(value_ints=[4])), to=onnx.TensorProto.FLOAT
    )
    given = op.Constant(value_float=scale)
    zero = op.Constant(value_float=0.0)
    s = op.Where(op.Greater(given, zero), given, op.Reciprocal(op.Sqrt(head_dim)))
    scores = op.Mul(op.MatMul(qf, op.Transpose(kf, perm=[0, 1, 3, 2])), s)  # [B, H, Lq, Lk]
    keys = op.Unsqueeze(op.Cast(mask, to=onnx.TensorProto.BOOL), op.Constant(value_ints=[1, 2]))  # [B, 1, 1, Lk]
    lq = op.Slice(q_shape, op.Constant(value_ints=[2]), op.Constant(value_ints=[3]))
    lk = op.Slice(op.Shape(kf), op.Constant(value_ints=[2]), op.Constant(value_ints=[3]))
    ones = op.ConstantOfShape(
        op.Concat(lq, lk, axis=0), value=onnx.helper.make_tensor("one", onnx.TensorProto.INT32, [1], [1])
    )
    visible = op.Cast(op.Trilu(ones, op.Sub(lk, lq), upper=0), to=onnx.TensorProto.BOOL)  # [Lq, Lk]
    is_causal = op.Cast(op.Constant(value_int=causal), to=onnx.TensorProto.BOOL)
    valid = op.And(keys, op.Or(op.Not(is_causal), visible))  # [B, 1, Lq, Lk]
    lowest = op.Constant(value_float=-3.4028234663852886e38)
    probs = op.Softmax(op.Where(valid, scores, lowest), axis=-1)
    any_key = op.ReduceMax(op.Cast(valid, to=onnx.TensorProto.FLOAT), op.Constant(value_ints=[-1]), keepdims=1)
    return op.CastLike(op.MatMul(op.Mul(probs, any_key), vf), q)


@onnxscript.script(REELSERVE, default_opset=op)
def MaskedMeanPool(x, mask):
    m = op.Unsqueeze(op.Cast(mask, to=onnx.TensorProto.FLOAT), op.Constant(value_ints=[-1]))  # [B, L, 1]
    total = op.ReduceSum(op.Mul(op.Cast(x, to=onnx.TensorProto.FLOAT), m), op.Constant(value_ints=[1]), keepdims=0)
    count = op.Max(op.ReduceSum(m, op.Constant(value_ints=[1]), keepdims=0), op.Constant(value_float=1.0))
    return op.CastLike(op.Div(total, count), x)


FUNCTIONS = {"FusedAttention": FusedAttention, "MaskedMeanPool": MaskedMeanPool}


def _fused_attention_node(q, k, v, mask, causal: bool = False, scale: float = 0.0):
    return REELSERVE.FusedAttention(q, k, v, mask, causal=int(causal), scale=float(scale))


def _masked_mean_pool_node(x, mask):
    return REELSERVE.MaskedMeanPool(x, mask)


TRANSLATIONS = {
    torch.ops.reelserve.fused_attention.default: _fused_attention_node,
    torch.ops.reelserve.masked_mean_pool.default: _masked_mean_pool_node,
}


@dataclass(frozen=True)
class GpuGraphs:
    plugin: onnx.ModelProto  # for TensorRT
    cpu_runnable: onnx.ModelProto  # for ONNX Runtime on CPU (parity without a GPU)


def export_gpu_onnx(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> GpuGraphs:
    """torch -> ONNX with our kernels as `reelserve::*` nodes, in both forms (see module doc)."""
    with as_custom_ops(), torch.no_grad():
        program = dynamo_program(
            module,
            args,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            custom_translation_table=TRANSLATIONS,
            opset_version=OPSET,
            # TensorRT fuses on its own; the onnxscript optimizer would also fold bf16 weights into
            # fp32 initializers (measured on EfficientNet's Conv/BatchNorm), breaking a strongly typed graph.
            optimize=False,
        )
    model = program.model_proto
    return GpuGraphs(plugin_graph(model), cpu_runnable_graph(model))


def plugin_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Mark every `reelserve::*` node for TensorRT's plugin importer; drop their function bodies."""
    model = copy.deepcopy(model)
    kept = [f for f in model.functions if f.domain != DOMAIN]
    del model.functions[:]
    model.functions.extend(kept)
    for node in custom_nodes(model):
        names = {a.name for a in node.attribute}
        if "plugin_namespace" not in names:
            node.attribute.append(onnx.helper.make_attribute("plugin_namespace", DOMAIN))
        if "aot" not in names:
            node.attribute.append(onnx.helper.make_attribute("aot", 1))
    return model


def cpu_runnable_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with our ops' ONNX function bodies attached and plugin attributes removed."""
    model = copy.deepcopy(model)
    for node in custom_nodes(model):
        keep = [a for a in node.attribute if a.name not in ("plugin_namespace", "aot")]
        del node.attribute[:]
        node.attribute.extend(keep)
    present = {(f.domain, f.name) for f in model.functions}
    for name in sorted({n.op_type for n in custom_nodes(model)}):
        if (DOMAIN, name) not in present:
            model.functions.append(FUNCTIONS[name].to_function_proto())
    return model


def custom_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain == DOMAIN]


def cast_module(module: torch.nn.Module, precision: str) -> torch.nn.Module:
    """A copy of `module` in `precision` ("fp32", "fp16", "bf16")."""
    return copy.deepcopy(module).to(PRECISIONS[precision]).eval()
