"""Processes and ports under every local server (packager/serve/local.py): free ports, and the identity of a process
pack started (pid, start time, executable), so that a pid read back from a state file is signalled only while it is
still that process, together with its own descendants (found through /proc parent links)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports that are free on `host` right now (bound to port 0 together, then released)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def pid_alive(pid: int | None) -> bool:
    """True while the process exists and is not a zombie (exited, not yet reaped)."""
    return pid is not None and pid > 0 and _live_fields(pid) is not None


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name: [state, ppid, ...] (field 3 is index 0)."""
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _live_fields(pid: int) -> list[str] | None:
    """`_stat_fields` of a live process; None when it is gone, cannot be read, or is a zombie (the one zombie rule)."""
    fields = _stat_fields(pid)
    return fields if fields and fields[0] != "Z" else None


@dataclass(frozen=True)
class ProcessIdentity:
    """What tells one process from a later one that reuses its pid: the start time in clock ticks after boot
    (/proc/PID/stat field 22) and the executable (/proc/PID/exe)."""

    pid: int
    start_time: int
    exe: str

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, data: Any) -> ProcessIdentity | None:
        """The identity a state file recorded, or None when it has none (then its pid is never signalled)."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(int(data["pid"]), int(data["start_time"]), str(data["exe"]))
        except (KeyError, TypeError, ValueError):
            return None

    def current(self) -> bool:
        """True while the pid is alive (not a zombie) and still this process."""
        now = identity(self.pid)
        return now is not None and now == self

    def launched(self, entry: str) -> ProcessIdentity | None:
        """The live process now, while it is the one recorded before it answered: the same pid and start time, with
        `entry` ("NAME=value", a launch's fresh marker) in its environment; its executable may have changed since (a
        wrapper script that execs the server)."""
        now = identity(self.pid)
        if now is None or now.start_time != self.start_time:
            return None
        try:
            environ = (PROC / str(self.pid) / "environ").read_bytes()
        except OSError:
            return None
        return now if entry.encode() + b"\0" in environ else None


def identity(pid: int | None) -> ProcessIdentity | None:
    """The identity of a live process, or None when it is gone, a zombie, or cannot be read."""
    if not pid or pid <= 0:
        return None
    fields = _live_fields(pid)
    if not fields or len(fields) < 20:
        return None
    try:
        exe = os.readlink(PROC / str(pid) / "exe")
    except OSError:
        return None
    return ProcessIdentity(pid, int(fields[19]), exe.removesuffix(" (deleted)"))


def descendants(pid: int) -> list[ProcessIdentity]:
    """The live descendants of `pid` (children, their children, ...), found through the parent links in /proc."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir() if PROC.is_dir() else []:
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and len(fields) > 1:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[ProcessIdentity] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        ident = identity(child)
        if ident is not None:
            found.append(ident)
        todo.extend(children.get(child, []))
    return found


def _signal(ident: ProcessIdentity, sig: int) -> None:
    if ident.current():  # checked right before the signal: a pid reused meanwhile is left alone
        try:
            os.kill(ident.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class _Root:
    """The process a stop begins with: a recorded identity, or a child of this process (its pid cannot be reused
    before this process reaps it, even when it execs another program)."""

    def __init__(self, ident: ProcessIdentity | None, child: subprocess.Popen[bytes] | None):
        self.ident, self.child = ident, child
        self.pid = child.pid if child is not None else ident.pid if ident is not None else 0

    def alive(self) -> bool:
        if self.child is not None:
            return self.child.poll() is None
        return self.ident is not None and self.ident.current()

    def send(self, sig: int) -> None:
        if self.child is not None:
            if self.child.poll() is None:
                self.child.send_signal(sig)
        elif self.ident is not None:
            _signal(self.ident, sig)


def end_tree(root: ProcessIdentity, grace: float, kill_after: float = 5.0) -> list[int]:
    """Stop `root` and its descendants: SIGTERM to the root (a server ends its own children), then, after `grace`
    seconds, SIGKILL to whatever of the tree is left. Returns the pids still alive at the end. Nothing is signalled
    that is not `root` or one of its descendants, each checked again right before its signal."""
    return _end(_Root(root, None), grace, kill_after)


def end_child(child: subprocess.Popen[bytes], grace: float, kill_after: float = 5.0) -> list[int]:
    """`end_tree` for a server this process started and has not reaped yet."""
    return _end(_Root(None, child), grace, kill_after)


def _end(root: _Root, grace: float, kill_after: float) -> list[int]:
    tree = descendants(root.pid)
    root.send(signal.SIGTERM)
    left = _wait_gone(root, tree, grace)
    if left:
        tree += [d for d in descendants(root.pid) if d not in tree]
        root.send(signal.SIGKILL)
        for ident in tree:
            _signal(ident, signal.SIGKILL)
        left = _wait_gone(root, tree, kill_after)
    return left


def _wait_gone(root: _Root, tree: list[ProcessIdentity], seconds: float) -> list[int]:
    """Wait up to `seconds` until the root and every process of `tree` has exited; returns the pids left."""
    deadline = time.monotonic() + seconds
    while True:
        left = ([root.pid] if root.alive() else []) + [ident.pid for ident in tree if ident.current()]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def with_environment(entry: str) -> list[ProcessIdentity]:
    """Live processes whose environment holds `entry` ("NAME=value"): with a fresh random value that only a launch of
    this process set, the processes that launch started (used before their pids are known, e.g. on Ctrl-C)."""
    marker = entry.encode() + b"\0"
    found = []
    for proc in PROC.iterdir() if PROC.is_dir() else []:
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        ident = identity(int(proc.name)) if marker in environ else None
        if ident is not None:
            found.append(ident)
    return found
