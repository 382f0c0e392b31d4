"""`reelserve export --target gpu --onnx-only` on CPU: the static half of the GPU target.

What a machine without a GPU can prove: the plugin graphs are valid ONNX (checker, strict shape
inference with our ops' schemas), carry one `reelserve::*` node per kernel call marked for
TensorRT's AOT plugin importer, hold the precision they claim, and compute what PyTorch does
(their CPU-runnable form in ONNX Runtime); the GPU repository's configs parse as Triton
ModelConfig and agree with the contract and with the graphs' inputs and outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from reelserve.config import DEFAULT
from reelserve.export.repository import read_step_settings
from reelserve.spec import contract as c
from reelserve.spec.topology import step_specs

ENCODERS = (c.VISION_ENCODER, c.TEXT_ENCODER)
PRECISIONS = ("fp32", "fp16", "bf16")
ONNX_FLOAT = {"fp32": onnx.TensorProto.FLOAT, "fp16": onnx.TensorProto.FLOAT16, "bf16": onnx.TensorProto.BFLOAT16}
# Triton config dtype -> ONNX elem type, for the engine's I/O (TensorRT keeps the graph's I/O types)
TRITON_TO_ONNX = {
    "TYPE_UINT8": onnx.TensorProto.UINT8,
    "TYPE_BOOL": onnx.TensorProto.BOOL,
    "TYPE_INT64": onnx.TensorProto.INT64,
    "TYPE_FP32": onnx.TensorProto.FLOAT,
}


@pytest.fixture(scope="module")
def gpu_out(model_repository: Path, tmp_path_factory) -> Path:
    from reelserve.export.gpu.target import export_gpu

    out = tmp_path_factory.mktemp("gpu")
    report = export_gpu(
        out, DEFAULT, onnx_only=True, cpu_repository=model_repository, progress=False, log=lambda _: None
    )
    assert report["onnx_only"] and (out / "gpu-report.json").is_file()
    return out


@pytest.fixture(scope="module")
def report(gpu_out: Path) -> dict:
    return json.loads((gpu_out / "gpu-report.json").read_text())


def _graph(gpu_out: Path, name: str, precision: str) -> onnx.ModelProto:
    return onnx.load(gpu_out / "onnx" / f"{name}.{precision}.onnx")


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", ENCODERS)
def test_plugin_graph_is_valid_onnx_in_its_precision(gpu_out: Path, name: str, precision: str) -> None:
    from reelserve.export.gpu.target import check_graph

    model = _graph(gpu_out, name, precision)
    check_graph(model)  # checker (full) + strict shape inference, custom nodes included
    floats = {init.data_type for init in model.graph.initializer} & set(ONNX_FLOAT.values())
    assert floats == {ONNX_FLOAT[precision]}, f"{name}.{precision}: weights in {floats}"
    assert not [f for f in model.functions if f.domain == "reelserve"], "plugin graphs carry no function bodies"


@pytest.mark.parametrize("precision", PRECISIONS)
def test_text_graph_has_one_attention_plugin_node_per_layer_then_the_pool(gpu_out: Path, precision: str) -> None:
    from reelserve.models.text_towers import tower_spec

    layers = tower_spec(DEFAULT.text.tower).load().cfg.layers
    model = _graph(gpu_out, c.TEXT_ENCODER, precision)
    nodes = [n for n in model.graph.node if n.domain == "reelserve"]
    assert [n.op_type for n in nodes] == ["FusedAttention"] * layers + ["MaskedMeanPool"]
    pool, nodes = nodes[-1], nodes[:-1]
    assert {a.name: onnx.helper.get_attribute_value(a) for a in pool.attribute}["plugin_namespace"] == b"reelserve"
    for node in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["plugin_namespace"] == b"reelserve" and attrs["aot"] == 1, attrs
        assert attrs["causal"] == 0
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v.type.tensor_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    for node in nodes:  # the plugin's output keeps the activations' type and rank [B, H, L, D]
        t = types[node.output[0]]
        assert t.elem_type == ONNX_FLOAT[precision] and len(t.shape.dim) == 4


def test_cpu_parity_with_pytorch(report: dict) -> None:
    graphs = report["graphs"]
    assert sorted(graphs) == sorted(f"{n}.{p}" for n in ENCODERS for p in PRECISIONS)
    for name in ENCODERS:
        for precision in ("fp32", "fp16"):  # ONNX Runtime's CPU provider runs both
            rows = graphs[f"{name}.{precision}"]["cpu_parity"]
            assert isinstance(rows, list) and rows, (name, precision, rows)
            assert all(r["min_cosine"] >= 0.999 for r in rows), rows
        bf16 = graphs[f"{name}.bf16"]["cpu_parity"]
        assert isinstance(bf16, list) or bf16.startswith("not run: ONNX Runtime's CPU provider has no kernel")
    assert graphs[f"{c.TEXT_ENCODER}.fp32"]["plugin_nodes"] == ["FusedAttention", "MaskedMeanPool"]


def _config(root: Path, name: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse((root / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def test_gpu_repository_encoders_are_tensorrt_plans_on_gpu(gpu_out: Path) -> None:
    root = gpu_out / "model_repository"
    g = DEFAULT.gpu
    for name in ENCODERS:
        cfg = _config(root, name)
        assert cfg.platform == "tensorrt_plan" and not cfg.backend
        assert [ig.kind for ig in cfg.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
        assert list(cfg.dynamic_batching.preferred_batch_size) == list(g.preferred_batch_sizes)
        assert cfg.dynamic_batching.max_queue_delay_microseconds == g.max_queue_delay_us
        assert cfg.max_batch_size == DEFAULT.batching.max_batch_size
        assert not (root / name / "1" / "model.py").exists()
        assert not (root / name / "1" / "model.plan").exists()  # --onnx-only builds no engine
        assert not any(i.allow_ragged_batch for i in cfg.input), "TensorRT inputs cannot be ragged"
    for step in (c.PREPROCESS, c.OCR, c.ASR):  # every token row one length: TensorRT's batcher merges one shape
        assert read_step_settings(root / step)["text"].pad_tokens_to == DEFAULT.text.max_tokens
    asr = read_step_settings(root / c.ASR)["asr"]  # Whisper in float16 on the GPU, through CTranslate2
    assert (asr.device, asr.compute_type, asr.model) == ("cuda", "float16", DEFAULT.asr.model)
    for step, files in (
        (c.PREPROCESS, ["model.py", "tokenizer.json"]),
        (c.ASR, ["model.py", "tokenizer.json", "whisper/model.bin", "whisper/tokenizer.json"]),
        (c.FUSION_HEADS, ["model.py", "model.onnx", "heads.npz"]),
    ):
        assert all((root / step / "1" / f).is_file() for f in files), step


def test_gpu_repository_agrees_with_the_graphs_and_the_cpu_ensembles(gpu_out: Path, model_repository: Path) -> None:
    root = gpu_out / "model_repository"
    for name in ENCODERS:
        cfg = _config(root, name)
        graph = _graph(gpu_out, name, DEFAULT.gpu.serve_precision).graph
        for ios, values in ((cfg.input, graph.input), (cfg.output, graph.output)):
            by_name = {v.name: v.type.tensor_type for v in values}
            assert sorted(by_name) == sorted(io.name for io in ios), name
            for io in ios:
                t = by_name[io.name]
                assert t.elem_type == TRITON_TO_ONNX[model_config_pb2.DataType.Name(io.data_type)], io.name
                assert len(t.shape.dim) == len(io.dims) + 1, io.name  # + the batch dim
                for dim, want in zip(t.shape.dim[1:], io.dims, strict=True):
                    assert want == -1 or dim.dim_value == want, (io.name, dim, want)
    for ensemble in c.ENSEMBLES:  # same wiring, same contract as the CPU target
        assert (root / ensemble / "config.pbtxt").read_text() == (
            model_repository / ensemble / "config.pbtxt"
        ).read_text()
    gpu_steps = {s.name: s for s in step_specs(DEFAULT, "gpu")}
    cpu_steps = {s.name: s for s in step_specs(DEFAULT, "cpu")}
    for name in gpu_steps:
        assert [p.tensor.name for p in gpu_steps[name].inputs] == [p.tensor.name for p in cpu_steps[name].inputs]
        assert gpu_steps[name].outputs == cpu_steps[name].outputs
