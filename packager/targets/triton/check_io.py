"""What a Triton entry's model files say, for the offline repository check (check.py): the inputs and outputs of an
ONNX graph, and the forward() arguments and outputs of a TorchScript module, an ExportedProgram or an AOTInductor
package, whose outputs come from one run on zero inputs of the shapes the config declares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import config as cfg


@dataclass
class TensorInfo:
    name: str
    dtype: str  # Triton TYPE_*
    shape: list[int]  # full shape, -1 for dynamic


def onnx_io(path: Path) -> tuple[list[TensorInfo], list[TensorInfo]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}

    def info(value: Any) -> TensorInfo:
        ttype = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in ttype.shape.dim]
        return TensorInfo(value.name, cfg.ONNX_TO_TRITON.get(ttype.elem_type, f"ONNX type {ttype.elem_type}"), dims)

    inputs = [info(v) for v in model.graph.input if v.name not in initializers]
    outputs = [info(v) for v in model.graph.output]
    return inputs, outputs


def _concrete_inputs(config: Any) -> list[np.ndarray] | None:
    """Zero inputs for one TorchScript run: warmup dims where given, config dims otherwise (-1 -> 1)."""
    warm = {}
    if config.model_warmup:
        warm = {k: list(v.dims) for k, v in config.model_warmup[0].inputs.items()}
    arrays = []
    for entry in config.input:
        dims = warm.get(entry.name) or [1 if d < 0 else d for d in entry.dims]
        shape = [1, *dims] if config.max_batch_size > 0 else dims
        dtype = cfg.TRITON_TO_NUMPY.get(cfg.dtype_name(entry.data_type))
        if dtype is None or dtype == "object":
            return None
        arrays.append(np.zeros(shape, dtype=dtype))
    return arrays


def _run_failure(exc: Exception) -> str:
    """Why one run on zero inputs failed: the exception's type and the first line of its message."""
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"


def torchscript_io(path: Path, config: Any) -> tuple[list[str], list[TensorInfo] | None, str | None]:
    """(forward argument names, outputs of one run on zero inputs or None, why the run failed)."""
    import warnings

    import torch

    from ...console import extension_ops

    extension_ops()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]  # torch.jit.load is unannotated
    args = [a.name for a in module.forward.schema.arguments][1:]
    arrays = _concrete_inputs(config)
    if arrays is None:
        return args, None, "inputs of string type cannot be synthesised"
    try:
        with torch.inference_mode():
            out = module(*[torch.from_numpy(a) for a in arrays])
    except Exception as exc:  # noqa: BLE001 - reported as a problem
        return args, None, _run_failure(exc)
    flat: list[Any] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        else:
            flat.append(v)

    walk(out)
    outputs = []
    for i, t in enumerate(flat):
        dtype = cfg.NUMPY_TO_TRITON.get(str(t.detach().numpy().dtype) if hasattr(t, "detach") else "object", "TYPE_INVALID")
        outputs.append(TensorInfo(f"#{i}", dtype, list(t.shape)))
    return args, outputs, None


def program_io(path: Path, config: Any, fmt: str) -> tuple[int, list[TensorInfo] | None, str | None]:
    """(input count from the file's call spec, outputs of one run on zero inputs or None, why the run failed) for an
    ExportedProgram (pt2) or an AOTInductor package (aoti)."""
    import torch
    from torch.utils import _pytree

    from ...console import captured, extension_ops

    extension_ops()
    module: Any  # an AOTInductor runner or the ExportedProgram's GraphModule: both are called like the model
    with captured():
        if fmt == "aoti":
            module = torch._inductor.aoti_load_package(str(path))
            count = _pytree.treespec_loads(module.loader.get_call_spec()[0]).num_leaves
        else:
            module = torch.export.load(str(path)).module()
            count = len([n for n in module.graph.nodes if n.op == "placeholder"])
    arrays = _concrete_inputs(config)
    if arrays is None:
        return count, None, "inputs of string type cannot be synthesised"
    try:
        with captured(), torch.inference_mode():
            out = module(*[torch.from_numpy(a) for a in arrays])
    except Exception as exc:  # noqa: BLE001 - reported as a problem
        return count, None, _run_failure(exc)
    out = out if isinstance(out, (list, tuple)) else [out]
    return (
        count,
        [
            TensorInfo(f"#{i}", cfg.NUMPY_TO_TRITON.get(str(t.detach().numpy().dtype), "TYPE_INVALID"), list(t.shape))
            for i, t in enumerate(out)
        ],
        None,
    )
