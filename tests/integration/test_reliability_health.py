"""Issue 11, item 4 on real servers: `pack status` probes every deployed model with its build's sample and says
`unhealthy` with the reason where the server's own readiness says all is well, and exits 7 (issue 20, item 3: its
`--json` document first); `pack status --repair` reloads it (exit 0 once repaired).

Triton: the python-backend stub of a model killed (SIGKILL; found as a child of the tritonserver pack launched,
through /proc): `/v2/health/ready` stays 200 and the index says READY, every request fails, `pack status` says
unhealthy, `--repair` loads the model again and it answers. TorchServe: a worker killed is restarted by TorchServe
itself (the probe waits for it and says healthy); a worker frozen (SIGSTOP: alive, READY, never answering) is found
unhealthy and `--repair` scales the workers to zero and back.

The servers are launched with PACK_WATCH=0 (no watcher): what is tested here is what `pack status` sees before any
repair (tests/integration/test_reliability_healing.py tests the watcher). Each server is stopped in its fixture's
teardown, which checks that no process of it is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.cli import pack_json, run_pack
from tests.helpers.processes import pid_gone, processes_under, tritonserver_pids_for, wait_until_empty
from tests.helpers.torchserve import copy_build
from tests.helpers.triton import ensure_tritonserver

pytestmark = pytest.mark.server


def _status(store: Path, target: str, *extra: str, code: int = 0) -> dict:
    """`pack status --json`: its whole document on stdout whatever its exit code (7: a model is unhealthy)."""
    proc = run_pack("status", "--target", target, "--store", str(store), *extra, "--json")
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    if code == 7:
        assert proc.stderr.strip().splitlines()[-1].startswith("error: unhealthy: tiny v1; run `pack status --repair`")
    return json.loads(proc.stdout)


def _wait(predicate, seconds: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


# ---------------------------------------------------------------- Triton


@pytest.fixture
def triton(built, tmp_path, monkeypatch):
    monkeypatch.setenv("PACK_WATCH", "0")  # no watcher: the killed stub stays dead until `pack status --repair`
    ensure_tritonserver()
    store = tmp_path / "store"
    copy_build(built("tiny"), store)
    try:
        pack_json("deploy", "tiny", "--target", "triton", "--store", str(store), timeout=600)
        yield store
    finally:
        run_pack("stop", "--target", "triton", "--store", str(store))
        assert wait_until_empty(lambda: tritonserver_pids_for(store), 30) == [], "tritonserver left after pack stop"
        assert wait_until_empty(lambda: processes_under(store / ".servers" / "triton"), 10) == [], "a stub left after pack stop"


def _triton_state(store: Path) -> dict:
    return json.loads((store / ".servers" / "triton" / "state.json").read_text())


def stub_pids(store: Path, model: str) -> list[int]:
    """The live python-backend stubs of `model`: children of the tritonserver pack launched (its pid in state.json)."""
    server = _triton_state(store)["pid"]
    found = []
    for task in Path(f"/proc/{server}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"triton_python_backend_stub" in cmdline and f"/{model}/".encode() in cmdline and not pid_gone(int(child)):
                found.append(int(child))
    return found


def _triton_answer(store: Path, sample: np.ndarray, expected: np.ndarray) -> int:
    """The HTTP status of the sample sent to tiny; asserts the answer when it is 200."""
    url = f"http://127.0.0.1:{_triton_state(store)['http_port']}/v2/models/tiny/infer"
    body = {"inputs": [{"name": "input", "shape": list(sample.shape), "datatype": "FP32", "data": sample.reshape(-1).tolist()}]}
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code
    got = np.asarray(doc["outputs"][0]["data"], dtype=np.float32).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    return 200


def _ready(store: Path) -> int:
    url = f"http://127.0.0.1:{_triton_state(store)['http_port']}/v2/health/ready"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status


def test_triton_dead_stub_is_reported_unhealthy_and_repaired(triton, built):
    store = triton
    folder = store / "tiny" / "1"
    sample = np.load(folder / "samples" / "input.input.npy")
    expected = np.load(folder / "samples" / "output.logits.npy")
    assert _status(store, "triton")["health"]["tiny"]["health"] == "healthy"
    [stub] = stub_pids(store, "tiny")
    os.kill(stub, signal.SIGKILL)
    killed = time.monotonic()
    assert _wait(lambda: pid_gone(stub), 10)
    assert _triton_answer(store, sample, expected) >= 500  # every request fails ...
    assert _ready(store) == 200  # ... while the server says it is ready
    doc = _status(store, "triton", code=7)  # the exit code says it too (a cron job, a CI gate)
    assert [m["state"] for m in doc["models"] if m["name"] == "tiny"] == ["READY"]
    health = doc["health"]["tiny"]
    assert health["health"] == "unhealthy" and "not healthy" in health["reason"], health
    text = run_pack("status", "--target", "triton", "--store", str(store))
    assert "tiny v1: unhealthy (inference failed: Stub process" in text.stdout and text.returncode == 7
    repaired = _status(store, "triton", "--repair")["health"]["tiny"]
    assert repaired["health"] == "healthy" and repaired["repair"]["repaired"], repaired
    assert "not healthy" in repaired["repair"]["was"]
    assert _triton_answer(store, sample, expected) == 200
    recovery = time.monotonic() - killed
    [new] = stub_pids(store, "tiny")
    assert new != stub and recovery < 30, recovery
    print(f"triton: killed stub to answered again after pack status --repair: {recovery:.1f} s")
    again = _status(store, "triton", "--repair")["health"]["tiny"]  # healthy: nothing to repair
    assert again["health"] == "healthy" and "repair" not in again


# ---------------------------------------------------------------- TorchServe


@pytest.fixture
def torchserve(built, tmp_path, monkeypatch):
    monkeypatch.setenv("PACK_WATCH", "0")  # no watcher: the frozen worker stays frozen until `pack status --repair`
    if not shutil.which("java"):
        pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
    store = tmp_path / "store"
    copy_build(built("tiny"), store)
    frozen: list[int] = []
    try:
        pack_json("deploy", "tiny", "--target", "torchserve", "--store", str(store), timeout=600)
        yield store, frozen
    finally:
        for pid in frozen:  # a worker this test froze and TorchServe did not replace: let it go on, then stop
            if not pid_gone(pid):
                os.kill(pid, signal.SIGCONT)
        run_pack("stop", "--target", "torchserve", "--store", str(store))
        root = store / ".servers" / "torchserve"
        assert wait_until_empty(lambda: processes_under(root), 30) == [], "TorchServe processes left after pack stop"


def _workers(store: Path, *extra: str, code: int = 0) -> tuple[list[int], dict]:
    doc = _status(store, "torchserve", *extra, code=code)
    [entry] = [m for m in doc["models"] if m["model"] == "tiny"]
    return [w["pid"] for w in entry["workers"]], entry


def test_torchserve_killed_worker_is_restarted_and_a_frozen_one_repaired(torchserve):
    store, frozen = torchserve
    [worker], entry = _workers(store)
    assert entry["health"]["health"] == "healthy"
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    _, entry = _workers(store, "--timeout", "60")  # TorchServe restarts the worker; the probe waits for its answer
    print(f"torchserve: killed worker to the sample answered again (TorchServe's own restart): {time.monotonic() - killed:.1f} s")
    assert entry["health"]["health"] == "healthy" and "repair" not in entry["health"], entry
    assert _wait(lambda: len([p for p in _workers(store)[0] if p != worker]) == 1, 60)
    [worker], _ = _workers(store)
    os.kill(worker, signal.SIGSTOP)  # alive and READY to TorchServe, answering nothing
    frozen.append(worker)
    stopped = time.monotonic()
    _, entry = _workers(store, "--timeout", "5", code=7)
    assert entry["health"]["health"] == "unhealthy" and "no answer within 5 s" in entry["health"]["reason"], entry
    pids, entry = _workers(store, "--repair", "--timeout", "20")
    repair = entry["health"].get("repair") or {}
    assert entry["health"]["health"] == "healthy" and repair.get("repaired"), entry
    assert worker not in pids and len(pids) == 1, pids  # the workers as they are after the repair
    print(f"torchserve: frozen worker to healthy with pack status --repair --timeout 20: {time.monotonic() - stopped:.1f} s")
    assert _wait(lambda: pid_gone(worker), 30), "the frozen worker was not replaced"
    assert worker not in _workers(store)[0]
