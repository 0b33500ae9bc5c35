"""The `pack` command line, two ways: in a subprocess as users and CI run it (integration tier), and in-process through
click's CliRunner (unit tier: the same command code, exit codes and error lines, without a new interpreter)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import ROOT

PACK = [sys.executable, "-m", "packager.cli"]


def run_pack(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the real `pack` command line in a subprocess (as users and CI do)."""
    return subprocess.run(
        [*PACK, *args], cwd=cwd or ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def pack_json(*args: str, **kw: Any) -> Any:
    """`pack ARGS --json` in a subprocess; it must exit 0; returns the parsed document."""
    proc = run_pack(*args, "--json", **kw)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(cmd: list[str], **kw: Any) -> subprocess.Popen[str]:
    """Popen for a child that a test will interrupt: SIGINT is reset to its default in the child first.

    A shell started in the background (`cmd &`, no job control) starts its children with SIGINT ignored, and an
    ignored signal stays ignored across exec: Python then installs no KeyboardInterrupt handler and the test's
    SIGINT would do nothing."""
    kw.setdefault("cwd", ROOT)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint, **kw)


def spawn_pack(*args: str, **kw: Any) -> subprocess.Popen[str]:
    """`pack ARGS` in a child process that SIGINT reaches (see `spawn`)."""
    return spawn([*PACK, *args], **kw)


def wait_for_stderr(proc: subprocess.Popen[str], marker: str, seconds: float = 120) -> str:
    """Read the child's stderr until a line holds `marker` (or it ends); returns what was read."""
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if marker in line or not line:
            break
    assert marker in seen, seen
    return seen


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def one_error_line(code: int, returncode: int, stderr: str) -> str:
    """The documented failure contract: exit `code`, exactly one `error: ...` line, no traceback."""
    assert returncode == code, (returncode, stderr[-2000:])
    errors = error_lines(stderr)
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]


@dataclass
class Invocation:
    """What an in-process `pack` call left: exit code, stdout (the result document), stderr (logs and errors)."""

    returncode: int
    stdout: str
    stderr: str
    exception: BaseException | None

    def json(self) -> Any:
        assert self.returncode == 0, self.stderr[-3000:]
        return json.loads(self.stdout)

    def error(self, code: int) -> str:
        return one_error_line(code, self.returncode, self.stderr)


def invoke(*args: str, env: dict[str, str] | None = None) -> Invocation:
    """Run `pack ARGS` in this process through click's CliRunner (no subprocess, no new interpreter)."""
    from click.testing import CliRunner

    from packager.cli import main

    saved = os.environ.get("PACK_DEBUG")  # `--debug` sets it for the exporters; it must not leak into later tests
    try:
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=True)
    finally:
        if saved is None:
            os.environ.pop("PACK_DEBUG", None)
        else:
            os.environ["PACK_DEBUG"] = saved
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug in the test or in pack's error handling, not an exit code
    return Invocation(result.exit_code, result.stdout, result.stderr, result.exception)


def command_named(name: str) -> Any:
    """The click command `pack NAME` runs (its module imported on the way, as the group does)."""
    import click

    from packager.cli import main

    command = main.get_command(click.Context(main), name)
    assert command is not None, name
    return command
