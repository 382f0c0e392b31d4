"""One exception family for every failed call, each message saying what to fix."""

from __future__ import annotations

from reelserve.spec import contract as c


class ReelserveError(Exception):
    """A call failed; `status` is the gRPC status name (e.g. "INVALID_ARGUMENT")."""

    retryable = False

    def __init__(self, status: str, details: str) -> None:
        super().__init__(f"{status}: {details}")
        self.status = status
        self.details = details


class InvalidArgumentError(ReelserveError):
    """The request is wrong (the message names the input); retrying it cannot help."""


class UnavailableError(ReelserveError):
    """The server cannot be reached, is starting or stopping; retried with backoff, then raised.

    `status` is UNAVAILABLE, NOT_FOUND when Triton answered for a model still loading or unloading,
    or CANCELLED when the server shut down with the call in flight.
    """

    retryable = True


class ResourceExhaustedError(ReelserveError):
    """The server shed load (queue full) or a message was too large; retried with backoff, then raised."""

    retryable = True


class DeadlineExceededError(ReelserveError):
    """The call did not finish within its deadline; raise `deadline_s` or send smaller batches."""


class UnauthenticatedError(ReelserveError):
    """The server wants an API key (`VideoFeaturesClient(..., api_key=...)`) or refused the one sent."""


class ServerError(ReelserveError):
    """The server failed while handling a valid request (INTERNAL, UNKNOWN, ...): see its log."""


_BY_STATUS: dict[str, type[ReelserveError]] = {
    "INVALID_ARGUMENT": InvalidArgumentError,
    "UNAVAILABLE": UnavailableError,
    # Triton answers NOT_FOUND for a model that is loading or being unloaded (server start/stop);
    # the SDK only calls its own ensembles, so for it this means "not serving right now".
    "NOT_FOUND": UnavailableError,
    # The SDK never cancels its own RPCs (a cancelled call crashes tritonserver 2.51; its gRPC
    # deadline outlives the call's), so a CANCELLED it receives is the server shutting down with
    # the call in flight: "not serving right now", like UNAVAILABLE.
    "CANCELLED": UnavailableError,
    "RESOURCE_EXHAUSTED": ResourceExhaustedError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "UNAUTHENTICATED": UnauthenticatedError,
    "PERMISSION_DENIED": UnauthenticatedError,
}

# Every status we label metrics with: a closed set, so label values stay bounded.
STATUS_LABELS = ("OK", *_BY_STATUS, "INTERNAL", "UNKNOWN", "OTHER")


def from_status(status: str | None, details: str) -> ReelserveError:
    name = (status or "UNKNOWN").removeprefix("StatusCode.")
    if c.TRITON_QUEUE_TIMEOUT in details:
        # Triton dropped the request from a step's queue when its per-request timeout (the call's
        # remaining deadline, sent by the SDK) ran out: the deadline passed, whatever status carried it.
        return DeadlineExceededError("DEADLINE_EXCEEDED", f"{details} (the server dropped it from its queue)")
    if name == "UNAVAILABLE" and c.TRITON_RESTRICTED in details:
        # Triton's restricted-protocol check answers UNAVAILABLE for a missing or wrong key;
        # retrying cannot help, so it is an authentication error here.
        return UnauthenticatedError("UNAUTHENTICATED", f"{details}; pass api_key= (the server's --api-key)")
    return _BY_STATUS.get(name, ServerError)(name, details)


def status_label(status: str) -> str:
    return status if status in STATUS_LABELS else "OTHER"
