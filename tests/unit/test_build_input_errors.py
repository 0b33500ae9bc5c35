"""Bad build inputs that fail before any export, in-process: one readable line, the documented exit code, nothing
left behind. (Failures that need a whole build, a second process, Ctrl-C or a full disk:
tests/integration/test_build_errors.py.)"""

from __future__ import annotations

import fcntl
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.cli import invoke
from tests.helpers.store import model_file, no_leftovers

EAGER_ONLY = ("--formats", "torchscript")  # no format that needs torch.export: the eager checks come before any export


def test_weights_missing_empty_garbage_truncated(tmp_path: Path) -> None:
    import torch

    from packager.registry import create_model

    store = tmp_path / "s"

    def build_with(weights: Path) -> str:
        return invoke("build", "tiny", "--weights", str(weights), "--store", str(store)).error(2)

    assert "weights file not found" in build_with(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert "is empty" in build_with(tmp_path / "empty.pt")
    # random bytes make torch.load fail in different ways (UnpicklingError, UnicodeDecodeError, KeyError, ...):
    # several fixed blobs and a text file must all read as "not a weights file"
    blobs = [np.random.default_rng(seed).bytes(4096) for seed in (0, 17)]  # UnpicklingError, IndexError
    blobs.append(b"X" + np.random.default_rng(1).bytes(4095))  # UnicodeDecodeError
    for blob in blobs:
        (tmp_path / "garbage.pt").write_bytes(blob)
        assert "not a PyTorch weights file" in build_with(tmp_path / "garbage.pt")
    (tmp_path / "notes.pt").write_text("these are not weights\n" * 20)
    assert "not a PyTorch weights file" in build_with(tmp_path / "notes.pt")
    torch.save(create_model("tiny").state_dict(), tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in build_with(tmp_path / "cut.pt")
    no_leftovers(store)


class Evil:
    """Unpickling this runs a shell command (its __reduce__)."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch's note on the plain pickle
def test_pickle_that_runs_code_is_refused_and_does_not_run(tmp_path: Path) -> None:
    sentinel = tmp_path / "PWNED"
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"state_dict": Evil(sentinel)}, fh)
    line = invoke("build", "tiny", "--weights", str(tmp_path / "evil.pt"), "--store", str(tmp_path / "s")).error(2)
    assert "plain pickle" in line and "--unsafe-load" in line
    assert not sentinel.exists()
    import torch

    torch.save({"w": Evil(sentinel)}, tmp_path / "evil2.pt")  # the same inside a real torch.save zip
    line = invoke("build", "tiny", "--weights", str(tmp_path / "evil2.pt"), "--store", str(tmp_path / "s")).error(2)
    assert "safe loading refused" in line and not sentinel.exists()


def test_state_dict_of_another_architecture(tmp_path: Path) -> None:
    import torch
    from torch import nn

    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(4, 2)).state_dict(), tmp_path / "other.pt")
    line = invoke("build", "tiny", "--weights", str(tmp_path / "other.pt"), "--store", str(tmp_path / "s")).error(2)
    assert "do not fit tiny" in line and "missing" in line and "shape mismatches" in line and "0.weight" in line


def test_python_source_errors(tmp_path: Path) -> None:
    store = str(tmp_path / "s")

    def build(source: str, *extra: str) -> str:
        return invoke("build", source, *extra, "--store", store).error(2)

    syntax = model_file(tmp_path, "def build(:\n    pass\n")
    assert "syntax error" in build(f"{syntax}:build", "--input", "x:1x4")
    imp = model_file(tmp_path, "import not_a_real_module_xyz\n")
    assert "No module named 'not_a_real_module_xyz'" in build(f"{imp}:build", "--input", "x:1x4")
    notmod = model_file(tmp_path, "def build():\n    return 42\n")
    assert "returned int, not a torch.nn.Module" in build(f"{notmod}:build", "--input", "x:1x4")
    line = build(f"{notmod}:make", "--input", "x:1x4")
    assert "no callable 'make'" in line and "callables found there: build" in line
    raises = model_file(tmp_path, "def build():\n    raise ValueError('bad config')\n")
    line = build(f"{raises}:build", "--input", "x:1x4")
    assert "ValueError: bad config" in line and "line 2" in line
    ok = model_file(tmp_path, "from torch import nn\ndef build():\n    return nn.Linear(4, 2)\n")
    assert "no input description" in build(f"{ok}:build")


def test_wrong_input_shape(tmp_path: Path) -> None:
    line = invoke("build", "tiny", "--input", "input:1x4x32x32", "--store", str(tmp_path / "s")).error(2)
    assert "the model failed on example inputs at batch 1 (input [1, 4, 32, 32] float32)" in line
    no_leftovers(tmp_path / "s")


NAN = """
import torch
from torch import nn

class M(nn.Module):
    def forward(self, x):
        return torch.log(x - 100)

def build():
    return M()
"""

DROPOUT_FORCED = """
from torch import nn
import torch.nn.functional as F

class M(nn.Module):
    def forward(self, x):
        return F.dropout(x, 0.5, training=True)

def build():
    return M()
"""


def test_nan_output_fails_with_exit_3(tmp_path: Path) -> None:
    source = f"{model_file(tmp_path, NAN)}:build"
    line = invoke("build", source, "--input", "x:1x8", *EAGER_ONLY, "--store", str(tmp_path / "s")).error(3)
    assert "NaN/Inf" in line and "output 'output'" in line
    no_leftovers(tmp_path / "s", "m")


def test_nondeterministic_model_fails_with_exit_3(tmp_path: Path) -> None:
    source = model_file(tmp_path, DROPOUT_FORCED)
    line = invoke("build", f"{source}:build", "--input", "x:1x64", *EAGER_ONLY, "--store", str(tmp_path / "s")).error(3)
    assert "not deterministic" in line


def test_output_folder_not_writable(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    line = invoke("build", "tiny", "--store", str(tmp_path / "afile" / "store")).error(2)
    assert "cannot write" in line and "--store" in line


def test_a_build_holding_the_lock_refuses_a_second_one(tmp_path: Path) -> None:
    """The lock is flock on <store>/<name>/.lock: another open file description (here: this test's) holding it makes
    the build refuse at once, before any work."""
    store = tmp_path / "s"
    (store / "tiny").mkdir(parents=True)
    fd = os.open(store / "tiny" / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert "another pack process is writing" in invoke("build", "tiny", "--store", str(store)).error(2)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    no_leftovers(store)
