"""`pack tune` on the real servers: every point is deployed and served, the best point under the bound is written
into the build through the offline checks (and verifies), an impossible bound writes nothing, and no server is left."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.helpers.cli import one_error_line, pack_json, run_pack
from tests.helpers.processes import processes_under, wait_until_empty

pytestmark = [pytest.mark.integration, pytest.mark.server]

QUICK = ("--budget-s", "20", "--window-s", "0.5", "--concurrency", "4")


def _store(built: Callable[[str], Path], tmp_path: Path) -> Path:
    store = tmp_path / "store"
    shutil.copytree(built("tiny"), store / "tiny" / "1")
    return store


def _frontier_checks(doc: dict, target: str) -> None:
    assert doc["target"] == target and doc["points"], doc
    served = [p for p in doc["points"] if not p.get("error")]
    assert served, doc["points"]
    for point in doc["frontier"]:
        assert set(point) == {"settings", "throughput_rps", "p50_ms", "p99_ms", "stable"}
        assert point["throughput_rps"] > 0 and point["p99_ms"] >= point["p50_ms"] > 0
        # every frontier point was measured on a deployed server: its requests were answered
        measured = next(p for p in doc["points"] if p["settings"] == point["settings"])
        assert measured["requests"] > 0 and measured["errors"] == 0 and measured["deploy_s"] > 0
    assert doc["best"] in doc["frontier"]
    others = [p for p in served if p["settings"] != doc["best"]["settings"]]
    assert all(p["throughput_rps"] <= doc["best"]["throughput_rps"] for p in others)


def test_tune_triton_writes_the_best_setting_into_the_build(built: Callable[[str], Path], tmp_path: Path) -> None:
    store = _store(built, tmp_path)
    build = store / "tiny" / "1"
    before = (build / "report.json").read_bytes()

    # An impossible bound: every point is measured, none qualifies, nothing is written (exit 3, one line).
    env = {"TMPDIR": str(tmp_path)}  # the tune's private store (and its servers) under tmp_path
    proc = run_pack("tune", "tiny", "--store", str(store), "--p99-ms", "0.001", "--budget-s", "10", "--window-s", "0.5", env=env)
    assert "no setting of" in one_error_line(3, proc.returncode, proc.stderr)
    assert (build / "report.json").read_bytes() == before

    png = tmp_path / "frontier.png"
    doc = pack_json("tune", "tiny", "--store", str(store), *QUICK, "--plot", str(png), env=env)
    _frontier_checks(doc, "triton")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = doc["best"]["settings"]
    config = (build / "triton" / "tiny" / "config.pbtxt").read_text()
    assert f"max_batch_size: {best['batch_size']}" in config and f"count: {best['workers']}" in config
    assert doc["written"] == [str(build / "triton" / "tiny" / "config.pbtxt")]
    report = json.loads((build / "report.json").read_text())
    assert report["targets"]["triton"]["tuned"]["settings"] == best
    assert report["targets"]["triton"]["settings"]["instances"] == best["workers"]
    assert run_pack("verify", str(build)).returncode == 0  # the new files are recorded
    assert wait_until_empty(lambda: processes_under(tmp_path), seconds=10) == []  # the tune stopped its servers

    # `pack bench` at the written settings: the server runs exactly what the tune measured (Triton's own model config,
    # read back after the load), and the run at the tuned concurrency is set against the tuned figures
    bench = pack_json(
        "bench", "tiny", "--store", str(store), "--targets", "triton", "--concurrency", "4", "--requests", "20", env=env
    )
    row = bench["rows"][0]
    measured = next(p for p in doc["points"] if p["settings"] == best)
    assert row["settings"]["tuned"] is True and row["tuned"]["settings"] == best and row["tuned"]["concurrency"] == 4
    assert {k: row["settings"][k] for k in best} == best
    assert {k: row["settings"].get(k) for k in measured["applied"]} == measured["applied"]
    assert set(row["runs"][0]["vs_tuned"]) == {"throughput", "p99"} and row["runs"][0]["vs_tuned"]["throughput"] > 0
    assert wait_until_empty(lambda: processes_under(tmp_path), seconds=10) == []


def test_tune_torchserve_writes_the_archive(built: Callable[[str], Path], tmp_path: Path) -> None:
    if not shutil.which("java"):
        pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
    store = _store(built, tmp_path)
    build = store / "tiny" / "1"
    doc = pack_json("tune", "tiny", "--target", "torchserve", "--store", str(store), *QUICK, env={"TMPDIR": str(tmp_path)})
    _frontier_checks(doc, "torchserve")
    best = doc["best"]["settings"]
    with zipfile.ZipFile(build / "torchserve" / "tiny.mar") as mar:
        config = yaml.safe_load(mar.read("model-config.yaml"))
    assert config["batchSize"] == best["batch_size"] and config["minWorkers"] == best["workers"]
    assert config["maxBatchDelay"] == best["max_batch_delay_ms"] and config["handler"].get("threads", 0) == best["threads"]
    assert run_pack("verify", str(build)).returncode == 0
    assert wait_until_empty(lambda: processes_under(tmp_path), seconds=10) == []  # the tune stopped its servers


def test_tune_stops_at_the_first_point_without_a_server(built: Callable[[str], Path], tmp_path: Path) -> None:
    """No tritonserver installed: no setting can change that, so the tune stops at its first point with that reason
    (exit 5, the install advice), not after every point with advice to raise --p99-ms; the build is left as it was."""
    store = _store(built, tmp_path)
    before = (store / "tiny" / "1" / "report.json").read_bytes()
    env = {"TMPDIR": str(tmp_path), "PACK_TRITON_HOME": str(tmp_path / "no-triton"), "PACK_TRITONSERVER": ""}
    proc = run_pack("tune", "tiny", "--store", str(store), *QUICK, "--p99-ms", "1000", env=env)
    line = one_error_line(5, proc.returncode, proc.stderr)
    assert line.startswith("error: no tritonserver found") and "setup-triton.sh" in line
    assert "--p99-ms" not in line and proc.stderr.count("failed (") <= 1  # one point tried at most
    assert (store / "tiny" / "1" / "report.json").read_bytes() == before
    assert not list(tmp_path.glob("pack-tune-*"))  # its scratch folder is gone
