"""reelserve's gRPC client SDK: import this, not torch and not Triton tensor builders."""

from ._client import VideoFeaturesClient
from ._errors import DeadlineExceededError, InvalidArgumentError, ReelserveError, UnavailableError
from ._types import TextFeatures, VideoFeatures

__all__ = [
    "VideoFeaturesClient",
    "VideoFeatures",
    "TextFeatures",
    "ReelserveError",
    "InvalidArgumentError",
    "UnavailableError",
    "DeadlineExceededError",
]
