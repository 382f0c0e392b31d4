"""The one error of the launcher: a server (tritonserver or a benchmark baseline) would not start.

Its own module so every part of the package (install, process, access, server, supervise) can
raise it without importing each other. The client's `reelserve.client.ServerError` is another
thing: an INTERNAL answer to a call.
"""

from __future__ import annotations

__all__ = ["ServerStartError"]


class ServerStartError(RuntimeError):
    """A server cannot be found, started or made ready; the message says what to fix."""
