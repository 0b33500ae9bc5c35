"""Issue 7 on a real tritonserver launched by pack: loopback sockets, malformed requests through raw HTTP and
tritonclient, a batch with one bad request, Ctrl-C during start and load, a server that never becomes ready, the
server killed while loading.

One server per module (its own store); teardown stops it and checks that no tritonserver of it is left.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.cli import run_pack
from tests.helpers.deploy import Deploying, deploy_until
from tests.helpers.processes import pid_gone, tritonserver_pids_for
from tests.helpers.triton import ensure_tritonserver, link_build

pytestmark = pytest.mark.server


def _state(store: Path) -> dict:
    return json.loads((store / ".servers" / "triton" / "state.json").read_text())


def _url(store: Path) -> str:
    return f"http://127.0.0.1:{_state(store)['http_port']}"


def _one_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _raw(url: str, body: bytes, ctype: str = "application/json") -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _client(store: Path):
    import tritonclient.http as httpclient

    return httpclient, httpclient.InferenceServerClient(_url(store).split("://")[1], connection_timeout=30, network_timeout=60)


def _infer(store: Path, x: np.ndarray, dtype: str = "FP32", model: str = "tiny", name: str = "input") -> np.ndarray:
    httpclient, client = _client(store)
    try:
        item = httpclient.InferInput(name, list(x.shape), dtype)
        item.set_data_from_numpy(x)
        return client.infer(model, [item], outputs=[httpclient.InferRequestedOutput("logits")]).as_numpy("logits")
    finally:
        client.close()


def _deploy_until(store: Path, marker: str, *args: str) -> Deploying:
    return deploy_until(store, "triton", marker, *args)


def _finish(deploying: Deploying) -> tuple[int, str]:
    code, _, err = deploying.finish()
    return code, err


@pytest.fixture(scope="module")
def tri(built, tmp_path_factory):
    ensure_tritonserver()
    store = tmp_path_factory.mktemp("reliability-triton")
    link_build(built("tiny"), store)
    proc = run_pack("deploy", "tiny", "--target", "triton", "--store", str(store), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield store
    run_pack("stop", "--target", "triton", "--store", str(store))
    assert tritonserver_pids_for(store) == [], "a tritonserver is left after pack stop"


def test_every_listening_socket_is_on_loopback(tri):
    import psutil

    root = psutil.Process(_state(tri)["pid"])
    listening = []
    for proc in [root, *root.children(recursive=True)]:
        listening += [c.laddr for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= 3, listening  # HTTP, gRPC, metrics
    assert {_v4(a.ip) for a in listening} == {"127.0.0.1"}, listening  # gRPC binds ::ffff:127.0.0.1: the same


def _v4(ip: str) -> str:
    import ipaddress

    addr = ipaddress.ip_address(ip)
    return str(getattr(addr, "ipv4_mapped", None) or addr)


def test_malformed_http_requests_are_refused_and_the_model_stays_ready(tri):
    base = f"{_url(tri)}/v2/models/tiny/infer"
    good = {"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [0.0] * 3072}]}
    cases = {
        "0-byte body": b"",
        "broken JSON": b'{"inputs": [',
        "not JSON": b"\x89PNG\r\n\x1a\n not a request",
        "wrong shape": json.dumps(
            {**good, "inputs": [{**good["inputs"][0], "shape": [1, 3, 31, 32], "data": [0.0] * 2976}]}
        ).encode(),
        "too few values": json.dumps({**good, "inputs": [{**good["inputs"][0], "data": [0.0] * 10}]}).encode(),
        "wrong dtype": json.dumps({**good, "inputs": [{**good["inputs"][0], "datatype": "INT64", "data": [0] * 3072}]}).encode(),
        "strings as data": json.dumps({**good, "inputs": [{**good["inputs"][0], "data": ["@@@"] * 3072}]}).encode(),
        "unknown input": json.dumps({"inputs": [{**good["inputs"][0], "name": "pixels"}]}).encode(),
    }
    codes = {}
    for label, body in cases.items():
        status, text = _raw(base, body)
        codes[label] = status
        assert status >= 400 and "error" in text, (label, status, text)
    # Triton's own codes (2.51): 400 for a request it can read but refuses, 500 when the JSON or its data do not parse
    assert codes["0-byte body"] == codes["wrong shape"] == codes["wrong dtype"] == codes["unknown input"] == 400, codes
    status, text = _raw(f"{_url(tri)}/v2/models/no_such_model/infer", json.dumps(good).encode())
    assert status in (400, 404) and "no_such_model" in text, (status, text)
    status, text = _raw(f"{_url(tri)}/v2/models/tiny/versions/99/infer", json.dumps(good).encode())
    assert 400 <= status < 500, (status, text)
    status, text = _raw(base, json.dumps(good).encode())
    assert status == 200, text
    states = json.loads(run_pack("status", "--target", "triton", "--store", str(tri), "--json").stdout)
    assert [m["state"] for m in states["models"] if m["name"] == "tiny"] == ["READY"]


def test_wrong_shape_and_dtype_through_tritonclient(tri):
    from tritonclient.utils import InferenceServerException

    x = np.load(tri / "tiny" / "1" / "samples" / "input.input.npy")
    with pytest.raises(InferenceServerException, match="(?i)shape|dims"):
        _infer(tri, np.zeros((1, 3, 31, 32), np.float32))
    with pytest.raises(InferenceServerException, match="(?i)data ?type|datatype|INT64"):
        _infer(tri, x.astype(np.int64), "INT64")
    with pytest.raises(InferenceServerException, match="(?i)unknown|not found"):
        _infer(tri, x, model="no_such_model")
    with pytest.raises(InferenceServerException):
        _infer(tri, x, name="pixels")
    np.testing.assert_allclose(_infer(tri, x), np.load(tri / "tiny/1/samples/output.logits.npy"), atol=1e-5)


def test_concurrent_requests_with_one_bad_one(tri):
    """16 concurrent requests (dynamic batching merges them), one with a wrong shape: only that one fails."""
    from tritonclient.utils import InferenceServerException

    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for _ in range(16)]
    xs[7] = np.zeros((1, 3, 16, 16), np.float32)

    def one(x):
        try:
            return _infer(tri, x)
        except InferenceServerException as exc:
            return exc

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, xs))
    assert isinstance(results[7], InferenceServerException)
    import onnxruntime as ort

    session = ort.InferenceSession(str(tri / "tiny" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    for i, (x, got) in enumerate(zip(xs, results, strict=True)):
        if i != 7:
            assert isinstance(got, np.ndarray), (i, got)
            np.testing.assert_allclose(got, session.run(None, {"input": x})[0], atol=1e-5, rtol=1e-4)


def test_ctrl_c_during_load_keeps_the_previous_version(tri):
    proc = run_pack("build", "tiny", "--version", "2", "--seed", "1", "--store", str(tri), "--iterations", "0", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    pid = _state(tri)["pid"]
    deploying = _deploy_until(tri, "loading tiny", "tiny", "--version", "2")
    deploying.proc.send_signal(signal.SIGINT)
    code, err = _finish(deploying)
    assert code == 130 and "interrupted" in _one_line(err)
    assert _state(tri)["pid"] == pid and not pid_gone(pid)  # a server that ran before keeps running
    repo = Path(_state(tri)["repository"])
    assert sorted(p.name for p in (repo / "tiny").iterdir() if p.name.isdigit()) == ["1"]
    assert not [p for p in repo.iterdir() if p.name.startswith((".old-", ".tmp-"))]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = json.loads(run_pack("status", "--target", "triton", "--store", str(tri), "--json").stdout)["models"]
        ready = [(m["name"], m["version"]) for m in states if m["state"] == "READY"]
        if ready == [("tiny", "1")]:
            break
        time.sleep(0.5)
    assert ready == [("tiny", "1")], states
    x = np.load(tri / "tiny" / "1" / "samples" / "input.input.npy")
    np.testing.assert_allclose(_infer(tri, x), np.load(tri / "tiny/1/samples/output.logits.npy"), atol=1e-5)


def test_server_killed_during_load_is_one_line(tri):
    """Last server test of the module: SIGKILL tritonserver while `pack deploy` loads a new version."""
    pid = _state(tri)["pid"]
    deploying = _deploy_until(tri, "loading tiny", "tiny", "--version", "2")
    os.killpg(pid, signal.SIGKILL)
    code, err = _finish(deploying)
    line = _one_line(err)
    assert code in (4, 5), err
    assert "tiny" in line
    doc = json.loads(run_pack("status", "--target", "triton", "--store", str(tri), "--json").stdout)
    assert doc["running"] is False
    assert tritonserver_pids_for(tri) == []


def test_ctrl_c_while_tritonserver_starts_leaves_no_server(built, tmp_path):
    ensure_tritonserver()
    store = tmp_path / "store"
    link_build(built("tiny"), store)
    # a wrapper that is slow to start: the interrupt lands while pack waits for readiness
    real = ensure_tritonserver()
    slow = tmp_path / "slow-tritonserver"
    slow.write_text(f'#!/bin/sh\nsleep 3\nexec {real} "$@"\n')
    slow.chmod(0o755)
    deploying = _deploy_until(store, "starting", "tiny", "--tritonserver", str(slow))
    time.sleep(0.5)
    deploying.proc.send_signal(signal.SIGINT)
    code, err = _finish(deploying)
    assert code == 130 and "interrupted" in _one_line(err)
    time.sleep(4)  # past the wrapper's sleep: an orphan would now be a real tritonserver
    assert tritonserver_pids_for(store) == []
    assert not (store / ".servers" / "triton" / "state.json").exists()


def test_server_that_never_becomes_ready(built, tmp_path):
    store = tmp_path / "store"
    link_build(built("tiny"), store)
    fake = tmp_path / "tritonserver"
    fake.write_text("#!/bin/sh\necho 'pretending to start'\nexec sleep 120\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    t0 = time.monotonic()
    proc = run_pack("deploy", "tiny", "--target", "triton", "--store", str(store), "--tritonserver", str(fake), "--timeout", "2")
    assert time.monotonic() - t0 < 30
    line = _one_line(proc.stderr)
    assert proc.returncode == 5 and "did not become ready within 2 s" in line and "server.log" in line, proc.stderr
    out = subprocess.run(["pgrep", "-f", str(fake)], capture_output=True, text=True).stdout.split()
    assert out == [], "the never-ready server was left running"
