"""The steps and the ensembles wired from them, as data: what `config.pbtxt` files are rendered from.

A step is a Triton model: its inputs (some ragged across a dynamic batch), outputs, instances,
batching and the config sections it reads (each reaches it as one JSON parameter, see
`reelserve.spec.settings`). An ensemble is an ordered list of steps with the tensors each reads
and writes; tensors keep their names end to end, so wiring is by name. Two targets share it:
`cpu` (every step a python-backend model) and `gpu` (the encoders TensorRT plans on GPU
instances, tokens padded to one length so TensorRT's batcher can merge requests).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from reelserve.config import ReelserveConfig

from . import contract as c

TARGETS = ("cpu", "gpu")
GPU_ENGINES = (c.VISION_ENCODER, c.TEXT_ENCODER)  # TensorRT plans on the GPU target; the rest stay python
ENTRY_STEP = c.PREPROCESS  # the first step of every ensemble: where a bounded queue sheds load
# Steps whose answer is a function of their inputs and the repository alone: Triton's response
# cache may answer a re-upload's frames and tokens for them. Not `preprocess` (it pins the label
# bank's current version), `fusion_heads` (scores that version) or `asr` (it stops at a wall-clock
# cap under load: a cut transcript must not stick). docs/decisions.md, "Response cache".
CACHED_STEPS = (c.VISION_ENCODER, c.OCR, c.TEXT_ENCODER)

# The config sections (fields of `ReelserveConfig`) each python step reads, in its config.pbtxt.
STEP_SECTIONS: dict[str, tuple[str, ...]] = {
    c.PREPROCESS: ("video", "text", "ocr", "banks"),
    c.OCR: ("text", "ocr"),
    c.ASR: ("text", "asr"),
    c.VISION_ENCODER: ("encoder",),
    c.TEXT_ENCODER: ("encoder",),
    c.FUSION_HEADS: ("encoder", "banks"),
}


@dataclass(frozen=True)
class Port:
    """One input of a step; `ragged`: requests of a dynamic batch may differ in its length."""

    tensor: c.Tensor
    ragged: bool = False


@dataclass(frozen=True)
class StepSpec:
    name: str
    inputs: tuple[Port, ...]
    outputs: tuple[c.Tensor, ...]
    instances: int
    sections: tuple[str, ...] = ()  # config sections it reads (python steps)
    platform: str | None = None  # "tensorrt_plan"; None: the python backend
    kind: str = "KIND_CPU"
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    queue_timeout_us: int = 0  # Triton's default_queue_policy (BatchingConfig); 0: none
    max_queue_size: int = 0
    response_cache: bool = False  # CACHED_STEPS; the server's cache size is ServerConfig.response_cache_mib

    @property
    def python(self) -> bool:
        return self.platform is None


@dataclass(frozen=True)
class Call:
    """One step of an ensemble: the model and the tensor names it reads and writes there."""

    model: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class EnsembleSpec:
    name: str
    inputs: tuple[c.Tensor, ...]
    outputs: tuple[c.Tensor, ...]
    calls: tuple[Call, ...]


def target_config(cfg: ReelserveConfig, target: str) -> ReelserveConfig:
    """`cfg` as `target` serves it: on the GPU every token row is padded to `max_tokens`.

    TensorRT inputs cannot be ragged and Triton batches only requests of one shape, so one shape
    for every request is what lets the dynamic batcher merge them on the GPU target.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if target == "gpu":
        return replace(
            cfg,
            text=replace(cfg.text, pad_tokens_to=cfg.text.max_tokens),
            asr=replace(cfg.asr, device="cuda", compute_type="float16"),
        )
    return cfg


def asr_served(cfg: ReelserveConfig) -> bool:
    """Whether the export serves speech: the `asr` step and the `video_features_full` ensemble."""
    return cfg.asr.model != "off"


def _ports(*tensors: c.Tensor, ragged: bool = False) -> tuple[Port, ...]:
    return tuple(Port(t, ragged) for t in tensors)


def _optional(tensor: c.Tensor) -> c.Tensor:
    return replace(tensor, optional=True)


_STEP_IO: dict[str, tuple[tuple[Port, ...], tuple[c.Tensor, ...]]] = {
    c.PREPROCESS: (
        _ports(_optional(c.VIDEO), c.TEXT, c.LABEL_BANK),  # video absent: text_features
        (
            c.FRAMES,
            c.FRAME_MASK,
            c.TEXT_FRAMES,
            c.TEXT_FRAME_SIZES,
            c.INPUT_IDS,
            c.ATTENTION_MASK,
            c.TEXT_TRUNCATED,
            c.LABEL_BANK_VERSION,  # the bank version the request is pinned to, chosen here
        ),
    ),
    c.OCR: (
        (Port(c.TEXT), *_ports(c.TEXT_FRAMES, c.TEXT_FRAME_SIZES, ragged=True)),
        (c.OCR_TEXT, c.INPUT_IDS, c.ATTENTION_MASK),
    ),
    c.ASR: (
        _ports(c.VIDEO, c.TEXT, c.OCR_TEXT),  # after ocr: the request is validated and its printed text read
        (c.ASR_TEXT, c.ASR_LANGUAGE, c.INPUT_IDS, c.ATTENTION_MASK),
    ),
    c.VISION_ENCODER: (_ports(c.FRAMES, c.FRAME_MASK), (c.FRAME_LOGITS,)),
    c.TEXT_ENCODER: (_ports(c.INPUT_IDS, c.ATTENTION_MASK, ragged=True), (c.TEXT_VECTOR,)),
    c.FUSION_HEADS: (
        (
            *_ports(_optional(c.FRAME_LOGITS), _optional(c.FRAME_MASK), ragged=True),
            Port(c.TEXT_VECTOR),
            Port(c.LABEL_BANK_VERSION),
        ),
        c.FUSION_HEADS_OUTPUTS,  # frames absent: text_features
    ),
}


def step_specs(cfg: ReelserveConfig, target: str = "cpu") -> list[StepSpec]:
    """Every step of the repository for `target`, in the order they run."""
    target_config(cfg, target)  # checks the target
    b = cfg.batching
    instances = {c.PREPROCESS: b.preprocess_instances, c.ASR: b.asr_instances}
    specs = [
        StepSpec(
            name,
            inputs,
            outputs,
            instances.get(name, b.encoder_instances),
            sections=STEP_SECTIONS[name],
            max_queue_delay_us=b.max_queue_delay_us,
            preferred_batch_sizes=b.preferred_batch_sizes,
            # The queue policy on the entry step only: in Triton 2.51 a request a later step rejects
            # (full queue: the ensemble call hangs; timeout: the ensemble never counts it finished)
            # breaks its ensemble (measured, docs/decisions.md "Deadlines and bounded queues").
            queue_timeout_us=b.queue_timeout_us if name == ENTRY_STEP else 0,
            max_queue_size=b.max_queue_size if name == ENTRY_STEP else 0,
            response_cache=name in CACHED_STEPS,
        )
        for name, (inputs, outputs) in _STEP_IO.items()
        if name != c.ASR or asr_served(cfg)
    ]
    if target == "gpu":
        specs = [_as_tensorrt(s, cfg) if s.name in GPU_ENGINES else s for s in specs]
    return specs


def _as_tensorrt(spec: StepSpec, cfg: ReelserveConfig) -> StepSpec:
    """An encoder as a TensorRT plan: fixed image size, no ragged inputs (preprocess pads tokens)."""
    size = cfg.video.image_size
    fixed = {c.FRAMES.name: replace(c.FRAMES, dims=(-1, size, size, 3))}
    g = cfg.gpu
    return StepSpec(
        spec.name,
        tuple(Port(fixed.get(p.tensor.name, p.tensor)) for p in spec.inputs),
        spec.outputs,
        g.encoder_instances,
        platform="tensorrt_plan",
        kind="KIND_GPU",
        max_queue_delay_us=g.max_queue_delay_us,
        preferred_batch_sizes=g.preferred_batch_sizes,
        queue_timeout_us=spec.queue_timeout_us,
        max_queue_size=spec.max_queue_size,
        response_cache=spec.response_cache,
    )


def _names(*tensors: c.Tensor) -> tuple[str, ...]:
    return tuple(t.name for t in tensors)


def ensemble_specs(cfg: ReelserveConfig) -> list[EnsembleSpec]:
    """`video_features`: preprocess -> (vision encoder || ocr -> text encoder) -> fusion + heads.

    In `video_features` the text tower's tokens come from `ocr` (the title with the printed text),
    so `preprocess`'s own tokens of the title are left unmapped; `text_features` uses them.
    `video_features_full` (when ASR is served) is the same with `asr` between `ocr` and the text
    encoder: its tokens (title, printed text, transcript) replace `ocr`'s, which go unmapped.
    `preprocess` pins the request's label-bank version; `fusion_heads` scores with exactly that one.
    """
    tokens = _names(c.INPUT_IDS, c.ATTENTION_MASK)
    text_frames = _names(c.TEXT_FRAMES, c.TEXT_FRAME_SIZES)
    text_encoder = Call(c.TEXT_ENCODER, tokens, _names(c.TEXT_VECTOR))
    pinned = (c.TEXT_TRUNCATED.name, c.LABEL_BANK_VERSION.name)
    scored = _names(c.EMBEDDING, *c.LABEL_OUTPUTS)

    def video(name: str, outputs: tuple[c.Tensor, ...], speech: bool) -> EnsembleSpec:
        ocr_out = (c.OCR_TEXT.name,) if speech else (c.OCR_TEXT.name, *tokens)
        asr = Call(c.ASR, _names(c.VIDEO, c.TEXT, c.OCR_TEXT), (*_names(c.ASR_TEXT, c.ASR_LANGUAGE), *tokens))
        return EnsembleSpec(
            name,
            c.VIDEO_FEATURES_INPUTS,
            outputs,
            (
                Call(
                    c.PREPROCESS,
                    _names(c.VIDEO, c.TEXT, c.LABEL_BANK),
                    (*_names(c.FRAMES, c.FRAME_MASK), *text_frames, *pinned),
                ),
                Call(c.VISION_ENCODER, _names(c.FRAMES, c.FRAME_MASK), _names(c.FRAME_LOGITS)),
                Call(c.OCR, (c.TEXT.name, *text_frames), ocr_out),
                *((asr,) if speech else ()),
                text_encoder,
                Call(
                    c.FUSION_HEADS,
                    _names(c.FRAME_LOGITS, c.FRAME_MASK, c.TEXT_VECTOR, c.LABEL_BANK_VERSION),
                    _names(*c.FUSION_HEADS_OUTPUTS),
                ),
            ),
        )

    speech = [video(c.VIDEO_FEATURES_FULL, c.VIDEO_FEATURES_FULL_OUTPUTS, True)] if asr_served(cfg) else []
    return [
        video(c.VIDEO_FEATURES, c.VIDEO_FEATURES_OUTPUTS, False),
        *speech,
        EnsembleSpec(
            c.TEXT_FEATURES,
            c.TEXT_FEATURES_INPUTS,
            c.TEXT_FEATURES_OUTPUTS,
            (
                Call(c.PREPROCESS, _names(c.TEXT, c.LABEL_BANK), (*tokens, *pinned)),
                text_encoder,
                Call(c.FUSION_HEADS, _names(c.TEXT_VECTOR, c.LABEL_BANK_VERSION), scored),
            ),
        ),
    ]


def ensemble(name: str, cfg: ReelserveConfig) -> EnsembleSpec:
    by_name = {e.name: e for e in ensemble_specs(cfg)}
    if name not in by_name:
        raise KeyError(f"no ensemble {name!r}; there are {sorted(by_name)}")
    return by_name[name]


def parallel_branches(spec: EnsembleSpec) -> list[tuple[str, ...]]:
    """The chains of steps that run side by side between the ensemble's first and last step.

    `video_features` -> [("vision_encoder",), ("ocr", "text_encoder")]; a purely sequential ensemble
    gives one chain. Derived from which step reads which step's outputs, so it follows the wiring.
    """
    calls = list(spec.calls)
    first, last = calls[0].model, calls[-1].model
    producer = {out: call.model for call in calls for out in call.outputs}
    readers: dict[str, list[str]] = {call.model: [] for call in calls}
    for call in calls:
        for model in dict.fromkeys(producer[i] for i in call.inputs if i in producer):
            if model != call.model:
                readers[model].append(call.model)
    branches = []
    for start in readers[first]:
        chain, model = [], start
        while model != last:
            chain.append(model)
            following = [m for m in readers[model] if m != last] or [last]
            model = following[0]
        if chain:
            branches.append(tuple(chain))
    return branches or [tuple(call.model for call in calls[1:-1])]
