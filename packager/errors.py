"""Typed errors and the exit codes they map to (documented in the README)."""

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug in pack: rerun with --debug and report it
EXIT_USAGE = 2  # bad input: unknown model, bad spec, unreadable weights, output folder not writable
EXIT_VALIDATION = 3  # an export does not match the eager model (parity gate)
EXIT_DEPLOY = 4  # deploy or smoke test failed; what was serving before is left serving
EXIT_ENVIRONMENT = 5  # a missing dependency or a server that cannot be started or reached
EXIT_INTERRUPTED = 130


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
