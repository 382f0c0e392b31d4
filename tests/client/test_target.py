"""The SDK's gRPC target: one server, several, or a resolver name; malformed ones refused naming `url`."""

from __future__ import annotations

import json

import pytest

from reelserve.client import ChannelOptions
from reelserve.client._target import grpc_target, service_config


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("127.0.0.1:8001", "127.0.0.1:8001"),
        ("reelserve.ns.svc:8001", "reelserve.ns.svc:8001"),
        ("dns:///reelserve-headless.ns.svc:8001", "dns:///reelserve-headless.ns.svc:8001"),
        ("ipv4:10.0.0.1:8001,10.0.0.2:8001", "ipv4:10.0.0.1:8001,10.0.0.2:8001"),
        (["10.0.0.1:8001", "10.0.0.2:8001"], "ipv4:10.0.0.1:8001,10.0.0.2:8001"),
        (["10.0.0.1:8001", "10.0.0.1:8001"], "ipv4:10.0.0.1:8001"),  # one address once
        (["[::1]:8001", "[::1]:8002"], "ipv6:[::1]:8001,[::1]:8002"),
        (["localhost:8001", "127.0.0.1:8002"], "ipv4:127.0.0.1:8001,127.0.0.1:8002"),  # a name resolved now
    ],
)
def test_grpc_target(url, target):
    assert grpc_target(url) == target


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("10.0.0.1:8001,10.0.0.2:8001", "names several addresses"),
        ("10.0.0.1", "not HOST:PORT"),
        ("10.0.0.1:99999", "not HOST:PORT"),
        ([], "empty list"),
        (["10.0.0.1:8001", "no-such-host.invalid:8001"], "cannot resolve 'no-such-host.invalid:8001'"),
    ],
)
def test_malformed_targets_are_refused_naming_url(url, message):
    with pytest.raises(ValueError, match=message) as e:
        grpc_target(url)
    assert str(e.value).startswith("url")


def test_a_target_naming_several_servers_is_balanced_and_health_checked():
    args = dict(ChannelOptions().channel_args("ipv4:10.0.0.1:8001,10.0.0.2:8001"))
    config = json.loads(args["grpc.service_config"])
    assert config == {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""}}
    assert args["grpc.max_receive_message_length"] == 2**31 - 1  # what the channel already had is kept


def test_a_lone_server_is_balanced_but_not_health_checked():
    """tritonserver 2.51 has no Watch: gRPC would log an error on every channel for nothing."""
    assert json.loads(service_config("127.0.0.1:8001")) == {"loadBalancingConfig": [{"round_robin": {}}]}
