"""N tritonserver replicas on one host, each supervised on its own, behind the relay and nginx.

Ports: the public ones (`ServerConfig.grpc_port`, `http_port`) are nginx's and the metrics port
serves the front door's own counters and every replica's Triton metrics (`replica_metrics`);
replica k (1-based) takes each base port + 10k, and its relay listens on grpc_port + 10k + 5
(defaults: replica 1 on 8011/8010/8012, relay 8016). Every replica serves the whole repository
on loopback; TLS, when configured, ends at nginx. One supervisor thread per replica restarts it
alone; while it is down the relay routes around it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reelserve.config import ServerConfig, cache_dir
from reelserve.triton.errors import ServerStartError
from reelserve.triton.ports import accepts_tcp, free_port, port_in_use, url_host
from reelserve.triton.server import TritonServer
from reelserve.triton.supervise import Supervisor

from .metrics import FrontDoorMetrics
from .nginx import FrontDoorConfig, NginxFrontDoor
from .relay import Relay, ReplicaState
from .replica_metrics import MetricsEndpoint, ReplicaSource

__all__ = ["FrontDoorDeployment", "ReplicaLayout", "replica_layout"]

PORT_STEP = 10  # replica k's ports: base + k * PORT_STEP
RELAY_OFFSET = 5  # replica k's relay: grpc base + k * PORT_STEP + RELAY_OFFSET


@dataclass(frozen=True)
class ReplicaLayout:
    """Where everything listens: the public front door, and per replica its server and relay."""

    public: ServerConfig  # nginx's gRPC/HTTP ports, the front door's metrics port
    replicas: tuple[ServerConfig, ...]
    relay_ports: tuple[int, ...]


def replica_layout(cfg: ServerConfig, replicas: int, *, free_ports: bool = False) -> ReplicaLayout:
    """The ports of `replicas` replicas derived from `cfg`'s (`free_ports`: any free ones, for tests)."""
    if replicas < 2:
        raise ValueError(f"a front door needs at least 2 replicas, got {replicas}")

    def port(base: int, k: int, offset: int = 0) -> int:
        return free_port(cfg.host) if free_ports else base + k * PORT_STEP + offset

    configs, relays = [], []
    for k in range(1, replicas + 1):
        log = None if cfg.log_file is None else Path(cfg.log_file).with_suffix(f".replica{k}.log")
        configs.append(
            dataclasses.replace(
                cfg,
                host="127.0.0.1",  # replicas are reached through the front door only
                grpc_port=port(cfg.grpc_port, k),
                http_port=port(cfg.http_port, k),
                metrics_port=port(cfg.metrics_port, k),
                tls_cert=None,
                tls_key=None,
                log_file=log,
            )
        )
        relays.append(port(cfg.grpc_port, k, RELAY_OFFSET))
    return ReplicaLayout(cfg, tuple(configs), tuple(relays))


class FrontDoorDeployment:
    """Replicas + relay + nginx as one unit: `start()` brings all up (replicas in parallel), `stop()` all down."""

    def __init__(self, layout: ReplicaLayout, *, log: Callable[[str], None] = print, run_dir: Path | None = None):
        self.layout = layout
        self.log = log
        self.metrics = FrontDoorMetrics()
        self.servers = [TritonServer(c) for c in layout.replicas]
        self.states = [ReplicaState(f"replica{k + 1}", s.grpc_url) for k, s in enumerate(self.servers)]
        self.supervisors = [Supervisor(s, log=log, on_serving=self._on_serving(k)) for k, s in enumerate(self.servers)]
        public = layout.public
        self.run_dir = Path(run_dir) if run_dir else cache_dir() / "frontdoor" / f"grpc-{public.grpc_port}"
        self.nginx = NginxFrontDoor(
            FrontDoorConfig(
                host=public.host,
                grpc_port=public.grpc_port,
                http_port=public.http_port,
                relay_ports=layout.relay_ports,
                replica_http_ports=tuple(c.http_port for c in layout.replicas),
                tls_cert=public.tls_cert,
                tls_key=public.tls_key,
            ),
            self.run_dir,
        )
        self.relay = Relay(
            self.states,
            self.metrics,
            in_flight_per_replica=public.frontdoor_in_flight_per_replica,
            reserved_online=public.frontdoor_reserved_online,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._metrics_server: MetricsEndpoint | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.failures: list[str] = []  # supervisors that gave up (crash loops)

    @property
    def grpc_url(self) -> str:
        return f"{url_host(self.layout.public.host)}:{self.layout.public.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{url_host(self.layout.public.host)}:{self.layout.public.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{url_host(self.layout.public.host)}:{self.layout.public.metrics_port}/metrics"

    def _on_serving(self, k: int) -> Callable[[bool, str | None], None]:
        state = self.states[k]

        def changed(up: bool, reason: str | None) -> None:
            state.serving = up
            self.metrics.replica_up.labels(state.name).set(1 if up else 0)
            if not up:
                kind = "server_died" if reason and reason.startswith("tritonserver") else "stub_died"
                self.metrics.replica_restarts.labels(state.name, kind).inc()

        return changed

    def _preflight(self) -> None:
        public = self.layout.public
        ports = [("public gRPC", public.grpc_port), ("public HTTP", public.http_port),
                 ("front-door metrics", public.metrics_port)]  # fmt: skip
        ports += [(f"relay {k + 1}", p) for k, p in enumerate(self.layout.relay_ports)]
        seen: set[int] = set()
        for what, port in ports:
            if port in seen:
                raise ServerStartError(f"port {port} is configured twice (again for {what})")
            seen.add(port)
            if port_in_use(public.host if what.startswith(("public", "front")) else "127.0.0.1", port):
                raise ServerStartError(f"port {port} ({what}) is already in use")

    def start(self) -> FrontDoorDeployment:
        """Start every replica (in parallel), the relay, the metrics endpoint and nginx; ready when it returns."""
        self._preflight()
        errors: list[BaseException] = []

        def start_one(sup: Supervisor) -> None:
            try:
                sup.start()
            except BaseException as e:  # noqa: BLE001 - reported below, all of them
                errors.append(e)

        starters = [threading.Thread(target=start_one, args=(s,), daemon=True) for s in self.supervisors]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        if errors:
            self.stop()
            raise errors[0]
        try:
            self._loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(target=self._loop.run_forever, name="relay", daemon=True)
            self._loop_thread.start()
            asyncio.run_coroutine_threadsafe(self.relay.start(self.layout.relay_ports), self._loop).result(30)
            public = self.layout.public
            sources = [
                ReplicaSource(state.name, server.metrics_url, lambda state=state: state.serving)
                for state, server in zip(self.states, self.servers, strict=True)
            ]
            self._metrics_server = MetricsEndpoint(
                public.host, public.metrics_port, self.metrics.registry, sources
            ).start()
            self.nginx.start()
            self.nginx_wait_ready()
        except BaseException:
            self.stop()
            raise
        for k, sup in enumerate(self.supervisors):
            t = threading.Thread(target=self._supervise, args=(sup,), name=f"supervise-replica{k + 1}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def nginx_wait_ready(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        public = self.layout.public
        while time.monotonic() < deadline:
            if not self.nginx.is_running():
                raise ServerStartError(f"nginx exited at start; {self.nginx.error_log}:\n{self.nginx.log_tail()}")
            if accepts_tcp(public.host, public.grpc_port):
                return
            time.sleep(0.05)
        raise ServerStartError(f"nginx not listening on {self.grpc_url} after {timeout_s:.0f} s")

    def _supervise(self, sup: Supervisor) -> None:
        try:
            sup.run(self._stop)
        except ServerStartError as e:
            self.failures.append(str(e))
            self.log(f"reelserve: {sup.server} is not restarted any more: {e}")

    def all_failed(self) -> bool:
        return len(self.failures) == len(self.supervisors)

    def stop(self) -> None:
        """nginx first (no new calls), then the relay (its calls end), then the replicas."""
        self._stop.set()
        self.nginx.stop()
        if self._loop is not None:
            if self._loop.is_running():
                asyncio.run_coroutine_threadsafe(self.relay.stop(), self._loop).result(30)
                self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(10)
            self._loop = None
        for t in self._threads:
            t.join(30)
        stoppers = [threading.Thread(target=server.stop, daemon=True) for server in self.servers]
        for t in stoppers:  # in parallel: each drains its own calls
            t.start()
        for t in stoppers:
            t.join()
        if self._metrics_server is not None:
            self._metrics_server.stop()
            self._metrics_server = None

    def __enter__(self) -> FrontDoorDeployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
