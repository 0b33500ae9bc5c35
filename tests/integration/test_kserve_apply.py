"""KServe through the real command line: `--apply` runs kubectl (a stand-in on PATH records the call) when kubectl has
a current context, and prints the commands to run when it has none; Triton's storage serves a real TorchScript export
on its native libtorch backend when asked. (Storage folders and manifests: tests/unit/test_kserve.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.helpers.cli import pack_json, run_pack


def test_apply_uses_kubectl_when_a_context_exists(tiny_store: Path, tmp_path: Path) -> None:
    """No cluster runs here: a stand-in kubectl on PATH records the call (the apply path and its arguments)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n[ "$1" = config ] && echo test-context\nexit 0\n')
    kubectl.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    args = ["deploy", "tiny", "--target", "kserve", "--store", str(tiny_store), "--storage-uri", "s3://b/t", "--apply", "--json"]
    proc = run_pack(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["applied"] is True and doc["next_steps"] == []
    assert f"apply -f {doc['manifest']}" in calls.read_text()
    # without kubectl: nothing applied, the commands to run are printed
    proc = run_pack(*args, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and json.loads(proc.stdout)["applied"] is False
    assert "not applying" in proc.stderr


def test_triton_storage_serves_torchscript_on_libtorch(tiny_store: Path) -> None:
    """--format is honoured (it was ignored: ONNX was written whatever was asked). (A format no native backend loads:
    tests/unit/test_deploy_result.py.)"""
    args = ("--target", "kserve", "--runtime", "triton", "--format", "torchscript", "--storage-uri", "s3://bucket/tiny")
    doc = pack_json("deploy", "tiny", "--store", str(tiny_store), *args)
    assert doc["format"] == "torchscript" and doc["served_file"] == "model.pt"
    config = (Path(doc["storage"]) / "tiny" / "config.pbtxt").read_text()
    assert 'platform: "pytorch_libtorch"' in config
    served = (Path(doc["storage"]) / "tiny" / "1" / "model.pt").read_bytes()
    assert served == (tiny_store / "tiny" / "1" / "model.pt").read_bytes()
