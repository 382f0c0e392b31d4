"""ChildProcess (`reelserve/triton/process.py`): the lifecycle tritonserver and the naive baseline share.

A child in its own session whose helpers must not outlive it: a shell that starts a `sleep` in
the background stands in for tritonserver and its python-backend stubs.
"""

from __future__ import annotations

import gc
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from reelserve.triton.errors import ServerStartError
from reelserve.triton.process import ChildProcess, file_tail, group_processes, matching_lines

# A leader that starts a helper in its group, says so, and ignores nothing: SIGTERM ends it.
WITH_HELPER = [
    sys.executable,
    "-c",
    "import subprocess, time; subprocess.Popen(['sleep', '300']); print('up', flush=True); time.sleep(300)",
]  # noqa: E501
# A leader that ignores SIGTERM, so only the SIGKILL of the group ends it.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(300)",
]  # noqa: E501


def wait_for(condition, timeout_s: float = 10.0) -> bool:
    """Poll `condition()` until it holds or `timeout_s` passes; whether it held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_child_gets_its_own_group_and_stop_ends_the_whole_group(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "child.log"
    child = ChildProcess(WITH_HELPER, log, header="# started by a test")
    assert wait_for(lambda: len(child.group()) == 2), child.group()
    assert os.getpgid(child.pid) == child.pid  # own session => own group, Ctrl-C does not reach it
    helper = next(pid for pid, argv in child.group().items() if argv[0] == "sleep")
    assert wait_for(lambda: "up" in file_tail(log, 5))
    assert child.is_running() and child.returncode is None
    assert child.stop(timeout_s=5) == -signal.SIGTERM
    assert child.stop(timeout_s=5) == -signal.SIGTERM  # idempotent
    assert wait_for(lambda: not alive(helper)), "the helper outlived its leader"
    assert group_processes(child.pid) == {}
    assert file_tail(log, 5).splitlines()[0] == "# started by a test"


def test_a_leader_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    child = ChildProcess(STUBBORN, tmp_path / "c.log")
    assert wait_for(lambda: "up" in file_tail(tmp_path / "c.log", 5))
    t0 = time.monotonic()
    assert child.stop(timeout_s=0.5) == -signal.SIGKILL
    assert time.monotonic() - t0 < 5


def test_kill_skips_the_grace_and_cleanup_runs_once_the_group_is_killed(tmp_path: Path) -> None:
    cleaned: list[bool] = []
    child = ChildProcess(STUBBORN, tmp_path / "c.log", cleanup=lambda: cleaned.append(True))
    assert wait_for(lambda: "up" in file_tail(tmp_path / "c.log", 5))
    t0 = time.monotonic()
    assert child.stop(timeout_s=30, kill=True) == -signal.SIGKILL
    assert time.monotonic() - t0 < 5  # no 30 s grace
    assert cleaned == [True]
    assert wait_for(lambda: group_processes(child.pid) == {})


def test_append_keeps_the_previous_log_and_a_fresh_launch_replaces_it(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    for header, append in (("# one", False), ("# two", True)):
        ChildProcess([sys.executable, "-c", "print('ran')"], log, append=append, header=header).stop(timeout_s=5)
    assert [ln for ln in log.read_text().splitlines() if ln.startswith("#")] == ["# one", "# two"]
    ChildProcess([sys.executable, "-c", "pass"], log, header="# three").stop(timeout_s=5)
    assert log.read_text().splitlines()[0] == "# three"


def test_a_dropped_child_does_not_outlive_its_owner(tmp_path: Path) -> None:
    owner = [ChildProcess(WITH_HELPER, tmp_path / "c.log")]
    assert wait_for(lambda: len(owner[0].group()) == 2)
    pids = set(owner[0].group())
    owner.clear()  # the last reference goes, stop() never called
    gc.collect()
    assert wait_for(lambda: not any(alive(p) for p in pids)), "an orphaned child kept running"


def test_a_command_that_cannot_run_is_a_start_error(tmp_path: Path) -> None:
    with pytest.raises(ServerStartError, match=r"could not launch .*no-such-binary"):
        ChildProcess([str(tmp_path / "no-such-binary")], tmp_path / "c.log")


def test_matching_lines_keeps_the_last_hits_only(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    log.write_bytes(b"I0 fine\nE1 first\nnoise\nE2 second\nE3 third\n\xff\xfe bad bytes\n")
    assert matching_lines(log, re.compile(rb"^E\d "), 2) == ["E2 second", "E3 third"]
    assert matching_lines(tmp_path / "missing.log", re.compile(rb"^E"), 2) == []
    assert file_tail(log, 1).startswith("\ufffd")
    assert file_tail(tmp_path / "missing.log", 3) == ""
