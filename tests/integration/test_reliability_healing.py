"""Issue 20, item 4 on real servers: the watcher pack starts beside a server heals a model whose serving process died,
with no command run, and goes with its server.

Triton: the python-backend stub of the deployed tiny is killed (SIGKILL) while a client sends the build's sample
again and again; Triton alone would answer 500 until `pack status --repair` (tests/integration/
test_reliability_health.py, launched with PACK_WATCH=0); the watcher reloads it and the client gets the right answer
again within 30 s, with no pack command between the kill and that answer. Then `pack stop` ends the server, its stubs
and the watcher. TorchServe: a worker is killed the same way (TorchServe restarts it; the watcher probes on), and the
right answer is back within 30 s; then the server itself is killed and its watcher exits by itself.

Each test prints the recovery time it measured (docs/reliability.md records it).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.cli import pack_json, run_pack
from tests.helpers.processes import pid_gone, processes_with, tritonserver_pids_for, wait_until_empty
from tests.helpers.torchserve import copy_build
from tests.helpers.triton import ensure_tritonserver

pytestmark = pytest.mark.server

HEAL_S = 30.0


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _watchers(store: Path) -> list[int]:
    """Live watcher processes of this store (found by their command line, whatever pack recorded)."""
    found = []
    for pid in processes_with(b"packager.targets.watch"):
        try:
            if str(store).encode() + b"\0" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


class Client(threading.Thread):
    """Sends `ask()` (True: answered right) again and again; records (time, right) of every answer."""

    def __init__(self, ask: Callable[[], bool]):
        super().__init__(daemon=True)
        self.ask, self.halt = ask, threading.Event()
        self.answers: list[tuple[float, bool]] = []  # (answered at, right)
        self.asked: list[float] = []  # when each of those answers was asked for

    def run(self) -> None:
        while not self.halt.is_set():
            asked = time.monotonic()
            try:
                right = self.ask()
            except (OSError, ValueError, KeyError):  # 5xx, refused, timed out, a body that is not the answer
                right = False
            self.asked.append(asked)
            self.answers.append((time.monotonic(), right))
            time.sleep(0.1)

    def healed_after(self, since: float, seconds: float) -> float | None:
        """Seconds from `since` to the first right answer to a request sent after it: a request sent after the kill
        can only be answered by a serving process that came back (one sent before it may have been answered by the
        old one; a server that queues requests while it restarts gives no wrong answer at all)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            done = list(zip(self.asked, self.answers, strict=False))  # an answer is appended after its ask
            healed = [t for asked, (t, ok) in done if asked > since and ok]
            if healed:
                return healed[0] - since
            time.sleep(0.2)
        return None

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def _post(url: str, body: dict, headers: dict[str, str] | None = None) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _sample(store: Path) -> tuple[np.ndarray, np.ndarray]:
    folder = store / "tiny" / "1"
    return np.load(folder / "samples" / "input.input.npy"), np.load(folder / "samples" / "output.logits.npy")


# ---------------------------------------------------------------- Triton


def _stubs(store: Path) -> list[int]:
    server = _read(store / ".servers" / "triton" / "state.json")["pid"]
    found = []
    for task in Path(f"/proc/{server}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                if b"triton_python_backend_stub" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
            except OSError:
                continue
    return found


def test_a_killed_triton_stub_serves_again_with_no_command_and_pack_stop_ends_the_watcher(built, tmp_path, monkeypatch):
    monkeypatch.delenv("PACK_WATCH", raising=False)
    ensure_tritonserver()
    store = copy_build(built("tiny"), tmp_path / "store")
    try:
        pack_json("deploy", "tiny", "--target", "triton", "--store", str(store), timeout=600)
        watcher = pack_json("status", "--target", "triton", "--store", str(store))["watcher"]
        assert watcher["running"] and watcher["pid"] in _watchers(store), watcher
        x, expected = _sample(store)
        url = f"http://127.0.0.1:{_read(store / '.servers' / 'triton' / 'state.json')['http_port']}/v2/models/tiny/infer"
        body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.reshape(-1).tolist()}]}

        def ask() -> bool:
            got = np.asarray(_post(url, body)["outputs"][0]["data"], dtype=np.float32).reshape(expected.shape)
            return bool(np.allclose(got, expected, atol=1e-4, rtol=1e-4))

        client = Client(ask)
        client.start()
        [stub] = _stubs(store)
        os.kill(stub, signal.SIGKILL)
        killed = time.monotonic()
        healed = client.healed_after(killed, 60)
        client.stop()
        assert any(not ok for t, ok in client.answers if t > killed), "the kill was not felt"
        print(f"triton: killed python stub to the right answer again, no command run: {healed} s")
        assert healed is not None and healed < HEAL_S, healed
        assert stub not in _stubs(store)
        status = pack_json("status", "--target", "triton", "--store", str(store))
        repair = status["watcher"]["last_repair"]
        assert repair["repaired"] and repair["model"] == "tiny v1" and "not healthy" in repair["line"], repair
        log = (store / ".servers" / "triton" / "watcher" / "watcher.log").read_text()
        assert "repaired tiny v1 in" in log, log
        text = run_pack("status", "--target", "triton", "--store", str(store)).stdout
        assert f"watcher: running (pid {watcher['pid']}" in text and "repaired tiny v1" in text, text
    finally:
        stopped = run_pack("stop", "--target", "triton", "--store", str(store), "--json")
    assert json.loads(stopped.stdout)["watcher"]["stopped"], stopped.stdout
    assert wait_until_empty(lambda: tritonserver_pids_for(store), 30) == [], "tritonserver left after pack stop"
    assert wait_until_empty(lambda: _watchers(store), 10) == [], "the watcher is left after pack stop"
    assert not (store / ".servers" / "triton" / "watcher" / "state.json").exists()


# ---------------------------------------------------------------- TorchServe


def test_a_killed_torchserve_worker_serves_again_and_a_watcher_whose_server_died_exits(built, tmp_path, monkeypatch):
    if not shutil.which("java"):
        pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
    monkeypatch.delenv("PACK_WATCH", raising=False)
    store = copy_build(built("tiny"), tmp_path / "store")
    root = store / ".servers" / "torchserve"
    try:
        pack_json("deploy", "tiny", "--target", "torchserve", "--store", str(store), timeout=600)
        status = pack_json("status", "--target", "torchserve", "--store", str(store))
        watcher = status["watcher"]
        assert watcher["running"] and watcher["pid"] in _watchers(store), watcher
        [worker] = [w["pid"] for m in status["models"] for w in m["workers"]]
        state, key = _read(root / "state.json"), _read(root / "key_file.json")["inference"]["key"]
        x, expected = _sample(store)
        body = {
            "inputs": [{"name": "input", "shape": list(x.shape), "dtype": "float32", "encoding": "base64", "data": ""}],
            "output_encoding": "base64",
        }
        body["inputs"][0]["data"] = base64.b64encode(x.astype("<f4").tobytes()).decode()
        url = f"{state['inference_url']}/predictions/tiny/1"

        def ask() -> bool:
            out = _post(url, body, {"Authorization": f"Bearer {key}"})["outputs"][0]
            got = np.frombuffer(base64.b64decode(out["data"]), dtype=np.dtype(out["dtype"]).newbyteorder("<"))
            return bool(np.allclose(got.reshape(expected.shape), expected, atol=1e-4, rtol=1e-4))

        client = Client(ask)
        client.start()
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        healed = client.healed_after(killed, 60)
        client.stop()
        print(f"torchserve: killed worker to the right answer again, no command run: {healed} s")
        assert healed is not None and healed < HEAL_S, healed
        assert pid_gone(worker)
        now = pack_json("status", "--target", "torchserve", "--store", str(store))
        assert worker not in [w["pid"] for m in now["models"] for w in m["workers"]], now  # a new worker answered
        os.kill(state["pid"], signal.SIGKILL)  # the server itself dies: its watcher goes too, by itself
        assert wait_until_empty(lambda: _watchers(store), 10) == [], "the watcher outlived its server"
        assert "is gone; the watcher exits" in (root / "watcher" / "watcher.log").read_text()
        assert not (root / "watcher" / "state.json").exists()
    finally:
        run_pack("stop", "--target", "torchserve", "--store", str(store))
        wait_until_empty(lambda: processes_with(str(root.resolve()).encode()), 30)
    assert _watchers(store) == []
