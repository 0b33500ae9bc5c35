"""The build's record: JSON-safe values and sample files (packager/build/record.py), and the typed report
(packager/report/build_report.py): digests, schema checks, migration of version 1."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from packager.build.record import load_report, plain, write_samples
from packager.errors import UsageError, ValidationFailed
from packager.registry import TensorSpec
from packager.report.build_report import BuildReport, InputRecord, OutputRecord, SampleRecord
from packager.report.cases import Case


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
    assert record == SampleRecord(2, ["samples/input.input.npy"], ["samples/output.logits.npy", "samples/output.pooled.npy"])
    np.testing.assert_array_equal(np.load(tmp_path / "samples/output.pooled.npy"), x.sum(1))


def _report() -> BuildReport:
    return BuildReport(
        name="m",
        version="1",
        task="generic",
        source={"kind": "builtin", "ref": "m"},
        weights={"random": True},
        versions={"pack": "0"},
        device="cpu",
        inputs=[InputRecord("x", [1, 3], "float32")],
        outputs=[OutputRecord("y", [1, 3], "float32", gate={"scale": float("inf")})],
        batch_sizes=[1],
        seed=0,
        tolerance={"atol": 1e-4, "rtol": 1e-3},
        samples=SampleRecord(1, [], []),
        artifacts={"onnx": "model.onnx"},
    )


def test_report_lists_every_file_but_itself(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "triton" / "m").mkdir(parents=True)
    (tmp_path / "triton" / "m" / "config.pbtxt").write_text("name: 'm'")
    report = _report()
    report.save(tmp_path)
    assert report.sha256 == {
        "model.onnx": hashlib.sha256(b"onnx").hexdigest(),
        "provenance.json": hashlib.sha256((tmp_path / "provenance.json").read_bytes()).hexdigest(),
        "triton/m/config.pbtxt": hashlib.sha256(b"name: 'm'").hexdigest(),
    }
    written = load_report(tmp_path)
    assert written.sha256 == report.sha256 and written.outputs[0].gate["scale"] is None  # inf is written as null
    json.loads((tmp_path / "report.json").read_text())  # strict JSON
    report.save(tmp_path)  # again, with report.json present: still not listed
    assert "report.json" not in load_report(tmp_path).sha256


def test_a_report_that_is_not_what_pack_writes_is_refused_with_the_field(tmp_path: Path) -> None:
    report = _report()
    report.save(tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    for change, needle in (
        (lambda d: d.update(storageUrl=1), "Additional properties"),
        (lambda d: d["sha256"].update({"../x": "0" * 64}), "outside the build folder"),
        (lambda d: d.update(version="0"), "version"),
        (lambda d: d["inputs"][0].update(dtype="complex64"), "inputs.0.dtype"),
        (lambda d: d.update(pack_report=9), "newer than this pack"),
    ):
        broken = json.loads(json.dumps(data))
        change(broken)
        (tmp_path / "report.json").write_text(json.dumps(broken))
        with pytest.raises(ValidationFailed, match=needle.replace(".", r"\.")):
            load_report(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(ValidationFailed, match="not valid JSON"):
        load_report(tmp_path)


def test_a_version_1_report_is_migrated_on_load(tmp_path: Path) -> None:
    data = _report().to_dict()
    for key in ("formats", "cases", "binding", "export"):
        data.pop(key)
    data.update(pack_report=1, artifacts={"torchscript": "model.pt", "onnx": "model.onnx"}, weights={"random": True, "seed": 0})
    data["validation"] = {"onnx": {"passed": True, "checks": [{"batch": 1, "output": "y", "passed": True}]}}
    (tmp_path / "report.json").write_text(json.dumps(data))
    report = load_report(tmp_path)
    assert report.pack_report == 2
    assert {f: r.status for f, r in report.formats.items()} == {"torchscript": "passed", "onnx": "passed"}
    assert report.weights["initialised_by"] == "pack" and report.cases == [{"label": "batch 1", "batch": 1}]
    assert report.validation["onnx"]["checks"][0]["case"] == "batch 1"


def test_a_folder_without_report_is_not_a_build(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no report.json in"):
        load_report(tmp_path)
