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
    assert parallel_branches(ensemble(c.VIDEO_FEATURES, DEFAULT)) == [(c.VISION_ENCODER,), (c.OCR, c.TEXT_ENCODER)]
    assert parallel_branches(ensemble(c.TEXT_FEATURES, DEFAULT)) == [(c.TEXT_ENCODER,)]
    full = ensemble(c.VIDEO_FEATURES_FULL, DEFAULT)
    assert parallel_branches(full) == [(c.VISION_ENCODER,), (c.OCR, c.ASR, c.TEXT_ENCODER)]
    chain = EnsembleSpec("chain", (c.TEXT,), (c.EMBEDDING,), (Call("a", ("text",), ("x",)), Call("b", ("x",), ("y",)),
                         Call("z", ("y",), ("embedding",))))  # fmt: skip
    assert parallel_branches(chain) == [("b",)]


def test_every_ensemble_output_is_in_the_contract_and_produced() -> None:
    contract = {
        c.VIDEO_FEATURES: c.VIDEO_FEATURES_OUTPUTS,
        c.TEXT_FEATURES: c.TEXT_FEATURES_OUTPUTS,
        c.VIDEO_FEATURES_FULL: c.VIDEO_FEATURES_FULL_OUTPUTS,
    }
    specs = ensemble_specs(DEFAULT)
    assert [s.name for s in specs] == [c.VIDEO_FEATURES, c.VIDEO_FEATURES_FULL, c.TEXT_FEATURES]
    assert set(c.ENSEMBLES) == set(contract) and set(c.ALWAYS_SERVED) < set(c.ENSEMBLES)
    for spec in specs:
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


def test_every_step_reads_only_what_the_request_or_an_earlier_step_gave() -> None:
    for spec in ensemble_specs(DEFAULT):
        known = {t.name for t in spec.inputs}
        for call in spec.calls:
            assert set(call.inputs) <= known, (spec.name, call.model, set(call.inputs) - known)
            known |= set(call.outputs)


def test_speech_runs_after_ocr_and_feeds_the_text_encoder_in_the_full_ensemble_only() -> None:
    full = ensemble(c.VIDEO_FEATURES_FULL, DEFAULT)
    order = [call.model for call in full.calls]
    assert order.index(c.OCR) < order.index(c.ASR) < order.index(c.TEXT_ENCODER)
    producers = {name: call.model for call in full.calls for name in call.outputs}
    assert producers[c.INPUT_IDS.name] == producers[c.ATTENTION_MASK.name] == c.ASR  # title + printed + spoken
    assert all(call.model != c.ASR for call in ensemble(c.VIDEO_FEATURES, DEFAULT).calls)
    assert full.inputs == c.VIDEO_FEATURES_INPUTS


def test_asr_off_serves_neither_the_step_nor_the_full_ensemble() -> None:
    off = replace(DEFAULT, asr=replace(DEFAULT.asr, model="off"))
    assert c.ASR not in {s.name for s in step_specs(off)}
    assert [s.name for s in ensemble_specs(off)] == [c.VIDEO_FEATURES, c.TEXT_FEATURES]
    assert c.ASR in {s.name for s in step_specs(DEFAULT)}


def test_gpu_target_runs_whisper_on_cuda_in_float16() -> None:
    asr = target_config(DEFAULT, "gpu").asr
    assert (asr.device, asr.compute_type) == ("cuda", "float16")
    assert {s.name: s for s in step_specs(DEFAULT, "gpu")}[c.ASR].python  # CTranslate2 drives the GPU itself


def test_preprocess_is_the_first_step_of_every_ensemble() -> None:
    """The queue policy sits on ENTRY_STEP: it must be where every ensemble call enters."""
    from reelserve.spec.topology import ENTRY_STEP

    for spec in ensemble_specs(DEFAULT):
        assert spec.calls[0].model == ENTRY_STEP, spec.name
