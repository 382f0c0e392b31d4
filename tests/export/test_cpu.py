"""export/cpu.py: the vision graph exported in a spawned process, as the export runs it beside the text side;
the text graph's parity in the manifest, fp32 and the int8 one that serves."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from reelserve.config import DEFAULT
from reelserve.export.cpu import INT8_TEXT_PARITY, MANIFEST
from reelserve.export.parity import MIN_COSINE, parity_clips
from reelserve.export.quantize import INT8_MIN_COSINE
from reelserve.serving.onnx_runtime import ort_session
from reelserve.spec import contract as c


def test_vision_graph_from_a_spawned_process_serves_what_the_repository_serves(
    model_repository: Path, tmp_path: Path
) -> None:
    from reelserve.export.cpu import _vision_graph

    clip, clip_mask, _ = parity_clips(DEFAULT)
    frames = clip[clip_mask].numpy()
    graph = tmp_path / "model.onnx"
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        logits, parity = pool.submit(_vision_graph, graph, frames).result()

    assert logits.shape == (len(frames), 1000) and logits.dtype == np.float32
    assert [row["output"] for row in parity] == [c.FRAME_LOGITS.name]
    assert parity[0]["min_cosine"] >= MIN_COSINE
    feeds = {c.FRAMES.name: frames}
    (got,) = ort_session(graph, threads=1).run([c.FRAME_LOGITS.name], feeds)
    (served,) = ort_session(model_repository / c.VISION_ENCODER / "1" / "model.onnx", threads=1).run(
        [c.FRAME_LOGITS.name], feeds
    )
    np.testing.assert_array_equal(got, served)  # the same graph: the repository's came from this code
    np.testing.assert_allclose(got, logits, atol=1e-3)


def test_the_manifest_states_both_text_graphs_parity(model_repository: Path) -> None:
    parity = json.loads((model_repository / MANIFEST).read_text())["parity"][c.TEXT_ENCODER]
    fp32, int8 = parity
    assert fp32["output"] == c.TEXT_VECTOR.name and fp32["min_cosine"] >= MIN_COSINE
    assert int8["output"] == INT8_TEXT_PARITY and INT8_MIN_COSINE <= int8["min_cosine"] < 1.0
