"""`--variants` on pack build and `pack optimize`: every kind on tiny (one shared build), resnet18 and a small
transformer encoder (slow); the report lists every variant with its gate, agreement and speed-up, the targets serve
the chosen one, `pack verify` catches a changed variant, and a failed optimize leaves the build as it was."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import pack_json, run_pack

KINDS = ["ort-optimized", "slim", "int8-dynamic", "int8-static", "fp16"]


@pytest.fixture(scope="module")
def tiny_variants(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """tiny with every variant; --min-speedup 0 keeps each one that passes its gate, whatever the timing noise."""
    store = tmp_path_factory.mktemp("variants")
    report = pack_json("build", "tiny", "--variants", "all", "--min-speedup", "0", "--iterations", "3", "--store", str(store))
    return Path(report["path"]), report


def _by_kind(section: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["kind"]: r for r in section["results"]}


def test_every_kind_is_judged_and_recorded_on_tiny(tiny_variants: tuple[Path, dict[str, Any]]) -> None:
    folder, report = tiny_variants
    section = report["variants"]
    results = _by_kind(section)
    assert list(results) == KINDS
    assert results["fp16"]["status"] == "skipped" and "GPU" in results["fp16"]["reason"]
    for kind in KINDS[:-1]:
        record = results[kind]
        assert record["status"] == "kept", record
        assert record["gate"]["passed"] and set(record["gate"]["max_abs_error"]) == {"logits"}
        assert record["agreement"]["measure"] == "top-k" and record["agreement"]["passed"]
        assert record["speedup"] > 0 and set(record["p50_ms"]) == {"1", "4"}
        assert (folder / record["file"]).is_file() and record["file"] in report["sha256"]
    assert results["ort-optimized"]["info"]["provider"] == "CPUExecutionProvider"
    assert isinstance(results["ort-optimized"]["info"]["cpu_flags"], list)
    assert "validation inputs" in results["int8-static"]["info"]["calibration"]
    scale = report["outputs"][0]["gate"]["scale"]  # int8: atol 5% of the output's scale
    assert results["int8-dynamic"]["tolerance"] == [{"output": "logits", "atol": pytest.approx(0.05 * scale), "rtol": 0.5}]
    best = max((r for r in section["results"] if r["status"] == "kept"), key=lambda r: r["speedup"])
    assert section["served"] == best["kind"] and section["reference"] == "eager"


def test_the_targets_serve_the_chosen_variant(tiny_variants: tuple[Path, dict[str, Any]]) -> None:
    folder, report = tiny_variants
    served = (folder / _by_kind(report["variants"])[report["variants"]["served"]]["file"]).read_bytes()
    assert served != (folder / "model.onnx").read_bytes()
    assert (folder / "triton" / "tiny" / "1" / "model.onnx").read_bytes() == served
    with zipfile.ZipFile(folder / "torchserve" / "tiny.mar") as mar:
        assert mar.read("model.onnx") == served


def test_verify_catches_a_changed_variant(tiny_variants: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_variants[0], tmp_path / "tiny" / "1")
    assert pack_json("verify", str(folder))["passed"]
    target = folder / "variants" / "int8-static" / "model.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    proc = run_pack("verify", str(folder))
    assert proc.returncode == 3 and "variants/int8-static/model.onnx" in proc.stderr


def test_optimize_rewrites_the_build_and_a_failed_one_leaves_it(
    tiny_variants: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    folder = shutil.copytree(tiny_variants[0], store / "tiny" / "1")
    before = (folder / "report.json").read_bytes()
    proc = run_pack("optimize", "tiny", "--store", str(store), "--variants", "fp16", "--serve-variant", "fp16")
    assert proc.returncode == 5 and "error: variant fp16 cannot be served" in proc.stderr, proc.stderr
    assert (folder / "report.json").read_bytes() == before
    assert sorted(p.name for p in (store / "tiny").iterdir()) == [".lock", "1"]

    out = pack_json("optimize", "tiny", "--store", str(store), "--variants", "int8-dynamic", "--serve-variant", "int8-dynamic")
    assert out["served"] == "int8-dynamic" and [r["kind"] for r in out["results"]] == ["int8-dynamic"]
    assert "base ONNX" in out["reference"]
    assert sorted(p.name for p in (folder / "variants").iterdir()) == ["int8-dynamic"]
    variant = (folder / "variants" / "int8-dynamic" / "model.onnx").read_bytes()
    assert (folder / "triton" / "tiny" / "1" / "model.onnx").read_bytes() == variant
    assert json.loads((folder / "report.json").read_text())["variants"]["served"] == "int8-dynamic"
    assert pack_json("verify", str(folder), "--parity")["passed"]

    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes() + b"\0")
    proc = run_pack("optimize", "tiny", "--store", str(store), "--variants", "slim")
    assert proc.returncode == 3 and "model.onnx" in proc.stderr


@pytest.mark.server
def test_triton_serves_the_int8_variant_within_its_tolerances(tiny_variants: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """A real deploy of the pinned int8 variant: the smoke test and the health probe compare Triton's answer within
    the variant's tolerances (tiny's own, atol 1e-5, would refuse int8's error)."""
    from tests.helpers.triton import ensure_tritonserver

    ensure_tritonserver()
    store = tmp_path / "store"
    shutil.copytree(tiny_variants[0], store / "tiny" / "1")
    pack_json("optimize", "tiny", "--store", str(store), "--variants", "int8-dynamic", "--serve-variant", "int8-dynamic")
    try:
        smoke = pack_json("deploy", "tiny", "--store", str(store))["smoke_test"]
        assert smoke["passed"] and smoke["outputs"][0]["max_abs_error"] > 1e-5, smoke
        assert pack_json("status", "--store", str(store))["health"]["tiny"]["health"] == "healthy"
    finally:
        run_pack("stop", "--store", str(store))


ENCODER = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=512, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
"""


@pytest.mark.slow
def test_every_kind_on_resnet18(tmp_path: Path) -> None:
    """Every kind passes its gate and agreement on resnet18; the verdict follows the measured speed-up (which the
    machine's load moves, so it is not asserted) and the fastest kept one is served."""
    report = pack_json(
        "build", "resnet18", "--formats", "onnx", "--batch-sizes", "1", "--variants", "all", "--iterations", "3",
        "--store", str(tmp_path),
    )  # fmt: skip
    results = _by_kind(report["variants"])
    assert list(results) == KINDS and results["fp16"]["status"] == "skipped"
    for kind in KINDS[:-1]:
        record = results[kind]
        assert record["gate"]["passed"] and record["agreement"]["passed"], record
        assert record["status"] == ("kept" if record["speedup"] >= 1.1 else "rejected"), record
        assert (record["file"] is not None) == (record["status"] == "kept")
    kept = [r for r in results.values() if r["status"] == "kept"]
    assert report["variants"]["served"] == (max(kept, key=lambda r: r["speedup"])["kind"] if kept else None)


@pytest.mark.slow
def test_a_transformer_encoder_gets_int8_dynamic(tmp_path: Path) -> None:
    model = tmp_path / "encoder.py"
    model.write_text(ENCODER)
    report = pack_json(
        "build", f"{model}:build", "--input", "x:4x32x128:float32:dyn=0,1", "--formats", "onnx",
        "--variants", "int8-dynamic,ort-optimized", "--iterations", "3", "--store", str(tmp_path / "store"),
    )  # fmt: skip
    results = _by_kind(report["variants"])
    assert results["int8-dynamic"]["agreement"]["measure"] == "cosine"
    assert results["int8-dynamic"]["status"] == "kept", results["int8-dynamic"]
    assert report["variants"]["served"] == "int8-dynamic"
