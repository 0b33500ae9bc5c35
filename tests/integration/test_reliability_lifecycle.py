"""Issue 20, items 1 and 2 on real servers: a pack killed (`kill -9`) while its server starts, or while it tunes,
leaves nothing that `pack status` cannot see or `pack stop` cannot stop; SIGTERM (timeout, a CI cancel) takes the
Ctrl-C path in every command that starts servers or writes builds: exit 143, what it started or half-wrote rolled back.

Each test checks /proc for what is left (no tritonserver, no stub, no uvicorn, no watcher of its store) and ends
whatever it started in a `finally`. (Health in the exit code: tests/integration/test_reliability_health.py.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import pack_json, run_pack, spawn_pack, wait_for_stderr
from tests.helpers.processes import processes_with, tritonserver_pids_for, wait_until_empty
from tests.helpers.store import no_leftovers
from tests.helpers.torchserve import copy_build
from tests.helpers.triton import ensure_tritonserver

pytestmark = pytest.mark.server


def _wait_for(find: Any, seconds: float = 60, step: float = 0.1) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(step)
    raise AssertionError(f"not within {seconds} s")


def _state(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _of_store(store: Path) -> list[int]:
    """Live processes whose command line or environment names the store (servers, stubs, workers, watchers)."""
    return processes_with(str(store.resolve()).encode())


def _end(proc: subprocess.Popen[str], sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _stopped_clean(store: Path, *extra: str) -> dict[str, Any]:
    doc = pack_json("stop", "--target", "triton", "--store", str(store), *extra)
    assert wait_until_empty(lambda: tritonserver_pids_for(store), 30) == [], "a tritonserver left after pack stop"
    assert wait_until_empty(lambda: _of_store(store), 30) == [], "a stub or watcher left after pack stop"
    return doc


def test_kill_9_of_a_triton_deploy_while_its_server_starts_leaves_a_server_status_lists_and_stop_stops(built, tmp_path):
    real = ensure_tritonserver()
    store = tmp_path / "store"
    copy_build(built("tiny"), store)
    slow = tmp_path / "slow-tritonserver"  # the kill lands while pack waits for readiness
    slow.write_text(f'#!/bin/sh\nsleep 2\nexec {real} "$@"\n')
    slow.chmod(0o755)
    state_file = store / ".servers" / "triton" / "state.json"
    proc = spawn_pack("deploy", "tiny", "--target", "triton", "--store", str(store), "--tritonserver", str(slow))
    try:
        wait_for_stderr(proc, "starting tritonserver")
        state = _wait_for(lambda: _state(state_file))
        proc.kill()
        proc.communicate(timeout=30)
        assert state["phase"] == "starting" and state["pid"] and state["marker"] and state["ports"], state
        assert state["launcher"]["pid"] == proc.pid
        doc = _wait_for(lambda: (d := pack_json("status", "--target", "triton", "--store", str(store)))["running"] and d, 60, 0.5)
        assert doc["pid"] == state["pid"] and tritonserver_pids_for(store) == [state["pid"]]  # adopted
        assert (_state(state_file) or {}).get("phase") == "ready"
        deployed = pack_json("deploy", "tiny", "--target", "triton", "--store", str(store), "--tritonserver", str(slow))
        assert tritonserver_pids_for(store) == [state["pid"]], deployed  # reused, not a second server
        stopped = _stopped_clean(store)
        assert stopped["stopped"] and state["pid"] in stopped["pids"]
    finally:
        if proc.poll() is None:
            proc.kill()
        run_pack("stop", "--target", "triton", "--store", str(store))


def test_kill_9_of_pack_tune_leaves_servers_status_lists_and_stop_stops(built, tmp_path):
    ensure_tritonserver()
    store = tmp_path / "store"
    copy_build(built("tiny"), store)
    proc = spawn_pack("tune", "tiny", "--target", "triton", "--store", str(store), "--budget-s", "120", "--window-s", "0.5")
    try:
        found = _wait_for(lambda: list((store / ".scratch").glob("tune-*/store/.servers/triton/state.json")), 120)
        wait_for_stderr(proc, "ready after", 120)
        proc.kill()
        proc.communicate(timeout=30)
        scratch = found[0].parents[3]
        assert scratch.name == f"tune-{proc.pid}" and tritonserver_pids_for(store)
        doc = pack_json("status", "--target", "triton", "--store", str(store))
        [left] = doc["leftovers"]
        assert left["running"] and left["pid"] in tritonserver_pids_for(store), doc
        assert "left by a killed pack: running" in run_pack("status", "--target", "triton", "--store", str(store)).stdout
        stopped = _stopped_clean(store)
        assert [d["pid"] for d in stopped["leftovers"]] == [left["pid"]] and not scratch.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        run_pack("stop", "--target", "triton", "--store", str(store))


def test_sigterm_of_a_fastapi_deploy_leaves_no_uvicorn_and_exits_143(built, tmp_path):
    store = tmp_path / "store"
    copy_build(built("tiny"), store)
    proc = spawn_pack("deploy", "tiny", "--target", "fastapi", "--store", str(store))
    try:
        wait_for_stderr(proc, "starting FastAPI server")
        code, err = _end(proc, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 143 and "error: terminated (SIGTERM)" in err and "Traceback" not in err, err
    assert wait_until_empty(lambda: _of_store(store), 20) == [], "uvicorn left after SIGTERM"
    assert not (store / ".servers" / "fastapi" / "state.json").exists()


def test_sigterm_of_a_triton_deploy_during_its_load_rolls_back_and_exits_143(built, tmp_path):
    ensure_tritonserver()
    store = tmp_path / "store"
    copy_build(built("tiny"), store)
    copy_build(built("tiny"), store, version="2")
    try:
        pack_json("deploy", "tiny", "--target", "triton", "--store", str(store), "--version", "1")
        pid = (_state(store / ".servers" / "triton" / "state.json") or {})["pid"]
        proc = spawn_pack("deploy", "tiny", "--target", "triton", "--store", str(store), "--version", "2")
        try:
            wait_for_stderr(proc, "loading tiny")
            code, err = _end(proc, signal.SIGTERM)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert code == 143 and "error: terminated (SIGTERM)" in err, err
        assert tritonserver_pids_for(store) == [pid]  # the server that ran before keeps running
        repo = store / ".servers" / "triton" / "repository"
        assert sorted(p.name for p in (repo / "tiny").iterdir() if p.name.isdigit()) == ["1"]
        assert not [p for p in repo.parent.rglob(".staging-*")], "a staging folder left"

        def ready() -> list[tuple[str, str]]:
            models = pack_json("status", "--target", "triton", "--store", str(store))["models"]
            ready = [(m["name"], m["version"]) for m in models if m["state"] == "READY"]
            return ready if ready == [("tiny", "1")] else []

        _wait_for(ready, 60, 0.5)
    finally:
        _stopped_clean(store)


def test_sigterm_of_pack_build_leaves_no_partial_version_and_exits_143(tmp_path):
    store = tmp_path / "s"
    proc = spawn_pack("build", "tiny", "--store", str(store))
    try:
        wait_for_stderr(proc, "capturing the program with torch.export")
        assert any(p.name.startswith(".tmp") for p in (store / "tiny").iterdir())
        code, err = _end(proc, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 143 and "error: terminated (SIGTERM)" in err and "Traceback" not in err, err
    no_leftovers(store)
