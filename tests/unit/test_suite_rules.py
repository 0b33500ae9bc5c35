"""The suite's own rules: every test carries its tier's marker, and a unit test cannot start a process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_unit_tests_carry_the_unit_marker(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("integration") is None


@pytest.mark.parametrize(
    "cmd",
    [[sys.executable, "-m", "packager.cli", "models"], ["bash", "-c", "true"], ["tritonserver", "--help"], "java -version"],
)
def test_a_unit_test_cannot_start_pack_a_shell_or_a_server(cmd: list[str] | str) -> None:
    with pytest.raises(RuntimeError, match="move it to tests/integration"):
        subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True)


def test_nor_run_a_shell_command() -> None:
    with pytest.raises(RuntimeError, match="move it to tests/integration"):
        os.system("true")
