"""The TorchServe archive of real exports and against the outside world: the manifest torch-model-archiver writes,
byte-identical archives from two separate builds, the setup script's syntax, an archive of one export that reads no
other, the TorchScript archive with its options, and the handlers on a batch of good and malformed requests for each
export. (The archive's contents and the handlers' protocol in-process: tests/unit/test_torchserve_archive.py.)"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import ROOT
from tests.helpers.cli import one_error_line, pack_json, run_pack
from tests.helpers.torchserve import classifier_reference, copy_build, load_handler, png_bytes, unpack_mar


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_has_the_fields_torch_model_archiver_writes(tiny_store: Path, tmp_path: Path) -> None:
    archiver = Path(sys.executable).parent / "torch-model-archiver"
    if not archiver.exists():
        pytest.skip("torch-model-archiver is not installed")
    folder = tiny_store / "tiny" / "1"
    pack_json("archive", "tiny", "--store", str(tiny_store), "--force")
    config = tmp_path / "model-config.yaml"
    config.write_text("batchSize: 1\n")
    (tmp_path / "h.py").write_text("def handle(data, context):\n    return data\n")
    subprocess.run(
        [
            str(archiver),
            "--model-name",
            "tiny",
            "--version",
            "1",
            "--serialized-file",
            str(folder / "model.onnx"),
            "--handler",
            str(tmp_path / "h.py"),
            "--config-file",
            str(config),
            "--export-path",
            str(tmp_path),
            "--force",
        ],
        check=True,
        capture_output=True,
    )
    theirs = json.loads(zipfile.ZipFile(tmp_path / "tiny.mar").read("MAR-INF/MANIFEST.json"))
    ours = json.loads(zipfile.ZipFile(folder / "torchserve" / "tiny.mar").read("MAR-INF/MANIFEST.json"))
    assert list(ours) == list(theirs)
    assert list(ours["model"]) == list(theirs["model"])
    assert ours["archiverVersion"] == theirs["archiverVersion"]


def test_archive_is_byte_reproducible(built: Callable[[str], Path], tmp_path: Path) -> None:
    """Two separate builds of the same model give byte-identical archives; SOURCE_DATE_EPOCH moves the dates."""
    from packager.build.pipeline import build
    from packager.build.plan import resolve

    stores = [copy_build(built("tiny"), tmp_path / "a"), tmp_path / "b"]
    build(resolve("tiny", None, {"device": "cpu"}), stores[1], force=False, iterations=0)
    shas = []
    for store in stores:
        pack_json("archive", "tiny", "--store", str(store), "--force")
        shas.append(sha(store / "tiny" / "1" / "torchserve" / "tiny.mar"))
    pack_json("archive", "tiny", "--store", str(stores[0]), "--force")  # again: no createdOn drift
    shas.append(sha(stores[0] / "tiny" / "1" / "torchserve" / "tiny.mar"))
    assert len(set(shas)) == 1, shas

    doc = pack_json("archive", "tiny", "--store", str(stores[0]), "--force", env={"SOURCE_DATE_EPOCH": "1700000000"})
    mar = stores[0] / "tiny" / "1" / "torchserve" / "tiny.mar"
    assert doc["sha256"]["torchserve/tiny.mar"] != shas[0]
    assert json.loads(zipfile.ZipFile(mar).read("MAR-INF/MANIFEST.json"))["createdOn"] == "14/11/2023 22:13:20"


def test_setup_script_is_idempotent_shell() -> None:
    script = ROOT / "scripts" / "setup-torchserve.sh"
    assert script.is_file()
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_archive_hashes_only_what_it_packs(tiny_store: Path) -> None:
    """`pack archive` of the ONNX export does not read the other exports (a changed TorchScript file is `pack verify`'s
    finding, not the archive's), and the archive's digest, taken while it was written, is the file's own."""
    build = tiny_store / "tiny" / "1"
    data = bytearray((build / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0x01
    (build / "model.pt").write_bytes(bytes(data))
    pack_json("archive", "tiny", "--force", "--format", "onnx", "--store", str(tiny_store))
    report = json.loads((build / "report.json").read_text())
    assert report["sha256"]["torchserve/tiny.mar"] == sha(build / "torchserve" / "tiny.mar")
    proc = run_pack("verify", str(build))
    assert "model.pt: sha256 differs" in one_error_line(3, proc.returncode, proc.stderr)


def test_archive_torchscript_and_options(tiny_store: Path) -> None:
    doc = pack_json(
        "archive",
        "tiny",
        "--store",
        str(tiny_store),
        "--force",
        "--format",
        "torchscript",
        "--batch-size",
        "8",
        "--workers",
        "2",
        "--max-batch-delay",
        "5",
    )
    assert doc["format"] == "torchscript"
    with zipfile.ZipFile(tiny_store / "tiny" / "1" / "torchserve" / "tiny.mar") as zf:
        assert "model.pt" in zf.namelist() and "model.onnx" not in zf.namelist()
        assert zf.getinfo("model.pt").compress_type == zipfile.ZIP_STORED
        cfg = yaml.safe_load(zf.read("model-config.yaml"))
    assert (cfg["batchSize"], cfg["maxBatchDelay"], cfg["minWorkers"], cfg["maxWorkers"]) == (8, 5, 2, 2)
    proc = run_pack("archive", "tiny", "--store", str(tiny_store), "--force", "--batch-size", "0")
    assert "--batch-size" in one_error_line(2, proc.returncode, proc.stderr)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_handler_batch_isolates_malformed_requests(built: Callable[[str], Path], tmp_path: Path, fmt: str) -> None:
    """The real handler code, loaded as TorchServe loads it (in this process, no server), on one batch with good and
    malformed requests, for each export it serves."""
    store = copy_build(built("tiny"), tmp_path / "store")
    pack_json("archive", "tiny", "--store", str(store), "--force", "--format", fmt)
    folder = store / "tiny" / "1"
    model_dir = unpack_mar(folder / "torchserve" / "tiny.mar", tmp_path / "unpacked")
    handle, context = load_handler(model_dir, batch_size=6)
    sample = np.load(folder / "samples" / "input.input.npy")
    expected = np.load(folder / "samples" / "output.logits.npy")
    image = png_bytes(40, 56, seed=1)
    batch = [
        {"body": bytearray(image)},
        {"body": {"image": "%%% not base64 %%%"}},
        {"body": bytearray(b"these bytes are no image")},
        {"body": {"inputs": [{"name": "input", "shape": [1, 3, 31, 32], "dtype": "float32", "data": [0.0] * (3 * 31 * 32)}]}},
        {"body": {"inputs": [{"name": "input", "shape": list(sample.shape), "dtype": "float32", "data": sample.tolist()}]}},
        {"data": bytearray(image), "top_k": bytearray(b"2")},  # multipart: the image and a form field
        {"garbage text": None},  # `curl -d 'garbage text'`: a form whose only field has no value
    ]
    answers = [json.loads(a) for a in handle(batch, context)]
    codes = [context.get_response_status(i)[0] for i in range(len(batch))]
    assert codes[1] == codes[2] == codes[3] == codes[6] == 400
    assert answers[6]["error"].startswith("not an image (first bytes b'garbage text'")
    assert answers[1]["error"].startswith("not an image (first bytes b'%%% not base64 %%%'; text that is not base64)")
    assert answers[2]["error"].startswith("not an image (first bytes b'these bytes are no image'")
    assert "shape" in answers[3]["error"]
    assert codes[0] in (None, 200) and codes[4] in (None, 200) and codes[5] in (None, 200)
    got = np.asarray(answers[4]["outputs"][0]["data"], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-4)
    ref = classifier_reference(folder, image, fmt)
    assert [p["class_id"] for p in answers[0]["predictions"]] == ref["class_ids"][:5]
    np.testing.assert_allclose([p["score"] for p in answers[0]["predictions"]], ref["scores"][:5], atol=1e-5)
    assert answers[0]["predictions"][0]["label"] == f"class_{ref['class_ids'][0]}"
    assert len(answers[5]["predictions"]) == 2
