"""Bad build inputs: one readable line, the documented exit code, no traceback, nothing left behind."""

import fcntl
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ROOT, run_pack


def _one_line(proc, code):
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return errors[0]


def _no_leftovers(store, name="tiny"):
    folder = store / name
    if folder.exists():
        assert [p.name for p in folder.iterdir() if p.name != ".lock"] == []


def _model_file(tmp_path, body):
    path = tmp_path / "m.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_weights_missing_empty_garbage_truncated(tmp_path):
    import torch

    from packager.registry import create_model

    store = tmp_path / "s"
    line = _one_line(run_pack("build", "tiny", "--weights", str(tmp_path / "nope.pt"), "--store", str(store)), 2)
    assert "weights file not found" in line
    (tmp_path / "empty.pt").write_bytes(b"")
    assert "is empty" in _one_line(run_pack("build", "tiny", "--weights", str(tmp_path / "empty.pt"), "--store", str(store)), 2)
    import numpy as np

    # random bytes make torch.load fail in different ways (UnpicklingError, UnicodeDecodeError, KeyError, ...):
    # several fixed blobs and a text file must all read as "not a weights file"
    blobs = [np.random.default_rng(seed).bytes(4096) for seed in (0, 17)]  # UnpicklingError, IndexError
    blobs.append(b"X" + np.random.default_rng(1).bytes(4095))  # UnicodeDecodeError
    for blob in blobs:
        (tmp_path / "garbage.pt").write_bytes(blob)
        assert "not a PyTorch weights file" in _one_line(run_pack("build", "tiny", "--weights", str(tmp_path / "garbage.pt"), "--store", str(store)), 2)
    (tmp_path / "notes.pt").write_text("these are not weights\n" * 20)
    assert "not a PyTorch weights file" in _one_line(run_pack("build", "tiny", "--weights", str(tmp_path / "notes.pt"), "--store", str(store)), 2)
    torch.save(create_model("tiny").state_dict(), tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _one_line(run_pack("build", "tiny", "--weights", str(tmp_path / "cut.pt"), "--store", str(store)), 2)
    _no_leftovers(store)


def test_real_weights_are_used_and_recorded(tmp_path):
    import torch

    from packager.registry import create_model

    torch.manual_seed(123)
    model = create_model("tiny")
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "ckpt.pth")
    proc = run_pack("build", "tiny", "--weights", str(tmp_path / "ckpt.pth"), "--store", str(tmp_path / "s"), "--json", "--iterations", "0")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["weights"]["random"] is False and len(report["weights"]["sha256"]) == 64
    assert not any("random weights" in w for w in report["warnings"])
    import numpy as np

    folder = tmp_path / "s" / "tiny" / "1"
    x = np.load(folder / "samples/input.input.npy")
    model.eval()
    np.testing.assert_allclose(model(torch.from_numpy(x)).detach().numpy(), np.load(folder / "samples/output.logits.npy"), atol=1e-6)


def test_pickle_that_runs_code_is_refused_and_does_not_run(tmp_path):
    sentinel = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"state_dict": Evil()}, fh)
    line = _one_line(run_pack("build", "tiny", "--weights", str(tmp_path / "evil.pt"), "--store", str(tmp_path / "s")), 2)
    assert "plain pickle" in line and "--unsafe-load" in line
    assert not sentinel.exists()
    import torch

    torch.save({"w": Evil()}, tmp_path / "evil2.pt")  # the same inside a real torch.save zip
    line = _one_line(run_pack("build", "tiny", "--weights", str(tmp_path / "evil2.pt"), "--store", str(tmp_path / "s")), 2)
    assert "safe loading refused" in line and not sentinel.exists()


def test_state_dict_of_another_architecture(tmp_path):
    import torch
    from torch import nn

    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(4, 2)).state_dict(), tmp_path / "other.pt")
    line = _one_line(run_pack("build", "tiny", "--weights", str(tmp_path / "other.pt"), "--store", str(tmp_path / "s")), 2)
    assert "do not fit tiny" in line and "missing" in line and "shape mismatches" in line and "0.weight" in line


def test_python_source_errors(tmp_path):
    store = str(tmp_path / "s")
    syntax = _model_file(tmp_path, "def build(:\n    pass\n")
    assert "syntax error" in _one_line(run_pack("build", f"{syntax}:build", "--input", "x:1x4", "--store", store), 2)
    imp = _model_file(tmp_path, "import not_a_real_module_xyz\n")
    assert "No module named 'not_a_real_module_xyz'" in _one_line(run_pack("build", f"{imp}:build", "--input", "x:1x4", "--store", store), 2)
    notmod = _model_file(tmp_path, "def build():\n    return 42\n")
    assert "returned int, not a torch.nn.Module" in _one_line(run_pack("build", f"{notmod}:build", "--input", "x:1x4", "--store", store), 2)
    assert "no callable 'make'" in _one_line(run_pack("build", f"{notmod}:make", "--input", "x:1x4", "--store", store), 2)
    raises = _model_file(tmp_path, "def build():\n    raise ValueError('bad config')\n")
    line = _one_line(run_pack("build", f"{raises}:build", "--input", "x:1x4", "--store", store), 2)
    assert "ValueError: bad config" in line and "line 2" in line
    ok = _model_file(tmp_path, "from torch import nn\ndef build():\n    return nn.Linear(4, 2)\n")
    assert "no input description" in _one_line(run_pack("build", f"{ok}:build", "--store", store), 2)


def test_wrong_input_shape(tmp_path):
    line = _one_line(run_pack("build", "tiny", "--input", "input:1x4x32x32", "--store", str(tmp_path / "s")), 2)
    assert "the model failed on example inputs at batch 1 (input [1, 4, 32, 32] float32)" in line
    _no_leftovers(tmp_path / "s")


def test_trace_only_right_at_traced_batch_fails_the_gate(tmp_path):
    """int(x.shape[0]) is baked into a trace: right at batch 1, wrong at 4. Forcing trace must fail (exit 3)."""
    src = _model_file(
        tmp_path,
        """
        import torch
        from torch import nn

        class Flat(nn.Module):
            def forward(self, x):
                n = int(x.shape[0])
                return x.reshape(n, -1).cumsum(0)

        def build():
            return Flat()
        """,
    )
    store = tmp_path / "s"
    line = _one_line(run_pack("build", f"{src}:build", "--input", "x:1x3x4", "--torchscript", "trace", "--store", str(store)), 3)
    assert "torchscript: the TorchScript trace does not match eager" in line and "at batch 1" in line
    _no_leftovers(store, "m")
    # auto: the tracer's warning makes pack script the model instead, and both exports then pass at every batch size
    proc = run_pack("build", f"{src}:build", "--input", "x:1x3x4", "--store", str(store), "--json", "--iterations", "0")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["export"]["torchscript"]["method"] == "script"
    assert report["validation"]["onnx"]["passed"] and any("scripted instead" in w for w in report["warnings"])


def test_nan_output_fails_with_exit_3(tmp_path):
    src = _model_file(tmp_path, "import torch\nfrom torch import nn\nclass M(nn.Module):\n    def forward(self, x):\n        return torch.log(x - 100)\ndef build():\n    return M()\n")
    line = _one_line(run_pack("build", f"{src}:build", "--input", "x:1x8", "--store", str(tmp_path / "s")), 3)
    assert "NaN/Inf" in line and "output 'output'" in line


def test_nondeterministic_model_fails_with_exit_3(tmp_path):
    src = _model_file(tmp_path, "import torch\nfrom torch import nn\nimport torch.nn.functional as F\nclass M(nn.Module):\n    def forward(self, x):\n        return F.dropout(x, 0.5, training=True)\ndef build():\n    return M()\n")
    line = _one_line(run_pack("build", f"{src}:build", "--input", "x:1x64", "--store", str(tmp_path / "s")), 3)
    assert "not deterministic" in line


def test_dropout_module_in_train_mode_is_put_in_eval(tmp_path):
    src = _model_file(tmp_path, "from torch import nn\ndef build():\n    m = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))\n    m.train()\n    return m\n")
    proc = run_pack("build", f"{src}:build", "--input", "x:1x8", "--store", str(tmp_path / "s"), "--iterations", "0")
    assert proc.returncode == 0, proc.stderr


def test_model_files_as_source(tmp_path):
    import torch

    from packager.registry import create_model

    model = create_model("tiny").eval()
    torch.jit.trace(model, torch.zeros(1, 3, 32, 32)).save(str(tmp_path / "scripted.pt"))
    torch.save(model, tmp_path / "pickled.pt")
    store = str(tmp_path / "s")
    proc = run_pack("build", str(tmp_path / "scripted.pt"), "--input", "input:1x3x32x32", "--store", store, "--json", "--iterations", "0")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["weights"]["file"] == "scripted.pt"
    line = _one_line(run_pack("build", str(tmp_path / "pickled.pt"), "--input", "input:1x3x32x32", "--store", store), 2)
    assert "--unsafe-load" in line
    proc = run_pack("build", str(tmp_path / "pickled.pt"), "--input", "input:1x3x32x32", "--unsafe-load", "--store", store, "--iterations", "0")
    assert proc.returncode == 0, proc.stderr


def test_output_folder_not_writable(tmp_path):
    (tmp_path / "afile").write_text("x")
    line = _one_line(run_pack("build", "tiny", "--store", str(tmp_path / "afile" / "store")), 2)
    assert "cannot write" in line and "--store" in line


def test_disk_full_during_write_keeps_nothing(tmp_path):
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
    _no_leftovers(store)


def test_concurrent_build_of_same_model_is_refused_by_the_lock(tmp_path):
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


def test_two_builds_at_once_leave_one_good_version(tmp_path):
    store = tmp_path / "s"
    cmd = [sys.executable, "-m", "packager.cli", "build", "tiny", "--store", str(store), "--iterations", "0"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[2] == 2)[1]
    assert "another pack process is writing" in loser or "already exists" in loser
    report = json.loads((store / "tiny/1/report.json").read_text())
    import hashlib

    for rel, digest in report["sha256"].items():
        assert hashlib.sha256((store / "tiny/1" / rel).read_bytes()).hexdigest() == digest


def test_ctrl_c_leaves_no_partial_version(tmp_path):
    store = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-m", "packager.cli", "build", "tiny", "--store", str(store), "--iterations", "10000"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    seen = ""
    while time.time() < deadline:
        line = proc.stderr.readline()
        seen += line
        if "warming up" in line or not line:
            break
    assert "warming up" in seen, seen
    assert (store / "tiny").is_dir() and any(p.name.startswith(".tmp") for p in (store / "tiny").iterdir())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    _no_leftovers(store)


def test_debug_shows_the_traceback(tmp_path):
    proc = run_pack("build", "tiny", "--input", "input:1x4x32x32", "--store", str(tmp_path), "--debug")
    assert proc.returncode == 2 and "Traceback" in proc.stderr
