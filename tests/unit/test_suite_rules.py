"""The suite's own rules: every test carries its tier's marker, a unit test can start no process and export no model
(also when the code under test catches the refusal), the unit tier's build is made without an exporter, no module
name is in both tiers, and a deprecation is an error unless it is one pack uses on purpose, named where it is used."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from packager.console import ON_PURPOSE, captured, on_purpose
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
    late_exporter = importlib.import_module("late_exporter")

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


# ---------------------------------------------------------------- deprecations are errors, but the named ones


@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning, FutureWarning])
def test_a_deprecation_is_an_error(category: type[Warning]) -> None:
    with pytest.raises(category):
        warnings.warn("this API goes away", category, stacklevel=1)


TORCH_SAYS = {  # what torch 2.14 warns for each API pack uses on purpose, and the module the warning is attributed to
    "torch.jit.trace": (
        "`torch.jit.trace` is deprecated. Please switch to `torch.compile` or `torch.export`.",
        "torch.jit._trace",
    ),
    "torch.jit.script": (
        "`torch.jit.script` is deprecated. Please switch to `torch.compile` or `torch.export`.",
        "torch.jit._script",
    ),
    "torch.jit.save": ("`torch.jit.save` is deprecated. Please switch to `torch.export`.", "torch.jit._serialization"),
    "torch.jit.load": ("`torch.jit.load` is deprecated. Please switch to `torch.export`.", "torch.jit._serialization"),
    "torch.onnx.export(dynamo=False)": (
        "You are using the legacy TorchScript-based ONNX export. Starting in PyTorch 2.9, ...",
        "packager.export.onnx",  # the caller: torch attributes it one frame up
    ),
    "torch.onnx.export(dynamo=False) internals": (
        "The feature will be removed. Please remove usage of this function",
        "torch.onnx._internal.torchscript_exporter.utils",
    ),
}


def _torch_says(api: str) -> None:
    message, module = TORCH_SAYS[api]
    warnings.warn_explicit(message, ON_PURPOSE[api][0], "torch_source.py", 1, module=module)


def test_every_api_used_on_purpose_is_tried() -> None:
    assert set(TORCH_SAYS) == set(ON_PURPOSE)


@pytest.mark.parametrize("api", list(TORCH_SAYS))
def test_on_purpose_silences_the_named_deprecation_and_nothing_else(api: str) -> None:
    with pytest.raises(ON_PURPOSE[api][0]):
        _torch_says(api)  # unnamed: an error
    with on_purpose(api):
        _torch_says(api)  # named: silent
        others = [a for a in ON_PURPOSE if a != api and ON_PURPOSE[a][1] != ON_PURPOSE[api][1]]
        with pytest.raises(ON_PURPOSE[others[0]][0]):
            _torch_says(others[0])  # another deprecated API is not silenced by this name
        with pytest.raises(DeprecationWarning):
            warnings.warn_explicit("`torch.onnx.dynamo_export` is deprecated", DeprecationWarning, "x.py", 1, module="torch.onnx")


def test_pack_captures_exporter_chatter_without_hiding_deprecations() -> None:
    """captured() once silenced every Python warning while an exporter ran, so no deprecation of an exporter could
    show: now only the file descriptor is captured, and the filters stand."""
    with captured(), pytest.raises(FutureWarning):
        warnings.warn("`torch.export.export` changes its default", FutureWarning, stacklevel=1)


def test_the_servers_name_the_same_torchscript_load() -> None:
    """handlers/pack_runtime.py cannot import pack: its filter for loading TorchScript is pack's, held equal here."""
    from packager.serve.tasks import runtime_on_path

    runtime_on_path()
    import pack_runtime

    assert pack_runtime.TORCHSCRIPT_LOAD_DEPRECATION == ON_PURPOSE["torch.jit.load"]


def names_in_both_tiers(tests: Path) -> set[str]:
    def modules(tier: str) -> set[str]:
        return {p.name for p in (tests / tier).glob("test_*.py")}

    return modules("unit") & modules("integration")


def test_no_module_name_is_in_both_tiers(tmp_path: Path) -> None:
    assert names_in_both_tiers(Path(__file__).resolve().parents[1]) == set()
    for tier in ("unit", "integration"):
        (tmp_path / tier).mkdir()
        (tmp_path / tier / "test_same.py").write_text("")
    assert names_in_both_tiers(tmp_path) == {"test_same.py"}  # the check sees one


def test_captured_keeps_both_file_descriptors_off_the_terminal(capfd: pytest.CaptureFixture[str]) -> None:
    """The legacy ONNX exporter prints its whole graph on file descriptor 1 when it fails (issue 24): captured()
    holds fd 1 as well as fd 2, so neither reaches the terminal without --debug."""
    import os

    with captured():
        os.write(1, b"graph(%x : Float(*, 3)) on fd 1\n")
        os.write(2, b"[W:onnxruntime:, graph.cc] on fd 2\n")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
