"""The one supervision loop (`reelserve/triton/supervise.py`), on a stand-in server: no tritonserver needed.

`Supervisor.run` is what `reelserve serve` runs (through `serve`, in the main thread, with signal
handling) and what the fault tests run against a real server (`tests/integration/test_faults.py`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from reelserve.config import ServerConfig
from reelserve.triton.errors import ServerStartError
from reelserve.triton.supervise import Supervisor, serve

STUB = "/x/triton_python_backend_stub"


class FakeServer:
    """What the supervisor uses of TritonServer: a process that can die and stubs that can go missing."""

    def __init__(self, cfg: ServerConfig, *, start_blocks: threading.Event | None = None) -> None:
        self.cfg = cfg
        self.starts = 0
        self.stops: list[bool] = []  # kill flag of each stop()
        self.running = False
        self.stubs: dict[int, list[str]] = {}
        self.polled = threading.Event()  # set once the loop has checked the stubs after a start
        self.starting = threading.Event()  # set once start() was entered
        self.start_blocks = start_blocks
        self.log_path = Path("/nonexistent/fake.log")
        self.grpc_url, self.http_url, self.metrics_url = "127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"

    @property
    def pid(self) -> int:
        return 1000 + self.starts

    @property
    def returncode(self) -> int | None:
        return None if self.running else -9

    def start(self) -> FakeServer:
        self.starting.set()
        while self.start_blocks is not None and not self.start_blocks.is_set():
            time.sleep(0.01)  # a long model load; a signal may interrupt it
        self.starts += 1
        self.running = True
        self.stubs = {10 * self.starts: [STUB, "/repo/text_encoder/1/model.py", "shm"]}
        return self

    def stop(self, timeout_s: float = 30, *, kill: bool = False) -> int:
        if self.running or not self.stops:
            self.stops.append(kill)
        self.running = False
        return 0

    def is_running(self) -> bool:
        return self.running

    def stub_processes(self) -> dict[int, list[str]]:
        self.polled.set()
        return dict(self.stubs) if self.running else {}

    def log_tail(self) -> str:
        return "last log line"


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def fast(**overrides: object) -> ServerConfig:
    return replace(ServerConfig(), watchdog_poll_s=0.01, **overrides)  # type: ignore[arg-type]


def run_in_thread(supervisor: Supervisor, stop: threading.Event) -> tuple[threading.Thread, list[BaseException]]:
    failure: list[BaseException] = []

    def target() -> None:
        try:
            supervisor.run(stop)
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, failure


def test_run_starts_the_server_and_restarts_it_when_a_stub_dies() -> None:
    server, events = FakeServer(fast()), []
    supervisor, stop = Supervisor(server, log=events.append), threading.Event()  # type: ignore[arg-type]
    thread, failure = run_in_thread(supervisor, stop)
    wait_for(lambda: server.starts == 1 and server.polled.is_set())
    server.stubs = {}  # the text_encoder stub died; the server process lives on
    wait_for(lambda: supervisor.restarts)
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and not failure, failure
    assert server.starts == 2 and server.stops == [True]  # killed, not drained
    assert "text_encoder" in supervisor.restarts[0].reason and "stub" in supervisor.restarts[0].reason
    assert any("ready again" in e for e in events), events


def test_run_restarts_an_exited_server_and_supervises_a_running_one_as_is() -> None:
    server = FakeServer(fast()).start()
    supervisor, stop = Supervisor(server, log=lambda _: None), threading.Event()  # type: ignore[arg-type]
    thread, failure = run_in_thread(supervisor, stop)
    wait_for(server.polled.is_set)
    assert server.starts == 1  # already running: not started again
    server.running = False
    wait_for(lambda: supervisor.restarts)
    stop.set()
    thread.join(5)
    assert not failure, failure
    assert supervisor.restarts[0].reason == "tritonserver exited (code -9)"


def test_a_crash_loop_ends_run_with_the_reason_and_the_log_tail() -> None:
    server = FakeServer(fast(max_restarts=2))
    supervisor, stop = Supervisor(server, log=lambda _: None), threading.Event()  # type: ignore[arg-type]
    thread, failure = run_in_thread(supervisor, stop)
    while thread.is_alive():
        server.running = False  # dies again after every restart
        time.sleep(0.01)
    (error,) = failure
    assert isinstance(error, ServerStartError)
    assert "not restarting: 2 restarts in the last 300 s (a crash loop)" in str(error)
    assert "last log line" in str(error)
    assert server.starts == 3


def test_serve_prints_where_it_listens_and_a_sigterm_stops_it(capsys: pytest.CaptureFixture[str]) -> None:
    server = FakeServer(fast(api_key="k"))
    before = signal.getsignal(signal.SIGTERM)
    sender = threading.Thread(target=lambda: (server.polled.wait(10), os.kill(os.getpid(), signal.SIGTERM)))
    sender.start()
    assert serve(server) == 0  # type: ignore[arg-type]
    sender.join(5)
    out = capsys.readouterr().out
    assert "tritonserver ready (pid 1001)" in out and "gRPC:    127.0.0.1:1" in out and "x-api-key" in out
    assert "stopping tritonserver" in out
    assert not server.running and server.starts == 1
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_sigterm_during_a_long_start_interrupts_it(capsys: pytest.CaptureFixture[str]) -> None:
    server = FakeServer(fast(), start_blocks=threading.Event())
    sender = threading.Thread(target=lambda: (server.starting.wait(10), os.kill(os.getpid(), signal.SIGTERM)))
    sender.start()
    assert serve(server) == 0  # type: ignore[arg-type]
    sender.join(5)
    assert "interrupted during startup" in capsys.readouterr().err
    assert server.starts == 0


def test_serve_exits_1_on_a_crash_loop(capsys: pytest.CaptureFixture[str]) -> None:
    server = FakeServer(fast(max_restarts=0))
    killer = threading.Thread(target=lambda: (server.polled.wait(10), setattr(server, "running", False)))
    killer.start()
    assert serve(server) == 1  # type: ignore[arg-type]
    killer.join(5)
    assert "reelserve serve: tritonserver exited (code -9); not restarting" in capsys.readouterr().err


def test_every_loss_is_heard_before_the_restart_and_a_crash_loop_leaves_it_down() -> None:
    """The front door routes by `on_serving`: a replica in a crash loop must not stay marked up."""
    server, heard = FakeServer(fast(max_restarts=1)), []
    supervisor = Supervisor(server, log=lambda _: None, on_serving=lambda up, reason: heard.append(up))  # type: ignore[arg-type]
    stop = threading.Event()
    thread, failure = run_in_thread(supervisor, stop)
    while thread.is_alive():
        server.running = False
        time.sleep(0.01)
    assert isinstance(failure[0], ServerStartError)
    assert heard == [True, False, True, False]  # up, lost, up again, lost for good
