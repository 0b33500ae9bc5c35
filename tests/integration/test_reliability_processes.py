"""Issue 11 (processes): `pack stop` signals only the process pack started and its own descendants. A state file
whose pid now belongs to an unrelated process is stale: it is removed and that process survives; a user's `tail -f`
on a server log survives `pack stop` and does not slow it down.

Every process a test starts is ended in a `finally`; every server is stopped in its fixture's teardown.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.cli import run_pack, spawn_pack
from tests.helpers.processes import pid_gone, processes_under, tritonserver_pids_for, wait_until_empty
from tests.helpers.torchserve import copy_build
from tests.helpers.triton import ensure_tritonserver, link_build

pytestmark = pytest.mark.server


def _bystander(*cmd: str) -> subprocess.Popen[bytes]:
    """An unrelated process in a session of its own (its pid is its process group, as a launched server's is)."""
    proc = subprocess.Popen(list(cmd or ("sleep", "300")), start_new_session=True, stdin=subprocess.DEVNULL)
    time.sleep(0.2)
    return proc


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def _stop_json(target: str, store: Path) -> dict:
    proc = run_pack("stop", "--target", target, "--store", str(store), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _triton_state(pid: int, process: dict | None) -> dict:
    state = {
        "pid": pid,
        "http_port": 1,
        "grpc_port": 2,
        "metrics_port": 3,
        "host": "127.0.0.1",
        "binary": "/nonexistent/tritonserver",
        "log": "/nonexistent/server.log",
        "repository": "/nonexistent/repository",
    }
    return state | ({"process": process} if process is not None else {})


# (what the state file records about the process) -> a stale state: an old start time, another executable, no identity
STALE = {
    "an earlier start time": lambda pid, exe: {"pid": pid, "start_time": 1, "exe": exe},
    "another executable": lambda pid, exe: {"pid": pid, "start_time": None, "exe": "/opt/tritonserver/bin/tritonserver"},
    "no recorded identity": lambda pid, exe: None,
}


def _start_time(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


@pytest.mark.parametrize("case", list(STALE))
def test_triton_stop_with_a_stale_state_signals_nothing(tmp_path, case):
    store = tmp_path / "store"
    folder = store / ".servers" / "triton"
    folder.mkdir(parents=True)
    bystander = _bystander()
    try:
        process = STALE[case](bystander.pid, os.readlink(f"/proc/{bystander.pid}/exe"))
        if process and process["start_time"] is None:
            process["start_time"] = _start_time(bystander.pid)
        (folder / "state.json").write_text(json.dumps(_triton_state(bystander.pid, process)))
        doc = _stop_json("triton", store)
        time.sleep(0.5)
        assert bystander.poll() is None, f"pack stop signalled an unrelated process ({case})"
        assert doc["stopped"] is False and "stale state" in doc["summary"] and "nothing was signalled" in doc["summary"]
        assert not (folder / "state.json").exists()
    finally:
        _end(bystander)


def test_torchserve_stop_with_a_stale_state_signals_nothing(tmp_path):
    root = tmp_path / "store" / ".servers" / "torchserve"
    for sub in ("tmp", "logs"):
        (root / sub).mkdir(parents=True)
    bystander = _bystander()
    try:
        exe = os.readlink(f"/proc/{bystander.pid}/exe")
        state = {"pid": bystander.pid, "process": {"pid": bystander.pid, "start_time": 1, "exe": exe}}
        (root / "state.json").write_text(json.dumps(state))
        (root / "tmp" / ".model_server.pid").write_text(str(bystander.pid))
        doc = _stop_json("torchserve", tmp_path / "store")
        time.sleep(0.5)
        assert bystander.poll() is None, "pack stop signalled an unrelated process"
        assert doc["stopped"] is False and "stale state" in doc["summary"]
        assert not (root / "state.json").exists() and not (root / "tmp" / ".model_server.pid").exists()
    finally:
        _end(bystander)


def _torchserve_tree(store: Path) -> list[int]:
    state = json.loads((store / ".servers" / "torchserve" / "state.json").read_text())
    children = subprocess.run(["pgrep", "-P", str(state["pid"])], capture_output=True, text=True).stdout.split()
    return [state["pid"], *map(int, children)]


def test_torchserve_stop_spares_a_tail_on_its_log_and_does_not_wait_for_it(ts_store):
    proc = run_pack("deploy", "tiny", "--target", "torchserve", "--store", str(ts_store), "--json", "--timeout", "300")
    assert proc.returncode == 0, proc.stderr[-3000:]
    server = _torchserve_tree(ts_store)
    assert len(server) >= 2, "no worker under the frontend"
    log = ts_store.resolve() / ".servers" / "torchserve" / "logs" / "ts_log.log"
    tail = _bystander("tail", "-f", str(log))
    try:
        t0 = time.monotonic()
        doc = _stop_json("torchserve", ts_store)
        took = time.monotonic() - t0
        assert doc["stopped"] is True and set(doc["pids"]) >= set(server)
        assert tail.poll() is None, "pack stop killed a tail -f on the server's log"
        assert took < 25, f"pack stop took {took:.1f} s (it waited for a process it did not start)"
        assert wait_until_empty(lambda: [p for p in server if not pid_gone(p)], 20) == []
    finally:
        _end(tail)


def test_triton_stop_ends_the_server_and_its_stubs_only(built, tmp_path):
    ensure_tritonserver()
    store = tmp_path / "store"
    link_build(built("tiny"), store)
    proc = run_pack("deploy", "tiny", "--target", "triton", "--store", str(store), "--json", "--timeout", "300")
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        state = json.loads((store / ".servers" / "triton" / "state.json").read_text())
        assert state["process"]["pid"] == state["pid"] and state["process"]["exe"].endswith("tritonserver")
        stubs = subprocess.run(["pgrep", "-P", str(state["pid"])], capture_output=True, text=True).stdout.split()
        assert stubs, "no python-backend stub under tritonserver"
        tail = _bystander("tail", "-f", state["log"])
        try:
            doc = _stop_json("triton", store)
            assert doc["stopped"] is True and tail.poll() is None
            gone = [state["pid"], *map(int, stubs)]
            assert wait_until_empty(lambda: [p for p in gone if not pid_gone(p)], 20) == []
        finally:
            _end(tail)
    finally:
        run_pack("stop", "--target", "triton", "--store", str(store))


# ---------------------------------------------------------------- concurrency: deploys into one store queue up


@pytest.fixture(scope="module")
def tiny2(tmp_path_factory) -> Path:
    """A build of the tiny model under another name (`tiny2`), a second model to deploy beside `tiny`."""
    from packager.build.pipeline import build
    from packager.build.plan import resolve
    from packager.targets import packagers

    store = tmp_path_factory.mktemp("tiny2")
    _, folder = build(
        resolve("tiny", None, {"device": "cpu", "name": "tiny2"}), store, force=False, iterations=1, packagers=packagers()
    )
    return folder


def _two_stores(built, tiny2: Path, store: Path) -> Path:
    for build in (built("tiny"), tiny2):
        link_build(build, store)
    return store


def _deploy_both_at_once(store: Path, target: str) -> list[tuple[int, str, str]]:
    procs = [
        spawn_pack("deploy", name, "--target", target, "--store", str(store), "--json", "--timeout", "300")
        for name in ("tiny", "tiny2")
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        results.append((proc.returncode, out, err))
    return results


def test_two_triton_deploys_into_a_fresh_store_at_once_share_one_server(built, tiny2, tmp_path):
    ensure_tritonserver()
    store = _two_stores(built, tiny2, tmp_path / "store")
    try:
        results = _deploy_both_at_once(store, "triton")
        for code, _, err in results:
            assert code == 0, err[-3000:]
        assert len(tritonserver_pids_for(store)) == 1, "not exactly one tritonserver for the store"
        doc = json.loads(run_pack("status", "--target", "triton", "--store", str(store), "--json").stdout)
        ready = {m["name"] for m in doc["models"] if m.get("state") == "READY"}
        assert {"tiny", "tiny2"} <= ready, doc
    finally:
        run_pack("stop", "--target", "triton", "--store", str(store))
    assert wait_until_empty(lambda: tritonserver_pids_for(store), 20) == []


def test_two_torchserve_deploys_into_a_fresh_store_at_once_share_one_server(built, tiny2, tmp_path):
    if not shutil.which("java"):
        pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
    store = tmp_path / "store"
    for build in (built("tiny"), tiny2):
        copy_build(build, store)
    try:
        results = _deploy_both_at_once(store, "torchserve")
        for code, _, err in results:
            assert code == 0, err[-3000:]
        docs = [json.loads(out) for _, out, _ in results]
        assert len({d.get("management_url") or d.get("url") for d in docs}) == 1, docs
        doc = json.loads(run_pack("status", "--target", "torchserve", "--store", str(store), "--json").stdout)
        assert {"tiny", "tiny2"} <= {m["model"] for m in doc["models"]}, doc
    finally:
        run_pack("stop", "--target", "torchserve", "--store", str(store))
    assert wait_until_empty(lambda: processes_under(store / ".servers" / "torchserve"), 20) == []


# ---------------------------------------------------------------- undeploy under load: every request is answered


ANSWER_S = 10  # a tiny model answers on loopback in milliseconds: a request held longer than this was dropped


def _send(url: str, body: bytes, token: str | None) -> str:
    """One request: "ok" (200), "refused <code>" (a clean 4xx/5xx answer; "refused 503 retry-after <s>" when it says
    when to come back, which the client then honours) or "unanswered <why>" (no answer within ANSWER_S: a server that
    drops a request leaves it waiting, and waiting longer only makes the test slower)."""
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=ANSWER_S) as resp:
            resp.read()
            return "ok"
    except urllib.error.HTTPError as exc:
        exc.read()
        retry = exc.headers.get("Retry-After") if exc.code == 503 else None
        if retry:
            time.sleep(float(retry))  # a well-behaved client backs off as told
            return f"refused 503 retry-after {retry}"
        return f"refused {exc.code}"
    except (OSError, http.client.HTTPException) as exc:
        return f"unanswered {type(exc).__name__}: {exc}"


def _undeploy_under_load(target: str, store: Path, url: str, body: bytes, token: str | None) -> list[str]:
    """4 clients send continuously; `pack undeploy tiny` runs after 1.5 s; they go on 1.5 s after it returned."""
    stop = threading.Event()
    outcomes: list[str] = []

    def client() -> None:
        while not stop.is_set():
            outcomes.append(_send(url, body, token))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        proc = run_pack("undeploy", "tiny", "--target", target, "--store", str(store))
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return outcomes


def _verdict(outcomes: list[str]) -> None:
    unanswered = [o for o in outcomes if o.startswith("unanswered")]
    counts = collections.Counter(o.split(":")[0] for o in outcomes)
    assert unanswered == [], f"{len(unanswered)} of {len(outcomes)} got no answer: {sorted(set(unanswered))[:5]} {counts}"
    assert "ok" in outcomes and any(o.startswith("refused 4") for o in outcomes), sorted(set(outcomes))


def _sample(store: Path) -> np.ndarray:
    return np.load(store / "tiny" / "1" / "samples" / "input.input.npy")


def test_triton_undeploy_under_load_answers_every_request(built, tmp_path):
    ensure_tritonserver()
    store = tmp_path / "store"
    link_build(built("tiny"), store)
    try:
        proc = run_pack("deploy", "tiny", "--target", "triton", "--store", str(store), "--timeout", "300")
        assert proc.returncode == 0, proc.stderr[-3000:]
        state = json.loads((store / ".servers" / "triton" / "state.json").read_text())
        x = _sample(store)
        body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
        url = f"http://127.0.0.1:{state['http_port']}/v2/models/tiny/infer"
        _verdict(_undeploy_under_load("triton", store, url, json.dumps(body).encode(), None))
    finally:
        run_pack("stop", "--target", "triton", "--store", str(store))


def test_torchserve_undeploy_under_load_answers_every_request(ts_store):
    proc = run_pack("deploy", "tiny", "--target", "torchserve", "--store", str(ts_store), "--timeout", "300")
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = ts_store / ".servers" / "torchserve"
    state = json.loads((root / "state.json").read_text())
    token = json.loads((root / "key_file.json").read_text())["inference"]["key"]
    x = _sample(ts_store)
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "dtype": str(x.dtype), "data": x.tolist()}]}
    url = f"{state['inference_url']}/predictions/tiny"
    outcomes = _undeploy_under_load("torchserve", ts_store, url, json.dumps(body).encode(), token)
    _verdict(outcomes)
    assert any(o.startswith("refused 503 retry-after") for o in outcomes), sorted(set(outcomes))  # it drained first


# ---------------------------------------------------------------- store paths with spaces and non-ASCII characters


def test_triton_deploy_into_a_store_path_with_a_space_and_non_ascii(built, tmp_path):
    ensure_tritonserver()
    store = tmp_path / "my store ü"
    link_build(built("tiny"), store)
    try:
        t0 = time.monotonic()
        proc = run_pack("deploy", "tiny", "--target", "triton", "--store", str(store), "--json", "--timeout", "120")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert time.monotonic() - t0 < 100
        doc = json.loads(proc.stdout)
        assert doc["smoke_test"]["passed"]
        state = json.loads((store / ".servers" / "triton" / "state.json").read_text())
        link = Path((store / ".servers" / "triton" / "repository-link").read_text())  # the private link (serve/local.py)
        assert " " not in str(link) and link.resolve() == Path(state["repository"]), state
    finally:
        run_pack("stop", "--target", "triton", "--store", str(store))
    assert not link.exists() and not link.parent.exists(), "the repository link was left behind"
    assert wait_until_empty(lambda: tritonserver_pids_for(store), 20) == []


def test_torchserve_deploy_into_a_store_path_with_a_space_and_non_ascii(built, tmp_path):
    if not shutil.which("java"):
        pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
    store = copy_build(built("tiny"), tmp_path / "my store ü")
    try:
        proc = run_pack("deploy", "tiny", "--target", "torchserve", "--store", str(store), "--json", "--timeout", "300")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout)["smoke_test"]["passed"]
        tmp = store.resolve() / ".servers" / "torchserve" / "tmp"
        if len(str(tmp).encode()) + len("/.ts.sock.65535") > 107:  # the worker sockets went through the short link
            link = Path((tmp.parent / "tmp-link").read_text())
            assert link.is_symlink() and link.resolve() == tmp and len(str(link)) < 40
    finally:
        run_pack("stop", "--target", "torchserve", "--store", str(store))
    assert wait_until_empty(lambda: processes_under(store / ".servers" / "torchserve"), 20) == []
