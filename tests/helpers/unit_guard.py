"""The unit tier's guard (installed by tests/unit/conftest.py): while it is on, starting a `pack` subprocess, an
interpreter, a shell or a server, or exporting a model, raises "move it to tests/integration" and is remembered, so
that code which catches the error (an exporter's fallback, a command's error handling) cannot turn it into a pass.

Processes: a Python audit hook sees every process this interpreter starts (libraries may still run their own
helpers, such as ctypes' `ldconfig -p`). Exports: torch.jit.trace/script, torch.onnx.export, torch.export.export and
AOTInductor are wrapped where torch defines them, the moment those modules are imported (an import hook: a run that
never imports torch pays nothing); off the guard the wrappers call straight through."""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

DENIED = {"bash", "sh", "java", "torchserve", "tritonserver", "kubectl", "torch-model-archiver"}
EXPORTERS = {  # where torch defines each way of exporting a model
    "torch.jit": ("trace", "trace_module", "script"),
    "torch.onnx": ("export", "dynamo_export"),
    "torch.export": ("export",),
    "torch._inductor": ("aoti_compile_and_package", "aot_compile"),
}
MOVE = "move it to tests/integration"

state: dict[str, bool] = {"on": False}
seen: list[str] = []  # what the guard refused since the current test began
_wrapped: set[Callable[..., Any]] = set()  # the exporters wrapped so far


def refuse(what: str) -> None:
    seen.append(what)
    raise RuntimeError(f"{what}; {MOVE}")


def take_refusals() -> str | None:
    """The first thing refused since the last call (None: nothing), forgetting them all."""
    first = seen[0] if seen else None
    seen.clear()
    return first


def fail_on_refusals() -> None:
    """Fail the current test if the guard refused anything since the last check (caught or not)."""
    import pytest

    what = take_refusals()
    if what is not None:
        pytest.fail(f"{what}; {MOVE}", pytrace=False)


@contextmanager
def refusal_expected() -> Iterator[None]:
    """For the tests of the guard itself: the block must be refused (raised or caught on the way), and the refusal is
    not held against the test."""
    try:
        yield
    except Exception as exc:
        if MOVE not in str(exc):
            raise
    if take_refusals() is None:
        raise AssertionError("the unit tier's guard let it through")


def _program(args: tuple[Any, ...]) -> str:
    executable, argv = args[0], args[1]
    if executable:
        return os.fsdecode(executable)
    if isinstance(argv, (str, bytes)):
        return os.fsdecode(argv).split()[0] if argv.strip() else ""
    return os.fsdecode(argv[0]) if argv else ""


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not state["on"]:
        return
    if event == "os.system":
        refuse(f"a unit test ran os.system({args[0]!r})")
    if event == "subprocess.Popen":
        program = _program(args)
        name = os.path.basename(program)
        if name in DENIED or name.startswith("python") or os.path.realpath(program) == os.path.realpath(sys.executable):
            refuse(f"a unit test started {args[1]!r}")


def _guarded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if state["on"]:
            refuse(f"a unit test exported a model ({name})")
        return function(*args, **kwargs)

    _wrapped.add(guarded)
    return guarded


def _wrap_exporters(module: ModuleType) -> None:
    for attr in EXPORTERS.get(module.__name__, ()):
        function = getattr(module, attr, None)
        if callable(function) and function not in _wrapped:
            setattr(module, attr, _guarded(f"{module.__name__}.{attr}", function))


class _ThenWrap(importlib.abc.Loader):
    """Runs a module's own loader, then wraps its exporters; the module keeps its own loader."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.inner
        if module.__spec__ is not None:
            module.__spec__.loader = self.inner
        self.inner.exec_module(module)
        _wrap_exporters(module)


class _ExporterImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if name not in EXPORTERS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenWrap(spec.loader)
        return spec


def install() -> None:
    """Once per process: the audit hook, the exporters already imported wrapped, the import hook for the others."""
    if any(isinstance(finder, _ExporterImports) for finder in sys.meta_path):
        return
    sys.addaudithook(_audit)
    for name in EXPORTERS:
        if name in sys.modules:
            _wrap_exporters(sys.modules[name])
    sys.meta_path.insert(0, _ExporterImports())
