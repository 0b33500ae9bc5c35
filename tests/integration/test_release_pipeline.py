"""The shell version of the release workflow runs end to end on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import ROOT
from tests.helpers.keys import ec_pair

SCRIPT = ROOT / "templates" / "ci" / "release.sh"


def test_release_script_end_to_end(tmp_path: Path) -> None:
    pack = f"{sys.executable} -m packager.cli"
    key = ec_pair(tmp_path, "release")
    env = {
        **os.environ,
        "PACK": pack,
        "OUT": str(tmp_path / "rel"),
        "RUNTIME": "torchserve",
        "UPLOAD_CMD": "ls -R",
        "PYTHONPATH": str(ROOT),
        "SIGN_KEY": str(key.private),
        "SIGN_PUBLIC_KEY": str(key.public),
    }
    proc = subprocess.run(
        ["bash", str(SCRIPT), "tiny", "--iterations", "0"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    artifacts = Path(proc.stdout.strip().splitlines()[-1])
    assert artifacts.is_dir() and artifacts.name == "tiny-1"
    verified = json.loads((artifacts / "verify.json").read_text())
    assert verified["passed"] is True and verified["signature"]["verified"] is True
    assert (artifacts / "build" / "model.sig").is_file() and (artifacts / "build" / "provenance.json").is_file()
    assert (artifacts / "kserve-torchserve" / "storage" / "model.sig").is_file()
    assert key.body()[:40] not in proc.stdout + proc.stderr
    assert (artifacts / "build" / "report.json").is_file()
    assert (artifacts / "kserve-torchserve" / "storage" / "model-store" / "tiny.mar").is_file()
    sums = (artifacts / "SHA256SUMS").read_text().splitlines()
    assert any(line.endswith("./build/model.onnx") for line in sums)
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=artifacts, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "kserve-torchserve" in proc.stdout  # the upload command ran on the release folder


def test_release_script_stops_on_a_failing_step(tmp_path: Path) -> None:
    env = {**os.environ, "PACK": f"{sys.executable} -m packager.cli", "OUT": str(tmp_path / "rel"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        ["bash", str(SCRIPT), "no-such-model"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "unknown model" in proc.stderr
    assert not (tmp_path / "rel" / "artifacts").exists()


def test_workflow_template_is_valid_yaml_with_the_same_steps() -> None:
    workflow = yaml.safe_load((ROOT / "templates" / "ci" / "github-actions.yml").read_text())
    steps = " ".join(s.get("run", "") for s in workflow["jobs"]["release"]["steps"])
    for command in ("pack build", "pack verify", "--parity", "pack deploy", "--target kserve"):
        assert command in steps
