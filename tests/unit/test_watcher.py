"""The watcher's own decisions (packager/serve/watcher.py), in-process: the back-off of a repair that keeps failing, a
repair deferred while the store's server lock is held, a probe that fails, PACK_WATCH=0 at a launch, the stop (of a
real `sleep` recorded as a watcher, and of a stale record: nothing signalled), and the exit once the server is gone.
The checks here stand in for a server only where a real one cannot be made to fail on demand (a repair that never
works, a lock held, an API that does not answer); tests/integration/test_reliability_healing.py heals real servers."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from packager.errors import EnvironmentProblem, UsageError
from packager.serve import watcher as w
from packager.serve.health import each_health
from packager.serve.local import LocalServer
from packager.serve.processes import ProcessIdentity, identity, pid_alive


class Server(LocalServer):
    """A server of a made-up kind whose recorded process is whatever the test records."""

    kind = "sleeper"
    title = "sleeper"


def _record(server: LocalServer, ident: ProcessIdentity) -> None:
    server.save({"pid": ident.pid, "process": ident.record()})


def _me() -> ProcessIdentity:
    me = identity(os.getpid())
    assert me is not None
    return me


BAD = {"version": "1", "health": "unhealthy", "reason": "inference failed: Stub process 'tiny_0_0' is not healthy."}


class Failing:
    """A server whose tiny v1 is unhealthy and whose repair never works (the error path a real server cannot be made
    to take on demand); `healthy` turns it right."""

    def __init__(self) -> None:
        self.repairs = 0
        self.healthy = False

    def __call__(self, repair: bool) -> dict[str, Any]:
        if self.healthy:
            return {"health": {"tiny": {"version": "1", "health": "healthy"}}}
        if not repair:
            return {"health": {"tiny": dict(BAD)}}
        self.repairs += 1
        return {"health": {"tiny": {**BAD, "repair": {"repaired": False, "reason": "the reload failed: HTTP 400"}}}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _loop(tmp_path: Path, check: Any, lock: Any = None) -> tuple[w.Loop, Clock]:
    clock = Clock()
    watcher = w.Watcher(tmp_path / "store", "sleeper")
    return w.Loop(check, watcher, lock or contextlib.nullcontext, clock), clock


def test_a_repair_that_keeps_failing_backs_off_and_a_healthy_model_starts_afresh(tmp_path):
    check = Failing()
    loop, clock = _loop(tmp_path, check)
    tries = []
    for second in range(0, 80):
        clock.now = float(second)
        before = check.repairs
        loop.round()
        if check.repairs > before:
            tries.append(second)
    assert tries == [0, 5, 15, 35, 75], tries  # 5, 10, 20, 40 s between the repairs
    last = loop.watcher.last()
    assert last["last_repair"]["repaired"] is False and "next try in 80 s" in last["last_repair"]["line"], last
    assert last["backing_off"] == ["tiny v1 (retry in 76 s)"]  # as of the last round, at 79 s
    check.healthy = True
    clock.now = 80.0
    loop.round()
    assert loop.backoff.failures == {} and loop.watcher.last()["backing_off"] == []
    check.healthy = False
    clock.now = 81.0
    loop.round()
    assert check.repairs == 6  # unhealthy again: repaired at once


def test_the_back_off_is_capped():
    backoff = w.Backoff()
    waits = [backoff.failed("m v1", 0.0) for _ in range(12)]
    assert waits[:4] == [5.0, 10.0, 20.0, 40.0] and max(waits) == w.BACKOFF_S[1] == 300.0


def test_a_repair_waits_while_a_deploy_holds_the_lock(tmp_path, caplog):
    def held() -> Any:
        raise UsageError("another pack process is writing .servers (lock .servers/.lock)")

    check = Failing()
    loop, _ = _loop(tmp_path, check, held)
    with caplog.at_level("INFO", logger=w.__name__):
        loop.round()
        loop.round()
    assert check.repairs == 0 and loop.backoff.failures == {}  # deferred, not counted as a failed repair
    assert [r.message.split(" ", 1)[1] for r in caplog.records] == [
        "repair of tiny v1 deferred: another pack process is writing .servers (lock .servers/.lock)"
    ]  # said once, not at every round


def test_a_probe_that_fails_waits_longer_each_time_and_the_loop_goes_on(tmp_path):
    def down(repair: bool) -> dict[str, Any]:
        raise EnvironmentProblem("Triton at http://127.0.0.1:1 does not answer")

    loop, _ = _loop(tmp_path, down)
    waits = [loop.round() for _ in range(3)]
    assert waits == [w.PERIOD_S, 2 * w.PERIOD_S, 3 * w.PERIOD_S]
    assert "does not answer" in loop.watcher.last()["last_error"]


def test_each_health_reads_every_targets_status_document():
    triton = {"health": {"tiny": {"version": "1", "health": "healthy"}}}
    torchserve = {"models": [{"model": "tiny", "version": "2", "health": {"health": "unhealthy"}}]}
    fastapi = {"models": [{"name": "tiny", "version": "3", "health": {"health": "unknown"}}]}
    assert list(each_health(triton)) == ["tiny v1"]
    assert each_health(torchserve) == {"tiny v2": {"health": "unhealthy"}}
    assert list(each_health(fastapi)) == ["tiny v3"]


@pytest.mark.parametrize("value, on", [(None, True), ("1", True), ("0", False), ("off", False), ("false", False)])
def test_pack_watch(value, on):
    assert w.enabled({} if value is None else {w.ENV: value}) is on


def test_pack_watch_0_at_launch_leaves_the_server_without_a_watcher_for_good(tmp_path, monkeypatch):
    server = Server(tmp_path / "store")
    _record(server, _me())  # the "server" is this test process: alive and the one recorded
    monkeypatch.setenv(w.ENV, "0")
    assert w.start(server, "sleeper", "no.such.module", launched=True) is None
    doc = w.describe(server)
    assert doc["off"] == "PACK_WATCH=0 when the sleeper was launched" and not doc["running"], doc
    assert w.status_line(doc) == "watcher: off (PACK_WATCH=0 when the sleeper was launched)"
    monkeypatch.delenv(w.ENV)
    assert w.start(server, "sleeper", "no.such.module", launched=False) is None  # a later deploy: still off, no process
    assert w.describe(server)["off"]


def test_pack_stop_stops_the_watcher_it_recorded_then_the_server(tmp_path):
    server = Server(tmp_path / "store")
    proc = subprocess.Popen(["sleep", "60"])
    try:
        ident = identity(proc.pid)
        assert ident is not None
        watcher = w.Watcher(server.store, server.kind)
        _record(watcher, ident)
        assert w.describe(server)["running"] and w.describe(server)["pid"] == proc.pid
        result = w.stop_with(server)
        assert proc.wait(10) is not None and not pid_alive(proc.pid)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result["watcher"]["stopped"] and result["watcher"]["pids"] == [proc.pid], result
    assert result["summary"].endswith("; its watcher was stopped too")
    assert watcher.state() is None and not w.describe(server)["running"]


def test_pack_stop_signals_nothing_for_a_stale_watcher_record(tmp_path):
    server = Server(tmp_path / "store")
    me = _me()
    watcher = w.Watcher(server.store, server.kind)
    _record(watcher, ProcessIdentity(me.pid, me.start_time + 1, me.exe))  # this pid, but not the process recorded
    result = w.stop_with(server)
    assert result["watcher"]["stale"] and not result["watcher"]["stopped"] and result["watcher"]["pids"] == []
    assert watcher.state() is None  # this test process is alive: nothing was signalled


def test_the_watcher_exits_once_its_server_is_gone(tmp_path):
    me = _me()
    gone = ProcessIdentity(me.pid, me.start_time + 1, me.exe)  # no process is this one any more
    watcher = w.Watcher(tmp_path / "store", "sleeper")
    _record(watcher, me)  # its own state: removed as it exits

    def never(repair: bool) -> dict[str, Any]:
        raise AssertionError("a watcher of a server that is gone probed it")

    assert w.run(never, watcher, gone) == 0
    assert watcher.state() is None and watcher.last()["exited"]


class Alive:
    """A server process that is there for `rounds` looks, then gone (the loop's own exit is tested above)."""

    pid = 1

    def __init__(self, rounds: int):
        self.rounds = rounds

    def current(self) -> bool:
        self.rounds -= 1
        return self.rounds >= 0


def test_a_bug_in_a_round_is_logged_and_the_watcher_goes_on(tmp_path, caplog):
    calls = []

    def buggy(repair: bool) -> dict[str, Any]:
        calls.append(repair)
        raise RuntimeError("a bug in a target's status")

    watcher = w.Watcher(tmp_path / "store", "sleeper")
    with caplog.at_level("INFO", logger=w.__name__):
        assert w.run(buggy, watcher, Alive(4), sleep=lambda s: None) == 0
    failed = [r for r in caplog.records if "a round of the watcher failed" in r.message]
    assert calls == [False] and len(failed) == 1 and failed[0].exc_info is not None
