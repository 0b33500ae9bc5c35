"""Issue 11, item 7 on real servers: the one image decoding policy (handlers/pack_images.py) on TorchServe (the tiny
image classifier) and on Triton (yolov8n's ensemble). A 13000x13000 PNG is refused with a 400 before it is decoded
(the worker's or stub's peak memory does not grow by the 0.5 GB decoding would take); a 16-bit PNG answers as its
8-bit version; a JPEG stored sideways with an EXIF orientation answers as the upright image; a model answering NaN
gives strict JSON.

Each server is stopped in its fixture's teardown, which checks that no process of it is left.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers.cli import pack_json, run_pack
from tests.helpers.processes import processes_under, tritonserver_pids_for, wait_until_empty
from tests.helpers.torchserve import copy_build
from tests.helpers.triton import ensure_tritonserver, link_build

pytestmark = pytest.mark.server

PEAK_GROWTH_LIMIT = 150 * 1024 * 1024  # decoding 13000x13000 to RGB would take 169 MB grey + 507 MB RGB


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def huge_png() -> bytes:
    from PIL import Image

    return _png(Image.new("L", (13000, 13000)))  # about 160 KB compressed


def grey_pair(seed: int = 5) -> tuple[bytes, bytes]:
    """The same grey image as an 8-bit PNG and as a 16-bit PNG (each level times 257)."""
    from PIL import Image

    grey = np.random.default_rng(seed).integers(0, 256, (96, 128), dtype=np.uint8)
    return _png(Image.fromarray(grey, "L")), _png(Image.fromarray(grey.astype(np.uint16) * 257))


def sideways_pair() -> tuple[bytes, bytes]:
    """A JPEG stored rotated with EXIF orientation 6, and a PNG of its own pixels turned upright (the same pixels)."""
    from PIL import Image

    y, x = np.mgrid[0:120, 0:200]
    upright = np.stack([x * 255 // 200, y * 255 // 120, (x * y) % 256], -1).astype(np.uint8)
    upright[10:50, 20:90] = (230, 20, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    buf = io.BytesIO()
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(buf, format="JPEG", quality=90, exif=exif)
    stored = buf.getvalue()
    turned = Image.open(io.BytesIO(stored)).transpose(Image.Transpose.ROTATE_270)
    assert turned.size == (200, 120)
    return stored, _png(turned)


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def _request(url: str, body: bytes, headers: dict[str, str], timeout: float = 180) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# ---------------------------------------------------------------- TorchServe


@pytest.fixture(scope="module")
def ts(built, tmp_path_factory):
    if not shutil.which("java"):
        pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
    store = tmp_path_factory.mktemp("images-torchserve")
    copy_build(built("tiny"), store)
    proc = run_pack("deploy", "tiny", "--target", "torchserve", "--store", str(store), "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = store / ".servers" / "torchserve"
    state = json.loads((root / "state.json").read_text())
    token = json.loads((root / "key_file.json").read_text())["inference"]["key"]
    yield {"store": store, "url": f"{state['inference_url']}/predictions/tiny", "token": token}
    run_pack("stop", "--target", "torchserve", "--store", str(store))
    assert wait_until_empty(lambda: processes_under(root), 30) == [], "TorchServe processes left after pack stop"


def _ts_post(ts: dict, body: bytes, ctype: str = "image/png") -> tuple[int, Any]:
    status, text = _request(ts["url"], body, {"Content-Type": ctype, "Authorization": f"Bearer {ts['token']}"})
    return status, json.loads(text, parse_constant=_strict)


def _strict(token: str) -> None:
    raise AssertionError(f"the answer is not strict JSON: it holds {token}")


def _ts_worker(store: Path) -> int:
    doc = json.loads(run_pack("status", "--target", "torchserve", "--store", str(store), "--json").stdout)
    entry = next(m for m in doc["models"] if m["model"] == "tiny" and m["default"])
    [pid] = [w["pid"] for w in entry["workers"] if w["status"] == "READY"]
    return int(pid)


def test_torchserve_refuses_a_huge_png_from_its_header(ts):
    worker = _ts_worker(ts["store"])
    before = peak_rss(worker)
    start = time.monotonic()
    status, answer = _ts_post(ts, huge_png())
    took = time.monotonic() - start
    assert status == 400 and answer["error"].startswith("image too large: 13000x13000 is 169,000,000 pixels"), answer
    assert took < 30, f"the refusal took {took:.1f} s"
    assert peak_rss(worker) - before < PEAK_GROWTH_LIMIT, "the worker decoded the image"
    assert _ts_worker(ts["store"]) == worker and _ts_post(ts, grey_pair()[0])[0] == 200


def test_torchserve_sixteen_bit_and_exif_orientation(ts):
    eight, sixteen = grey_pair()
    status, a8 = _ts_post(ts, eight)
    assert status == 200, a8
    assert _ts_post(ts, sixteen) == (200, a8)
    stored, upright = sideways_pair()
    status, turned = _ts_post(ts, stored, "image/jpeg")
    assert status == 200 and _ts_post(ts, upright) == (200, turned)


def test_torchserve_nan_answer_is_strict_json(ts):
    x = np.full((1, 3, 32, 32), np.nan, dtype=np.float32)
    item = {"name": "input", "shape": list(x.shape), "dtype": "float32", "encoding": "base64"}
    item["data"] = base64.b64encode(x.tobytes()).decode()
    status, answer = _ts_post(ts, json.dumps({"inputs": [item]}).encode(), "application/json")
    assert status == 200 and all(v is None for v in np.asarray(answer["outputs"][0]["data"], dtype=object).reshape(-1))


# ---------------------------------------------------------------- Triton (yolov8n's ensemble)


def _on_triton(built, tmp_path_factory, model: str):
    """Deploy the session's build of `model` to a tritonserver of its own; {"store", "url", "doc"}; stopped after."""
    ensure_tritonserver()
    store = tmp_path_factory.mktemp(f"images-triton-{model}") / "store"
    link_build(built(model), store)
    try:
        doc = pack_json("deploy", model, "--target", "triton", "--store", str(store), timeout=900)
        yield {"store": store, "url": doc["url"], "doc": doc}
    finally:
        run_pack("stop", "--target", "triton", "--store", str(store))
        assert wait_until_empty(lambda: tritonserver_pids_for(store), 30) == [], "tritonserver left after pack stop"


@pytest.fixture(scope="module")
def triton(built, tmp_path_factory):
    for deployed in _on_triton(built, tmp_path_factory, "yolov8n"):
        assert deployed["doc"]["serving_model"] == "yolov8n_ensemble"
        yield deployed


def _triton_raw(triton: dict, model: str, image: bytes) -> tuple[int, str]:
    body = {"inputs": [{"name": "image", "shape": [1, len(image)], "datatype": "UINT8", "data": list(image)}]}
    status, text = _request(
        f"{triton['url']}/v2/models/{model}/infer", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    return status, text.decode(errors="replace")


def _triton_infer(triton: dict, model: str, image: bytes, outputs: list[str]) -> dict[str, np.ndarray]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(triton["url"].split("://")[1], connection_timeout=60, network_timeout=180)
    try:
        item = httpclient.InferInput("image", [1, len(image)], "UINT8")
        item.set_data_from_numpy(np.frombuffer(image, dtype=np.uint8)[None])
        result = client.infer(model, [item], outputs=[httpclient.InferRequestedOutput(o) for o in outputs])
    finally:
        client.close()
    return {o: result.as_numpy(o) for o in outputs}


def _stub_of(store: Path, model: str) -> int:
    [server] = tritonserver_pids_for(store)
    for child in Path(f"/proc/{server}/task/{server}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"triton_python_backend_stub" in cmdline and f"/{model}/".encode() in cmdline:
            return int(child)
    raise AssertionError(f"no python-backend stub of {model} under tritonserver {server}")


def _letterboxed(image: bytes) -> tuple[np.ndarray, dict[str, float]]:
    """The pixels and geometry the served runtime's decoding and letterbox give `image` (yolov8n: 640x640)."""
    from packager.serve.tasks import runtime_on_path

    runtime_on_path()
    import pack_images

    return pack_images.letterbox(pack_images.open_rgb(image, pack_images.DEFAULT_MAX_PIXELS), (640, 640), 114, 1 / 255.0)


@pytest.mark.slow
def test_triton_ensemble_refuses_a_huge_png_and_a_bad_image_with_400(triton):
    stub = _stub_of(triton["store"], "yolov8n_ensemble")  # the python backend: one instance decodes and detects
    before = peak_rss(stub)
    start = time.monotonic()
    status, text = _triton_raw(triton, "yolov8n_ensemble", huge_png())
    took = time.monotonic() - start
    assert status == 400 and "image too large: 13000x13000 is 169,000,000 pixels" in text, (status, text)
    assert took < 30, f"the refusal took {took:.1f} s"
    assert peak_rss(stub) - before < PEAK_GROWTH_LIMIT, "the endpoint's stub decoded the image"
    status, text = _triton_raw(triton, "yolov8n_ensemble", b"these bytes are no image")
    assert status == 400 and "not an image" in text, (status, text)
    assert _stub_of(triton["store"], "yolov8n_ensemble") == stub


@pytest.mark.slow
def test_triton_sixteen_bit_and_exif_orientation(triton):
    outputs = ["boxes", "scores", "classes"]
    eight, sixteen = grey_pair()
    a8 = _triton_infer(triton, "yolov8n_ensemble", eight, outputs)
    a16 = _triton_infer(triton, "yolov8n_ensemble", sixteen, outputs)
    for name in outputs:
        np.testing.assert_array_equal(a16[name], a8[name], err_msg=name)
    p8, _ = _letterboxed(eight)  # what the endpoint detects on: the runtime's decoding, run here
    np.testing.assert_array_equal(_letterboxed(sixteen)[0], p8)
    assert 0.2 < float(p8[p8 != np.float32(114 / 255.0)].mean()) < 0.8  # grey levels, not clipped to white
    stored, upright = sideways_pair()
    (turned, turned_at), (straight, straight_at) = _letterboxed(stored), _letterboxed(upright)
    assert turned_at == straight_at and (turned_at["width"], turned_at["height"]) == (200, 120)  # upright
    np.testing.assert_array_equal(turned, straight)
    a_turned = _triton_infer(triton, "yolov8n_ensemble", stored, outputs)
    a_straight = _triton_infer(triton, "yolov8n_ensemble", upright, outputs)
    for name in outputs:
        np.testing.assert_array_equal(a_turned[name], a_straight[name], err_msg=name)
    health = pack_json("status", "--target", "triton", "--store", str(triton["store"]))["health"]
    assert health["yolov8n"]["health"] == "healthy", health  # the sample through yolov8n, an image through its ensemble


@pytest.fixture(scope="module")
def triton_tiny(built, tmp_path_factory):
    yield from _on_triton(built, tmp_path_factory, "tiny")


def test_triton_nan_answer_is_a_400_not_bare_nan(triton_tiny):
    url = f"{triton_tiny['url']}/v2/models/tiny/infer"
    for value in (float("nan"), float("inf")):
        body = {"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [value] * 3072}]}
        status, text = _request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        assert status == 400 and "holds NaN or infinity" in json.loads(text, parse_constant=_strict)["error"], (status, text)
    body = {"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [0.5] * 3072}]}
    status, text = _request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    assert status == 200 and len(json.loads(text)["outputs"][0]["data"]) == 10
