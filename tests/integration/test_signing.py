"""Signing through the real command line, as a release pipeline runs it: `pack build --sign-key` signs the build
before it is committed, `pack verify --signature --public-key` passes on it and fails (exit 3, one line) on a flipped
byte, and a key that cannot be used stops the build before any work (exit 2) without a byte of it in any output.
A signed build that `pack optimize` rewrites is signed again with --sign-key, or loses its signature with a warning,
a record in report.json, words in `pack verify` and a warning (or, with --require-signature, a refusal) from deploy.
`pack verify` of a .mar without its build never says verified: exit 6, or exit 3 for a swapped model file. A build
whose signing fails (in-process: the signing step made to fail) is not kept.
(Every other case, in-process: tests/unit/test_sign_verify.py and tests/unit/test_trust.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from packager.console import on_purpose
from tests.helpers.cli import one_error_line, run_pack
from tests.helpers.keys import PASSPHRASE, KeyPair, ec_pair


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, KeyPair, subprocess.CompletedProcess[str]]:
    """One signed build of tiny (the key encrypted, its passphrase in the environment), made by `pack build`."""
    folder = tmp_path_factory.mktemp("signed")
    key = ec_pair(folder, "release", PASSPHRASE)
    store = folder / "store"
    proc = run_pack(
        "build", "tiny", "--store", str(store), "--iterations", "1", "--sign-key", str(key.private), "--json", "-v",
        env={"PACK_SIGN_KEY_PASSWORD": PASSPHRASE},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return store / "tiny" / "1", key, proc


def test_build_signs_and_verify_checks_the_signature(release: tuple[Path, KeyPair, subprocess.CompletedProcess[str]]) -> None:
    build, key, proc = release
    doc = json.loads(proc.stdout)
    assert doc["signature"]["signature"] == str(build / "model.sig") and (build / "model.sig").is_file()
    assert doc["signature"]["files"] == len([p for p in build.rglob("*") if p.is_file()]) - 1
    assert key.body()[:40] not in proc.stdout + proc.stderr and PASSPHRASE not in proc.stdout + proc.stderr
    checked = run_pack("verify", str(build), "--signature", "--public-key", str(key.public), "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["signature"]["verified"]
    assert not list(build.parent.glob(".tmp-*"))  # nothing half-written beside the build


def test_a_flipped_byte_in_a_signed_build_is_exit_3_with_one_line(
    release: tuple[Path, KeyPair, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    build, key, _ = release
    copy = tmp_path / "tiny" / "1"
    shutil.copytree(build, copy)
    mar = copy / "torchserve" / "tiny.mar"
    data = bytearray(mar.read_bytes())
    data[len(data) // 3] ^= 0x01
    mar.write_bytes(bytes(data))
    proc = run_pack("verify", str(copy), "--public-key", str(key.public))
    line = one_error_line(3, proc.returncode, proc.stderr)
    assert "torchserve/tiny.mar: changed since it was signed" in line


def test_an_unusable_key_stops_the_build_before_any_work(tmp_path: Path) -> None:
    key = ec_pair(tmp_path, "locked", PASSPHRASE)
    store = tmp_path / "store"
    proc = run_pack("build", "tiny", "--store", str(store), "--sign-key", str(key.private))
    line = one_error_line(2, proc.returncode, proc.stderr)
    assert "is encrypted" in line and "PACK_SIGN_KEY_PASSWORD" in line
    assert key.body()[:40] not in proc.stdout + proc.stderr
    assert "exporting" not in proc.stderr and not (store / "tiny" / "1").exists()


def _copy(build: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A private store holding a copy of the signed build: (store, build folder)."""
    store = tmp_path / "store"
    shutil.copytree(build, store / "tiny" / "1")
    return store, store / "tiny" / "1"


def _kserve(store: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_pack(
        "deploy", "tiny", "--target", "kserve", "--store", str(store), "--storage-uri", "s3://b/tiny", *extra, env=env
    )  # fmt: skip


def test_optimize_without_a_key_removes_the_signature_says_so_and_deploy_warns_or_refuses(
    release: tuple[Path, KeyPair, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    build, key, _ = release
    store, folder = _copy(build, tmp_path)
    proc = run_pack("optimize", "tiny", "--store", str(store), "--variants", "int8-dynamic", "--min-speedup", "0", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pack: warning: the build was signed; `pack optimize` rewrote it without --sign-key" in proc.stderr
    assert json.loads(proc.stdout)["signature"]["status"] == "removed"
    record = json.loads((folder / "report.json").read_text())["signature"]
    assert record["status"] == "removed" and record["by"] == "pack optimize"
    assert not (folder / "model.sig").exists()  # never a signature that no longer covers the files
    plain = run_pack("verify", str(folder))
    assert plain.returncode == 0 and "unsigned: its signature" in plain.stdout and "removed when `pack optimize`" in plain.stdout
    warned = _kserve(store, "--json")
    assert warned.returncode == 0 and "warning: unsigned: its signature" in warned.stderr
    assert json.loads(warned.stdout)["carried"] == []
    refused = _kserve(store, "--require-signature", "--public-key", str(key.public))
    assert "will not deploy" in one_error_line(3, refused.returncode, refused.stderr)


Release = tuple[Path, KeyPair, subprocess.CompletedProcess[str]]


def test_optimize_with_the_key_signs_again(release: Release, tmp_path: Path) -> None:
    build, key, _ = release
    store, folder = _copy(build, tmp_path)
    env = {"PACK_SIGN_KEY_PASSWORD": PASSPHRASE}
    proc = run_pack(
        "optimize", "tiny", "--store", str(store), "--variants", "int8-dynamic", "--min-speedup", "0",
        "--sign-key", str(key.private), "--json", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["signature"]["status"] == "re-signed" and "warning" not in proc.stderr
    assert key.body()[:40] not in proc.stdout + proc.stderr and PASSPHRASE not in proc.stdout + proc.stderr
    checked = run_pack("verify", str(folder), "--signature", "--public-key", str(key.public), "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["signature"]["verified"], checked.stderr
    deployed = _kserve(store, "--require-signature", "--public-key", str(key.public), "--json")
    assert deployed.returncode == 0 and json.loads(deployed.stdout)["carried"] == ["provenance.json", "build.sig"]
    assert "KServe's runtimes do not check it again" in deployed.stderr  # said, not implied


def test_verify_of_a_mar_with_a_swapped_model_file_is_exit_3(tiny_store: Path, tmp_path: Path) -> None:
    import torch

    assert run_pack("archive", "tiny", "--store", str(tiny_store), "--format", "torchscript", "--force").returncode == 0
    mar = tiny_store / "tiny" / "1" / "torchserve" / "tiny.mar"
    intact = run_pack("verify", str(mar))
    assert "not verified: structure, and every member" in one_error_line(6, intact.returncode, intact.stderr)
    other = tmp_path / "other.pt"
    with on_purpose("torch.jit.script"):
        torch.jit.script(torch.nn.Linear(3, 10)).save(str(other))  # any TorchScript, in place of the build's
    swapped = tmp_path / "swapped.mar"
    with zipfile.ZipFile(mar) as zin, zipfile.ZipFile(swapped, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, other.read_bytes() if info.filename == "model.pt" else zin.read(info.filename))
    proc = run_pack("verify", str(swapped))
    line = one_error_line(3, proc.returncode, proc.stderr)
    assert "swapped.mar!model.pt: sha256 differs from the one pack.json records" in line


def test_verify_of_a_foreign_mar_says_structure_only(tiny_build: Path, tmp_path: Path) -> None:
    archiver = Path(sys.executable).parent / "torch-model-archiver"
    if not archiver.exists():
        pytest.skip("torch-model-archiver is not installed")
    subprocess.run(
        [
            str(archiver), "--model-name", "foreign", "--version", "1.0", "--serialized-file", str(tiny_build / "model.pt"),
            "--handler", "image_classifier", "--export-path", str(tmp_path),
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    proc = run_pack("verify", str(tmp_path / "foreign.mar"), "--json")
    line = one_error_line(6, proc.returncode, proc.stderr)
    assert "not verified: structure only: no report to check digests against" in line
    doc = json.loads(proc.stdout)
    assert doc["passed"] is True and doc["verified"] is False and doc["findings"] == []


def test_a_build_that_cannot_be_signed_is_not_kept(tiny_store: Path) -> None:
    """Signing runs inside the build's temporary folder, before the commit: when it fails, the build fails like any
    other, nothing is left beside the store, and the version it would have replaced (--force) is untouched."""
    from packager.build.pipeline import build
    from packager.build.plan import resolve
    from packager.errors import ValidationFailed

    before = (tiny_store / "tiny" / "1" / "report.json").read_bytes()
    seen: list[Path] = []

    def sign(folder: Path) -> None:
        seen.append(folder)
        assert (folder / "report.json").is_file() and (folder / "provenance.json").is_file()  # everything is written
        raise ValidationFailed("cannot sign: disk gone")

    with pytest.raises(ValidationFailed):
        build(resolve("tiny", None, {"device": "cpu"}), tiny_store, force=True, iterations=0, sign=sign)
    assert seen and not seen[0].exists()
    assert (tiny_store / "tiny" / "1" / "report.json").read_bytes() == before
    assert sorted(p.name for p in (tiny_store / "tiny").iterdir()) == [".lock", "1"]
