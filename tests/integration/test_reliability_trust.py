"""Names, versions and crafted files on a real tritonserver launched by pack: a build changed after `pack build` is not
served (Triton and TorchServe refuse it before any server sees it), and a model named like another model's ensemble
step is refused before anything is loaded.

One tritonserver for the module (its own store); teardown stops it and checks that none is left.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers.cli import one_error_line, run_pack
from tests.helpers.processes import tritonserver_pids_for
from tests.helpers.triton import ensure_tritonserver, link_build

pytestmark = pytest.mark.server


def _state(store: Path) -> dict:
    return json.loads((store / ".servers" / "triton" / "state.json").read_text())


def _status(store: Path) -> list[tuple[str, str, str]]:
    doc = json.loads(run_pack("status", "--target", "triton", "--store", str(store), "--json").stdout)
    return sorted((m["name"], str(m["version"]), m["state"]) for m in doc["models"])


def _copy_build(build: Path, store: Path, name: str, version: str) -> Path:
    """A private copy (real files, not links) of a build as `name` version `version`."""
    dest = store / name / version
    shutil.copytree(build, dest)
    report = json.loads((dest / "report.json").read_text())
    report["name"], report["version"] = name, version
    (dest / "report.json").write_text(json.dumps(report))
    return dest


@pytest.fixture(scope="module")
def tri(built, tmp_path_factory):
    ensure_tritonserver()
    store = tmp_path_factory.mktemp("trust-triton")
    link_build(built("tiny"), store)
    proc = run_pack("deploy", "tiny", "--target", "triton", "--store", str(store), "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield store
    run_pack("stop", "--target", "triton", "--store", str(store))
    assert tritonserver_pids_for(store) == [], "a tritonserver is left after pack stop"


def test_a_changed_build_is_not_served(tri, built):
    build = _copy_build(built("tiny"), tri, "tiny", "2")
    onnx = build / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0x01
    onnx.write_bytes(bytes(data))
    before = _status(tri)
    proc = run_pack("deploy", "tiny", "--version", "2", "--target", "triton", "--store", str(tri), timeout=900)
    line = one_error_line(3, proc.returncode, proc.stderr)
    assert "model.onnx: sha256 differs from the report" in line, line
    repo = Path(_state(tri)["repository"])
    assert sorted(p.name for p in (repo / "tiny").iterdir() if p.name.isdigit()) == ["1"]
    assert _status(tri) == before and ("tiny", "1", "READY") in before
    # TorchServe: refused before a server is started
    proc = run_pack("deploy", "tiny", "--version", "2", "--target", "torchserve", "--store", str(tri), timeout=900)
    assert "model.onnx: sha256 differs" in one_error_line(3, proc.returncode, proc.stderr)
    assert not (tri / ".servers" / "torchserve").exists()


def test_a_name_of_another_models_ensemble_step_is_refused_before_loading(tri, built):
    repo = Path(_state(tri)["repository"])
    for step in ("yolo_preprocess", "yolo_postprocess", "yolo_ensemble"):  # another model's steps, as Triton lists them
        shutil.copytree(repo / "tiny", repo / step)
    marker = repo / "yolo_preprocess" / "untouched"
    marker.write_text("theirs")
    _copy_build(built("tiny"), tri, "yolo_preprocess", "1")
    proc = run_pack("deploy", "yolo_preprocess", "--target", "triton", "--store", str(tri), timeout=900)
    line = one_error_line(2, proc.returncode, proc.stderr)
    assert "a step of yolo's ensemble" in line, line
    assert marker.read_text() == "theirs"  # their entry is left as it was
    assert all(state != "READY" for name, _, state in _status(tri) if name.startswith("yolo"))
    assert ("tiny", "1", "READY") in _status(tri)
