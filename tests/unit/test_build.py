"""What `pack build` records, on the session's tiny build (built in-process once): the report's contract, the
samples, the exports' metadata and dynamic batch, per-format measurements. (Through the real CLI, with --json and
the summary table: tests/integration/test_build.py.)"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest


@pytest.fixture
def tiny(built: Callable[[str], Path]) -> tuple[Path, dict]:
    folder = built("tiny")
    return folder, json.loads((folder / "report.json").read_text())


def test_report_has_the_keys_ci_relies_on(tiny: tuple[Path, dict]) -> None:
    folder, report = tiny
    assert report["name"] == "tiny" and report["version"] == "1" and report["pack_report"] == 2
    assert report["artifacts"] == {"torchscript": "model.pt", "onnx": "model.onnx", "pt2": "model.pt2"}
    assert {f: o["status"] for f, o in report["formats"].items()} == {"torchscript": "passed", "onnx": "passed", "pt2": "passed"}
    for fmt in ("torchscript", "onnx", "pt2"):
        v = report["validation"][fmt]
        assert v["passed"] is True
        assert 0 <= v["max_abs_error"] < 1e-5 and v["max_rel_error"] >= 0
        assert {c["batch"] for c in v["checks"]} == {1, 4}
    assert report["samples"]["inputs"] == ["samples/input.input.npy"]
    assert report["samples"]["outputs"] == ["samples/output.logits.npy"]
    for rel, digest in report["sha256"].items():
        assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == digest
    assert {"model.pt", "model.onnx", "samples/input.input.npy", "labels.txt"} <= set(report["sha256"])
    assert "report.json" not in report["sha256"]
    weights = report["weights"]
    assert weights["random"] is True and weights["initialised_by"] == "pack" and weights["seed"] == 0
    assert len(weights["state_dict_sha256"]) == 64
    assert any("random weights" in w for w in report["warnings"])
    for key in ("pack", "torch", "onnx", "onnxruntime"):
        assert report["versions"][key]
    assert report["inputs"][0] == {"name": "input", "shape": [1, 3, 32, 32], "dtype": "float32", "dynamic_axes": [0]}
    assert report["outputs"][0]["shape"] == [1, 10]
    gate = report["outputs"][0]["gate"]
    assert gate["scale"] > 0 and gate["rms_limit"] == pytest.approx(report["outputs"][0]["rtol"] / 10)
    assert report["binding"] == "inputs passed by name"  # forward(self, input)


def test_samples_are_the_eager_outputs(tiny: tuple[Path, dict]) -> None:
    import torch

    folder, report = tiny
    x = np.load(folder / report["samples"]["inputs"][0])
    y = np.load(folder / report["samples"]["outputs"][0])
    assert x.shape == (1, 3, 32, 32) and y.shape == (1, 10)
    ts = torch.jit.load(str(folder / "model.pt"))
    out = ts(torch.from_numpy(x))  # one tensor, as the model returns it: model.pt is a drop-in model
    assert isinstance(out, torch.Tensor) and report["calling"] == {"args": ["input"], "returns": "tensor"}
    np.testing.assert_allclose(out.detach().numpy(), y, atol=1e-5)


def test_exports_carry_metadata_and_dynamic_batch(tiny: tuple[Path, dict]) -> None:
    folder, _ = tiny
    proto = onnx.load(str(folder / "model.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["pack.name"] == "tiny" and meta["pack.version"] == "1"
    assert json.loads(meta["pack.preprocessing"])["mean"] == [0.5, 0.5, 0.5]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    with zipfile.ZipFile(folder / "model.pt") as zf:
        extra = [n for n in zf.namelist() if n.endswith("extra/pack.json")]
        assert extra and json.loads(zf.read(extra[0]))["outputs"] == ["logits"]


def test_performance_is_recorded_per_format_and_batch(tiny: tuple[Path, dict]) -> None:
    _, report = tiny
    assert set(report["performance"]) == {"eager", "torchscript", "onnx", "pt2"}
    for fmt in report["performance"]:
        for batch in ("1", "4"):
            p = report["performance"][fmt][batch]
            assert p["iterations"] == 2 and p["batch"] == int(batch)  # the session build asks for 2 timed runs
            assert p["p50_ms"] > 0 and p["p95_ms"] >= p["p50_ms"] and p["throughput_per_s"] > 0


def test_measure_is_bounded_by_iterations_and_a_time_cap() -> None:
    import time

    from packager.build.measure import measure

    calls: list[int] = []

    def runner(arrays: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(1)
        return arrays

    result = measure(runner, [np.zeros(1)], batch=4, iterations=5, warmup=2)
    assert result["iterations"] == 5 and len(calls) == 7 and result["warmup"] == 2
    calls.clear()

    def slow(arrays: list[np.ndarray]) -> list[np.ndarray]:
        time.sleep(0.02)
        return arrays

    capped = measure(slow, [np.zeros(1)], batch=1, iterations=1000, warmup=0, time_cap_s=0.05)
    assert 3 <= capped["iterations"] < 1000  # at least 3 runs, then the time cap stops it


def test_measure_all_is_time_boxed_and_says_what_is_stable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget bounds the whole measurement; a steady runner stops early as stable, a noisy one is marked. The
    runners advance a fake clock, so the test does not depend on the machine's load."""
    import itertools
    from types import SimpleNamespace

    from packager.build import measure as measure_module
    from packager.build.measure import Cell, measure_all

    clock = [0.0]
    monkeypatch.setattr(measure_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def steady(arrays: list[np.ndarray]) -> list[np.ndarray]:
        clock[0] += 0.002
        return arrays

    delays = itertools.cycle([0.001, 0.02])

    def noisy(arrays: list[np.ndarray]) -> list[np.ndarray]:
        clock[0] += next(delays)
        return arrays

    zeros: list[np.ndarray] = [np.zeros(1)]
    cells: list[Cell] = [("steady", 1, steady, zeros), ("noisy", 1, noisy, zeros)]
    results, totals = measure_all(cells, budget_s=0.3, iterations=1000, warm={"steady"})
    assert clock[0] <= 0.3 + 0.02  # the budget, overrun by one run at most
    steady_fig, noisy_fig = results["steady"]["1"], results["noisy"]["1"]
    assert steady_fig["stable"] and steady_fig["iterations"] < 50 and steady_fig["warmup"] == 0
    assert not noisy_fig["stable"] and noisy_fig["spread_pct"] > 10 and noisy_fig["warmup"] == 1
    assert totals["cells"] == 2 and totals["stable"] == 1
