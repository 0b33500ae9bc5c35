"""The benchmark scripts run: each one's `--smoke` mode (tiny, one round) prints its table and writes its JSON, so a
change to pack that breaks a benchmark fails here, not when its figures are next needed. (benchmarks/soak.py runs in
tests/integration/test_reliability_soak.py.) Timings are not checked: only that every row was measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT


def _run(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_formats_measures_every_format_against_eager(tmp_path: Path) -> None:
    out = tmp_path / "formats.json"
    done = _run("formats.py", "--out", str(out))
    doc = json.loads(out.read_text())
    (row,) = doc["rows"]
    assert row["model"] == "tiny" and row["batch"] == 1 and row["eager_ms"] > 0
    for fmt in ("torchscript", "onnx", "pt2", "aoti"):
        # the ratio is rounded to 2 decimals: one slow smoke round (80 ms for tiny's AOTInductor) rounds to 0.0
        assert row[f"{fmt}_ms"] > 0 and row[f"{fmt}_x"] is not None, fmt
        assert row["export_seconds"][fmt] > 0, fmt
    assert done.stdout.splitlines()[0].split()[:3] == ["model", "batch", "eager"]


def test_variants_gates_and_times_each_variant(tmp_path: Path) -> None:
    out = tmp_path / "variants.json"
    done = _run("variants.py", "--out", str(out))
    doc = json.loads(out.read_text())
    assert doc["rows"] and {r["model"] for r in doc["rows"]} == {"tiny"}
    assert {r["status"] for r in doc["rows"]} <= {"kept", "rejected", "failed", "skipped"}, doc["rows"]
    measured = [r for r in doc["rows"] if r["status"] in ("kept", "rejected")]
    assert measured and all(r["speedup"] > 0 and r["p50_ms"] for r in measured), doc["rows"]
    assert "| model | variant |" in done.stdout


def test_archive_speed_times_pack_against_the_archiver(tiny_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "archive.json"
    done = _run("archive_speed.py", "--store", str(tiny_store), "--json", str(out))
    doc = json.loads(out.read_text())
    assert set(doc["results"]) == {"pack archive", "tma zip-store", "tma default", "cp"}
    assert all(r["median_s"] > 0 and r["bytes"] > 0 for r in doc["results"].values())
    assert "pack archive takes" in done.stdout


@pytest.mark.server
def test_served_tunes_then_benches_each_server_against_in_process(tiny_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "served"
    done = _run("served.py", "--store", str(tiny_store), "--out", str(out))
    written = {p.name for p in out.iterdir()}
    tables = {"served_tiny_cpu.json", "tune_tiny_triton.json", "bench_tiny_tuned_cpu.json"}
    assert written == tables | {"tune_tiny_triton.png", "bench_tiny_tuned_cpu.png"}, written
    (entry,) = json.loads((out / "served_tiny_cpu.json").read_text())["summary"]
    assert entry["model"] == "tiny" and entry["tuned"]["triton"]["throughput_rps"] > 0, entry
    assert any(g["goal"].startswith("triton ") for g in entry["goals"]), entry["goals"]
    rows = {r["target"] for r in json.loads((out / "bench_tiny_tuned_cpu.json").read_text())["rows"]}
    assert "triton" in rows and any(t.startswith("inprocess") for t in rows), rows
    assert not (ROOT / "benchmarks" / "results" / "tune_tiny_triton.json").exists(), "--out was not honoured"
    assert done.stdout.splitlines()[0].split()[:2] == ["model", "goal"]


@pytest.mark.server
def test_tune_repro_benches_at_the_tuned_settings(tiny_store: Path, tmp_path: Path) -> None:
    _run("tune_repro.py", "--store", str(tiny_store), "--out", str(tmp_path))
    doc = json.loads((tmp_path / "tune_repro_tiny.json").read_text())
    (row,) = doc["rows"]
    assert row["target"] == "triton" and row["settings"] and row["bench"]["throughput_rps"] > 0, row
    assert row["vs_tuned"]["throughput"] > 0, row


@pytest.mark.slow
def test_build_speed_compares_pack_with_ultralytics(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    out = tmp_path / "build.json"
    done = _run("build_speed.py", "--out", str(out), timeout=600)
    doc = json.loads(out.read_text())
    commands = {r["command"]: r for r in doc["rows"]}
    like = "pack build --formats torchscript,onnx --iterations 0"
    cached = "pack build again (unchanged inputs: a cache hit)"
    assert set(commands) == {like, cached, "ultralytics export onnx+torchscript"}
    assert all(r["median_s"] > 0 for r in commands.values())
    assert doc["timeline_of_the_last_default_build"], "the build's own log gave no phases"
    assert "x ultralytics" in done.stdout


def test_signature_check_benchmark_times_the_check(tmp_path: Path) -> None:
    out = tmp_path / "sig.json"
    done = _run("signature_check.py", "--json", str(out))
    doc = json.loads(out.read_text())
    assert doc["mb"] == 1 and doc["median_s"] > 0
    assert "signature check takes" in done.stdout


@pytest.mark.server
def test_detect_endpoint_compares_both_layouts_with_in_process(built: Any, tmp_path: Path) -> None:
    from tests.helpers.triton import ensure_tritonserver, link_build

    ensure_tritonserver()
    store = tmp_path / "store"
    link_build(built("yolov8n"), store)
    out = tmp_path / "detect.json"
    done = _run("detect_endpoint.py", "--store", str(store), "--out", str(out), timeout=900)
    doc = json.loads(out.read_text())
    assert doc["agree"] == {"one-instance": True, "ensemble": True}, doc["agree"]  # each layout answers as in-process
    (row,) = doc["rows"]
    assert row["inprocess_rps"] > 0 and row["one-instance_rps"] > 0 and row["ensemble_rps"] > 0, row
    assert "answers agree with in-process" in done.stdout
