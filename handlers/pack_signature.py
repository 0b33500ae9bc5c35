"""The signature check the serving code runs before it loads a model: `check(model_dir, public_key_path)` (every file
of a folder) and `check_files(signature, public_key_path, {staged path: signed name})` (the files a server loads).

It verifies the build's OpenSSF Model Signing signature (`model.sig`, a Sigstore bundle holding a DSSE envelope over an
in-toto statement of every file's sha256) with the signer's EC public key, then hashes exactly the staged files in
`model_dir` that the server is about to load and compares each with the digest the verified statement lists for it.
A staged copy is checked byte for byte, not the build folder. Imports nothing of pack (it runs inside each server);
where the server's Python lacks `cryptography` the check fails closed (not verified, with the reason).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIGNATURE = "model.sig"
MAX_SIGNATURE = 16 * 1024 * 1024
_CURVE_HASH = {256: "SHA256", 384: "SHA384", 521: "SHA512"}


@dataclass(frozen=True)
class Verdict:
    """Whether the staged files verified; `reason` names what failed (empty when verified)."""

    verified: bool
    reason: str = ""


def _pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _verify_envelope(bundle: dict[str, Any], public_key_pem: bytes) -> bytes:
    """The statement's bytes once the envelope's signature verifies with the key; ValueError saying why otherwise."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:
        raise ValueError("this server's Python lacks the cryptography package, so no signature can be checked") from None
    key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.key_size not in _CURVE_HASH:
        raise ValueError("the public key is not a P-256, P-384 or P-521 EC key")
    envelope = bundle["dsseEnvelope"]
    payload = base64.b64decode(envelope["payload"])
    algorithm = getattr(hashes, _CURVE_HASH[key.curve.key_size])()
    for entry in envelope.get("signatures", []):
        try:
            key.verify(base64.b64decode(entry["sig"]), _pae(envelope["payloadType"], payload), ec.ECDSA(algorithm))
            return payload
        except InvalidSignature:
            continue
    raise ValueError("the signature does not verify with the public key (another signer, or a changed manifest)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _signed(sig: Path, public_key_path: str | Path) -> dict[str, str]:
    """{signed file name: sha256} of the statement in `sig`, once its envelope verifies with the key (ValueError,
    OSError or a parse error saying why not)."""
    if not sig.is_file():
        raise ValueError(f"no signature at {sig}")
    if sig.stat().st_size > MAX_SIGNATURE:
        raise ValueError(f"{sig} is larger than any signature")
    bundle = json.loads(sig.read_bytes())
    statement = json.loads(_verify_envelope(bundle, Path(public_key_path).read_bytes()))
    return {str(r["name"]): str(r["digest"]) for r in statement["predicate"]["resources"]}


def _verdict(run: Any) -> Verdict:
    try:
        return run()
    except ValueError as exc:
        return Verdict(False, str(exc))
    except (OSError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        return Verdict(False, f"the signature could not be read ({type(exc).__name__}: {exc})")


def check(model_dir: str | Path, public_key_path: str | Path, signature: str | Path | None = None) -> Verdict:
    """Verify the signature (default `model_dir/model.sig`) and every staged file of `model_dir` against it.
    Every file under `model_dir` but the signature must be listed with the same sha256; never raises."""
    folder = Path(model_dir)
    sig = Path(signature) if signature is not None else folder / SIGNATURE

    def run() -> Verdict:
        signed = _signed(sig, public_key_path)
        staged = sorted(p for p in folder.rglob("*") if p.is_file() and p.resolve() != sig.resolve())
        if not staged:
            return Verdict(False, f"{folder} holds no file to check")
        return _compare(signed, {p: p.relative_to(folder).as_posix() for p in staged})

    return _verdict(run)


def check_files(signature: str | Path, public_key_path: str | Path, files: dict[str, str]) -> Verdict:
    """Verify the signature, then each staged file `files` names ({path on this server: its name in the signed
    build}) against the digest the signature lists for that name: the bytes a server is about to load, whatever it
    calls them. Never raises."""
    if not files:
        return Verdict(False, "no file to check was named")
    return _verdict(lambda: _compare(_signed(Path(signature), public_key_path), {Path(p): n for p, n in files.items()}))


def _compare(signed: dict[str, str], staged: dict[Path, str]) -> Verdict:
    for path, name in staged.items():
        if name not in signed:
            return Verdict(False, f"{name} is not in the signed manifest")
        if _sha256(path) != signed[name]:
            return Verdict(False, f"{name} differs from the signed bytes (digest mismatch)")
    return Verdict(True)


def refusal(folder: str | Path, model_file: str | Path, signature: dict[str, str] | None) -> str:
    """Why `model_file` must not be served ('' when it may). `signature` (pack deploy --require-signature): the
    build's signature `file` and the `public_key` beside the model in `folder`, and the model file's `signed_name` in
    the signed build; None: no check was asked for."""
    if not signature:
        return ""
    verdict = check_files(
        Path(folder) / str(signature.get("file", SIGNATURE)),
        Path(folder) / str(signature.get("public_key", "")),
        {str(model_file): str(signature.get("signed_name", ""))},
    )
    return "" if verdict.verified else f"refused to serve: the signature check failed: {verdict.reason}"
