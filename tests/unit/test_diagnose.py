"""Exporter failures turned into one cause and one fix (packager/export/diagnose.py)."""

from __future__ import annotations

import pytest

from packager.export.diagnose import explain, first_line, operator

DEBUG_HINT = "rerun with --debug for the exporter's full message"


@pytest.mark.parametrize(
    "exc, kind, cause, fix",
    [
        (
            RuntimeError("Exporting the operator 'aten::grid_sampler' to ONNX opset version 9 is not supported."),
            "onnx",
            "operator aten::grid_sampler has no ONNX conversion in this exporter",
            "the other ONNX exporter may handle it",
        ),
        (
            RuntimeError("Could not guard on data-dependent expression Eq(u0, 1) (unhinted: Eq(u0, 1))"),
            "export",
            "the model branches on tensor values (data-dependent control flow), which torch.export cannot capture",
            "torch.cond or torch.where",
        ),
        (
            RuntimeError("Constraints violated (batch)! The values of L['x'].size()[1] = 16 must be specialized"),
            "export",
            "the model's code fixes a size that was declared dynamic",
            "declare that axis static in the spec",
        ),
        (
            OSError("could not get source code"),
            "script",
            "torch.jit.script needs Python source that is not available",
            "keep the trace",
        ),
        (
            RuntimeError("NotSupportedError: Compiled functions can't take variable number of arguments"),
            "script",
            "torch.jit.script cannot compile the model's Python (RuntimeError: NotSupportedError: Compiled functions",
            "keep the trace",
        ),
        (
            RuntimeError("CppCompileError: C++ compile error\ng++: fatal error"),
            "aoti",
            "the C++ compiler failed",
            "install a working g++",
        ),
        (
            RuntimeError("Only tensors, lists, tuples of tensors, or dictionary of tensors can be output from traced functions"),
            "trace",
            "torch.jit.trace cannot follow the model's non-tensor inputs or outputs",
            "give every forward() input as a tensor",
        ),
    ],
)
def test_known_failures_name_their_cause_and_fix(exc: BaseException, kind: str, cause: str, fix: str) -> None:
    got_cause, got_fix = explain(exc, kind)
    assert got_cause.startswith(cause), got_cause
    assert fix in got_fix


def test_a_rule_applies_only_to_its_exporters() -> None:
    exc = RuntimeError("Could not guard on data-dependent expression u0 > 0")
    assert explain(exc, "trace") == ("RuntimeError: Could not guard on data-dependent expression u0 > 0", DEBUG_HINT)
    assert explain(ValueError("something new"), "onnx") == ("ValueError: something new", DEBUG_HINT)


def test_an_unnamed_operator_is_said_so() -> None:
    cause, _ = explain(RuntimeError("Unsupported: ONNX export of an operator"), "onnx")
    assert cause == "an operator has no ONNX conversion in this exporter"


# what torch 2.14's legacy exporter says, its graph dump cut short
ADAPTIVE = (
    "Unsupported: ONNX export of operator adaptive_avg_pool2d, input size not accessible. Please feel free to request "
    "support [Caused by the value 'input.28 defined in (%46 = onnx::MaxPool(%42), scope: "
    "torchvision.models.alexnet.AlexNet::/torch.nn.modules.container.Sequential::features"
)
FAST_PATH = (
    "Exporting the operator 'aten::_transformer_encoder_layer_fwd' to ONNX opset version 17 is not supported\n"
    "Torch IR graph at exception: graph(%src.1 : Float(*, *, 16)):\n  %3 : Tensor = aten::linear(%src.1)"
)


@pytest.mark.parametrize(
    "text, cause, fix",
    [
        (
            ADAPTIVE,
            "operator aten::adaptive_avg_pool2d with a dynamic input size has no ONNX conversion (ONNX has no adaptive pooling)",
            "declare the height and width static (dyn= without those axes), or serve torchscript or pt2",
        ),
        (
            FAST_PATH,
            "operator aten::_transformer_encoder_layer_fwd (PyTorch's fused attention fast path) has no ONNX conversion",
            "torch.backends.mha.set_fastpath_enabled(False)",
        ),
        (
            "Unsupported: ONNX export of transpose for tensor of unknown rank. [Caused by the value '100' ... aten::linear",
            "operator aten::transpose has no ONNX conversion in this exporter",
            "the other ONNX exporter may handle it",
        ),
    ],
)
def test_the_line_names_the_operator_never_a_module(text: str, cause: str, fix: str) -> None:
    got_cause, got_fix = explain(RuntimeError(text), "onnx")
    assert got_cause.startswith(cause) and fix in got_fix, (got_cause, got_fix)
    assert "torchvision::models" not in got_cause and "(unnamed)" not in got_cause


def test_first_meaningful_line_skips_traceback_noise() -> None:
    exc = RuntimeError('Traceback (most recent call last):\n  File "m.py", line 3\n    ^^^^\n\nthe real problem\nmore')
    assert first_line(exc) == "RuntimeError: the real problem"
    assert first_line(KeyError()) == "KeyError"
    assert len(first_line(ValueError("x" * 1000))) == len("ValueError: ") + 240


@pytest.mark.parametrize(
    "text, op",
    [
        ("call_function aten.grid_sampler_2d.default(...)", "aten::grid_sampler_2d.default"),
        ("torchvision::nms is not supported", "torchvision::nms"),
        ("prim::If with a tensor condition", "prim::If"),
        ("no operator here", None),
        ("scope: torchvision.models.alexnet.AlexNet::/features", None),  # a module's path is no operator
        ("Torch IR graph at exception: graph(%x): aten::linear", None),  # nor is every operator of a graph dump
    ],
)
def test_operator_names_are_normalised(text: str, op: str | None) -> None:
    assert operator(text) == op


def test_each_onnx_exporter_gets_its_own_fix() -> None:
    """A fix for the dynamo exporter's capture is not shown as the legacy exporter's (issue 24)."""
    from packager.export.onnx import _fixes

    rejected = [
        {"exporter": "legacy", "reason": "export failed: ...", "fix": "declare the height and width static"},
        {"exporter": "dynamo", "reason": "export failed: ...", "fix": "rewrite the branch with torch.cond"},
    ]
    assert _fixes(rejected) == "legacy: declare the height and width static; dynamo: rewrite the branch with torch.cond"
    assert "leave onnx out" in _fixes([{"exporter": "dynamo", "reason": "256 NaN/Inf values"}])


def test_a_build_where_no_format_passed_names_every_format_with_its_own_fix() -> None:
    """The first format's failure alone once stood for the build: a model whose sequence length torch.export fixes
    was reported as a TorchScript trace failure (issue 24)."""
    from packager.build.pipeline import _judge
    from packager.errors import ValidationFailed
    from packager.export import Outcome

    outcomes = {
        "torchscript": Outcome("failed", reason="the trace does not match eager", hint="loosen `tolerance` only if expected"),
        "onnx": Outcome("failed", reason="no ONNX exporter produced a file that passes (legacy: ...)", hint="legacy: fix it"),
        "pt2": Outcome("failed", reason="the ExportedProgram does not take input_ids axis 1 = 16", hint=""),
    }
    with pytest.raises(ValidationFailed) as raised:
        _judge(outcomes, set())
    line = raised.value.line()
    assert "torchscript: the trace does not match eager" in line and "pt2: the ExportedProgram does not take input_ids" in line
    assert "torchscript: loosen `tolerance` only if expected; onnx: legacy: fix it" in line
