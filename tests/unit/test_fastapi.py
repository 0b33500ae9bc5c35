"""The serving runtime's one device decision (pack_runtime.placement) with fakes of what onnxruntime and torch report
(the real thing on a GPU where there is one: tests/integration/test_runtime_gpu.py), pack's FastAPI app in-process
(starlette's test client: no server), and the bench's ratio against the HTTP baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from packager.serve.tasks import runtime_on_path
from tests.helpers.onnx_build import identity_onnx

runtime_on_path()
import pack_runtime  # noqa: E402  (a flat module of the serving runtime, as on a server)

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


@pytest.fixture
def providers(monkeypatch: pytest.MonkeyPatch) -> Any:
    import onnxruntime

    def claim(names: list[str]) -> None:
        monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(names))

    return claim


def test_onnx_goes_to_cuda_only_with_a_gpu_and_the_provider(providers):
    providers([CUDA, CPU])
    place = pack_runtime.placement("onnx", 1)
    assert place["device"] == "cuda:1" and place["provider"] == CUDA
    assert place["providers"] == [(CUDA, {"device_id": 1}), CPU]  # the CPU provider stays as the fallback
    assert pack_runtime.placement("onnx", None) == {
        "device": "cpu",
        "provider": CPU,
        "providers": [CPU],
        "reason": "the worker was given no GPU",
    }
    providers([CPU])
    place = pack_runtime.placement("onnx", 0)
    assert place["device"] == "cpu" and "no CUDAExecutionProvider" in place["reason"] and "onnxruntime-gpu" in place["reason"]


@pytest.mark.parametrize("fmt", ["torchscript", "pt2", "aoti"])
def test_torch_formats_go_to_cuda_only_when_torch_has_it(monkeypatch, fmt):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pack_runtime.placement(fmt, 0)["device"] == "cuda:0"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    place = pack_runtime.placement(fmt, 0)
    assert place["device"] == "cpu" and "cannot use CUDA" in place["reason"]


def test_gpu_index_reads_what_the_servers_pass():
    assert [pack_runtime.gpu_index(d) for d in ("cpu", None, "cuda", "cuda:3")] == [None, None, 0, 3]


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_a_cuda_provider_that_does_not_start_is_reported_as_cpu(tmp_path, providers):
    if torch.cuda.is_available():
        pytest.skip("this machine's onnxruntime may really start CUDA")
    providers([CUDA, CPU])  # claimed, but this onnxruntime cannot start it: the session falls back to the CPU
    model = pack_runtime.load_model(str(identity_onnx(tmp_path / "m.onnx")), "onnx", "cuda:0")
    assert model.placement["device"] == "cpu" and model.placement["provider"] == CPU
    assert "could not start CUDAExecutionProvider" in model.placement["reason"]
    x = np.ones((3, 2), np.float32)
    assert np.array_equal(model([x])[0], x)


# ---------------------------------------------------------------- pack's FastAPI app, in-process


def model_dir(folder: Path, name: str) -> dict[str, Any]:
    """A served model's folder as the fastapi target lays it out (pack.json, the export) and its entry in the set."""
    folder.mkdir(parents=True)
    identity_onnx(folder / "model.onnx")
    meta = {
        "name": name,
        "version": "3",
        "format": "onnx",
        "serialized_file": "model.onnx",
        "inputs": [{"name": "x", "shape": [1, 2], "dtype": "float32", "dynamic_axes": [0]}],
        "outputs": ["y"],
    }
    (folder / "pack.json").write_text(json.dumps(meta))
    return {"name": name, "version": "3", "dir": str(folder), "handler": "pack_tensors.py", "handler_settings": {}}


@pytest.fixture
def client(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    import pack_fastapi

    models = {n: pack_fastapi.Served(model_dir(tmp_path / n, n), "cpu") for n in ("a", "b")}
    return TestClient(pack_fastapi.create_app(models))


def test_the_app_answers_with_the_handlers_code(client):
    tensors = {"inputs": [{"name": "x", "shape": [1, 2], "dtype": "float32", "data": [[1.5, -2.0]]}]}
    answer = client.post("/predict/a", content=json.dumps(tensors))
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [[1.5, -2.0]]
    v2 = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.5, -2.0]}], "id": "r1"}
    answer = client.post("/v2/models/b/versions/3/infer", content=json.dumps(v2))
    assert answer.status_code == 200 and answer.json()["id"] == "r1" and answer.json()["outputs"][0]["data"] == [1.5, -2.0]
    assert answer.json()["model_name"] == "b" and answer.json()["model_version"] == "3"
    bad = client.post(
        "/predict/a", content=b'{"inputs": [{"name": "x", "shape": [1, 3], "dtype": "float32", "data": [1, 2, 3]}]}'
    )
    assert bad.status_code == 400 and "does not fit" in bad.json()["error"]
    assert client.post("/predict", content=json.dumps(tensors)).status_code == 400  # two models: name one
    assert client.post("/v2/models/c/infer", content=json.dumps(v2)).status_code == 404
    assert client.post("/v2/models/a/versions/9/infer", content=json.dumps(v2)).status_code == 404
    assert client.post("/v2/models/a/infer", content=json.dumps(tensors)).status_code == 400  # pack's JSON is not v2
    meta = client.get("/v2/models/a").json()
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}] and meta["parameters"]["device"] == "cpu"
    assert client.get("/health").status_code == 200 and client.get("/v2/health/ready").json() == {"ready": True}
    metrics = client.get("/metrics").text
    assert 'pack_inference_requests_total{model="a",version="3"} 1.0' in metrics
    assert 'pack_inference_failures_total{model="a",version="3"} 2.0' in metrics
    assert 'pack_request_duration_seconds_count{model="b",version="3"} 1.0' in metrics


def test_no_models_is_not_healthy(monkeypatch):
    import pack_fastapi
    from fastapi.testclient import TestClient

    client = TestClient(pack_fastapi.create_app({}))
    assert client.get("/health").status_code == 503 and client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/health/live").status_code == 200


def test_the_device_setting(monkeypatch):
    import pack_fastapi

    assert pack_fastapi.device_setting("cpu") == "cpu" and pack_fastapi.device_setting("cuda:2") == "cuda:2"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert pack_fastapi.device_setting("auto") == "cpu" and pack_fastapi.device_setting(None) == "cpu"


# ---------------------------------------------------------------- bench: the ratio against the HTTP baseline


def test_servers_are_compared_with_the_http_baseline():
    from packager.bench.rows import ratios

    def row(name: str, rps: list[float], http: str | None = None) -> dict[str, Any]:
        runs = [{"concurrency": c, "throughput_rps": r} for c, r in zip((1, 8), rps, strict=True)]
        return {"name": name, "compare_with": None, "http_baseline": http, "runs": runs}

    rows = [row("fastapi", [100.0, 200.0]), row("torchserve", [50.0, 300.0], "fastapi"), row("triton", [80.0, 0.0])]
    ratios(rows)
    assert [r["vs_http_baseline"] for r in rows[1]["runs"]] == [0.5, 1.5] and rows[1]["peak_vs_http_baseline"] == 1.5
    assert [r["vs_http_baseline"] for r in rows[2]["runs"]] == [None, None] and rows[2]["peak_vs_http_baseline"] is None
    assert rows[0]["peak_vs_http_baseline"] is None


# ---------------------------------------------------------------- options refused before anything starts


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ("--url", "http://127.0.0.1:9"),
            "--url is not an option of --target fastapi; it belongs to --target triton or torchserve",
        ),
        (("--device", "gpu"), "--device 'gpu' is not a device; use auto, cpu or cuda:N"),
        (("--workers", "0"), "--workers 0 is out of range"),
        (("--port", "70000"), "--port 70000 is out of range"),
        (("--format", "aoti"), "the build has no aoti export"),
    ],
)
def test_bad_deploy_options_are_one_line(tiny_store, args, message):
    from tests.helpers.cli import invoke

    line = invoke("deploy", "tiny", "--target", "fastapi", "--store", str(tiny_store), *args).error(2)
    assert message in line, line
    assert not (tiny_store / ".servers" / "fastapi" / "state.json").exists()
