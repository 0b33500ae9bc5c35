"""Finding live processes through /proc: servers of a store, processes of this test session."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

SESSION_ENV = "PACK_TEST_SESSION"  # set by tests/conftest.py; every process the suite starts inherits it


def _state(entry: Path) -> str:
    return (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]


def processes_with(marker: bytes, exclude: tuple[bytes, ...] = ()) -> list[int]:
    """Pids of live processes (zombies excluded) whose command line or environment holds `marker` and none of
    `exclude`; this test process itself is never listed."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            data = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            state = _state(entry)
        except OSError:
            continue
        if marker in data and state != "Z" and not any(x in data for x in exclude):
            found.append(int(entry.name))
    return found


def processes_under(root: Path) -> list[int]:
    """Pids of live processes whose command line or TMPDIR mentions `root` (a launched TorchServe and its workers)."""
    return processes_with(str(root.resolve()).encode())


def tritonserver_pids_for(store: Path) -> list[int]:
    """Live tritonserver processes whose command line names this store (zombies excluded)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = _state(entry)
        except OSError:
            continue
        if "tritonserver" in cmdline and str(store) in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def pid_gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its parent counts as gone)."""
    try:
        return _state(Path(f"/proc/{pid}")) == "Z"
    except OSError:
        return True


def session_processes(token: str) -> list[int]:
    """Live processes started (directly or not) by the test session whose token is `token`."""
    return processes_with(f"{SESSION_ENV}={token}\0".encode())


def of_this_session(pids: list[int]) -> list[int]:
    """The pids among `pids` that this test session started (the machine may run other suites at the same time)."""
    ours = set(session_processes(os.environ.get(SESSION_ENV, "-")))
    return [pid for pid in pids if pid in ours]


def wait_until_empty(find: Callable[[], list[int]], seconds: float = 20, step: float = 0.3) -> list[int]:
    """Poll `find` until it returns no pid or `seconds` pass; returns the last answer."""
    deadline = time.monotonic() + seconds
    pids = find()
    while pids and time.monotonic() < deadline:
        time.sleep(step)
        pids = find()
    return pids
