"""`pack bench` on the tiny model with small request counts: it runs, its JSON has every column, the plot is written,
and every server it launched is stopped (also when interrupted). Timings are never asserted. (The load generator
and option errors: tests/unit/test_bench.py.)"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.cli import run_pack, spawn_pack
from tests.helpers.processes import of_this_session, processes_with
from tests.helpers.triton import ensure_tritonserver

pytestmark = pytest.mark.server

RUN_KEYS = {
    "concurrency",
    "requests",
    "ok",
    "errors",
    "error_samples",
    "seconds",
    "throughput_rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "ratio",
    "gpu_util_pct",
}
ROW_KEYS = {
    "name",
    "target",
    "runtime",
    "payload",
    "work",
    "compare_with",
    "cold_start",
    "memory",
    "gpu_util_pct",
    "runs",
    "peak_throughput_rps",
    "peak_ratio",
}


def bench_processes() -> list[int]:
    """Live processes this session's benches started (their command line or environment names a .scratch/bench- folder)."""
    return of_this_session(processes_with(b"/.scratch/bench-", exclude=(b"packager.cli",)))


def test_bench_tiny_all_targets(built: Callable[[str], Path], session_store: Path, tmp_path: Path) -> None:
    ensure_tritonserver()
    built("tiny")
    png = tmp_path / "bench.png"
    proc = run_pack(
        "bench",
        "tiny",
        "--store",
        str(session_store),
        "--targets",
        "inprocess,fastapi,torchserve,triton",
        "--requests",
        "20",
        "--concurrency",
        "1,4",
        "--plot",
        str(png),
        "--json",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    names = [r["name"] for r in doc["rows"]]
    assert names == ["inprocess-eager", "inprocess-onnx", "inprocess-onnx-tensor", "fastapi", "torchserve", "triton"]
    for row in doc["rows"]:
        assert ROW_KEYS <= set(row), row["name"]
        assert {"launch_s", "load_s"} <= set(row["cold_start"])
        assert {"rss_mb", "overhead_mb"} <= set(row["memory"])
        assert row["memory"]["rss_mb"] and row["memory"]["rss_mb"] > 0
        assert [r["concurrency"] for r in row["runs"]] == [1, 4]
        for run in row["runs"]:
            assert RUN_KEYS <= set(run)
            assert run["errors"] == 0 and run["ok"] == 20, (row["name"], run["error_samples"])
            assert run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"]
            assert run["gpu_util_pct"] is None or doc["host"]["gpu"]
    served = {r["name"]: r for r in doc["rows"]}
    assert served["torchserve"]["compare_with"] == "inprocess-eager"
    assert served["triton"]["compare_with"] == "inprocess-onnx-tensor"
    assert served["fastapi"]["compare_with"] == "inprocess-onnx"  # the HTTP baseline against the same runtime in-process
    files = {name: row["served_file"] for name, row in served.items()}  # every row that stands for a file runs the same one
    assert files == {"inprocess-eager": None, **{n: "model.onnx" for n in names if n != "inprocess-eager"}}, files
    for name in ("torchserve", "triton"):  # and every other server against the HTTP baseline
        assert all(r["vs_http_baseline"] is not None for r in served[name]["runs"]), served[name]["runs"]
        assert served[name]["peak_vs_http_baseline"] is not None
    for name in ("fastapi", "torchserve", "triton"):
        row = served[name]
        assert row["cold_start"]["launch_s"] is not None  # fastapi: its workers load the model during the launch
        assert name == "fastapi" or row["cold_start"]["load_s"] is not None
        assert row["memory"]["overhead_mb"] is not None
        assert all(r["ratio"] is not None for r in row["runs"])
    assert doc["batch_comparison"]["batch"] == 8 and doc["batch_comparison"]["onnx_over_eager"] > 0
    assert {g["goal"].split()[0] for g in doc["goals"]} == {"torchserve", "triton", "ONNX"}
    assert [s["processes_left"] for s in doc["servers_stopped"]] == [[], [], []]
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert bench_processes() == []
    table = run_pack(
        "bench",
        "tiny",
        "--store",
        str(session_store),
        "--targets",
        "inprocess",
        "--requests",
        "5",
        "--concurrency",
        "2",
        timeout=300,
    )
    assert table.returncode == 0, table.stderr[-2000:]
    assert "inprocess-onnx-tensor" in table.stdout and "p95 ms" in table.stdout


def test_interrupted_bench_stops_its_server(built: Callable[[str], Path], session_store: Path) -> None:
    built("tiny")
    proc = spawn_pack(
        "bench",
        "tiny",
        "--store",
        str(session_store),
        "--targets",
        "torchserve",
        "--requests",
        "100000",
        "--concurrency",
        "2",
        "--time-limit",
        "120",
    )
    try:
        deadline = time.monotonic() + 300  # a loaded 2-core machine takes minutes to start the JVM
        while time.monotonic() < deadline and not bench_processes() and proc.poll() is None:
            time.sleep(0.5)
        assert proc.poll() is None, f"the bench ended before launching TorchServe: {proc.communicate()[1][-2000:]}"
        assert bench_processes(), "the bench launched no TorchServe in 300 s"
        time.sleep(8)  # registered and under load by now
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and bench_processes():
        time.sleep(0.5)
    assert bench_processes() == []
