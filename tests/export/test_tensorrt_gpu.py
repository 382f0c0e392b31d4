"""The GPU half of the GPU target: our plugins inside real TensorRT engines, on a real GPU.

Skipped, with the missing piece named, where TensorRT or an NVIDIA GPU is absent (CI and the
development machines have neither; `reelserve gpu-check` runs these checks and the benchmark
on a GPU machine).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

from reelserve.config import DEFAULT

trt = pytest.importorskip(
    "tensorrt", reason="TensorRT is not installed: it needs an NVIDIA GPU machine (pip install 'tensorrt>=10.9' there)"
)
needs_gpu = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no NVIDIA GPU: TensorRT engines build and run on one"
)
F16, I32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.INT32


def test_plugins_register_with_an_aot_implementation() -> None:
    from tensorrt.plugin._lib import QDP_REGISTRY

    from reelserve.export.gpu import plugins

    for plugin in plugins.PLUGINS:
        assert plugin in QDP_REGISTRY, plugin
        assert QDP_REGISTRY[plugin].aot_impl_func is not None, plugin


def _one_node_engine(tmp_path: Path, op_type: str, inputs: dict, out_rank: int, profile: dict) -> Path:
    from reelserve.export.gpu.engines import build_engine
    from reelserve.export.gpu.plugin_onnx import DOMAIN

    node = onnx.helper.make_node(op_type, list(inputs), ["out"], domain=DOMAIN, plugin_namespace=DOMAIN, aot=1)
    graph = onnx.helper.make_graph(
        [node],
        "g",
        [onnx.helper.make_tensor_value_info(n, t, shape) for n, (t, shape) in inputs.items()],
        [onnx.helper.make_tensor_value_info("out", F16, [f"o{i}" for i in range(out_rank)])],
    )
    opsets = [onnx.helper.make_opsetid("", 22), onnx.helper.make_opsetid(DOMAIN, 1)]
    onnx.save(onnx.helper.make_model(graph, opset_imports=opsets), tmp_path / f"{op_type}.onnx")
    engine = tmp_path / f"{op_type}.plan"
    build_engine(tmp_path / f"{op_type}.onnx", engine, profile, timing_cache=tmp_path / "cache", log=lambda _: None)
    return engine


@needs_gpu
def test_fused_attention_plugin_in_an_engine_matches_the_reference(tmp_path: Path) -> None:
    from reelserve.export.gpu.engines import EngineRunner
    from reelserve.kernels.reference import attention_reference

    io = {n: (F16, ["b", 12, f"l{n}", 32]) for n in ("q", "k", "v")} | {"mask": (I32, ["b", "lk"])}
    qkv = ((1, 12, 1, 32), (4, 12, 64, 32), (16, 12, 128, 32))
    profile = {n: qkv for n in ("q", "k", "v")} | {"mask": ((1, 1), (4, 64), (16, 128))}
    engine = EngineRunner(_one_node_engine(tmp_path, "FusedAttention", io, 4, profile))
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 12, 77, 32, generator=g).half().cuda() for _ in range(3))
    mask = torch.ones(3, 77, dtype=torch.int32)
    mask[1, 40:] = 0
    mask[2] = 0  # no real key: zeros, never NaN
    got = engine({"q": q, "k": k, "v": v, "mask": mask.cuda()})["out"].float()
    want = attention_reference(q.float(), k.float(), v.float(), mask.cuda() != 0)
    torch.testing.assert_close(got, want, atol=3e-3, rtol=3e-3)


@needs_gpu
def test_masked_mean_pool_plugin_in_an_engine_matches_the_reference(tmp_path: Path) -> None:
    from reelserve.export.gpu.engines import EngineRunner
    from reelserve.kernels.reference import masked_mean_pool_reference

    io = {"x": (F16, ["b", "l", 384]), "mask": (I32, ["b", "l"])}
    profile = {"x": ((1, 1, 384), (4, 64, 384), (16, 128, 384)), "mask": ((1, 1), (4, 64), (16, 128))}
    engine = EngineRunner(_one_node_engine(tmp_path, "MaskedMeanPool", io, 2, profile))
    x = torch.randn(5, 100, 384).half().cuda()
    mask = (torch.arange(100)[None, :] < torch.tensor([100, 3, 0, 57, 1])[:, None]).to(torch.int32).cuda()
    got = engine({"x": x, "mask": mask})["out"].float()
    torch.testing.assert_close(got, masked_mean_pool_reference(x.float(), mask != 0), atol=2e-3, rtol=2e-3)


@needs_gpu
def test_every_encoder_engine_matches_pytorch(model_repository: Path, tmp_path: Path) -> None:
    from reelserve.export.gpu.target import export_gpu

    report = export_gpu(tmp_path, DEFAULT, onnx_only=False, cpu_repository=model_repository, progress=False)
    for key, entry in report["graphs"].items():
        assert all(r["min_cosine"] >= 0.999 for r in entry["engine_parity"]), (key, entry["engine_parity"])
    for step in ("vision_encoder", "text_encoder"):
        assert (tmp_path / "model_repository" / step / "1" / "model.plan").stat().st_size > 0
