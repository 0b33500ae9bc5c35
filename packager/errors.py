"""Typed errors and the exit codes they map to (documented in the README)."""

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug in pack: rerun with --debug and report it
EXIT_USAGE = 2  # bad input: unknown model, bad spec, unreadable weights, output folder not writable
EXIT_VALIDATION = 3  # an export does not match the eager model (parity gate)
EXIT_DEPLOY = 4  # deploy or smoke test failed; what was serving before is left serving
EXIT_ENVIRONMENT = 5  # a missing dependency or a server that cannot be started or reached
EXIT_UNVERIFIED = 6  # `pack verify` checked only what it could (a .mar or repository without its build's report)
EXIT_UNHEALTHY = 7  # `pack status`: a served model is unhealthy or was not repaired
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT): what the command started or half-wrote was rolled back
EXIT_TERMINATED = 143  # SIGTERM (timeout, a CI cancel, systemd): the same rollback as Ctrl-C


class PackError(Exception):
    """A failure the user can act on: one readable line, a non-zero exit code."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def line(self) -> str:
        """The one line the user sees: what went wrong, then what to do."""
        if not self.hint:
            return self.message
        return f"{self.message.rstrip('.')}; {self.hint}"


class UsageError(PackError):
    exit_code = EXIT_USAGE


class ValidationFailed(PackError):
    exit_code = EXIT_VALIDATION


class DeployFailed(PackError):
    exit_code = EXIT_DEPLOY


class EnvironmentProblem(PackError):
    exit_code = EXIT_ENVIRONMENT


class NotVerified(PackError):
    """`pack verify` found nothing wrong but could verify nothing against a build's report (a stand-alone .mar or
    Triton repository): a code of its own, so that a release job cannot take it for a verified build."""

    exit_code = EXIT_UNVERIFIED


class Unhealthy(PackError):
    """`pack status` reported its whole document, and a served model in it is unhealthy (or `--repair` did not repair
    it): a code of its own, so that a cron job or a CI gate can tell."""

    exit_code = EXIT_UNHEALTHY


class SignatureFailed(ValidationFailed):
    """A signature that does not verify: a wrong key, a tampered signature, a changed, added or missing file."""


def signing_library_error(exc: BaseException, subject: str, stage: str) -> PackError:
    """The one mapping of the signing libraries' exceptions (model-signing, cryptography and pyOpenSSL raise plain
    ValueError, TypeError, KeyError and their own types) to pack's errors, by the stage they came from:
    `key` (a key or certificate being loaded): bad input, exit 2, whose message names only the exception's type, so
    no byte of a key can reach a log; `sign`: the folder could not be signed, exit 3; `verify` (a signature being
    checked, crafted or not): a failed check, exit 3, naming what the library found (files and digests)."""
    kind = type(exc).__name__
    if stage == "key":
        return UsageError(f"{subject} cannot be used ({kind})", "pass a PEM file of the expected kind")
    first = (str(exc).strip().splitlines() or [""])[0][:300] or kind
    if stage == "sign":
        return ValidationFailed(f"cannot sign {subject}: {first}", "check it with pack verify, then sign again")
    return SignatureFailed(
        f"{subject}: does not verify: {first}",
        "do not ship this folder; check the public key or certificate chain, or re-sign a verified build",
    )
