"""The one error a python-backend step raises for a bad request.

Each step turns it into `pb_utils.TritonError(..., INVALID_ARG)` for that request alone, so
the client sees gRPC INVALID_ARGUMENT with a message that names the input to fix, and the
other requests of the same dynamic batch still succeed.
"""

from __future__ import annotations


class InvalidInputError(ValueError):
    """A request input is malformed or over a limit; `field` is the wire name of that input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"input '{field}': {message}")
        self.field = field
        self.message = message
