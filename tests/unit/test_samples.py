"""The recorded sample and its comparison through the gate (packager/report/samples.py), as verify --parity, the deploy
smoke tests and bench's eager check use it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from packager.registry import Tolerance
from packager.report.build_report import BuildReport, InputRecord, OutputRecord, SampleRecord
from packager.report.samples import load_sample, verdict


def _build(folder: Path, dynamic_axes: list[int], out_tolerance: dict[str, float] | None = None) -> BuildReport:
    (folder / "samples").mkdir()
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    np.save(folder / "samples/input.x.npy", x)
    np.save(folder / "samples/output.y.npy", x * 3)
    tolerance = {"atol": 1e-3, "rtol": 1e-2, **(out_tolerance or {})}
    return BuildReport(
        name="m",
        version="1",
        task="generic",
        source={},
        weights={"random": True},
        versions={},
        device="cpu",
        inputs=[InputRecord("x", [2, 4], "float32", dynamic_axes)],
        outputs=[OutputRecord("y", [2, 4], "float32", dynamic_axes, None, tolerance["atol"], tolerance["rtol"])],
        batch_sizes=[2],
        seed=0,
        tolerance={"atol": 1e-3, "rtol": 1e-2},
        samples=SampleRecord(2, ["samples/input.x.npy"], ["samples/output.y.npy"]),
        artifacts={},
    )


def test_sample_loads_with_the_reports_tolerances(tmp_path: Path) -> None:
    sample = load_sample(tmp_path, _build(tmp_path, [0], {"rtol": 0.5}))
    assert sample.names == ["y"] and sample.tolerances == [Tolerance(atol=1e-3, rtol=0.5)]
    assert sample.case.batch == 2 and sample.case.label == "batch 2 (the recorded sample)"
    assert not sample.unordered
    assert sample.inputs[0].shape == (2, 4)


def test_without_a_batch_axis_rows_may_come_in_another_order(tmp_path: Path) -> None:
    assert load_sample(tmp_path, _build(tmp_path, [])).unordered


def test_a_runner_that_computes_the_model_passes_and_a_wrong_one_fails(tmp_path: Path) -> None:
    sample = load_sample(tmp_path, _build(tmp_path, [0]))
    good = verdict(sample.check(lambda arrays: [arrays[0] * 3]))
    assert good["passed"] and good["outputs"][0]["output"] == "y" and "reason" not in good
    bad = verdict(sample.check(lambda arrays: [arrays[0] * 3.1]))
    assert not bad["passed"] and bad["reason"].startswith("output 'y': max abs error")
    assert bad["outputs"][0]["reason"] == bad["reason"].removeprefix("output 'y': ")


def test_outputs_received_from_a_server_are_compared_the_same_way(tmp_path: Path) -> None:
    sample = load_sample(tmp_path, _build(tmp_path, [0]))
    expected = np.load(tmp_path / "samples/output.y.npy")
    assert verdict(sample.check_outputs([expected]))["passed"]
    assert verdict(sample.check_outputs([np.zeros_like(expected)]))["passed"] is False


def test_a_runner_that_cannot_run_says_so(tmp_path: Path) -> None:
    sample = load_sample(tmp_path, _build(tmp_path, [0]))

    def broken(arrays: list[np.ndarray]) -> list[np.ndarray]:
        raise RuntimeError("session closed")

    doc = verdict(sample.check(broken))
    assert doc == {
        "passed": False,
        "outputs": [
            {
                "output": "*",
                "passed": False,
                "max_abs_error": float("inf"),
                "max_rel_error": float("inf"),
                "reason": "failed to run: RuntimeError: session closed",
            }
        ],
        "reason": "failed to run: RuntimeError: session closed",
    }
