"""Build reports for tests that need one without a build: a valid BuildReport from a few fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from packager.report.build_report import BuildReport

DEFAULTS: dict[str, Any] = {
    "pack_report": 2,
    "name": "m",
    "version": "1",
    "task": "generic",
    "source": {"kind": "builtin", "ref": "m"},
    "weights": {"random": True},
    "versions": {},
    "device": "cpu",
    "batch_sizes": [1],
    "seed": 0,
    "tolerance": {"atol": 1e-4, "rtol": 1e-3},
    "samples": {"batch": 1, "inputs": [], "outputs": []},
    "inputs": [{"name": "x", "shape": [1, 3], "dtype": "float32", "dynamic_axes": [0]}],
    "outputs": [{"name": "y", "shape": [1, 3], "dtype": "float32", "dynamic_axes": [0]}],
    "artifacts": {"onnx": "model.onnx"},
    "formats": {"onnx": {"status": "passed", "file": "model.onnx"}},
    "sha256": {},
}


# A sequence model's report fields (a batch and a length axis on both tensors), for tests of what the targets write.
SEQUENCE_MODEL: dict[str, Any] = {
    "name": "m",
    "version": "2",
    "batch_sizes": [1, 4],
    "inputs": [{"name": "ids", "shape": [1, 16], "dtype": "int64", "dynamic_axes": [0, 1]}],
    "outputs": [{"name": "logits", "shape": [1, 16, 5], "dtype": "float32", "dynamic_axes": [0, 1]}],
}


def make_report(**fields: Any) -> BuildReport:
    """A report with these fields (`inputs` and `outputs` as the JSON lists of report.json) over valid defaults."""
    return BuildReport.from_dict({**DEFAULTS, **fields}, "a test report")


def rerecord(folder: Path, *relative: str) -> None:
    """Record the current digests of files a test changed on purpose inside a build folder, so that the build passes
    the digest check and what the test broke is met by the check it is about (a smoke test, a handler)."""
    report = BuildReport.load(folder)
    report.save(folder, rewritten=list(relative))
