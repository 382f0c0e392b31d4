"""Ports (`reelserve/triton/ports.py`): free ones for tests and benches, and the preflight's "in use"."""

from __future__ import annotations

import socket
from pathlib import Path

from reelserve.config import ServerConfig
from reelserve.triton.ports import free_port, on_free_ports, port_in_use, url_host


def test_a_listener_is_in_use_and_a_closed_port_is_not() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", free_port())


def test_on_free_ports_changes_only_the_ports_and_the_repository(tmp_path: Path) -> None:
    cfg = ServerConfig()
    moved = on_free_ports(cfg, tmp_path)
    assert moved.model_repository == tmp_path and moved.host == cfg.host
    assert len({moved.grpc_port, moved.http_port, moved.metrics_port} - {cfg.grpc_port}) >= 2
    assert on_free_ports(cfg).model_repository == cfg.model_repository


def test_ipv6_hosts_are_bracketed_in_urls() -> None:
    assert url_host("::1") == "[::1]" and url_host("127.0.0.1") == "127.0.0.1"
