"""Keep tritonserver serving: restart it when it, or one of its python-backend stubs, dies.

Triton 2.51 does not restart a dead python-backend stub and keeps reporting its model READY, so
every request routed to that model fails until someone intervenes (DESIGN.md, measured facts).
With model control off (`--model-control-mode=none`, nobody can load models over the API) the
one safe remedy is a restart of the whole server: the supervisor polls the server process and
the stubs it had when it became ready, and restarts on any loss, killing the broken server
rather than draining it. Requests in flight get an explicit error (UNAVAILABLE, which the SDK
retries, or INTERNAL from the dead stub); none is silently lost. A crash loop (`max_restarts`
within `restart_window_s`) ends supervision with an error instead of restarting forever.

There is one supervision loop, `Supervisor.run`: `reelserve serve` (`serve`, below) runs it in
the main thread with signal handling around it; the fault tests run it in a thread.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ServerStartError
from .server import TritonServer
from .signals import stop_signals

__all__ = ["Restart", "Supervisor", "serve"]


@dataclass(frozen=True)
class Restart:
    at: float  # time.time()
    reason: str
    seconds: float  # until ready again


class Supervisor:
    """Watches one `TritonServer`; `starting` is True while it (re)starts one, which a signal may interrupt."""

    def __init__(
        self,
        server: TritonServer,
        log: Callable[[str], None] = print,
        on_serving: Callable[[bool, str | None], None] | None = None,
    ) -> None:
        """`on_serving(up, reason)` hears each change: False with the reason when the server is lost
        (before it is restarted), True once it is ready again (the front door routes by it)."""
        self.server = server
        self.log = log
        self.on_serving = on_serving or (lambda up, reason: None)
        self.restarts: list[Restart] = []
        self.starting = False
        self._stubs: dict[int, str] = {}  # pid -> model, as of the last ready

    def start(self) -> None:
        """Start the server, wait until it is ready and remember its stubs."""
        self.starting = True
        try:
            self.server.start()
        finally:
            self.starting = False
        self.remember_stubs()
        self.on_serving(True, None)

    def remember_stubs(self) -> None:
        """The stubs of a freshly ready server: the ones whose loss means a restart."""
        self._stubs = {pid: _model_of(argv) for pid, argv in self.server.stub_processes().items()}

    def check(self) -> str | None:
        """Why the server needs a restart now, or None while it and every stub it started are alive."""
        if not self.server.is_running():
            return f"tritonserver exited (code {self.server.returncode})"
        alive = self.server.stub_processes()
        dead = sorted({model for pid, model in self._stubs.items() if pid not in alive})
        if dead:
            return f"python-backend stub of {', '.join(dead)} died (Triton would keep reporting it READY)"
        return None

    def restart(self, reason: str) -> None:
        """Kill the broken server and start it again on the same ports; ServerStartError on a crash loop."""
        cfg = self.server.cfg
        self.on_serving(False, reason)  # lost either way: routed around now, restarted or not
        recent = [r for r in self.restarts if r.at > time.time() - cfg.restart_window_s]
        if len(recent) >= cfg.max_restarts:
            raise ServerStartError(
                f"{reason}; not restarting: {len(recent)} restarts in the last {cfg.restart_window_s:.0f} s "
                f"(a crash loop). Last lines of {self.server.log_path}:\n{self.server.log_tail()}"
            )
        self.log(f"reelserve: {reason}; restarting {self.server}")
        begin = time.monotonic()
        self.starting = True
        try:
            self.server.stop(kill=True)  # broken already: no drain (see TritonServer.stop)
            self.server.start()
        finally:
            self.starting = False
        self.remember_stubs()
        took = time.monotonic() - begin
        self.restarts.append(Restart(time.time(), reason, took))
        self.on_serving(True, None)
        self.log(f"reelserve: tritonserver ready again after {took:.1f} s (pid {self.server.pid})")

    def run(self, stop: threading.Event) -> None:
        """Start (if needed) and supervise until `stop` is set; raises ServerStartError on a crash loop."""
        if self.server.is_running():
            self.remember_stubs()
            self.on_serving(True, None)
        else:
            self.start()
        while not stop.wait(self.server.cfg.watchdog_poll_s):
            reason = self.check()
            if reason is not None and not stop.is_set():
                self.restart(reason)


def _model_of(argv: list[str]) -> str:
    """The model name from a stub's argv (`.../<model>/<version>/model.py ...`)."""
    parts = argv[1].split("/") if len(argv) > 1 else []
    return parts[-3] if len(parts) >= 3 else "unknown model"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print_addresses(server: TritonServer) -> None:
    print(f"tritonserver ready (pid {server.pid})", flush=True)
    print(f"  gRPC:    {server.grpc_url}" + (" (TLS)" if server.cfg.tls_cert else ""), flush=True)
    print(f"  HTTP:    {server.http_url}", flush=True)
    print(f"  metrics: {server.metrics_url}", flush=True)
    print(f"  log:     {server.log_path}", flush=True)
    if server.cfg.api_key is not None:
        print("  access:  every protocol but health/metadata needs the x-api-key header", flush=True)


def serve(server: TritonServer) -> int:
    """`reelserve serve`: start `server`, print where it listens, run `Supervisor.run` until SIGINT/SIGTERM.

    Returns 0 after a signal-initiated stop (also one during a (re)start, which is interrupted:
    a model load can take minutes), 1 on a crash loop or a restart that fails; a first start that
    fails raises ServerStartError. Must be called from the main thread (signal handlers).
    """
    supervisor = Supervisor(server, log=_say)
    # a signal during a (re)start interrupts the model load; start() stops the half-started server
    with stop_signals(interrupt=lambda: supervisor.starting) as stop:
        try:
            try:
                supervisor.start()
            except KeyboardInterrupt:
                _say("interrupted during startup; tritonserver stopped")
                return 0
            _print_addresses(server)
            try:
                supervisor.run(stop)
            except KeyboardInterrupt:
                return 0
            except ServerStartError as e:
                _say(f"reelserve serve: {e}")
                return 1
            print("stopping tritonserver ...", flush=True)
            return 0
        finally:
            server.stop()
