"""The unit tier's rule, enforced: a unit test starts no `pack` subprocess, no interpreter, no shell and no server.

A Python audit hook sees every process this interpreter starts; while a unit test runs, starting one of those fails
the test with the command line (libraries may still run their own helpers, such as ctypes' `ldconfig -p`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

DENIED = {"bash", "sh", "java", "torchserve", "tritonserver", "kubectl", "torch-model-archiver"}
_guard = {"on": False}


def _program(args: tuple[Any, ...]) -> str:
    executable, argv = args[0], args[1]
    if executable:
        return os.fsdecode(executable)
    if isinstance(argv, (str, bytes)):
        return os.fsdecode(argv).split()[0] if argv.strip() else ""
    return os.fsdecode(argv[0]) if argv else ""


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _guard["on"]:
        return
    if event == "os.system":
        raise RuntimeError(f"a unit test ran os.system({args[0]!r}); move it to tests/integration")
    if event == "subprocess.Popen":
        program = _program(args)
        name = os.path.basename(program)
        if name in DENIED or name.startswith("python") or os.path.realpath(program) == os.path.realpath(sys.executable):
            raise RuntimeError(f"a unit test started {args[1]!r}; move it to tests/integration")


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def no_processes() -> Iterator[None]:
    _guard["on"] = True
    try:
        yield
    finally:
        _guard["on"] = False
