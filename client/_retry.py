"""Retries with exponential backoff and full jitter, inside one overall deadline.

Feature extraction is a pure function of its inputs, so retrying a call the server never
completed is safe; only statuses that say "not now" are retried, never a wrong request:
UNAVAILABLE (unreachable, starting, stopping; not Triton's "protocol is restricted", which is an
auth error), NOT_FOUND (Triton's answer for a model still loading or being unloaded),
CANCELLED (the server shut down mid-call; the SDK never cancels its own calls) and
RESOURCE_EXHAUSTED. Which statuses these are is decided in `_errors.py` (`retryable`); this
module only spaces the attempts.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4  # first try included
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def backoffs(self, rng: random.Random | None = None) -> Iterator[float]:
        """Sleep before attempt 2, 3, ...: uniform in [0, min(max, initial * multiplier^k)] (full jitter)."""
        rng = rng or random.Random()
        for k in range(self.max_attempts - 1):
            yield rng.uniform(0, min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**k))


NO_RETRY = RetryPolicy(max_attempts=1)
