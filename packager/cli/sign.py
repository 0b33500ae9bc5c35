"""`pack sign`: sign a verified build with OpenSSF Model Signing (packager/report/signing.py), and the signing step that
`pack build --sign-key` runs before its build is committed. Checking a signature is `pack verify --signature`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..console import emit_json, log, run
from .app import chain_option, common, main, store_option, version_option


def build_folder(ref: str, store: str, version: str | None) -> Path:
    """BUILD as the commands take it: a build folder (one holding report.json), or a model name in the store
    (`--version`, default the latest)."""
    from ..report.build_report import FILE
    from ..report.store import find_build

    path = Path(ref)
    if path.is_dir() and (path / FILE).is_file():
        if version is not None:
            from ..errors import UsageError

            raise UsageError("--version goes with a model name, not a build folder", f"drop --version or name the model of {ref}")
        return path
    return find_build(store, ref, version)


@main.command("sign")
@click.argument("build")
@version_option("Build version when BUILD is a model name (default: the latest).")
@store_option
@click.option(
    "--key",
    required=True,
    type=click.Path(dir_okay=False),
    help="EC private key (PEM: P-256, P-384 or P-521); an encrypted one takes its passphrase from PACK_SIGN_KEY_PASSWORD.",
)
@click.option(
    "--certificate", type=click.Path(dir_okay=False), help="The key's signing certificate (PEM): a certificate signature."
)
@chain_option("With --certificate: the certificates (PEM) that issued it, intermediates and CA, carried in the signature.")
@common
def sign_cmd(
    build: str,
    version: str | None,
    store: str,
    key: str,
    certificate: str | None,
    chain: tuple[str, ...],
    as_json: bool,
    debug: bool,
) -> None:
    """Sign BUILD (a build folder, or a model name in the store) with OpenSSF Model Signing, offline: model.sig in the
    build folder covers every other file (exports, samples, .mar, Triton repository, report.json, provenance.json).

    The build is verified against its report first; a build that does not match is not signed (exit 3).
    Check the signature with `pack verify BUILD --signature --public-key KEY.pub`."""

    def body(out: Any) -> None:
        from ..errors import ValidationFailed
        from ..report.signing import load_signing_key, sign_folder
        from ..report.store import StoreLock
        from .verify import check_build

        signer = load_signing_key(key, certificate, chain)  # exit 2 for a bad key before anything is read
        folder = build_folder(build, store, version)
        with StoreLock(folder.resolve().parent):  # the model's lock: no build or archive rewrites it meanwhile
            findings, report = check_build(folder)
            if findings or report is None:
                first = findings[0].line() if findings else f"{folder}: no report"
                raise ValidationFailed(
                    f"will not sign {folder}: it does not match its report ({first})",
                    f"see pack verify {folder}; rebuild it (pack build ... --force) and sign the new build",
                )
            log(f"signing {folder} ({len(report.sha256) + 1} files)")
            result = {"build": str(folder), "model": report.name, "version": report.version, **sign_folder(folder, signer)}
        if as_json:
            emit_json(out, result)
        else:
            out.write(
                f"signed {folder}: {result['signature']} ({result['files']} files, {result['method']} {result['key_id'][:16]})\n"
            )

    run(debug, body)
