"""`pack build` of the tiny model: what it records, on the session's tiny build (built in-process once: the report's
contract, the samples, the exports' metadata and dynamic batch, per-format measurements), and through the real command
line (JSON on stdout and logs on stderr, the summary table, kept versions and --force, byte-identical rebuilds,
--slim). (The measurement's bounds on made-up runners: tests/unit/test_measure.py.)"""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from packager.console import on_purpose
from tests.helpers.cli import run_pack


@pytest.fixture(scope="module")
def cli_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, subprocess.CompletedProcess[str]]:
    store = tmp_path_factory.mktemp("tiny-store")
    proc = run_pack("build", "tiny", "--store", str(store), "--json")
    assert proc.returncode == 0, proc.stderr
    return store, json.loads(proc.stdout), proc


def test_json_on_stdout_logs_on_stderr(cli_build: tuple[Path, dict, subprocess.CompletedProcess[str]]) -> None:
    store, report, proc = cli_build
    assert proc.stdout.lstrip().startswith("{") and proc.stdout.rstrip().endswith("}")
    assert "exporting onnx" in proc.stderr and "pack: [" in proc.stderr
    folder = store / "tiny" / "1"
    assert report["path"] == str(folder.resolve())
    assert json.loads((folder / "report.json").read_text())["sha256"] == report["sha256"]
    for fmt in ("eager", "torchscript", "onnx", "pt2"):  # the default: 10 timed runs (at least 3 within the time cap)
        assert report["performance"][fmt]["4"]["iterations"] >= 3


def test_summary_table_and_random_weights_warning(tmp_path: Path) -> None:
    proc = run_pack("build", "tiny", "--store", str(tmp_path), "--iterations", "3")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: random weights (seed 0)" in proc.stdout
    assert "onnx" in proc.stdout and "p95 ms" in proc.stdout and "pass" in proc.stdout


def test_existing_version_is_kept_unless_force(cli_build: tuple[Path, dict, subprocess.CompletedProcess[str]]) -> None:
    store, _, _ = cli_build
    folder = store / "tiny" / "1"
    before = (folder / "model.onnx").stat().st_mtime_ns
    proc = run_pack("build", "tiny", "--store", str(store))
    assert proc.returncode == 2 and "already exists" in proc.stderr and "--force" in proc.stderr
    assert (folder / "model.onnx").stat().st_mtime_ns == before
    proc = run_pack("build", "tiny", "--store", str(store), "--version", "2", "--json", "--iterations", "0")
    assert proc.returncode == 0 and json.loads(proc.stdout)["version"] == "2"
    proc = run_pack("build", "tiny", "--store", str(store), "--version", "2", "--force", "--seed", "3", "--iterations", "0")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((store / "tiny" / "2" / "report.json").read_text())["seed"] == 3
    assert sorted(p.name for p in (store / "tiny").iterdir() if not p.name.startswith(".")) == ["1", "2"]
    assert not [p for p in (store / "tiny").iterdir() if p.name.startswith((".tmp", ".old"))]


def test_same_inputs_give_identical_exports(tmp_path: Path) -> None:
    """Two builds of the same model with the same seed give byte-identical exports, samples, .mar, config.properties
    and Triton repository files."""
    a, b = tmp_path / "a", tmp_path / "b"
    for store in (a, b):
        assert run_pack("build", "tiny", "--store", str(store), "--iterations", "0").returncode == 0
    ra = json.loads((a / "tiny/1/report.json").read_text())["sha256"]
    rb = json.loads((b / "tiny/1/report.json").read_text())["sha256"]
    assert {"torchserve/tiny.mar", "torchserve/config.properties", "triton/tiny/config.pbtxt", "triton/tiny/1/model.py"} <= set(
        ra
    )
    assert ra == rb


def test_slim_option_simplifies_and_still_passes(tmp_path: Path) -> None:
    proc = run_pack("build", "tiny", "--slim", "--store", str(tmp_path), "--json", "--iterations", "0")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["export"]["onnx"]["slim"] is True and report["validation"]["onnx"]["passed"]


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
    assert report["inputs"][0] == {
        "name": "input",
        "shape": [1, 3, 32, 32],
        "dtype": "float32",
        "dynamic_axes": [0],
        "fill": {"values": "random", "rule": "random values of the dtype"},
    }
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
    with on_purpose("torch.jit.load"):
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
