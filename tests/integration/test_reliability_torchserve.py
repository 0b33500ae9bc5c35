"""Issue 7 on a real TorchServe launched by pack: loopback sockets, token hygiene, malformed and huge requests, a
killed worker, Ctrl-C during start and registration, a registered version whose build changed (issue 20), the server
killed while registering.

One server per module (its own store); teardown stops it and checks that no process of it is left.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.cli import run_pack
from tests.helpers.deploy import Deploying, deploy_until
from tests.helpers.processes import processes_under, wait_until_empty
from tests.helpers.torchserve import copy_build, jpeg_bytes, png_bytes, post

pytestmark = pytest.mark.server


def _root(store: Path) -> Path:
    return store / ".servers" / "torchserve"


def _state(store: Path) -> dict:
    return json.loads((_root(store) / "state.json").read_text())


def _keys(store: Path) -> dict:
    doc = json.loads((_root(store) / "key_file.json").read_text())
    return {k: doc[k]["key"] for k in ("inference", "management", "API") if k in doc}


def _post(url: str, body: bytes, token: str | None, ctype: str = "application/json", timeout: float = 120) -> tuple[int, dict]:
    return post(url, body, token, ctype, timeout)


def _one_line(proc_or_err: str) -> str:
    errors = [line for line in proc_or_err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc_or_err, proc_or_err
    return errors[0]


def _wait_gone(root: Path, seconds: float = 20) -> list[int]:
    return wait_until_empty(lambda: processes_under(root), seconds)


def _deploy_until(store: Path, marker: str, *args: str) -> Deploying:
    return deploy_until(store, "torchserve", marker, *args)


def _tensor_body(x: np.ndarray, name: str = "input", **over) -> bytes:
    item = {"name": name, "shape": list(x.shape), "dtype": str(x.dtype), "data": x.tolist(), **over}
    return json.dumps({"inputs": [item]}).encode()


@pytest.fixture(scope="module")
def ts(built, tmp_path_factory):
    if not shutil.which("java"):
        pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
    store = tmp_path_factory.mktemp("reliability-torchserve")
    copy_build(built("tiny"), store)
    proc = run_pack("deploy", "tiny", "--target", "torchserve", "--store", str(store), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = {"store": store, "deploy": proc, "doc": json.loads(proc.stdout)}
    yield info
    run_pack("stop", "--target", "torchserve", "--store", str(store))
    assert _wait_gone(_root(store)) == [], "TorchServe processes left after pack stop"


def _predict_url(ts, model: str = "tiny") -> str:
    return f"{_state(ts['store'])['inference_url']}/predictions/{model}"


def _worker_pids(store: Path, model: str = "tiny") -> list[int]:
    doc = json.loads(run_pack("status", "--target", "torchserve", "--store", str(store), "--json").stdout)
    entry = next(m for m in doc["models"] if m["model"] == model and m["default"])
    return [w["pid"] for w in entry["workers"] if w["status"] == "READY"]


def test_every_listening_socket_is_on_loopback(ts):
    import psutil

    pids = set(processes_under(_root(ts["store"]))) | {_state(ts["store"])["pid"]}
    listening = []
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        listening += [c.laddr for c in conns if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= 5, listening  # inference, management, metrics, 2 x gRPC
    assert {_v4(a.ip) for a in listening} == {"127.0.0.1"}, listening  # Java binds ::ffff:127.0.0.1: the same address


def _v4(ip: str) -> str:
    import ipaddress

    addr = ipaddress.ip_address(ip)
    return str(getattr(addr, "ipv4_mapped", None) or addr)


def test_token_auth_on_key_file_0600_and_no_token_anywhere(ts):
    store = ts["store"]
    key_file = _root(store) / "key_file.json"
    assert key_file.stat().st_mode & 0o777 == 0o600
    keys = _keys(store)
    assert keys["inference"] and keys["management"]
    status = run_pack("status", "--target", "torchserve", "--store", str(store), "--json")
    texts = {
        "deploy stdout": ts["deploy"].stdout,
        "deploy stderr": ts["deploy"].stderr,
        "status stdout": status.stdout,
        "status stderr": status.stderr,
        "status table": run_pack("status", "--target", "torchserve", "--store", str(store)).stdout,
    }
    for path in [
        *_root(store).rglob("*.json"),
        *_root(store).rglob("*.log"),
        *_root(store).rglob("*.properties"),
        *store.glob("tiny/*/report.json"),
    ]:
        if path.name != "key_file.json" and path.is_file():
            texts[str(path)] = path.read_text(errors="replace")
    for where, text in texts.items():
        for kind, key in keys.items():
            assert key not in text, f"the {kind} key appears in {where}"
    url = _predict_url(ts)
    assert _post(url, png_bytes(32, 32), None, "image/png")[0] in (400, 401, 403)
    assert _post(url, png_bytes(32, 32), "not-the-key", "image/png")[0] in (400, 401, 403)
    mgmt = urllib.request.Request(
        f"{_state(store)['management_url']}/models", headers={"Authorization": "Bearer " + keys["inference"]}
    )
    with pytest.raises(urllib.error.HTTPError):  # the inference key does not open the management API
        urllib.request.urlopen(mgmt, timeout=30)


def test_malformed_requests_get_400_and_the_worker_survives(ts):
    store = ts["store"]
    url, token = _predict_url(ts), _keys(store)["inference"]
    workers = _worker_pids(store)
    x = np.load(store / "tiny" / "1" / "samples" / "input.input.npy")
    cases = {
        "0-byte body": (b"", "application/octet-stream"),
        "0-byte image": (b"", "image/png"),
        "bad base64": (json.dumps({"image": "%%% not base64 %%%"}).encode(), "application/json"),
        "not an image": (b"GIF89a but then nothing of an image" * 10, "image/jpeg"),
        "truncated JPEG": (jpeg_bytes(64, 64)[:300], "image/jpeg"),
        "broken JSON": (b'{"inputs": [', "application/json"),
        "wrong dtype": (_tensor_body(x.astype(np.int64)), "application/json"),
        "wrong shape": (_tensor_body(np.zeros((1, 3, 31, 32), np.float32)), "application/json"),
        "too few values": (_tensor_body(x, shape=[2, 3, 32, 32]), "application/json"),
        "bad base64 tensor": (_tensor_body(x, data="@@@", encoding="base64"), "application/json"),
    }
    for label, (body, ctype) in cases.items():
        status, answer = _post(url, body, token, ctype)
        assert status == 400, (label, status, answer)
        assert answer.get("error") or answer.get("message"), (label, answer)
    status, _ = _post(f"{_state(store)['inference_url']}/predictions/no_such_model", png_bytes(32, 32), token, "image/png")
    assert status == 404
    status, _ = _post(f"{url}/99", png_bytes(32, 32), token, "image/png")
    assert status == 404
    status, answer = _post(url, _tensor_body(x), token)
    assert status == 200
    np.testing.assert_allclose(
        np.asarray(answer["outputs"][0]["data"], np.float32), np.load(store / "tiny/1/samples/output.logits.npy"), atol=1e-5
    )
    assert _worker_pids(store) == workers  # the same worker process answered everything


def test_huge_images_are_resized_or_refused_never_kill_the_worker(ts):
    """6000x6000 JPEG (36 megapixels): decoded and resized (200). 8000x8000 (64 megapixels): over the 40-megapixel
    budget, 400 from its header. A PNG that claims 30000x30000 pixels: Pillow's decompression-bomb error, 400.
    A body over max_request_size (128 MB): refused by TorchServe (413, connection closed) before any worker sees it."""
    from PIL import Image

    store = ts["store"]
    url, token = _predict_url(ts), _keys(store)["inference"]
    workers = _worker_pids(store)
    small = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1000, 1000, 3), dtype=np.uint8))
    for side, expected in ((6000, 200), (8000, 400)):
        buf = io.BytesIO()
        small.resize((side, side)).save(buf, format="JPEG", quality=80)
        status, answer = _post(url, buf.getvalue(), token, "image/jpeg", timeout=180)
        assert status == expected and (expected == 400 or len(answer["predictions"]) == 5), (side, status, answer)
    assert answer["error"].startswith("image too large: 8000x8000 is 64,000,000 pixels"), answer
    bomb = io.BytesIO()
    Image.new("L", (30000, 30000)).save(bomb, format="PNG")  # a few hundred KB of zeros
    status, answer = _post(url, bomb.getvalue(), token, "image/png")
    assert status == 400 and answer["error"].startswith("image too large: "), answer
    try:  # TorchServe answers 413 and closes the connection, often before the client has finished sending
        status, _ = _post(url, b"\0" * (129 * 1024 * 1024), token, "application/octet-stream")
        assert status == 413
    except urllib.error.URLError as exc:
        assert isinstance(exc.reason, ConnectionResetError) or "reset" in str(exc).lower() or "broken pipe" in str(exc).lower(), (
            exc
        )
    assert _post(url, png_bytes(32, 32), token, "image/png")[0] == 200
    assert _worker_pids(store) == workers


def test_killed_worker_is_restarted_and_status_shows_it(ts):
    store = ts["store"]
    [old] = _worker_pids(store)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 90
    new: list[int] = []
    while time.monotonic() < deadline:
        new = [p for p in _worker_pids(store) if p != old]
        if new:
            break
        time.sleep(1)
    assert new, "TorchServe did not restart the killed worker within 90 s"
    status, _ = _post(_predict_url(ts), png_bytes(32, 32), _keys(store)["inference"], "image/png")
    assert status == 200
    table = run_pack("status", "--target", "torchserve", "--store", str(store)).stdout
    assert "1/1" in table  # ready workers / workers


def _make_v2(store: Path) -> None:
    shutil.rmtree(store / "tiny" / "2", ignore_errors=True)
    copy_build(store / "tiny" / "1", store, version="2")


def _during_registration(store: Path, act: Callable[[Deploying], None], again: Callable[[], None]) -> tuple[int, str, str]:
    """`pack deploy tiny --version 2`, and `act` on it once it says it registers. On a loaded machine the deploy can
    finish before the signal reaches it (exit 0: v2 registered): `again` puts the server back, and it is tried again."""
    for _ in range(3):
        deploying = _deploy_until(store, "registering tiny v2", "tiny", "--version", "2")
        act(deploying)
        code, out, err = deploying.finish()
        if code != 0:
            return code, out, err
        again()
    pytest.fail("the deploy finished before the signal three times")


def test_ctrl_c_during_registration_leaves_the_running_version(ts):
    store = ts["store"]
    _make_v2(store)
    code, out, err = _during_registration(
        store,
        lambda deploying: deploying.proc.send_signal(signal.SIGINT),
        lambda: run_pack("undeploy", "tiny", "--version", "2", "--target", "torchserve", "--store", str(store)),
    )
    assert code == 130, (code, out, err)
    assert "interrupted" in _one_line(err)
    doc = json.loads(run_pack("status", "--target", "torchserve", "--store", str(store), "--json").stdout)
    assert [(m["version"], m["default"]) for m in doc["models"] if m["model"] == "tiny"] == [("1", True)]
    assert sorted(p.name for p in (_root(store) / "model-store").iterdir()) == ["tiny.v1.mar"]
    assert _post(_predict_url(ts), png_bytes(32, 32), _keys(store)["inference"], "image/png")[0] == 200


def _with_other_model_digest(archive: Path) -> bytes:
    """Rewrite the registered archive (a new file: the build's .mar may be a hard link to it) as if it had been
    registered from another build: pack.json records another sha256 for the model. Returns the original bytes."""
    original = archive.read_bytes()
    tmp = archive.with_name(".rewritten.tmp")
    with zipfile.ZipFile(io.BytesIO(original)) as src, zipfile.ZipFile(tmp, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "pack.json":
                meta = json.loads(data)
                meta["members_sha256"]["model.onnx"] = "0" * 64
                data = json.dumps(meta).encode()
            dst.writestr(info, data)
    os.replace(tmp, archive)
    return original


def test_rebuilt_registered_version_rolls_out_while_clients_are_answered(ts):
    """Issue 20 item 5: a version registered with other files than its build is replaced (registered and smoke-tested
    under a temporary name, then switched), while a client sending throughout always gets an answer."""
    from packager.report.build_report import BuildReport
    from packager.targets.torchserve.rollout import registered_digest

    store = ts["store"]
    archive = _root(store) / "model-store" / "tiny.v1.mar"
    _with_other_model_digest(archive)
    url, token = _predict_url(ts), _keys(store)["inference"]
    outcomes: list[int | str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                req = urllib.request.Request(url, data=png_bytes(32, 32), method="POST")
                req.add_header("Authorization", f"Bearer {token}")
                req.add_header("Content-Type", "image/png")
                with urllib.request.urlopen(req, timeout=10) as resp:
                    resp.read()
                    outcomes.append(resp.status)
            except urllib.error.HTTPError as exc:
                exc.read()
                outcomes.append(exc.code)
                if exc.headers.get("Retry-After"):
                    time.sleep(float(exc.headers["Retry-After"]))
            except OSError as exc:
                outcomes.append(f"unanswered {exc}")

    thread = threading.Thread(target=client)
    thread.start()
    try:
        proc = run_pack("deploy", "tiny", "--version", "1", "--target", "torchserve", "--store", str(store), "--json")
    finally:
        stop.set()
        thread.join(60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["rolled_out"] is True and "was replaced (its files changed since)" in doc["summary"]
    report = BuildReport.load(store / "tiny" / "1")
    assert registered_digest(archive, "model.onnx") == report.sha256["model.onnx"]  # the build's files serve now
    assert sorted(p.name for p in archive.parent.iterdir()) == ["tiny.v1.mar"]  # no temporary archive, no kept copy
    status = json.loads(run_pack("status", "--target", "torchserve", "--store", str(store), "--json").stdout)
    assert [(m["model"], m["version"], m["default"]) for m in status["models"]] == [("tiny", "1", True)]
    assert [o for o in outcomes if isinstance(o, str)] == [], outcomes
    assert 200 in outcomes and set(outcomes) <= {200, 503, 404}, sorted(set(map(str, outcomes)))
    assert _post(url, png_bytes(32, 32), token, "image/png")[0] == 200


def test_server_killed_during_registration_is_one_line(ts):
    """Last in the module: SIGKILL the TorchServe frontend while `pack deploy` registers; pack stop cleans up."""
    store = ts["store"]
    _make_v2(store)

    def restart() -> None:
        run_pack("stop", "--target", "torchserve", "--store", str(store))
        assert run_pack("deploy", "tiny", "--target", "torchserve", "--store", str(store)).returncode == 0

    code, out, err = _during_registration(store, lambda _: os.kill(_state(store)["pid"], signal.SIGKILL), restart)
    assert code == 4, (code, out, err)
    line = _one_line(err)
    assert code == 4 and "TorchServe stopped while registering tiny v2" in line and "ts_log.log" in line, err
    assert out == ""
    doc = json.loads(run_pack("status", "--target", "torchserve", "--store", str(store), "--json").stdout)
    assert doc["running"] is False
    assert not (_root(store) / "model-store" / "tiny.v2.mar").exists()
    run_pack("stop", "--target", "torchserve", "--store", str(store))
    assert _wait_gone(_root(store)) == []


def test_ctrl_c_while_torchserve_starts_leaves_no_server(built, tmp_path):
    if not shutil.which("java"):
        pytest.skip("java is not installed")
    store = copy_build(built("tiny"), tmp_path / "store")
    deploying = _deploy_until(store, "starting TorchServe", "tiny")
    time.sleep(0.5)
    deploying.proc.send_signal(signal.SIGINT)
    code, _, err = deploying.finish()
    assert code == 130 and "interrupted" in _one_line(err)
    assert _wait_gone(_root(store), 10) == [], "an orphan TorchServe is left"
    assert not (_root(store) / "state.json").exists()
    assert not list(_root(store).glob("model-store/*.mar"))
