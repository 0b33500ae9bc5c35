"""What a declared input may be (packager/build/inputs.py), for `--input` and the spec alike, and the other build inputs
resolved before any export (batch sizes, seed, labels file, strict spec types): each rule refuses in one line with
exit 2, and what it accepts gives cases the gate can draw (packager/report/cases.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from packager.build.inputs import MAX_VALUES, parse_input
from packager.errors import UsageError
from packager.report.cases import batch_cases, flipped
from tests.helpers.cli import invoke
from tests.helpers.store import model_file

ONE = """
    from torch import nn

    def one():
        return nn.Linear(8, 4)
"""


@pytest.fixture
def one(tmp_path: Path) -> str:
    return model_file(tmp_path, ONE) + ":one"


def build_line(tmp_path: Path, *args: str) -> str:
    """`pack build ARGS` that must stop before any export: its one error line (exit 2)."""
    return invoke("build", *args, "--store", str(tmp_path / "store")).error(2)


@pytest.mark.parametrize(
    "text, message",
    [
        ("x:2x8:float32:range=nan,inf", "range [nan, inf] must be [low, high] with low < high, both finite"),
        ("x:2x8:range=-inf,0", "both finite"),
        ("x:2x8:int64:range=0.5,0.7", "an int64 input's range must be whole numbers"),
        ("x:2x8:int8:range=0,1000", "values from 0 to 999 do not fit int8 (-128 to 127)"),
        ("x:2x8:uint8:range=-5,5", "do not fit uint8"),
        ("x:2x8:int64:range=0,9223372036854775809", "do not fit int64"),
        ("x:2x8:float16:range=0,1e6", "does not fit float16"),
        ("x:2x8:float64:range=-1e308,1e308", "is wider than a float64 holds"),
        ("x:" + "x".join(["1"] * 33), "a shape of 33 axes; an input has 1 to 32"),
        ("x:100000x100000x100", f"holds more than {MAX_VALUES:,d} values"),
        ("ñ:2x8", "the name must be 1 to 64 ASCII letters"),
        ("x y:2x8", "the name must be"),
        ("x" * 65 + ":2x8", "the name must be"),
        ("x:2x8:dyn=0,0", "dynamic axes [0, 0] name an axis twice"),
        ("x:2x8:float32:float16", "dtype is given twice"),
        ("x:2x8:dyn=0:dyn=1", "dyn is given twice"),
        ("x:2x8:range=1,2,3", "'range=1,2,3' is not range=numbers"),
        ("x:" + "9" * 5000, "is not numbers joined by x"),
    ],
)
def test_bad_inputs_are_refused_naming_the_rule(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_input(text)
    assert message in info.value.message, info.value.message


def test_the_issue_inputs_are_one_line_exit_2_from_the_command_line(tmp_path: Path, one: str) -> None:
    """Before: OverflowError ("high - low range exceeds valid bounds") and ValueError ("high <= 0"), exit 1."""
    assert "both finite" in build_line(tmp_path, one, "--input", "x:2x8:float32:range=nan,inf")
    assert "whole numbers" in build_line(tmp_path, one, "--input", "x:2x8:int64:range=0.5,0.7")


@pytest.mark.parametrize(
    "text",
    [
        "x:2x3:int64:range=-9223372036854775808,9223372036854775808",
        "x:2x3:uint8:range=0,256",
        "x:2x3:int8:range=-128,128",
        "x:2x3:int32:range=5,6",
        "x:2x3:float16:range=-65504,65504",
        "x:2x3:float64:range=-1e307,1e307",
        "x:2x3:bool:range=0,2",
        "x:2x3:range=1e3,1e4",
    ],
)
def test_the_widest_accepted_ranges_give_cases_inside_them(text: str) -> None:
    """Drawn values lie in the range (integers mirrored inside it when flipped; floats are negated, by design)."""
    spec = parse_input(text)
    assert spec.range is not None
    low, high = spec.range
    for case in batch_cases([spec], [1, 4], seed=0):
        for arrays in (case.inputs, flipped([spec], case).inputs):
            values = arrays[0]
            assert values.dtype == np.dtype(spec.dtype) and np.isfinite(values.astype(np.float64)).all()
            inside = spec.dtype.startswith("int") or spec.dtype == "uint8" or arrays is case.inputs
            if spec.dtype != "bool" and inside:
                assert low <= values.min() and values.max() <= high


def test_integral_bounds_stay_exact_integers() -> None:
    spec = parse_input("ids:1x4:int64:range=0,9223372036854775807")
    assert spec.range == (0, 2**63 - 1) and all(isinstance(v, int) for v in spec.range or ())


def test_spec_inputs_pass_the_same_rule(tmp_path: Path, one: str) -> None:
    spec = tmp_path / "pack.yaml"
    spec.write_text(f"source: {one}\ninputs: [{{name: x, shape: [2, 8], dtype: int64, range: [0.5, 0.7]}}]\n")
    assert "an int64 input's range must be whole numbers" in build_line(tmp_path, "--spec", str(spec))
    spec.write_text(f"source: {one}\ninputs: [{{name: x, shape: [2, 8], range: [.nan, 1]}}]\n")
    assert "inputs[0].range[0]: nan is not a finite number" in build_line(tmp_path, "--spec", str(spec))


@pytest.mark.parametrize(
    "document, message",
    [
        ("tolerance: {atol: .nan}", "tolerance.atol: nan is not a finite number"),
        ("tolerance: {rtol: .inf}", "tolerance.rtol: inf is not a finite number"),
        ("variants: {kinds: [int8-dynamic], min_speedup: .nan}", "variants.min_speedup: nan is not a finite number"),
        ("batch_sizes: [1.0, 4]", "batch_sizes[0]: 1.0 is not of type 'integer'"),
        ("seed: 3.0", "seed: 3.0 is not of type 'integer'"),
        ("opset: 17.0", "opset: 17.0 is not of type 'integer'"),
        ("postprocessing: " + "{a: " * 70 + "1" + "}" * 70, "nested more than 64 levels deep"),
        ("preprocessing: {resize: abc}", "preprocessing.resize: 'abc' is not of type 'integer'"),
        ("preprocessing: {image_size: 5}", "preprocessing.image_size: 5 is not of type 'array'"),
        ("preprocessing: {std: [0.5, 0, 1]}", "preprocessing.std[1]: 0 is less than or equal to the minimum of 0"),
        ("preprocessing: {mean: [0.5, 0.5]}", "preprocessing.mean: [0.5, 0.5] is not valid"),
        ("postprocessing: {conf_threshold: 2}", "postprocessing.conf_threshold: 2 is greater than the maximum of 1"),
        ("postprocessing: {top_k: 0}", "postprocessing.top_k: 0 is less than the minimum of 1"),
    ],
)
def test_spec_numbers_are_finite_integers_whole_and_handler_keys_typed(
    tmp_path: Path, one: str, document: str, message: str
) -> None:
    """The handlers' pre/post-processing keys are typed too: `resize: abc` used to build and fail on every request."""
    spec = tmp_path / "pack.yaml"
    spec.write_text(f"source: {one}\ninputs: [{{name: x, shape: [2, 8]}}]\n{document}\n")
    assert message in build_line(tmp_path, "--spec", str(spec))


def test_batch_sizes_are_named_once_and_bounded_by_the_values_they_make(tmp_path: Path, one: str) -> None:
    assert "name a size twice" in build_line(tmp_path, one, "--input", "x:2x8", "--batch-sizes", "4,4")
    line = build_line(tmp_path, one, "--input", "x:2x8", "--batch-sizes", "1,99999999999")
    assert f"at batch size 99999999999 holds more than {MAX_VALUES:,d} values" in line


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(2**70)])
def test_seeds_are_from_0_to_2_to_the_32_minus_1(tmp_path: Path, one: str, seed: str) -> None:
    assert "must be an integer from 0 to 4294967295" in build_line(tmp_path, one, "--input", "x:2x8", "--seed", seed)


@pytest.mark.parametrize(
    "content, message",
    [(b"\xff\xfe\x00garbage", "is not a text file (not UTF-8"), (b"\n  \n", "holds no label")],
)
def test_a_labels_file_is_read_before_the_export(tmp_path: Path, one: str, content: bytes, message: str) -> None:
    """Before: a labels file that is not UTF-8 was read after every export, and failed with exit 1."""
    (tmp_path / "labels.txt").write_bytes(content)
    spec = tmp_path / "pack.yaml"
    spec.write_text(f"source: {one}\ninputs: [{{name: x, shape: [2, 8]}}]\nlabels: labels.txt\n")
    line = build_line(tmp_path, "--spec", str(spec))
    assert "labels file" in line and message in line


def test_the_labels_of_a_plan_are_its_file_lines(tmp_path: Path, one: str) -> None:
    from packager.build.plan import resolve

    (tmp_path / "labels.txt").write_text("cat\n\n dog \n")
    plan = resolve(one, None, {"inputs": [parse_input("x:2x8")], "labels": str(tmp_path / "labels.txt")})
    assert plan.labels == ["cat", "dog"]
