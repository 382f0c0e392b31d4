"""The whole `video_features` computation in PyTorch: the reference the served ensemble must equal."""

from __future__ import annotations

import torch
from torch import nn

from .bert_encoder import TextTower
from .heads import FusionHeads, HeadsOutput
from .text_vector import TextVector
from .vision_tower import VisionTower


class VideoFeaturesModel(nn.Module):
    def __init__(self, vision: VisionTower, text: TextTower, heads: FusionHeads) -> None:
        super().__init__()
        self.vision, self.text, self.heads = vision, TextVector(text), heads

    @torch.no_grad()
    def forward(
        self,
        frames: torch.Tensor,  # [B, T, H, W, 3] uint8
        frame_mask: torch.Tensor,  # [B, T] bool
        input_ids: torch.Tensor,  # [B, L] int64
        attention_mask: torch.Tensor,  # [B, L] int64
    ) -> HeadsOutput:
        b, t = frame_mask.shape
        logits = self.vision(frames.reshape(b * t, *frames.shape[2:])).reshape(b, t, -1)
        logits = logits * frame_mask.unsqueeze(-1)  # padded frames carry zeros, as in the served step
        return self.heads(logits, frame_mask, self.text(input_ids, attention_mask))
