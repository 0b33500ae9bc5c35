"""Issue 7, build side: data-dependent control flow, wrong input dtype, a failed rebuild leaves the good version,
security defaults of builds and archives. (More build cases live in test_build_errors.py, test_spec.py and
test_verify_inspect.py; docs/reliability.md lists them all.)"""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import run_pack

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


def _one_line(proc, code):
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return errors[0]


def _spec(tmp_path: Path, source: str, extra: str = "") -> Path:
    (tmp_path / "branchy.py").write_text(textwrap.dedent(source))
    spec = tmp_path / "pack.yaml"
    spec.write_text(
        "name: branchy\nsource: branchy.py:build\ninputs:\n  - {name: x, shape: [1, 8]%s}\noutputs:\n  - {name: y}\n" % extra
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
    scripted = torch.jit.load(str(folder / "model.pt"))
    for batch in (1, 4):
        for sign in (1.0, -1.0):
            x = (sign * np.linspace(0.1, 1.0, batch * 8, dtype=np.float32)).reshape(batch, 8)
            want = _eager(x)
            np.testing.assert_allclose(session.run(None, {"x": x})[0], want, atol=1e-6)
            np.testing.assert_allclose(scripted(torch.from_numpy(x))[0].numpy(), want, atol=1e-6)


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


def test_wrong_input_dtype(tmp_path):
    line = _one_line(run_pack("build", "tiny", "--input", "input:1x3x32x32:int64", "--store", str(tmp_path / "s")), 2)
    assert "the model failed on example inputs at batch 1 (input [1, 3, 32, 32] int64)" in line
    assert not (tmp_path / "s" / "tiny" / "1").exists()


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_failed_forced_rebuild_keeps_the_previous_good_version(built, tmp_path):
    """--force with weights that do not load, and --force with inputs the model rejects: v1 stays byte-identical."""
    import shutil

    store = tmp_path / "s"
    shutil.copytree(built("tiny"), store / "tiny" / "1")
    before = _digests(store / "tiny" / "1")
    (tmp_path / "bad.pt").write_bytes(bytes(range(256)) * 8)  # fixed garbage: tests must not depend on luck
    _one_line(run_pack("build", "tiny", "--force", "--weights", str(tmp_path / "bad.pt"), "--store", str(store)), 2)
    _one_line(run_pack("build", "tiny", "--force", "--input", "input:1x4x32x32", "--store", str(store)), 2)
    assert _digests(store / "tiny" / "1") == before
    assert sorted(p.name for p in (store / "tiny").iterdir() if p.name != ".lock") == ["1"]


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
    proc = run_pack("build", "tiny", "--weights", str(tmp_path / "ckpt.pt"), "--unsafe-load", "--store", store, "--iterations", "0")
    assert proc.returncode == 0, proc.stderr

