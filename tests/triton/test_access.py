"""Access flags (`reelserve/triton/access.py`) without a server; `tests/integration/test_access.py` tries them live."""

from __future__ import annotations

from dataclasses import replace

from reelserve.config import ServerConfig
from reelserve.triton.access import RESTRICTED_PROTOCOLS, access_args, redact


def test_no_key_no_tls_no_flags() -> None:
    assert access_args(ServerConfig()) == []


def test_the_key_restricts_every_protocol_but_the_probes_and_never_reaches_the_log() -> None:
    args = access_args(replace(ServerConfig(), api_key="s3cret"))
    protocols = ",".join(RESTRICTED_PROTOCOLS)
    assert args == [
        f"--grpc-restricted-protocol={protocols}:x-api-key=s3cret",
        f"--http-restricted-api={protocols}:x-api-key=s3cret",
    ]
    assert not {"health", "metadata"} & set(RESTRICTED_PROTOCOLS)
    logged = " ".join(redact(["tritonserver", *args]))
    assert "s3cret" not in logged and logged.count("x-api-key=***") == 2
