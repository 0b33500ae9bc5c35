"""Issue 23, item 3 on real servers: `pack deploy --require-signature --public-key KEY.pub` makes the serving code
itself check the build's OpenSSF signature over the very bytes it is about to load, after every check pack makes.

- Triton: a signed tiny is deployed and answers; one byte of the model file staged in the server's repository is
  flipped and the model reloaded. Triton runs the build's warmup sample at load, so the load itself fails with the
  reason: a reload leaves the instance loaded from the verified bytes serving, a fresh load serves nothing, and
  `pack status` calls it unhealthy.
- TorchServe: an archive whose model.onnx does not verify is registered beside the signed one; its worker loads
  nothing and answers 503 with the reason, while the verified one serves on.
- FastAPI: a flipped byte in the staged folder makes the server refuse it at start; the deploy fails (exit 4) with
  the reason.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from packager.targets.triton.client import TritonHTTP
from tests.helpers.cli import pack_json, run_pack
from tests.helpers.keys import KeyPair, ec_pair
from tests.helpers.processes import processes_under, tritonserver_pids_for, wait_until_empty
from tests.helpers.torchserve import copy_build, post
from tests.helpers.triton import ensure_tritonserver

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def signed(built: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, KeyPair]:
    """A signed copy of the session's tiny build (its own store) and the key pair that signed it."""
    folder = tmp_path_factory.mktemp("signed-at-load")
    key = ec_pair(folder, "release")
    store = copy_build(built("tiny"), folder / "store")
    pack_json("sign", "tiny", "--store", str(store), "--key", str(key.private))
    return store, key


def _flip(path: Path) -> None:
    """One byte of `path` flipped, in a fresh file (a hard link to the build would change it too)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.unlink()
    path.write_bytes(bytes(data))


def _infer(url: str, model: str, x: np.ndarray) -> tuple[int, dict[str, Any]]:
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.reshape(-1).tolist()}]}
    req = urllib.request.Request(
        f"{url}/v2/models/{model}/infer", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _load(url: str, model: str) -> tuple[int, str]:
    req = urllib.request.Request(f"{url}/v2/repository/models/{model}/load", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_triton_refuses_a_staged_model_file_that_does_not_verify(signed: tuple[Path, KeyPair]) -> None:
    ensure_tritonserver()
    store, key = signed
    x = np.load(store / "tiny" / "1" / "samples" / "input.input.npy")
    expected = np.load(store / "tiny" / "1" / "samples" / "output.logits.npy")
    try:
        args = ("--target", "triton", "--store", str(store))
        doc = pack_json("deploy", "tiny", *args, "--require-signature", "--public-key", str(key.public), timeout=600)
        assert doc["backend"] == "python" and doc["smoke_test"]["passed"], doc
        url = doc["url"]
        state = json.loads((store / ".servers" / "triton" / "state.json").read_text())
        vdir = Path(state["repository"]) / "tiny" / "1"
        assert (vdir / "model.sig").is_file() and (vdir / "pack-signing-key.pub").read_bytes() == key.public.read_bytes()
        status, answer = _infer(url, "tiny", x)
        assert status == 200
        np.testing.assert_allclose(np.asarray(answer["outputs"][0]["data"]).reshape(expected.shape), expected, atol=1e-4)

        _flip(vdir / "model.onnx")  # after every check pack itself makes: only the server's own check is left
        status, text = _load(url, "tiny")  # Triton runs the warmup sample at load: the refusal fails the load
        assert status == 400 and "refused to serve: the signature check failed" in text, (status, text)
        assert "model.onnx differs from the signed bytes" in text, text
        status, answer = _infer(url, "tiny", x)  # the instance loaded from the verified bytes keeps serving
        assert status == 200
        np.testing.assert_allclose(np.asarray(answer["outputs"][0]["data"]).reshape(expected.shape), expected, atol=1e-4)
        TritonHTTP(url, timeout=60).unload("tiny", timeout=60)  # and waits until it is gone
        status, text = _load(url, "tiny")  # a fresh load of the flipped file: refused, and nothing is served
        assert status == 400 and "model.onnx differs from the signed bytes" in text, (status, text)
        status, answer = _infer(url, "tiny", x)
        assert status != 200 and "outputs" not in answer, (status, answer)
        status_proc = run_pack("status", *args)
        assert status_proc.returncode != 0 and "unhealthy: tiny v1" in status_proc.stderr, status_proc.stderr
    finally:
        run_pack("stop", "--target", "triton", "--store", str(store))
    assert wait_until_empty(lambda: tritonserver_pids_for(store), 30) == []


def _tampered_mar(source: Path, dest: Path) -> None:
    """`source` rewritten with one byte of its model.onnx flipped (a valid archive: the zip's CRC is recomputed)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(dest, "w") as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "model.onnx":
                flipped = bytearray(data)
                flipped[len(flipped) // 2] ^= 0x01
                data = bytes(flipped)
            out.writestr(info, data)


def test_torchserve_answers_503_for_an_archive_whose_model_does_not_verify(signed: tuple[Path, KeyPair]) -> None:
    if not shutil.which("java"):
        pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
    store, key = signed
    root = store / ".servers" / "torchserve"
    args = ("--target", "torchserve", "--store", str(store))
    try:
        doc = pack_json("deploy", "tiny", *args, "--require-signature", "--public-key", str(key.public), timeout=600)
        assert doc["smoke_test"]["passed"], doc
        state = json.loads((root / "state.json").read_text())
        keys = json.loads((root / "key_file.json").read_text())
        [mar] = Path(state["model_store"]).glob("tiny.v1*.mar")
        with zipfile.ZipFile(mar) as zf:
            assert {"model.sig", "pack-signing-key.pub"} <= set(zf.namelist())
            assert json.loads(zf.read("pack.json"))["signature"]["signed_name"] == "model.onnx"
        tampered = Path(state["model_store"]) / "tampered.mar"
        _tampered_mar(mar, tampered)
        register = f"{state['management_url']}/models?url=tampered.mar&model_name=tampered&initial_workers=1&synchronous=true"
        status, answer = post(register, b"", keys["management"]["key"])
        assert status == 200, answer  # the worker starts and loads nothing
        x = np.load(store / "tiny" / "1" / "samples" / "input.input.npy")
        tensor = {"name": "input", "shape": list(x.shape), "dtype": "float32", "data": x.reshape(-1).tolist()}
        body, token, predictions = json.dumps({"inputs": [tensor]}).encode(), keys["inference"]["key"], state["inference_url"]
        status, answer = post(f"{predictions}/predictions/tampered", body, token, "application/json")
        assert status == 503, (status, answer)
        assert "refused to serve: the signature check failed: model.onnx differs from the signed bytes" in answer["error"]
        status, answer = post(f"{predictions}/predictions/tiny/1", body, token, "application/json")
        assert status == 200, answer  # the verified archive serves on
    finally:
        run_pack("stop", *args)
        wait_until_empty(lambda: processes_under(root), 30)


def test_fastapi_refuses_a_staged_model_file_that_does_not_verify(signed: tuple[Path, KeyPair]) -> None:
    store, key = signed
    args = ("--target", "fastapi", "--store", str(store))
    verify = ("--require-signature", "--public-key", str(key.public))
    try:
        doc = pack_json("deploy", "tiny", *args, *verify, timeout=600)
        assert doc["smoke_test"]["passed"], doc
        models = json.loads((store / ".servers" / "fastapi" / "models.json").read_text())["models"]
        [entry] = [m for m in models if m["name"] == "tiny"]
        folder = Path(entry["dir"])
        assert entry["signature_checked"] and json.loads((folder / "pack.json").read_text())["signature"]["file"] == "model.sig"
        _flip(folder / "model.onnx")
        proc = run_pack("deploy", "tiny", *args, *verify, timeout=600)  # the same version: the server starts on that folder
        assert proc.returncode == 4, proc.stderr[-2000:]
        assert "refused to serve: the signature check failed: model.onnx differs from the signed bytes" in proc.stderr
    finally:
        run_pack("stop", *args)
