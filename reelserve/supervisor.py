"""Keep tritonserver serving: restart it when it, or one of its python-backend stubs, dies.

Triton 2.51 does not restart a dead python-backend stub and keeps reporting its model READY, so
every request routed to that model fails until someone intervenes (DESIGN.md, measured facts).
With model control off (`--model-control-mode=none`, nobody can load models over the API) the
one safe remedy is a restart of the whole server: the supervisor polls the server process and
the stubs it had when it became ready, and restarts on any loss, killing the broken server
rather than draining it. Requests in flight get an explicit error (UNAVAILABLE, which the SDK
retries, or INTERNAL from the dead stub); none is silently lost. A crash
loop (`max_restarts` within `restart_window_s`) ends supervision with an error instead of
restarting forever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .server import ServerError, TritonServer


@dataclass(frozen=True)
class Restart:
    at: float  # time.time()
    reason: str
    seconds: float  # until ready again


class Supervisor:
    def __init__(self, server: TritonServer, log: Callable[[str], None] = print) -> None:
        self.server = server
        self.log = log
        self.restarts: list[Restart] = []
        self._stubs: dict[int, str] = {}  # pid -> model, as of the last ready

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
        cfg = self.server.cfg
        recent = [r for r in self.restarts if r.at > time.time() - cfg.restart_window_s]
        if len(recent) >= cfg.max_restarts:
            raise ServerError(
                f"{reason}; not restarting: {len(recent)} restarts in the last {cfg.restart_window_s:.0f} s "
                f"(a crash loop). Last lines of {self.server.log_path}:\n{self.server.log_tail()}"
            )
        self.log(f"reelserve: {reason}; restarting tritonserver")
        start = time.monotonic()
        self.server.stop(kill=True)  # broken already: no drain (see TritonServer.stop)
        self.server.start()
        self.remember_stubs()
        took = time.monotonic() - start
        self.restarts.append(Restart(time.time(), reason, took))
        self.log(f"reelserve: tritonserver ready again after {took:.1f} s (pid {self.server.pid})")

    def run(self, stop: threading.Event) -> None:
        """Start (if needed) and supervise until `stop` is set; raises ServerError on a crash loop."""
        if not self.server.is_running():
            self.server.start()
        self.remember_stubs()
        while not stop.wait(self.server.cfg.watchdog_poll_s):
            reason = self.check()
            if reason is not None and not stop.is_set():
                self.restart(reason)


def _model_of(argv: list[str]) -> str:
    """The model name from a stub's argv (`.../<model>/<version>/model.py ...`)."""
    parts = argv[1].split("/") if len(argv) > 1 else []
    return parts[-3] if len(parts) >= 3 else "unknown model"


__all__ = ["Restart", "Supervisor"]
