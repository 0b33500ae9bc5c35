"""Property-based inputs (hypothesis) to the command line, run in-process: `--input` strings, value ranges, pack.yaml
documents (valid and not), calibration files (.npz and .npy with any names, dtypes and shapes, some corrupted) and
manifests and reports of any nesting. Whatever the input, `pack` exits 0 or with a documented code other than 1, and a
failure is exactly one `error:` line with no traceback. Builds stop before any export: they name a weights file that
does not exist, the last thing the plan checks, so an input the plan accepts ends on that line; what it accepted is
then checked to be usable (numbers finite, integers whole, and cases the gate can draw: finite, of the input's dtype,
inside its range). Examples are few (`max_examples` 4 to 60) to keep the unit tier fast (about 6 s for this file).
(Real builds of accepted inputs: tests/integration/test_build_errors.py.)"""

from __future__ import annotations

import io
import json
import math
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from packager.build.inputs import parse_input
from packager.errors import EXIT_INTERNAL, UsageError
from packager.registry import DTYPES, TensorSpec
from packager.report.cases import batch_cases, flipped, resized_cases
from packager.variants.calibration import read_calibration
from tests.helpers.cli import Invocation, invoke

SETTINGS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
MISSING_WEIGHTS = "no-such-weights.pt"
ACCEPTED = "weights file not found"  # the plan's last check: everything before it passed


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("input-properties")
    (folder / "m.py").write_text("def build():\n    raise SystemExit('no model is loaded before the plan is complete')\n")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def one_line_or_ok(result: Invocation, codes: tuple[int, ...] = (2,)) -> str:
    """The failure contract: a documented code (never 1), one `error:` line, no traceback; returns that line."""
    assert result.returncode != EXIT_INTERNAL, result.stderr
    if result.returncode == 0:
        return ""
    assert result.returncode in codes, result.stderr
    return result.error(result.returncode)


def build(folder: Path, *args: str) -> Invocation:
    weights = str(folder / MISSING_WEIGHTS)
    return invoke("build", *args, "--weights", weights, "--store", str(folder / "store"))


def check_plan(plan: Any) -> None:
    """What the build gets from an accepted plan is usable: numbers finite, integers whole, cases drawable."""
    for spec in plan.inputs:
        check_cases(spec)
    numbers = [plan.tolerance.atol, plan.tolerance.rtol, plan.variants.min_speedup, *plan.variants.agreement.values()]
    numbers += [v for o in plan.outputs for v in (o.atol, o.rtol) if v is not None]
    numbers += [v for t in plan.variants.tolerances.values() for v in (t.atol, t.rtol)]
    for value in numbers:
        assert isinstance(value, (int, float)) and math.isfinite(value) and value >= -1, plan
    assert all(isinstance(b, int) and b >= 1 for b in plan.batch_sizes) and isinstance(plan.seed, int), plan
    assert 0 <= plan.seed < 2**32 and (plan.opset is None or isinstance(plan.opset, int)), plan


def check_cases(spec: TensorSpec) -> None:
    """The cases the gate draws from an accepted input: finite values of its dtype, inside its range."""
    if spec.range is None or np.prod(spec.shape) > 4096:
        return
    low, high = spec.range
    cases = batch_cases([spec], [1, 2] if 0 in spec.dynamic_axes else [spec.shape[0]], seed=0)
    for case in [*cases, *resized_cases([spec], cases[0].batch, 0)]:
        for arrays in (case.inputs, flipped([spec], case).inputs):
            values = arrays[0]
            assert values.dtype == np.dtype(spec.dtype) and np.isfinite(values.astype(np.float64)).all()
            if np.issubdtype(values.dtype, np.integer):
                assert low <= values.min() and values.max() <= high - 1
        if spec.dtype.startswith("float"):
            assert low <= case.inputs[0].min() and case.inputs[0].max() <= high


# --- --input strings and ranges -------------------------------------------------------------------------------------

EDGES = [0, 1, -1, 0.5, 255, 256, -128, 128, 2**31, 2**63, 2**70, 65504.0, 1e308, math.nan, math.inf, -math.inf]
NUMBER = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([*EDGES, "1e3", "x", ""])
)
VALUE = st.sampled_from(EDGES) | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
NAME = st.sampled_from(["x", "input_ids", "mask", "", "ñ", "x y", "9x", "a" * 65, "x\n"]) | st.text(max_size=6)
DTYPE = st.sampled_from([*DTYPES, "float128", "", "int"])
DIMS = st.lists(st.integers(-2, 40), min_size=0, max_size=36).map(lambda ds: "x".join(map(str, ds))) | st.text(max_size=6)
AXES = st.lists(st.integers(-1, 5), max_size=4).map(lambda a: ",".join(map(str, a))) | st.text(max_size=4)
RANGE = st.lists(NUMBER, min_size=0, max_size=3).map(lambda vs: ",".join(map(str, vs)))
FIELD = st.one_of(DTYPE, AXES.map("dyn={}".format), RANGE.map("range={}".format), st.text(max_size=5))
GARBLED = st.builds(lambda n, d, fs: ":".join([n, d, *fs]), NAME, DIMS, st.lists(FIELD, max_size=4))
WELL_FORMED = st.builds(
    "x:{}:{}:range={},{}".format,
    st.lists(st.integers(1, 4), min_size=1, max_size=3).map(lambda ds: "x".join(map(str, ds))),
    st.sampled_from(DTYPES),
    NUMBER,
    NUMBER,
)
INPUT = WELL_FORMED | GARBLED


@SETTINGS
@given(text=INPUT)
def test_input_strings_are_accepted_or_refused_in_one_line(scratch: Path, text: str) -> None:
    try:
        spec = parse_input(text)
    except UsageError as exc:
        assert exc.exit_code == 2
        spec = None
    line = one_line_or_ok(build(scratch, f"{scratch / 'm.py'}:build", "--input", text))
    if spec is not None:
        check_cases(spec)
    else:
        assert ACCEPTED not in line, line


@SETTINGS
@given(dtype=st.sampled_from(DTYPES), low=NUMBER, high=NUMBER, axes=st.sampled_from(["0", "0,1", ""]))
def test_ranges_are_refused_or_give_cases_inside_them(dtype: str, low: Any, high: Any, axes: str) -> None:
    try:
        spec = parse_input(f"x:2x3:{dtype}:dyn={axes}:range={low},{high}")
    except UsageError as exc:
        assert exc.exit_code == 2 and "\n" not in exc.line()
        return
    assert spec.range is not None and spec.range[0] < spec.range[1]
    check_cases(spec)


# --- pack.yaml documents --------------------------------------------------------------------------------------------

SCALAR = st.none() | st.booleans() | NUMBER | st.text(max_size=8)
ANY = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3))
SPEC_INPUT = st.fixed_dictionaries(
    {"name": NAME, "shape": st.lists(st.integers(-1, 9), min_size=0, max_size=4)},
    optional={
        "dtype": DTYPE,
        "dynamic_axes": st.lists(st.integers(-1, 4), max_size=3),
        "range": st.lists(VALUE, min_size=1, max_size=3),
    },
)
WELL_FORMED_INPUT = st.fixed_dictionaries(
    {"name": st.sampled_from(["x", "mask", "ids"]), "shape": st.lists(st.integers(1, 4), min_size=1, max_size=3)},
    optional={
        "dtype": st.sampled_from(DTYPES),
        "range": st.lists(VALUE, min_size=2, max_size=2),
    },
)
SPEC = st.fixed_dictionaries(  # each field mostly usable, sometimes at an edge: most documents reach the plan's end
    {
        "inputs": st.lists(WELL_FORMED_INPUT, min_size=1, max_size=2, unique_by=lambda i: i["name"])
        | st.lists(SPEC_INPUT, max_size=3)
    },
    optional={
        "batch_sizes": st.sampled_from([[1], [1, 4], [2, 3], [1.0], [0], [4, 4], [2**40]]),
        "tolerance": st.dictionaries(st.sampled_from(["atol", "rtol"]), st.sampled_from([1e-4, 0.01, 0, *EDGES]), max_size=2),
        "seed": st.sampled_from([0, 7, 2**32 - 1, 2**32, -1, 3.0, 2**70]),
        "opset": st.sampled_from([17, 9, 23, 17.0, 8]),
        "formats": st.sampled_from([["onnx"], ["onnx", "pt2"], ["tflite"]]),
        "outputs": st.lists(st.fixed_dictionaries({"name": st.just("y")}, optional={"atol": VALUE}), max_size=1),
        "variants": st.fixed_dictionaries({"kinds": st.just(["int8-dynamic"])}, optional={"min_speedup": VALUE}),
        "postprocessing": st.dictionaries(st.text(max_size=6), ANY, max_size=3),
        "task": st.sampled_from(["generic", "image-classification", "nonsense"]),
    },
)


@SETTINGS
@given(document=SPEC | SPEC.map(lambda d: {**d, "unknown": 1}) | ANY, raw=st.booleans())
def test_spec_documents_are_accepted_or_refused_in_one_line(scratch: Path, document: Any, raw: bool) -> None:
    if isinstance(document, dict):
        document = {"source": f"{scratch / 'm.py'}:build", **document}
    path = scratch / "pack.yaml"
    path.write_text(json.dumps(document) if raw else yaml.safe_dump(document, allow_unicode=True))  # JSON is YAML too
    if ACCEPTED in one_line_or_ok(build(scratch, "--spec", str(path))):
        from packager.build.plan import resolve

        check_plan(resolve(None, str(path), {}))


BASE_SPEC: dict[str, Any] = {
    "inputs": [{"name": "x", "shape": [2, 3], "dtype": "int64", "range": [0, 10]}],
    "outputs": [{"name": "y", "atol": 0.1}],
    "batch_sizes": [1, 2],
    "tolerance": {"atol": 1e-4, "rtol": 1e-3},
    "seed": 0,
    "opset": 17,
    "preprocessing": {"max_pixels": 1000},
    "variants": {
        "kinds": ["int8-dynamic"],
        "min_speedup": 1.1,
        "tolerances": {"int8-dynamic": {"atol": 0.1}},
        "agreement": {"cosine": 0.9},
    },
}
NUMERIC_FIELDS = [
    "inputs.0.shape.1", "inputs.0.range.0", "inputs.0.range.1", "inputs.0.dynamic_axes", "outputs.0.atol", "batch_sizes.1",
    "tolerance.atol", "tolerance.rtol", "seed", "opset", "preprocessing.max_pixels", "variants.min_speedup",
    "variants.tolerances.int8-dynamic.atol", "variants.agreement.cosine",
]  # fmt: skip


def put(document: Any, path: str, value: Any) -> Any:
    """`document` (a deep copy) with the value at a dotted path replaced."""
    document = json.loads(json.dumps(document))
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return document


@SETTINGS
@given(field=st.sampled_from(NUMERIC_FIELDS), value=VALUE | st.sampled_from([[0, 0], [-1], "1", True, None]))
def test_every_number_in_a_spec_is_refused_or_usable(scratch: Path, field: str, value: Any) -> None:
    """One field of a usable spec set to any number (nan, inf, huge, negative, a fraction) or a wrong type."""
    path = scratch / "numbers.yaml"
    path.write_text(yaml.safe_dump(put({"source": f"{scratch / 'm.py'}:build", **BASE_SPEC}, field, value)))
    if ACCEPTED in one_line_or_ok(build(scratch, "--spec", str(path))):
        from packager.build.plan import resolve

        check_plan(resolve(None, str(path), {}))


# --- calibration files ----------------------------------------------------------------------------------------------

INPUTS = [TensorSpec("x", (2, 3)), TensorSpec("mask", (2, 3), "int64", (0, 1))]
NP_DTYPE = st.sampled_from(["float32", "float64", "int64", "int32", "uint8", "bool", ">f4", "U3", "c8"])


def filled(shape: tuple[int, ...], dtype: str, fill: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # nan and inf cast to an integer dtype: any value will do
        return np.full(shape, fill).astype(dtype)


ARRAY = st.builds(
    filled, st.lists(st.integers(0, 4), max_size=3).map(tuple), NP_DTYPE, st.sampled_from([0, 1, float("nan"), float("inf")])
)


def corrupt(draw: Callable[..., Any], data: bytes) -> bytes:
    how = draw(st.sampled_from(["none", "none", "truncate", "splice"]))
    if how == "truncate":
        return data[: draw(st.integers(0, len(data)))]
    if how == "splice":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at + 8 :]
    return data


@SETTINGS
@given(data=st.data())
def test_calibration_files_are_accepted_or_refused_in_one_line(scratch: Path, data: Any) -> None:
    inputs = INPUTS[: data.draw(st.integers(1, 2))]
    buffer = io.BytesIO()
    if data.draw(st.booleans()):
        np.save(buffer, data.draw(ARRAY))
    else:
        names = st.sampled_from(["x", "mask", "y", "x.npy", "../x", "ñ"])
        np.savez(buffer, **data.draw(st.dictionaries(names, ARRAY, max_size=3)))
    path = scratch / "cal.bin"
    path.write_bytes(corrupt(data.draw, buffer.getvalue()))
    try:
        arrays = read_calibration(path, inputs)
    except UsageError as exc:
        assert exc.exit_code == 2 and "\n" not in exc.line()
    else:
        assert list(arrays) == [i.name for i in inputs]
        assert all(a.dtype == np.dtype(i.dtype) and a.size for i, a in zip(inputs, arrays.values(), strict=True))
    declared = [arg for i in inputs for arg in ("--input", f"{i.name}:2x3:{i.dtype}:dyn={','.join(map(str, i.dynamic_axes))}")]
    source = f"{scratch / 'm.py'}:build"
    one_line_or_ok(build(scratch, source, *declared, "--variants", "int8-static", "--calibration", str(path)))


# --- manifests and reports of any nesting ---------------------------------------------------------------------------


def nested_text(depth: int, flow: bool, leaf: str) -> str:
    if flow:
        return "{a: " * depth + leaf + "}" * depth
    return "\n".join("  " * i + "a:" for i in range(depth)) + "\n" + "  " * depth + leaf + "\n"


@settings(max_examples=25, deadline=None, database=None)
@given(depth=st.integers(1, 200), flow=st.booleans(), where=st.sampled_from(["top", "spec", "status"]))
def test_manifests_of_any_nesting_are_checked_or_refused_in_one_line(scratch: Path, depth: int, flow: bool, where: str) -> None:
    head = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: m}\n"
    body = nested_text(depth, flow, "1")
    text = body if where == "top" else head + f"{where}:" + (" " + body if flow else "\n" + _indent(body))
    (scratch / "m.yaml").write_text(text)
    line = one_line_or_ok(invoke("check-manifest", str(scratch / "m.yaml")), codes=(3,))
    assert ("nested more than 64" in line) == (depth + (where != "top") > 64), (depth, line)


def _indent(text: str) -> str:
    return "".join("  " + line + "\n" for line in text.splitlines())


@pytest.fixture(scope="module")
def report_copy(built: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("nested-report") / "1"
    shutil.copytree(built("tiny"), folder)
    return folder, json.loads((folder / "report.json").read_text())


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.integers(1, 400).flatmap(lambda d: st.just(json.loads("[" * d + "]" * d))),
    key=st.sampled_from(["export", "inputs", "name"]),
)
def test_reports_of_any_nesting_are_refused_in_one_line(report_copy: tuple[Path, dict[str, Any]], value: Any, key: str) -> None:
    folder, report = report_copy
    (folder / "report.json").write_text(json.dumps({**report, key: value}))
    for command in ("verify", "inspect"):
        one_line_or_ok(invoke(command, str(folder)), codes=(3,))


def test_zip_members_named_like_paths_are_never_extracted(scratch: Path) -> None:
    """read_calibration opens members by the input's name only: a member named `../x.npy` is never looked at."""
    path = scratch / "escape.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../x.npy", b"\x93NUMPY")
    with pytest.raises(UsageError, match="has no array 'x'"):
        read_calibration(path, INPUTS[:1])
