"""A server recorded before it can take work (issue 20, item 1; packager/serve/local.py): the state file says
`starting` (pid, identity, ports, marker, the launching pack) before the wait for health, and whatever a killed pack
left is adopted (its server answers: completed and reused, not a second one) or cleaned (it never answered: stopped,
also by its marker where its pid was not known yet). The "server" is `sleep`, as in tests/unit/test_local_server.py."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from packager.errors import EnvironmentProblem
from packager.serve.local import LAUNCH_ENV, READY, STARTING
from packager.serve.processes import identity, pid_alive
from tests.unit.test_local_server import Sleeper, _gone

DEAD_PACK = {"pid": 1, "start_time": 0, "exe": "/nonexistent/pack"}  # the pack that was killed: not a live process


class Watched(Sleeper):
    """A sleeper that keeps what its state file said at each health check."""

    def __init__(self, store: Path, ready: Any = True):
        super().__init__(store, ready)
        self.seen: list[dict[str, Any] | None] = []

    def healthy(self, state: dict[str, Any]) -> bool:
        self.seen.append(self.state())
        return super().healthy(state)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Watched]:
    watched = Watched(tmp_path / "store")
    try:
        yield watched
    finally:
        for pid in watched.started_here():
            os.kill(pid, signal.SIGKILL)


def _orphan(server: Watched, launcher: dict[str, Any] = DEAD_PACK, exe: str | None = None) -> subprocess.Popen[bytes]:
    """What a pack killed while waiting for its server leaves: the server, running, and its `starting` state."""
    marker = uuid.uuid4().hex
    env = {**os.environ, "PACK_TEST_LOCAL_SERVER": server.token, LAUNCH_ENV: marker}
    child = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    ident = identity(child.pid)
    assert ident is not None
    state = server._state(server.plan(), ident, marker, STARTING)
    state["launcher"] = launcher
    if exe:  # recorded before a wrapper exec'd the server
        state["process"] = {**ident.record(), "exe": exe}
    server.save(state)
    return child


def test_the_state_is_written_before_the_first_health_check(server: Watched) -> None:
    state, _ = server.ensure(server.plan, 10)
    first = server.seen[0]
    assert first is not None and first["phase"] == STARTING and first["pid"] == state["pid"]
    me = identity(os.getpid())
    assert me is not None and first["launcher"] == me.record()
    assert first["marker"] and first["ports"] == {"http": 8123} and first["process"] == state["process"]
    assert state["phase"] == READY and "launcher" not in state and server.state() == state
    server.stop()


def test_a_server_left_by_a_killed_pack_is_adopted_once_it_answers(server: Watched) -> None:
    child = _orphan(server, exe="/bin/a-wrapper-that-execd")
    assert server.processes() == [child.pid]  # visible to status and stop while starting
    state, launched = server.ensure(server.plan, 10)
    assert not launched and state["pid"] == child.pid and state["phase"] == READY and "launcher" not in state
    now = identity(child.pid)
    assert now is not None and server.state() == state and state["process"] == now.record()
    assert server.stop()["pids"] == [child.pid] and _gone([child.pid])


def test_a_server_left_by_a_killed_pack_that_never_answers_is_stopped_before_a_new_launch(server: Watched) -> None:
    child = _orphan(server)
    server.ready = False
    assert server.running() is None
    server.ready = True
    server.mute = True  # it does not answer: a new one is launched, the orphan stopped
    state, launched = server.ensure(server.plan, 10)
    assert launched and state["pid"] != child.pid and _gone([child.pid])
    server.mute = False
    server.stop()


def test_stop_ends_a_starting_server_whose_pid_was_not_known_yet(server: Watched) -> None:
    child = _orphan(server)
    state = server.state()
    assert state is not None
    server.save({**state, "pid": None, "process": None})  # a launcher (TorchServe's) had not told the pid yet
    result = server.stop()
    assert result["pids"] == [child.pid] and _gone([child.pid]) and server.state() is None


def test_a_launch_in_progress_by_a_live_pack_is_neither_adopted_nor_stopped(server: Watched) -> None:
    me = identity(os.getpid())
    assert me is not None
    child = _orphan(server, launcher=me.record())
    assert server.running() is None
    with pytest.raises(EnvironmentProblem, match=f"another pack \\(pid {os.getpid()}\\) is starting the sleeper"):
        server.ensure(server.plan, 10)
    assert pid_alive(child.pid)
    server.stop()
