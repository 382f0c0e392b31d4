"""reelserve's gRPC client SDK: import this, not torch and not Triton tensor builders."""

from ._aio import AsyncVideoFeaturesClient
from ._client import API_KEY_HEADER, ChannelOptions, VideoFeaturesClient
from ._errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    ReelserveError,
    ResourceExhaustedError,
    ServerError,
    UnauthenticatedError,
    UnavailableError,
)
from ._retry import NO_RETRY, RetryPolicy
from ._types import LabelScores, TextFeatures, VideoFeatures

__all__ = [
    "API_KEY_HEADER",
    "AsyncVideoFeaturesClient",
    "ChannelOptions",
    "DeadlineExceededError",
    "InvalidArgumentError",
    "LabelScores",
    "NO_RETRY",
    "ReelserveError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "ServerError",
    "TextFeatures",
    "UnauthenticatedError",
    "UnavailableError",
    "VideoFeatures",
    "VideoFeaturesClient",
]
