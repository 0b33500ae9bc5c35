"""The suite's own rules: every test carries its tier's marker, a unit test can start no process and export no model
(also when the code under test catches the refusal), and the unit tier's build is made without an exporter."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from tests.helpers import unit_guard
from tests.helpers.unit_guard import refusal_expected


def test_unit_tests_carry_the_unit_marker(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("integration") is None


@pytest.mark.parametrize(
    "cmd",
    [[sys.executable, "-m", "packager.cli", "models"], ["bash", "-c", "true"], ["tritonserver", "--help"], "java -version"],
)
def test_a_unit_test_cannot_start_pack_a_shell_or_a_server(cmd: list[str] | str) -> None:
    with refusal_expected():
        subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True)


def test_nor_run_a_shell_command() -> None:
    with refusal_expected():
        os.system("true")


def _tiny_module() -> tuple[Any, Any]:
    import torch

    return torch.nn.Linear(3, 2).eval(), torch.zeros(1, 3)


@pytest.mark.parametrize("exporter", ["torch.jit.trace", "torch.jit.script", "torch.export.export", "torch.onnx.export"])
def test_a_unit_test_cannot_export(exporter: str, tmp_path: Path) -> None:
    import torch

    module, example = _tiny_module()
    calls: dict[str, Callable[[], object]] = {
        "torch.jit.trace": lambda: torch.jit.trace(module, example),
        "torch.jit.script": lambda: torch.jit.script(module),
        "torch.export.export": lambda: torch.export.export(module, (example,)),
        "torch.onnx.export": lambda: torch.onnx.export(module, (example,), str(tmp_path / "m.onnx"), dynamo=False),
    }
    with refusal_expected():
        calls[exporter]()
    assert not (tmp_path / "m.onnx").exists()


def test_aoti_is_refused_where_torch_defines_it() -> None:
    import torch._inductor

    with refusal_expected():
        torch._inductor.aoti_compile_and_package(cast(Any, None))


def test_a_refusal_the_code_catches_still_fails_the_test() -> None:
    """pack's exporters catch every error of an export and record a failed format: the refusal is remembered."""
    import torch

    module, example = _tiny_module()
    try:
        torch.jit.trace(module, example)
    except RuntimeError:
        pass  # as an exporter's fallback would
    with pytest.raises(pytest.fail.Exception, match="torch.jit.trace.*move it to tests/integration"):
        unit_guard.fail_on_refusals()


def test_a_build_through_pack_is_refused(tmp_path: Path) -> None:
    from packager.build.pipeline import build
    from packager.build.plan import resolve

    with refusal_expected():
        build(resolve("tiny", None, {"device": "cpu", "formats": "torchscript"}), tmp_path, force=False, iterations=0)


def test_exporters_imported_later_are_guarded_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The import hook wraps a module's exporters when it is first imported (torch.onnx and torch._inductor are not
    imported with torch): shown on a module of this test's own."""
    (tmp_path / "late_exporter.py").write_text("def export():\n    return 'exported'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(unit_guard.EXPORTERS, "late_exporter", ("export",))
    monkeypatch.delitem(sys.modules, "late_exporter", raising=False)
    import late_exporter  # type: ignore[import-not-found]  # written above

    with refusal_expected():
        late_exporter.export()
    unit_guard.state["on"] = False
    try:
        assert late_exporter.export() == "exported"  # off the guard (an integration test) it calls straight through
    finally:
        unit_guard.state["on"] = True


def test_the_unit_build_is_made_without_an_exporter(built: Callable[[str], Path]) -> None:
    from packager.report.build_report import BuildReport

    report = BuildReport.load(built("tiny"))
    assert report.artifacts == {"onnx": "model.onnx"} and report.export["onnx"]["exporter"] == "onnx.helper"
    assert report.validation["onnx"]["passed"] and set(report.targets) >= {"torchserve", "triton"}
    with refusal_expected():
        built("resnet18")
