"""`reelserve export --target gpu`: encoders -> plugin ONNX graphs -> TensorRT engines -> a GPU model repository.

Per encoder and precision (fp32 plus `GpuConfig.precisions`):
1. export the encoder with our kernels as `reelserve::*` nodes (`plugin_onnx`), check the graph
   with `onnx.checker` and strict shape inference, and check parity with PyTorch on CPU by
   running its CPU-runnable form in ONNX Runtime (fp32 always; fp16/bf16 where ONNX Runtime's
   CPU kernels exist, the report says where not);
2. unless `--onnx-only`: build a TensorRT engine (`engines`, plugins from `plugins`) and
   check its parity with PyTorch on the GPU (cosine >= 0.999 per output);
3. write the GPU model repository: the same ensembles and python steps as the CPU target (their
   artifacts come from the CPU export), the encoders as `tensorrt_plan` models holding the
   `GpuConfig.serve_precision` engines.
Parity is `export.parity.check_parity`, the CPU export's own check.
Everything lands in `--out`: `onnx/`, `engines/`, `timing.cache`, `model_repository/`,
`gpu-report.json`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from tqdm.auto import tqdm

from reelserve import __version__
from reelserve.config import ReelserveConfig
from reelserve.labels.store import EXPORTED_BANK_DIR
from reelserve.models.bert_encoder import TextTower
from reelserve.models.text_towers import TOKENIZER_FILE, TOWER_FILE, tower_spec
from reelserve.models.text_vector import TextVector
from reelserve.models.vision_tower import VisionTower, load_efficientnet_lite0
from reelserve.serving.asr import WHISPER_DIR
from reelserve.serving.ocr import GRAPH_FILES
from reelserve.serving.text_tokenize import TextTokenizer
from reelserve.spec import contract as c
from reelserve.spec.topology import GPU_ENGINES

from .. import repository
from ..cpu import export_cpu
from ..parity import check_parity, parity_clips
from .engines import EngineRunner, build_engine
from .plugin_onnx import cast_module, custom_nodes, export_gpu_onnx

REPORT = "gpu-report.json"


class VisionEncoderGraph(nn.Module):
    """The GPU vision step: every frame slot through the tower, padded slots zeroed (no ragged skip on GPU)."""

    def __init__(self, tower: VisionTower) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        b, t = frame_mask.shape
        logits = self.tower(frames.reshape(b * t, *frames.shape[2:])).float().reshape(b, t, -1)
        return logits * frame_mask.unsqueeze(-1).to(logits.dtype)


class TextEncoderGraph(nn.Module):
    """The GPU text step: attention and the masked mean pool as our plugins, a unit vector out in fp32."""

    def __init__(self, tower: TextTower) -> None:
        super().__init__()
        self.vector = TextVector(tower)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.vector(input_ids, attention_mask).float()


@dataclass(frozen=True)
class EncoderGraph:
    name: str  # the step's model name
    module: nn.Module  # fp32; cast per precision
    sample: tuple[torch.Tensor, ...]
    input_names: Sequence[str]
    output_names: Sequence[str]
    dynamic_axes: Mapping[str, Mapping[int, str]]
    profile: Mapping[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]  # TensorRT min/opt/max


def encoder_graphs(
    cfg: ReelserveConfig, vision: VisionTower, text: TextTower, cpu_repository: Path
) -> list[EncoderGraph]:
    """The two GPU encoders with sample inputs; titles tokenised by the CPU export's own preprocess files."""
    clip, clip_mask, titles = parity_clips(cfg)
    tokenizer = TextTokenizer.from_folder(Path(cpu_repository) / c.PREPROCESS / "1", cfg.text)
    ids, amask, _ = tokenizer.encode(titles)
    top, opt, t, s, n = (
        cfg.batching.max_batch_size,
        cfg.gpu.opt_batch_size,
        cfg.video.num_frames,
        cfg.video.image_size,
        cfg.text.max_tokens,
    )
    frames_axes = {0: "batch", 1: "frames"}
    token_axes = {0: "batch", 1: "tokens"}
    return [
        EncoderGraph(
            c.VISION_ENCODER,
            VisionEncoderGraph(vision),
            (clip, clip_mask),
            [c.FRAMES.name, c.FRAME_MASK.name],
            [c.FRAME_LOGITS.name],
            {c.FRAMES.name: frames_axes, c.FRAME_MASK.name: frames_axes},
            {
                c.FRAMES.name: ((1, 1, s, s, 3), (opt, t, s, s, 3), (top, t, s, s, 3)),
                c.FRAME_MASK.name: ((1, 1), (opt, t), (top, t)),
            },
        ),
        EncoderGraph(
            c.TEXT_ENCODER,
            TextEncoderGraph(text),
            (torch.from_numpy(ids), torch.from_numpy(amask)),
            [c.INPUT_IDS.name, c.ATTENTION_MASK.name],
            [c.TEXT_VECTOR.name],
            {c.INPUT_IDS.name: token_axes, c.ATTENTION_MASK.name: token_axes},
            {name: ((1, 1), (opt, n), (top, n)) for name in (c.INPUT_IDS.name, c.ATTENTION_MASK.name)},
        ),
    ]


def check_graph(model: onnx.ModelProto) -> None:
    """onnx.checker (full) and strict shape inference, custom nodes included (their schemas are registered)."""
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)


def ort_parity(graph: EncoderGraph, model: onnx.ModelProto, want: Sequence[np.ndarray]) -> list[dict] | str:
    """ONNX Runtime (CPU) on the CPU-runnable graph; a string says why it could not run."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT's CPU provider lacks e.g. bf16 kernels: say so, do not pretend
        if "NOT_IMPLEMENTED" in str(e):
            return f"not run: ONNX Runtime's CPU provider has no kernel for it ({str(e).splitlines()[0][:160]})"
        raise
    feeds = {n: x.numpy() for n, x in zip(graph.input_names, graph.sample, strict=True)}
    got = session.run(list(graph.output_names), feeds)
    return [p.as_dict() for p in check_parity(want, got, graph.output_names, step=graph.name)]


def export_gpu(
    out: Path,
    cfg: ReelserveConfig,
    *,
    onnx_only: bool,
    cpu_repository: Path,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Write `out/` (see module doc); returns the report also saved as `out/gpu-report.json`."""
    out = Path(out)
    precisions = ["fp32", *[p for p in cfg.gpu.precisions if p != "fp32"]]
    if cfg.gpu.serve_precision not in precisions:
        raise ValueError(f"serve_precision {cfg.gpu.serve_precision!r} is not among the precisions {precisions}")
    report: dict = {"reelserve": __version__, "onnx_only": onnx_only, "precisions": precisions, "graphs": {}}
    started = time.perf_counter()

    export_cpu(cpu_repository, cfg, progress=progress, log=log)  # python steps' artifacts (reused when current)
    graphs = encoder_graphs(cfg, load_efficientnet_lite0(), tower_spec(cfg.text.tower).load(), cpu_repository)
    steps = len(graphs) * len(precisions) * (1 if onnx_only else 2) + 1
    # disable=None: a bar on a terminal only; a log file gets no carriage-return updates
    bar = tqdm(total=steps, desc="export gpu", unit="step", disable=None if progress else True)
    engines: dict[str, Path] = {}
    for graph in graphs:
        with torch.no_grad():
            want = [graph.module(*graph.sample).numpy()]
        for precision in precisions:
            bar.set_postfix_str(f"{graph.name} {precision} onnx")
            t0 = time.perf_counter()
            forms = export_gpu_onnx(
                cast_module(graph.module, precision),
                graph.sample,
                input_names=graph.input_names,
                output_names=graph.output_names,
                dynamic_axes=graph.dynamic_axes,
            )
            check_graph(forms.plugin)
            path = out / "onnx" / f"{graph.name}.{precision}.onnx"
            path.parent.mkdir(parents=True, exist_ok=True)
            onnx.save(forms.plugin, path)
            entry = {
                "onnx": str(path.relative_to(out)),
                "plugin_nodes": sorted({n.op_type for n in custom_nodes(forms.plugin)}),
                "plugin_node_count": len(custom_nodes(forms.plugin)),
                "onnx_seconds": round(time.perf_counter() - t0, 1),
                "cpu_parity": ort_parity(graph, forms.cpu_runnable, want),
            }
            bar.update(1)
            if not onnx_only:
                bar.set_postfix_str(f"{graph.name} {precision} engine")
                engine = out / "engines" / f"{graph.name}.{precision}.plan"
                built = build_engine(
                    path,
                    engine,
                    graph.profile,
                    timing_cache=out / "timing.cache",
                    workspace_bytes=cfg.gpu.workspace_bytes,
                    optimization_level=cfg.gpu.builder_optimization_level,
                    log=log,
                )
                got = EngineRunner(engine)(dict(zip(graph.input_names, graph.sample, strict=True)))
                entry["engine"] = {"path": str(engine.relative_to(out)), "seconds": built.seconds, "bytes": built.bytes}
                outputs = [got[n].float().cpu().numpy() for n in graph.output_names]
                entry["engine_parity"] = [
                    p.as_dict()
                    for p in check_parity(want, outputs, graph.output_names, runtime="TensorRT", step=graph.name)
                ]
                report["tensorrt"] = built.tensorrt
                engines[f"{graph.name}.{precision}"] = engine
                bar.update(1)
            report["graphs"][f"{graph.name}.{precision}"] = entry

    bar.set_postfix_str("repository")
    write_gpu_repository(out / "model_repository", cfg, cpu_repository, engines)
    bar.update(1)
    bar.close()
    report["seconds"] = round(time.perf_counter() - started, 1)
    (out / REPORT).write_text(json.dumps(report, indent=1))
    return report


def write_gpu_repository(root: Path, cfg: ReelserveConfig, cpu_repository: Path, engines: Mapping[str, Path]) -> None:
    """Configs for the GPU target; python steps' artifacts from the CPU export; the serving engines if built."""
    if root.exists():
        shutil.rmtree(root)
    space = repository.exported_embedding_space(cpu_repository)
    version_dirs = {
        d.parent.name: d for d in repository.write_repository(root, cfg, target="gpu", embedding_space=space)
    }
    for step, files in (
        (c.PREPROCESS, [TOKENIZER_FILE, TOWER_FILE]),
        (c.OCR, [TOKENIZER_FILE, TOWER_FILE, *GRAPH_FILES.values()]),
        (c.FUSION_HEADS, ["model.onnx", "heads.npz", "heads.json"]),
    ):
        for name in files:
            shutil.copy(cpu_repository / step / "1" / name, version_dirs[step] / name)
    for step in (c.PREPROCESS, c.FUSION_HEADS):  # the exported default label bank both read
        shutil.copytree(cpu_repository / step / "1" / EXPORTED_BANK_DIR, version_dirs[step] / EXPORTED_BANK_DIR)
    if c.ASR in version_dirs:  # Whisper's CTranslate2 folder serves both targets (float16 on CUDA, see target_config)
        for name in (TOKENIZER_FILE, TOWER_FILE):
            shutil.copy(cpu_repository / c.ASR / "1" / name, version_dirs[c.ASR] / name)
        shutil.copytree(cpu_repository / c.ASR / "1" / WHISPER_DIR, version_dirs[c.ASR] / WHISPER_DIR)
    for step in GPU_ENGINES:
        plan = engines.get(f"{step}.{cfg.gpu.serve_precision}")
        if plan is not None:
            shutil.copy(plan, version_dirs[step] / "model.plan")
