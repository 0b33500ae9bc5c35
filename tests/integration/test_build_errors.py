"""Build failures that need a whole build, a second process, a signal or a resource limit: the documented exit
code, one readable line, nothing half-written; and a few real builds of `--input` strings the plan accepts
(hypothesis): built, or refused by the gate in one line, never exit 1. (Inputs refused before any export:
tests/unit/test_build_input_errors.py and tests/unit/test_input_properties.py.)"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from packager.console import on_purpose
from packager.registry import DTYPES
from tests.helpers import ROOT
from tests.helpers.cli import PACK, one_error_line, run_pack, spawn, spawn_pack, wait_for_stderr
from tests.helpers.store import model_file, no_leftovers


def _one_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    return one_error_line(code, proc.returncode, proc.stderr)


def test_real_weights_are_used_and_recorded(tmp_path: Path) -> None:
    import torch

    from packager.registry import create_model

    torch.manual_seed(123)
    model = create_model("tiny")
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "ckpt.pth")
    proc = run_pack(
        "build", "tiny", "--weights", str(tmp_path / "ckpt.pth"), "--store", str(tmp_path / "s"), "--json", "--iterations", "0"
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["weights"]["random"] is False and len(report["weights"]["sha256"]) == 64
    assert not any("random weights" in w for w in report["warnings"])
    folder = tmp_path / "s" / "tiny" / "1"
    x = np.load(folder / "samples/input.input.npy")
    model.eval()
    expected = np.load(folder / "samples/output.logits.npy")
    np.testing.assert_allclose(model(torch.from_numpy(x)).detach().numpy(), expected, atol=1e-6)


FLAT = """
import torch
from torch import nn

class Flat(nn.Module):
    def forward(self, x):
        n = int(x.shape[0])
        return x.reshape(n, -1).cumsum(0)

def build():
    return Flat()
"""


def test_trace_only_right_at_traced_batch_fails_the_gate(tmp_path: Path) -> None:
    """int(x.shape[0]) is baked into a trace: right at batch 1, wrong at 4. Forcing trace must fail (exit 3)."""
    src = model_file(tmp_path, FLAT)
    store = tmp_path / "s"
    line = _one_line(run_pack("build", f"{src}:build", "--input", "x:1x3x4", "--torchscript", "trace", "--store", str(store)), 3)
    assert "torchscript: the TorchScript trace does not match eager" in line and "at batch 1" in line
    no_leftovers(store, "m")
    # auto: the tracer's warning makes pack script the model instead, and both exports then pass at every batch size
    proc = run_pack("build", f"{src}:build", "--input", "x:1x3x4", "--store", str(store), "--json", "--iterations", "0")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["export"]["torchscript"]["method"] == "script"
    assert report["validation"]["onnx"]["passed"] and any("scripted instead" in w for w in report["warnings"])


def test_dropout_module_in_train_mode_is_put_in_eval(tmp_path: Path) -> None:
    src = model_file(
        tmp_path,
        "from torch import nn\n"
        "def build():\n    m = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))\n    m.train()\n    return m\n",
    )
    proc = run_pack("build", f"{src}:build", "--input", "x:1x8", "--store", str(tmp_path / "s"), "--iterations", "0")
    assert proc.returncode == 0, proc.stderr


def test_model_files_as_source(tmp_path: Path) -> None:
    import torch

    from packager.registry import create_model

    model = create_model("tiny").eval()
    with on_purpose("torch.jit.trace"):  # a TorchScript file as users bring one
        torch.jit.trace(model, torch.zeros(1, 3, 32, 32)).save(str(tmp_path / "scripted.pt"))
    torch.save(model, tmp_path / "pickled.pt")
    store = str(tmp_path / "s")
    scripted, pickled = str(tmp_path / "scripted.pt"), str(tmp_path / "pickled.pt")
    proc = run_pack("build", scripted, "--input", "input:1x3x32x32", "--store", store, "--json", "--iterations", "0")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["weights"]["file"] == "scripted.pt"
    line = _one_line(run_pack("build", pickled, "--input", "input:1x3x32x32", "--store", store), 2)
    assert "--unsafe-load" in line
    proc = run_pack("build", pickled, "--input", "input:1x3x32x32", "--unsafe-load", "--store", store, "--iterations", "0")
    assert proc.returncode == 0, proc.stderr


def test_disk_full_during_write_keeps_nothing(tmp_path: Path) -> None:
    """A file-size limit makes writes fail with EFBIG, as a full disk would: exit 5, no partial version."""
    store = tmp_path / "s"
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (8000, 8000))\n"
        "from packager.cli import main\n"
        f"main(['build', 'tiny', '--store', {str(store)!r}, '--iterations', '0'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    line = _one_line(proc, 5)
    assert "disk full" in line
    no_leftovers(store)


def test_concurrent_build_of_same_model_is_refused_by_the_lock(tmp_path: Path) -> None:
    store = tmp_path / "s"
    (store / "tiny").mkdir(parents=True)
    fd = os.open(store / "tiny" / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        line = _one_line(run_pack("build", "tiny", "--store", str(store)), 2)
        assert "another pack process is writing" in line
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert run_pack("build", "tiny", "--store", str(store), "--iterations", "0").returncode == 0


def test_two_builds_at_once_leave_one_good_version(tmp_path: Path) -> None:
    store = tmp_path / "s"
    procs = [spawn([*PACK, "build", "tiny", "--store", str(store), "--iterations", "0"]) for _ in range(2)]
    results = [(*p.communicate(timeout=300), p.returncode) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[2] == 2)[1]
    assert "another pack process is writing" in loser or "already exists" in loser
    report = json.loads((store / "tiny/1/report.json").read_text())
    for rel, digest in report["sha256"].items():
        assert hashlib.sha256((store / "tiny/1" / rel).read_bytes()).hexdigest() == digest


def test_ctrl_c_leaves_no_partial_version(tmp_path: Path) -> None:
    store = tmp_path / "s"
    proc = spawn_pack("build", "tiny", "--store", str(store))
    try:
        wait_for_stderr(proc, "capturing the program with torch.export")  # seconds of work left: the compiler stack loads
        assert (store / "tiny").is_dir() and any(p.name.startswith(".tmp") for p in (store / "tiny").iterdir())
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    no_leftovers(store)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = run_pack("build", "tiny", "--input", "input:1x4x32x32", "--store", str(tmp_path), "--debug")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


# --- inputs the plan accepts, built for real (the plan's own checks: tests/unit/test_input_properties.py) ------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("accepted-inputs")


SUM = """
import torch
from torch import nn

class Sum(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        return (x.to(torch.float32) * self.w).sum(-1, keepdim=True)

def build():
    return Sum()
"""
INT_DTYPES = {"int64": (-(2**63), 2**63 - 1), "int32": (-(2**31), 2**31 - 1), "int8": (-128, 127), "uint8": (0, 255)}


@st.composite
def declared_input(draw: Callable[..., Any]) -> str:
    """A well-formed `--input` with any dtype, 1 to 3 small axes and, sometimes, any range its dtype accepts."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = "x".join(map(str, draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))))
    if dtype in INT_DTYPES and draw(st.booleans()):
        least, most = INT_DTYPES[dtype]
        low = draw(st.integers(least, most))
        return f"x:{shape}:{dtype}:range={low},{draw(st.integers(low + 1, most + 1))}"
    if dtype.startswith("float") and draw(st.booleans()):
        low, high = sorted(draw(st.lists(st.floats(-1e4, 1e4), min_size=2, max_size=2, unique=True)))
        return f"x:{shape}:{dtype}:range={low},{high}"
    return f"x:{shape}:{dtype}"


@settings(max_examples=4, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=declared_input())
def test_accepted_inputs_build_or_fail_in_one_line(scratch: Path, text: str) -> None:
    """A handful of real builds (TorchScript only, nothing measured): an input the plan accepts is built, or refused
    by the gate in one line (exit 3: an int64 range can overflow float32 arithmetic), never exit 1."""
    (scratch / "sum.py").write_text(SUM)
    args = ["build", f"{scratch / 'sum.py'}:build", "--input", text, "--formats", "torchscript", "--iterations", "0"]
    proc = run_pack(*args, "--store", str(scratch / "built"), "--force")
    if proc.returncode != 0:
        one_error_line(3, proc.returncode, proc.stderr)
