"""Signatures that stay true, in-process on copies of the session's tiny build: every command that rewrites a signed
build (`pack archive`, `pack tune`'s adopt through each target's method, `pack optimize` in
tests/integration/test_signing.py) signs it again with a key and otherwise removes the signature, warns and records
it; a rewrite that fails part-way leaves no stale signature; plain `pack verify` finds a stale or broken signature
without a key; `pack deploy` warns, and refuses with --require-signature before any target runs, on every target;
KServe storage never carries a stale signature. (The real command line: tests/integration/test_signing.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import Invocation, invoke
from tests.helpers.keys import KeyPair, ec_pair

PACKAGE = Path(__file__).resolve().parents[2] / "packager"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyPair]:
    folder = tmp_path_factory.mktemp("keys")
    return {"a": ec_pair(folder, "a"), "b": ec_pair(folder, "b")}


@pytest.fixture
def signed(tiny_build: Path, keys: dict[str, KeyPair]) -> Path:
    assert invoke("sign", str(tiny_build), "--key", str(keys["a"].private)).returncode == 0
    return tiny_build


def _report(build: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((build / "report.json").read_text())
    return data


def _verify(build: Path, *extra: str) -> Invocation:
    return invoke("verify", str(build), *extra)


def _removed(build: Path, command: str, keys: dict[str, KeyPair]) -> None:
    """What a rewrite without a key leaves: no signature, the record, and words that say so (the build verifies)."""
    assert not (build / "model.sig").exists()
    record = _report(build)["signature"]
    assert record["status"] == "removed" and record["by"] == command
    assert re.fullmatch("[0-9a-f]{64}", record["key_id"])  # the key it was signed with, to sign it again
    plain = _verify(build)
    assert plain.returncode == 0 and f"was removed when `{command}` rewrote the build" in plain.stdout
    assert not re.search("^signed:", plain.stdout, re.M)
    assert "no signature" in _verify(build, "--public-key", str(keys["a"].public)).error(3)


def _resigned(build: Path, command: str, keys: dict[str, KeyPair]) -> None:
    record = _report(build)["signature"]
    assert record["status"] == "re-signed" and record["by"] == command
    assert _verify(build, "--public-key", str(keys["b"].public), "--json").json()["signature"]["verified"]


def test_only_the_rule_saves_a_rewritten_report() -> None:
    """One place for "a command rewrote files of a build": every report.save outside the build goes through it."""
    found = [
        f"{p.relative_to(PACKAGE)}:{n}"
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.relative_to(PACKAGE).as_posix() not in ("build/pipeline.py", "report/trust.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"\breport\.save\(", line)
    ]
    assert found == []


def test_archive_without_a_key_removes_warns_and_records(signed: Path, keys: dict[str, KeyPair]) -> None:
    store = signed.parents[1]
    done = invoke("archive", "tiny", "--store", str(store), "--force", "--json")
    assert done.returncode == 0, done.stderr
    assert "warning: the build was signed; `pack archive` rewrote it without --sign-key" in done.stderr
    assert json.loads(done.stdout)["signature"]["status"] == "removed"
    _removed(signed, "pack archive", keys)


def test_archive_with_a_key_signs_again(signed: Path, keys: dict[str, KeyPair]) -> None:
    store = signed.parents[1]
    done = invoke("archive", "tiny", "--store", str(store), "--force", "--sign-key", str(keys["b"].private), "--json")
    outcome = done.json()["signature"]
    assert outcome["status"] == "re-signed" and outcome["files"] == len([p for p in signed.rglob("*") if p.is_file()]) - 1
    _resigned(signed, "pack archive", keys)
    assert not list((signed / "torchserve").glob(".tmp-*"))  # the staging folder was gone before the signing


@pytest.mark.parametrize("target", ["triton", "torchserve"])
def test_tune_adopt_signs_again_or_removes(signed: Path, keys: dict[str, KeyPair], target: str) -> None:
    from packager.report.build_report import BuildReport
    from packager.report.trust import rewriting
    from packager.targets import TUNABLE, get_target, require

    chosen = require(TUNABLE, get_target(target))
    space, start = chosen.tuning_space(BuildReport.load(signed))
    tuned = {"settings": start, "throughput_rps": 1.0}
    with rewriting("pack tune", str(keys["b"].private)) as rule:
        chosen.adopt_settings(signed, BuildReport.load(signed), {**start, "workers": 2}, tuned)
    assert rule.outcome["status"] == "re-signed"
    _resigned(signed, "pack tune", keys)
    with rewriting("pack tune", None) as rule:
        chosen.adopt_settings(signed, BuildReport.load(signed), {**start, "workers": 1}, tuned)
    assert rule.outcome["status"] == "removed" and "pack tune" in rule.outcome["warning"]
    _removed(signed, "pack tune", keys)


def test_a_crafted_signature_is_removed_without_trusting_its_key_hint(signed: Path, keys: dict[str, KeyPair]) -> None:
    bundle = json.loads((signed / "model.sig").read_text())
    bundle["verificationMaterial"]["publicKey"]["hint"] = "not a key id\n" * 3
    (signed / "model.sig").write_text(json.dumps(bundle))
    done = invoke("archive", "tiny", "--store", str(signed.parents[1]), "--force")
    assert done.returncode == 0, done.stderr
    assert not (signed / "model.sig").exists() and "key_id" not in _report(signed)["signature"]


def test_a_rewrite_killed_part_way_leaves_no_stale_signature(signed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from packager.report.trust import Rewrite

    def killed(*args: Any, **kw: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Rewrite, "save", killed)  # the new files are swapped in; nothing after that runs
    assert invoke("archive", "tiny", "--store", str(signed.parents[1]), "--force").returncode == 130
    assert not (signed / "model.sig").exists()


def test_a_failed_signing_after_the_report_keeps_the_files_the_report_names(
    signed: Path, keys: dict[str, KeyPair], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signing comes after the rewrite's own all-or-nothing step (Triton's adopt puts the old repository back when
    that step fails): a key that fails then leaves an unsigned build whose files are the ones its report names."""
    import packager.report.signing
    from packager.errors import ValidationFailed
    from packager.report.build_report import BuildReport
    from packager.report.trust import rewriting
    from packager.targets import TUNABLE, get_target, require

    def fails(*args: Any) -> None:
        raise ValidationFailed("cannot sign: disk gone")

    chosen = require(TUNABLE, get_target("triton"))
    _, start = chosen.tuning_space(BuildReport.load(signed))
    with rewriting("pack tune", str(keys["b"].private)):
        monkeypatch.setattr(packager.report.signing, "sign_folder", fails)
        with pytest.raises(ValidationFailed):
            chosen.adopt_settings(signed, BuildReport.load(signed), {**start, "workers": 2}, {})
    assert _verify(signed).returncode == 0 and not (signed / "model.sig").exists()


def test_without_hashing_the_signature_is_checked_against_every_digest_the_report_records(signed: Path) -> None:
    """What deploy and KServe use (the files were just checked against the report): files recorded after signing
    and files signed but no longer recorded are both named."""
    from packager.report.build_report import BuildReport
    from packager.report.trust import status

    assert status(signed, BuildReport.load(signed), hash_files=False).state == "covers"
    report = BuildReport.load(signed)
    (signed / "labels.txt").unlink()
    del report.sha256["labels.txt"]
    (signed / "notes.txt").write_text("added\n")
    report.save(signed, rewritten=["notes.txt"])
    found = status(signed, BuildReport.load(signed), hash_files=False)
    assert found.state == "stale" and found.words.startswith("model.sig does not cover the build: labels.txt: signed but")
    assert (str(signed / "notes.txt"), "not covered by the signature (recorded after signing)") in found.problems


def test_plain_verify_finds_a_stale_and_a_broken_signature(signed: Path) -> None:
    from tests.helpers.reports import rerecord

    (signed / "torchserve" / "config.properties").write_text("# edited after signing\n")
    rerecord(signed, "torchserve/config.properties")  # what a rewrite of an older pack did: report right, signature not
    line = _verify(signed).error(3)
    assert "model.sig does not cover the build: torchserve/config.properties: changed since it was signed" in line
    doc = json.loads(_verify(signed, "--json").stdout)
    assert doc["signed"] is False and doc["signature_status"]["state"] == "stale"
    assert not re.search("^signed:", _verify(signed).stdout, re.M)
    inspected = invoke("inspect", str(signed), "--json").json()
    assert inspected["signed"] is False and inspected["signature_status"]["state"] == "stale"
    (signed / "model.sig").write_text('{"dsseEnvelope": {"payload": "not base64"}}')
    assert "model.sig broken: not a signature pack can read" in _verify(signed).error(3)


def test_sign_mends_a_stale_signature(signed: Path, keys: dict[str, KeyPair]) -> None:
    from tests.helpers.reports import rerecord

    (signed / "labels.txt").write_text("cat\n")
    rerecord(signed, "labels.txt")
    assert invoke("sign", str(signed), "--key", str(keys["a"].private)).returncode == 0
    assert _verify(signed).returncode == 0


@pytest.mark.parametrize("target", ["triton", "torchserve", "fastapi", "kserve"])
def test_deploy_requires_a_signature_before_any_target_runs(signed: Path, keys: dict[str, KeyPair], target: str) -> None:
    store = signed.parents[1]
    args = ("deploy", "tiny", "--target", target, "--store", str(store), "--require-signature")
    wrong = invoke(*args, "--public-key", str(keys["b"].public)).error(3)
    assert "will not deploy" in wrong and "Key mismatch" in wrong
    (signed / "model.sig").unlink()
    assert "no signature" in invoke(*args, "--public-key", str(keys["a"].public)).error(3)
    assert not (store / ".servers").exists() and not (store / "kserve").exists()  # no target ran


def test_deploy_flags_are_checked(signed: Path, keys: dict[str, KeyPair]) -> None:
    args = ("deploy", "tiny", "--target", "kserve", "--store", str(signed.parents[1]))
    assert "needs the signer's key" in invoke(*args, "--require-signature").error(2)
    assert "go with --require-signature" in invoke(*args, "--public-key", str(keys["a"].public)).error(2)


def test_deploy_warns_and_kserve_never_carries_a_stale_signature(signed: Path, keys: dict[str, KeyPair]) -> None:
    from tests.helpers.reports import rerecord

    store = signed.parents[1]
    args = ("deploy", "tiny", "--target", "kserve", "--store", str(store), "--storage-uri", "s3://b/tiny")
    fresh = invoke(*args, "--json")
    assert fresh.json()["carried"] == ["provenance.json", "build.sig"] and "warning" not in fresh.stderr
    (signed / "labels.txt").write_text("cat\n")
    rerecord(signed, "labels.txt")
    done = invoke(*args, "--sign-key", str(keys["b"].private), "--json")
    doc = done.json()
    assert "warning: model.sig does not cover the build: labels.txt" in done.stderr
    storage = Path(doc["storage"])
    assert doc["carried"] == [] and not (storage / "build.sig").exists()
    assert _verify(storage, "--public-key", str(keys["b"].public), "--json").json()["verified"]  # signed fresh
    assert "--require-signature" in invoke(*args).stderr


def _mar_with(source: Path, dest: Path, change: dict[str, bytes | None]) -> Path:
    import zipfile

    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            if info.filename in change:
                data = change.pop(info.filename)
                if data is not None:
                    zout.writestr(info, data)
            else:
                zout.writestr(info, zin.read(info.filename))
        for name, data in change.items():
            zout.writestr(name, data or b"")
    return dest


def test_verify_of_a_mar_checks_its_members_and_never_says_verified(tiny_build: Path, tmp_path: Path) -> None:
    mar = tiny_build / "torchserve" / "tiny.mar"
    line = _verify(mar).error(6)
    assert "not verified: structure, and every member against the sha256 digests its pack.json records" in line
    doc = json.loads(_verify(mar, "--json").stdout)
    assert doc["passed"] is True and doc["verified"] is False
    swapped = _mar_with(mar, tmp_path / "swapped.mar", {"model.onnx": b"another model"})
    assert "model.onnx: sha256 differs from the one pack.json records" in _verify(swapped).error(3)
    added = _mar_with(mar, tmp_path / "added.mar", {"extra.py": b"import os"})
    assert "extra.py: not among the members pack.json records" in _verify(added).error(3)
    removed = _mar_with(mar, tmp_path / "removed.mar", {"pack_images.py": None})
    assert "pack_images.py: recorded in pack.json but missing" in _verify(removed).error(3)
    assert _verify(tiny_build).returncode == 0  # inside its build: checked against the report, verified


def test_verify_of_a_repository_says_structure_only(tiny_build: Path) -> None:
    line = _verify(tiny_build / "triton").error(6)
    assert "not verified: structure only: no report to check digests against" in line
