"""Fusion and heads: pooled frames and tokens -> item embedding, tags, zero-shot scores, semantic IDs.

The vision tower is an ImageNet classifier, not an image-text model, so the video enters the
text tower's space by ConSE (Norouzi et al., ICLR 2014): its embedding is the
probability-weighted mix of the text embeddings of its top-T class names. Both the video vector
and the title's vector are centred on the mean class-name embedding (the text tower's space is
anisotropic) and renormalised, then mixed into one unit vector. Label banks and the semantic-ID
codebooks live in that same centred space. The served graph scores no labels: banks change at run
time and are scored by the `fusion_heads` step (`reelserve.labels`); `label_scores` here is the
exported `default` bank's, the PyTorch reference of what the server answers for it.

`save_heads` / `load_fusion_heads`: the fitted buffers as `heads.npz` and the settings and names
as `heads.json`, in the `fusion_heads` step's version folder.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reelserve.kernels import l2_normalize, masked_mean_pool


@dataclass(frozen=True)
class HeadsOutput:
    embedding: torch.Tensor  # [B, E] fp32, unit norm
    tag_ids: torch.Tensor  # [B, K] int64
    tag_scores: torch.Tensor  # [B, K] fp32
    tag_entropy: torch.Tensor  # [B, 1] fp32, entropy of the whole class distribution / log(classes)
    label_scores: torch.Tensor  # [B, C] fp32, cosine in [-1, 1]
    semantic_ids: torch.Tensor  # [B, levels] int32


class FusionHeads(nn.Module):
    """Every tensor it needs at inference is a buffer, fitted or computed by `reelserve export`."""

    def __init__(
        self,
        class_embeddings: torch.Tensor,  # [classes, E] unit-norm text embeddings of class prompts
        label_embeddings: torch.Tensor,  # [C, E] unit-norm text embeddings of the label bank
        codebooks: torch.Tensor,  # [levels, K, E] residual codebooks in the centred space
        *,
        top_k_tags: int,
        conse_top_t: int,
        video_weight: float,
        tag_temperature: float = 1.0,
    ) -> None:
        super().__init__()
        center = class_embeddings.mean(dim=0)
        self.register_buffer("class_embeddings", class_embeddings.float())
        self.register_buffer("center", center.float())
        self.register_buffer("label_embeddings_raw", label_embeddings.float())
        self.register_buffer("label_bank", l2_normalize(label_embeddings.float() - center))
        self.register_buffer("codebooks", codebooks.float())
        self.top_k_tags = top_k_tags
        self.conse_top_t = conse_top_t
        self.video_weight = video_weight
        self.tag_temperature = tag_temperature

    def centred(self, v: torch.Tensor) -> torch.Tensor:
        return l2_normalize(v - self.center)

    def video_vector(self, class_probs: torch.Tensor) -> torch.Tensor:
        """ConSE: [B, classes] probabilities -> [B, E] unit vector in text space (centred)."""
        top_p, top_i = torch.topk(class_probs, self.conse_top_t, dim=-1)  # [B, T]
        weights = top_p / top_p.sum(dim=-1, keepdim=True).clamp(min=1e-12)
        mixed = (weights.unsqueeze(-1) * self.class_embeddings[top_i]).sum(dim=1)  # [B, E]
        return self.centred(l2_normalize(mixed))

    def semantic_ids(self, x: torch.Tensor) -> torch.Tensor:
        """Residual quantisation: at each level, the nearest code to what the levels above left."""
        residual, ids = x, []
        for codebook in self.codebooks:  # [K, E]
            d = (residual * residual).sum(-1, keepdim=True) - 2 * residual @ codebook.T + (codebook * codebook).sum(-1)
            idx = torch.argmin(d, dim=-1)  # [B]
            residual = residual - codebook[idx]
            ids.append(idx)
        return torch.stack(ids, dim=-1).to(torch.int32)

    def forward(
        self,
        frame_logits: torch.Tensor,  # [B, T, classes]
        frame_mask: torch.Tensor,  # [B, T] bool
        text_vector: torch.Tensor,  # [B, E] unit norm, or zero for no text (`TextVector`)
    ) -> HeadsOutput:
        has_video = frame_mask.any(dim=-1, keepdim=True).float()  # [B, 1]
        has_text = (text_vector.abs().amax(dim=-1, keepdim=True) > 0).float()

        frame_probs = torch.softmax(frame_logits / self.tag_temperature, dim=-1)
        clip_probs = masked_mean_pool(frame_probs, frame_mask)  # [B, classes]
        tag_scores, tag_ids = torch.topk(clip_probs, self.top_k_tags, dim=-1)
        plogp = clip_probs * torch.log(clip_probs.clamp(min=1e-12))
        tag_entropy = -plogp.sum(dim=-1, keepdim=True) / math.log(clip_probs.shape[-1])  # text only: 0

        video = self.video_vector(clip_probs) * has_video
        text = self.centred(text_vector) * has_text
        # video_weight mixes the two only when both exist; a lone modality is the embedding by itself
        w_video = has_video * (self.video_weight * has_text + (1 - has_text))
        w_text = has_text * ((1 - self.video_weight) * has_video + (1 - has_video))
        embedding = l2_normalize(w_video * video + w_text * text)
        return HeadsOutput(
            embedding=embedding,
            tag_ids=tag_ids,
            tag_scores=tag_scores,
            tag_entropy=tag_entropy,
            label_scores=embedding @ self.label_bank.T,
            semantic_ids=self.semantic_ids(embedding),
        )


def save_heads(version_dir: Path, heads: FusionHeads, meta: dict) -> None:
    """`heads.npz` (the fitted buffers) and `heads.json` (`meta`: settings, tag and label names, provenance)."""
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
