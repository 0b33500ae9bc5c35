"""onnx: `model.onnx` from the exporter most likely to work, the other as the fallback; the gate decides.

Attempts, until one passes the gate, the one most likely to work first:
  * dynamo: torch.onnx.export(program, dynamo=True) when torch.export captured the program (upstream's default
    exporter since torch 2.9; needs onnxscript);
  * legacy: torch.onnx.export(dynamo=False) of the ExportModule, a trace; tried first when the TorchScript trace of
    the same module already passed the gate (the same tracer, so most likely to work, and several times faster);
    its file must also match eager on flipped values when the tracer saw tensors turned into Python bools;
  * legacy from the scripted TorchScript module, only when no trace- or export-based graph passed (it keeps `if`s).
The report records the exporter that shipped and why each other attempt was rejected. Every file gets pack's
metadata (`metadata_props`, keys `pack.*`), readable dynamic dimension names, and onnx.checker's full check.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..console import LEGACY_ONNX, captured, on_purpose
from ..report.formats import FILES
from ..report.validate import first_failure
from . import ExportContext, Outcome
from .diagnose import explain
from .torchscript import test_harder

logger = logging.getLogger(__name__)

FILE = FILES["onnx"]
LEGACY_OPSET = 17


def _input_axes(inputs: list[Any]) -> dict[str, dict[int, str]]:
    """Each input's dynamic axes by dimension name: axes of one name are one ONNX dimension."""
    return {spec.name: {a: spec.axis_name(a) for a in spec.dynamic_axes} for spec in inputs if spec.dynamic_axes}


def _output_axes(names: list[str], axes: list[tuple[int, ...]], batched: bool) -> dict[str, dict[int, str]]:
    """Axis 0 of a model whose every input has a batch axis is `batch`; any other (a detector's count) its own name."""
    return {
        name: {d: ("batch" if d == 0 and batched else f"{name}_dim{d}") for d in dims}
        for name, dims in zip(names, axes, strict=True)
        if dims
    }


def _dynamo(ctx: ExportContext) -> Any:
    import torch

    if ctx.program is None:
        raise RuntimeError(f"no ExportedProgram to export ({ctx.program_error or 'torch.export failed'})")
    with captured():
        program = torch.onnx.export(
            ctx.program,
            (),
            dynamo=True,
            verbose=False,
            opset_version=ctx.opset,
            input_names=[i.name for i in ctx.inputs],
            output_names=list(ctx.output_names),
        )
    if program is None:  # only the TorchScript-based exporter (dynamo=False) returns None
        raise RuntimeError("torch.onnx.export(dynamo=True) returned no ONNXProgram")
    return program.model_proto


def _legacy(ctx: ExportContext, module: Any) -> tuple[Any, list[str]]:
    import onnx
    import torch

    buffer = io.BytesIO()
    with captured(), on_purpose(*LEGACY_ONNX), warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", category=torch.jit.TracerWarning)  # every one, to report it
        with torch.no_grad():
            torch.onnx.export(
                module,
                tuple(ctx.example),
                buffer,  # type: ignore[arg-type]  # annotated as a path, but the TorchScript-based exporter writes file objects too
                dynamo=False,
                opset_version=ctx.opset or LEGACY_OPSET,
                input_names=[i.name for i in ctx.inputs],
                output_names=list(ctx.output_names),
                dynamic_axes={
                    **_input_axes(ctx.inputs),
                    **_output_axes(list(ctx.output_names), list(ctx.output_axes), _batched(ctx)),
                },
                do_constant_folding=True,
            )
    notes = sorted({str(w.message).splitlines()[0] for w in caught if issubclass(w.category, torch.jit.TracerWarning)})
    return onnx.load_from_string(buffer.getvalue()), notes


def _batched(ctx: ExportContext) -> bool:
    return all(spec.batch_axis is not None for spec in ctx.inputs)


def _readable_dims(proto: Any, ctx: ExportContext) -> None:
    """Name the dynamic dimensions after the inputs' dimension names (`batch`, `seq`, `input_ids_dim1`) instead of the
    exporter's symbols."""
    names: dict[str, str] = {}
    by_name = {spec.name: spec for spec in ctx.inputs}
    for value in proto.graph.input:  # the graph may have pruned an unused input
        spec = by_name.get(value.name)
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if spec is not None and dim.dim_param and dim.dim_param not in names:
                names[dim.dim_param] = spec.axis_name(axis) if axis in spec.dynamic_axes else f"{spec.name}_dim{axis}"
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


def _finish(proto: Any, ctx: ExportContext, path: Path) -> None:
    import onnx

    if ctx.slim:
        import onnxslim

        proto = onnxslim.slim(proto)
    _readable_dims(proto, ctx)
    del proto.metadata_props[:]
    for key, value in sorted(ctx.metadata.items()):
        entry = proto.metadata_props.add()
        entry.key = f"pack.{key}"
        entry.value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    path.write_bytes(proto.SerializeToString())  # Python I/O: a full disk is an OSError
    onnx.checker.check_model(str(path), full_check=True)


def _attempts(ctx: ExportContext) -> list[tuple[str, Any]]:
    """(exporter name, callable returning (proto, tracer notes)) in the order they are tried."""
    out: list[tuple[str, Any]] = [("dynamo", lambda: (_dynamo(ctx), []))]  # captures the program if not yet done
    ts = ctx.outcomes.get("torchscript")
    passed = ts if ts is not None and ts.status == "passed" else None
    if passed is not None and passed.info.get("method") == "trace":
        # the legacy exporter traces the module itself; a trace that already passed the gate saves it the work, but
        # carries no shapes (an exporter step that needs a tensor's rank fails on it): then it traces the model again
        out.insert(0, ("legacy", lambda: (_legacy(ctx, passed.module)[0], passed.info.get("tracer_warnings", []))))
        out.append(("legacy-retrace", lambda: _legacy(ctx, ctx.module)))
    else:
        out.append(("legacy", lambda: _legacy(ctx, ctx.module)))
    if passed is not None and passed.info.get("method") == "script":
        out.append(("legacy-from-script", lambda: _legacy(ctx, passed.module)))
    return out


def export(ctx: ExportContext) -> Outcome:
    if ctx.slim:
        try:
            import onnxslim  # noqa: F401
        except ImportError:
            return Outcome(
                "failed", reason="--slim needs the onnxslim package", hint="pip install onnxslim, or build without --slim"
            )
    path = ctx.folder / FILE
    rejected: list[dict[str, str]] = []
    attempts = _attempts(ctx)
    for position, (exporter, run) in enumerate(attempts):
        try:
            proto, notes = run()
        except Exception as exc:
            cause, fix = explain(exc, "onnx")
            rejected.append({"exporter": exporter, "reason": f"export failed: {cause}", "fix": fix})
            logger.info(f"onnx: the {exporter} exporter failed: {cause[:200]}")
            continue
        try:
            _finish(proto, ctx, path)
        except (ImportError, ValueError, RuntimeError) as exc:  # onnx.checker and onnxslim raise these
            rejected.append({"exporter": exporter, "reason": f"the file fails onnx.checker: {str(exc).splitlines()[0][:200]}"})
            continue
        opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        info = {"exporter": exporter, "opset": opset, "slim": ctx.slim}
        runner = load(path, ctx.device)
        outcome = Outcome.from_checks(FILE, ctx.check(runner), info, f"the {exporter} ONNX export")
        outcome.runner = runner
        wrong = test_harder(ctx, outcome, runner, notes) if outcome.status == "passed" else None
        if wrong is not None:
            rejected.append({"exporter": exporter, "reason": f"the trace is unsafe: {wrong}"})
            continue
        if outcome.status == "passed":
            outcome.info["rejected"] = rejected
            outcome.info["not_tried"] = [name for name, _ in attempts[position + 1 :]]
            if rejected:
                logger.info(
                    f"onnx: shipped the {exporter} exporter's file "
                    f"({'; '.join(r['exporter'] + ': ' + r['reason'][:120] for r in rejected)})"
                )
            return outcome
        rejected.append({"exporter": exporter, "reason": _failure(outcome)})
        logger.info(f"onnx: the {exporter} export does not match eager; trying the next exporter")
    path.unlink(missing_ok=True)
    reasons = "; ".join(f"{r['exporter']}: {r['reason']}" for r in rejected)
    return Outcome(
        "failed",
        reason=f"no ONNX exporter produced a file that passes ({reasons})",
        hint=_fixes(rejected),
        info={"rejected": rejected},
    )


def _fixes(rejected: list[dict[str, str]]) -> str:
    """Each exporter's own fix, named after it (a fix for the dynamo exporter's capture does not apply to the legacy
    one); an exporter whose file did not match eager has none of its own."""
    fixes = [f"{r['exporter']}: {r['fix']}" for r in rejected if r.get("fix")]
    return "; ".join(fixes) if fixes else "leave onnx out of --formats, or replace the part of the model that differs"


def _failure(outcome: Outcome) -> str:
    """Why a failed gate failed: its first failing check (an outcome of from_checks fails only on one)."""
    bad = first_failure(outcome.checks)
    return bad.reason if bad is not None else outcome.reason or ""


def providers(device: str) -> list[str]:
    import onnxruntime as ort

    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load(path: Path, device: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: a failed run raises with its message, which the gate reports
    with captured():  # ONNX Runtime's own log (graph warnings, coloured) goes to the build's captured output
        session = ort.InferenceSession(str(path), options, providers=providers(device))
    names = [i.name for i in session.get_inputs()]
    order = [i["name"] for i in read_metadata(path).get("inputs", [])]
    if not order or not set(names) <= set(order):  # a file pack did not write: inputs in file order
        order = names

    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:  # an input the exporter pruned as unused is not fed
        return list(session.run(None, {n: a for n, a in zip(order, arrays, strict=False) if n in names}))

    return run


def read_metadata(path: Path) -> dict[str, Any]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    out: dict[str, Any] = {}
    for prop in proto.metadata_props:
        if prop.key.startswith("pack."):
            try:
                out[prop.key[5:]] = json.loads(prop.value)
            except json.JSONDecodeError:
                out[prop.key[5:]] = prop.value
    return out
