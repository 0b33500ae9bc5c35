"""An OCI layout read without trusting it: a model-car as pack writes it passes, and a flipped byte in a layer, a blob
grown past its size, a digest that would name a path outside blobs/ and a missing blob each fail (exit 3)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tarfile
from pathlib import Path

import pytest

from packager.errors import ValidationFailed
from packager.targets.kserve.layout import check_image, unpack_models
from packager.targets.kserve.modelcar import BUSYBOX_ENV, Image, architecture, build_image


@pytest.fixture
def image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Image:
    busybox = bytearray(64 + 56)  # a stand-in static ELF (never run): the shell layer copies it
    busybox[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HH", busybox, 16, 2, architecture()[1])
    struct.pack_into("<Q", busybox, 32, 64)
    struct.pack_into("<HH", busybox, 54, 56, 1)
    struct.pack_into("<I", busybox, 64, 1)
    (tmp_path / "busybox").write_bytes(bytes(busybox))
    monkeypatch.setenv(BUSYBOX_ENV, str(tmp_path / "busybox"))
    storage = tmp_path / "storage" / "tiny" / "1"
    storage.mkdir(parents=True)
    (storage / "model.onnx").write_bytes(os.urandom(2048))
    return build_image(tmp_path / "storage", tmp_path / "layout", "v1")


def test_pack_image_passes(image: Image) -> None:
    assert check_image(image.layout, "v1")["layers"][-1]["digest"] == image.layer.digest


def test_flipped_byte_in_layer_fails(image: Image) -> None:
    data = bytearray(image.layer.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    image.layer.path.write_bytes(bytes(data))
    with pytest.raises(ValidationFailed, match=f"blob {image.layer.digest} does not match its digest") as err:
        check_image(image.layout)
    assert err.value.exit_code == 3


def test_oversized_blob_fails(image: Image) -> None:
    with open(image.config.path, "ab") as fh:
        fh.write(b" ")
    with pytest.raises(ValidationFailed, match="larger than its"):
        check_image(image.layout)


def test_missing_blob_fails(image: Image) -> None:
    image.layer.path.unlink()
    with pytest.raises(ValidationFailed, match="missing"):
        check_image(image.layout)


def test_traversal_digest_refused(image: Image) -> None:
    manifest = json.loads(image.manifest.path.read_bytes())
    manifest["layers"][-1]["digest"] = "sha256:../../../etc/passwd"
    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    (image.layout / "blobs" / "sha256" / digest).write_bytes(data)
    index = json.loads((image.layout / "index.json").read_bytes())
    index["manifests"][0].update(digest=f"sha256:{digest}", size=len(data))
    (image.layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValidationFailed, match="not a sha256 digest"):
        check_image(image.layout)


def test_unpack_models(image: Image, tmp_path: Path) -> None:
    files = unpack_models(image.layer.path, tmp_path / "out")
    assert [f.relative_to(tmp_path / "out").as_posix() for f in files] == ["models/tiny/1/model.onnx"]
    with pytest.raises(ValidationFailed, match="over 100 bytes"):
        unpack_models(image.layer.path, tmp_path / "small", limit=100)


def _tar(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isreg() else None)
    return path


@pytest.mark.parametrize(
    ("name", "kind", "problem"),
    [
        ("models/../../escape", tarfile.REGTYPE, "a path out of the image"),
        ("/models/abs", tarfile.REGTYPE, "a path out of the image"),
        ("models/link", tarfile.SYMTYPE, "a link or a special file"),
        ("etc/passwd", tarfile.REGTYPE, "a file outside /models"),
    ],
)
def test_unsafe_layer_refused(tmp_path: Path, name: str, kind: bytes, problem: str) -> None:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.size = 1 if kind == tarfile.REGTYPE else 0
    member.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
    layer = _tar(tmp_path / "layer.tar.gz", member)
    with pytest.raises(ValidationFailed, match=problem):
        unpack_models(layer, tmp_path / "out")
    assert not (tmp_path / "escape").exists() and list((tmp_path / "out").rglob("*")) == []


def test_duplicate_entry_refused(tmp_path: Path) -> None:
    member = tarfile.TarInfo("models/a")
    member.size = 1
    with pytest.raises(ValidationFailed, match="a duplicate entry"):
        unpack_models(_tar(tmp_path / "layer.tar.gz", member, member), tmp_path / "out")
