"""The commands that check and read what pack made, without changing it: `pack verify` (digests, archive structure,
provenance, signatures, optionally parity: exit 3 on a difference, 6 when nothing tied an artifact to a build) and
`pack inspect` (a summary of a build folder, .mar or Triton repository). Their work is in verify.py and inspect.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..console import emit_json, print_result, run
from .app import chain_option, common, main, public_key_option


@main.command("verify")
@click.argument("target", type=click.Path(exists=True))
@click.option("--parity", is_flag=True, help="Also re-run the sample inputs through every export and compare.")
@click.option(
    "--signature",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[PATH]",
    help="Check the build's OpenSSF model signature (default: its model.sig): every file signed, unchanged, none added.",
)
@public_key_option()
@chain_option("Trusted certificates (PEM) of a certificate signature (repeat per file).")
@common
def verify_cmd(
    target: str,
    parity: bool,
    signature: str | None,
    public_key: str | None,
    chain: tuple[str, ...],
    as_json: bool,
    debug: bool,
) -> None:
    """Check a build folder, .mar or Triton repository: digests, archive structure, provenance, the build's own
    signature, optionally parity and the signature with a key (exit 3 on any difference). A .mar or repository
    without its build is checked as far as it can be and exits 6: nothing tied it to a build's report."""

    def body(out: Any) -> None:
        from ..errors import NotVerified, ValidationFailed
        from .verify import SignatureCheck, verify

        check = None
        if signature is not None or public_key or chain:
            check = SignatureCheck(Path(signature) if signature else None, public_key, chain)
        result = verify(Path(target), parity, check)
        if as_json:
            emit_json(out, result)
        else:
            for f in result["findings"]:
                out.write(f"FAIL {f['path']}: {f['problem']}\n")
            out.write(_signature_line(result))
            verdict = "verified" if result["verified"] else "verification failed" if not result["passed"] else "NOT verified"
            what = result["kind"] if result["kind"] == "build" else f"{result['kind']}: {result['checked']}"
            out.write(f"{target}: {verdict} ({what})\n")
        if not result["passed"]:
            first = result["findings"][0]
            raise ValidationFailed(
                f"{len(result['findings'])} difference(s); first: {first['path']}: {first['problem']}",
                "rebuild or re-download the artifacts; do not ship this folder",
            )
        if not result["verified"]:
            raise NotVerified(
                f"{target}: not verified: {result['checked']}",
                "verify the build folder it came from (pack verify BUILD), whose report.json holds every digest",
            )

    run(debug, body)


def _signature_line(result: dict[str, Any]) -> str:
    """What the build's signature says: verified with the key, or (no key) whether it still lists every file."""
    checked = result.get("signature")
    if checked and checked.get("verified"):
        signer = f"key {checked['key_id'][:16]}" if checked.get("key_id") else "certificate chain"
        return f"signature: {checked['signature']} verified ({checked['files']} files, {signer})\n"
    state = result.get("signature_status") or {}
    if checked or state.get("state") in (None, "unsigned", "stale", "broken"):  # stale and broken are FAIL lines
        return ""
    if state["state"] == "covers" and result.get("signed"):
        return f"signed: {state['words']} (who signed it: check with --signature --public-key KEY.pub)\n"
    return f"{state['words']}\n" if state["state"] == "removed" else ""


@main.command("inspect")
@click.argument("target", type=click.Path(exists=True))
@common
def inspect_cmd(target: str, as_json: bool, debug: bool) -> None:
    """Summarise a build folder, .mar or Triton repository: manifest, config, I/O, versions."""

    def body(out: Any) -> None:
        from .inspect import inspect

        print_result(out, inspect(Path(target)), as_json)

    run(debug, body)
