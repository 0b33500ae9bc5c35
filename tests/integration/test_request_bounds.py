"""Issue 20, item 7 on real servers' HTTP: bounded requests. pack's FastAPI app (uvicorn, `pack deploy --target
fastapi`) answers a body over 128 MiB with 413 before reading it (from its Content-Length; a chunked one once it passes
the limit), checks values against the declared dtype (INT64 data `1.5` is a 400, not truncated), a batch against what
the build validated, and says what is wrong in one line without an object repr; TorchServe runs the same handler code
on a v2 request; Triton refuses a v2 request over its max_batch_size; yolov8n on FastAPI refuses max_detections past
the build's. The in-process rules: tests/unit/
test_bounded_requests.py."""

from __future__ import annotations

import base64
import http.client
import json
import select
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers.cli import pack_json, run_pack
from tests.helpers.torchserve import copy_build, jpeg_bytes, post
from tests.helpers.triton import ensure_tritonserver, link_build

pytestmark = pytest.mark.server

MIB = 1024 * 1024
IDS_MODEL = '''"""Three numbers per id, summed over the ids: an int64 input."""
from torch import nn


class Ids(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 3)

    def forward(self, ids):
        return self.emb(ids).sum(dim=1)


def build():
    return Ids()
'''
BATCH_LIMIT = (
    "input 'input': a batch of 5 is over this model's limit of 4 (the largest batch size its build validated); "
    "send at most 4 per request, or rebuild with --batch-sizes up to 5"
)


def v2(rows: int, data: Any = None, name: str = "input", datatype: str = "FP32", shape: Any = None) -> bytes:
    """A v2 body for tiny (`rows` images of 3x32x32) unless `data` and `shape` say otherwise."""
    shape = shape or [rows, 3, 32, 32]
    if data is None:
        data = np.linspace(0, 1, int(np.prod(shape)), dtype=np.float32).tolist()
    return json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}).encode()


def sent_raw(port: int, path: str, headers: dict[str, str], chunks: Iterable[bytes]) -> tuple[int, dict[str, Any], int]:
    """POST on a raw socket: send the headers, then the chunks until the server answers; returns (status, JSON answer,
    bytes of body sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sent = 0
    try:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall((head + "\r\n").encode())
        try:
            for chunk in chunks:
                if select.select([sock], [], [], 0)[0]:  # answered: stop sending
                    break
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, json.loads(answer.read()), sent
    finally:
        sock.close()


def peak_kib(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in KiB."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1])


@pytest.fixture(scope="module")
def fastapi(built: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A FastAPI server pack launched serving tiny and `ids` (an int64 input, built here), stopped at the end."""
    pytest.importorskip("fastapi", reason="pip install 'pack-models[fastapi]'")
    root = tmp_path_factory.mktemp("bounds")
    store = copy_build(built("tiny"), root / "store")
    (root / "ids.py").write_text(IDS_MODEL)
    built_ids = run_pack(
        "build", f"{root / 'ids.py'}:build", "--name", "ids", "--input", "ids:1x4:int64:dyn=0:range=0,10",
        "--formats", "onnx", "--iterations", "0", "--store", str(store), timeout=300,
    )  # fmt: skip
    assert built_ids.returncode == 0, built_ids.stderr[-3000:]
    try:
        pack_json("deploy", "tiny", "--target", "fastapi", "--store", str(store), timeout=180)
        result = pack_json("deploy", "ids", "--target", "fastapi", "--store", str(store), timeout=180)
        state = json.loads((store / ".servers" / "fastapi" / "state.json").read_text())
        yield {"url": result["url"], "port": int(state["port"]), "pid": int(state["pid"]), "store": store}
    finally:
        run_pack("stop", "--target", "fastapi", "--store", str(store))


def test_fastapi_answers_413_to_a_400_mb_body_before_reading_it(fastapi):
    port, pid = fastapi["port"], fastapi["pid"]
    before = peak_kib(pid)
    t0 = time.monotonic()
    status, answer, sent = sent_raw(
        port,
        "/v2/models/tiny/infer",
        {"Content-Type": "application/json", "Content-Length": str(400 * 1000 * 1000)},
        (b" " * (64 * 1024) for _ in range(16)),
    )
    assert status == 413 and time.monotonic() - t0 < 10, (status, answer)
    assert answer == {
        "error": "request body over 134,217,728 bytes (128 MiB), this server's limit; send a smaller body (fewer rows "
        "or a smaller image per request)"
    }
    assert peak_kib(pid) - before < 32 * 1024  # the server read all 400 MB: 1.37 GB at its peak

    def chunked() -> Iterator[bytes]:  # no Content-Length: refused once what was read passes 128 MiB
        for _ in range(160):
            yield b"%x\r\n%s\r\n" % (MIB, b" " * MIB)

    status, answer, sent = sent_raw(port, "/predict/tiny", {"Transfer-Encoding": "chunked"}, chunked())
    assert status == 413 and "128 MiB" in answer["error"] and sent < 150 * MIB, (status, answer, sent)
    status, good = post(f"{fastapi['url']}/v2/models/tiny/infer", v2(4), None, "application/json")
    assert status == 200 and good["outputs"][0]["shape"] == [4, 10]  # the server goes on


def test_fastapi_checks_dtypes_batches_and_says_what_is_wrong_in_one_line(fastapi):
    url = fastapi["url"]

    def infer(model: str, body: bytes) -> tuple[int, dict[str, Any]]:
        return post(f"{url}/v2/models/{model}/infer", body, None, "application/json")

    ids = {"name": "ids", "datatype": "INT64", "shape": [1, 4]}
    status, answer = infer("ids", v2(1, [1, 2, 3, 4], **ids))
    assert status == 200 and answer["outputs"][0]["shape"] == [1, 3], answer
    status, answer = infer("ids", v2(1, [1, 2, 3, 1.5], **ids))  # was truncated to 1 and answered 200
    assert (status, answer) == (400, {"error": "input 'ids': 1.5 is not valid int64 data (it takes whole numbers)", "code": 400})
    status, answer = infer("tiny", v2(1, ["0.5"] * 3072))  # was converted to 0.5
    assert status == 400 and answer["error"] == "input 'input': \"0.5\" is not valid float32 data (it takes numbers)"
    status, answer = infer("tiny", v2(5))
    assert (status, answer["error"]) == (400, BATCH_LIMIT)
    assert infer("tiny", v2(4))[0] == 200
    status, answer = post(f"{url}/predict/tiny", b"plain text, not an image", None, "image/jpeg")
    assert status == 400 and "object at 0x" not in answer["error"] and "\n" not in answer["error"], answer
    assert answer["error"].startswith("not an image (first bytes b'plain text, not an image'; cannot identify image file)")


def test_torchserve_runs_the_same_bounds_on_a_v2_request(ts_store):
    pack_json("deploy", "tiny", "--target", "torchserve", "--store", str(ts_store), timeout=300)
    root = ts_store / ".servers" / "torchserve"
    url = json.loads((root / "state.json").read_text())["inference_url"] + "/predictions/tiny"
    token = json.loads((root / "key_file.json").read_text())["inference"]["key"]
    status, answer = post(url, v2(5), token, "application/json")
    assert status == 400 and answer["error"] == BATCH_LIMIT, answer
    status, answer = post(url, v2(1, [True] * 3072), token, "application/json")
    assert status == 400 and answer["error"] == "input 'input': true is not valid float32 data (it takes numbers)"
    status, answer = post(url, v2(4), token, "application/json")
    assert status == 200 and answer["outputs"][0]["shape"] == [4, 10]


def test_triton_refuses_a_v2_request_over_its_max_batch_size(built, tmp_path):
    ensure_tritonserver()
    store = tmp_path / "store"
    link_build(built("tiny"), store)
    try:
        pack_json("deploy", "tiny", "--target", "triton", "--store", str(store), timeout=300)
        port = json.loads((store / ".servers" / "triton" / "state.json").read_text())["http_port"]
        url = f"http://127.0.0.1:{port}/v2/models/tiny/infer"
        status, answer = post(url, v2(9), None, "application/json")  # the entry's max_batch_size is 8
        assert status == 400 and "batch-size must be <= 8" in answer.get("error", ""), answer
        status, answer = post(url, v2(8), None, "application/json")
        assert status == 200 and answer["outputs"][0]["shape"] == [8, 10]
    finally:
        run_pack("stop", "--target", "triton", "--store", str(store))


def test_fastapi_caps_a_yolo_requests_max_detections_at_the_builds(built, tmp_path):
    pytest.importorskip("fastapi", reason="pip install 'pack-models[fastapi]'")
    store = copy_build(built("yolov8n"), tmp_path / "store")
    try:
        url = pack_json("deploy", "yolov8n", "--target", "fastapi", "--store", str(store), timeout=300)["predict_url"]
        image = base64.b64encode(jpeg_bytes(96, 128)).decode()

        def detect(max_detections: Any) -> tuple[int, dict[str, Any]]:
            body = json.dumps({"image": image, "conf_threshold": 0.0001, "max_detections": max_detections}).encode()
            return post(url, body, None, "application/json")

        status, answer = detect(10**9)  # was accepted: 8,400 boxes, 4x the time, from a 12 KB request
        assert (status, answer["error"]) == (
            400,
            "max_detections=1000000000 is out of range: this model answers 1 to 300 detections per image (the build's "
            "postprocessing.max_detections); send a value in that range",
        )
        assert detect(2.5) == (400, {"error": "max_detections=2.5 is not a valid whole number", "code": 400})
        status, answer = detect(300)
        assert status == 200 and 0 < len(answer["detections"]) <= 300, answer
    finally:
        run_pack("stop", "--target", "fastapi", "--store", str(store))
