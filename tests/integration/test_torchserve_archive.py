"""The TorchServe archive against the outside world: the manifest torch-model-archiver writes, byte-identical archives
from two separate builds, and the setup script's syntax. (The archive's contents and the handlers in-process:
tests/unit/test_torchserve_archive.py.)"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.helpers.cli import pack_json
from tests.helpers.torchserve import copy_build


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
