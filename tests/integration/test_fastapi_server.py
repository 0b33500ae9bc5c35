"""A real uvicorn serving pack's handler code (`pack deploy --target fastapi`) on loopback: /predict answers what
pack's handler answers in-process, a v2 infer JSON POST is answered with the build's numbers, /metrics counts it,
`pack status` shows it healthy, a failing smoke test puts the previous set back, a port held by another process is one
line, and `pack stop` leaves no process."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from packager.targets.result import problems
from tests.helpers.cli import one_error_line, pack_json, run_pack
from tests.helpers.processes import pid_gone
from tests.helpers.reports import rerecord
from tests.helpers.torchserve import classifier_reference, copy_build, jpeg_bytes

pytestmark = pytest.mark.server
pytest.importorskip("fastapi", reason="pip install 'pack-models[fastapi]'")
pytest.importorskip("uvicorn", reason="pip install 'pack-models[fastapi]'")


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as answer:
        data: bytes = answer.read()
        return data


def requests_counted(url: str) -> float:
    lines = get(f"{url}/metrics").decode().splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith('pack_inference_requests_total{model="tiny"'))


def state(store: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((store / ".servers" / "fastapi" / "state.json").read_text())
    return data


@pytest.fixture(scope="module")
def served(built: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A store with tiny v1 deployed to a FastAPI server pack launched (stopped at the end)."""
    store = copy_build(built("tiny"), tmp_path_factory.mktemp("fastapi") / "store")
    try:
        yield store, pack_json("deploy", "tiny", "--target", "fastapi", "--store", str(store), timeout=180)
    finally:
        run_pack("stop", "--target", "fastapi", "--store", str(store))


def test_deploy_predict_v2_metrics_status(served):
    store, result = served
    url = result["url"]
    assert result["smoke_test"]["passed"] and result["server"]["launched"] and url.startswith("http://127.0.0.1:")
    assert problems(result) == [], problems(result)  # the one deploy result shape (packager/schemas/deploy.schema.json)
    assert result["placement"]["provider"] == "CPUExecutionProvider" or result["placement"]["device"].startswith("cuda")
    before = requests_counted(url)
    image = jpeg_bytes(48, 64)
    status, answer = post(f"{url}/predict", image, "image/jpeg")  # what an end user sends, as to TorchServe
    assert status == 200, answer
    reference = classifier_reference(store / "tiny" / "1", image)
    assert [p["class_id"] for p in answer["predictions"]] == reference["class_ids"][: len(answer["predictions"])]
    np.testing.assert_allclose([p["score"] for p in answer["predictions"]], reference["scores"][:5], rtol=1e-4, atol=1e-6)
    request = (store / ".requests" / "fastapi" / "tiny.v1.json").read_bytes()  # the deploy's v2 body, as an OIP client
    status, v2 = post(f"{url}/v2/models/tiny/infer", request)
    assert status == 200 and v2["model_name"] == "tiny" and v2["outputs"][0]["datatype"] == "FP32", v2
    expected = np.load(store / "tiny" / "1" / "samples" / "output.logits.npy")
    np.testing.assert_allclose(np.asarray(v2["outputs"][0]["data"]).reshape(v2["outputs"][0]["shape"]), expected, atol=1e-5)
    assert post(f"{url}/v2/models/tiny/infer", b"not json")[0] == 400
    assert requests_counted(url) >= before + 2
    meta = json.loads(get(f"{url}/v2/models/tiny"))
    assert meta["inputs"][0]["shape"] == [-1, 3, 32, 32] and meta["parameters"]["provider"]
    assert json.loads(get(f"{url}/v2/health/ready"))["ready"] is True
    doc = pack_json("status", "--target", "fastapi", "--store", str(store))
    assert doc["running"] and [(m["name"], m["health"]["health"]) for m in doc["models"]] == [("tiny", "healthy")]
    assert doc["metrics"]["models"][0]["requests"] >= 2 and doc["metrics"]["models"][0]["failures"] >= 1


def test_failing_smoke_test_puts_the_previous_set_back(served):
    store, result = served
    copy_build(store / "tiny" / "1", store, version="2")
    bad = store / "tiny" / "2" / "samples" / "output.logits.npy"
    recorded = np.load(bad)
    bad.unlink()
    np.save(bad, recorded + 1.0)  # the served numbers will not match what the build recorded
    rerecord(bad.parents[1], "samples/output.logits.npy")  # recorded as verified: only the smoke test can catch it
    proc = run_pack("deploy", "tiny", "--version", "2", "--target", "fastapi", "--store", str(store), timeout=180)
    line = one_error_line(4, proc.returncode, proc.stderr)
    assert "smoke test failed on tiny v2" in line and "restarted with what it served before (tiny v1)" in line, line
    now = state(store)
    assert now["url"] == result["url"] and [m["version"] for m in now["models"]] == ["1"]
    assert [p.name for p in (store / ".servers" / "fastapi" / "models" / "tiny").iterdir()] == ["1-onnx"]
    status, answer = post(
        f"{result['url']}/v2/models/tiny/versions/1/infer", (store / ".requests" / "fastapi" / "tiny.v1.json").read_bytes()
    )
    assert status == 200 and answer["model_version"] == "1"


def test_a_port_held_by_another_process_is_one_line(built, tmp_path):
    store = copy_build(built("tiny"), tmp_path / "store")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = run_pack("deploy", "tiny", "--target", "fastapi", "--port", str(port), "--store", str(store), timeout=120)
    line = one_error_line(5, proc.returncode, proc.stderr)
    assert f"port {port} on 127.0.0.1 is in use by another process" in line and "--port" in line, line
    assert not (store / ".servers" / "fastapi" / "state.json").exists()


def test_stop_leaves_no_process(served):
    store, _ = served
    from packager.targets.fastapi.server import FastAPIServer

    pids = FastAPIServer(store).processes()
    assert pids
    doc = pack_json("stop", "--target", "fastapi", "--store", str(store))
    assert doc["stopped"] and sorted(doc["pids"]) == sorted(pids)
    assert all(pid_gone(p) for p in pids)
    assert pack_json("status", "--target", "fastapi", "--store", str(store))["running"] is False


def test_undeploying_the_last_model_stops_the_server(built, tmp_path):
    store = copy_build(built("tiny"), tmp_path / "store")
    try:
        deployed = pack_json("deploy", "tiny", "--target", "fastapi", "--store", str(store), timeout=180)
        pids = [deployed["server"]["pid"]]
        doc = pack_json("undeploy", "tiny", "--target", "fastapi", "--store", str(store))
        assert doc["removed"] == ["1"] and doc["stopped"] and doc["remaining"] == []
        assert all(pid_gone(p) for p in pids)
        assert not (store / ".servers" / "fastapi" / "models" / "tiny").exists()
        line = one_error_line(2, *_undeploy(store))
        assert "no FastAPI server launched by pack" in line, line
    finally:
        run_pack("stop", "--target", "fastapi", "--store", str(store))


def _undeploy(store: Path) -> tuple[int, str]:
    proc = run_pack("undeploy", "tiny", "--target", "fastapi", "--store", str(store))
    return proc.returncode, proc.stderr
