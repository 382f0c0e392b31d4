"""`kernels/bench.py` without a GPU: the peak it compares with, its table, its exit code."""

from __future__ import annotations

import pytest
import torch

from reelserve.kernels import bench


@pytest.mark.parametrize(
    "name, label, gbps",
    [("NVIDIA H200", "H200", 4800.0), ("NVIDIA H100 80GB HBM3", "H100", 3350.0), ("X", "H100", 3350.0)],
)
def test_peaks_follow_the_device_name(name: str, label: str, gbps: float) -> None:
    assert bench.peaks_for(name) == (label, 989.0, gbps)


def test_table_names_the_peak_it_divides_by() -> None:
    row = {"op": "masked_mean_pool", "shape": "B1 L2 D3", "dims": "pad30%", "dtype": "bfloat16"}
    row |= {"provider": "triton", "ms": 0.01, "throughput": "1 GB/s", "vs_peer": 2.0, "vs_peak": 0.25}
    table = bench.format_markdown([row], "H200").splitlines()
    assert table[0].endswith("| of H200 peak |")
    assert table[2].endswith("| 2.00x | 25.0% |")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU exit; this machine has a GPU")
def test_without_a_gpu_it_says_so_and_exits_2(capsys) -> None:
    assert bench.main([]) == 2
    assert "no CUDA device" in capsys.readouterr().out
