"""TLS and the API key end to end: a tritonserver with gRPC TLS and a restricted inference protocol."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from reelserve.client import ChannelOptions, RetryPolicy, UnauthenticatedError, UnavailableError, VideoFeaturesClient
from reelserve.config import DEFAULT
from reelserve.spec import contract as c
from reelserve.triton.ports import on_free_ports
from reelserve.triton.server import TritonServer

pytestmark = pytest.mark.integration
KEY = "s3cret-test-key"


def make_certs(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl from the OS)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=reelserve-test-ca",
    )
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"
    )
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "san.cnf",
    )
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


@pytest.fixture(scope="module")
def secure_server(model_repository, tmp_path_factory):
    ca, cert, key = make_certs(tmp_path_factory.mktemp("tls"))
    cfg = on_free_ports(DEFAULT.server, model_repository)
    args = [
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={cert}",
        f"--grpc-server-key={key}",
        f"--grpc-restricted-protocol=inference,model-config:x-api-key={KEY}",
    ]
    with TritonServer(cfg, extra_args=args, probe_tls={"ssl": True, "root_certificates": str(ca)}) as server:
        server.wait_ready(models=[c.TEXT_FEATURES])
        yield server, ChannelOptions(tls=True, root_certificates=str(ca))


def test_tls_with_the_right_key_works(secure_server) -> None:
    server, tls = secure_server
    with VideoFeaturesClient(server.grpc_url, channel=tls, api_key=KEY, registry=CollectorRegistry()) as client:
        assert client.is_ready()
        (f,) = client.text_features(["a kitten"])
        assert len(f.embedding) == 384


@pytest.mark.parametrize("api_key", [None, "wrong-key"])
def test_missing_or_wrong_key_is_refused_without_retries(secure_server, api_key) -> None:
    server, tls = secure_server
    registry = CollectorRegistry()
    retry = RetryPolicy(max_attempts=4)
    client = VideoFeaturesClient(server.grpc_url, channel=tls, api_key=api_key, registry=registry, retry=retry)
    with client, pytest.raises(UnauthenticatedError, match="api_key"):
        client.text_features(["a kitten"])
    retries = registry.get_sample_value(
        "reelserve_client_retries_total", {"model": c.TEXT_FEATURES, "status": "UNAUTHENTICATED"}
    )
    errors = registry.get_sample_value(
        "reelserve_client_errors_total", {"model": c.TEXT_FEATURES, "status": "UNAUTHENTICATED"}
    )
    assert retries is None and errors == 1


def test_plaintext_client_cannot_talk_to_a_tls_server(secure_server) -> None:
    server, _ = secure_server
    retry = RetryPolicy(max_attempts=2, initial_backoff_s=0.01)
    with VideoFeaturesClient(server.grpc_url, api_key=KEY, registry=CollectorRegistry(), retry=retry) as client:
        assert not client.is_ready(timeout_s=1)
        with pytest.raises(UnavailableError):
            client.text_features(["a kitten"], deadline_s=3)
