"""TritonServer (`reelserve/triton/server.py`): a real tritonserver from the wheel, on loopback, tiny echo model."""

from __future__ import annotations

import os
import signal
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from reelserve.config import ServerConfig
from reelserve.triton.errors import ServerStartError
from reelserve.triton.ports import free_port, port_in_use
from reelserve.triton.server import TritonServer

ECHO_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "text" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [
  {{ name: "text" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "numpy_major" data_type: TYPE_FP32 dims: [ 1 ] }}
]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""

ECHO_MODEL = """
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        pb_utils.Logger.log_info(f"echo-init numpy={np.__file__} executable={sys.executable}")
        {fail}
        self.numpy_major = float(np.__version__.split(".")[0])

    def execute(self, requests):
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "text").as_numpy()
            major = np.full((text.shape[0], 1), self.numpy_major, dtype=np.float32)
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor("text", text), pb_utils.Tensor("numpy_major", major)])
            )
        return responses
"""


def make_repo(root: Path, *, fail_init: bool = False) -> Path:
    """A one-model repository: `echo` returns its BYTES input (or raises in initialize)."""
    model_dir = root / "echo" / "1"
    model_dir.mkdir(parents=True)
    (root / "echo" / "config.pbtxt").write_text(ECHO_CONFIG.format(name="echo"))
    fail = 'raise RuntimeError("echo-boom: initialize failed on purpose")' if fail_init else "pass"
    (model_dir / "model.py").write_text(textwrap.dedent(ECHO_MODEL).replace("{fail}", fail))
    return root


def make_cfg(repo: Path, log_file: Path, **overrides: object) -> ServerConfig:
    ports = set()
    while len(ports) < 3:
        ports.add(free_port())
    grpc_port, http_port, metrics_port = sorted(ports)
    cfg = ServerConfig(
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        model_repository=repo,
        log_file=log_file,
        ready_timeout_s=60,
    )
    return replace(cfg, **overrides)  # type: ignore[arg-type]


def group_members(pgid: int) -> dict[int, str]:
    """pid -> command line of every live (non-zombie) process in process group `pgid`."""
    members: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members[int(entry.name)] = cmdline
    return members


def stubs_of(server: TritonServer) -> dict[int, str]:
    assert server.pid is not None
    return {pid: cmd for pid, cmd in group_members(server.pid).items() if "triton_python_backend_stub" in cmd}


def wait_gone(pids: set[int], timeout_s: float = 5.0) -> set[int]:
    """The pids still alive (and not zombies) after up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if _alive(p)}
        if alive:
            time.sleep(0.05)
    return alive


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on `port`, from /proc/net/tcp{,6} (hex-decoded)."""
    found: set[str] = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            addr_hex, port_hex = parts[1].split(":")
            if parts[3] != "0A" or int(port_hex, 16) != port:  # 0A = TCP_LISTEN
                continue
            raw = bytes.fromhex(addr_hex)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


def non_loopback_ipv4() -> str | None:
    """This machine's outward IPv4 address, if it has one (a UDP connect sends nothing)."""
    for probe in ("192.0.2.1", "10.255.255.255", "8.8.8.8"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((probe, 9))
            except OSError:
                continue
            addr = s.getsockname()[0]
            if not addr.startswith("127."):
                return addr
    return None


# -- no tritonserver process needed ------------------------------------------------------------


def test_command_line_binds_every_endpoint_to_the_configured_host(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, tmp_path / "t.log")
    server = TritonServer(cfg, extra_args=["--log-info=true"], env={"REELSERVE_TEST": "1"})
    cmd = server.command()
    for flag in ("grpc", "http", "metrics"):
        assert f"--{flag}-address=127.0.0.1" in cmd
        assert f"--{flag}-port={getattr(cfg, f'{flag}_port')}" in cmd
    assert "--disable-auto-complete-config" in cmd and "--exit-on-error=true" in cmd
    assert f"--backend-config=python,shm-default-byte-size={cfg.python_shm_bytes}" in cmd
    assert f"--cache-config=local,size={cfg.response_cache_mib * 1024 * 1024}" in cmd
    assert not any(a.startswith("--cache-config") for a in TritonServer(replace(cfg, response_cache_mib=0)).command())
    assert cmd[-1] == "--log-info=true"
    env = server.child_env()
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.prefix) / "bin")
    assert env["LD_LIBRARY_PATH"].split(os.pathsep)[0] == str(server.install.lib_dir)
    assert env["REELSERVE_TEST"] == "1"
    assert server.grpc_url == f"127.0.0.1:{cfg.grpc_port}"
    assert server.metrics_url == f"http://127.0.0.1:{cfg.metrics_port}/metrics"


def test_taken_port_is_named_and_nothing_starts(tmp_path: Path) -> None:
    cfg = make_cfg(make_repo(tmp_path / "repo"), tmp_path / "t.log")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", cfg.http_port))
        squatter.listen()
        server = TritonServer(cfg)
        with pytest.raises(
            ServerStartError, match=rf"port {cfg.http_port} \(--http-port\) on 127.0.0.1 is already in use"
        ):
            server.start()
    assert server.pid is None
    assert not cfg.log_file.exists()  # type: ignore[union-attr]
    assert server.stop() == 0  # nothing to stop, still fine


def test_missing_model_repository_is_a_clear_error(tmp_path: Path) -> None:
    server = TritonServer(make_cfg(tmp_path / "nope", tmp_path / "t.log"))
    with pytest.raises(ServerStartError, match=r"model repository .*nope does not exist"):
        server.start()
    assert server.pid is None


# -- a real tritonserver ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    root = tmp_path_factory.mktemp("echo")
    server = TritonServer(make_cfg(make_repo(root / "repo"), root / "tritonserver.log"))
    with server:
        yield server


@pytest.mark.integration
def test_echo_round_trip_over_grpc(echo_server: TritonServer) -> None:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(echo_server.grpc_url) as client:
        assert client.is_server_ready()
        assert client.is_model_ready("echo")
        text = grpcclient.InferInput("text", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([["héllo".encode()]], dtype=np.object_))
        result = client.infer("echo", [text])
    assert result.as_numpy("text").tolist() == [["héllo".encode()]]
    assert result.as_numpy("numpy_major").tolist() == [[float(np.__version__.split(".")[0])]]


@pytest.mark.integration
def test_python_stub_uses_this_virtualenv(echo_server: TritonServer) -> None:
    log = echo_server.log_path.read_text()
    line = next(ln for ln in log.splitlines() if "echo-init" in ln)
    numpy_path = Path(line.split("numpy=")[1].split()[0])
    assert numpy_path.resolve().is_relative_to(Path(sys.prefix).resolve()), line
    assert numpy_path.resolve() == Path(np.__file__).resolve(), line


@pytest.mark.integration
def test_listens_on_loopback_only(echo_server: TritonServer) -> None:
    loopback = {"127.0.0.1", "::ffff:127.0.0.1"}
    cfg = echo_server.cfg
    for port in (cfg.grpc_port, cfg.http_port, cfg.metrics_port):
        addresses = listening_addresses(port)
        assert addresses, f"nothing listens on {port}"
        assert addresses <= loopback, f"port {port} listens on {addresses}"
    outward = non_loopback_ipv4()
    if outward is not None:
        with pytest.raises(OSError), socket.create_connection((outward, cfg.grpc_port), timeout=2):
            pass


@pytest.mark.integration
def test_stop_ends_stubs_and_frees_ports(tmp_path: Path) -> None:
    cfg = make_cfg(make_repo(tmp_path / "repo"), tmp_path / "t.log")
    server = TritonServer(cfg).start()
    stubs = stubs_of(server)
    assert stubs, "no python-backend stub in the server's process group"
    assert server.stop() == 0
    assert server.stop() == 0  # idempotent
    assert not wait_gone(set(stubs))
    assert group_members(server.pid) == {}  # type: ignore[arg-type]
    for port in (cfg.grpc_port, cfg.http_port, cfg.metrics_port):
        assert not port_in_use(cfg.host, port), port


@pytest.mark.integration
def test_stop_reaps_stubs_after_the_server_was_killed(tmp_path: Path) -> None:
    server = TritonServer(make_cfg(make_repo(tmp_path / "repo"), tmp_path / "t.log")).start()
    stubs = stubs_of(server)
    assert stubs
    regions = {Path("/dev/shm") / cmd.split()[2] for cmd in stubs.values()}  # argv[2]: the stub's shm region
    assert all(r.name.startswith("triton_python_backend_shm_region") and r.exists() for r in regions), regions
    os.kill(server.pid, signal.SIGKILL)  # type: ignore[arg-type]  # a crash: Triton cleans up nothing
    assert server.stop(timeout_s=5) == -signal.SIGKILL
    assert not wait_gone(set(stubs), timeout_s=2)
    assert not [r for r in regions if r.exists()], "stop() left the killed server's shared memory behind"


@pytest.mark.integration
def test_crash_during_startup_raises_with_the_log(tmp_path: Path) -> None:
    server = TritonServer(make_cfg(make_repo(tmp_path / "repo", fail_init=True), tmp_path / "t.log"))
    t0 = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        server.start()
    elapsed = time.monotonic() - t0
    message = str(info.value)
    assert "exited before it was ready" in message
    assert "echo-boom" in message  # the model's own exception text, from the log
    assert "failed to load 'echo'" in message.split("Last lines of")[0]  # quoted among the error lines
    assert str(server.log_path) in message
    assert server.returncode not in (None, 0)
    assert elapsed < 30
    assert group_members(server.pid) == {}  # type: ignore[arg-type]
