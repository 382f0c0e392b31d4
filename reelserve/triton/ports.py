"""TCP ports: free ones for tests and ad-hoc servers, and the preflight check that one is taken."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

from reelserve.config import ServerConfig

__all__ = ["accepts_tcp", "free_port", "on_free_ports", "port_in_use", "url_host"]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the OS picks it); for tests and ad-hoc servers."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def on_free_ports(cfg: ServerConfig, model_repository: Path | None = None) -> ServerConfig:
    """`cfg` with free gRPC/HTTP/metrics ports (and another repository if given): tests, demo, benches."""
    return dataclasses.replace(
        cfg,
        model_repository=model_repository or cfg.model_repository,
        grpc_port=free_port(cfg.host),
        http_port=free_port(cfg.host),
        metrics_port=free_port(cfg.host),
    )


def port_in_use(host: str, port: int) -> bool:
    """True when binding host:port fails, i.e. tritonserver could not bind it either.

    SO_REUSEADDR (which Triton also sets) keeps TIME_WAIT leftovers of a stopped server from
    counting as "in use", while a live listener, on this address or on 0.0.0.0, still does.
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def accepts_tcp(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True once something listens on host:port (a plain TCP connect: no protocol, no backoff)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def url_host(host: str) -> str:
    """`host` as it goes into a URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host else host
