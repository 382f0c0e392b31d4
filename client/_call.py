"""One feature call's bookkeeping (deadline, retries, metrics), shared by the sync and async loops."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from typing import Literal

from tritonclient.utils import InferenceServerException

from reelserve.spec import contract as c

from ._errors import DeadlineExceededError, ReelserveError, from_status, status_label
from ._metrics import ClientMetrics
from ._retry import RetryPolicy

log = logging.getLogger("reelserve.client")

# A call's deadline is enforced here, in the client, not by cancelling the RPC: tritonserver 2.51
# (the nvidia-pytriton wheel) segfaults when a gRPC inference is cancelled mid-flight
# (triton-inference-server/server#7368, fixed in 24.12 by #7840). The RPC keeps this much extra
# time to finish on the server; its late answer is dropped.
SERVER_GRACE_S = 600.0


def server_timeout_us(remaining_s: float) -> int:
    """The call's remaining deadline as Triton's per-request `timeout` (microseconds, at least 1).

    The server drops a request still queued when it expires instead of computing an answer nobody
    waits for; the entry step's queue policy has a non-zero default timeout, which a smaller
    per-request one overrides (`topology.ENTRY_STEP`, docs/decisions.md "Deadlines and bounded queues").
    """
    return max(1, int(remaining_s * 1_000_000))


def with_deadline(headers: dict[str, str] | None, remaining_s: float) -> dict[str, str]:
    """`headers` plus the call's remaining deadline for the front door (`reelserve serve --replicas N`).

    The SDK's gRPC deadline is padded by SERVER_GRACE_S (it must never cancel), so the front door
    learns the real one from this header: it holds a call back at most that long before Triton.
    """
    return {**(headers or {}), c.DEADLINE_HEADER: str(max(1, int(remaining_s * 1000)))}


def deadline_exceeded() -> InferenceServerException:
    return InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED")


class Call:
    """Use as: `for attempt in call.attempts(): try: ...; return call.done(x) except E as e: call.failed(e)`."""

    def __init__(
        self, model: str, url: str, deadline_s: float, retry: RetryPolicy, metrics: ClientMetrics | None
    ) -> None:
        """`metrics=None` for metadata reads (model config): retried alike, not counted as feature calls."""
        if not deadline_s > 0:
            raise ValueError(f"deadline_s must be > 0, got {deadline_s}")
        self.model, self.url, self.deadline_s = model, url, deadline_s
        self._metrics = metrics  # read only by `_record`
        self.start = time.monotonic()
        self.deadline = self.start + deadline_s
        self._backoffs = retry.backoffs(random.Random())
        self.attempt = 0
        self.next_sleep = 0.0
        self._finished = False
        self._record("start")

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def attempts(self) -> Iterator[float]:
        """Yields the client timeout for each attempt; the caller sleeps `next_sleep` first."""
        while True:
            self.attempt += 1
            yield max(self.remaining(), 0.001)

    def done(self, value):
        self._finish("OK")
        return value

    def failed(self, exc: InferenceServerException | ReelserveError) -> None:
        """Decide: set `next_sleep` and return to retry, or raise the mapped error."""
        error = exc if isinstance(exc, ReelserveError) else from_status(exc.status(), exc.message() or str(exc))
        if error.retryable:
            backoff = next(self._backoffs, None)
            if backoff is not None and backoff < self.remaining():
                self._record("retry", error.status)
                log.info("%s attempt %d: %s; retrying in %.3fs", self.model, self.attempt, error.status, backoff)
                self.next_sleep = backoff
                return
            spent = time.monotonic() - self.start
            error = type(error)(
                error.status,
                f"{error.details} (server {self.url}, {self.attempt} attempt(s) in {spent:.2f}s; "
                "is `reelserve serve` running and ready?)",
            )
        elif isinstance(error, DeadlineExceededError):
            error = DeadlineExceededError(
                error.status,
                f"{self.model} did not finish within its {self.deadline_s:g}s deadline; "
                "raise deadline_s or send smaller batches",
            )
        self._finish(error.status)
        raise error from None

    def abandon(self, exc: BaseException) -> None:
        """The call ended by something other than an answer (cancelled task, closed client): count it."""
        self._finish("CANCELLED" if type(exc).__name__ == "CancelledError" else "OTHER")

    def _finish(self, status: str) -> None:
        if not self._finished:
            self._finished = True
            self._record("finish", status)

    def _record(self, event: Literal["start", "retry", "finish"], status: str = "OK") -> None:
        """The one place that touches metrics: a metadata read (`metrics=None`) records nothing."""
        metrics = self._metrics
        if metrics is None:
            return
        label = status_label(status)
        if event == "start":
            metrics.in_flight.labels(self.model).inc()
        elif event == "retry":
            metrics.retries.labels(self.model, label).inc()
        else:
            metrics.in_flight.labels(self.model).dec()
            metrics.latency.labels(self.model, label.lower()).observe(time.monotonic() - self.start)
            if status != "OK":
                metrics.errors.labels(self.model, label).inc()
