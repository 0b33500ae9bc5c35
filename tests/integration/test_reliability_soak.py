"""Issue 7, load: the bounded version of benchmarks/soak.py (100 requests at concurrency 8, tiny, both targets)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from tests.helpers.processes import processes_under, tritonserver_pids_for, wait_until_empty
from tests.helpers.torchserve import copy_build
from tests.helpers.triton import ensure_tritonserver

pytestmark = pytest.mark.server


def test_soak_small_no_errors_no_lost_servers_stopped(built, tmp_path):
    if not shutil.which("java"):
        pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
    ensure_tritonserver()
    store = copy_build(built("tiny"), tmp_path / "store")
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "soak.py"),
            "--requests",
            "100",
            "--concurrency",
            "8",
            "--models",
            "tiny",
            "--targets",
            "torchserve,triton",
            "--store",
            str(store),
            "--time-limit",
            "120",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert [(r["model"], r["target"]) for r in doc["results"]] == [("tiny", "torchserve"), ("tiny", "triton")]
    for row in doc["results"]:
        assert (row["sent"], row["ok"], row["errors"], row["lost"]) == (100, 100, 0, 0), row
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"] and row["server_stopped"]
    assert "| tiny | torchserve | 100 | 8 | 100 | 0 | 0 |" in proc.stdout
    assert processes_under(store / ".servers" / "torchserve") == []
    assert tritonserver_pids_for(store) == []


def test_soak_with_a_killed_worker_and_stub_is_answered_and_recovers(built, tmp_path):
    """Issue 11: --chaos kills TorchServe's worker and Triton's python-backend stub once (descendants of the servers
    the soak deployed); with client retries and `pack status --repair` every second every request is answered right,
    Triton's stub is reloaded by the repair, and both recover in under 30 s."""
    if not shutil.which("java"):
        pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
    ensure_tritonserver()
    store = copy_build(built("tiny"), tmp_path / "store")
    out = tmp_path / "soak.json"
    args = ["--requests", "1000", "--concurrency", "8", "--models", "tiny", "--targets", "torchserve,triton"]
    args += ["--store", str(store), "--time-limit", "180", "--out", str(out)]
    args += ["--chaos", "--chaos-at", "0.1", "--retry-for", "60", "--repair-every", "1"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PACK_WATCH": "0"},  # the repairs counted here are the soak's own, not a watcher's
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    rows = {r["target"]: r for r in json.loads(out.read_text())["results"]}
    for row in rows.values():
        assert (row["ok"], row["errors"], row["lost"], row["answered_pct"]) == (1000, 0, 0, 100.0), row
        assert row["chaos"]["killed_pid"] and row["chaos"]["recovery_s"] is not None and row["chaos"]["recovery_s"] < 30, row
        assert row["failed_attempts"] >= 1, row  # the kill was felt
    triton_repairs = [r for r in rows["triton"]["chaos"]["repairs"] if (r.get("repair") or {}).get("repaired")]
    assert len(triton_repairs) == 1 and "not healthy" in triton_repairs[0]["repair"]["was"], rows["triton"]["chaos"]
    assert "| tiny | triton |" in proc.stdout and "reloaded" in proc.stdout
    assert processes_under(store / ".servers" / "torchserve") == []
    assert tritonserver_pids_for(store) == []
    assert wait_until_empty(lambda: processes_under(store / ".servers" / "triton"), 5) == [], "a python-backend stub was left"
