"""torchscript: `model.pt` (TorchScript is deprecated upstream in favour of torch.export, and kept for TorchServe and
Triton's libtorch backend).

The trace is the default and is kept whenever it passes the gate at every validated shape. A tracer warning is a
reason to test harder, not to switch paths: when the trace turned a tensor into a Python bool (an `if` that may be
on tensor values, and keep one branch only), it must also match eager on inputs whose values are flipped (negated,
mirrored, padded), where such a branch goes the other way. `torch.jit.script` is tried only when the gate shows the
trace is wrong; its failure (OSError for missing source included) is a scripting failure, not a file error.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

from ..build.runners import torch_runner
from ..console import captured, extension_ops, on_purpose
from ..report.formats import FILES
from ..report.validate import first_failure
from . import ExportContext, Outcome
from .diagnose import explain, first_line

logger = logging.getLogger(__name__)

FILE = FILES["torchscript"]
EXTRA_FILE = "pack.json"
BRANCH_WARNING = "Python boolean"


def trace(module: Any, example: list[Any]) -> tuple[Any, list[str]]:
    """Trace the ExportModule; return the traced module and the tracer's warnings."""
    import warnings

    import torch

    # the tracer scripts what a model marks @torch.jit.script_if_tracing (torchvision's detection models)
    with captured(), on_purpose("torch.jit.trace", "torch.jit.script"), warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", category=torch.jit.TracerWarning)  # every one, to report it
        with torch.no_grad():
            traced = torch.jit.trace(module, tuple(example), strict=False, check_trace=False)  # type: ignore[no-untyped-call]  # torch.jit.trace is unannotated
    notes = sorted({str(w.message).splitlines()[0] for w in caught if issubclass(w.category, torch.jit.TracerWarning)})
    return traced, notes


def script(ctx: ExportContext) -> Any:
    """Script the user's model and trace the ExportModule around it: calls into the scripted model keep its control
    flow, and inputs and outputs stay those of every other format."""
    import torch

    from ..build.modelio import export_module

    with captured(), on_purpose("torch.jit.script"):
        scripted = torch.jit.script(ctx.model)
    traced, _ = trace(export_module(scripted, ctx.binding), ctx.example)
    return traced


def save(module: Any, path: Path, metadata: dict[str, Any]) -> None:
    """Serialise in memory, then write with Python I/O: a full disk raises OSError instead of aborting in C++."""
    import torch

    buffer = io.BytesIO()
    with captured(), on_purpose("torch.jit.save"):
        torch.jit.save(module, buffer, _extra_files={EXTRA_FILE: json.dumps(metadata, sort_keys=True)})
    path.write_bytes(buffer.getbuffer())


def load(path: Path, device: str) -> Any:
    import torch

    extension_ops()
    with captured(), on_purpose("torch.jit.load"):
        module = torch.jit.load(str(path), map_location=device)  # type: ignore[no-untyped-call]  # torch.jit.load is unannotated
    module.eval()
    return torch_runner(module, device)


def read_metadata(path: Path) -> dict[str, Any]:
    import torch

    extra = {EXTRA_FILE: ""}
    extension_ops()
    with captured(), on_purpose("torch.jit.load"):
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)  # type: ignore[no-untyped-call]  # torch.jit.load is unannotated
    metadata: dict[str, Any] = json.loads(extra[EXTRA_FILE] or "{}")
    return metadata


def _gate(ctx: ExportContext, module: Any, method: str, **info: Any) -> Outcome:
    path = ctx.folder / FILE
    save(module, path, ctx.metadata)
    runner = load(path, ctx.device)
    checks = ctx.check(runner)
    info = {"method": method, **info}
    outcome = Outcome.from_checks(FILE, checks, info, f"the TorchScript {method}")
    outcome.module, outcome.runner = module, runner
    return outcome


def _scripted(ctx: ExportContext, why: str) -> Outcome:
    logger.info(f"torchscript: {why[:200]}; trying torch.jit.script")
    try:
        module = script(ctx)
    except Exception as exc:
        cause, fix = explain(exc, "script")
        return Outcome(
            "failed",
            reason=f"{why}, and torch.jit.script failed: {cause}",
            hint=fix,
            info={"method": "script", "fallback_from_trace": why},
        )
    outcome = _gate(ctx, module, "script", fallback_from_trace=why)
    if outcome.status == "passed":
        outcome.warning = f"TorchScript: {why[:200]}; scripted instead"
    return outcome


def test_harder(ctx: ExportContext, outcome: Outcome, runner: Any, notes: list[str]) -> str | None:
    """For a gated trace that turned tensors into Python bools: None when it also matches eager on flipped values
    (the checks are added to the outcome), else why it is wrong."""
    if not any(BRANCH_WARNING in n for n in notes):
        return None
    extra = ctx.check_flipped(runner)
    if extra is None:  # the model cannot take flipped values: torch.export capturing it vouches for no value branches
        return (
            None
            if ctx.program is not None
            else (
                "the model may branch on tensor values (the trace converts tensors to "
                "Python bools) and cannot be tested on flipped values"
            )
        )
    outcome.checks.extend(extra)
    bad = first_failure(extra)
    return (
        None
        if bad is None
        else (
            f"the model branches on tensor values and the trace keeps one branch only (it differs "
            f"from eager at {bad.case}: {bad.reason[:120]})"
        )
    )


def export(ctx: ExportContext) -> Outcome:
    if ctx.torchscript == "script":
        return _scripted(ctx, "--torchscript script")
    try:
        traced, notes = trace(ctx.module, ctx.example)
    except Exception as exc:
        cause, fix = explain(exc, "trace")
        if ctx.torchscript == "trace":
            return Outcome(
                "failed", reason=f"torch.jit.trace failed: {cause}", hint="try --torchscript script", info={"method": "trace"}
            )
        return _scripted(ctx, f"torch.jit.trace failed: {first_line(exc)}")
    outcome = _gate(ctx, traced, "trace", tracer_warnings=notes)
    if outcome.status == "passed":
        wrong = test_harder(ctx, outcome, load(ctx.folder / FILE, ctx.device), notes)
        if wrong is None:
            if notes:
                outcome.info["tracer_warnings_checked"] = "the trace passed the gate at every validated shape" + (
                    " and on flipped values" if any(BRANCH_WARNING in n for n in notes) else ""
                )
            return outcome
        why = f"the trace is unsafe: {wrong}"
        if ctx.torchscript == "trace":
            return Outcome(
                "failed",
                reason=f"TorchScript {why}",
                hint="use --torchscript auto or script, which keep the control flow",
                info={"method": "trace", "tracer_warnings": notes},
            )
        scripted = _scripted(ctx, why)
        if scripted.status == "failed":
            scripted.hint = "make forward() scriptable, or remove the data-dependent branch (torch.where, torch.cond)"
        return scripted
    if ctx.torchscript == "trace":
        return outcome
    bad = first_failure(outcome.checks)  # the gate failed, so a check did
    reason = bad.reason if bad is not None else outcome.reason or ""
    return _scripted(ctx, f"the trace does not match eager ({reason[:160]})")
