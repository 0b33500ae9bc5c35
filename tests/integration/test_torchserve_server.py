"""A real TorchServe on loopback, launched and stopped by pack: deploy, predict, batch, scale, roll back, undeploy.

The tests of this module run in order against one server (module fixture); its teardown stops the server and checks
that no process of it is left.
"""

from __future__ import annotations

import base64
import json
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from packager.targets.result import problems
from tests.helpers.cli import pack_json, run_pack
from tests.helpers.processes import processes_under, wait_until_empty
from tests.helpers.reports import rerecord
from tests.helpers.torchserve import classifier_reference, detector_reference, jpeg_bytes, png_bytes, post

pytestmark = pytest.mark.server


def _state(store: Path) -> dict:
    return json.loads((store / ".servers" / "torchserve" / "state.json").read_text())


def _keys(store: Path) -> dict:
    doc = json.loads((store / ".servers" / "torchserve" / "key_file.json").read_text())
    return {"inference": doc["inference"]["key"], "management": doc["management"]["key"]}


@pytest.fixture(scope="module")
def server(session_store):
    """The session store, with a TorchServe that pack launches on first deploy; stopped at the end, no process left."""
    if not shutil.which("java"):
        pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
    root = session_store / ".servers" / "torchserve"
    yield session_store
    proc = run_pack("stop", "--target", "torchserve", "--store", str(session_store), "--json")
    assert proc.returncode == 0, proc.stderr
    assert wait_until_empty(lambda: processes_under(root), 15) == [], "TorchServe processes left after pack stop"


def test_deploy_tiny_and_predict_images(server, built):
    folder = built("tiny")
    doc = pack_json("deploy", "tiny", "--target", "torchserve", "--store", str(server))
    assert problems(doc) == [], problems(doc)  # the one deploy result shape (packager/schemas/deploy.schema.json)
    for key in ("management_url", "predictions_url", "token_file"):
        assert key in doc
    assert (doc["target"], doc["model"], doc["version"], doc["format"]) == ("torchserve", "tiny", "1", "onnx")
    assert doc["smoke_test"]["passed"] is True and doc["smoke_test"]["outputs"][0]["max_abs_error"] <= 1e-5
    assert doc["url"].startswith("http://127.0.0.1:") and doc["management_url"].startswith("http://127.0.0.1:")
    assert doc["infer_url"] == f"{doc['url']}/v2/models/tiny/infer" and doc["server"]["launched"]
    key_file = Path(doc["token_file"])
    assert key_file.stat().st_mode & 0o777 == 0o600
    keys = _keys(server)
    root = server / ".servers" / "torchserve"
    log_text = "".join(
        p.read_text(errors="replace") for p in [*root.glob("*.json"), *root.glob("logs/*.log")] if p.name != "key_file.json"
    )
    assert all(k not in json.dumps(doc) and k not in log_text for k in keys.values()), "a token leaked"

    url = doc["predictions_url"]
    for image, ctype in ((png_bytes(48, 64, seed=3), "image/png"), (jpeg_bytes(80, 50, seed=4), "image/jpeg")):
        status, answer = post(url, image, keys["inference"], ctype)
        assert status == 200, answer
        ref = classifier_reference(folder, image)
        assert [p["class_id"] for p in answer["predictions"]] == ref["class_ids"][:5]
        np.testing.assert_allclose([p["score"] for p in answer["predictions"]], ref["scores"][:5], atol=1e-5)
    image = png_bytes(32, 32, seed=5)
    status, answer = post(
        url, json.dumps({"image": base64.b64encode(image).decode(), "top_k": 3}).encode(), keys["inference"], "application/json"
    )
    assert status == 200 and len(answer["predictions"]) == 3
    assert answer["predictions"][0]["class_id"] == classifier_reference(folder, image)["class_ids"][0]
    status, _ = post(url, png_bytes(32, 32), None, "image/png")
    assert status in (400, 401, 403)  # token authorization is on


def test_concurrent_batch_with_one_malformed_request(server, built):
    folder = built("tiny")
    url = f"{_state(server)['inference_url']}/predictions/tiny"
    token = _keys(server)["inference"]
    images = [png_bytes(40 + i, 60, seed=10 + i) for i in range(7)]
    bodies = [(img, "image/png") for img in images]
    bodies.insert(3, (b"\x89PNG but not really an image", "image/png"))
    with ThreadPoolExecutor(len(bodies)) as pool:
        results = list(pool.map(lambda b: post(url, b[0], token, b[1]), bodies))
    assert results[3][0] == 400 and "image" in json.dumps(results[3][1])
    good = [r for i, r in enumerate(results) if i != 3]
    for (status, answer), image in zip(good, images, strict=True):
        assert status == 200, answer
        assert answer["predictions"][0]["class_id"] == classifier_reference(folder, image)["class_ids"][0]
    # the worker stayed up: the next request is answered
    assert post(url, images[0], token, "image/png")[0] == 200


def test_scale_workers_and_status(server):
    doc = pack_json("deploy", "tiny", "--target", "torchserve", "--store", str(server), "--workers", "2")
    assert doc["already_registered"] is True and doc["workers"] == 2 and doc["smoke_test"]["passed"]
    status = pack_json("status", "--target", "torchserve", "--store", str(server))
    entry = next(m for m in status["models"] if m["model"] == "tiny")
    assert entry["default"] is True and entry["batch_size"] == 4 and len(entry["workers"]) == 2
    doc = pack_json("deploy", "tiny", "--target", "torchserve", "--store", str(server), "--workers", "1")
    assert doc["workers"] == 1


def _break_runtime(mar: Path) -> None:
    """Rewrite a .mar so that its handler answers tensor requests with wrong numbers (logits + 1)."""
    tmp = mar.with_suffix(".tmp")
    with zipfile.ZipFile(mar) as src, zipfile.ZipFile(tmp, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "pack_requests.py":  # where the handler's encode_tensors lives
                data += (
                    b"\n_encode = encode_tensors\n\n"
                    b"def encode_tensors(names, arrays, encoding=None):\n"
                    b"    return _encode(names, [a + 1 for a in arrays], encoding)\n"
                )
            dst.writestr(info, data)
    tmp.replace(mar)


def test_broken_v2_rolls_back_and_good_v2_becomes_default(server, built):
    src = built("tiny")
    v2 = src.parent / "2"
    shutil.rmtree(v2, ignore_errors=True)
    shutil.copytree(src, v2)
    report = json.loads((v2 / "report.json").read_text())
    report["version"] = "2"
    (v2 / "report.json").write_text(json.dumps(report, indent=2))
    pack_json("archive", "tiny", "--version", "2", "--store", str(server), "--force")
    mar = v2 / "torchserve" / "tiny.mar"
    _break_runtime(mar)
    # a tampered archive is refused before anything is registered
    proc = run_pack("deploy", "tiny", "--target", "torchserve", "--version", "2", "--store", str(server))
    assert proc.returncode == 3 and "sha256" in proc.stderr
    rerecord(v2, "torchserve/tiny.mar")

    proc = run_pack("deploy", "tiny", "--target", "torchserve", "--version", "2", "--store", str(server))
    assert proc.returncode == 4, proc.stderr
    assert "smoke test" in proc.stderr and "v1 is still the default" in proc.stderr and "Traceback" not in proc.stderr
    status = pack_json("status", "--target", "torchserve", "--store", str(server))
    assert [(m["version"], m["default"]) for m in status["models"] if m["model"] == "tiny"] == [("1", True)]
    url = f"{_state(server)['inference_url']}/predictions/tiny"
    token = _keys(server)["inference"]
    assert post(url, png_bytes(32, 32), token, "image/png")[0] == 200

    pack_json("archive", "tiny", "--version", "2", "--store", str(server), "--force")
    doc = pack_json("deploy", "tiny", "--target", "torchserve", "--version", "2", "--store", str(server))
    assert doc["previous_default"] == "1" and doc["default_version"] == "2"
    status = pack_json("status", "--target", "torchserve", "--store", str(server))
    assert sorted((m["version"], m["default"]) for m in status["models"] if m["model"] == "tiny") == [("1", False), ("2", True)]
    doc = pack_json("undeploy", "tiny", "--target", "torchserve", "--store", str(server))
    assert sorted(doc["removed"]) == ["1", "2"] and doc["remaining"] == []
    shutil.rmtree(v2)


def test_deploy_with_url_and_token_file(server, built):
    """--url/--token-file: an existing server; the archive is handed over through a loopback URL."""
    built("tiny")
    state = _state(server)
    key_file = server / ".servers" / "torchserve" / "key_file.json"
    proc = run_pack("deploy", "tiny", "--target", "torchserve", "--store", str(server), "--url", state["management_url"])
    assert proc.returncode == 5 and "token" in proc.stderr  # no key: refused, one line
    other_store = server.parent / (server.name + "-elsewhere")  # a store that knows nothing of this server
    env = {"PACK_TORCHSERVE_INFERENCE_URL": state["inference_url"]}
    shutil.copytree(built("tiny"), other_store / "tiny" / "1", dirs_exist_ok=True)
    doc = pack_json(
        "deploy",
        "tiny",
        "--target",
        "torchserve",
        "--store",
        str(other_store),
        "--url",
        state["management_url"],
        "--token-file",
        str(key_file),
        env=env,
    )
    assert not (other_store / ".servers").exists()
    assert doc["server"] == {"launched": False, "pid": None, "log": None} and doc["smoke_test"]["passed"]
    assert doc["url"] == state["inference_url"] and problems(doc) == []
    doc = pack_json(
        "undeploy",
        "tiny",
        "--target",
        "torchserve",
        "--store",
        str(server),
        "--url",
        state["management_url"],
        "--token-file",
        str(key_file),
    )
    assert doc["removed"] == ["1"]


@pytest.mark.slow
def test_resnet18_jpeg(server, built):
    folder = built("resnet18")
    doc = pack_json("deploy", "resnet18", "--target", "torchserve", "--store", str(server), "--batch-size", "2")
    assert doc["smoke_test"]["passed"] and doc["batch_size"] == 2
    image = jpeg_bytes(300, 400, seed=7)
    status, answer = post(doc["predictions_url"], image, _keys(server)["inference"], "image/jpeg")
    assert status == 200, answer
    ref = classifier_reference(folder, image)
    assert [p["class_id"] for p in answer["predictions"]] == ref["class_ids"][:5]
    np.testing.assert_allclose([p["score"] for p in answer["predictions"]], ref["scores"][:5], atol=1e-4)
    labels = (folder / "labels.txt").read_text().splitlines()
    assert answer["predictions"][0]["label"] == labels[ref["class_ids"][0]]
    pack_json("undeploy", "resnet18", "--target", "torchserve", "--store", str(server))


@pytest.mark.slow
def test_yolov8n_detections(server, built):
    folder = built("yolov8n")
    doc = pack_json("deploy", "yolov8n", "--target", "torchserve", "--store", str(server))
    assert doc["smoke_test"]["passed"] and doc["handler"] == "pack_detector.py"
    url = doc["predictions_url"]
    token = _keys(server)["inference"]
    image = png_bytes(360, 480, seed=8)
    # random weights give class scores below 2e-4: a low threshold still exercises the filter and NMS
    body = json.dumps({"image": base64.b64encode(image).decode(), "conf_threshold": 5e-5, "max_detections": 50}).encode()
    status, answer = post(url, body, token, "application/json")
    assert status == 200, answer
    ref = detector_reference(folder, image, 5e-5, 0.45, 50)
    assert answer["image_size"] == [480, 360]
    assert len(answer["detections"]) == len(ref) > 0
    for got, want in zip(answer["detections"], ref, strict=True):
        assert got["class_id"] == want["class_id"] and got["label"] == want["label"]
        assert got["score"] == pytest.approx(want["score"], rel=1e-3, abs=1e-7)
        np.testing.assert_allclose(got["box"], want["box"], atol=0.05)
        assert 0 <= got["box"][0] <= got["box"][2] <= 480 and 0 <= got["box"][1] <= got["box"][3] <= 360
    status, answer = post(url, image, token, "image/png")  # raw bytes, thresholds from model-config.yaml
    assert status == 200 and all(d["score"] > 0.25 for d in answer["detections"])
    status, answer = post(url, json.dumps({"image": "@@@", "conf_threshold": 0.5}).encode(), token, "application/json")
    assert status == 400 and "base64" in answer.get("error", json.dumps(answer))
    pack_json("undeploy", "yolov8n", "--target", "torchserve", "--store", str(server))


def test_stop_leaves_no_process(server):
    root = server / ".servers" / "torchserve"
    assert processes_under(root)
    doc = pack_json("stop", "--target", "torchserve", "--store", str(server))
    assert doc["stopped"] is True
    assert processes_under(root) == []
    doc = pack_json("stop", "--target", "torchserve", "--store", str(server))
    assert doc["stopped"] is False


def test_missing_java_is_one_line_exit_5(built, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(built("tiny"), store / "tiny" / "1")
    import sys

    proc = run_pack(
        "deploy",
        "tiny",
        "--target",
        "torchserve",
        "--store",
        str(store),
        env={"PATH": str(Path(sys.executable).parent), "JAVA_HOME": ""},
    )
    assert proc.returncode == 5, proc.stderr
    assert "Java was not found" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_port_taken_and_never_healthy(tmp_path, monkeypatch):
    """`torchserve --start` exits 0 even when its port is taken: pack notices, says so, and leaves nothing running."""
    import socket

    from packager.errors import EnvironmentProblem
    from packager.targets.torchserve import server as server_module

    if not shutil.which("java"):
        pytest.skip("java is not installed")
    local = server_module.TorchServeServer(tmp_path / "store")
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    real = server_module.free_ports
    monkeypatch.setattr(server_module, "free_ports", lambda n, host="127.0.0.1": [taken, *real(n - 1, host)])
    try:
        with pytest.raises(EnvironmentProblem, match="already in use"):
            local.start(60)
    finally:
        holder.close()
        local.stop()
    assert processes_under(local.root) == []
    monkeypatch.setattr(server_module, "free_ports", real)
    try:
        with pytest.raises(EnvironmentProblem, match=r"did not become ready within 0 s; see its log .*ts_log.log"):
            local.start(0.2)
    finally:
        local.stop()
    assert processes_under(local.root) == []
