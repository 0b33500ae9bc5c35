"""`pack sign` and `pack verify --signature` in-process, on a copy of the session's tiny build: a round trip with an EC
key and with a certificate chain, every tampering (a flipped byte, an added, a removed file, another key, a changed
signature) exit 3 with one line naming it, every bad key exit 2, and no byte of a private key in any output.
(The real command line, `pack build --sign-key` and KServe's storage: tests/integration/test_signing.py.)"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from tests.helpers.cli import Invocation, invoke
from tests.helpers.keys import PASSPHRASE, CertificateSet, KeyPair, certificates, ec_pair, rsa_key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyPair]:
    folder = tmp_path_factory.mktemp("keys")
    return {"a": ec_pair(folder, "a"), "b": ec_pair(folder, "b"), "enc": ec_pair(folder, "enc", PASSPHRASE)}


@pytest.fixture
def signed(tiny_build: Path, keys: dict[str, KeyPair]) -> Path:
    doc = invoke("sign", str(tiny_build), "--key", str(keys["a"].private), "--json").json()
    assert doc["signature"] == str(tiny_build / "model.sig") and doc["method"] == "key"
    assert doc["files"] == len([p for p in tiny_build.rglob("*") if p.is_file()]) - 1  # every file but the signature
    return tiny_build


def _check(build: Path, key: KeyPair, *extra: str) -> Invocation:
    return invoke("verify", str(build), "--signature", *extra, "--public-key", str(key.public))


def _fails(result: Invocation, *needles: str) -> str:
    line = result.error(3)
    assert all(n in line for n in needles), line
    return line


def test_round_trip_with_an_ec_key(signed: Path, keys: dict[str, KeyPair]) -> None:
    doc = _check(signed, keys["a"], "--json").json()
    assert doc["passed"] and doc["signed"] and doc["signature"]["verified"] and doc["signature"]["method"] == "key"
    plain = invoke("verify", str(signed))  # without --signature: today's checks, and what the signature lists (no key)
    assert plain.returncode == 0 and "signed: model.sig lists every file with its current digest" in plain.stdout
    inspected = invoke("inspect", str(signed), "--json").json()
    assert inspected["signed"] is True and inspected["provenance"] == "provenance.json"
    detached = signed.parent / "tiny-1.sig"  # a signature shipped beside the folder instead of in it
    (signed / "model.sig").rename(detached)
    assert _check(signed, keys["a"], str(detached)).returncode == 0
    assert "no such file" in _check(signed, keys["a"], str(signed.parent / "nothing.sig")).error(2)


def test_a_flipped_byte_an_added_and_a_removed_file_fail(signed: Path, keys: dict[str, KeyPair]) -> None:
    onnx = signed / "model.onnx"
    original = onnx.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    onnx.write_bytes(bytes(data))
    _fails(_check(signed, keys["a"]), "model.onnx: changed since it was signed")
    onnx.write_bytes(original)
    assert _check(signed, keys["a"]).returncode == 0  # the byte flipped back: verified again
    (signed / "triton" / "extra.py").write_text("print('added')\n")
    _fails(_check(signed, keys["a"]), "triton/extra.py: not covered by the signature")
    (signed / "triton" / "extra.py").unlink()
    (signed / "labels.txt").unlink()
    _fails(_check(signed, keys["a"]), "labels.txt: signed but missing")


def test_a_rewritten_report_with_matching_digests_still_fails(signed: Path, keys: dict[str, KeyPair]) -> None:
    """What the signature adds over report.json: a file changed and its digest re-recorded matches the report, never
    the signature: the plain verify finds the signature stale (no key needed), the signed one names the file."""
    from tests.helpers.reports import rerecord

    (signed / "labels.txt").write_text("cat\n")
    rerecord(signed, "labels.txt")
    _fails(invoke("verify", str(signed)), "model.sig does not cover the build: labels.txt: changed since it was signed")
    _fails(_check(signed, keys["a"]), "changed since it was signed")


def test_another_public_key_fails(signed: Path, keys: dict[str, KeyPair]) -> None:
    _fails(_check(signed, keys["b"]), "model.sig", "Key mismatch")


def _bundle(path: Path) -> dict:
    return dict(json.loads(path.read_text()))


def test_a_tampered_signature_fails(signed: Path, keys: dict[str, KeyPair]) -> None:
    sig = signed / "model.sig"
    original = sig.read_text()
    bundle = _bundle(sig)
    raw = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[-1] ^= 0x01
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    sig.write_text(json.dumps(bundle))
    _fails(_check(signed, keys["a"]), "model.sig: does not verify")
    bundle = json.loads(original)  # the statement changed (a digest made to match a changed file), signature kept
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "0" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    sig.write_text(json.dumps(bundle))
    _fails(_check(signed, keys["a"]), "model.sig: does not verify")
    sig.write_text("not a signature")
    _fails(_check(signed, keys["a"]), "model.sig: does not verify")
    sig.unlink()
    _fails(_check(signed, keys["a"]), "model.sig: no signature")


def test_a_signature_that_leaves_files_out_fails(signed: Path, keys: dict[str, KeyPair]) -> None:
    """Signed with the right key by another tool that skipped report.json: pack covers every file, so it fails. A
    signature that leaves out only paths the folder does not have (model-signing's CLI skips .git*) verifies."""
    from model_signing import hashing, signing

    def sign(ignored: list[str], git: bool) -> None:
        config = hashing.Config().set_ignored_paths(paths=["model.sig", *ignored], ignore_git_paths=git)
        signing.Config().use_elliptic_key_signer(private_key=keys["a"].private).set_hashing_config(config).sign(
            signed, signed / "model.sig"
        )

    sign(["report.json"], git=False)
    _fails(_check(signed, keys["a"]), "leaves files out of what it signs: report.json")
    sign([], git=True)
    assert _check(signed, keys["a"]).returncode == 0
    (signed / ".gitignore").write_text("*\n")  # now a file the signature skips is there: refused
    _fails(_check(signed, keys["a"]), "leaves files out of what it signs: .gitignore")


def test_certificate_signing_round_trip(tiny_build: Path, tmp_path: Path) -> None:
    certs: CertificateSet = certificates(tmp_path)
    sign = ("sign", str(tiny_build), "--key", str(certs.key), "--certificate", str(certs.certificate))
    assert "needs --certificate-chain" in invoke(*sign).error(2)
    doc = invoke(*sign, "--certificate-chain", str(certs.ca), "--json").json()
    assert doc["method"] == "certificate"
    result = invoke("verify", str(tiny_build), "--certificate-chain", str(certs.ca), "--json").json()
    assert result["passed"] and result["signature"]["verified"]
    other = certificates(tmp_path, "other")  # a chain that did not issue the signing certificate
    _fails(invoke("verify", str(tiny_build), "--certificate-chain", str(other.ca)), "model.sig: does not verify")
    bad = invoke(
        "sign",
        str(tiny_build),
        "--key",
        str(other.key),
        "--certificate",
        str(certs.certificate),
        "--certificate-chain",
        str(certs.ca),
    )
    assert "is not the certificate of --key" in bad.error(2)


def test_bad_keys_are_exit_2_with_one_line(tiny_build: Path, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    build = str(tiny_build)
    assert "no such file" in invoke("sign", build, "--key", str(tmp_path / "missing.pem")).error(2)
    (tmp_path / "notes.txt").write_text("not a key\n")
    assert "is not a PEM private key" in invoke("sign", build, "--key", str(tmp_path / "notes.txt")).error(2)
    assert "is not an elliptic-curve key on a supported curve (RSA)" in invoke(
        "sign", build, "--key", str(rsa_key(tmp_path))
    ).error(2)
    assert "is not a PEM private key" in invoke("sign", build, "--key", str(keys["a"].public)).error(2)
    enc = str(keys["enc"].private)
    assert "PACK_SIGN_KEY_PASSWORD" in invoke("sign", build, "--key", enc).error(2)
    wrong = invoke("sign", build, "--key", enc, env={"PACK_SIGN_KEY_PASSWORD": "wrong"})
    assert "does not decrypt it" in wrong.error(2)
    assert "holds a private key" in invoke("verify", build, "--public-key", str(keys["a"].private)).error(2)
    assert "is not a PEM public key" in invoke("verify", build, "--public-key", str(tmp_path / "notes.txt")).error(2)
    assert "needs the signer's key" in invoke("verify", build, "--signature").error(2)
    assert not (tiny_build / "model.sig").exists()  # nothing was signed
    doc = invoke("sign", build, "--key", enc, "--json", env={"PACK_SIGN_KEY_PASSWORD": PASSPHRASE}).json()
    assert doc["files"] > 0 and invoke("verify", build, "--public-key", str(keys["enc"].public)).returncode == 0


def test_no_key_material_in_any_output(tiny_build: Path, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    outputs = [
        invoke("sign", str(tiny_build), "--key", str(keys["enc"].private), "-v"),
        invoke("sign", str(tiny_build), "--key", str(keys["enc"].private), "--debug", env={"PACK_SIGN_KEY_PASSWORD": "x"}),
        invoke("sign", str(tiny_build), "--key", str(keys["a"].private), "-v", "--json"),
        invoke("verify", str(tiny_build), "--public-key", str(keys["b"].public), "-v", "--json"),
        invoke("sign", str(tiny_build), "--key", str(keys["a"].private), "--debug", "--version", "1"),
    ]
    text = "".join(o.stdout + o.stderr for o in outputs)
    for pair in keys.values():
        assert pair.body()[:40] not in text and pair.body()[-40:] not in text
    assert PASSPHRASE not in text and "BEGIN" not in text


def test_sign_refuses_a_build_that_does_not_match_its_report(tiny_build: Path, keys: dict[str, KeyPair]) -> None:
    (tiny_build / "labels.txt").write_text("changed\n")
    line = invoke("sign", str(tiny_build), "--key", str(keys["a"].private)).error(3)
    assert "will not sign" in line and "labels.txt" in line
    assert not (tiny_build / "model.sig").exists()


def test_sign_takes_a_model_name_in_the_store(tiny_store: Path, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    mounted = tmp_path / "secret.pem"  # a key mounted as a link (a Kubernetes secret volume): followed
    mounted.symlink_to(keys["a"].private)
    doc = invoke("sign", "tiny", "--store", str(tiny_store), "--key", str(mounted), "--json").json()
    assert doc["build"] == str(tiny_store / "tiny" / "1") and doc["version"] == "1"
    assert "no version 7" in invoke(
        "sign", "tiny", "--store", str(tiny_store), "--version", "7", "--key", str(keys["a"].private)
    ).error(2)


def _edit_provenance(build: Path, statement: dict) -> None:
    """Write an edited provenance.json and record its digest in report.json, so only the provenance check can see it."""
    path = build / "provenance.json"
    path.write_text(json.dumps(statement))
    report = json.loads((build / "report.json").read_text())
    report["sha256"]["provenance.json"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (build / "report.json").write_text(json.dumps(report))


def test_provenance_is_checked_against_the_files_and_the_report(tiny_build: Path) -> None:
    path = tiny_build / "provenance.json"
    statement = json.loads(path.read_text())
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    report = json.loads((tiny_build / "report.json").read_text())
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects == {k: v for k, v in report["sha256"].items() if k != "provenance.json"}
    predicate = statement["predicate"]
    assert predicate["buildDefinition"]["internalParameters"]["versions"] == report["versions"]
    deps = {d["annotations"]["role"]: d for d in predicate["buildDefinition"]["resolvedDependencies"]}
    assert deps["packaged weights"]["digest"]["sha256"] == report["weights"]["state_dict_sha256"]
    gate = predicate["runDetails"]["byproducts"][0]["annotations"]
    assert gate["onnx"]["passed"] and gate["onnx"]["max_abs_error"] == report["validation"]["onnx"]["max_abs_error"]

    assert invoke("verify", str(tiny_build)).returncode == 0
    edited = json.loads(json.dumps(statement))
    edited["subject"][0]["digest"]["sha256"] = "0" * 64
    _edit_provenance(tiny_build, edited)
    line = invoke("verify", str(tiny_build)).error(3)
    assert "provenance.json" in line and f"subject {statement['subject'][0]['name']!r}: sha256 differs" in line

    edited = json.loads(json.dumps(statement))
    edited["subject"].pop()
    _edit_provenance(tiny_build, edited)
    assert "leaves out" in invoke("verify", str(tiny_build)).error(3)

    edited = json.loads(json.dumps(statement))
    edited["predicate"]["runDetails"]["byproducts"][0]["annotations"]["onnx"]["max_abs_error"] = 0.5
    _edit_provenance(tiny_build, edited)
    line = invoke("verify", str(tiny_build)).error(3)
    assert "predicate.runDetails.byproducts[0].annotations.onnx.max_abs_error differs from report.json" in line


def test_signature_on_an_archive_file_is_exit_2(tiny_build: Path, keys: dict[str, KeyPair]) -> None:
    mar = tiny_build / "torchserve" / "tiny.mar"
    assert "needs a folder" in invoke("verify", str(mar), "--public-key", str(keys["a"].public)).error(2)


@pytest.mark.parametrize("runtime", ["torchserve", "triton"])
def test_kserve_storage_carries_the_signature_and_is_signed_itself(signed: Path, keys: dict[str, KeyPair], runtime: str) -> None:
    store = signed.parents[1]
    args = ("deploy", "tiny", "--target", "kserve", "--runtime", runtime, "--store", str(store), "--storage-uri", "s3://b/tiny")
    doc = invoke(*args, "--sign-key", str(keys["b"].private), "--json").json()
    storage = Path(doc["storage"])
    assert doc["carried"] == ["provenance.json", "build.sig"]
    assert (storage / "build.sig").read_bytes() == (signed / "model.sig").read_bytes()
    assert (storage / "provenance.json").read_bytes() == (signed / "provenance.json").read_bytes()
    assert doc["storage_signature"]["signature"] == str(storage / "model.sig")
    result = invoke("verify", str(storage), "--public-key", str(keys["b"].public), "--json").json()
    assert result["passed"] and result["signature"]["files"] == len([p for p in storage.rglob("*") if p.is_file()]) - 1
    (storage / "provenance.json").write_text("{}")
    _fails(invoke("verify", str(storage), "--public-key", str(keys["b"].public)), "provenance.json: changed since it was signed")
    unsigned = invoke(*args, "--json").json()  # without --sign-key: the build's files are carried, no model.sig
    assert unsigned["storage_signature"] is None and not (Path(unsigned["storage"]) / "model.sig").exists()
    assert "PACK_SIGN_KEY_PASSWORD" in invoke(*args, "--sign-key", str(keys["enc"].private)).error(2)


def test_provenance_carries_the_variants_verdicts_when_the_report_has_them() -> None:
    from packager.report.provenance import statement
    from tests.helpers.reports import make_report

    report = make_report()
    names = [b["name"] for b in statement(report.to_dict(), {})["predicate"]["runDetails"]["byproducts"]]
    assert names == ["parity-gate"]  # a report without a variants section
    report.variants = {"int8": {"verdict": "passed", "max_abs_error": 0.01}}
    byproducts = statement(report.to_dict(), {"model.onnx": "0" * 64})["predicate"]["runDetails"]["byproducts"]
    assert byproducts[1] == {"name": "variants", "annotations": {"int8": {"verdict": "passed", "max_abs_error": 0.01}}}
