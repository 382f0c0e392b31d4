"""The folded PP-OCR graphs compute what the package's graphs compute, with fewer ops, and read the same lines."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from reelserve.export.ocr_graphs import fold_graph, write_ocr_graphs
from reelserve.serving.ocr import GRAPH_FILES, OnScreenTextReader, repository_graphs
from reelserve.serving.onnx_runtime import ort_session

CHANNELS = 4


def _block(nodes: list, inits: list, x: str, at: str, conv: dict, weight_shape: tuple[int, ...]) -> str:
    """PP-LCNetV3's block as the package's graphs spell it: Conv, scalar affine, HardSwish, scalar affine."""
    rng = np.random.default_rng(len(nodes))
    const = lambda name, value: inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name)) or name  # noqa: E731
    w = const(f"{at}.w", rng.normal(0, 0.3, weight_shape))
    b = const(f"{at}.b", rng.normal(0, 0.1, weight_shape[0]))
    nodes.append(helper.make_node("Conv", [x, w, b], [f"{at}.conv"], **conv))
    nodes.append(helper.make_node("Mul", [const(f"{at}.s1", [1.3]), f"{at}.conv"], [f"{at}.m1"]))  # scalar first
    nodes.append(helper.make_node("Add", [f"{at}.m1", const(f"{at}.b1", [0.2])], [f"{at}.y"]))
    nodes.append(helper.make_node("Add", [f"{at}.y", const(f"{at}.three", 3.0)], [f"{at}.y3"]))
    nodes.append(helper.make_node("Clip", [f"{at}.y3", const(f"{at}.lo", 0.0), const(f"{at}.hi", 6.0)], [f"{at}.c"]))
    nodes.append(helper.make_node("Mul", [f"{at}.y", f"{at}.c"], [f"{at}.yc"]))
    nodes.append(helper.make_node("Div", [f"{at}.yc", const(f"{at}.six", 6.0)], [f"{at}.hs"]))
    nodes.append(helper.make_node("Mul", [const(f"{at}.s2", [0.8]), f"{at}.hs"], [f"{at}.m2"]))
    nodes.append(helper.make_node("Add", [f"{at}.m2", const(f"{at}.b2", [-0.4])], [f"{at}.out"]))
    return f"{at}.out"


def _lcnet_like() -> onnx.ModelProto:
    """Three blocks whose post-activation affines feed a padded 3x3, a 1x1 and a padded depthwise Conv."""
    nodes: list = []
    inits: list = []
    x = _block(nodes, inits, "x", "a", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, (CHANNELS, 3, 3, 3))
    x = _block(nodes, inits, x, "b", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, (CHANNELS, CHANNELS, 3, 3))
    x = _block(nodes, inits, x, "c", {"kernel_shape": [1, 1]}, (CHANNELS, CHANNELS, 1, 1))
    depthwise = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "group": CHANNELS}
    x = _block(nodes, inits, x, "d", depthwise, (CHANNELS, 1, 3, 3))
    graph = helper.make_graph(
        nodes, "lcnet_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, None, None])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [None, CHANNELS, None, None])], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])


def _run(model: onnx.ModelProto, path: Path, x: np.ndarray) -> np.ndarray:
    onnx.save(model, str(path))
    return ort_session(path, 1).run(None, {"x": x})[0]


def test_folding_keeps_the_function_padding_included(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(0, 2, (2, 3, 9, 7)).astype(np.float32)
    want = _run(_lcnet_like(), tmp_path / "package.onnx", x)
    folded = _lcnet_like()
    counts = fold_graph(folded)
    onnx.checker.check_model(folded)
    assert counts == {"affine into conv": 4, "hard swish": 4, "affine before conv": 3}  # the last block's is the output
    got = _run(folded, tmp_path / "folded.onnx", x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    ops = Counter(n.op_type for n in folded.graph.node)
    assert ops["Div"] == ops["Clip"] == 0 and ops["HardSigmoid"] == 4
    assert ops["Add"] == 2 + 1  # the padded Convs keep their shift as an Add; the output's affine stays


def test_a_graph_without_the_pattern_is_left_alone() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    model = helper.make_model(graph)
    assert set(fold_graph(model).values()) == {0}
    assert [n.op_type for n in model.graph.node] == ["Relu"]


@pytest.fixture(scope="module")
def folded(tmp_path_factory) -> tuple[Path, list[dict]]:
    folder = tmp_path_factory.mktemp("ocr")
    return folder, write_ocr_graphs(folder)


def test_package_graphs_fold_with_parity(folded: tuple[Path, list[dict]]) -> None:
    folder, parity = folded
    assert sorted(p.name for p in folder.iterdir()) == sorted(GRAPH_FILES.values())
    assert [p["output"].split(".")[0] for p in parity] == list(GRAPH_FILES)
    for p in parity:
        assert p["min_cosine"] > 0.99999 and p["max_abs_error"] < 1e-3, p
        assert p["affine into conv"] > 20 and p["hard swish"] > 20 and p["nodes after"] < p["nodes before"] - 100, p


def test_folded_graphs_read_what_the_package_reads(folded: tuple[Path, list[dict]]) -> None:
    from reelserve.samples import draw_caption, ken_burns_frames, load_photo

    folder, _ = folded
    frames = [
        draw_caption(ken_burns_frames(load_photo(photo), n=1, size=size), caption)[0]
        for photo, caption, size in (
            ("chelsea", "SALE 50% OFF\nthis weekend", (288, 512)),
            ("camera", "Unboxing the new lens", (540, 960)),
        )
    ]
    package = OnScreenTextReader(threads=1)
    served = OnScreenTextReader(threads=1, graphs=repository_graphs(folder))
    assert served.graph_paths() == repository_graphs(folder)
    assert served.read_frames(frames) == package.read_frames(frames)
    assert served.read_frames(frames)[0] == ["SALE 50% OFF", "this weekend"]
