"""The generated front-door config: nginx itself accepts it (`nginx -t`), and it says what we rely on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from reelserve.frontdoor.nginx import FrontDoorConfig, find_nginx, render

needs_nginx = pytest.mark.skipif(
    shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
    reason="nginx is not installed (Debian package `nginx`; .ci/run installs it)",
)

CFG = FrontDoorConfig(host="127.0.0.1", grpc_port=9001, http_port=9000, relay_ports=(9016, 9026),
                      replica_http_ports=(9010, 9020))  # fmt: skip


def test_render_balances_over_every_relay_and_replica():
    conf = render(CFG, Path("/tmp/run"))
    assert "server 127.0.0.1:9016 " in conf and "server 127.0.0.1:9026 " in conf
    assert "server 127.0.0.1:9010 " in conf and "server 127.0.0.1:9020 " in conf
    assert "listen 127.0.0.1:9001 http2;" in conf and "listen 127.0.0.1:9000;" in conf
    assert "grpc_pass grpc://reelserve_grpc;" in conf
    assert "grpc_next_upstream_tries 2;" in conf
    assert "client_max_body_size 0;" in conf  # Triton and the steps bound request sizes
    assert "ssl" not in conf


def test_render_ends_tls_at_the_front_door(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    conf = render(FrontDoorConfig(**{**CFG.__dict__, "tls_cert": cert, "tls_key": key}), tmp_path)
    assert "listen 127.0.0.1:9001 ssl http2;" in conf
    assert f"ssl_certificate {cert};" in conf and f"ssl_certificate_key {key};" in conf


@needs_nginx
def test_nginx_accepts_the_config(tmp_path):
    from reelserve.frontdoor.nginx import NginxFrontDoor

    door = NginxFrontDoor(CFG, tmp_path)
    conf = door.write_config()
    cmd = [str(find_nginx()), "-p", str(tmp_path), "-c", str(conf), "-t"]
    check = subprocess.run(cmd, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_missing_nginx_is_a_plain_error(monkeypatch):
    from reelserve.frontdoor import nginx
    from reelserve.triton.errors import ServerStartError

    monkeypatch.setattr(nginx.shutil, "which", lambda _name: None)
    monkeypatch.setattr(nginx, "Path", lambda p: Path("/nonexistent") / Path(p).name)
    with pytest.raises(ServerStartError, match="apt-get install nginx"):
        nginx.find_nginx()
