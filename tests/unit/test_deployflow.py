"""The deploy skeleton's decisions (packager/serve/deployflow.py), in-process with recording steps: the failures a
real server cannot be made to produce on demand (a rollback that fails, a commit that fails, a server that dies during
the smoke test, Ctrl-C at each phase). The server tests (test_*_server.py, test_reliability_*.py) cover the same
rules on real TorchServe and tritonserver processes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from packager.errors import DeployFailed, EnvironmentProblem, UsageError
from packager.serve.deployflow import Steps, run
from packager.serve.http import ApiError, Unreachable
from tests.helpers.reports import make_report


class Recorder(Steps):
    """Steps that record each call; `fail` maps a step name to what it raises (or, for smoke, the failing doc)."""

    server = "FakeServer"

    def __init__(
        self, fail: dict[str, Any] | None = None, launched: bool = False, gone: bool = False, problems: list[str] | None = None
    ):
        super().__init__(Path("/nowhere"), make_report(name="m", version="2"), SimpleNamespace(timeout=5.0))
        self.fail: dict[str, Any] = fail or {}
        self.calls: list[str] = []
        self.start_launched, self.gone, self.problems = launched, gone, problems or []

    def _step(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail and name != "smoke":
            raise self.fail[name]

    def prepare(self) -> None:
        self.stack.callback(lambda: self.calls.append("closed"))
        self._step("prepare")

    def connect(self) -> None:
        self.launched = self.start_launched
        self._step("connect")

    def observe(self) -> None:
        self.doing = "reading what serves"
        self._step("observe")

    def stage(self) -> None:
        self._step("stage")

    def load(self) -> None:
        self.doing = "registering m v2"
        self._step("load")

    def smoke(self) -> dict[str, Any]:
        self._step("smoke")
        if "smoke" in self.fail:
            if isinstance(self.fail["smoke"], BaseException):
                raise self.fail["smoke"]
            return {"passed": False, "reason": self.fail["smoke"]}
        return {"passed": True}

    def commit(self) -> None:
        self._step("commit")

    def result(self, smoke: dict[str, Any]) -> dict[str, Any]:
        return {"smoke_test": smoke}

    def undo_files(self) -> None:
        self.calls.append("undo_files")

    def undo_server(self, interrupted: bool) -> list[str]:
        self.calls.append("undo_server(interrupted)" if interrupted else "undo_server")
        if isinstance(self.problems, BaseException):
            raise self.problems
        return self.problems

    def stop_server(self) -> None:
        self.calls.append("stop_server")

    def watch(self) -> None:
        self.calls.append("watch")

    def server_gone(self) -> bool:
        return self.gone

    def log_hint(self) -> str:
        return "see the log"

    def still_serving(self) -> str:
        return "v1 keeps serving"


def _after(steps: Recorder, name: str) -> list[str]:
    return steps.calls[steps.calls.index(name) + 1 :]


def test_success_commits_and_undoes_nothing():
    steps = Recorder()
    assert run(steps) == {"smoke_test": {"passed": True}}
    # the watcher is made sure of once the deploy succeeded (every failure path below lists no "watch")
    assert steps.calls == ["prepare", "connect", "observe", "stage", "load", "smoke", "commit", "watch", "closed"]


def test_smoke_failure_rolls_back_and_says_what_serves():
    steps = Recorder(fail={"smoke": "output 'logits': max abs error 1"})
    with pytest.raises(DeployFailed) as info:
        run(steps)
    assert info.value.line() == "smoke test failed on m v2: output 'logits': max abs error 1; v1 keeps serving; see the log"
    assert _after(steps, "smoke") == ["undo_files", "undo_server", "closed"]  # files first: a reload needs them back


def test_failure_before_loading_undoes_only_files_and_keeps_its_message():
    steps = Recorder(fail={"stage": UsageError("archive does not match report.json", "pack archive --force")})
    with pytest.raises(UsageError) as info:
        run(steps)
    assert info.value.exit_code == 2 and info.value.line() == "archive does not match report.json; pack archive --force"
    assert _after(steps, "stage") == ["undo_files", "closed"]


def test_http_failure_in_a_step_is_exit_4_after_the_rollback():
    steps = Recorder(fail={"load": ApiError("FakeServer", 400, "bad archive", "http://127.0.0.1:1/models")})
    with pytest.raises(DeployFailed) as info:
        run(steps)
    assert info.value.line() == "registering m v2: FakeServer answered HTTP 400: bad archive; v1 keeps serving; see the log"
    assert _after(steps, "load") == ["undo_files", "undo_server", "closed"]
    steps = Recorder(fail={"load": Unreachable("FakeServer", "http://127.0.0.1:1/models", "timed out", timeout=5)})
    with pytest.raises(DeployFailed, match="no answer within 5 s.*v1 keeps serving") as info:
        run(steps)
    assert info.value.hint.startswith("raise --timeout")


def test_own_error_codes_survive_the_rollback():
    """A backend the server lacks stays exit 5 (environment), with what serves now."""
    steps = Recorder(fail={"load": EnvironmentProblem("this server has no onnxruntime backend", "deploy with --backend python")})
    with pytest.raises(EnvironmentProblem) as info:
        run(steps)
    assert info.value.line() == "this server has no onnxruntime backend; v1 keeps serving; deploy with --backend python"


def test_a_server_that_died_is_said_so_and_not_rolled_back():
    steps = Recorder(fail={"load": Unreachable("FakeServer", "http://127.0.0.1:1/models", "Connection reset by peer")}, gone=True)
    with pytest.raises(DeployFailed) as info:
        run(steps)
    assert (
        info.value.line()
        == "FakeServer stopped while registering m v2 (Connection reset by peer); see the log; `pack deploy` starts a new one"
    )
    assert _after(steps, "load") == ["undo_files", "closed"]  # its files are removed; no calls to a dead server
    steps = Recorder(fail={"smoke": "no answer to the sample request"}, gone=True)
    with pytest.raises(DeployFailed) as info:
        run(steps)
    assert info.value.line().endswith(
        "no answer to the sample request; FakeServer stopped meanwhile; see the log; `pack deploy` starts a new one"
    )
    assert "undo_server" not in steps.calls


def test_a_rollback_that_fails_is_reported_instead_of_what_serves():
    steps = Recorder(fail={"smoke": "wrong numbers"}, problems=["could not reload previous m: HTTP 500"])
    with pytest.raises(DeployFailed) as info:
        run(steps)
    assert info.value.message == "smoke test failed on m v2: wrong numbers; could not reload previous m: HTTP 500"
    steps = Recorder(fail={"smoke": "wrong numbers"}, problems=Unreachable("FakeServer", "http://127.0.0.1:1/x", "refused"))
    with pytest.raises(DeployFailed, match="wrong numbers; could not undo on FakeServer: no answer from FakeServer"):
        run(steps)


def test_a_commit_that_fails_rolls_back():
    steps = Recorder(fail={"commit": ApiError("FakeServer", 500, "cannot set default", "http://127.0.0.1:1/x")})
    with pytest.raises(DeployFailed, match="cannot set default; v1 keeps serving"):
        run(steps)
    assert _after(steps, "commit") == ["undo_files", "undo_server", "closed"]


def test_a_bug_rolls_back_and_stays_a_bug():
    steps = Recorder(fail={"load": RuntimeError("a bug")})
    with pytest.raises(RuntimeError, match="a bug"):
        run(steps)
    assert _after(steps, "load") == ["undo_files", "undo_server", "closed"]


def test_reading_the_server_before_staging_is_exit_5_and_undoes_nothing():
    steps = Recorder(fail={"observe": ApiError("FakeServer", 400, "explicit model control is off", "http://127.0.0.1:1/x")})
    with pytest.raises(EnvironmentProblem, match="^reading what serves: FakeServer answered HTTP 400"):
        run(steps)
    assert _after(steps, "observe") == ["closed"]


@pytest.mark.parametrize(
    "where, launched, expected",
    [
        ("load", False, ["undo_files", "undo_server(interrupted)", "closed"]),  # remove the half-registered version
        ("load", True, ["undo_files", "stop_server", "closed"]),  # a server this command started is stopped
        ("smoke", False, ["undo_files", "undo_server(interrupted)", "closed"]),
        ("stage", False, ["undo_files", "closed"]),  # nothing reached the server yet
        ("stage", True, ["undo_files", "stop_server", "closed"]),
        ("observe", True, ["stop_server", "closed"]),
        ("observe", False, ["closed"]),
    ],
)
def test_ctrl_c(where, launched, expected):
    steps = Recorder(fail={where: KeyboardInterrupt()}, launched=launched)
    with pytest.raises(KeyboardInterrupt):
        run(steps)
    assert _after(steps, where) == expected
