"""`pack build` of the tiny model through the real command line: JSON on stdout and logs on stderr, the summary
table, kept versions and --force, byte-identical rebuilds, --slim. (What a build records: tests/unit/test_build.py.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

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
