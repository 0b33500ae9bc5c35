"""A real tritonserver (installed by scripts/setup-triton.sh, started by pack on loopback): deploy, infer through
tritonclient, compare numbers, rollback, native-backend refusal, --url, undeploy, stop; resnet18 and the yolov8n
ensemble with real image bytes (slow)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from packager.targets.result import problems
from tests.helpers.cli import one_error_line, pack_json, run_pack
from tests.helpers.processes import pid_gone, tritonserver_pids_for
from tests.helpers.reports import rerecord
from tests.helpers.triton import ensure_tritonserver, link_build, read_config, write_config

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server_store(built, tmp_path_factory):
    """A store of its own with the tiny build; the server pack launches for it is stopped at teardown."""
    ensure_tritonserver()
    store = tmp_path_factory.mktemp("triton-server-store")
    link_build(built("tiny"), store)
    yield store
    run_pack("stop", "--target", "triton", "--store", str(store))
    assert tritonserver_pids_for(store) == [], "a tritonserver is still running after pack stop"


def state(store: Path) -> dict:
    return json.loads((store / ".servers" / "triton" / "state.json").read_text())


def client_for(url: str):
    import tritonclient.http as httpclient

    return httpclient, httpclient.InferenceServerClient(url.split("://", 1)[1], connection_timeout=30, network_timeout=60)


def infer(url: str, model: str, arrays: dict, outputs: list[str], version: str = "") -> dict:
    httpclient, client = client_for(url)
    inputs = []
    for name, arr in arrays.items():
        item = httpclient.InferInput(name, list(arr.shape), "FP32" if arr.dtype == np.float32 else "UINT8")
        item.set_data_from_numpy(arr)
        inputs.append(item)
    try:
        result = client.infer(model, inputs, model_version=version, outputs=[httpclient.InferRequestedOutput(o) for o in outputs])
    finally:
        client.close()
    return {o: result.as_numpy(o) for o in outputs}


def onnx_reference(build: Path, arrays: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(build / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, arrays)


def model_states(store: Path, *extra: str) -> dict:
    """{model: its READY version's entry, else its last entry} (the index lists every version it knows)."""
    doc = pack_json("status", "--target", "triton", "--store", str(store), *extra)
    out: dict = {}
    for m in doc["models"]:
        if m["name"] not in out or out[m["name"]]["state"] != "READY":
            out[m["name"]] = m
    return out


def test_deploy_tiny_and_infer(server_store):
    doc = pack_json("deploy", "tiny", "--target", "triton", "--store", str(server_store))
    assert problems(doc) == [], problems(doc)  # the one deploy result shape (packager/schemas/deploy.schema.json)
    assert doc["target"] == "triton" and doc["model"] == "tiny" and doc["version"] == "1" and doc["backend"] == "python"
    assert doc["smoke_test"]["passed"] and doc["smoke_test"]["outputs"][0]["max_abs_error"] <= 1e-5
    assert doc["server"]["launched"] and doc["server"]["backends"] == ["python"]
    assert doc["url"].startswith("http://127.0.0.1:") and doc["infer_url"] == f"{doc['url']}/v2/models/tiny/versions/1/infer"
    st = state(server_store)
    assert st["host"] == "127.0.0.1" and not pid_gone(st["pid"])
    # a batch of 4 that the build never recorded, through tritonclient, against onnxruntime on the same export
    x = np.random.default_rng(7).standard_normal((4, 3, 32, 32)).astype(np.float32)
    got = infer(doc["url"], "tiny", {"input": x}, ["logits"])["logits"]
    np.testing.assert_allclose(got, onnx_reference(server_store / "tiny" / "1", {"input": x})[0], atol=1e-5, rtol=1e-4)
    assert model_states(server_store)["tiny"]["state"] == "READY"
    # deploying again reuses the running server
    again = pack_json("deploy", "tiny", "--target", "triton", "--store", str(server_store))
    assert not again["server"]["launched"] and again["server"]["pid"] == st["pid"]


def test_native_backend_missing_is_one_clear_line(server_store):
    proc = run_pack("deploy", "tiny", "--target", "triton", "--store", str(server_store), "--backend", "onnxruntime")
    assert proc.returncode == 5, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: this tritonserver has no onnxruntime backend (it has: python;") and "--backend python" in last
    assert "the previous tiny keeps serving" in last
    assert model_states(server_store)["tiny"]["state"] == "READY"
    config = read_config(Path(state(server_store)["repository"]) / "tiny" / "config.pbtxt")
    assert config.backend == "python"  # the previous entry was put back


def test_failed_new_version_rolls_back(server_store):
    proc = run_pack(
        "build", "tiny", "--version", "2", "--seed", "1", "--store", str(server_store), "--iterations", "0", "--device", "cpu"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    bad = server_store / "tiny" / "2" / "samples" / "output.logits.npy"
    recorded = np.load(bad)
    bad.unlink()
    np.save(bad, recorded + 1.0)  # the served numbers will not match what the build recorded
    rerecord(bad.parents[1], "samples/output.logits.npy")  # recorded as verified: only the smoke test can catch it
    proc = run_pack("deploy", "tiny", "--target", "triton", "--store", str(server_store))
    assert proc.returncode == 4, proc.stderr
    assert (
        "smoke test failed on tiny v2: output 'logits': max abs error" in proc.stderr
        and "the previous tiny keeps serving" in proc.stderr
    )
    states = model_states(server_store)
    assert states["tiny"]["state"] == "READY" and states["tiny"]["version"] == "1"
    repo = Path(state(server_store)["repository"])
    assert sorted(p.name for p in (repo / "tiny").iterdir() if p.name.isdigit()) == ["1"]
    assert not [p for p in repo.iterdir() if p.name.startswith((".old-", ".tmp-"))]
    x = np.load(server_store / "tiny" / "1" / "samples" / "input.input.npy")
    got = infer(
        state(server_store)["host"] and f"http://127.0.0.1:{state(server_store)['http_port']}", "tiny", {"input": x}, ["logits"]
    )["logits"]
    np.testing.assert_allclose(got, np.load(server_store / "tiny" / "1" / "samples" / "output.logits.npy"), atol=1e-5, rtol=1e-4)


def test_torchscript_through_python_backend(server_store):
    doc = pack_json(
        "deploy", "tiny", "--version", "1", "--target", "triton", "--store", str(server_store), "--format", "torchscript"
    )
    assert doc["format"] == "torchscript" and doc["smoke_test"]["passed"]


def test_deploy_with_url_loads_through_the_api(server_store):
    url = f"http://127.0.0.1:{state(server_store)['http_port']}"
    other = server_store.parent / (server_store.name + "-url")
    link_build(server_store / "tiny" / "1", other)
    proc = run_pack("deploy", "tiny", "--version", "1", "--target", "triton", "--store", str(other), "--url", url, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["smoke_test"]["passed"] and doc["url"] == url and not doc["server"]["launched"]
    # --backend auto at --url: the native backend first; this server has only python, whose answer is the fallback
    assert "has no onnxruntime backend" in proc.stderr and "serving on python" in proc.stderr, proc.stderr
    assert doc["backend"] == "python" and model_states(other, "--url", url)["tiny"]["state"] == "READY"
    assert not (other / ".servers" / "triton" / "state.json").exists()  # no server was launched for that store
    assert model_states(other, "--url", url)["tiny"]["state"] == "READY"


def test_undeploy_status_stop(server_store):
    doc = pack_json("undeploy", "tiny", "--target", "triton", "--store", str(server_store))
    assert doc["unloaded"] == ["tiny"]
    assert model_states(server_store)["tiny"]["state"] != "READY"
    proc = run_pack("undeploy", "tiny", "--target", "triton", "--store", str(server_store))
    assert proc.returncode == 2 and "tiny is not loaded" in proc.stderr
    pid = state(server_store)["pid"]
    doc = pack_json("stop", "--target", "triton", "--store", str(server_store))
    assert doc["stopped"] and doc["pid"] == pid and pid_gone(pid)
    assert tritonserver_pids_for(server_store) == []
    doc = pack_json("status", "--target", "triton", "--store", str(server_store))
    assert doc["running"] is False
    assert pack_json("stop", "--target", "triton", "--store", str(server_store))["stopped"] is False


def test_missing_binary_and_taken_port(tmp_path, built):
    store = tmp_path / "store"
    link_build(built("tiny"), store)
    proc = run_pack("deploy", "tiny", "--target", "triton", "--store", str(store), "--tritonserver", str(tmp_path / "nope"))
    assert proc.returncode == 5 and "--tritonserver" in proc.stderr and "not an executable file" in proc.stderr
    proc = run_pack(
        "deploy",
        "tiny",
        "--target",
        "triton",
        "--store",
        str(store),
        env={"PACK_TRITON_HOME": str(tmp_path / "empty"), "PATH": "/usr/bin:/bin", "PACK_TRITONSERVER": ""},
    )
    assert proc.returncode == 5 and "no tritonserver found" in proc.stderr and "setup-triton.sh" in proc.stderr

    from packager.errors import EnvironmentProblem
    from packager.serve.processes import free_ports
    from packager.targets.triton import server

    binary = ensure_tritonserver()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(EnvironmentProblem, match="address already in use"):
            local = server.TritonServer(store)
            local.launch(lambda: local.plan(binary, (port, *free_ports(2))), 60)
    assert tritonserver_pids_for(store) == []


@pytest.mark.slow
def test_resnet18(built, tmp_path):
    ensure_tritonserver()
    store = tmp_path / "store"
    build = link_build(built("resnet18"), store)
    try:
        doc = pack_json("deploy", "resnet18", "--target", "triton", "--store", str(store))
        assert doc["smoke_test"]["passed"]
        x = np.random.default_rng(3).uniform(-2, 2, (2, 3, 224, 224)).astype(np.float32)
        report = json.loads((build / "report.json").read_text())
        name_in, name_out = report["inputs"][0]["name"], report["outputs"][0]["name"]
        got = infer(doc["url"], "resnet18", {name_in: x}, [name_out])[name_out]
        np.testing.assert_allclose(got, onnx_reference(build, {name_in: x})[0], atol=1e-4, rtol=1e-3)
    finally:
        run_pack("stop", "--target", "triton", "--store", str(store))
    assert tritonserver_pids_for(store) == []


def _runtime_images():
    """The serving runtime's image module (pack_images.py, what the ensemble's pre/post-processing models import),
    imported here as the servers import it: a flat module from the runtime's folder."""
    import importlib

    from packager.serve.tasks import runtime_on_path

    runtime_on_path()
    return importlib.import_module("pack_images")


@pytest.mark.slow
def test_yolov8n_ensemble_with_image_bytes(built, tmp_path):
    import io

    from PIL import Image

    from packager.serve.tasks import sample_image
    from packager.targets.triton.deploy import detect

    ensure_tritonserver()
    store = tmp_path / "store"
    build = link_build(built("yolov8n"), store)
    try:
        # a relative --store, as users type it: the watcher, which runs in its own folder, still finds the store
        doc = pack_json("deploy", "yolov8n", "--target", "triton", "--store", store.name, cwd=store.parent)
        watcher = pack_json("status", "--target", "triton", "--store", str(store))["watcher"]
        assert watcher["running"], watcher
        assert doc["serving_model"] == "yolov8n_ensemble" and doc["serving_infer_url"].endswith(
            "/v2/models/yolov8n_ensemble/versions/1/infer"
        )
        assert doc["infer_url"].endswith("/v2/models/yolov8n/versions/1/infer") and problems(doc) == []
        assert doc["smoke_test"]["passed"] and doc["smoke_test"]["ensemble"]["passed"]
        url = doc["url"]
        # random weights score every class near 0: lower the threshold on the server so NMS and scaling have work
        repo = Path(state(store)["repository"])
        post_cfg = repo / "yolov8n_ensemble" / "config.pbtxt"  # the python backend: the steps and the model in one
        config = read_config(post_cfg)
        config.parameters["pack_conf_threshold"].string_value = "0.0001"
        write_config(config, post_cfg)
        from packager.targets.triton.client import TritonHTTP

        TritonHTTP(url, timeout=120).load("yolov8n_ensemble")
        for fmt, size in (("JPEG", (640, 480)), ("PNG", (500, 700))):
            buf = io.BytesIO()
            Image.open(io.BytesIO(sample_image(*size))).save(buf, format=fmt)
            out = detect(url, "yolov8n_ensemble", buf.getvalue(), timeout=120)
            # step by step: the letterbox of the runtime run here, the detector against onnxruntime on the build's
            # ONNX, the endpoint's boxes against the runtime's decoding of those numbers
            images = _runtime_images()
            image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
            pixels, geometry = images.letterbox(image, (640, 640), 114, 1 / 255.0)
            raw = infer(url, "yolov8n", {"images": pixels}, ["output0"])["output0"]
            np.testing.assert_allclose(raw, onnx_reference(build, {"images": pixels})[0], atol=1e-3, rtol=1e-3)
            boxes, scores, classes = images.yolo_decode(raw, geometry, 0.0001, 0.45, 300)
            assert 0 < len(out["boxes"]) <= 300 and out["boxes"].shape == (len(out["scores"]), 4)
            assert len(out["boxes"]) == len(boxes), fmt
            np.testing.assert_array_equal(out["classes"], classes)
            np.testing.assert_allclose(out["scores"], scores, rtol=1e-5, atol=1e-9)
            np.testing.assert_allclose(out["boxes"], boxes, atol=1e-3)
            assert (
                out["boxes"][:, [0, 2]].max() <= size[0] and out["boxes"][:, [1, 3]].max() <= size[1] and out["boxes"].min() >= 0
            )
        again = pack_json("deploy", "yolov8n", "--target", "triton", "--store", str(store))  # its own entries again
        assert again["smoke_test"]["passed"] and again["models"] == ["yolov8n", "yolov8n_ensemble"], again
        proc = run_pack("undeploy", "yolov8n", "--target", "triton", "--store", str(store), "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["unloaded"] == ["yolov8n_ensemble", "yolov8n"]
    finally:
        run_pack("stop", "--target", "triton", "--store", str(store))
    assert tritonserver_pids_for(store) == []


def test_exported_program_and_aoti_package_served_by_the_python_backend(server_store):
    """Issue 10: the ExportedProgram and the AOTInductor package are served and smoke-tested (the gate's comparison)
    on this project's tritonserver; a torch_aoti entry for the same package passes the offline check."""
    proc = run_pack(
        "build",
        "tiny",
        "--version",
        "7",
        "--formats",
        "pt2,aoti",
        "--store",
        str(server_store),
        "--iterations",
        "0",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    x = np.load(server_store / "tiny" / "7" / "samples" / "input.input.npy")
    expected = np.load(server_store / "tiny" / "7" / "samples" / "output.logits.npy")
    for fmt in ("pt2", "aoti"):
        doc = pack_json("deploy", "tiny", "--version", "7", "--target", "triton", "--store", str(server_store), "--format", fmt)
        assert doc["format"] == fmt and doc["smoke_test"]["passed"], doc
        got = infer(doc["url"], "tiny", {"input": x}, ["logits"], version="7")["logits"]
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-4)
    doc = pack_json("repo", "tiny", "--version", "7", "--backend", "torch_aoti", "--store", str(server_store))
    assert doc["check"]["ok"] and doc["max_batch_size"] == 0
    config = (Path(doc["repository"]) / "tiny" / "config.pbtxt").read_text()
    assert 'platform: "torch_aoti"' in config and 'name: "INPUT__0"' in config and 'name: "OUTPUT__0"' in config
    # Issue 20: this tritonserver does not know the torch_aoti platform: exit 5 with the missing backends' advice
    args = ("deploy", "tiny", "--version", "7", "--target", "triton", "--store", str(server_store), "--backend", "torch_aoti")
    proc = run_pack(*args)
    line = one_error_line(5, proc.returncode, proc.stderr)
    assert line.startswith("error: this tritonserver has no torch_aoti backend (it has: python;") and "--backend python" in line
