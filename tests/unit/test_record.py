"""The build's record (packager/record.py): JSON-safe values, sample files, digests in report.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from packager.cases import Case
from packager.errors import UsageError
from packager.record import load_report, plain, write_report, write_samples
from packager.registry import TensorSpec


def test_plain_makes_any_report_valid_json() -> None:
    value = {
        "f": np.float32(1.5),
        "i": np.int64(7),
        "b": np.bool_(True),
        "nan": float("nan"),
        "inf": np.float64("-inf"),
        "tuple": (1, (np.int32(2), None)),
        3: Path("model.onnx"),
        "nested": {"list": [float("inf"), "x"]},
    }
    out = plain(value)
    assert out == {
        "f": 1.5,
        "i": 7,
        "b": True,
        "nan": None,
        "inf": None,
        "tuple": [1, [2, None]],
        "3": "model.onnx",
        "nested": {"list": [None, "x"]},
    }
    assert type(out["i"]) is int and type(out["b"]) is bool
    json.dumps(out, allow_nan=False)  # strict JSON: no NaN/Infinity tokens


def test_samples_are_the_first_cases_inputs_and_eager_outputs(tmp_path: Path) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    case = Case("batch 2", 2, [x], [x * 2, x.sum(1)])
    record = write_samples(tmp_path, [TensorSpec("input", (1, 3))], ["logits", "pooled"], case)
    assert record == {
        "batch": 2,
        "inputs": ["samples/input.input.npy"],
        "outputs": ["samples/output.logits.npy", "samples/output.pooled.npy"],
    }
    np.testing.assert_array_equal(np.load(tmp_path / "samples/output.pooled.npy"), x.sum(1))


def test_report_lists_every_file_but_itself(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "triton" / "m").mkdir(parents=True)
    (tmp_path / "triton" / "m" / "config.pbtxt").write_text("name: 'm'")
    report = {"name": "m", "max_abs_error": float("inf")}
    write_report(tmp_path, report)
    assert report["sha256"] == {
        "model.onnx": hashlib.sha256(b"onnx").hexdigest(),
        "triton/m/config.pbtxt": hashlib.sha256(b"name: 'm'").hexdigest(),
    }
    written = load_report(tmp_path)
    assert written["sha256"] == report["sha256"] and written["max_abs_error"] is None
    write_report(tmp_path, report)  # again, with report.json present: still not listed
    assert "report.json" not in load_report(tmp_path)["sha256"]


def test_a_folder_without_report_is_not_a_build(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no report.json in"):
        load_report(tmp_path)
