"""One request shape everywhere: the same Open Inference Protocol (KServe v2) smoke test, unchanged, against the tiny
build on a real tritonserver and a real TorchServe that pack launched on loopback (Triton on its /v2 routes, pack's
TorchServe handlers on /predictions); the `curl` line `pack deploy` prints, run as printed; and both servers'
Prometheus metrics as `pack status` reads them after those requests."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from packager.report.samples import load_sample
from packager.report.validate import first_failure
from tests.helpers.cli import pack_json, run_pack
from tests.helpers.processes import tritonserver_pids_for
from tests.helpers.triton import ensure_tritonserver, link_build

pytestmark = pytest.mark.server

TARGETS = ("triton", "torchserve")


@pytest.fixture(scope="module")
def served(built, tmp_path_factory):
    """tiny deployed on both servers (one store); both stopped at teardown, whatever happened."""
    ensure_tritonserver()
    store = tmp_path_factory.mktemp("oip-store")
    link_build(built("tiny"), store)
    try:
        yield store, {t: pack_json("deploy", "tiny", "--target", t, "--store", str(store)) for t in TARGETS}
    finally:
        for target in TARGETS:
            run_pack("stop", "--target", target, "--store", str(store))
        assert tritonserver_pids_for(store) == []
        assert not (store / ".servers" / "torchserve" / "state.json").exists()


def _call(url: str, body: dict[str, Any] | None, headers: dict[str, str]) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST", headers=headers)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def v2_smoke(infer_url: str, metadata_url: str | None, headers: dict[str, str], build: Path) -> None:
    """The v2 smoke test every server must pass: metadata (where the server has it), the build's sample as a v2 body
    compared with the recorded eager output through the gate's comparison, and a malformed request refused."""
    from packager.report.build_report import BuildReport

    report = BuildReport.load(build)
    sample = load_sample(build, report)
    if metadata_url is not None:
        status, meta = _call(metadata_url, None, headers)
        assert status == 200 and meta["name"] == report.name, meta
        assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [(t.name, "FP32") for t in report.inputs]
    x = sample.inputs[0]
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
    body = {"id": "smoke-1", "inputs": [tensor]}
    status, answer = _call(infer_url, body, headers)
    assert status == 200, answer
    assert answer["model_name"] == "tiny" and answer["id"] == "smoke-1"
    [out] = answer["outputs"]
    assert (out["name"], out["datatype"]) == ("logits", "FP32")
    got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    assert first_failure(sample.check_outputs([got])) is None
    wrong = {"inputs": [{**tensor, "shape": [1, 3, 32, 31], "data": x.ravel()[: 3 * 32 * 31].tolist()}]}
    status, answer = _call(infer_url, wrong, headers)
    assert status == 400 and "error" in answer, (status, answer)


def _endpoints(route: str, docs: dict[str, Any]) -> tuple[str, str | None, dict[str, str]]:
    """(infer URL, metadata URL or None, headers) of a route: Triton's v2 routes; TorchServe's /v2/models/<name>/infer
    (TorchServe 0.12 routes it to the handler; it has no v2 metadata or ready route) and its /predictions."""
    if route == "triton":
        url = docs["triton"]["url"]
        return f"{url}/v2/models/tiny/versions/1/infer", f"{url}/v2/models/tiny", {}
    doc = docs["torchserve"]
    key = json.loads(Path(doc["token_file"]).read_text())["inference"]["key"]
    url = doc["infer_url"] if route == "torchserve" else f"{doc['predictions_url']}/1"
    return url, None, {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("route", ["triton", "torchserve", "torchserve-predictions"])
def test_one_v2_smoke_test_passes_on_both_servers(served, route):
    store, docs = served
    infer_url, metadata_url, headers = _endpoints(route, docs)
    v2_smoke(infer_url, metadata_url, headers, store / "tiny" / "1")


@pytest.mark.parametrize("target", TARGETS)
def test_deploy_prints_a_v2_curl_line_that_runs(served, target):
    store, docs = served
    doc = docs[target]
    line = doc["v2_curl"]
    assert line in doc["summary"] and line.startswith("curl ")
    if target == "torchserve":
        keys = json.loads(Path(doc["token_file"]).read_text())
        assert all(k["key"] not in line for k in keys.values() if isinstance(k, dict)) and doc["token_file"] in line
    proc = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    build = store / "tiny" / "1"
    from packager.report.build_report import BuildReport

    [out] = answer["outputs"]
    got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    assert first_failure(load_sample(build, BuildReport.load(build)).check_outputs([got])) is None


@pytest.mark.parametrize("target", TARGETS)
def test_status_reads_each_servers_metrics(served, target):
    store, docs = served
    infer_url, _, headers = _endpoints(target, docs)
    x = np.zeros((2, 3, 32, 32), np.float32)
    before = pack_json("status", "--target", target, "--store", str(store))["metrics"]
    for _ in range(3):
        status, _answer = _call(
            infer_url,
            {"inputs": [{"name": "input", "shape": [2, 3, 32, 32], "datatype": "FP32", "data": x.ravel().tolist()}]},
            headers,
        )
        assert status == 200
    doc = pack_json("status", "--target", target, "--store", str(store))
    metrics = doc["metrics"]
    assert metrics["url"].startswith("http://127.0.0.1:") and metrics["url"].endswith("/metrics") and "error" not in metrics
    assert metrics["url"] in doc["summary"]

    def count(m: dict[str, Any]) -> int:  # TorchServe counts requests to the default version as version "default"
        return sum(r["requests"] for r in m["models"] if r["model"] == "tiny")

    assert count(metrics) - count(before) >= 3, (before, metrics)
    rows = [r for r in metrics["models"] if r["model"] == "tiny" and r["requests"]]
    assert rows and all(r["latency_ms_mean"] is not None and r["latency_ms_mean"] > 0 for r in rows)
    assert (
        f"tiny {'v' if rows[0]['version'].isdigit() else ''}{rows[0]['version']}: {rows[0]['requests']} request(s)"
        in doc["summary"]
    )
