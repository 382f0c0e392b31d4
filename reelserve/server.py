"""Run the real `tritonserver` from the nvidia-pytriton wheel as a child process, on loopback.

We do not use PyTriton's Python-callable serving: the model repository is a plain Triton one
(python-backend and ONNX Runtime models, ensembles), so all we need from the wheel is its
binary, its backends and its python-backend stub. They live inside site-packages, which may be
read-only and lacks a stub in `backends/python/`, so `find_tritonserver` prepares a writable
copy once under `cache_dir()`. `TritonServer` then owns one server process: it checks ports and
paths before starting (plain errors instead of a Triton log to decode), binds every endpoint to
the configured host only, sends stdout/stderr (Triton's log and the python stubs' prints) to one
log file, and stops the whole process group so no stub outlives its server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from reelserve.config import ServerConfig, cache_dir

__all__ = ["ServerError", "TritonInstall", "TritonServer", "find_tritonserver", "free_port", "serve_forever"]

_INSTALL_HINT = "pip install 'reelserve[serve]'"
_STUB_NAME = "triton_python_backend_stub"
_COMPLETE_MARKER = ".reelserve-complete"
_LOG_TAIL_LINES = 40
_POLL_S = 0.05
_RPC_TIMEOUT_S = 1.0
_SHM_DIR = Path("/dev/shm")
_SHM_PREFIX = "triton_python_backend_shm_region"
_ERROR_LINE = re.compile(rb"^(E\d{4} |error: )")


class ServerError(RuntimeError):
    """tritonserver cannot be found, started or made ready; the message says what to fix."""


@dataclass(frozen=True)
class TritonInstall:
    """A runnable copy of the wheel's tritonserver (binary, backends, stub) and its shared libs."""

    root: Path  # the writable copy under cache_dir()
    bin: Path  # root/bin/tritonserver
    backends_dir: Path  # root/backends, python stub included; --backend-directory
    caches_dir: Path  # root/caches; --cache-directory
    lib_dir: Path  # the wheel's nvidia_pytriton.libs; goes first in LD_LIBRARY_PATH
    version: str  # nvidia-pytriton version

    @property
    def stub(self) -> Path:
        return self.backends_dir / "python" / _STUB_NAME


_install_lock = threading.Lock()


def find_tritonserver() -> TritonInstall:
    """Locate the nvidia-pytriton wheel and return a ready-to-run copy of its tritonserver.

    The copy is made once per (pytriton version, Python version) under
    `cache_dir()/tritonserver/<version>-py<major><minor>`: it is assembled in a temporary folder
    next to it and renamed into place, so concurrent callers (tests, several servers) never see
    a half-copied tree. The wheel's `nvidia_pytriton.libs` is used in place (via LD_LIBRARY_PATH).
    """
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(f"nvidia-pytriton is not installed, so there is no tritonserver to run: {_INSTALL_HINT}")
    pkg_dir = Path(next(iter(spec.submodule_search_locations)))
    dist_dir = pkg_dir / "tritonserver"
    lib_dir = pkg_dir.parent / "nvidia_pytriton.libs"
    try:
        version = importlib.metadata.version("nvidia-pytriton")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    if not (dist_dir / "bin" / "tritonserver").is_file():
        raise ServerError(f"nvidia-pytriton {version} at {pkg_dir} has no tritonserver binary: {_INSTALL_HINT}")
    if not lib_dir.is_dir():
        raise ServerError(f"nvidia-pytriton {version}: shared libraries folder {lib_dir} is missing; reinstall it")

    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub_src = dist_dir / "python_backend_stubs" / py / _STUB_NAME
    if not stub_src.is_file():
        have = sorted(p.name for p in (dist_dir / "python_backend_stubs").glob("*") if (p / _STUB_NAME).is_file())
        raise ServerError(
            f"nvidia-pytriton {version} has no python-backend stub for Python {py}"
            f" (it has: {', '.join(have) or 'none'}); run reelserve with one of those Python versions"
        )

    parent = cache_dir() / "tritonserver"
    root = parent / f"{version}-py{sys.version_info.major}{sys.version_info.minor}"
    install = TritonInstall(
        root=root,
        bin=root / "bin" / "tritonserver",
        backends_dir=root / "backends",
        caches_dir=root / "caches",
        lib_dir=lib_dir,
        version=version,
    )
    if _is_complete(install):
        return install
    with _install_lock:
        if not _is_complete(install):
            _prepare_copy(dist_dir, stub_src, install)
    return install


def _is_complete(install: TritonInstall) -> bool:
    return (install.root / _COMPLETE_MARKER).is_file() and install.bin.is_file() and install.stub.is_file()


def _prepare_copy(dist_dir: Path, stub_src: Path, install: TritonInstall) -> None:
    """Copy the wheel's tree and the stub into a temp folder, then rename it to `install.root`."""
    parent = install.root.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{install.root.name}.", dir=parent))
    try:
        shutil.copytree(
            dist_dir,
            tmp,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"),
        )
        stub_dst = tmp / "backends" / "python" / _STUB_NAME
        shutil.copy2(stub_src, stub_dst)
        stub_dst.chmod(0o755)
        (tmp / "bin" / "tritonserver").chmod(0o755)
        (tmp / _COMPLETE_MARKER).write_text(f"copied from {dist_dir}\n")
        if install.root.exists() and not _is_complete(install):
            # A broken leftover (files deleted by hand): move it aside, then replace it.
            trash = Path(tempfile.mkdtemp(prefix=f".{install.root.name}.broken.", dir=parent))
            os.replace(install.root, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(tmp, install.root)
        except OSError:
            # Another process renamed its copy into place first; theirs is as good as ours.
            if not _is_complete(install):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not _is_complete(install):
        raise ServerError(f"could not prepare tritonserver under {install.root}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the OS picks it); for tests and ad-hoc servers."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def on_free_ports(cfg: ServerConfig, model_repository: Path | None = None) -> ServerConfig:
    """`cfg` with free gRPC/HTTP/metrics ports (and another repository if given): tests, demo, benches."""
    return dataclasses.replace(
        cfg,
        model_repository=model_repository or cfg.model_repository,
        grpc_port=free_port(cfg.host),
        http_port=free_port(cfg.host),
        metrics_port=free_port(cfg.host),
    )


def _port_in_use(host: str, port: int) -> bool:
    """True when binding host:port fails, i.e. tritonserver could not bind it either.

    SO_REUSEADDR (which Triton also sets) keeps TIME_WAIT leftovers of a stopped server from
    counting as "in use", while a live listener, on this address or on 0.0.0.0, still does.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


# Everything a client could use to read or change the server, bar the probes (health, metadata).
RESTRICTED_PROTOCOLS = (
    "inference",
    "shared-memory",
    "model-config",
    "model-repository",
    "statistics",
    "trace",
    "logging",
)


def access_args(cfg: ServerConfig) -> list[str]:
    """tritonserver flags for the API key (restricted protocols) and gRPC TLS in `cfg`."""
    args = []
    if cfg.api_key is not None:
        if not cfg.api_key.strip() or any(ch in cfg.api_key for ch in ",:= \t\n"):
            raise ServerError("the API key must be non-empty and contain no spaces, ',', ':' or '='")
        protocols = ",".join(RESTRICTED_PROTOCOLS)
        args += [
            f"--grpc-restricted-protocol={protocols}:x-api-key={cfg.api_key}",
            f"--http-restricted-api={protocols}:x-api-key={cfg.api_key}",
        ]
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ServerError("gRPC TLS needs both a certificate and its key (--tls-cert and --tls-key)")
    if cfg.tls_cert is not None:
        for path in (cfg.tls_cert, cfg.tls_key):
            if not Path(path).is_file():
                raise ServerError(f"TLS file {path} does not exist")
        args += ["--grpc-use-ssl=true", f"--grpc-server-cert={cfg.tls_cert}", f"--grpc-server-key={cfg.tls_key}"]
    return args


def _redact(cmd: Sequence[str]) -> list[str]:
    """The command line for the log, API key hidden."""
    return [re.sub(r"(x-api-key=).*", r"\1***", arg) for arg in cmd]


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _group_processes(pgid: int) -> dict[int, list[str]]:
    """pid -> argv of every live process in process group `pgid` (from /proc; Linux only)."""
    found: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, pgrp, ...
            if int(fields[2]) != pgid or fields[0] == "Z":
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry.name)] = [a.decode(errors="replace") for a in argv if a]
    return found


def _remove_shm_regions(names: set[str]) -> None:
    """Unlink python-backend shared-memory regions a killed server could not remove itself.

    Each stub's region is `shm-default-byte-size` of real tmpfs memory (64 MiB by default); when
    tritonserver is SIGKILLed, nobody else ever frees it.
    """
    for name in names:
        if name.startswith(_SHM_PREFIX) and "/" not in name:
            with contextlib.suppress(OSError):
                (_SHM_DIR / name).unlink()


def _kill_group(pgid: int, shm_regions: set[str] | None = None) -> None:
    """SIGKILL every process left in the group, then free the shared memory they held."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    if shm_regions:
        _remove_shm_regions(shm_regions)


def file_tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a log file, decoded leniently (empty if there is none yet)."""
    try:
        with open(path, "rb") as f:
            return b"".join(deque(f, maxlen=lines)).decode("utf-8", errors="replace")
    except OSError:
        return ""


def terminate_group(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM the process, wait up to `timeout_s`, then SIGKILL its whole process group.

    For children started with `start_new_session=True` (pgid == pid), so the SIGKILL reaches
    anything they started too.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


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
        self._proc: subprocess.Popen[bytes] | None = None
        self._install: TritonInstall | None = None
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize | None = None
        self._shm_regions: set[str] = set()  # stub regions seen, freed on stop if Triton could not
        self.starts = 0  # a restart appends to the log instead of replacing it

    # -- addresses ---------------------------------------------------------------------------

    @property
    def grpc_url(self) -> str:
        """host:port, as `tritonclient.grpc.InferenceServerClient` wants it."""
        return f"{_url_host(self.cfg.host)}:{self.cfg.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{_url_host(self.cfg.host)}:{self.cfg.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_url_host(self.cfg.host)}:{self.cfg.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        """Where tritonserver's stdout and stderr (python stub output included) are written."""
        if self.cfg.log_file is not None:
            return Path(self.cfg.log_file).absolute()
        return cache_dir() / "logs" / f"tritonserver-{self.cfg.grpc_port}.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """None while running (or never started); the exit status once it has ended."""
        return self._proc.poll() if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stub_processes(self) -> dict[int, list[str]]:
        """pid -> argv of the live python-backend stubs of this server (Triton does not restart dead ones).

        Also remembers each stub's shared-memory region, so `stop()` can free it after a crash.
        """
        if self._proc is None:
            return {}
        stubs = {
            pid: argv for pid, argv in _group_processes(self._proc.pid).items() if argv and argv[0].endswith(_STUB_NAME)
        }
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
        env.update(self.env_overrides)
        return env

    # -- lifecycle -----------------------------------------------------------------------------

    def _preflight(self) -> None:
        """Fail with a plain message before launching anything Triton would only fail on later."""
        cfg = self.cfg
        repo = Path(cfg.model_repository)
        if not repo.is_dir():
            raise ServerError(f"model repository {repo} does not exist (or is not a folder)")
        ports = (("--grpc-port", cfg.grpc_port), ("--http-port", cfg.http_port), ("--metrics-port", cfg.metrics_port))
        seen: dict[int, str] = {}
        for flag, port in ports:
            if port in seen:
                raise ServerError(f"port {port} is configured for both {seen[port]} and {flag}; give each its own port")
            seen[port] = flag
        for flag, port in ports:
            if _port_in_use(cfg.host, port):
                raise ServerError(f"port {port} ({flag}) on {cfg.host} is already in use")

    def start(self, *, wait: bool = True) -> TritonServer:
        """Launch tritonserver; with `wait`, block until it is ready (stopping it again if it never is)."""
        with self._lock:
            if self.is_running():
                raise ServerError(f"tritonserver is already running (pid {self.pid})")
            self._preflight()
            cmd = self.command()
            env = self.child_env()
            log_path = self.log_path
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab" if self.starts else "wb") as log:
                self.starts += 1
                log.write(f"# reelserve (start {self.starts}): {' '.join(_redact(cmd))}\n".encode())
                log.flush()
                try:
                    # Own session => own process group (pgid == pid): stop() signals the group, so the
                    # python-backend stubs go too, and a Ctrl-C in the terminal reaches only us.
                    self._proc = subprocess.Popen(
                        cmd,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                        start_new_session=True,
                        close_fds=True,
                    )
                except OSError as e:
                    raise ServerError(f"could not launch {cmd[0]}: {e}") from e
            # No orphaned servers: if this object goes away (or Python exits) without stop(), kill the group.
            self._shm_regions = set()
            self._finalizer = weakref.finalize(self, _kill_group, self._proc.pid, self._shm_regions)
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
        try:
            with open(self.log_path, "rb") as f:
                hits = (ln.decode("utf-8", errors="replace").rstrip() for ln in f if _ERROR_LINE.match(ln))
                return list(deque(hits, maxlen=limit))
        except OSError:
            return []

    def _died_error(self, what: str) -> ServerError:
        errors = "".join(f"  {ln}\n" for ln in self.log_errors())
        return ServerError(
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

        if self._proc is None:
            raise ServerError("tritonserver was not started; call start() first")
        timeout = self.cfg.ready_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        # Until the gRPC port accepts TCP connections there is nothing to ask; probing with a plain
        # socket avoids gRPC's reconnect backoff (which would add up to seconds to the cold start).
        while not self._accepts_tcp(self.cfg.grpc_port):
            if self._proc.poll() is not None:
                raise self._died_error("exited before it was ready")
            if time.monotonic() > deadline:
                raise ServerError(f"tritonserver was not listening on {self.grpc_url} after {timeout:.0f} s")
            time.sleep(_POLL_S)
        pending = list(models)
        server_ready = False
        client = grpcclient.InferenceServerClient(self.grpc_url, **self.probe_tls)
        try:
            while True:
                if self._proc.poll() is not None:
                    raise self._died_error("exited before it was ready")
                with contextlib.suppress(InferenceServerException):
                    if not server_ready:
                        server_ready = client.is_server_ready(client_timeout=_RPC_TIMEOUT_S)
                    while server_ready and pending and client.is_model_ready(pending[0], client_timeout=_RPC_TIMEOUT_S):
                        pending.pop(0)
                # tritonserver opens its metrics port after gRPC reports ready: wait for it too, so
                # a scrape right after wait_ready() is not refused
                if server_ready and not pending and self._accepts_tcp(self.cfg.metrics_port):
                    self.stub_processes()  # remember their shm regions while we still can
                    return
                if time.monotonic() > deadline:
                    waiting = "server readiness" if not server_ready else f"model(s) {', '.join(pending)}"
                    raise ServerError(
                        f"tritonserver at {self.grpc_url} still waiting for {waiting} after {timeout:.0f} s;"
                        f" last lines of {self.log_path}:\n{self.log_tail()}"
                    )
                time.sleep(_POLL_S)
        finally:
            client.close()

    def _accepts_tcp(self, port: int) -> bool:
        try:
            with socket.create_connection((self.cfg.host, port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, timeout_s: float = 30, *, kill: bool = False) -> int:
        """SIGTERM tritonserver, wait up to `timeout_s`, then SIGKILL its whole process group.

        Only the server gets SIGTERM, so it can drain requests and finalize the python models
        itself; afterwards the group is SIGKILLed regardless, which reaps any stub Triton left
        behind. `kill=True` skips the drain (a broken server: a graceful shutdown would answer
        NOT_FOUND while it unloads, or wait for requests a dead stub never finishes; killed
        connections give clients UNAVAILABLE, which they retry). Idempotent; returns the exit
        status (negative = killed by that signal).
        """
        with self._lock:
            proc = self._proc
            if proc is None:
                return 0
            self.stub_processes()
            if kill:
                _kill_group(proc.pid)
                proc.wait()
            else:
                terminate_group(proc, timeout_s)
            # The group leader is gone; sweep anything still in its group (stubs, their children).
            _kill_group(proc.pid, self._shm_regions)
            if self._finalizer is not None:
                self._finalizer.detach()
            return int(proc.returncode)

    def __enter__(self) -> TritonServer:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running() else f"exit {self.returncode}" if self._proc else "not started"
        return f"TritonServer({self.grpc_url}, {state})"


def serve_forever(server: TritonServer) -> int:
    """Start `server`, print where it listens, supervise it until SIGINT/SIGTERM, stop it; return the exit code.

    0 after a signal-initiated clean stop. While serving, a dead tritonserver or python-backend
    stub is restarted (`reelserve.supervisor`); a crash loop prints the log tail and returns 1.
    Must be called from the main thread (signal handlers).
    """
    from .supervisor import Supervisor

    stop_requested = threading.Event()
    starting = True

    def _on_signal(signum: int, _frame: object) -> None:
        stop_requested.set()
        if starting:  # interrupt a long model load; start() stops the half-started server
            raise KeyboardInterrupt

    def _log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor = Supervisor(server, log=_log)
    try:
        try:
            server.start()
        except KeyboardInterrupt:
            print("interrupted during startup; tritonserver stopped", file=sys.stderr, flush=True)
            return 0
        starting = False
        print(f"tritonserver ready (pid {server.pid})", flush=True)
        print(f"  gRPC:    {server.grpc_url}" + (" (TLS)" if server.cfg.tls_cert else ""), flush=True)
        print(f"  HTTP:    {server.http_url}", flush=True)
        print(f"  metrics: {server.metrics_url}", flush=True)
        print(f"  log:     {server.log_path}", flush=True)
        if server.cfg.api_key is not None:
            print("  access:  every protocol but health/metadata needs the x-api-key header", flush=True)
        supervisor.remember_stubs()
        while not stop_requested.wait(server.cfg.watchdog_poll_s):
            reason = supervisor.check()
            if reason is None:
                continue
            starting = True
            try:
                supervisor.restart(reason)
            except KeyboardInterrupt:
                return 0
            except ServerError as e:
                _log(f"reelserve serve: {e}")
                return 1
            starting = False
        print("stopping tritonserver ...", flush=True)
        server.stop()
        return 0
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
