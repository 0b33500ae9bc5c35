"""The process identity pack records for a server it launched (packager/serve/processes.py), and `pack stop` on a
state file whose pid is this very test process under another identity: nothing is signalled."""

from __future__ import annotations

import json
import os

import pytest

from packager.serve import processes
from packager.serve.processes import ProcessIdentity, identity


def test_identity_of_a_live_process_and_what_makes_it_another():
    me = identity(os.getpid())
    assert me is not None and me.pid == os.getpid() and me.exe == os.path.realpath("/proc/self/exe")
    assert me.current()
    assert not ProcessIdentity(me.pid, me.start_time + 1, me.exe).current()  # the pid reused by a later process
    assert not ProcessIdentity(me.pid, me.start_time, "/usr/bin/other").current()
    assert ProcessIdentity.from_record(me.record()) == me
    for bad in (None, {}, {"pid": "x", "start_time": 1, "exe": "e"}, {"pid": 1, "exe": "e"}, [1, 2, 3]):
        assert ProcessIdentity.from_record(bad) is None
    assert identity(0) is None and identity(-1) is None and identity(2**22 + 12345) is None


@pytest.fixture
def no_signals(monkeypatch):
    sent: list[tuple[int, int]] = []

    def refuse(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        raise AssertionError(f"signal {sig} sent to {pid}")

    monkeypatch.setattr(processes.os, "kill", refuse)
    monkeypatch.setattr(os, "killpg", refuse)
    return sent


def _stale_record() -> dict:
    me = identity(os.getpid())
    assert me is not None
    return {"pid": me.pid, "start_time": me.start_time - 1, "exe": me.exe}


def test_triton_stop_of_a_stale_state_signals_nothing(tmp_path, no_signals):
    from packager.targets.triton import server

    folder = server.TritonServer(tmp_path).root
    folder.mkdir(parents=True)
    state = {"pid": os.getpid(), "http_port": 1, "grpc_port": 2, "metrics_port": 3, "host": "127.0.0.1", "binary": "b"}
    state |= {"log": "l", "repository": "r", "process": _stale_record()}
    (folder / "state.json").write_text(json.dumps(state))
    result = server.TritonServer(tmp_path).stop()
    assert result["stopped"] is False and "stale state" in result["summary"] and no_signals == []
    assert not (folder / "state.json").exists()


def test_torchserve_stop_of_a_stale_state_signals_nothing(tmp_path, no_signals):
    from packager.targets.torchserve.server import TorchServeServer

    local = TorchServeServer(tmp_path)
    local.tmp.mkdir(parents=True)
    local.state_file.write_text(json.dumps({"pid": os.getpid(), "process": _stale_record()}))
    assert local.running() is None and local.processes() == []
    result = local.stop()
    assert (result["stopped"], result["pids"], result["stale"]) == (False, [], True) and no_signals == []
    assert not local.state_file.exists()


def test_store_lock_waits_for_the_holder_when_asked(tmp_path):
    import threading
    import time

    from packager.errors import UsageError
    from packager.report.store import StoreLock

    held = StoreLock(tmp_path).__enter__()
    t0 = time.monotonic()
    with pytest.raises(UsageError, match="for 0 s"):
        StoreLock(tmp_path, wait=0.3).__enter__()
    assert time.monotonic() - t0 >= 0.3
    threading.Timer(0.3, held.release).start()
    with StoreLock(tmp_path, wait=10):  # queued behind the holder, not refused
        assert time.monotonic() - t0 >= 0.6


def test_torchserve_worker_sockets_get_a_short_folder_even_when_tmpdir_is_long(tmp_path, monkeypatch):
    """A store deep enough that `$TMPDIR/.ts.sock.NNNNN` passes the 107-byte socket limit gets a short private link,
    made under /tmp even when TMPDIR is itself a long path (as under a test runner's or a CI job's workspace)."""
    from packager.targets.torchserve.server import TorchServeServer

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    monkeypatch.setenv("TMPDIR", str(deep))
    deep.mkdir(parents=True)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # Python caches the folder it read from TMPDIR
    server = TorchServeServer(deep / "store")
    server.tmp.mkdir(parents=True)
    link = server.short_tmp()
    try:
        assert link.is_symlink() and link.resolve() == server.tmp and str(link).startswith("/tmp/pack-torchserve-")
        assert len(str(link)) + len("/.ts.sock.65535") <= 107
    finally:
        link.unlink()
        link.parent.rmdir()
