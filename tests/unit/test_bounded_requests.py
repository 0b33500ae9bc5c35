"""Bounded requests in pack's handler code, in-process (the real servers' HTTP: tests/integration/
test_request_bounds.py): values checked against the declared dtype (a float for an integer input is a 400, never
truncated), shapes of whole numbers, a batch at most what the build validated, a body at most MAX_REQUEST_BYTES
(413 before it is read), max_detections at most the build's, and no object repr in a message."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from packager.serve.tasks import runtime_on_path
from tests.helpers.onnx_build import identity_onnx
from tests.helpers.torchserve import png_bytes

runtime_on_path()
import pack_requests  # noqa: E402  (flat modules of the serving runtime, as on a server)
import pack_runtime  # noqa: E402
from pack_runtime import RequestError  # noqa: E402

IDS = [{"name": "ids", "shape": [1, 4], "dtype": "int64", "dynamic_axes": [0]}]
HALF = [{"name": "x", "shape": [1, 2], "dtype": "float16", "dynamic_axes": [0]}]


def tensors(data: Any, shape: Any = (1, 4)) -> dict[str, Any]:
    return {"inputs": [{"name": "ids", "shape": list(shape), "dtype": "int64", "data": data}]}


def refused(call: Any) -> str:
    with pytest.raises(RequestError) as caught:
        call()
    return str(caught.value)


def test_an_integer_input_refuses_floats_strings_and_values_past_its_range():
    assert pack_requests.decode_tensors(tensors([[1, 2, 3, -4]]), IDS)[0].tolist() == [[1, 2, 3, -4]]
    assert refused(lambda: pack_requests.decode_tensors(tensors([[1.5, 2, 3, 4]]), IDS)) == (
        "input 'ids': 1.5 is not valid int64 data (it takes whole numbers)"  # was truncated to 1
    )
    assert "2.0 is not valid int64" in refused(lambda: pack_requests.decode_tensors(tensors([[1, 2.0, 3, 4]]), IDS))
    assert '"7" is not valid int64' in refused(lambda: pack_requests.decode_tensors(tensors([["7", 2, 3, 4]]), IDS))
    assert "true is not valid int64" in refused(lambda: pack_requests.decode_tensors(tensors([[True] * 4]), IDS))
    assert "1180591620717411303424 is out of the range of int64" in refused(
        lambda: pack_requests.decode_tensors(tensors([[2**70, 1, 1, 1]]), IDS)
    )
    small = [{"name": "ids", "shape": [1, 4], "dtype": "int8", "dynamic_axes": [0]}]
    body = {"inputs": [{"name": "ids", "shape": [1, 4], "dtype": "int8", "data": [[1, 2, 3, 1000]]}]}
    assert "1000 is out of the range of int8 (-128 to 127)" in refused(lambda: pack_requests.decode_tensors(body, small))
    v2 = [{"name": "ids", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 1.5]}]  # the same rule for v2
    assert "1.5 is not valid int64" in refused(lambda: pack_requests.decode_v2(v2, IDS))


def test_a_float_input_refuses_strings_bools_and_values_past_its_range():
    def v2(data: Any, shape: Any = (1, 2)) -> list[dict[str, Any]]:
        return [{"name": "x", "shape": list(shape), "datatype": "FP16", "data": data}]

    assert pack_requests.decode_v2(v2([1, 2.5]), HALF)[0].tolist() == [[1.0, 2.5]]  # integers are numbers too
    assert '"a" is not valid float16' in refused(lambda: pack_requests.decode_v2(v2(["a", 1]), HALF))
    assert '"1.0" is not valid float16' in refused(lambda: pack_requests.decode_v2(v2(["1.0", 1]), HALF))  # was 1.0
    assert "true is not valid float16" in refused(lambda: pack_requests.decode_v2(v2([True, False]), HALF))
    assert "1000000.0 is out of the range of float16" in refused(lambda: pack_requests.decode_v2(v2([1e6, 1]), HALF))
    assert "not a rectangular list" in refused(lambda: pack_requests.decode_v2(v2([[1, 2], [3]]), HALF))
    for shape in ([1.5, 2], [-1, 2], "1x2", [True, 2]):  # int(1.5) and a reshape's -1 used to take these
        assert "is not a list of whole numbers of at least 0" in refused(
            lambda s=shape: pack_requests.decode_v2(v2([1, 2], s), HALF)
        )
    assert "3 values do not fill shape [1, 2]" in refused(lambda: pack_requests.decode_v2(v2([1, 2, 3]), HALF))


def served_folder(folder: Path) -> Path:
    """A served model's folder as the fastapi target lays it out: pack.json and an identity export, x [N, 2] -> y."""
    folder.mkdir(parents=True)
    identity_onnx(folder / "model.onnx")
    meta = {
        "name": "m",
        "version": "1",
        "format": "onnx",
        "serialized_file": "model.onnx",
        "inputs": [{"name": "x", "shape": [1, 2], "dtype": "float32", "dynamic_axes": [0]}],
        "outputs": ["y"],
    }
    (folder / "pack.json").write_text(json.dumps(meta))
    return folder


class Context:
    def __init__(self) -> None:
        self.codes: dict[int, int] = {}

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.codes[idx] = code

    def set_response_content_type(self, idx: int, value: str) -> None:
        pass


def test_a_batch_over_what_the_build_validated_is_a_400_through_the_handler(tmp_path, built):
    from pack_tensors import Tensors
    from pack_torchserve import load_settings

    from packager.report.build_report import BuildReport
    from packager.serve.worker import worker_settings

    report = BuildReport.load(built("tiny"))
    assert worker_settings(report, "onnx", None)["handler"]["max_batch"] == max(report.batch_sizes) == 4
    folder = served_folder(tmp_path / "m")
    handler = Tensors()
    handler.configure(str(folder), load_settings(str(folder), {"handler": {"max_batch": 4}}), "cpu")

    def v2(rows: int) -> dict[str, bytes]:
        data = np.arange(rows * 2, dtype=np.float32).tolist()
        return {"body": json.dumps({"inputs": [{"name": "x", "shape": [rows, 2], "datatype": "FP32", "data": data}]}).encode()}

    context = Context()
    answers = [json.loads(a) for a in handler.handle([v2(4), v2(5), v2(1)], context)]
    assert context.codes == {1: 400}
    assert answers[0]["outputs"][0]["shape"] == [4, 2] and answers[2]["outputs"][0]["shape"] == [1, 2]
    assert answers[1]["error"] == (
        "input 'x': a batch of 5 is over this model's limit of 4 (the largest batch size its build validated); "
        "send at most 4 per request, or rebuild with --batch-sizes up to 5"
    )
    older = Tensors()  # an archive written before pack recorded the limit: no limit but the body's
    older.configure(str(folder), load_settings(str(folder), {"handler": {}}), "cpu")
    assert json.loads(older.handle([v2(5)], Context())[0])["outputs"][0]["shape"] == [5, 2]


def test_a_body_over_the_limit_is_413_before_it_is_read(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    import pack_fastapi

    assert pack_fastapi.MAX_REQUEST_BYTES == 128 * 1024 * 1024
    monkeypatch.setattr(pack_fastapi, "MAX_REQUEST_BYTES", 300)
    client = TestClient(pack_fastapi.create_app({"m": pack_fastapi.Served(model_entry(tmp_path), "cpu")}))
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}).encode()
    assert client.post("/v2/models/m/infer", content=body).status_code == 200
    padded = body + b" " * (301 - len(body))
    for route in ("/v2/models/m/infer", "/predict/m", "/predict"):
        answer = client.post(route, content=padded)
        assert answer.status_code == 413 and answer.json() == {
            "error": "request body over 300 bytes (0 MiB), this server's limit; send a smaller body (fewer rows or a "
            "smaller image per request)"
        }

    def chunks():  # no Content-Length: read until it passes the limit
        for _ in range(10):
            yield b" " * 100

    assert client.post("/predict/m", content=chunks()).status_code == 413
    assert 'pack_inference_failures_total{model="m",version="1"} 4.0' in client.get("/metrics").text


class Unread:
    """A request whose Content-Length says 400 MB and whose body must never be read."""

    headers = {"content-length": str(400 * 1024 * 1024)}

    async def stream(self) -> Any:
        raise AssertionError("the body was read")
        yield b""


def test_a_declared_length_over_the_limit_reads_nothing():
    import pack_fastapi

    assert asyncio.run(pack_fastapi.bounded_body(Unread())) is None


def model_entry(tmp_path: Path) -> dict[str, Any]:
    folder = served_folder(tmp_path / "m")
    return {"name": "m", "version": "1", "dir": str(folder), "handler": "pack_tensors.py", "handler_settings": {}}


def detector() -> Any:
    from pack_detector import YoloDetector

    handler = YoloDetector()
    handler.settings = {
        "handler": {"max_detections": 300},
        "inputs": [{"name": "images", "shape": [1, 3, 64, 64], "dtype": "float32"}],
        "preprocessing": {"image_size": [64, 64]},
    }
    handler.inputs = handler.settings["inputs"]
    handler.setup()
    return handler


def test_max_detections_is_at_most_the_builds_and_a_whole_number():
    handler = detector()
    image = base64.b64encode(png_bytes(20, 30)).decode()
    _, (_, options) = handler.preprocess_one({}, None, {"image": image, "max_detections": 300})
    assert options["max_detections"] == 300
    for value in (10**9, 301, 0):
        message = refused(lambda v=value: handler.preprocess_one({}, None, {"image": image, "max_detections": v}))
        assert message == (
            f"max_detections={value} is out of range: this model answers 1 to 300 detections per image (the build's "
            "postprocessing.max_detections); send a value in that range"
        )
    for value in (1e9, 2.5, True, "1e9"):  # was int(1e9): a billion; int(2.5): 2
        message = refused(lambda v=value: handler.preprocess_one({}, None, {"image": image, "max_detections": v}))
        assert message == f"max_detections={value!r} is not a valid whole number", message
    form = {"max_detections": b"1000000000"}  # a multipart form field: the same cap
    assert "is out of range" in refused(lambda: handler.preprocess_one(form, png_bytes(20, 30), None))


def test_a_message_never_shows_an_object_repr():
    from pack_images import open_rgb

    message = refused(lambda: open_rgb(b"hello, not an image at all"))
    # Pillow's own reason varies with the openers registered in the process (another library's HEIF plug-in): only
    # the shape of the line is pack's
    assert "object at 0x" not in message and message.startswith("not an image (first bytes b'hello"), message
    assert pack_runtime.without_reprs("x <_io.BytesIO object at 0x7f03b4d376f0> y") == "x y"


def test_the_body_limit_is_torchserves():
    from packager.targets.torchserve.config import MAX_MESSAGE_BYTES

    assert pack_requests.MAX_REQUEST_BYTES == MAX_MESSAGE_BYTES  # one limit for every handler server
