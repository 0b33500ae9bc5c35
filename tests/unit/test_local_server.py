"""The local-server base every server pack launches goes through (packager/serve/local.py): its state file, launch
(detached, marked, waited for, and undone on failure or Ctrl-C), stop (only what pack started, SIGKILL after the
grace period, one summary) and private links.

The "server" here is `sleep` (a real process, started by the base, with a health check that is the test's to set);
each test ends whatever it started. The real servers' own parts are tested in tests/integration."""

from __future__ import annotations

import ast
import importlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from packager.errors import EnvironmentProblem, UsageError
from packager.serve.local import LAUNCH_ENV, Launch, LocalServer, require_loopback
from packager.serve.processes import identity, pid_alive

TOKEN = "PACK_TEST_LOCAL_SERVER"


class Sleeper(LocalServer):
    """A server whose process is `sleep` and whose health the test decides."""

    kind = "sleeper"
    title = "sleeper"
    stop_grace = 0.3  # seconds before SIGKILL
    poll_s = 0.02

    def __init__(self, store: Path, ready: Any = True):
        super().__init__(store)
        self.ready = ready  # True, False, or an exception to raise from the health check
        self.token = uuid.uuid4().hex  # in the environment of every process a launch of this test starts
        self.probes = 0
        self.mute = False

    def plan(self, *command: str, detaches: bool = False) -> Launch:
        return Launch(
            list(command or ("sleep", "60")),
            "127.0.0.1",
            {"http": 8123},
            "http://127.0.0.1:8123",
            "install sleep",
            env={TOKEN: self.token},
            record={"own": "field"},
            detaches=detaches,
        )

    def healthy(self, state: dict[str, Any]) -> bool:
        self.probes += 1
        if isinstance(self.ready, BaseException):
            raise self.ready
        return bool(self.ready)

    def answers(self, state: dict[str, Any]) -> bool:
        return not self.mute

    def started_here(self) -> list[int]:
        """Live processes whose environment holds this test's token."""
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and f"{TOKEN}={self.token}".encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        return [pid for pid in found if pid_alive(pid)]


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[Sleeper]:
    server = Sleeper(tmp_path / "store")
    try:
        yield server
    finally:
        for pid in server.started_here():
            os.kill(pid, signal.SIGKILL)


def _gone(pids: list[int], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not any(pid_alive(p) for p in pids)


def _environ_after_exec(pid: int, seconds: float = 5.0) -> bytes:
    """The process's environment once it runs its own program: `ensure` returns as soon as the (test's) health check
    says ready, which can be before the child's exec, when /proc shows an empty or the parent's environment."""
    end = time.monotonic() + seconds
    while True:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        if f"{TOKEN}=".encode() in environ or time.monotonic() > end:
            return environ
        time.sleep(0.01)


def test_launch_records_the_process_detached_marked_and_logged_and_stop_ends_it(sleeper: Sleeper) -> None:
    state, launched = sleeper.ensure(sleeper.plan, 10)
    pid = state["pid"]
    ident = identity(pid)
    assert launched and ident is not None and state["process"] == ident.record()
    assert {k: state[k] for k in ("host", "ports", "url", "own")} == {
        "host": "127.0.0.1",
        "ports": {"http": 8123},
        "url": "http://127.0.0.1:8123",
        "own": "field",
    }
    assert sleeper.state() == state and not list(sleeper.root.glob("*.tmp"))  # written whole, by a rename
    assert os.getsid(pid) == pid  # a session of its own: a Ctrl-C at the terminal reaches pack, not the server
    environ = _environ_after_exec(pid)
    assert f"{LAUNCH_ENV}=".encode() in environ and f"{TOKEN}={sleeper.token}".encode() in environ
    assert "=== pack: sleep 60" in sleeper.log_path.read_text()
    assert sleeper.running() == state and sleeper.processes() == [pid]
    probes = sleeper.probes
    assert sleeper.ensure(sleeper.plan, 10) == (state, False) and sleeper.probes == probes  # reused, not launched
    result = sleeper.stop()
    assert result["stopped"] and result["pid"] == pid and result["pids"] == [pid] and not result["stale"]
    assert result["summary"] == f"stopped the sleeper of store {sleeper.store} (pid {pid}, http://127.0.0.1:8123)"
    assert _gone([pid]) and sleeper.state() is None and sleeper.running() is None


def test_a_server_that_does_not_answer_is_stopped_before_a_new_launch(sleeper: Sleeper) -> None:
    first, _ = sleeper.ensure(sleeper.plan, 10)
    sleeper.mute = True  # alive, but (say) another server holds its port
    assert sleeper.running() is None and sleeper.alive() is not None
    second, launched = sleeper.ensure(sleeper.plan, 10)
    assert launched and second["pid"] != first["pid"] and _gone([first["pid"]])
    sleeper.stop()


@pytest.mark.parametrize(
    ("command", "detaches", "message"),
    [
        (("/nonexistent/server",), False, "cannot run /nonexistent/server: No such file or directory; install sleep"),
        (("false",), False, "sleeper exited with code 1 while starting"),
        (("echo", "bind: Address already in use"), False, "sleeper could not bind its ports (8123) on 127.0.0.1"),
        (("false",), True, "`false` failed with exit code 1"),
    ],
)
def test_a_launch_that_fails_is_one_problem_and_leaves_no_state(
    sleeper: Sleeper, command: tuple[str, ...], detaches: bool, message: str
) -> None:
    sleeper.ready = False  # the server never answers: what ends the launch is its exit or its log
    with pytest.raises(EnvironmentProblem) as caught:
        sleeper.launch(lambda: sleeper.plan(*command, detaches=detaches), 10)
    assert message in caught.value.line()
    assert sleeper.state() is None and sleeper.started_here() == []


def test_no_answer_in_time_ends_what_the_launch_started(sleeper: Sleeper) -> None:
    sleeper.ready = False
    target = sleeper.root / "a folder"
    target.mkdir(parents=True)

    def plan() -> Launch:
        sleeper.private_link("data", target, lambda path: " " not in path, ("x", "y"))
        return sleeper.plan()

    with pytest.raises(EnvironmentProblem, match="sleeper did not become ready within 0 s; see its log .*server.log"):
        sleeper.launch(plan, 0.2)
    assert sleeper.probes > 0 and sleeper.state() is None and _gone(sleeper.started_here())
    assert sleeper.private_path("data") is None and target.is_dir()  # the launch's link is gone, not the folder


def test_ctrl_c_while_waiting_ends_what_the_launch_started_and_goes_on_up(sleeper: Sleeper) -> None:
    sleeper.ready = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        sleeper.launch(sleeper.plan, 10)
    assert sleeper.state() is None and sleeper.started_here() == []


def test_a_detached_server_is_found_through_the_launch_marker_when_its_launch_fails(sleeper: Sleeper) -> None:
    """`setsid -f` starts `sleep` in the background and exits 0, as `torchserve --start` does: the launch has no
    child to end, only the marker in the server's environment."""
    sleeper.ready = False
    with pytest.raises(EnvironmentProblem, match="did not become ready"):
        sleeper.launch(lambda: sleeper.plan("setsid", "-f", "sleep", "60", detaches=True), 0.2)
    assert _gone(sleeper.started_here())


def _own_sleep(ignore_term: bool) -> subprocess.Popen[bytes]:
    def setup() -> None:
        if ignore_term:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    return subprocess.Popen(["sleep", "60"], start_new_session=True, preexec_fn=setup)


def test_stop_kills_what_ignores_sigterm_after_the_grace_period(sleeper: Sleeper) -> None:
    proc = _own_sleep(ignore_term=True)
    try:
        time.sleep(0.1)
        ident = identity(proc.pid)
        assert ident is not None
        sleeper.save({"pid": proc.pid, "process": ident.record(), "url": "http://127.0.0.1:1"})
        t0 = time.monotonic()
        result = sleeper.stop()
        assert result["stopped"] and time.monotonic() - t0 < 5
        assert proc.wait(5) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()


def test_stop_of_a_stale_state_signals_nothing_and_says_why(sleeper: Sleeper, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = _own_sleep(ignore_term=False)
    proc.kill()
    proc.wait()  # a pid that no process has now
    sent: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append(pid))
    me = identity(os.getpid())
    assert me is not None
    for process in ({**me.record(), "start_time": me.start_time - 1}, {**me.record(), "exe": "/bin/other"}, None):
        sleeper.save({"pid": me.pid, "process": process})
        result = sleeper.stop()
        assert result["stale"] and not result["stopped"] and "nothing was signalled" in result["summary"]
        assert sleeper.state() is None
    sleeper.save({"pid": proc.pid, "process": {"pid": proc.pid, "start_time": 1, "exe": "/bin/sleep"}})
    result = sleeper.stop()
    assert not result["stale"] and result["summary"].endswith(f"(pid {proc.pid}) was not running; state cleared")
    assert sleeper.stop()["summary"] == f"no sleeper launched by pack is running for store {sleeper.store}"
    assert sent == []


def test_state_reads_back_nothing_from_a_missing_or_broken_file(sleeper: Sleeper) -> None:
    assert sleeper.state() is None and sleeper.running() is None and sleeper.processes() == []
    sleeper.root.mkdir(parents=True)
    for text in ("{", "[1, 2]", ""):
        sleeper.state_file.write_text(text)
        assert sleeper.state() is None and sleeper.alive() is None


def test_a_private_link_only_where_the_path_does_not_fit_and_forget_removes_only_the_link(sleeper: Sleeper) -> None:
    target = sleeper.root / "deep folder"
    target.mkdir(parents=True)
    (target / "kept").write_text("x")
    problem = ("no plain path", "use another store")
    assert sleeper.private_link("data", target, lambda path: True, problem) == target
    link = sleeper.private_link("data", target, lambda path: " " not in path, problem)
    assert link.is_symlink() and link.resolve() == target.resolve() and str(link).startswith("/tmp/pack-sleeper-")
    assert oct(link.parent.stat().st_mode & 0o777) == "0o700" and sleeper.private_path("data") == link
    assert sleeper.private_link("data", target, lambda path: " " not in path, problem) == link  # reused
    sleeper.forget()
    assert not link.exists() and not link.parent.exists() and sleeper.private_path("data") is None
    assert (target / "kept").read_text() == "x"
    with pytest.raises(EnvironmentProblem, match="no plain path"):
        sleeper.private_link("data", target, lambda path: False, problem)
    assert sleeper.private_path("data") is None


def test_what_a_taken_port_looks_like_and_loopback_only() -> None:
    from packager.targets.triton.server import TritonServer

    assert LocalServer.bind_failed(Sleeper(Path("s")), "java.net.BindException: x")
    assert not LocalServer.bind_failed(Sleeper(Path("s")), "Started server process")
    assert TritonServer(Path("s")).bind_failed("failed to start HTTP service on port 8000")
    require_loopback("127.0.0.1", "x")
    with pytest.raises(UsageError, match="loopback only, not 0.0.0.0"):
        require_loopback("0.0.0.0", "x")


def test_every_server_a_target_launches_is_a_local_server_that_starts_and_signals_nothing_itself() -> None:
    """One base for every server: a target's server module holds its own parts only (no process of its own)."""
    servers = sorted((Path(__file__).resolve().parents[2] / "packager" / "targets").glob("*/server.py"))
    assert len(servers) >= 3
    for path in servers:
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        called = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not imported & {"subprocess", "signal"} and not called & {"kill", "killpg", "Popen"}, path
        module = importlib.import_module(f"packager.targets.{path.parent.name}.server")
        assert any(isinstance(c, type) and issubclass(c, LocalServer) and c is not LocalServer for c in vars(module).values())
