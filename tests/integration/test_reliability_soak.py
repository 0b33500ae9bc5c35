"""Issue 7, load: the bounded version of benchmarks/soak.py (100 requests at concurrency 8, tiny, both targets)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from tests.helpers.processes import processes_under, tritonserver_pids_for
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
