"""aoti: an AOTInductor package (`model.aoti.pt2`), compiled from the ExportedProgram for the build's device.

On the CPU inductor compiles C++ with the system compiler (g++); with --device cuda it compiles CUDA kernels. The
package runs with `torch._inductor.aoti_load_package` in Python, or in C++ (Triton's `torch_aoti` platform). Its call
spec (the pytree of inputs and outputs the package expects) is recorded for the Triton configuration.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..build.runners import torch_runner
from ..console import captured, extension_ops
from ..report.formats import FILES
from . import ExportContext, Outcome
from .diagnose import explain
from .pt2 import failed_capture

logger = logging.getLogger(__name__)

FILE = FILES["aoti"]


def compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


def export(ctx: ExportContext) -> Outcome:
    import torch

    if ctx.program is None:
        return failed_capture(ctx)
    if ctx.device == "cpu" and compiler() is None:
        return Outcome(
            "skipped",
            reason="AOTInductor needs a C++ compiler for the CPU and none was found (g++ or $CXX)",
            hint="install g++ (apt-get install g++), or leave aoti out of --formats",
        )
    started = time.perf_counter()
    path = ctx.folder / FILE
    logger.info("aoti: compiling the AOTInductor package (this takes a while)")
    try:
        with captured():
            torch._inductor.aoti_compile_and_package(ctx.program, package_path=str(path))
    except OSError:
        raise
    except Exception as exc:
        cause, fix = explain(exc, "aoti")
        path.unlink(missing_ok=True)
        return Outcome("failed", reason=f"AOTInductor compilation failed: {cause}", hint=fix)
    info = {
        "exporter": "torch._inductor.aoti_compile_and_package",
        "device": ctx.device,
        "call_spec": call_spec(path),
        "compile_seconds": round(time.perf_counter() - started, 3),
    }
    runner = load(path, ctx.device)
    outcome = Outcome.from_checks(FILE, ctx.check(runner), info, "the AOTInductor package")
    outcome.runner = runner
    return outcome


def call_spec(path: Path) -> list[str]:
    """The package's [inputs, outputs] pytree specs, as the runtime (and Triton's torch_aoti platform) reads them."""
    import torch

    with captured():
        compiled = torch._inductor.aoti_load_package(str(path))
    return [str(s) for s in compiled.loader.get_call_spec()]


def load(path: Path, device: str) -> Any:
    import torch

    extension_ops()
    with captured():
        compiled = torch._inductor.aoti_load_package(str(path))
    return torch_runner(compiled, device)
