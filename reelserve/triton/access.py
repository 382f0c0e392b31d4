"""Who may use the server: tritonserver flags for the API key and gRPC TLS, and the key kept out of logs.

Every protocol but the probes (health, metadata) is restricted to requests with `x-api-key`;
model control is off regardless (`--model-control-mode=none`, set by the server's command line).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from reelserve.config import ServerConfig

from .errors import ServerStartError

__all__ = ["RESTRICTED_PROTOCOLS", "access_args", "redact"]

# Everything a client could use to read or change the server, bar the probes (health, metadata).
RESTRICTED_PROTOCOLS = (
    "inference",
    "shared-memory",
    "model-config",
    "model-repository",
    "statistics",
    "trace",
    "logging",
)


def access_args(cfg: ServerConfig) -> list[str]:
    """tritonserver flags for the API key (restricted protocols) and gRPC TLS in `cfg`."""
    args = []
    if cfg.api_key is not None:
        if not cfg.api_key.strip() or any(ch in cfg.api_key for ch in ",:= \t\n"):
            raise ServerStartError("the API key must be non-empty and contain no spaces, ',', ':' or '='")
        protocols = ",".join(RESTRICTED_PROTOCOLS)
        args += [
            f"--grpc-restricted-protocol={protocols}:x-api-key={cfg.api_key}",
            f"--http-restricted-api={protocols}:x-api-key={cfg.api_key}",
        ]
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ServerStartError("gRPC TLS needs both a certificate and its key (--tls-cert and --tls-key)")
    if cfg.tls_cert is not None:
        for path in (cfg.tls_cert, cfg.tls_key):
            if not Path(path).is_file():
                raise ServerStartError(f"TLS file {path} does not exist")
        args += ["--grpc-use-ssl=true", f"--grpc-server-cert={cfg.tls_cert}", f"--grpc-server-key={cfg.tls_key}"]
    return args


def redact(cmd: Sequence[str]) -> list[str]:
    """The command line for the log, API key hidden (Triton itself takes it on the command line)."""
    return [re.sub(r"(x-api-key=).*", r"\1***", arg) for arg in cmd]
