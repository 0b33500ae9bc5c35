"""Signing through the real command line, as a release pipeline runs it: `pack build --sign-key` signs the build
before it is committed, `pack verify --signature --public-key` passes on it and fails (exit 3, one line) on a flipped
byte, and a key that cannot be used stops the build before any work (exit 2) without a byte of it in any output.
(Every other signing case, in-process: tests/unit/test_signing.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

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
