"""Which servers a client talks to: one gRPC target, balanced per call across every address it names.

One HTTP/2 connection pins a client to one server (a Kubernetes Service's virtual IP, too: the
connection is made once), so the SDK always asks gRPC for `round_robin` over the addresses its
target resolves to: a server whose connection drops leaves the rotation until it is back. A target
naming several servers is also health-checked (`grpc.health.v1.Health/Watch`): a front door whose
replicas are all restarting answers NOT_SERVING and is skipped while it does. A lone server is not:
tritonserver 2.51 answers Check but not Watch, and gRPC logs an error for that on every channel
(it then assumes the server healthy), which is noise for the commonest setup. Targets:

- `host:port` — one server (or what the name resolves to, once);
- `dns:///name:port` — every address of a name, re-resolved as gRPC does (a headless Service);
- `ipv4:10.0.0.1:8001,10.0.0.2:8001` (or `ipv6:`) — these addresses;
- a list of `host:port` — these servers; names are resolved once, here.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Sequence

__all__ = ["SCHEMES", "grpc_target", "service_config"]

SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:")  # gRPC name-resolver prefixes passed through as they are


def service_config(target: str) -> str:
    """gRPC service config for `target` (from `grpc_target`): round robin; health checks if it names several."""
    config: dict = {"loadBalancingConfig": [{"round_robin": {}}]}
    if target.startswith(("dns:", "ipv4:", "ipv6:")):
        config["healthCheckConfig"] = {"serviceName": ""}  # "": the server as a whole
    return json.dumps(config)


def grpc_target(url: str | Sequence[str]) -> str:
    """The gRPC target for `url` (see the module docstring); ValueError names what is malformed."""
    if isinstance(url, str):
        if url.startswith(SCHEMES):
            return url
        if "," in url:
            raise ValueError(
                f"url {url!r} names several addresses: pass a list, or a gRPC target such as "
                "'ipv4:10.0.0.1:8001,10.0.0.2:8001' or 'dns:///reelserve-headless.NAMESPACE.svc:8001'"
            )
        _split(url)
        return url
    addresses = list(url)
    if not addresses:
        raise ValueError("url: an empty list of addresses")
    resolved = list(dict.fromkeys(ip for address in addresses for ip in _resolve(address)))
    v4 = [a for a in resolved if not a.startswith("[")]
    # One resolver scheme per target: a dual-stack name yields both families, IPv4 is kept.
    return "ipv4:" + ",".join(v4) if v4 else "ipv6:" + ",".join(resolved)


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"url: {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _resolve(address: str) -> list[str]:
    """`address`'s IP addresses as `ip:port` (`[ip6]:port`): literals as they are, names looked up now."""
    host, port = _split(address)
    try:
        ips = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise ValueError(f"url: cannot resolve {address!r}: {e.strerror}") from None
        ips = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return [f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}" for ip in ips]
