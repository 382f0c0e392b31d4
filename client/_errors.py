"""One exception family for every failed call, each message saying what to fix."""

from __future__ import annotations


class ReelserveError(Exception):
    """A call failed; `status` is the gRPC status name (e.g. "INVALID_ARGUMENT")."""

    def __init__(self, status: str, details: str) -> None:
        super().__init__(f"{status}: {details}")
        self.status = status
        self.details = details


class InvalidArgumentError(ReelserveError):
    """The request is wrong (the message names the input); retrying it cannot help."""


class UnavailableError(ReelserveError):
    """The server cannot be reached or is not ready; safe to retry later."""


class DeadlineExceededError(ReelserveError):
    """The call took longer than its deadline."""


_BY_STATUS = {
    "INVALID_ARGUMENT": InvalidArgumentError,
    "UNAVAILABLE": UnavailableError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
}


def from_status(status: str | None, details: str) -> ReelserveError:
    name = (status or "UNKNOWN").removeprefix("StatusCode.")
    return _BY_STATUS.get(name, ReelserveError)(name, details)
