"""The model-car image in-process: a byte-reproducible OCI layout whose shell layer holds a static busybox as sh, ln
and sleep, and whose models layer holds the storage folder under models/, with safe, normalised tar entries; registry
references and where they are pushed. (Against a real registry, read back with skopeo:
tests/integration/test_kserve_modelcar_registry.py.)"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import struct
import tarfile
from pathlib import Path

import pytest

from packager.errors import UsageError
from packager.serve.http import is_loopback
from packager.targets.kserve.modelcar import BUSYBOX_ENV, architecture, build_image, find_busybox
from packager.targets.kserve.push import PASSWORD_ENV, USER_ENV, RegistryClient, parse_reference


def _elf(path: Path, machine: int, interpreter: bool = False) -> Path:
    """A minimal 64-bit little-endian ELF executable header with one program header: PT_LOAD, or PT_INTERP (dynamic)."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HH", header, 16, 2, machine)  # ET_EXEC, e_machine
    struct.pack_into("<Q", header, 32, 64)  # e_phoff
    struct.pack_into("<HH", header, 54, 56, 1)  # e_phentsize, e_phnum
    program = bytearray(56)
    struct.pack_into("<I", program, 0, 3 if interpreter else 1)
    path.write_bytes(bytes(header + program))
    path.chmod(0o755)
    return path


@pytest.fixture(autouse=True)
def busybox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for a static busybox (never run here): the shell layer copies whatever $PACK_BUSYBOX names."""
    path = _elf(tmp_path / "busybox", architecture()[1])
    monkeypatch.setenv(BUSYBOX_ENV, str(path))
    return path


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    (root / "tiny" / "1").mkdir(parents=True)
    (root / "tiny" / "config.pbtxt").write_text('name: "tiny"\n')
    (root / "tiny" / "1" / "model.onnx").write_bytes(os.urandom(4096))
    (root / "tiny" / "1" / "model.onnx").chmod(0o600)
    return root


def _blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest  # every blob is named by its content
    return data


def test_same_storage_same_digest(storage: Path, tmp_path: Path) -> None:
    first = build_image(storage, tmp_path / "a", "v1")
    os.utime(storage / "tiny" / "config.pbtxt", (1_000_000, 1_000_000))  # times and modes of the files do not count
    (storage / "tiny" / "1" / "model.onnx").chmod(0o644)
    second = build_image(storage, tmp_path / "b", "v1")
    assert first.digest == second.digest and first.layer.digest == second.layer.digest
    (storage / "tiny" / "config.pbtxt").write_text('name: "tiny2"\n')
    assert build_image(storage, tmp_path / "c", "v1").digest != first.digest  # the content does


def test_source_date_epoch_sets_every_timestamp(storage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = build_image(storage, tmp_path / "a", "v1")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    dated = build_image(storage, tmp_path / "b", "v1")
    assert dated.digest != plain.digest and dated.digest == build_image(storage, tmp_path / "c", "v1").digest
    with tarfile.open(dated.layer.path) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1700000000}
    assert json.loads(dated.config.path.read_bytes())["created"] == "2023-11-14T22:13:20Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
        build_image(storage, tmp_path / "d", "v1")


def test_layer_entries_are_safe_and_normalised(storage: Path, tmp_path: Path) -> None:
    image = build_image(storage, tmp_path / "img", "v1")
    raw = image.layer.path.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0" and not raw[3] & 0x08  # gzip: mtime 0, no file name
    with tarfile.open(image.layer.path, "r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and names[0] == "models" and image.layer is image.layers[-1]
    for m in members:
        assert m.name.startswith("models") and not m.name.startswith("/") and ".." not in m.name.split("/")
        assert m.isdir() or m.isfile()
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0)
        assert m.mode == (0o755 if m.isdir() else 0o644)
        assert m.pax_headers == {}
    assert b"PaxHeader" not in gzip.decompress(raw)


def test_layer_holds_the_storage_layout_under_models(storage: Path, tmp_path: Path) -> None:
    image = build_image(storage, tmp_path / "img", "v1")
    with tarfile.open(image.layer.path, "r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    expected = {f"models/{p.relative_to(storage).as_posix()}": p.read_bytes() for p in storage.rglob("*") if p.is_file()}
    assert files == expected


def test_the_layout_is_an_oci_image_layout(storage: Path, tmp_path: Path) -> None:
    layout = tmp_path / "img"
    image = build_image(storage, layout, "v1", {"org.opencontainers.image.title": "tiny"})
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["digest"] == image.digest and entry["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    manifest = json.loads(_blob(layout, image.digest))
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json" and manifest["schemaVersion"] == 2
    assert manifest["annotations"] == {"org.opencontainers.image.title": "tiny"}
    shell, layer = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip" and layer["size"] == image.layer.size
    config = json.loads(_blob(layout, manifest["config"]["digest"]))
    diff_ids = ["sha256:" + hashlib.sha256(gzip.decompress(_blob(layout, x["digest"]))).hexdigest() for x in (shell, layer)]
    assert config["rootfs"] == {"type": "layers", "diff_ids": diff_ids} and config["os"] == "linux"
    assert config["architecture"] == architecture()[0] and "PATH=/bin" in config["config"]["Env"]
    assert sorted(p.name for p in (layout / "blobs" / "sha256").iterdir()) == sorted(
        d.split(":")[1] for d in (image.digest, image.config.digest, *(b.digest for b in image.layers))
    )


def test_the_shell_layer_holds_what_kserves_model_car_command_runs(storage: Path, tmp_path: Path, busybox: Path) -> None:
    """KServe runs `sh -c "ln -s /proc/$$/root/models /mnt/ && sleep infinity"` in the model-car container."""
    image = build_image(storage, tmp_path / "img", "v1")
    with tarfile.open(image.layers[0].path, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        binary = tar.extractfile(members["bin/busybox"]).read()  # type: ignore[union-attr]
    assert sorted(members) == ["bin", "bin/busybox", "bin/ln", "bin/sh", "bin/sleep"]
    assert binary == busybox.read_bytes() and members["bin/busybox"].mode == 0o755
    assert all(members[f"bin/{n}"].issym() and members[f"bin/{n}"].linkname == "busybox" for n in ("sh", "ln", "sleep"))


def test_the_shell_must_be_a_static_binary_for_this_machine(
    storage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = architecture()[1]
    other = 0xB7 if machine == 0x3E else 0x3E
    text = tmp_path / "script"
    text.write_text("#!/bin/sh\n")
    cases = [
        (_elf(tmp_path / "dynamic", machine, interpreter=True), "dynamically linked"),
        (_elf(tmp_path / "foreign", other), "another architecture"),
        (text, "not a 64-bit little-endian ELF"),
        (tmp_path / "missing", "none was found"),
    ]
    for path, message in cases:
        monkeypatch.setenv(BUSYBOX_ENV, str(path))
        with pytest.raises(UsageError, match=message) as caught:
            build_image(storage, tmp_path / f"img-{path.name}", "v1")
        assert "busybox-static" in str(caught.value.hint)
        assert not (tmp_path / f"img-{path.name}" / "index.json").exists()


def test_a_real_static_busybox_is_accepted_when_the_machine_has_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BUSYBOX_ENV)
    if platform.machine().lower() not in ("x86_64", "amd64", "aarch64", "arm64"):
        pytest.skip("no model-car for this machine")
    try:
        found = find_busybox()
    except UsageError as exc:
        pytest.skip(str(exc))
    assert found.is_file()


def test_a_symlink_in_the_storage_folder_is_refused(storage: Path, tmp_path: Path) -> None:
    (storage / "tiny" / "link").symlink_to("/etc/passwd")
    with pytest.raises(UsageError, match="not a regular file or folder"):
        build_image(storage, tmp_path / "img", "v1")


@pytest.mark.parametrize(
    "uri, registry, repository, tag, scheme",
    [
        ("oci://127.0.0.1:5000/models/tiny:v1", "127.0.0.1:5000", "models/tiny", "v1", "http"),
        ("oci://localhost:5000/tiny", "localhost:5000", "tiny", "3", "http"),
        ("oci://[::1]:5000/tiny:x", "[::1]:5000", "tiny", "x", "http"),
        ("oci://ghcr.io/team/resnet18:1.0", "ghcr.io", "team/resnet18", "1.0", "https"),
        ("oci://registry.example.com:8443/a/b/c", "registry.example.com:8443", "a/b/c", "3", "https"),
        ("oci://10.0.0.5:5000/tiny:v1", "10.0.0.5:5000", "tiny", "v1", "https"),  # not loopback: https
    ],
)
def test_references(uri: str, registry: str, repository: str, tag: str, scheme: str) -> None:
    ref = parse_reference(uri, "3")
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)
    assert ref.base_url == f"{scheme}://{registry}"
    digest = "sha256:" + "a" * 64
    assert ref.pinned(digest) == f"oci://{registry}/{repository}@{digest}"


@pytest.mark.parametrize(
    "uri, message",
    [
        ("oci://tiny", "does not name a registry host"),
        ("oci://ex ample.com/tiny", "does not name a registry host"),
        ("oci://ghcr.io/Team/x", "not a valid repository name"),
        ("oci://ghcr.io/team/x:", "not a valid image tag"),
        ("oci://ghcr.io/team/x@sha256:" + "0" * 64, "names a digest"),
        ("oci://ghcr.io/../x", "not a valid repository name"),
    ],
)
def test_bad_references_are_refused(uri: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_reference(uri, "1")


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("10.0.0.1", "example.com", "localhost.example.com", "0.0.0.0", ""))


def test_registry_credentials_come_from_the_environment_and_are_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    client = RegistryClient("https://ghcr.io")
    assert client._authorization() is None
    monkeypatch.setenv(USER_ENV, "me")
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    assert client._authorization() == "Basic bWU6czNjcmV0"
    assert "s3cret" not in repr(client) and "bWU6czNjcmV0" not in repr(client)
