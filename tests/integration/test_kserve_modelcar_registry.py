"""The model-car against a real registry: `pack deploy --target kserve --storage-uri oci://...` pushes to a
docker-registry started on loopback, and skopeo reads the image back: the digest is the one the manifest pins, the
models layer holds the storage layout under models/, the shell layer runs KServe's model-car command, and a second
deploy of the same build pushes the same digest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.cli import one_error_line, pack_json, run_pack
from tests.helpers.registry import free_port, missing_binaries, running_registry, skopeo

pytestmark = pytest.mark.skipif(
    bool(missing_binaries()),
    reason=f"{', '.join(missing_binaries())} not installed (bash scripts/setup-registry.sh installs them)",
)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    folder = tmp_path / "registry"
    folder.mkdir()
    with running_registry(folder) as address:
        yield address


def _deploy(store: Path, uri: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return dict(pack_json("deploy", "tiny", "--target", "kserve", "--store", str(store), "--storage-uri", uri, *args, env=env))


def _layers(layout: Path) -> list[Path]:
    """The layer blobs, in order, of the one image in an OCI layout (what skopeo copied)."""
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    return [layout / "blobs" / "sha256" / layer["digest"].split(":")[1] for layer in manifest["layers"]]


def _layer_files(layout: Path) -> dict[str, bytes]:
    """name -> bytes of every regular file in the models layer (the last) of the image in an OCI layout."""
    shell, layer = _layers(layout)
    out = {}
    with tarfile.open(layer, "r:gz") as tar:
        for member in tar.getmembers():
            assert member.name == "models" or member.name.startswith("models/"), member.name
            assert member.isdir() or member.isfile(), member.name
            if member.isfile():
                fh = tar.extractfile(member)
                assert fh is not None
                out[member.name] = fh.read()
    return out


def test_model_car_is_pushed_and_pinned_by_digest(tiny_store: Path, registry: str, tmp_path: Path) -> None:
    doc = _deploy(tiny_store, f"oci://{registry}/models/tiny:v1")
    isvc = yaml.safe_load(Path(doc["manifest"]).read_text())
    uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    assert uri.startswith(f"oci://{registry}/models/tiny@sha256:") and doc["storage_uri"] == uri
    assert isvc["spec"]["predictor"]["model"]["runtime"] == "kserve-tritonserver"
    assert run_pack("check-manifest", doc["manifest"]).returncode == 0
    assert doc["next_steps"] == [f"kubectl apply -f {doc['manifest']}"]  # nothing left to upload

    inspected = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry}/models/tiny:v1"))
    assert inspected["Digest"] == uri.split("@", 1)[1]  # the tag points at the pinned image
    copied = tmp_path / "copied"
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry}/models/tiny@{inspected['Digest']}", f"oci:{copied}:x")
    storage = Path(doc["storage"])
    expected = {f"models/{p.relative_to(storage).as_posix()}": p.read_bytes() for p in storage.rglob("*") if p.is_file()}
    assert {"models/tiny/config.pbtxt", "models/tiny/1/model.onnx"} <= set(expected)
    assert _layer_files(copied) == expected
    local = json.loads((Path(doc["modelcar"]) / "index.json").read_text())  # the layout pack kept
    assert local["manifests"][0]["digest"] == inspected["Digest"]

    again = _deploy(tiny_store, f"oci://{registry}/models/tiny:v2")  # the same build again: the same image
    assert again["storage_uri"] == uri
    assert (
        json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry}/models/tiny:v2"))["Digest"]
        == inspected["Digest"]
    )


def test_the_image_runs_kserves_model_car_command(tiny_store: Path, registry: str, tmp_path: Path) -> None:
    """Unpack the image as a container runtime would (layers in order) and run KServe's sidecar command in it:
    `sh -c "ln -s .../models /mnt/ && sleep ..."` (chrooted where this user may, else with the image's own shell)."""
    _deploy(tiny_store, f"oci://{registry}/models/tiny:v1")
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry}/models/tiny:v1", f"oci:{tmp_path / 'img'}:x")
    root = tmp_path / "rootfs"
    root.mkdir()
    for layer in _layers(tmp_path / "img"):
        with tarfile.open(layer, "r:gz") as tar:
            tar.extractall(root, filter="tar")
    (root / "mnt").mkdir()  # KServe mounts a shared volume there
    script = "ln -s /models /mnt/models && test -f /mnt/models/tiny/config.pbtxt && sleep 0 && echo ready"
    chroot = shutil.which("chroot")
    if os.geteuid() == 0 and chroot:
        cmd = [chroot, str(root), "/bin/sh", "-c", script]
    else:  # the image's shell, with the image's paths made relative to the unpacked root
        cmd = [str(root / "bin" / "sh"), "-c", script.replace("/models", "./models").replace("/mnt", "./mnt")]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=30, env={"PATH": "/bin"})
    assert proc.returncode == 0 and proc.stdout.strip() == "ready", proc.stderr
    assert (root / "mnt" / "models").is_symlink()


def test_torchserve_model_car_holds_its_layout(tiny_store: Path, registry: str, tmp_path: Path) -> None:
    doc = _deploy(tiny_store, f"oci://{registry}/tiny-ts", "--runtime", "torchserve", "--deployment-mode", "Knative")
    uri = doc["storage_uri"]
    assert uri.startswith(f"oci://{registry}/tiny-ts@sha256:")
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry}/tiny-ts:1", f"oci:{tmp_path / 'ts'}:x")  # tag: the version
    files = _layer_files(tmp_path / "ts")
    assert set(files) == {"models/config/config.properties", "models/model-store/tiny.mar"}


def test_an_unreachable_registry_writes_nothing(tiny_store: Path) -> None:
    uri = f"oci://127.0.0.1:{free_port()}/models/tiny:v1"  # nothing listens there
    args = ("deploy", "tiny", "--target", "kserve", "--store", str(tiny_store), "--storage-uri", uri)
    proc = run_pack(*args)
    line = one_error_line(5, proc.returncode, proc.stderr)
    assert "pushing the model-car to" in line and "no answer from the registry" in line
    version = tiny_store / "kserve" / "tiny" / "1"
    assert not (version / "triton").exists()
    left = list(version.iterdir()) if version.exists() else []
    assert not [p for p in left if p.name.startswith(".tmp")]
    assert left or not version.exists()  # no empty folder: what an earlier deploy of this version wrote stays, alone


@pytest.mark.parametrize("credentials", [{}, {"PACK_REGISTRY_USERNAME": "pack", "PACK_REGISTRY_PASSWORD": "wrong-secret"}])
def test_a_registry_that_refuses_the_credentials_is_exit_5(tiny_store: Path, tmp_path: Path, credentials: dict[str, str]) -> None:
    """A refused credential (HTTP 401) is the user's setup, as an unreachable registry is: exit 5, with advice that
    fits (set them, or check the ones given), the password never printed, nothing written."""
    folder = tmp_path / "registry"
    folder.mkdir()
    with running_registry(folder, users={"pack": "right-secret"}) as address:
        env = {"PACK_REGISTRY_USERNAME": "", "PACK_REGISTRY_PASSWORD": "", **credentials}
        uri = f"oci://{address}/models/tiny:v1"
        proc = run_pack("deploy", "tiny", "--target", "kserve", "--store", str(tiny_store), "--storage-uri", uri, env=env)
        line = one_error_line(5, proc.returncode, proc.stderr)
        assert "the registry refused access (HTTP 401" in line
        assert ("check PACK_REGISTRY_USERNAME" if credentials else "set PACK_REGISTRY_USERNAME") in line
        assert "secret" not in proc.stderr + proc.stdout
        version = tiny_store / "kserve" / "tiny" / "1"
        assert not [p for p in (version.iterdir() if version.exists() else []) if p.name.startswith(".tmp")]
        with_right = {**env, "PACK_REGISTRY_USERNAME": "pack", "PACK_REGISTRY_PASSWORD": "right-secret"}
        doc = _deploy(tiny_store, uri, env=with_right)  # the same push with the right credentials goes through
        assert doc["storage_uri"].startswith(f"oci://{address}/models/tiny@sha256:")
