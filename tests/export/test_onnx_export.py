"""export_onnx + check_parity (export/parity.py) on a tiny module: dynamic batch, self-contained file, parity guard."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from reelserve.export.onnx_export import export_onnx
from reelserve.export.parity import MIN_COSINE, ExportError, check_parity, cosine_rows
from reelserve.serving.onnx_runtime import ort_session

FEATURES, HIDDEN = 1200, 16
NAMES = ["y", "codes"]


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(FEATURES, HIDDEN)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tanh(self.linear(x)), (x > 0).to(torch.int64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    module = Tiny().eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny" / "model.onnx"
    example = torch.randn(2, FEATURES, generator=torch.Generator().manual_seed(1))
    seconds = export_onnx(
        module, (example,), path, input_names=["x"], output_names=NAMES, dynamic_axes={"x": {0: "batch"}}
    )
    assert seconds > 0
    x = torch.randn(5, FEATURES, generator=torch.Generator().manual_seed(2))  # another batch size than exported
    with torch.no_grad():
        reference = [t.numpy() for t in module(x)]
    return path, ort_session(path, threads=1), {"x": x.numpy()}, reference


def test_single_self_contained_file(exported) -> None:
    path, *_ = exported
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"], "no external-data side file"
    model = onnx.load(str(path), load_external_data=False)
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert not external, f"initializers stored outside the file: {external}"
    assert [i.name for i in model.graph.input] == ["x"]
    assert [o.name for o in model.graph.output] == NAMES
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert not batch_dim.HasField("dim_value"), "batch axis must be dynamic"


def test_runs_any_batch_size_and_matches_torch(exported) -> None:
    path, session, feeds, reference = exported
    y, codes = session.run(NAMES, feeds)
    np.testing.assert_allclose(y, reference[0], atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(codes, reference[1])
    assert codes.dtype == np.int64
    one = session.run(NAMES, {"x": feeds["x"][:1]})
    np.testing.assert_allclose(one[0], reference[0][:1], atol=1e-5, rtol=1e-5)


def test_parity_passes_on_true_reference(exported) -> None:
    _, session, feeds, reference = exported
    report = check_parity(reference, session.run(NAMES, feeds), NAMES)
    assert [p.output for p in report] == NAMES
    assert report[0].min_cosine > 0.99999 and report[0].max_abs_error < 1e-5
    assert report[1].min_cosine == 1.0 and report[1].max_abs_error == 0.0
    assert report[0].as_dict()["output"] == "y"


def test_parity_raises_when_cosine_drops(exported) -> None:
    _, session, feeds, reference = exported
    rng = np.random.default_rng(0)
    bad = reference[0].copy()
    bad[3] += rng.normal(size=bad[3].shape).astype(np.float32) * 0.5  # one row only
    assert cosine_rows(reference[0], bad).min() < MIN_COSINE
    with pytest.raises(ExportError, match="y: ONNX Runtime vs PyTorch cosine"):
        check_parity([bad, reference[1]], session.run(NAMES, feeds), NAMES)


def test_parity_tolerates_tiny_float_noise(exported) -> None:
    _, session, feeds, reference = exported
    noisy = reference[0] + np.float32(1e-4)
    check_parity([noisy, reference[1]], session.run(NAMES, feeds), NAMES)


def test_parity_raises_on_shape_mismatch(exported) -> None:
    _, session, feeds, reference = exported
    with pytest.raises(ExportError, match="shape"):
        check_parity([reference[0][:, :-1], reference[1]], session.run(NAMES, feeds), NAMES)


def test_parity_raises_on_integer_mismatch_in_many_rows(exported) -> None:
    _, session, feeds, reference = exported
    codes = reference[1].copy()
    codes[:, :10] = 1 - codes[:, :10]  # 50 of 6000 values (0.8%)
    with pytest.raises(ExportError, match="codes"):
        check_parity([reference[0], codes], session.run(NAMES, feeds), NAMES)


def test_parity_integer_outputs_must_match_exactly(exported) -> None:
    _, session, feeds, reference = exported
    codes = reference[1].copy()
    codes[0, 0] = 7  # one wrong value out of 6000
    with pytest.raises(ExportError):
        check_parity([reference[0], codes], session.run(NAMES, feeds), NAMES)


def test_cosine_rows_both_zero_is_one() -> None:
    a = np.zeros((2, 3), np.float32)
    b = np.array([[0, 0, 0], [1, 0, 0]], np.float32)
    np.testing.assert_array_equal(cosine_rows(a, b), [1.0, 0.0])


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_parity_raises_on_non_finite_output(bad_value: float) -> None:
    out = np.ones((2, 3), np.float32)
    out[1, 0] = bad_value
    with pytest.raises(ExportError):
        check_parity([np.ones((2, 3), np.float32)], [out], ["y"])


def test_parity_names_the_runtime_and_the_step() -> None:
    want = np.eye(2, dtype=np.float32)
    with pytest.raises(ExportError, match="text_encoder.y: TensorRT vs PyTorch cosine"):
        check_parity([want], [want[::-1].copy()], ["y"], runtime="TensorRT", step="text_encoder")
