"""The command line in-process (click's CliRunner): listing models, usage errors and their hints, the global flags,
and how console.run turns failures into exit codes and one line. (In real subprocesses: tests/integration/test_cli_process.py.)"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest

from packager import __version__
from packager.console import Terminated
from tests.helpers.cli import invoke


def test_models_lists_builtins_as_table_and_json() -> None:
    result = invoke("models")
    assert result.returncode == 0
    for name in ("yolov8n", "resnet18", "resnet50", "mobilenet_v3_small", "tiny"):
        assert name in result.stdout
    assert result.stdout.splitlines()[0].split() == ["name", "task", "input", "description"]
    by_name = {m["name"]: m for m in invoke("models", "--json").json()}
    assert by_name["yolov8n"]["task"] == "object-detection"
    assert by_name["yolov8n"]["inputs"][0]["shape"] == [1, 3, 640, 640]
    assert by_name["resnet50"]["outputs"] == ["logits"]


def test_json_and_debug_may_come_before_the_command() -> None:
    assert [m["name"] for m in invoke("--json", "models").json()] == [m["name"] for m in invoke("models", "--json").json()]


def test_version_option() -> None:
    result = invoke("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"pack, version {__version__}"


def test_unknown_model_suggests_near_names() -> None:
    line = invoke("build", "resnet5").error(2)
    assert "unknown model 'resnet5'" in line and "resnet50" in line


def test_nothing_to_build_is_a_usage_error() -> None:
    line = invoke("build").error(2)
    assert "nothing to build" in line and "--spec" in line


def test_bad_input_option_and_version() -> None:
    assert "not numbers joined by x" in invoke("build", "tiny", "--input", "input:1xAx32").error(2)
    assert "positive integer" in invoke("build", "tiny", "--version", "v2").error(2)
    assert "not a comma-separated list of integers" in invoke("build", "tiny", "--batch-sizes", "1,a").error(2)


def test_deploy_without_build_names_the_fix(tmp_path: Path) -> None:
    line = invoke("deploy", "tiny", "--store", str(tmp_path)).error(2)
    assert "no build of 'tiny'" in line and "pack build tiny" in line


def test_store_comes_from_the_environment(tmp_path: Path) -> None:
    line = invoke("deploy", "tiny", env={"PACK_STORE": str(tmp_path / "elsewhere")}).error(2)
    assert str(tmp_path / "elsewhere") in line


# ------------------------------------------------------------------ console.run: failures -> exit code and one line


@pytest.mark.parametrize(
    "raised, code, expected",
    [
        (RuntimeError("boom\nsecond line"), 1, "error: internal error RuntimeError: boom (rerun with --debug"),
        (KeyboardInterrupt(), 130, "error: interrupted; nothing half-written was kept"),
        (Terminated(), 143, "error: terminated (SIGTERM); nothing half-written was kept"),
        (
            OSError(errno.ENOSPC, "No space left on device", "/s/x"),
            5,
            "error: disk full while writing output (No space left on device)",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/s/x"),
            2,
            "error: cannot write /s/x: Permission denied; choose a writable",
        ),
    ],
)
def test_failures_become_exit_codes_and_one_line(
    monkeypatch: pytest.MonkeyPatch, raised: BaseException, code: int, expected: str
) -> None:
    def fail() -> None:
        raise raised

    monkeypatch.setattr("packager.registry.list_models", fail)
    assert invoke("models").error(code).startswith(expected)


def test_sigterm_takes_the_ctrl_c_path_in_every_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """console.run turns a real SIGTERM into the Ctrl-C path (exit 143), for any command's body."""
    import os
    import signal
    import time

    def terminated() -> None:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            raise RuntimeError("SIGTERM would end the process with no cleanup")  # never signal the test runner
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    monkeypatch.setattr("packager.registry.list_models", terminated)
    before = signal.getsignal(signal.SIGTERM)
    assert invoke("models").error(143).startswith("error: terminated (SIGTERM)")
    assert signal.getsignal(signal.SIGTERM) == before  # put back after the command


def test_debug_prints_the_traceback_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("packager.registry.list_models", fail)
    result = invoke("models", "--debug")
    assert result.returncode == 1 and "Traceback" in result.stderr and "RuntimeError: boom" in result.stderr


def test_pack_error_hint_follows_the_message() -> None:
    from packager.errors import EXIT_VALIDATION, UsageError, ValidationFailed

    assert UsageError("bad thing.", "do this").line() == "bad thing; do this"
    assert UsageError("bad thing").line() == "bad thing"
    assert ValidationFailed("x").exit_code == EXIT_VALIDATION == 3


def test_log_levels_mean_something(built: Callable[[str], Path]) -> None:
    """-v adds pack's own details (`pack: debug: ...`), the default shows its decisions and progress, -q only
    warnings; a warning says so."""
    import logging

    build = str(built("tiny"))
    verbose = invoke("verify", build, "--parity", "-v")
    default = invoke("verify", build, "--parity")
    quiet = invoke("verify", build, "--parity", "-q")
    assert verbose.returncode == default.returncode == quiet.returncode == 0
    assert "pack: debug: re-running the samples through onnx" in verbose.stderr
    assert "debug:" not in default.stderr and quiet.stderr == ""
    from packager.console import _Lines

    record = logging.LogRecord("packager.x", logging.WARNING, __file__, 1, "something to know", None, None)
    assert _Lines().format(record) == "pack: warning: something to know"
