"""int8-static's calibration file (packager/variants/calibration.py): a .npz with one array per input, or a plain .npy
for a one-input model; each array's header is checked against its input and against the bytes the file holds before
anything is allocated; a bad file is one line with exit 2, before a build exports anything. (Before: a plain .npy made
`pack optimize` exit 1 with a TypeError.)"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from packager.errors import UsageError, ValidationFailed
from packager.registry import TensorSpec
from packager.variants.calibration import check_calibration, read_calibration, specs
from tests.helpers.cli import invoke
from tests.helpers.reports import make_report

X = TensorSpec("x", (2, 8))
MASK = TensorSpec("mask", (2, 8), "int64")


def npy_with_header_shape(path: Path, claimed: str) -> Path:
    """A .npy whose header claims `claimed` (a shape tuple) over 8 float32 values."""
    with open(path, "wb") as fh:
        np.save(fh, np.ones(8, np.float32))
    data = path.read_bytes()
    path.write_bytes(data.replace(b"(8,)", claimed.encode().ljust(4), 1))
    return path


def test_a_plain_npy_is_the_input_of_a_one_input_model(tmp_path: Path) -> None:
    np.save(tmp_path / "cal.npy", np.arange(24, dtype=np.float32).reshape(3, 8))
    arrays = read_calibration(tmp_path / "cal.npy", [X])
    assert list(arrays) == ["x"] and arrays["x"].shape == (3, 8) and arrays["x"][2, 7] == 23
    with pytest.raises(UsageError, match=r"a \.npy holds one array and the model takes 2 inputs \(x, mask\)"):
        check_calibration(tmp_path / "cal.npy", [X, MASK])


def test_a_fortran_ordered_array_is_read_as_written(tmp_path: Path) -> None:
    values = np.asfortranarray(np.arange(16, dtype=np.float32).reshape(2, 8))
    np.savez(tmp_path / "cal.npz", x=values)
    assert np.array_equal(read_calibration(tmp_path / "cal.npz", [X])["x"], values)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_text("x,y\n1,2\n"), "is neither a .npz (numpy.savez) nor a .npy (numpy.save) file"),
        (lambda p: p.write_bytes(b""), "is neither a .npz"),
        (lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 40), "is not a readable .npz or .npy file"),
        (lambda p: np.savez(p, x=np.ones((2, 8), np.float64)), "'x' is float64 with 2 axes, the model takes float32 with 2"),
        (lambda p: np.savez(p, x=np.ones((2, 9), np.float32)), "'x' has size 9 on axis 1, which the model fixes at 8"),
        (lambda p: np.savez(p, x=np.ones((0, 8), np.float32)), "'x' has shape [0, 8]: every size must be at least 1"),
        (lambda p: np.savez(p, x=np.full((2, 8), np.nan, np.float32)), "'x' holds NaN or infinite values"),
        (lambda p: np.savez(p, x=np.array([[{"code": 1}] * 8], dtype=object)), "holds Python objects"),
        (lambda p: npy_with_header_shape(p, "(1000000000000, 8)"), "claims 32,000,000,000,000 bytes of data"),
        (lambda p: npy_with_header_shape(p, "(-1, 8)"), "'x' has shape [-1, 8]: every size must be at least 1"),
        (lambda p: npy_with_header_shape(p, "(8, 'a')"), "is not a readable .npz or .npy file"),
        (lambda p: npy_with_header_shape(p, "(8,\x00"), "is not a readable .npz or .npy file"),  # was TokenError
    ],
)
def test_bad_calibration_files_are_refused_naming_the_problem(
    tmp_path: Path, make: Callable[[Path], object], message: str
) -> None:
    path = tmp_path / "cal.npz"
    make(path)
    with pytest.raises(UsageError) as info:
        read_calibration(path, [X])
    assert message in info.value.message, info.value.message


def test_a_truncated_file_is_refused_from_its_header(tmp_path: Path) -> None:
    np.save(tmp_path / "cal.npy", np.ones((4, 8), np.float32))
    data = (tmp_path / "cal.npy").read_bytes()
    (tmp_path / "cal.npy").write_bytes(data[:-16])
    with pytest.raises(UsageError, match="'x' claims 128 bytes of data and the file holds 112"):
        check_calibration(tmp_path / "cal.npy", [X])


def test_a_zip_member_shorter_than_its_header_says_is_refused(tmp_path: Path) -> None:
    """The zip directory's size is the member's own claim: the data read is checked too."""
    np.save(tmp_path / "x.npy", np.ones((4, 8), np.float32))
    data = (tmp_path / "x.npy").read_bytes()
    with zipfile.ZipFile(tmp_path / "cal.npz", "w") as zf:
        zf.writestr("x.npy", data[:-16])
    with pytest.raises(UsageError, match="'x' claims 128 bytes of data and the file holds 112"):
        read_calibration(tmp_path / "cal.npz", [X])


def test_the_inputs_of_one_batch_have_the_same_rows(tmp_path: Path) -> None:
    np.savez(tmp_path / "cal.npz", x=np.ones((3, 8), np.float32), mask=np.ones((5, 8), np.int64))
    with pytest.raises(UsageError, match=r"different numbers of rows \(x 3, mask 5\)"):
        read_calibration(tmp_path / "cal.npz", [X, MASK])


def test_only_the_members_named_like_the_inputs_are_read(tmp_path: Path) -> None:
    path = tmp_path / "cal.npz"
    np.savez(path, x=np.ones((2, 8), np.float32))
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("../../evil.npy", b"not read")
        zf.writestr("mask.txt", b"not an array")
    assert list(read_calibration(path, [X])) == ["x"]


def test_a_build_refuses_a_bad_calibration_before_any_export(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("def build():\n    raise SystemExit('the model must not be loaded')\n")
    np.save(tmp_path / "cal.npy", np.ones((2, 8), np.float32))
    args = ["build", f"{tmp_path / 'm.py'}:build", "--input", "x:2x8", "--input", "mask:2x8:int64", "--variants"]
    result = invoke(*args, "int8-static", "--calibration", str(tmp_path / "cal.npy"), "--store", str(tmp_path / "s"))
    assert "a .npy holds one array and the model takes 2 inputs" in result.error(2)


def test_a_report_range_is_held_to_the_input_rules() -> None:
    """`pack optimize` regenerates the gate's cases from report.json: a range edited there is exit 3, not a crash."""
    report = make_report(inputs=[{"name": "x", "shape": [1, 3], "dtype": "int64", "dynamic_axes": [0], "range": [5, 1]}])
    with pytest.raises(ValidationFailed, match=r"report.json: input 'x': range \[5, 1\]"):
        specs(report)


def test_optimize_calibrates_int8_static_on_a_plain_npy(tiny_store: Path) -> None:
    """The issue's case: `pack optimize --calibration cal.npy` of a one-input build (was exit 1, TypeError)."""
    cal = tiny_store / "cal.npy"
    np.save(cal, np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32))
    args = ["optimize", "tiny", "--store", str(tiny_store), "--variants", "int8-static", "--calibration", str(cal)]
    result = invoke(*args, "--iterations", "1", "--json").json()
    (made,) = [r for r in result["results"] if r["kind"] == "int8-static"]
    assert made["gate"]["passed"] and made["info"]["calibration"] == "cal.npy", made
