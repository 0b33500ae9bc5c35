"""Keep exporters' own chatter (progress lines, C++ warnings, IR dumps) off the user's terminal, and name the
deprecated APIs pack uses on purpose.

`captured()` sends file descriptor 2 (Python warnings included) to a temporary file while an exporter runs. With
--debug (the CLI sets PACK_DEBUG=1) the text is replayed on stderr afterwards; otherwise it is dropped: pack reports
what happened in one line of its own. It leaves the warning filters alone: where they make a warning an error (the
test suite does for every deprecation), it is one.

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
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator


def debugging() -> bool:
    return os.environ.get("PACK_DEBUG") == "1"


@contextlib.contextmanager
def captured() -> Iterator[None]:
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (embedded use): only silence Python warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if debugging():
                sink.seek(0)
                sys.stderr.write(sink.read().decode("utf-8", "replace"))
                sys.stderr.flush()


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

__all__ = ["LEGACY_ONNX", "ON_PURPOSE", "captured", "debugging", "on_purpose"]
