"""The topology as data: steps per target, ensembles wired by name, branches derived from the wiring."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reelserve.config import DEFAULT
from reelserve.spec import contract as c
from reelserve.spec.topology import (
    GPU_ENGINES,
    STEP_SECTIONS,
    Call,
    EnsembleSpec,
    ensemble,
    ensemble_specs,
    parallel_branches,
    step_specs,
    target_config,
)


def test_branches_follow_the_wiring() -> None:
    assert parallel_branches(ensemble(c.VIDEO_FEATURES)) == [(c.VISION_ENCODER,), (c.OCR, c.TEXT_ENCODER)]
    assert parallel_branches(ensemble(c.TEXT_FEATURES)) == [(c.TEXT_ENCODER,)]
    chain = EnsembleSpec("chain", (c.TEXT,), (c.EMBEDDING,), (Call("a", ("text",), ("x",)), Call("b", ("x",), ("y",)),
                         Call("z", ("y",), ("embedding",))))  # fmt: skip
    assert parallel_branches(chain) == [("b",)]


def test_every_ensemble_output_is_in_the_contract_and_produced() -> None:
    contract = {c.VIDEO_FEATURES: c.VIDEO_FEATURES_OUTPUTS, c.TEXT_FEATURES: c.TEXT_FEATURES_OUTPUTS}
    for spec in ensemble_specs():
        assert spec.outputs == contract[spec.name]
        produced = {name for call in spec.calls for name in call.outputs}
        assert {t.name for t in spec.outputs} <= produced, spec.name


def test_every_python_step_reads_known_sections() -> None:
    for spec in step_specs(DEFAULT):
        assert spec.python and spec.sections == STEP_SECTIONS[spec.name]


def test_gpu_target_makes_the_encoders_engines_and_pads_tokens() -> None:
    gpu = {s.name: s for s in step_specs(DEFAULT, "gpu")}
    assert {n for n, s in gpu.items() if not s.python} == set(GPU_ENGINES)
    assert all(not p.ragged for n in GPU_ENGINES for p in gpu[n].inputs)
    assert target_config(DEFAULT, "gpu").text == replace(DEFAULT.text, pad_tokens_to=DEFAULT.text.max_tokens)
    assert target_config(DEFAULT, "cpu") is DEFAULT
    with pytest.raises(ValueError, match="target must be one of"):
        step_specs(DEFAULT, "tpu")
