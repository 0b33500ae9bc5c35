"""The TorchServe archive and configuration files written in-process, and the handlers run as TorchServe's worker
loads them (no server). (Real exports: the TorchScript archive and the handlers on a batch of malformed requests;
torch-model-archiver and byte reproducibility across builds: tests/integration/test_torchserve_archiver.py.)"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from packager.report.build_report import BuildReport
from tests.helpers.cli import invoke
from tests.helpers.torchserve import copy_build, load_handler, unpack_mar


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pack_json(*args: str) -> Any:
    return invoke(*args, "--json").json()


def test_archive_writes_mar_and_config_and_records_sha256(tiny_store):
    doc = pack_json("archive", "tiny", "--store", str(tiny_store), "--force")
    folder = tiny_store / "tiny" / "1"
    mar, config = folder / "torchserve" / "tiny.mar", folder / "torchserve" / "config.properties"
    assert doc["mar"] == "torchserve/tiny.mar" and doc["format"] == "onnx" and doc["handler"] == "pack_classifier.py"
    report = json.loads((folder / "report.json").read_text())
    assert report["sha256"]["torchserve/tiny.mar"] == sha(mar)
    assert report["sha256"]["torchserve/config.properties"] == sha(config)
    assert report["targets"]["torchserve"]["mar"] == "torchserve/tiny.mar"

    with zipfile.ZipFile(mar) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names)
        assert set(names) == {
            "MAR-INF/MANIFEST.json",
            "model.onnx",
            "model-config.yaml",
            "pack.json",
            "pack_runtime.py",
            "pack_signature.py",
            "pack_requests.py",
            "pack_images.py",
            "pack_torchserve.py",
            "pack_classifier.py",
            "labels.txt",
        }
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert (info.external_attr >> 16) & 0o777 == 0o644
            expected = zipfile.ZIP_STORED if info.filename == "model.onnx" else zipfile.ZIP_DEFLATED
            assert info.compress_type == expected, info.filename
        manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
        model_config = yaml.safe_load(zf.read("model-config.yaml"))
        assert zf.read("model.onnx") == (folder / "model.onnx").read_bytes()
        assert "import captum" not in "".join(zf.read(n).decode() for n in names if n.endswith(".py"))
    assert manifest["model"] == {
        "modelName": "tiny",
        "serializedFile": "model.onnx",
        "handler": "pack_classifier.py",
        "modelVersion": "1",
        "configFile": "model-config.yaml",
    }
    assert manifest["createdOn"] == "01/01/1980 00:00:00" and manifest["runtime"] == "python"
    assert model_config["batchSize"] == 4 and model_config["minWorkers"] == model_config["maxWorkers"] == 1
    assert model_config["handler"]["top_k"] == 5 and model_config["handler"]["labels_file"] == "labels.txt"

    props = dict(line.split("=", 1) for line in config.read_text().splitlines() if line and not line.startswith("#"))
    for key in ("inference_address", "management_address", "metrics_address"):
        assert props[key].startswith("http://127.0.0.1:")
    assert {"grpc_inference_port", "grpc_management_port", "model_store"} <= set(props)
    assert props["load_models"] == "tiny.mar" and props["metrics_mode"] == "prometheus" and props["enable_model_api"] == "true"
    assert "disable_token_authorization" not in props  # token authorization stays on
    entry = json.loads(props["models"])["tiny"]["1"]
    assert entry["marName"] == "tiny.mar"
    assert {k: entry[k] for k in ("batchSize", "maxBatchDelay", "minWorkers", "maxWorkers", "responseTimeout")} == {
        "batchSize": 4,
        "maxBatchDelay": 20,
        "minWorkers": 1,
        "maxWorkers": 1,
        "responseTimeout": 120,
    }


def test_package_hook_matches_archive(built, tmp_path):
    """What `pack build` writes through package() is the same archive `pack archive` writes."""
    from packager.targets import torchserve

    store = copy_build(built("tiny"), tmp_path / "store")
    folder = store / "tiny" / "1"
    report = BuildReport.load(folder)
    section = torchserve.package(folder, report)
    first = sha(folder / "torchserve" / "tiny.mar")
    assert section["mar"] == "torchserve/tiny.mar" and section["config"] == "torchserve/config.properties"
    pack_json("archive", "tiny", "--store", str(store), "--force")
    assert sha(folder / "torchserve" / "tiny.mar") == first


def test_archive_refuses_to_overwrite_a_good_mar_but_replaces_a_bad_one(tiny_store):
    pack_json("archive", "tiny", "--store", str(tiny_store), "--force")
    mar = tiny_store / "tiny" / "1" / "torchserve" / "tiny.mar"
    good = mar.read_bytes()
    assert "--force" in invoke("archive", "tiny", "--store", str(tiny_store)).error(2)
    assert mar.read_bytes() == good
    mar.write_bytes(good[: len(good) // 2])  # truncated: not a good archive any more
    pack_json("archive", "tiny", "--store", str(tiny_store))
    assert mar.read_bytes() == good
    assert not list(mar.parent.glob(".tmp-*")) and not list(mar.parent.parent.glob(".report.json.*"))


def test_zip_is_valid_and_the_zip64_path_holds_the_same_entries(built, tmp_path, monkeypatch):
    from packager.targets.torchserve import mar as mar_module
    from packager.targets.torchserve.config import settings_from

    folder = built("tiny")
    report = BuildReport.load(folder)
    settings = settings_from(report)
    small = tmp_path / "zip32.mar"
    mar_module.write_mar(folder, report, settings, small)
    monkeypatch.setattr(mar_module, "ZIP32_LIMIT", 0)  # as for a model over 4 GB
    large = tmp_path / "zipfile.mar"
    mar_module.write_mar(folder, report, settings, large)
    with zipfile.ZipFile(small) as a, zipfile.ZipFile(large) as b:
        assert a.testzip() is None and b.testzip() is None
        assert a.namelist() == b.namelist()
        for name in a.namelist():
            assert a.read(name) == b.read(name)
            assert a.getinfo(name).compress_type == b.getinfo(name).compress_type
            assert a.getinfo(name).date_time == b.getinfo(name).date_time


def test_stored_weights_start_on_a_page_boundary(built, tmp_path):
    from packager.targets.torchserve.config import settings_from
    from packager.targets.torchserve.mar import write_mar

    folder = built("tiny")
    report = BuildReport.load(folder)
    out = tmp_path / "t.mar"
    write_mar(folder, report, settings_from(report), out)
    with zipfile.ZipFile(out) as zf:
        info = zf.getinfo("model.onnx")
        raw = out.read_bytes()
        name_len, extra_len = (
            int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little"),
            int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little"),
        )
        start = info.header_offset + 30 + name_len + extra_len
        assert start % 4096 == 0
        assert raw[start : start + info.file_size] == (folder / "model.onnx").read_bytes()


def test_handlers_speak_the_open_inference_protocol(built, tmp_path):
    """A v2 body on /predictions is answered in v2; under TorchServe's own kservev2 envelope (its real class, as
    KServe configures it) the handler serves the tensors the envelope unpacks."""
    from ts.torch_handler.request_envelope.kservev2 import KServev2Envelope

    store = copy_build(built("tiny"), tmp_path / "store")
    folder = store / "tiny" / "1"
    handle, context = load_handler(unpack_mar(folder / "torchserve" / "tiny.mar", tmp_path / "unpacked"), batch_size=3)
    sample = np.load(folder / "samples" / "input.input.npy")
    expected = np.load(folder / "samples" / "output.logits.npy")
    v2 = {
        "id": "r1",
        "inputs": [{"name": "input", "shape": list(sample.shape), "datatype": "FP32", "data": sample.ravel().tolist()}],
    }
    batch = [
        {"body": json.dumps(v2).encode()},
        {"body": {**v2, "inputs": [{**v2["inputs"][0], "datatype": "INT64"}]}},
        {"body": {**v2, "outputs": [{"name": "scores"}]}},
    ]
    answers = [json.loads(a) for a in handle(batch, context)]
    first = answers[0]
    assert (first["model_name"], first["model_version"], first["id"]) == ("tiny", "1", "r1")
    [out] = first["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("logits", "FP32", list(expected.shape))
    np.testing.assert_allclose(np.asarray(out["data"], np.float32).reshape(out["shape"]), expected, atol=1e-5, rtol=1e-4)
    assert [context.get_response_status(i)[0] for i in (1, 2)] == [400, 400]
    assert answers[1]["error"] == "input 'input': datatype INT64 given, the model takes FP32"
    assert answers[2]["error"] == "output 'scores' is not one of the model's outputs (logits)"

    envelope = KServev2Envelope(handle)
    [response] = envelope.handle([{"body": json.dumps(v2).encode()}], context)
    assert response["model_name"] == "tiny" and response["id"] == "r1"
    [out] = response["outputs"]  # the envelope names it after the input and flattens it (TorchServe's rule)
    np.testing.assert_allclose(np.asarray(out["data"], np.float32), expected.ravel(), atol=1e-5, rtol=1e-4)


def test_the_weights_crc_comes_from_the_report_keyed_by_their_digest(built, tmp_path, monkeypatch):
    """The build records each file's CRC-32 under its sha256, so `pack archive` takes the stored entry's CRC from the
    report instead of a pass over the weights; keyed by the digest, a rewritten file can never get a stale CRC."""
    import zlib

    from packager.targets.torchserve import mar as mar_module
    from packager.targets.torchserve.config import settings_from

    folder = built("tiny")
    report = BuildReport.load(folder)
    digest = report.sha256["model.onnx"]
    assert report.crc32[digest] == zlib.crc32((folder / "model.onnx").read_bytes())
    assert set(report.crc32) == set(report.sha256.values())

    def no_pass(path):  # the recorded CRC is used: no pass over the weights
        raise AssertionError(f"a CRC pass over {path}")

    monkeypatch.setattr(mar_module, "_file_crc", no_pass)
    out = tmp_path / "t.mar"
    mar_module.write_mar(folder, report, settings_from(report), out)
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None

    report.crc32 = {}  # an older report: the CRC is computed
    monkeypatch.undo()
    mar_module.write_mar(folder, report, settings_from(report), tmp_path / "old.mar")
    with zipfile.ZipFile(tmp_path / "old.mar") as zf:
        assert zf.testzip() is None
