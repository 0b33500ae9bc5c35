"""Issue 7, build side: data-dependent control flow, wrong input dtype, a failed rebuild leaves the good version,
security defaults of builds and archives. (More build cases live in tests/unit/test_build_input_errors.py,
tests/unit/test_spec.py, tests/unit/test_verify_inspect.py, tests/unit/test_reliability_rebuild.py and in this tier's
test_build_errors.py, test_spec_builds.py and test_verify.py; docs/reliability.md lists them all.)"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np

from packager.console import on_purpose
from tests.helpers.cli import one_error_line, run_pack

BRANCHY = """
import torch
from torch import nn

class Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:          # data-dependent Python control flow
            return x * 2 + 1
        return x - 3

def build():
    return Branchy()
"""

# the same branch, plus a lambda: torch.jit.script cannot compile it, so no export can keep the control flow
UNSCRIPTABLE = BRANCHY.replace("return x * 2 + 1", "return (lambda t: t * 2 + 1)(x)")


def _one_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    return one_error_line(code, proc.returncode, proc.stderr)


def _spec(tmp_path: Path, source: str, extra: str = "") -> Path:
    (tmp_path / "branchy.py").write_text(textwrap.dedent(source))
    spec = tmp_path / "pack.yaml"
    spec.write_text(
        f"name: branchy\nsource: branchy.py:build\ninputs:\n  - {{name: x, shape: [1, 8]{extra}}}\noutputs:\n  - {{name: y}}\n"
    )
    return spec


def _eager(x: np.ndarray) -> np.ndarray:
    return x * 2 + 1 if x.sum() > 0 else x - 3


def test_data_dependent_branch_is_scripted_and_both_exports_keep_both_branches(tmp_path):
    """`auto` scripts the model; ONNX starts from the scripted module (an If node). Both files are right on inputs
    taking either branch, at both batch sizes, though the build's own samples took one branch only."""
    # range [0.1, 1]: every validated sample takes the positive branch; a baked trace would pass that gate
    spec = _spec(tmp_path, BRANCHY, ", range: [0.1, 1.0]")
    store = tmp_path / "s"
    proc = run_pack("build", "--spec", str(spec), "--store", str(store), "--iterations", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["export"]["torchscript"]["method"] == "script"
    assert "branches on tensor values" in report["export"]["torchscript"]["fallback_from_trace"]
    assert report["export"]["onnx"]["exporter"] == "legacy-from-script"  # the trace-based ONNX keeps one branch only
    folder = store / "branchy" / "1"
    import onnx
    import onnxruntime as ort
    import torch

    assert "If" in {n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node}
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    with on_purpose("torch.jit.load"):
        scripted = torch.jit.load(str(folder / "model.pt"))
    for batch in (1, 4):
        for sign in (1.0, -1.0):
            x = (sign * np.linspace(0.1, 1.0, batch * 8, dtype=np.float32)).reshape(batch, 8)
            want = _eager(x)
            np.testing.assert_allclose(session.run(None, {"x": x})[0], want, atol=1e-6)
            np.testing.assert_allclose(scripted(torch.from_numpy(x)).numpy(), want, atol=1e-6)  # one tensor, as the model returns


def test_forced_trace_of_a_data_dependent_branch_fails_with_exit_3(tmp_path):
    """--torchscript trace: the samples all take one branch, so the gate alone would pass a wrong trace. Refused."""
    spec = _spec(tmp_path, BRANCHY, ", range: [0.1, 1.0]")
    store = tmp_path / "s"
    line = _one_line(run_pack("build", "--spec", str(spec), "--store", str(store), "--torchscript", "trace"), 3)
    assert "branches on tensor values" in line and "--torchscript auto or script" in line
    assert not (store / "branchy" / "1").exists()


def test_unscriptable_data_dependent_branch_fails_with_exit_3(tmp_path):
    spec = _spec(tmp_path, UNSCRIPTABLE, ", range: [0.1, 1.0]")
    store = tmp_path / "s"
    proc = run_pack("build", "--spec", str(spec), "--store", str(store))
    line = _one_line(proc, 3)
    assert "branches on tensor values" in line and "torch.jit.script failed" in line
    # torch.export, the tracer and the scripting compiler all failed: their dumps stay off stderr (--debug shows them)
    assert len(proc.stderr.splitlines()) < 30 and "graph(" not in proc.stderr, proc.stderr
    assert not (store / "branchy" / "1").exists()


def test_weights_only_is_the_default_and_unsafe_load_is_opt_in(tmp_path):
    """A checkpoint holding a Python object (an argparse.Namespace, as many training scripts save) loads only with
    --unsafe-load."""
    import argparse

    import torch

    from packager.registry import create_model

    state = create_model("tiny").state_dict()
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=0.1)}, tmp_path / "ckpt.pt")
    store = str(tmp_path / "s")
    line = _one_line(run_pack("build", "tiny", "--weights", str(tmp_path / "ckpt.pt"), "--store", store), 2)
    assert "--unsafe-load" in line
    proc = run_pack(
        "build", "tiny", "--weights", str(tmp_path / "ckpt.pt"), "--unsafe-load", "--store", store, "--iterations", "0"
    )
    assert proc.returncode == 0, proc.stderr
