"""The one registry helper (packager/registry.py's `Registry`) and the name tables derived from the five registries on
it (models, formats, variant kinds, serving tasks, targets): click choices and help, the spec schema's enums, the
plan's defaults, and the serving runtime's own copy of the format table, which cannot import pack."""

from __future__ import annotations

import ast
import functools
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest

from packager.build import spec
from packager.errors import UsageError
from packager.export import DEFAULT_FORMATS, FILES, FORMATS, SERVE_PREFERENCE, Format
from packager.registry import MODELS, Registry
from packager.serve.tasks import TASKS, read_runtime
from packager.targets.base import TARGETS
from packager.variants import VARIANTS
from tests.helpers.cli import command_named

PACKAGE = Path(__file__).resolve().parents[2] / "packager"


@dataclass(frozen=True)
class Item:
    name: str


def _filled(*names: str, **kw: Any) -> Registry[Item]:
    registry: Registry[Item] = Registry("widget", **kw)
    for name in names:
        registry.register(Item(name))
    return registry


# ---------------------------------------------------------------- the helper


def test_names_come_in_the_declared_order_then_in_registration_order() -> None:
    registry = _filled("gamma", "alpha", "delta", "beta", order=("beta", "alpha", "omega"))
    assert registry.names() == ["beta", "alpha", "gamma", "delta"]
    assert [e.name for e in registry.entries()] == registry.names()
    assert "gamma" in registry and "omega" not in registry
    assert registry.find("omega") is None and registry.get("delta") == Item("delta")


def test_a_name_registered_twice_is_a_bug_in_pack() -> None:
    registry = _filled("alpha")
    with pytest.raises(ValueError, match="widget 'alpha' is registered twice"):
        registry.register(Item("alpha"))


def test_an_unknown_name_is_one_line_naming_the_near_names() -> None:
    registry = _filled("triton", "torchserve", "fastapi")
    with pytest.raises(UsageError) as near:
        registry.get("tritn")
    assert near.value.line() == "unknown widget 'tritn'; did you mean triton?"
    with pytest.raises(UsageError) as far:
        registry.get("zzz")
    assert far.value.line() == "unknown widget 'zzz'; use one of triton, torchserve, fastapi"
    assert registry.unknown("al", " for --x", also=("all",)).line() == "unknown widget 'al' for --x; did you mean all?"
    told = _filled("tiny", see="run `pack models`").unknown("zzz")
    assert told.line() == "unknown widget 'zzz'; run `pack models`"


def test_entries_in_other_modules_load_at_the_first_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "probe_host.py").write_text(
        "from packager.registry import Registry\nREG = Registry('probe', load=('probe_entries',))\n"
    )
    (tmp_path / "probe_entries.py").write_text(
        "from types import SimpleNamespace\nfrom probe_host import REG\nREG.register(SimpleNamespace(name='one'))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("probe_host", "probe_entries"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    host = importlib.import_module("probe_host")
    assert "probe_entries" not in sys.modules  # creating the registry loads nothing
    assert host.REG.names() == ["one"] and "probe_entries" in sys.modules


def test_a_module_that_fails_to_load_fails_every_lookup() -> None:
    """Not an empty registry after the first failure: the import is tried again and its error shown again."""
    registry: Registry[Item] = Registry("widget", load=("packager.no_such_module",))
    for _ in range(2):
        with pytest.raises(ModuleNotFoundError):
            registry.names()


# ---------------------------------------------------------------- the five registries


def test_the_five_registries() -> None:
    assert FORMATS.names() == ["torchscript", "onnx", "pt2", "aoti"]  # the report order
    assert VARIANTS.names() == ["ort-optimized", "slim", "int8-dynamic", "int8-static", "fp16"]
    assert TARGETS.names() == ["triton", "torchserve", "fastapi", "kserve"]
    assert TASKS.names() == ["image-classification", "yolo-detection", "generic"]
    assert set(MODELS.names()) >= {"tiny", "resnet18", "resnet50", "mobilenet_v3_small", "yolov8n"}
    with pytest.raises(UsageError) as unknown:
        TARGETS.get("tritn")
    assert unknown.value.line() == "unknown target 'tritn'; did you mean triton?"
    with pytest.raises(UsageError, match="unknown serving task"):
        TASKS.get("segmentation")


def test_every_format_has_its_module() -> None:
    """A format's exporter and loader are found by its name when it is first built (packager/export/<name>.py)."""
    for fmt in FORMATS.entries():
        module = importlib.import_module(f"packager.export.{fmt.name}")
        assert callable(module.export) and callable(module.load), fmt.name


def test_the_plan_defaults_are_the_entries_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DEFAULT_FORMATS == ("torchscript", "onnx", "pt2")
    assert SERVE_PREFERENCE == ("onnx", "torchscript", "aoti", "pt2")
    assert FILES == {"torchscript": "model.pt", "onnx": "model.onnx", "pt2": "model.pt2", "aoti": "model.aoti.pt2"}
    assert [f.name for f in FORMATS.entries() if f.built_by_default] == list(DEFAULT_FORMATS)
    assert sorted(FORMATS.entries(), key=lambda f: f.serve_rank) == [FORMATS.get(n) for n in SERVE_PREFERENCE]
    from packager.build.plan import parse_formats

    with pytest.raises(UsageError, match="unknown format 'tflite' in --formats"):
        parse_formats("onnx,tflite")
    monkeypatch.setitem(FORMATS._entries, "tflite", Format("tflite", "model.tflite", "a format to come", serve_rank=4))
    assert parse_formats("onnx,tflite") == ("onnx", "tflite")  # --formats takes what the registry holds


# ---------------------------------------------------------------- the tables derived from them


def _option(command: str, flag: str) -> click.Option:
    found = [p for p in command_named(command).params if isinstance(p, click.Option) and flag in p.opts]
    assert len(found) == 1, (command, flag)
    return found[0]


def test_the_command_line_takes_its_choices_from_the_registries() -> None:
    for command in ("deploy", "archive", "repo", "bench"):
        kind = _option(command, "--format").type
        assert isinstance(kind, click.Choice) and list(kind.choices) == FORMATS.names(), command
    for command in ("deploy", "status", "undeploy", "stop"):
        kind = _option(command, "--target").type
        assert isinstance(kind, click.Choice) and list(kind.choices) == TARGETS.names(), command
    for command in ("build", "optimize"):
        assert ",".join(VARIANTS.names()) in str(_option(command, "--variants").help), command
    assert ",".join(FORMATS.names()) in str(_option("build", "--formats").help)


def test_the_shared_options_follow_the_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    from packager.cli.app import format_option, variant_options
    from packager.variants import VariantKind

    monkeypatch.setitem(FORMATS._entries, "tflite", Format("tflite", "model.tflite", "a format to come", serve_rank=4))
    monkeypatch.setitem(VARIANTS._entries, "int4", VariantKind("int4", "a kind to come", lambda ctx: {}))
    command = click.Command("x", callback=lambda **kw: None)
    variant_options(format_option("which export")(command))  # each adds its options to the command
    options = {p.opts[0]: p for p in command.params if isinstance(p, click.Option)}
    kind = options["--format"].type
    assert isinstance(kind, click.Choice) and list(kind.choices)[-1] == "tflite"
    assert "int8-static,fp16,int4 (or all)" in str(options["--variants"].help)


@functools.cache
def _literal_tables() -> list[tuple[str, set[str]]]:
    """Every tuple, list or set of string constants in packager/, with its place."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts:
                values = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                if len(values) == len(node.elts):
                    found.append((f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", set(values)))
    return found


@pytest.mark.parametrize("registry", [FORMATS, VARIANTS], ids=["formats", "variant kinds"])
def test_no_module_writes_a_registrys_names_again(registry: Registry[Any]) -> None:
    """A literal holding every name of the registry is a name table written by hand: derive it instead."""
    names = set(registry.names())
    copies = [place for place, values in _literal_tables() if names <= values]
    assert not copies, copies


def test_the_shipped_spec_schema_agrees_with_the_registries() -> None:
    shipped = spec.shipped_schema()["$defs"]
    for name, values in spec.enums().items():
        assert shipped[name]["enum"] == values, f"packager/schemas/spec.schema.json $defs.{name}: write {values}"
    assert spec.enums()["format"] == FORMATS.names() and spec.enums()["variant_kind"] == VARIANTS.names()


def test_specs_are_checked_against_the_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The enums pack checks a spec with are the registries', whatever the shipped file says: a format registered
    and not yet in the file is accepted, and the agreement test above fails until the file says it too."""
    with pytest.raises(UsageError, match="'tflite' is not one of"):
        spec.check({"formats": ["tflite"]}, "pack.yaml")
    monkeypatch.setitem(FORMATS._entries, "tflite", Format("tflite", "model.tflite", "a format to come", serve_rank=4))
    spec._validator.cache_clear()
    try:
        assert spec.check({"formats": ["tflite"]}, "pack.yaml") == {"formats": ["tflite"]}
        assert spec.shipped_schema()["$defs"]["format"]["enum"] != spec.enums()["format"]
    finally:
        spec._validator.cache_clear()


def _assigned(source: str, name: str) -> Any:
    """The literal value assigned to `name` at the top of a module's source."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"no {name} = ... in the module")


def test_the_serving_runtime_names_the_registrys_formats() -> None:
    """handlers/ runs inside the servers and never imports pack: its copies of the format table must agree."""
    assert set(_assigned(read_runtime("pack_runtime.py").decode(), "FORMATS")) == set(FORMATS.names())
    assert _assigned(read_runtime("pack_triton_model.py").decode(), "DEFAULT_FILES") == FILES
