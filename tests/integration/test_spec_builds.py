"""Builds from a pack.yaml: a user model with spec-declared int inputs and two outputs, and per-output tolerances as
the gate. (Spec errors and precedence: tests/unit/test_spec.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.helpers.cli import run_pack
from tests.helpers.specs import SPEC, write_spec


def test_spec_with_int_inputs_and_two_outputs_builds(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC)
    store = tmp_path / "store"
    proc = run_pack("build", "--spec", str(spec), "--store", str(store), "--json", "--iterations", "2")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["name"] == "tagger"
    assert [o["name"] for o in report["outputs"]] == ["logits", "pooled"]
    assert report["outputs"][0]["shape"] == [1, 16, 5]
    assert report["validation"]["onnx"]["passed"] and report["validation"]["torchscript"]["passed"]
    assert {c["batch"] for c in report["validation"]["onnx"]["checks"]} == {1, 3}
    tokens = np.load(store / "tagger" / "1" / report["samples"]["inputs"][0])
    assert tokens.dtype == np.int64 and tokens.min() >= 0 and tokens.max() < 1000
    # ONNX keeps both declared dynamic axes of `tokens`
    import onnx

    graph = onnx.load(str(store / "tagger" / "1" / "model.onnx")).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_param


def test_per_output_tolerance_is_the_gate(tmp_path: Path) -> None:
    """A zero tolerance on the output fails ONNX on it: with `formats: [onnx]` the build fails (exit 3); with the
    default formats ONNX is recorded as failed and the exact formats are kept. The spec's tolerance is the gate."""
    spec = tmp_path / "pack.yaml"
    spec.write_text("source: tiny\nformats: [onnx]\noutputs:\n  - {name: logits, atol: 0, rtol: 0}\n")
    proc = run_pack("build", "--spec", str(spec), "--store", str(tmp_path / "s"), "--iterations", "0")
    assert proc.returncode == 3, proc.stderr
    assert "error: onnx: no ONNX exporter produced a file that passes" in proc.stderr and "atol 0 + rtol 0" in proc.stderr
    assert not (tmp_path / "s" / "tiny" / "1").exists()
    spec.write_text("source: tiny\noutputs:\n  - {name: logits, atol: 0, rtol: 0}\n")
    proc = run_pack("build", "--spec", str(spec), "--store", str(tmp_path / "s"), "--iterations", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["formats"]["onnx"]["status"] == "failed" and "onnx" not in report["artifacts"]
    assert any(w.startswith("onnx failed:") for w in report["warnings"])
