"""The text step's graph: a tower's token states pooled over the real tokens, unit norm.

That is how e5 and MiniLM define a sentence vector, and it belongs to the text encoder: the step
then hands `fusion_heads` one vector per text instead of `[L, hidden]` states (the hop, the python
backend's shared memory and the response cache carry `hidden` floats, not `L x hidden`), and on
the GPU target both of our Triton kernels, attention and `reelserve::MaskedMeanPool`, run inside
the TensorRT engine. A text with no tokens (an empty title) gives the zero vector: "no text".
"""

from __future__ import annotations

import torch
from torch import nn

from reelserve.kernels import l2_normalize, masked_mean_pool

from .bert_encoder import TextTower


class TextVector(nn.Module):
    """`input_ids`, `attention_mask` `[B, L]` int64 -> `text_vector` `[B, hidden]` fp32, unit norm or zero."""

    def __init__(self, tower: TextTower) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = masked_mean_pool(self.tower(input_ids, attention_mask), attention_mask > 0)
        return l2_normalize(pooled.float())
