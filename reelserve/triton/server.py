"""`TritonServer`: one real tritonserver from the nvidia-pytriton wheel as a child process, on loopback.

It checks ports and paths before starting (plain errors instead of a Triton log to decode),
binds every endpoint to the configured host only (tritonserver binds 0.0.0.0 unless told), puts
this virtualenv first for the python-backend stubs, sends Triton's log and the stubs' prints to
one file, and stops the whole process group (`process.ChildProcess`) so no stub outlives its
server; the stubs' shared-memory regions a killed server leaks are freed here too.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from reelserve.config import LABEL_BANKS_ENV, ServerConfig, cache_dir

from .access import access_args, redact
from .errors import ServerStartError
from .install import STUB_NAME, TritonInstall, find_tritonserver
from .ports import accepts_tcp, port_in_use, url_host
from .process import ChildProcess, file_tail, matching_lines

__all__ = ["TritonServer"]

_LOG_TAIL_LINES = 40
_POLL_S = 0.05
_RPC_TIMEOUT_S = 1.0
_SHM_DIR = Path("/dev/shm")
_SHM_PREFIX = "triton_python_backend_shm_region"
_ERROR_LINE = re.compile(rb"^(E\d{4} |error: )")


def _remove_shm_regions(names: set[str]) -> None:
    """Unlink python-backend shared-memory regions a killed server could not remove itself.

    Each stub's region is `shm-default-byte-size` of real tmpfs memory (64 MiB by default); when
    tritonserver is SIGKILLed, nobody else ever frees it.
    """
    for name in names:
        if name.startswith(_SHM_PREFIX) and "/" not in name:
            with contextlib.suppress(OSError):
                (_SHM_DIR / name).unlink()


class TritonServer:
    """A real tritonserver process from the nvidia-pytriton wheel, on loopback.

    `start()` checks the ports and the model repository, launches tritonserver in its own
    process group and (by default) waits until the server and every model are ready over gRPC;
    `stop()` ends it and its python-backend stubs. Use it as a context manager in tests.
    """

    def __init__(
        self,
        cfg: ServerConfig = ServerConfig(),  # noqa: B008 - frozen dataclass, safe as a default
        *,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        probe_tls: Mapping[str, object] | None = None,
    ) -> None:
        self.cfg = cfg
        self.extra_args = tuple(extra_args)
        # tritonclient TLS kwargs (ssl, root_certificates, ...) for the readiness probe of a TLS server
        self.probe_tls = dict(probe_tls or {})
        self.env_overrides = dict(env or {})
        self._child: ChildProcess | None = None
        self._install: TritonInstall | None = None
        self._lock = threading.Lock()
        self._shm_regions: set[str] = set()  # stub regions seen, freed on stop if Triton could not
        self.starts = 0  # a restart appends to the log instead of replacing it

    # -- addresses ---------------------------------------------------------------------------

    @property
    def grpc_url(self) -> str:
        """host:port, as `tritonclient.grpc.InferenceServerClient` wants it."""
        return f"{url_host(self.cfg.host)}:{self.cfg.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{url_host(self.cfg.host)}:{self.cfg.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{url_host(self.cfg.host)}:{self.cfg.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        """Where tritonserver's stdout and stderr (python stub output included) are written."""
        if self.cfg.log_file is not None:
            return Path(self.cfg.log_file).absolute()
        return cache_dir() / "logs" / f"tritonserver-{self.cfg.grpc_port}.log"

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def returncode(self) -> int | None:
        """None while running (or never started); the exit status once it has ended."""
        return self._child.returncode if self._child is not None else None

    def is_running(self) -> bool:
        return self._child is not None and self._child.is_running()

    def stub_processes(self) -> dict[int, list[str]]:
        """pid -> argv of the live python-backend stubs of this server (Triton does not restart dead ones).

        Also remembers each stub's shared-memory region, so `stop()` can free it after a crash.
        """
        if self._child is None:
            return {}
        stubs = {pid: argv for pid, argv in self._child.group().items() if argv and argv[0].endswith(STUB_NAME)}
        for argv in stubs.values():
            if len(argv) > 2 and argv[2].startswith(_SHM_PREFIX):
                self._shm_regions.add(argv[2])
        return stubs

    # -- command line and environment ----------------------------------------------------------

    @property
    def install(self) -> TritonInstall:
        if self._install is None:
            self._install = find_tritonserver()
        return self._install

    def command(self) -> list[str]:
        """The full tritonserver command line this server runs."""
        cfg, inst = self.cfg, self.install
        shm = int(cfg.python_shm_bytes)
        # Grow the stub's shared memory in large steps: video payloads are tens of MiB and every
        # growth is a new mapping, but a step never needs to exceed the default size itself.
        growth = max(1 << 20, min(shm, 32 << 20))
        args = [
            str(inst.bin),
            f"--model-repository={Path(cfg.model_repository).resolve()}",
            f"--backend-directory={inst.backends_dir}",
            f"--cache-directory={inst.caches_dir}",
            f"--grpc-address={cfg.host}",
            f"--grpc-port={cfg.grpc_port}",
            f"--http-address={cfg.host}",
            f"--http-port={cfg.http_port}",
            f"--metrics-address={cfg.host}",
            f"--metrics-port={cfg.metrics_port}",
            "--allow-metrics=true",
            "--metrics-config=summary_latencies=true",
            "--model-control-mode=none",
            "--disable-auto-complete-config",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--log-verbose=0",
            f"--backend-config=python,shm-default-byte-size={shm}",
            f"--backend-config=python,shm-growth-byte-size={growth}",
            *access_args(cfg),
            *([f"--cache-config=local,size={cfg.response_cache_mib << 20}"] if cfg.response_cache_mib > 0 else []),
        ]
        return args + list(self.extra_args)

    def child_env(self) -> dict[str, str]:
        """os.environ, with this interpreter's bin/ first in PATH and the wheel's libs first in LD_LIBRARY_PATH.

        The python-backend stub finds its site-packages through the first `python3` on PATH, so
        putting `sys.prefix/bin` first makes the models import this virtualenv's numpy & co.
        """
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.prefix) / "bin"), env.get("PATH", "")) if p)
        ld = env.get("LD_LIBRARY_PATH", "")
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(self.install.lib_dir), ld) if p)
        env.pop(LABEL_BANKS_ENV, None)  # the store is the config's, never inherited by accident
        if self.cfg.label_banks is not None:
            env[LABEL_BANKS_ENV] = str(Path(self.cfg.label_banks).resolve())
        env.update(self.env_overrides)
        return env

    # -- lifecycle -----------------------------------------------------------------------------

    def _preflight(self) -> None:
        """Fail with a plain message before launching anything Triton would only fail on later."""
        cfg = self.cfg
        repo = Path(cfg.model_repository)
        if not repo.is_dir():
            raise ServerStartError(f"model repository {repo} does not exist (or is not a folder)")
        ports = (("--grpc-port", cfg.grpc_port), ("--http-port", cfg.http_port), ("--metrics-port", cfg.metrics_port))
        seen: dict[int, str] = {}
        for flag, port in ports:
            if port in seen:
                raise ServerStartError(
                    f"port {port} is configured for both {seen[port]} and {flag}; give each its own port"
                )
            seen[port] = flag
        for flag, port in ports:
            if port_in_use(cfg.host, port):
                raise ServerStartError(f"port {port} ({flag}) on {cfg.host} is already in use")

    def start(self, *, wait: bool = True) -> TritonServer:
        """Launch tritonserver; with `wait`, block until it is ready (stopping it again if it never is)."""
        with self._lock:
            if self.is_running():
                raise ServerStartError(f"tritonserver is already running (pid {self.pid})")
            self._preflight()
            cmd = self.command()
            env = self.child_env()
            self.starts += 1
            self._shm_regions = set()
            # The SIGKILL of the group also ends the python-backend stubs; an orphan (this object
            # dropped, or Python exiting, without stop()) is killed at once, its shm freed.
            self._child = ChildProcess(
                cmd,
                self.log_path,
                env=env,
                append=self.starts > 1,
                header=f"# reelserve (start {self.starts}): {' '.join(redact(cmd))}",
                cleanup=functools.partial(_remove_shm_regions, self._shm_regions),
            )
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()
                raise
        return self

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the log file (empty if there is none yet)."""
        return file_tail(self.log_path, lines)

    def log_errors(self, limit: int = 10) -> list[str]:
        """The last `limit` error lines of the log (Triton's `E...` lines and its final `error: ...`).

        Triton ends a failed startup with ~40 lines of option tables, so the line that names the
        broken model can fall out of a plain tail; these are quoted separately.
        """
        return matching_lines(self.log_path, _ERROR_LINE, limit)

    def _died_error(self, what: str) -> ServerStartError:
        errors = "".join(f"  {ln}\n" for ln in self.log_errors())
        return ServerStartError(
            f"tritonserver {what} (exit code {self.returncode}).\n"
            + (f"Errors logged:\n{errors}" if errors else "")
            + f"Last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def wait_ready(self, timeout_s: float | None = None, models: Sequence[str] = ()) -> None:
        """Poll gRPC until the server (and each of `models`) is ready; fail fast if the process exits.

        With strict readiness the server is only ready once every model loaded; `models` lets a
        caller also wait for specific ones by name. The process is checked between polls, so a
        crash during model loading surfaces in well under a second, with the log tail attached.
        """
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        child = self._child
        if child is None:
            raise ServerStartError("tritonserver was not started; call start() first")
        timeout = self.cfg.ready_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        # Until the gRPC port accepts TCP connections there is nothing to ask; probing with a plain
        # socket avoids gRPC's reconnect backoff (which would add up to seconds to the cold start).
        while not accepts_tcp(self.cfg.host, self.cfg.grpc_port):
            if not child.is_running():
                raise self._died_error("exited before it was ready")
            if time.monotonic() > deadline:
                raise ServerStartError(f"tritonserver was not listening on {self.grpc_url} after {timeout:.0f} s")
            time.sleep(_POLL_S)
        pending = list(models)
        server_ready = False
        client = grpcclient.InferenceServerClient(self.grpc_url, **self.probe_tls)
        try:
            while True:
                if not child.is_running():
                    raise self._died_error("exited before it was ready")
                with contextlib.suppress(InferenceServerException):
                    if not server_ready:
                        server_ready = client.is_server_ready(client_timeout=_RPC_TIMEOUT_S)
                    while server_ready and pending and client.is_model_ready(pending[0], client_timeout=_RPC_TIMEOUT_S):
                        pending.pop(0)
                # tritonserver opens its metrics port after gRPC reports ready: wait for it too, so
                # a scrape right after wait_ready() is not refused
                if server_ready and not pending and accepts_tcp(self.cfg.host, self.cfg.metrics_port):
                    self.stub_processes()  # remember their shm regions while we still can
                    return
                if time.monotonic() > deadline:
                    waiting = "server readiness" if not server_ready else f"model(s) {', '.join(pending)}"
                    raise ServerStartError(
                        f"tritonserver at {self.grpc_url} still waiting for {waiting} after {timeout:.0f} s;"
                        f" last lines of {self.log_path}:\n{self.log_tail()}"
                    )
                time.sleep(_POLL_S)
        finally:
            client.close()

    def stop(self, timeout_s: float = 30, *, kill: bool = False) -> int:
        """SIGTERM tritonserver, wait up to `timeout_s`, then SIGKILL its whole process group.

        Only the server gets SIGTERM, so it can drain requests and finalize the python models
        itself; afterwards the group is SIGKILLed regardless, which reaps any stub Triton left
        behind, and the stubs' shared memory is freed. `kill=True` skips the drain (a broken
        server: a graceful shutdown would answer NOT_FOUND while it unloads, or wait for requests
        a dead stub never finishes; killed connections give clients UNAVAILABLE, which they
        retry). Idempotent; returns the exit status (negative = killed by that signal).
        """
        with self._lock:
            if self._child is None:
                return 0
            self.stub_processes()
            return self._child.stop(timeout_s, kill=kill)

    def __enter__(self) -> TritonServer:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running() else f"exit {self.returncode}" if self._child else "not started"
        return f"TritonServer({self.grpc_url}, {state})"
