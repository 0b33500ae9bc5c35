"""One deploy for every server: prepare -> connect -> observe -> stage -> load -> smoke test -> commit, or roll back.

A target supplies its own steps as a `Steps` subclass (TorchServe: torchserve/deploy.py, Triton: triton/deploy.py);
`run` owns their order and the rules that hold whatever the server:

- a failure once the new version's files are staged puts this command's files back; once loading has begun it also
  undoes the server-side changes (the new version is unregistered or unloaded, the previous one reloaded), and the
  one-line error says what serves now (exit 4, or the failure's own code: 5 for a backend the server lacks);
- an HTTP failure inside a step becomes pack's error through packager/serve/http.py's one mapping (exit 4: the deploy
  failed and was rolled back); a server that died meanwhile is said so, with its log;
- deploys into one store run one at a time: `run` holds the store's server lock (`<store>/.servers/.lock`) from the
  server's launch to the end of the registration, so two deploys into a fresh store share one launched server;
- a deploy that succeeded on a server pack launched makes sure that server's watcher runs (it heals the models with
  no command run; `PACK_WATCH=0` at the server's launch turns it off);
- Ctrl-C: the files are put back; a server this command started is stopped; on a server that ran before, a
  half-registered new version is removed and the previous one restored; then the interrupt goes on (exit 130).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from ..errors import DeployFailed, EnvironmentProblem, PackError
from ..report.build_report import BuildReport
from ..report.store import StoreLock
from .http import HttpError, Unreachable, pack_error

logger = logging.getLogger(__name__)

RESTART = "`pack deploy` starts a new one"


class Steps:
    """The hooks of one server's deploy. Subclasses set `server` and implement what their server needs; `run` calls
    them. `doing` names the step under way for messages ("registering tiny v2")."""

    server = "the server"

    def __init__(self, build_dir: Path, report: BuildReport, opts: Any):
        self.build_dir, self.report, self.opts = Path(build_dir), report, opts
        self.name, self.version = report.name, report.version
        self.timeout: float = float(opts.timeout)
        self.launched = False  # this command started the server
        self.doing = f"deploying {self.name} v{self.version}"
        self.timings: dict[str, float] = {}
        self.stack = contextlib.ExitStack()  # what `run` closes at the end, whatever happened (locks, staging folders)

    # --- the steps, in order
    def prepare(self) -> None:
        """Offline work before any server is involved: settings, generated files, offline checks."""

    def connect(self) -> None:
        """Reach the server (--url) or start/reuse the local one; set `launched`. A server start that Ctrl-C cuts
        short leaves no server (packager/serve/local.py)."""
        raise NotImplementedError

    def observe(self) -> None:
        """Record what serves now (to restore it) and take the locks the install needs."""

    def stage(self) -> None:
        """Put the new version's files where the server reads them (recording what to undo)."""

    def load(self) -> None:
        """Register or load the new version beside the previous one, and wait until it is ready."""
        raise NotImplementedError

    def smoke(self) -> dict[str, Any]:
        """The smoke test document (`passed`, `reason` when not), through the gate's comparison."""
        raise NotImplementedError

    def commit(self) -> None:
        """Make the new version the one served (default version, recorded deployment) and drop the backups."""

    def result(self, smoke: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def watch(self) -> None:
        """After a deploy that succeeded: the watcher of a server pack launched runs (packager/serve/watcher.py)."""

    # --- undo
    def undo_files(self) -> None:
        """Put the files this command staged back as they were (idempotent)."""

    def undo_server(self, interrupted: bool) -> list[str]:
        """Remove the new version from the server and restore the previous one; returns what could not be undone.
        `interrupted`: after Ctrl-C (quiet, bounded waits)."""
        return []

    def stop_server(self) -> None:
        """Stop the server this command started."""

    def server_gone(self) -> bool:
        """The local server this command talks to has stopped (False when that cannot be told, e.g. --url)."""
        return False

    # --- messages
    def log_hint(self) -> str | None:
        return None

    def smoke_failure(self, smoke: dict[str, Any]) -> str:
        return (
            f"smoke test failed on {smoke.get('model') or self.name} v{self.version}: {smoke.get('reason') or 'no reason given'}"
        )

    def still_serving(self) -> str:
        """After a clean rollback: what serves now ("the previous tiny keeps serving")."""
        return ""


def run(steps: Steps) -> dict[str, Any]:
    """Deploy through `steps`; see the module docstring for the rules."""
    with steps.stack:
        steps.prepare()
        try:
            _serialize(steps)
            steps.connect()
            steps.observe()
            smoke = _install(steps)
            steps.watch()
        except KeyboardInterrupt:
            if steps.launched:
                steps.stop_server()
            raise
        except HttpError as exc:  # before anything was staged: reaching the server or reading what it serves
            raise pack_error(exc, steps.doing, steps.log_hint(), refused=EnvironmentProblem) from None
        return steps.result(smoke)


def _serialize(steps: Steps) -> None:
    """Wait (up to --timeout) for any other deploy into this store, then hold the store's server lock to the end."""
    store = getattr(steps.opts, "store", None)
    if store is None or getattr(steps.opts, "url", None):  # a server pack did not launch: nothing to serialize
        return
    try:
        steps.stack.enter_context(StoreLock(Path(store) / ".servers", wait=0))
        return
    except PackError:
        logger.info(f"another pack deploy into {store} is under way; waiting for it (up to {steps.timeout:.0f} s)")
    steps.stack.enter_context(StoreLock(Path(store) / ".servers", wait=steps.timeout))


def _install(steps: Steps) -> dict[str, Any]:
    loading = False
    try:
        steps.stage()
        loading = True
        steps.load()
        steps.doing = f"smoke-testing {steps.name} v{steps.version}"
        smoke = steps.smoke()
        if not smoke.get("passed"):
            raise DeployFailed(steps.smoke_failure(smoke), steps.log_hint())
        steps.commit()
        return smoke
    except KeyboardInterrupt:
        steps.undo_files()
        if loading and not steps.launched:  # a server that ran before: remove the half-registered version
            _undo_server(steps, interrupted=True)
        raise  # run() stops a server this command started
    except Exception as exc:
        raise _rolled_back(steps, exc, loading) from None


def _rolled_back(steps: Steps, exc: Exception, loading: bool) -> Exception:
    """Undo what the deploy did and return the error to raise: pack's one line, saying what serves now."""
    gone = loading and steps.server_gone()
    error = _as_pack_error(steps, exc, gone)
    steps.undo_files()
    if not loading:  # nothing reached the server
        return error
    if gone:  # nothing to undo on a server that is not there
        if not isinstance(error, PackError) or isinstance(exc, Unreachable):
            return error  # a bug stays a bug; an Unreachable already says the server stopped
        return type(error)(f"{error.message.rstrip('.')}; {steps.server} stopped meanwhile", _join(error.hint, RESTART))
    problems = _undo_server(steps, interrupted=False)
    if not isinstance(error, PackError):
        return error
    suffix = "; ".join(problems) if problems else steps.still_serving()
    return type(error)(error.message.rstrip(".") + (f"; {suffix}" if suffix else ""), error.hint)


def _as_pack_error(steps: Steps, exc: Exception, gone: bool) -> Exception:
    if not isinstance(exc, HttpError):
        return exc
    if gone and isinstance(exc, Unreachable):
        return DeployFailed(f"{steps.server} stopped while {steps.doing} ({exc.reason})", _join(steps.log_hint(), RESTART))
    return pack_error(exc, steps.doing, steps.log_hint(), unreachable=DeployFailed)


def _undo_server(steps: Steps, interrupted: bool) -> list[str]:
    try:
        return steps.undo_server(interrupted)
    except HttpError as exc:  # a hook's own undo call failed: say so, never hide the first failure
        return [f"could not undo on {steps.server}: {exc}"]


def server_lock(opts: Any) -> contextlib.AbstractContextManager[Any]:
    """The store's server lock for a command that changes a server pack launched (an undeploy; a deploy holds it
    through `run`), waited for up to --timeout: it never runs while a deploy or the watcher's repair is under way."""
    store = getattr(opts, "store", None)
    if store is None or getattr(opts, "url", None):
        return contextlib.nullcontext()
    return StoreLock(Path(store) / ".servers", wait=float(opts.timeout))


def _join(*parts: str | None) -> str | None:
    return "; ".join(p for p in parts if p) or None
