"""The generated Triton repository: parses as ModelConfig, wires every ensemble consistently, safe paths."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2

from reelserve.config import DEFAULT, ReelserveConfig
from reelserve.export import repository
from reelserve.export.repository import inside, read_config, read_step_settings, write_repository
from reelserve.spec import contract as c
from reelserve.spec.settings import step_parameters
from reelserve.spec.topology import CACHED_STEPS, StepSpec, ensemble_specs, step_specs

STEPS = [c.PREPROCESS, c.VISION_ENCODER, c.OCR, c.ASR, c.TEXT_ENCODER, c.FUSION_HEADS]
ENSEMBLES = [c.VIDEO_FEATURES, c.TEXT_FEATURES, c.VIDEO_FEATURES_FULL]
DTYPE = model_config_pb2.DataType


def _parse(path: Path) -> model_config_pb2.ModelConfig:
    return read_config(path.parent)


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict[str, model_config_pb2.ModelConfig]:
    root = tmp_path_factory.mktemp("repo")
    version_dirs = write_repository(root, DEFAULT)
    assert sorted(d.parent.name for d in version_dirs) == sorted(STEPS)
    assert all(d.name == "1" and (d / "model.py").is_file() for d in version_dirs)
    for name in ENSEMBLES:
        assert (root / name / "1").is_dir(), f"Triton needs a version folder for {name}"
    assert sorted(p.name for p in root.iterdir()) == sorted(STEPS + ENSEMBLES)
    return {name: _parse(root / name / "config.pbtxt") for name in STEPS + ENSEMBLES}


def _contract_io(t: c.Tensor, io) -> None:
    assert io.name == t.name
    assert io.data_type == DTYPE.Value(t.dtype), f"{t.name}: {DTYPE.Name(io.data_type)} != {t.dtype}"
    assert tuple(io.dims) == t.dims, f"{t.name}: dims {list(io.dims)} != {t.dims}"


def test_every_config_parses_with_its_own_name(configs) -> None:
    for name, cfg in configs.items():
        assert cfg.name == name
        if name in ENSEMBLES:
            assert cfg.platform == "ensemble"
        else:
            assert cfg.backend == "python"
            assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
            batching = cfg.dynamic_batching
            assert list(batching.preferred_batch_size) == list(DEFAULT.batching.preferred_batch_sizes)
            assert batching.max_queue_delay_microseconds == DEFAULT.batching.max_queue_delay_us
            assert cfg.max_batch_size == DEFAULT.batching.max_batch_size


def test_step_tensors_are_the_contract(configs) -> None:
    for spec in step_specs(DEFAULT):
        cfg = configs[spec.name]
        assert [i.name for i in cfg.input] == [p.tensor.name for p in spec.inputs]
        for port, io in zip(spec.inputs, cfg.input, strict=True):
            _contract_io(port.tensor, io)
            assert io.optional == port.tensor.optional
            assert io.allow_ragged_batch == port.ragged
        assert [o.name for o in cfg.output] == [t.name for t in spec.outputs]
        for t, io in zip(spec.outputs, cfg.output, strict=True):
            _contract_io(t, io)
        params = {k: v.string_value for k, v in cfg.parameters.items()}
        assert params == step_parameters(DEFAULT, spec.sections)
    fusion = {i.name: i for i in configs[c.FUSION_HEADS].input}
    assert fusion[c.FRAME_LOGITS.name].optional and fusion[c.FRAME_MASK.name].optional
    assert not fusion[c.TEXT_VECTOR.name].optional


def test_ensemble_tensors_are_the_contract(configs) -> None:
    want = {
        c.VIDEO_FEATURES: (c.VIDEO_FEATURES_INPUTS, c.VIDEO_FEATURES_OUTPUTS),
        c.TEXT_FEATURES: (c.TEXT_FEATURES_INPUTS, c.TEXT_FEATURES_OUTPUTS),
        c.VIDEO_FEATURES_FULL: (c.VIDEO_FEATURES_FULL_INPUTS, c.VIDEO_FEATURES_FULL_OUTPUTS),
    }
    for name, (inputs, outputs) in want.items():
        cfg = configs[name]
        assert [i.name for i in cfg.input] == [t.name for t in inputs]
        assert [o.name for o in cfg.output] == [t.name for t in outputs]
        for t, io in zip(inputs, cfg.input, strict=True):
            _contract_io(t, io)
        for t, io in zip(outputs, cfg.output, strict=True):
            _contract_io(t, io)
        assert cfg.max_batch_size >= 8, f"{name}: max_batch_size {cfg.max_batch_size}"


@pytest.mark.parametrize("ensemble", ENSEMBLES)
def test_ensemble_wiring(configs, ensemble: str) -> None:
    cfg = configs[ensemble]
    dtypes = {i.name: i.data_type for i in cfg.input}  # ensemble tensor -> dtype of its producer
    produced_by: dict[str, str] = {}
    for step in cfg.ensemble_scheduling.step:
        model = configs[step.model_name]
        assert model.max_batch_size >= cfg.max_batch_size, f"{step.model_name} batches less than {ensemble}"
        model_inputs = {i.name: i for i in model.input}
        model_outputs = {o.name: o for o in model.output}
        for key, value in step.input_map.items():
            assert key in model_inputs, f"{step.model_name} has no input {key}"
            assert value in dtypes, f"{ensemble}: {step.model_name} reads {value!r} before anything produces it"
            assert dtypes[value] == model_inputs[key].data_type, (
                f"{ensemble}: {value} is {DTYPE.Name(dtypes[value])} but {step.model_name}.{key} "
                f"wants {DTYPE.Name(model_inputs[key].data_type)}"
            )
        missing = [n for n, i in model_inputs.items() if not i.optional and n not in step.input_map]
        assert not missing, f"{ensemble}: required inputs of {step.model_name} not mapped: {missing}"
        for key, value in step.output_map.items():
            assert key in model_outputs, f"{step.model_name} has no output {key}"
            assert value not in dtypes, f"{ensemble}: {value} produced twice"
            dtypes[value] = model_outputs[key].data_type
            produced_by[value] = step.model_name
    for out in cfg.output:
        assert out.name in produced_by, f"{ensemble}: output {out.name} is produced by no step"
        assert dtypes[out.name] == out.data_type, f"{ensemble}: output {out.name} dtype mismatch"


def _producers(cfg: model_config_pb2.ModelConfig) -> dict[str, str]:
    """Ensemble tensor -> the step that produces it."""
    return {value: step.model_name for step in cfg.ensemble_scheduling.step for value in step.output_map.values()}


def test_video_features_text_tower_reads_the_title_with_the_printed_text(configs) -> None:
    """video_features: the text encoder reads `ocr`'s tokens (title + OCR text); text_features: preprocess's."""
    video, text = _producers(configs[c.VIDEO_FEATURES]), _producers(configs[c.TEXT_FEATURES])
    assert video[c.INPUT_IDS.name] == video[c.ATTENTION_MASK.name] == c.OCR
    assert video[c.TEXT_FRAMES.name] == video[c.TEXT_FRAME_SIZES.name] == c.PREPROCESS
    assert video[c.OCR_TEXT.name] == c.OCR and video[c.TEXT_TRUNCATED.name] == c.PREPROCESS
    assert text[c.INPUT_IDS.name] == c.PREPROCESS and c.OCR not in text.values()
    ocr = {i.name: i for i in configs[c.OCR].input}
    assert ocr[c.TEXT_FRAMES.name].allow_ragged_batch and ocr[c.TEXT_FRAME_SIZES.name].allow_ragged_batch


def test_full_text_tower_reads_title_printed_text_and_transcript(configs) -> None:
    """video_features_full: `asr` reads the upload and `ocr`'s text, and its tokens feed the text encoder."""
    full = _producers(configs[c.VIDEO_FEATURES_FULL])
    assert full[c.INPUT_IDS.name] == full[c.ATTENTION_MASK.name] == c.ASR
    assert full[c.OCR_TEXT.name] == c.OCR and full[c.ASR_TEXT.name] == full[c.ASR_LANGUAGE.name] == c.ASR
    (asr,) = [s for s in configs[c.VIDEO_FEATURES_FULL].ensemble_scheduling.step if s.model_name == c.ASR]
    assert dict(asr.input_map) == {n: n for n in (c.VIDEO.name, c.TEXT.name, c.OCR_TEXT.name)}
    assert configs[c.ASR].instance_group[0].count == DEFAULT.batching.asr_instances


def test_asr_off_writes_neither_the_step_nor_the_full_ensemble(tmp_path: Path) -> None:
    write_repository(tmp_path, replace(DEFAULT, asr=replace(DEFAULT.asr, model="off")))
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(set(STEPS + ENSEMBLES) - {c.ASR, c.VIDEO_FEATURES_FULL})


def test_ocr_config_flows_into_both_steps(tmp_path: Path) -> None:
    cfg = replace(DEFAULT, ocr=replace(DEFAULT.ocr, frames=3, max_side=640, min_score=0.7, max_chars=99))
    write_repository(tmp_path, cfg)
    pre, ocr = read_step_settings(tmp_path / c.PREPROCESS), read_step_settings(tmp_path / c.OCR)
    assert pre["ocr"] == ocr["ocr"] == cfg.ocr
    assert pre["text"] == ocr["text"] == cfg.text


def test_ensembles_carry_the_embedding_space_not_labels(configs) -> None:
    """Labels change at run time (label banks): they travel with responses, never in a config."""
    for name in ENSEMBLES:
        assert set(configs[name].parameters) == {"embedding_space"}


def test_parameters_with_quotes_backslashes_and_unicode(tmp_path: Path) -> None:
    odd = ('say "cheese"', "back\\slash \\n not a newline", "猫と café ☕", "tab\tand\nnewline", "Ünïcödé 🚀", "")
    for space in odd:
        write_repository(tmp_path, DEFAULT, embedding_space=space)
        for name in ENSEMBLES:
            assert _parse(tmp_path / name / "config.pbtxt").parameters["embedding_space"].string_value == space


def test_batching_config_flows_into_every_config(tmp_path: Path) -> None:
    cfg = replace(DEFAULT, batching=replace(DEFAULT.batching, max_batch_size=8, preferred_batch_sizes=(2, 8, 32)))
    write_repository(tmp_path, cfg)
    for name in STEPS + ENSEMBLES:
        parsed = _parse(tmp_path / name / "config.pbtxt")
        assert parsed.max_batch_size == 8
        if name in STEPS:  # preferred sizes above max_batch_size are dropped (Triton refuses them)
            assert list(parsed.dynamic_batching.preferred_batch_size) == [2, 8]


def test_inside_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    assert inside(root, "model", "1") == (root / "model" / "1").resolve()
    for parts in (("..", "evil"), ("../evil", "1"), ("model", "..", "..", "evil"), ("/etc", "passwd")):
        with pytest.raises(ValueError, match="outside the model repository"):
            inside(root, *parts)
    (root / "link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(ValueError):
        inside(root, "link", "config.pbtxt")


def test_write_repository_refuses_escaping_step_name(tmp_path: Path, monkeypatch) -> None:
    def evil_specs(cfg: ReelserveConfig, target: str = "cpu") -> list[StepSpec]:
        return [replace(step_specs(cfg, target)[0], name="../evil")]

    monkeypatch.setattr(repository, "step_specs", evil_specs)
    root = tmp_path / "repo"
    with pytest.raises(ValueError, match="outside the model repository"):
        write_repository(root, DEFAULT)
    assert not (tmp_path / "evil").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_specs_match_generated_wiring() -> None:
    """The ensemble specs only reference steps that exist."""
    names = {s.name for s in step_specs(DEFAULT)}
    for spec in ensemble_specs(DEFAULT):
        assert {call.model for call in spec.calls} <= names


def _every_setting_changed() -> ReelserveConfig:
    """DEFAULT with every value that crosses into a step changed, so a dropped or defaulted one shows."""
    return replace(
        DEFAULT,
        video=replace(
            DEFAULT.video,
            num_frames=5,
            image_size=192,
            max_video_bytes=1 << 20,
            max_decoded_frames=99,
            max_source_pixels=1 << 16,
            max_decode_seconds=2.5,
        ),  # fmt: skip
        text=replace(DEFAULT.text, tower="minilm", max_tokens=64, max_text_bytes=4096, pad_tokens_to=32),
        ocr=replace(DEFAULT.ocr, frames=3, max_side=480, min_score=0.75, max_chars=99, ort_threads=1),
        asr=replace(
            DEFAULT.asr,
            model="tiny-en",
            max_seconds=12.5,
            beam_size=2,
            max_new_tokens=64,
            max_wall_s=3.0,
            vad=False,
            compute_type="int8_float32",
            cpu_threads=1,
        ),  # fmt: skip
        encoder=replace(DEFAULT.encoder, ort_threads=2, max_frames_per_run=16),
    )


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_every_step_loads_the_settings_it_was_written_with(tmp_path: Path, target: str) -> None:
    cfg = _every_setting_changed()
    write_repository(tmp_path, cfg, target)
    python_steps = [s for s in step_specs(cfg, target) if s.python]
    assert len(python_steps) == (6 if target == "cpu" else 4)
    for spec in python_steps:
        loaded = read_step_settings(tmp_path / spec.name)
        want = {name: getattr(cfg, name) for name in spec.sections}
        if target == "gpu" and "text" in want:  # one token shape for TensorRT's batcher
            want["text"] = replace(cfg.text, pad_tokens_to=cfg.text.max_tokens)
        if target == "gpu" and "asr" in want:  # Whisper on the GPU
            want["asr"] = replace(cfg.asr, device="cuda", compute_type="float16")
        assert loaded == want, spec.name


def test_only_the_entry_step_has_a_queue_policy(configs) -> None:
    """Deadlines and the queue bound act at preprocess; a rejection further in breaks the ensemble in 2.51."""
    b = DEFAULT.batching
    for name in STEPS:
        batching = configs[name].dynamic_batching
        policy = batching.default_queue_policy
        if name == c.PREPROCESS:
            assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
            assert policy.default_timeout_microseconds == b.queue_timeout_us > 0  # non-zero: overrides apply
            assert policy.allow_timeout_override
            assert policy.max_queue_size == b.max_queue_size > 0
        else:
            assert not batching.HasField("default_queue_policy"), name


def test_only_bank_independent_steps_use_the_response_cache(configs) -> None:
    """A cached preprocess or fusion_heads would answer with the label bank of the first upload."""
    for name in STEPS:
        assert configs[name].response_cache.enable == (name in CACHED_STEPS), name
    for name in ENSEMBLES:
        assert not configs[name].response_cache.enable, name
    assert set(CACHED_STEPS) == {c.VISION_ENCODER, c.OCR, c.TEXT_ENCODER}


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_the_gpu_engines_keep_the_response_cache(target: str) -> None:
    cached = {s.name for s in step_specs(DEFAULT, target) if s.response_cache}
    assert cached == set(CACHED_STEPS) & {s.name for s in step_specs(DEFAULT, target)}
