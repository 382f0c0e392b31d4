"""Every replica's Triton metrics on the front door's metrics port, each sample labelled by its replica.

The replicas listen on loopback only (the front door is their one way in), so nothing outside the
host, a Prometheus in a Kubernetes cluster included, can scrape them. The front door's endpoint
therefore carries them: at each scrape it reads each serving replica's `/metrics` and adds
`replica="replicaK"` to every sample, so one scrape target per host (per pod) has it all. A replica
that is down or does not answer within `timeout_s` is left out of that scrape (its
`reelserve_replica_up` says so); the scrape itself never fails for it.

Merged as text, not through prometheus_client's parser: that one renames Triton's counters
(`nv_inference_count` becomes `nv_inference_count_total`), which every rule and panel would miss.
"""

from __future__ import annotations

import re
import threading
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["MetricsEndpoint", "ReplicaSource", "labelled", "merge"]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?(\s.*)$")
_META = re.compile(r"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*)")


@dataclass(frozen=True)
class ReplicaSource:
    name: str  # the `replica` label
    url: str  # its Triton metrics endpoint, http://127.0.0.1:PORT/metrics
    serving: Callable[[], bool]


def labelled(text: str, replica: str) -> dict[str, tuple[list[str], list[str]]]:
    """Exposition text as {family: (HELP/TYPE lines, sample lines with `replica` added)}."""
    families: dict[str, tuple[list[str], list[str]]] = {}
    family = ""
    for line in text.splitlines():
        meta = _META.match(line)
        if meta:
            family = meta.group(2)
            families.setdefault(family, ([], []))[0].append(line)
            continue
        sample = _SAMPLE.match(line)
        if sample is None:
            continue  # blank lines and other comments
        name, _, labels, rest = sample.groups()
        labels = f'replica="{replica}"' + (f",{labels}" if labels else "")
        families.setdefault(family or name, ([], []))[1].append(f"{name}{{{labels}}}{rest}")
    return families


def merge(texts: Sequence[tuple[str, str]]) -> str:
    """(replica, exposition text) pairs as one exposition: a family's HELP/TYPE once, then all its samples."""
    merged: dict[str, tuple[list[str], list[str]]] = {}
    for replica, text in texts:
        for family, (meta, samples) in labelled(text, replica).items():
            into = merged.setdefault(family, (meta, []))
            into[1].extend(samples)
    return "".join("\n".join([*meta, *samples]) + "\n" for meta, samples in merged.values())


class MetricsEndpoint:
    """HTTP `/metrics`: the front door's registry, then the serving replicas' Triton metrics."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        replicas: Sequence[ReplicaSource],
        timeout_s: float = 2.0,
    ) -> None:
        self.registry, self.replicas, self.timeout_s = registry, list(replicas), timeout_s
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = endpoint.render().encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass  # a scrape every few seconds is not news

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="frontdoor-metrics", daemon=True)

    def start(self) -> MetricsEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def render(self) -> str:
        texts = []
        for replica in self.replicas:
            if not replica.serving():
                continue
            try:
                with urllib.request.urlopen(replica.url, timeout=self.timeout_s) as response:
                    texts.append((replica.name, response.read().decode("utf-8")))
            except OSError:
                continue  # restarting: reelserve_replica_up says so
        return generate_latest(self.registry).decode("utf-8") + merge(texts)
