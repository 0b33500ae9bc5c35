"""handlers/pack_signature.check, the check the serving code runs before loading: a signed folder verifies, and one
flipped byte in a staged file, an unsigned extra file, another signer's key, a changed manifest or a missing signature
each refuse with the reason (never an exception)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from packager.report.signing import load_signing_key, sign_folder
from packager.serve.tasks import runtime_on_path
from tests.helpers.keys import KeyPair, ec_pair

runtime_on_path()
from pack_signature import check  # noqa: E402  (a flat module of the serving runtime, as on a server)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, KeyPair, KeyPair]:
    root = tmp_path_factory.mktemp("sig")
    keys, other = ec_pair(root, "a"), ec_pair(root, "b")
    build = root / "build"
    (build / "sub").mkdir(parents=True)
    (build / "model.pt").write_bytes(bytes(range(256)) * 64)
    (build / "sub" / "config.json").write_text('{"a": 1}')
    sign_folder(build, load_signing_key(keys.private))
    return build, keys, other


@pytest.fixture
def staged(signed: tuple[Path, KeyPair, KeyPair], tmp_path: Path) -> Path:
    return Path(shutil.copytree(signed[0], tmp_path / "staged"))


def test_intact_copy_verifies(signed: tuple[Path, KeyPair, KeyPair], staged: Path) -> None:
    verdict = check(staged, signed[1].public)
    assert verdict.verified and verdict.reason == ""


def test_one_flipped_byte_refuses(signed: tuple[Path, KeyPair, KeyPair], staged: Path) -> None:
    data = bytearray((staged / "model.pt").read_bytes())
    data[1000] ^= 1
    (staged / "model.pt").write_bytes(bytes(data))
    verdict = check(staged, signed[1].public)
    assert not verdict.verified and "model.pt differs from the signed bytes" in verdict.reason


def test_unsigned_extra_file_refuses(signed: tuple[Path, KeyPair, KeyPair], staged: Path) -> None:
    (staged / "extra.py").write_text("print(1)")
    verdict = check(staged, signed[1].public)
    assert not verdict.verified and "extra.py is not in the signed manifest" in verdict.reason


def test_other_key_refuses(signed: tuple[Path, KeyPair, KeyPair], staged: Path) -> None:
    verdict = check(staged, signed[2].public)
    assert not verdict.verified and "does not verify with the public key" in verdict.reason


def test_changed_manifest_refuses(signed: tuple[Path, KeyPair, KeyPair], staged: Path) -> None:
    """A manifest rewritten to the tampered file's digest no longer matches the envelope's signature."""
    sig = staged / "model.sig"
    bundle = json.loads(sig.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "0" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    sig.write_text(json.dumps(bundle))
    verdict = check(staged, signed[1].public)
    assert not verdict.verified and "does not verify" in verdict.reason


def test_missing_or_unreadable_signature_refuses(signed: tuple[Path, KeyPair, KeyPair], staged: Path) -> None:
    (staged / "model.sig").write_text("not json")
    assert not check(staged, signed[1].public).verified
    (staged / "model.sig").unlink()
    verdict = check(staged, signed[1].public)
    assert not verdict.verified and "no signature" in verdict.reason
