"""Command plumbing shared by every command: one-line errors, exit codes, logs on stderr, JSON on stdout.

Every module logs through `logging` (its logger is `packager.<module>`) at three levels that mean something:
warnings (something the user should know: a failed optional format, a signature removed, a server that did not
stop) at WARNING, pack's decisions and progress at INFO, details at DEBUG. The CLI sends the `packager` logger to
stderr as `pack: <message>` (`pack: warning: ...`), at INFO by default, DEBUG with -v and WARNING with -q. Inside
`elapsed()` (a build) each line also says how many seconds into it it was written. Library use (no CLI) configures
nothing: only warnings reach stderr, through Python's default handler. Libraries' own chatter (exporters' progress
lines, C++ warnings, IR dumps) is kept off the terminal by `captured()`, and replayed with --debug.

`on_purpose(api, ...)` silences the deprecation warning of each named API, and nothing else, around a call that uses
it deliberately. TorchScript is deprecated upstream in favour of torch.export (torch 2.9+: FutureWarning on
torch.jit.trace/script/save/load); pack builds and loads it on purpose, for TorchServe and Triton's libtorch backend
and for TorchScript files users bring. The TorchScript-based ONNX exporter (`dynamo=False`) is deprecated too
(DeprecationWarning); pack tries it on purpose, beside the dynamo exporter, and the gate picks. A deprecation of
anything else is not silenced. handlers/pack_runtime.py names the same TorchScript load for the servers (it cannot
import pack).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import click

from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED, PackError

ROOT_LOGGER = "packager"
_STARTED: list[float] = []  # the start of each `elapsed()` block, innermost last


class _Lines(logging.Formatter):
    """`pack: [elapsed] message`; a warning says so (`pack: warning: ...`), a detail of -v is marked `debug:`."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"[{time.perf_counter() - _STARTED[-1]:5.1f}s] " if _STARTED else ""
        level = "warning: " if record.levelno >= logging.WARNING else "debug: " if record.levelno < logging.INFO else ""
        return f"pack: {prefix}{level}{record.getMessage()}"


def setup_logging(verbosity: int) -> None:
    """-q (verbosity < 0): warnings only; default: progress; -v: debug detail."""
    logger = logging.getLogger(ROOT_LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Lines())
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO)
    logger.propagate = False


@contextlib.contextmanager
def elapsed() -> Iterator[None]:
    _STARTED.append(time.perf_counter())
    try:
        yield
    finally:
        _STARTED.pop()


def log(message: str) -> None:
    """A progress line of the command itself."""
    logging.getLogger(f"{ROOT_LOGGER}.cli").info(message)


@contextlib.contextmanager
def quiet_stdout() -> Iterator[Any]:
    """Send everything written to stdout (by pack's dependencies, at the file-descriptor level too) to stderr.

    Yields a file object on the real stdout, so the command's own result is the only thing that reaches it.
    """
    old = sys.stdout
    try:
        on_fd1 = old.fileno() == 1
    except (AttributeError, OSError, ValueError):
        on_fd1 = False
    if not on_fd1:  # stdout is already a Python-level stream (captured): swap it alone
        sys.stdout = sys.stderr
        try:
            yield old
        finally:
            sys.stdout = old
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real = os.fdopen(saved, "w", closefd=False)
    sys.stdout = sys.stderr
    try:
        yield real
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout = old
        os.dup2(saved, 1)
        real.flush()
        os.close(saved)


def debugging() -> bool:
    return os.environ.get("PACK_DEBUG") == "1"


@contextlib.contextmanager
def captured() -> Iterator[None]:
    """Send file descriptors 1 and 2 (Python warnings included) to a temporary file while a noisy library runs (an
    exporter printing its graph, ONNX Runtime's log, a TorchScript load). With --debug (PACK_DEBUG=1) the text is
    replayed on stderr afterwards; otherwise it stays out of the terminal (a -v line says how much was kept out):
    pack reports what happened in one line of its own. The warning filters are left alone: where they make a warning
    an error (the test suite does for every deprecation), it is one."""
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no real stdout or stderr (embedded use): nothing to capture
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in enumerate(saved, start=1):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            if debugging():
                sys.stderr.write(text)
                sys.stderr.flush()
            elif text.strip():
                logging.getLogger(f"{ROOT_LOGGER}.console").debug(
                    f"{text.count(chr(10)) or 1} line(s) of the libraries' own output kept off the terminal (--debug shows them)"
                )


# api -> (category, the start of the message, the module the warning is attributed to): what torch 2.14 says
ON_PURPOSE: dict[str, tuple[type[Warning], str, str]] = {
    "torch.jit.trace": (FutureWarning, r"`torch\.jit\.trace(_method|_module)?` is deprecated", r"torch\.jit\."),
    "torch.jit.script": (FutureWarning, r"`torch\.jit\.script` is deprecated", r"torch\.jit\."),
    "torch.jit.save": (FutureWarning, r"`torch\.jit\.save` is deprecated", r"torch\.jit\."),
    "torch.jit.load": (FutureWarning, r"`torch\.jit\.load` is deprecated", r"torch\.jit\."),
    # attributed to the caller of torch.onnx.export
    "torch.onnx.export(dynamo=False)": (DeprecationWarning, r"You are using the legacy TorchScript-based ONNX export", ""),
    # the legacy exporter's own use of an internal function torch deprecates
    "torch.onnx.export(dynamo=False) internals": (
        DeprecationWarning,
        r"The feature will be removed",
        r"torch\.onnx\._internal\.torchscript_exporter\.",
    ),
}


@contextlib.contextmanager
def on_purpose(*apis: str) -> Iterator[None]:
    """Silence the deprecation warning of each API named (keys of ON_PURPOSE), and only those, inside the block."""
    with warnings.catch_warnings():
        for api in apis:
            category, message, module = ON_PURPOSE[api]
            warnings.filterwarnings("ignore", message=message, category=category, module=module)
        yield


# The legacy ONNX exporter traces the model, and the tracer scripts what a model marks @torch.jit.script_if_tracing
# (torchvision's detection models), as torch.jit.trace does (packager/export/torchscript.py)
LEGACY_ONNX = ("torch.onnx.export(dynamo=False)", "torch.onnx.export(dynamo=False) internals", "torch.jit.script")


def extension_ops() -> None:
    """Make the custom operators a model may call through a library (torchvision's `nms`, `roi_align`...) known to
    torch before a TorchScript or torch.export file is loaded: a file that uses them loads only in a process that
    imported the library, which the build's process had (the user's model imported it) and a deploy's has not."""
    with contextlib.suppress(ImportError):
        import torchvision  # noqa: F401


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt: every cleanup that handles Ctrl-C handles it too."""


@contextlib.contextmanager
def terminate_interrupts() -> Iterator[None]:
    """In the main thread, make SIGTERM interrupt the block like Ctrl-C (as `Terminated`), so whatever the block
    started or half-wrote is rolled back by the same cleanup; the previous handler is put back after. `run` wraps
    every command in it."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(debug: bool, body: Callable[[Any], None]) -> None:
    """Run a command body; turn failures into one line on stderr and the documented exit code."""
    from .report.store import os_error

    setup_logging(click.get_current_context().meta.get("pack.verbosity", 0) if click.get_current_context(silent=True) else 0)
    if debug:
        os.environ["PACK_DEBUG"] = "1"  # libraries' own output is replayed (`captured`)
    try:
        with terminate_interrupts(), quiet_stdout() as out:
            body(out)
    except PackError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {exc.line()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        signal_name = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        click.echo(f"error: {signal_name}; nothing half-written was kept, run the command again", err=True)
        sys.exit(EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED)
    except OSError as exc:
        if debug:
            traceback.print_exc()
        mapped = os_error(exc, "writing output")
        click.echo(f"error: {mapped.line()}", err=True)
        sys.exit(mapped.exit_code)
    except Exception as exc:  # a bug in pack
        if debug:
            traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        click.echo(
            f"error: internal error {type(exc).__name__}: {first} (rerun with --debug for the traceback and report it)", err=True
        )
        sys.exit(EXIT_INTERNAL)


def emit_json(out: Any, document: Any) -> None:
    out.write(json.dumps(document, indent=2, default=str) + "\n")
    out.flush()


def print_result(out: Any, result: dict[str, Any], as_json: bool) -> None:
    """JSON document with --json; otherwise the target's `summary` line(s), or key: value lines."""
    if as_json:
        emit_json(out, result)
        return
    summary = result.get("summary")
    if summary:
        out.write(summary.rstrip("\n") + "\n")
        return
    for key, value in result.items():
        out.write(f"{key}: {value}\n")


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)
