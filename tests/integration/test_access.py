"""Access control through a real tritonserver started as `reelserve serve --api-key KEY` would start it.

Without the key every protocol but health and metadata is refused, over gRPC and HTTP; with it
inference works; the model-control API stays closed even with the key; the metrics endpoint
only reads; the key never reaches the server log.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import replace

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from reelserve.client import UnauthenticatedError, VideoFeaturesClient
from reelserve.config import DEFAULT
from reelserve.spec import contract as c
from reelserve.triton.access import access_args
from reelserve.triton.errors import ServerStartError
from reelserve.triton.ports import on_free_ports
from reelserve.triton.server import TritonServer

pytestmark = pytest.mark.integration
KEY = "k3y-for-tests_only"
GRPC_KEY = {"triton-grpc-protocol-x-api-key": KEY}


@pytest.fixture(scope="module")
def keyed_server(model_repository):
    cfg = replace(on_free_ports(DEFAULT.server, model_repository), api_key=KEY)
    with TritonServer(cfg) as server:
        server.wait_ready(models=[c.TEXT_FEATURES, c.VIDEO_FEATURES])
        yield server


def _refused(call) -> str:
    with pytest.raises(InferenceServerException) as info:
        call()
    return str(info.value)


def test_inference_needs_the_key(keyed_server) -> None:
    for key in (None, "wrong-key"):
        with VideoFeaturesClient(keyed_server.grpc_url, api_key=key) as client, pytest.raises(UnauthenticatedError):
            client.text_features(["a cat on a sofa"])
    with VideoFeaturesClient(keyed_server.grpc_url, api_key=KEY) as keyed:
        (f,) = keyed.text_features(["a cat on a sofa"])
        assert abs(float(np.linalg.norm(f.embedding)) - 1) < 1e-5


def test_probes_stay_open_and_everything_else_is_restricted(keyed_server) -> None:
    raw = grpcclient.InferenceServerClient(keyed_server.grpc_url)
    try:
        assert raw.is_server_ready() and raw.is_model_ready(c.VIDEO_FEATURES)  # health: open for probes
        assert raw.get_model_metadata(c.TEXT_FEATURES).name == c.TEXT_FEATURES  # metadata: open
        for call in (
            lambda: raw.get_model_config(c.TEXT_FEATURES),
            lambda: raw.get_inference_statistics(),
            lambda: raw.get_model_repository_index(),
            lambda: raw.unload_model(c.TEXT_FEATURES),
            lambda: raw.register_system_shared_memory("steal", "/reelserve-steal", 64),
            lambda: raw.get_system_shared_memory_status(),
            lambda: raw.update_log_settings({"log_verbose_level": 1}),
            lambda: raw.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]}),
        ):
            assert "protocol is restricted" in _refused(call)
    finally:
        raw.close()


def test_model_control_stays_closed_with_the_key(keyed_server) -> None:
    raw = grpcclient.InferenceServerClient(keyed_server.grpc_url)
    try:
        for call in (
            lambda: raw.unload_model(c.TEXT_ENCODER, headers=GRPC_KEY),
            lambda: raw.load_model(c.TEXT_ENCODER, headers=GRPC_KEY),
        ):
            message = _refused(call)
            assert "not allowed" in message or "polling is enabled" in message or "explicit" in message, message
        assert raw.is_model_ready(c.TEXT_ENCODER) and raw.is_model_ready(c.TEXT_FEATURES)
    finally:
        raw.close()


def _http(server, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> int:
    request = urllib.request.Request(
        server.http_url + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_http_is_restricted_the_same_way(keyed_server) -> None:
    infer = {"inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": ["a dog on the beach"]}]}
    path = f"/v2/models/{c.TEXT_FEATURES}/infer"
    assert _http(keyed_server, "GET", "/v2/health/ready") == 200
    assert _http(keyed_server, "POST", path, infer) in (401, 403)
    assert _http(keyed_server, "POST", path, infer, {"x-api-key": "wrong"}) in (401, 403)
    assert _http(keyed_server, "POST", path, infer, {"x-api-key": KEY}) == 200
    assert _http(keyed_server, "POST", f"/v2/repository/models/{c.TEXT_ENCODER}/unload", {}) in (401, 403)


def test_metrics_endpoint_only_reads(keyed_server) -> None:
    with urllib.request.urlopen(keyed_server.metrics_url, timeout=10) as response:
        assert response.status == 200 and b"nv_inference_request_success" in response.read()
    for method in ("POST", "PUT", "DELETE"):
        request = urllib.request.Request(keyed_server.metrics_url, data=b"x", method=method)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=10)


def test_the_key_is_not_written_to_the_log(keyed_server) -> None:
    log = keyed_server.log_path.read_text(errors="replace")
    assert "x-api-key=***" in log and KEY not in log


@pytest.mark.parametrize("key", ["", "with space", "a,b", "a:b", "a=b"])
def test_unusable_keys_are_refused_before_launch(key: str) -> None:
    with pytest.raises(ServerStartError, match="API key"):
        access_args(replace(DEFAULT.server, api_key=key))


def test_tls_needs_both_files(tmp_path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ServerStartError, match="both a certificate and its key"):
        access_args(replace(DEFAULT.server, tls_cert=cert))
    with pytest.raises(ServerStartError, match="does not exist"):
        access_args(replace(DEFAULT.server, tls_cert=cert, tls_key=tmp_path / "missing.pem"))
