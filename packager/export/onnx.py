"""ONNX export with the TorchScript-based exporter (`dynamo=False`), dynamic batch axis, checker and metadata.

Why not the dynamo exporter: on torch 2.14 it needs onnxscript and takes several times longer for the same graphs
(see the README), while the TorchScript-based exporter handles every built-in model and is what ultralytics uses.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

from ..errors import ValidationFailed
from ..registry import OutputSpec, TensorSpec


def _axes(names: list[str], axes: list[tuple[int, ...]]) -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {}
    for name, dims in zip(names, axes):
        if dims:
            out[name] = {d: ("batch" if d == 0 else f"{name}_dim{d}") for d in dims}
    return out


def export(
    model: Any,
    example: list[Any],
    inputs: list[TensorSpec],
    outputs: list[OutputSpec],
    path: Path,
    opset: int,
    metadata: dict[str, Any],
    slim: bool = False,
) -> dict[str, Any]:
    import onnx
    import torch

    input_names = [i.name for i in inputs]
    output_names = [o.name for o in outputs]
    dynamic = {**_axes(input_names, [i.dynamic_axes for i in inputs]), **_axes(output_names, [o.dynamic_axes for o in outputs])}
    buffer = io.BytesIO()  # serialised in memory; written below with Python I/O (a full disk is an OSError)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(
                model,
                tuple(example),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic,
                do_constant_folding=True,
            )
    proto = onnx.load_from_string(buffer.getvalue())
    if slim:
        try:
            import onnxslim
        except ImportError:
            raise ValidationFailed("--slim needs the onnxslim package", "pip install onnxslim, or build without --slim") from None
        proto = onnxslim.slim(proto)
    for key, value in sorted(metadata.items()):
        entry = proto.metadata_props.add()
        entry.key = f"pack.{key}"
        entry.value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return {"opset": opset, "exporter": "torch.onnx.export(dynamo=False)", "slim": slim}


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
