"""What to build (packager/build/plan.py): `--input` and `--formats` parsing, and merging a built-in entry, a spec and the
command line into one BuildPlan."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.build.plan import parse_formats, parse_input, resolve
from packager.errors import UsageError
from packager.export import DEFAULT_FORMATS
from packager.registry import OutputSpec, TensorSpec, Tolerance


def test_input_with_dtype_dynamic_axes_and_range() -> None:
    spec = parse_input("input_ids:2x16:int64:dyn=0,1:range=0,30000")
    assert spec == TensorSpec("input_ids", (2, 16), "int64", (0, 1), (0, 30000))
    assert spec.range is not None and isinstance(spec.range[0], int)


def test_input_defaults_and_float_ranges() -> None:
    assert parse_input("x:1X3x224x224") == TensorSpec("x", (1, 3, 224, 224), "float32", (0,), None)
    assert parse_input("x:1x4:range=-1.5,2").range == (-1.5, 2.0)
    assert parse_input("x:1x4:dyn=").dynamic_axes == ()  # every axis static
    assert parse_input("x:1x4:float16:dyn=1").dynamic_axes == (1,)


@pytest.mark.parametrize(
    "text, message",
    [
        ("input", "is not NAME:SHAPE"),
        (":1x3", "is not NAME:SHAPE"),
        ("x:1xAx3", "shape '1xAx3' is not numbers joined by x"),
        ("x:0x3", "every dimension must be at least 1"),
        ("x:1x3:float128", "unknown dtype 'float128'"),
        ("x:1x3:axes=1", "unknown field 'axes'"),
        ("x:1x3:dyn=a", "dynamic axis 'a' is not AXIS or NAME@AXIS"),
        ("x:1x3:range=1", "'range=1' is not range=numbers"),
        ("x:1x3:dyn=2", "dynamic axis 2 is out of range for shape [1, 3]"),
        ("x:1x3:range=5,1", "range [5, 1] must be [low, high] with low < high"),
    ],
)
def test_bad_inputs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_input(text)
    assert message in info.value.message


def test_formats_are_deduplicated_and_checked() -> None:
    assert parse_formats(" onnx, torchscript,onnx ") == ("onnx", "torchscript")
    assert parse_formats("aoti") == ("aoti",)
    with pytest.raises(UsageError, match="unknown format 'tflite'"):
        parse_formats("onnx,tflite")
    with pytest.raises(UsageError, match="unknown format"):
        parse_formats(" , ")


def test_builtin_entry_gives_inputs_outputs_and_tolerance() -> None:
    plan = resolve("tiny", None, {})
    assert (plan.name, plan.version, plan.source_kind) == ("tiny", "1", "builtin")
    assert plan.inputs == [TensorSpec("input", (1, 3, 32, 32))] and [o.name for o in plan.outputs] == ["logits"]
    assert plan.formats == DEFAULT_FORMATS and not plan.formats_given
    assert plan.batch_sizes == [1, 4] and plan.seed == 0 and plan.device == "auto"


def test_command_line_beats_the_built_in_entry() -> None:
    plan = resolve(
        "tiny", None, {"name": "small", "version": "007", "atol": 0.5, "formats": "onnx", "batch_sizes": [2], "seed": 9}
    )
    assert (plan.name, plan.version, plan.seed, plan.batch_sizes) == ("small", "7", 9, [2])
    assert plan.tolerance.atol == 0.5 and plan.formats == ("onnx",) and plan.formats_given


def test_per_output_tolerance_overrides_the_build_tolerance() -> None:
    plan = resolve("tiny", None, {})
    plan.outputs = [OutputSpec("logits", atol=0.0)]
    assert plan.output_tolerance(0) == Tolerance(atol=0.0, rtol=plan.tolerance.rtol)
    assert plan.output_tolerance(5) == plan.tolerance  # an output the spec does not list


def test_static_first_axis_validates_its_declared_batch_only() -> None:
    fixed = parse_input("input:2x3x32x32:dyn=")
    assert resolve("tiny", None, {"inputs": [fixed]}).batch_sizes == [2]
    with pytest.raises(UsageError, match="has no dynamic batch axis, so only batch size 2 can be validated"):
        resolve("tiny", None, {"inputs": [fixed], "batch_sizes": [1, 4]})


@pytest.mark.parametrize(
    "model, overrides, message",
    [
        (None, {}, "nothing to build"),
        ("resnet5", {}, "unknown model 'resnet5'"),
        ("tiny", {"version": "0"}, "must be a positive integer"),
        ("tiny", {"name": "no spaces"}, "is not usable as a folder and server name"),
        ("tiny", {"batch_sizes": [0]}, "batch sizes must be at least 1"),
        ("tiny", {"inputs": [parse_input("a:1x2"), parse_input("a:1x3")]}, "input names must be unique"),
        ("tiny", {"inputs": [parse_input("logits:1x2")]}, "input and output names must all be different"),
        ("tiny", {"weights": "/no/such/weights.pt"}, "weights file not found"),
        ("tiny", {"labels": "/no/such/labels.txt"}, "labels file not found"),
    ],
)
def test_unusable_plans_are_refused(model: str | None, overrides: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        resolve(model, None, overrides)


def test_python_and_file_sources(tmp_path: Path) -> None:
    source = tmp_path / "net.py"
    source.write_text("def build():\n    pass\n")
    plan = resolve(f"{source}:build", None, {})
    assert (plan.source_kind, plan.name, plan.inputs) == ("python", "net", [])  # inputs come from the family, or fail later
    with pytest.raises(UsageError, match="names a Python file but no callable"):
        resolve(str(source), None, {})
    with pytest.raises(UsageError, match="model source file not found"):
        resolve(f"{tmp_path / 'other.py'}:build", None, {})
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"x")
    assert resolve(str(weights), None, {}).source_kind == "file"
    with pytest.raises(UsageError, match="model file not found"):
        resolve(str(tmp_path / "gone.pt"), None, {})
