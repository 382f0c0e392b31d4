"""One child process in its own session, its output in a log file, ended together with its whole group.

The lifecycle that both `TritonServer` and the naive benchmark server (`loadtests/naive_server.py`)
run: a server that forks helpers (Triton's python-backend stubs) must not leave them behind, so
the child gets its own session (pgid == pid) and every stop ends with a SIGKILL of that group;
a Ctrl-C in the terminal reaches only the parent, which then stops the child itself. Output goes
to a file, never a pipe nobody reads (a full pipe would block the child). Linux only (/proc).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .errors import ServerStartError

__all__ = ["ChildProcess", "file_tail", "group_processes", "kill_group", "matching_lines", "terminate_group"]


def group_processes(pgid: int) -> dict[int, list[str]]:
    """pid -> argv of every live (non-zombie) process in process group `pgid` (from /proc)."""
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


def kill_group(pgid: int) -> None:
    """SIGKILL every process left in group `pgid` (none left is fine)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def terminate_group(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM the process, wait up to `timeout_s`, then SIGKILL its whole process group.

    For children started in their own session (pgid == pid), so the SIGKILL reaches anything
    they started too.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            proc.wait()


def file_tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a log file, decoded leniently (empty if there is none yet)."""
    try:
        with open(path, "rb") as f:
            return b"".join(deque(f, maxlen=lines)).decode("utf-8", errors="replace")
    except OSError:
        return ""


def matching_lines(path: Path, pattern: re.Pattern[bytes], limit: int) -> list[str]:
    """The last `limit` lines of a log file that match `pattern` at their start, decoded leniently."""
    try:
        with open(path, "rb") as f:
            hits = (ln.decode("utf-8", errors="replace").rstrip() for ln in f if pattern.match(ln))
            return list(deque(hits, maxlen=limit))
    except OSError:
        return []


def _reap_orphan(proc: subprocess.Popen, grace_s: float, cleanup: Callable[[], None] | None) -> None:
    """What happens to a child whose owner went away (or Python exits) without stopping it."""
    if grace_s > 0:
        terminate_group(proc, grace_s)
    kill_group(proc.pid)
    if cleanup is not None:
        cleanup()


class ChildProcess:
    """One launched command: its own session, stdout+stderr appended to `log_path`, stopped with its group.

    `cleanup()` runs once the group is gone (what a killed child could not free itself, e.g.
    shared memory). `orphan_grace_s`: if the object is dropped (or Python exits) while the child
    runs, the child gets that long after SIGTERM (0: SIGKILL at once), so no server outlives its
    parent.
    """

    def __init__(
        self,
        cmd: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        append: bool = False,
        header: str | None = None,
        orphan_grace_s: float = 0.0,
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        self.cmd = list(cmd)
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab" if append else "wb") as log:
            if header is not None:
                log.write(header.encode() + b"\n")
                log.flush()
            try:
                self._proc: subprocess.Popen[bytes] = subprocess.Popen(
                    self.cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(env) if env is not None else None,
                    start_new_session=True,  # own session => own process group (pgid == pid)
                    close_fds=True,
                )
            except OSError as e:
                raise ServerStartError(f"could not launch {self.cmd[0]}: {e}") from e
        self._cleanup = cleanup
        self._finalizer = weakref.finalize(self, _reap_orphan, self._proc, orphan_grace_s, cleanup)

    @property
    def pid(self) -> int:
        """Also the process group id of everything it starts."""
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """None while running; the exit status once it has ended (negative: killed by that signal)."""
        return self._proc.poll()

    def is_running(self) -> bool:
        return self._proc.poll() is None

    def group(self) -> dict[int, list[str]]:
        """pid -> argv of every live process in the child's group (the child and what it started)."""
        return group_processes(self._proc.pid)

    def stop(self, timeout_s: float, *, kill: bool = False) -> int:
        """End the child and its group; idempotent; returns the exit status.

        The child alone gets SIGTERM and up to `timeout_s` to shut down itself (`kill=True`: SIGKILL
        at once); afterwards the group is SIGKILLed regardless, which reaps any helper the child
        left behind.
        """
        if kill:
            kill_group(self._proc.pid)
            self._proc.wait()
        else:
            terminate_group(self._proc, timeout_s)
        kill_group(self._proc.pid)  # the leader is gone; sweep anything still in its group
        if self._cleanup is not None:
            self._cleanup()
        self._finalizer.detach()
        return int(self._proc.returncode)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else f"exit {self.returncode}"
        return f"ChildProcess(pid {self.pid}, {state}, log {self.log_path})"
