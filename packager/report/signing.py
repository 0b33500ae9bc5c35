"""Signing a build folder with OpenSSF Model Signing (the `model-signing` library), offline, with an elliptic-curve
private key or a key and its certificate, and checking such a signature (`pack sign`, `pack build --sign-key`,
`pack verify --signature`).

The signature (`model.sig`: a Sigstore bundle holding a DSSE envelope over an in-toto statement of every file's
sha256) covers every file of the folder but itself: exports, samples, the TorchServe and Triton artifacts,
report.json and provenance.json. Nothing is fetched: no Sigstore, no transparency log. Keys are read here and by the
library, never printed or logged; an encrypted key's passphrase comes from the environment (PACK_SIGN_KEY_PASSWORD),
never from the command line. The libraries' exceptions become pack's errors in one place (errors.signing_library_error).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..errors import EnvironmentProblem, PackError, SignatureFailed, UsageError, signing_library_error
from .provenance import SIGNATURE

PASSWORD_ENV = "PACK_SIGN_KEY_PASSWORD"
CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}  # what model-signing accepts
MAX_PEM = 1 << 20
MAX_SIGNATURE = 64 << 20  # one manifest entry per file: a build's signature is kilobytes
EC_HINT = "model signing takes an elliptic-curve key (P-256, P-384 or P-521), e.g. `openssl ecparam -name prime256v1 -genkey`"


@dataclass
class SigningKey:
    """A checked signing configuration (the library's, with the key loaded), and the public key's id."""

    config: Any
    method: str  # key | certificate
    key_id: str  # sha256 of the public key (SubjectPublicKeyInfo PEM), the hint model-signing records


def _read(path: Path, limit: int, what: str, error: type[PackError]) -> bytes:
    """At most `limit` bytes of a file the user named (a link is followed: key files are often mounted as links)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise error(
            f"{what}: cannot be read ({exc.strerror or type(exc).__name__})", "check the path and its permissions"
        ) from None
    if len(data) > limit:
        raise error(f"{what}: more than the {limit:,d} bytes pack reads", "pass the right file")
    return data


def _pem(path: str | Path, flag: str) -> bytes:
    """The bytes of a PEM file named on the command line; exit 2 when it cannot be read (its content never shown)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{flag} {p}: no such file", "pass the path of a PEM file")
    return _read(p, MAX_PEM, f"{flag} {p}", UsageError)


def _config(module: Any) -> Any:
    """A fresh `Config` of a model-signing module (signing, verifying, hashing; their constructors are unannotated)."""
    return module.Config()


def _library() -> None:
    """model-signing is the `sign` extra: exit 5 with the install line when it is missing."""
    try:
        import model_signing  # noqa: F401
        import OpenSSL  # noqa: F401  (model-signing's certificate support needs it and does not declare it)
    except ImportError as exc:
        raise EnvironmentProblem(
            f"signing needs the Python package {exc.name!r}", "pip install 'pack-models[sign]' (or model-signing pyopenssl)"
        ) from None


def _key_id(public_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def _check_ec(key: Any, flag: str, path: str | Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    curve = getattr(getattr(key, "curve", None), "name", None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) or curve not in CURVES:
        kind = type(key).__name__.replace("_", "").replace("PrivateKey", "").replace("PublicKey", "") or "unknown"
        raise UsageError(f"{flag} {path} is not an elliptic-curve key on a supported curve ({curve or kind})", EC_HINT)


def _private_key(path: str | Path) -> tuple[Any, bytes | None]:
    """Load and check the private key; its passphrase (bytes) when it is encrypted."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    data = _pem(path, "--key")
    secret = os.environ.get(PASSWORD_ENV)
    password = secret.encode() if secret else None
    encrypted = b"ENCRYPTED" in data
    try:
        key = serialization.load_pem_private_key(data, password if encrypted else None)
    except TypeError:
        raise UsageError(f"--key {path} is encrypted", f"set its passphrase in the environment variable {PASSWORD_ENV}") from None
    except ValueError:
        if encrypted and password:
            raise UsageError(f"--key {path}: the passphrase in {PASSWORD_ENV} does not decrypt it", "set the right one") from None
        raise UsageError(f"--key {path} is not a PEM private key", EC_HINT) from None
    except UnsupportedAlgorithm:
        raise UsageError(f"--key {path} is a key of an unsupported kind", EC_HINT) from None
    _check_ec(key, "--key", path)
    return key, password if encrypted else None


def load_signing_key(key: str | Path, certificate: str | Path | None = None, chain: Sequence[str | Path] = ()) -> SigningKey:
    """Read and check the key (and certificate) now, before any work: exit 2 for a missing, unreadable, encrypted
    without passphrase, non-EC or mismatched key."""
    _library()
    from model_signing import signing

    private, password = _private_key(key)
    if certificate is None:
        if chain:
            raise UsageError("--certificate-chain needs --certificate (the signing certificate)")
        try:  # the library hands the passphrase to cryptography, which takes bytes
            config = _config(signing).use_elliptic_key_signer(private_key=key, password=cast(str, password))
        except Exception as exc:  # noqa: BLE001 - mapped in errors.signing_library_error
            raise signing_library_error(exc, f"--key {key}", "key") from None
        return SigningKey(config.set_hashing_config(_hashing()), "key", _key_id(private.public_key()))
    from cryptography import x509

    if not chain:  # model-signing 1.1 reads the chain as one PEM bundle and fails on an empty one
        raise UsageError("--certificate needs --certificate-chain", "pass the PEM certificates that issued it (the CA)")
    if password is not None:
        raise UsageError(
            "model signing reads a certificate signer's key without a passphrase",
            "use an unencrypted key kept in a protected file",
        )
    try:
        cert = x509.load_pem_x509_certificate(_pem(certificate, "--certificate"))
        for extra in chain:
            x509.load_pem_x509_certificates(_pem(extra, "--certificate-chain"))
    except ValueError:
        raise UsageError("--certificate or --certificate-chain is not a PEM certificate", "pass PEM certificates") from None
    if cert.public_key() != private.public_key():
        raise UsageError(f"--certificate {certificate} is not the certificate of --key {key}", "pass the key's own certificate")
    try:
        config = _config(signing).use_certificate_signer(
            private_key=key, signing_certificate=certificate, certificate_chain=chain
        )
    except Exception as exc:  # noqa: BLE001 - mapped in errors.signing_library_error
        raise signing_library_error(exc, f"--certificate {certificate}", "key") from None
    return SigningKey(config.set_hashing_config(_hashing()), "certificate", _key_id(private.public_key()))


def _hashing() -> Any:
    """Every file, sha256, no links, nothing left out but the signature (git files included: a build has none)."""
    from model_signing import hashing

    config = _config(hashing).use_file_serialization(hashing_algorithm="sha256", allow_symlinks=False)
    return config.set_ignored_paths(paths=[SIGNATURE], ignore_git_paths=False)


def sign_folder(folder: Path, key: SigningKey) -> dict[str, Any]:
    """Write `folder/model.sig` over every other file of the folder (a temporary name, then a rename)."""
    tmp = folder / f".{SIGNATURE}.{os.getpid()}.tmp"
    try:
        key.config.sign(folder, tmp)
        os.replace(tmp, folder / SIGNATURE)
    except (PackError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - mapped in errors.signing_library_error
        raise signing_library_error(exc, str(folder), "sign") from None
    finally:
        tmp.unlink(missing_ok=True)
    statement = _statement(folder / SIGNATURE)
    return {"signature": str(folder / SIGNATURE), "method": key.method, "key_id": key.key_id, "files": len(_resources(statement))}


def _statement(signature: Path) -> dict[str, Any]:
    """The in-toto statement inside a signature (read after the library verified it, or from the one just written)."""
    bundle = json.loads(_read(signature, MAX_SIGNATURE, str(signature), SignatureFailed))
    statement: dict[str, Any] = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return statement


def _resources(statement: dict[str, Any]) -> list[str]:
    return [str(r.get("name")) for r in statement.get("predicate", {}).get("resources", [])]


def _public_key_check(public_key: str | Path) -> str:
    from cryptography.hazmat.primitives import serialization

    data = _pem(public_key, "--public-key")
    if b"PRIVATE KEY" in data:
        raise UsageError(f"--public-key {public_key} holds a private key", "pass the public key only (openssl ec -pubout)")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise UsageError(f"--public-key {public_key} is not a PEM public key", EC_HINT) from None
    _check_ec(key, "--public-key", public_key)
    return _key_id(key)


def _verifier(public_key: str | Path | None, chain: Sequence[str | Path]) -> tuple[Any, dict[str, Any]]:
    _library()
    from model_signing import verifying

    if public_key is not None and chain:
        raise UsageError("give --public-key or --certificate-chain, not both")
    if public_key is not None:
        key_id = _public_key_check(public_key)
        try:
            config = _config(verifying).use_elliptic_key_verifier(public_key=public_key)
        except Exception as exc:  # noqa: BLE001 - mapped in errors.signing_library_error
            raise signing_library_error(exc, f"--public-key {public_key}", "key") from None
        return config, {"method": "key", "key_id": key_id}
    if not chain:
        raise UsageError("checking a signature needs the signer's key", "pass --public-key PEM or --certificate-chain PEM")
    from cryptography import x509

    try:
        for path in chain:
            x509.load_pem_x509_certificates(_pem(path, "--certificate-chain"))
        config = _config(verifying).use_certificate_verifier(certificate_chain=list(chain))
    except PackError:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped in errors.signing_library_error
        raise signing_library_error(exc, "--certificate-chain", "key") from None
    return config, {"method": "certificate"}


def signed_digests(sig: Path) -> dict[str, str]:
    """File -> sha256 as the signature's statement lists them: read, not checked (no key is needed, nor the library).
    ValueError, saying why, for a file that is not a signature pack can read."""
    try:
        resources = _statement(sig)["predicate"]["resources"]
        return {str(r["name"]): str(r["digest"]) for r in resources}
    except PackError as exc:
        raise ValueError(exc.message.split(": ", 1)[-1]) from None
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
        raise ValueError("not a signature pack can read (no statement of files and digests)") from None


def signer_hint(sig: Path) -> str | None:
    """The public key's id a key signature records (None for a certificate signature, an unreadable file or a hint
    that is not a sha256: the file may be anyone's)."""
    try:
        bundle = json.loads(_read(sig, MAX_SIGNATURE, str(sig), SignatureFailed))
        hint = bundle["verificationMaterial"]["publicKey"]["hint"]
    except (PackError, KeyError, TypeError, ValueError, RecursionError):
        return None
    return hint if isinstance(hint, str) and re.fullmatch("[0-9a-f]{64}", hint) else None


def _compare(folder: Path, signed: dict[str, str]) -> list[tuple[str, str]]:
    """The files of the folder that differ from the signed digests, named one by one."""
    from .build_report import sha256_file

    found: list[tuple[str, str]] = []
    present = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != SIGNATURE)
    for path in present:
        rel = path.relative_to(folder).as_posix()
        if rel not in signed:
            found.append((str(path), "not covered by the signature (added after signing)"))
        elif sha256_file(path) != signed[rel]:
            found.append((str(path), "changed since it was signed (its sha256 differs from the signed one)"))
    on_disk = {p.relative_to(folder).as_posix() for p in present}
    found += [(str(folder / name), "signed but missing") for name in sorted(set(signed) - on_disk)]
    return found


def coverage(folder: Path, recorded: dict[str, str], report_file: str, hash_files: bool) -> list[tuple[str, str]]:
    """(path, problem) for every way the folder's own signature fails to cover the build, without a key: its
    statement against the digests the report records (`recorded`, plus the report file's own digest) and, with
    `hash_files`, against every file of the folder (hashed again). Empty: the signature lists every file with the
    digest it has now; whether the right key made it is `verify_signature`'s question."""
    from .build_report import sha256_file

    sig = folder / SIGNATURE
    if sig.is_symlink() or not sig.is_file():
        return [(str(sig), "is not a plain file (pack follows no link in a build)")]
    try:
        signed = signed_digests(sig)
    except ValueError as exc:
        return [(str(sig), f"broken: {exc}")]
    found = _compare(folder, signed) if hash_files else []
    named = {path for path, _ in found}
    expected = {**recorded, report_file: sha256_file(folder / report_file)}
    for rel, digest in sorted(expected.items()):
        path = str(folder / rel)
        if path in named:
            continue
        if rel not in signed:
            found.append((path, "not covered by the signature (recorded after signing)"))
        elif signed[rel] != digest:
            found.append((path, "changed since it was signed (the digest the report records is not the signed one)"))
    if not hash_files:
        found += [(str(folder / rel), "signed but no longer in the build") for rel in sorted(set(signed) - set(expected))]
    records = {str(folder / report_file), str(folder / "provenance.json")}  # they change with any file: named last
    return sorted(found, key=lambda f: (f[0] in records, f[0]))


def _mismatches(folder: Path, sig: Path) -> list[tuple[str, str]]:
    """The files that differ from the signed statement, named one by one. Called once model-signing said `Signature
    mismatch`, which it says only after the signature itself verified: the statement read here is the signed one."""
    try:
        return _compare(folder, signed_digests(sig))
    except ValueError:
        return []


def verify_signature(
    folder: Path, signature: Path | None, public_key: str | Path | None, chain: Sequence[str | Path] = ()
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """(path, problem) for everything the signature does not vouch for, and what was checked. A missing, changed or
    added file, a signature made with another key, a tampered signature: each a finding (exit 3)."""
    config, summary = _verifier(public_key, chain)
    sig = signature or folder / SIGNATURE
    summary = {"signature": str(sig), **summary, "verified": False}
    if signature is not None and not signature.exists():
        raise UsageError(
            f"--signature {signature}: no such file", "pass the path of the signature (default: the build's model.sig)"
        )
    if signature is None and sig.is_symlink():  # inside the folder: pack follows no link in a build
        return [(str(sig), "is a symbolic link, not a signature pack wrote")], summary
    if not sig.is_file():
        return [(str(sig), "no signature (the build is not signed: pack sign BUILD --key KEY.pem)")], summary
    try:
        _read(sig, MAX_SIGNATURE, str(sig), SignatureFailed)
        config.set_hashing_config(_hashing()).verify(folder, sig)
    except PackError as exc:
        return [(str(sig), exc.message.split(": ", 1)[-1])], summary
    except Exception as exc:  # noqa: BLE001 - crafted signatures raise anything; mapped in errors.signing_library_error
        mismatches = _mismatches(folder, sig) if str(exc).startswith("Signature mismatch") else []
        if mismatches:
            return mismatches, summary
        return [(str(sig), signing_library_error(exc, str(sig), "verify").message.removeprefix(f"{sig}: "))], summary
    statement = _statement(sig)
    ignored = set(statement["predicate"]["serialization"].get("ignore_paths", [])) - {SIGNATURE}
    skipped = sorted(p for p in ignored if (folder / p).exists() or (folder / p).is_symlink())
    if skipped:  # a path the signer chose to leave out (model-signing's own CLI leaves out .git*) that is here now
        return [(str(sig), f"leaves files out of what it signs: {', '.join(skipped)}")], summary
    return [], {**summary, "verified": True, "files": len(_resources(statement))}


def build_signer(sign_key: str | None) -> tuple[Callable[[Path], object] | None, dict[str, Any]]:
    """For `pack build --sign-key`: the key read and checked now (exit 2 before any work), the step that signs the
    finished folder, and the dict that step fills with what it signed."""
    if not sign_key:
        return None, {}
    key = load_signing_key(sign_key)
    signed: dict[str, Any] = {}

    def sign(folder: Path) -> None:
        signed.update(sign_folder(folder, key))

    return sign, signed


__all__ = [
    "PASSWORD_ENV",
    "SigningKey",
    "build_signer",
    "coverage",
    "load_signing_key",
    "sign_folder",
    "signed_digests",
    "signer_hint",
    "verify_signature",
]
