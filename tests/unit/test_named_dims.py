"""Named dynamic dimensions shared across inputs (`dyn=batch@1`, a spec's `dynamic_axes: ["seq@1"]`) and outputs whose
size depends on the data: parsing and its errors, the rule across inputs, the gate's cases (the batch on another axis,
tied axes moved together), the exporters' dimension names, and the served dims every writer uses (-1, never one
sample's size)."""

from __future__ import annotations

from typing import Any

import pytest

from packager.build.inputs import check_dims, parse_input
from packager.build.reference import _variable_axes
from packager.errors import UsageError
from packager.report.cases import Case, batch_cases, resized_cases
from packager.targets.triton.repository import RepoOptions, model_config
from tests.helpers.reports import make_report

CHARS = parse_input("chars:2x6:int64:dyn=0,seq@1:range=0,50")
H0 = parse_input("h0:1x2x8:dyn=batch@1")
MASK = parse_input("mask:2x6:int64:dyn=0,seq@1")


def test_dyn_names_axes_and_the_batch_may_be_any_axis() -> None:
    assert (H0.dynamic_axes, H0.dim_names, H0.batch_axis) == ((1,), ((1, "batch"),), 1)
    assert [CHARS.axis_name(a) for a in CHARS.dynamic_axes] == ["batch", "seq"]
    plain = parse_input("x:2x6:dyn=0,1")
    assert [plain.axis_name(a) for a in plain.dynamic_axes] == ["batch", "x_dim1"] and plain.batch_axis == 0
    assert parse_input("s:1x2:dyn=1").batch_axis is None  # no axis named batch: no batch axis
    assert H0.to_dict()["dim_names"] == {"1": "batch"} and "dim_names" not in plain.to_dict()


@pytest.mark.parametrize(
    "text, message",
    [
        ("h0:1x2x8:dyn=batch@x", r"dynamic axis 'batch@x' is not AXIS or NAME@AXIS"),
        ("h0:1x2x8:dyn=9seq@1", r"dimension name '9seq' must be"),
        ("h0:1x2x8:dyn=0,batch@1", r"axes \[0, 1\] are all named batch"),
        ("h0:1x2x8:dyn=seq@3", r"dynamic axis 3 is out of range"),
    ],
)
def test_bad_names_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_input(text)
    assert info.value.exit_code == 2


def test_axes_of_one_name_have_one_example_size() -> None:
    check_dims([CHARS, H0, MASK])
    with pytest.raises(UsageError, match=r"dimension 'batch' is 2 in input 'chars' \(axis 0\) but 3 in input 'h0' \(axis 1\)"):
        check_dims([CHARS, parse_input("h0:1x3x8:dyn=batch@1")])
    with pytest.raises(UsageError, match=r"dimension 'seq' is 6 .* but 5 in input 'm'"):
        check_dims([CHARS, parse_input("m:2x5:dyn=0,seq@1")])


def test_the_spec_takes_named_axes_too() -> None:
    from packager.build.plan import _tensor_from_spec
    from packager.build.spec import check

    entry: dict[str, Any] = {"name": "h0", "shape": [1, 2, 8], "dynamic_axes": ["batch@1"]}
    check({"source": "m.py:f", "inputs": [entry]}, "pack.yaml")
    with pytest.raises(UsageError, match="dynamic_axes"):
        check({"source": "m.py:f", "inputs": [{**entry, "dynamic_axes": ["batch:1"]}]}, "pack.yaml")
    assert _tensor_from_spec(entry) == H0


def test_cases_put_the_batch_on_its_axis_and_move_tied_axes_together() -> None:
    cases = batch_cases([CHARS, H0, MASK], [1, 4], 0)
    assert [[a.shape for a in c.inputs] for c in cases] == [[(1, 6), (1, 1, 8), (1, 6)], [(4, 6), (1, 4, 8), (4, 6)]]
    resized = resized_cases([CHARS, H0, MASK], 2, 0)
    assert [[a.shape for a in c.inputs] for c in resized][0] == [(2, 3), (1, 2, 8), (2, 3)]  # seq halved in both
    assert all(c.inputs[0].shape[1] == c.inputs[2].shape[1] for c in resized)


def test_pt2_shares_one_dim_per_name_and_onnx_names_axes() -> None:
    from torch.export import Dim

    from packager.export.onnx import _input_axes
    from packager.export.pt2 import dynamic_shapes

    (shapes,) = dynamic_shapes([CHARS, H0, MASK])
    assert shapes[0][0] is shapes[1][1] and shapes[0][1] is shapes[2][1]  # one Dim each for batch and seq
    assert shapes[0][0].__name__ == "batch" and shapes[2][1].__name__ == "seq"
    (alone,) = dynamic_shapes([parse_input("x:2x6:dyn=0,1")])
    assert alone[0] == {0: Dim.AUTO, 1: Dim.AUTO}  # a name no other axis shares: torch.export finds its relations
    assert _input_axes([CHARS, H0]) == {"chars": {0: "batch", 1: "seq"}, "h0": {1: "batch"}}


def _case(batch: int, *shapes: tuple[int, ...], resized: bool = False) -> Case:
    import numpy as np

    return Case(f"batch {batch}", batch, [], [np.zeros(s) for s in shapes], resized)


def test_outputs_whose_size_depends_on_the_data_are_marked() -> None:
    empty = [_case(1, (0, 4)), _case(4, (0, 4))]
    assert _variable_axes(empty, 0, batched=False, detector=False) == (0,)  # empty in a case
    counts = [_case(1, (3, 4)), _case(4, (5, 4))]
    assert _variable_axes(counts, 0, batched=False, detector=False) == (0,)  # another count at another batch
    batched = [_case(1, (1, 7)), _case(4, (4, 7)), _case(4, (4, 9), resized=True)]
    assert _variable_axes(batched, 0, batched=True, detector=False) == ()  # the batch and a resized axis: not data
    state = [_case(1, (1, 1, 8)), _case(4, (1, 4, 8))]
    assert _variable_axes(state, 0, batched=True, detector=False) == ()  # the batch on axis 1
    same = [_case(1, (100, 4))]
    assert _variable_axes(same, 0, batched=False, detector=True) == (0,)  # a detector's count, whatever one case gave


DETECTOR: dict[str, Any] = {
    "name": "det",
    "version": "1",
    "batch_sizes": [1],
    "inputs": [{"name": "images", "shape": [1, 3, 64, 64], "dtype": "float32", "dynamic_axes": []}],
    "outputs": [
        {"name": "boxes", "shape": [0, 4], "dtype": "float32", "dynamic_axes": [], "variable": [0]},
        {"name": "scores", "shape": [100], "dtype": "float32", "dynamic_axes": [], "variable": [0]},
    ],
}


def test_triton_dims_are_minus_one_where_the_size_depends_on_the_data() -> None:
    config, _ = model_config(make_report(**DETECTOR), RepoOptions(backend="onnxruntime", gpu=False))
    assert [list(o.dims) for o in config.output] == [[-1, 4], [-1]]  # never 0 or one sample's 100
    unmarked = {**DETECTOR, "outputs": [{**o, "variable": []} for o in DETECTOR["outputs"]]}
    config, _ = model_config(make_report(**unmarked), RepoOptions(backend="onnxruntime", gpu=False))
    assert [list(o.dims) for o in config.output] == [[0, 4], [100]]  # what the mark changes


def test_triton_batches_only_when_every_input_has_its_batch_on_axis_0() -> None:
    lstm: dict[str, Any] = {
        "name": "lstm",
        "version": "1",
        "batch_sizes": [1, 4],
        "inputs": [
            {"name": "chars", "shape": [2, 6], "dtype": "int64", "dynamic_axes": [0]},
            {"name": "h0", "shape": [1, 2, 8], "dtype": "float32", "dynamic_axes": [1], "dim_names": {"1": "batch"}},
        ],
        "outputs": [{"name": "y", "shape": [2, 6, 3], "dtype": "float32", "dynamic_axes": [0]}],
    }
    report = make_report(**lstm)
    assert report.inputs[1].batch_axis == 1 and not report.batchable
    config, _ = model_config(report, RepoOptions(backend="onnxruntime", gpu=False))
    assert config.max_batch_size == 0 and list(config.input[1].dims) == [1, -1, 8]
    with pytest.raises(UsageError, match=r"no dynamic batch axis \(h0 fixed\)"):
        model_config(report, RepoOptions(backend="onnxruntime", max_batch=4, gpu=False))
    moved = {**lstm, "inputs": [lstm["inputs"][0], {**lstm["inputs"][1], "dynamic_axes": [0], "dim_names": {}}]}
    assert make_report(**moved).batchable


def test_a_model_whose_output_count_follows_the_batch_is_a_usage_error() -> None:
    """A model that answers a list per example (torchvision's detectors fed a batch) has no fixed output names: exit 2,
    not a crash in the gate."""
    import numpy as np
    import torch
    from torch import nn

    from packager.build.modelio import bind
    from packager.build.reference import finish

    class PerRow(nn.Module):
        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            return [row * 2 for row in x]

    model = PerRow()
    spec = parse_input("x:1x3")
    binding = bind(model, ["x"])

    def run(arrays: list[Any]) -> list[Any]:
        return [np.asarray(t) for t in model(torch.from_numpy(arrays[0]))]

    cases = batch_cases([spec], [1, 2], 0)
    for case in cases:
        case.outputs = run(case.inputs)
    plan = type("Plan", (), {"outputs": [], "output_tolerance": lambda self, i: None})()
    with pytest.raises(UsageError, match=r"returns 1 tensor\(s\) at batch 1 but 2 at batch 2") as info:
        finish(run, cases, plan, model, binding, [spec], "cpu")
    assert info.value.exit_code == 2


def test_empty_passes_only_against_empty() -> None:
    """A detector that found nothing: an export that answers boxes there fails the gate; empty against empty passes."""
    import numpy as np

    from packager.registry import Tolerance
    from packager.report.validate import compare

    case = _case(1, (0, 4))
    assert compare(np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32), Tolerance(), case, "boxes").passed
    found = compare(np.zeros((0, 4), np.float32), np.ones((3, 4), np.float32), Tolerance(), case, "boxes")
    assert not found.passed and found.reason.startswith("3 rows, eager has 0")
