"""Vision tower: real EfficientNet-Lite0 weights classify real photos; batching does not change results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reelserve.models.vision_tower import IMAGE_SIZE, NUM_CLASSES, load_efficientnet_lite0

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


def _photo(name: str) -> np.ndarray:
    import skimage.data
    from skimage.transform import resize

    img = getattr(skimage.data, name)()
    return (resize(img, (IMAGE_SIZE, IMAGE_SIZE), anti_aliasing=True) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tower():
    return load_efficientnet_lite0()


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: _photo(name) for name in ("chelsea", "coffee", "astronaut")}


def _logits(tower, frames: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return tower(torch.from_numpy(np.ascontiguousarray(frames)))


def test_chelsea_is_a_cat(tower, photos) -> None:
    logits = _logits(tower, photos["chelsea"][None])
    assert logits.shape == (1, NUM_CLASSES) and logits.dtype == torch.float32
    top5 = logits[0].topk(5).indices.tolist()
    assert top5[0] in CAT_CLASSES, f"top-5 ImageNet classes for chelsea: {top5}"


def test_coffee_is_coffee(tower, photos) -> None:
    top5 = _logits(tower, photos["coffee"][None])[0].topk(5).indices.tolist()
    assert COFFEE_CLASSES & set(top5), f"top-5 ImageNet classes for coffee: {top5}"


def test_batch_equals_one_by_one(tower, photos) -> None:
    frames = np.stack([photos["chelsea"], photos["coffee"], photos["astronaut"], np.fliplr(photos["coffee"])])
    batched = _logits(tower, frames)
    single = torch.cat([_logits(tower, f[None]) for f in frames])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)
    # the tower is a function of the frame: different frames give different logits
    assert (batched[0] - batched[1]).abs().max() > 1.0
