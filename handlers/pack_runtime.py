"""pack's serving runtime, the part every server shares: model loading, output flattening, strict JSON answers,
client errors (RequestError) and batching. numpy only at import; onnxruntime or torch when a model of that format is
loaded; never captum. A request's decoding and bounds are pack_requests.py's (the handler servers').

Shipped as a flat module beside the server's entry file: inside every .mar (TorchServe puts the unpacked archive on
sys.path) and in every Triton python-backend version folder pack writes (model.py puts its own folder first on
sys.path). The TorchServe handlers (pack_torchserve.py) and the Triton models (pack_triton_*.py) import it, so both
servers run the same code on the same numbers.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Runner = Callable[[list[np.ndarray]], list[np.ndarray]]
FORMATS = ("onnx", "torchscript", "pt2", "aoti")
# TorchScript is deprecated upstream (torch 2.9+: a FutureWarning on torch.jit.load); the servers load it on purpose.
# Its deprecation warning, and only it, is silenced around the load: pack's rule for deprecated APIs it uses on
# purpose (packager/console.py, ON_PURPOSE["torch.jit.load"]; a test holds the two equal).
TORCHSCRIPT_LOAD_DEPRECATION = (FutureWarning, r"`torch\.jit\.load` is deprecated", r"torch\.jit\.")


class RequestError(ValueError):
    """One request is malformed: answered with a client error and this message; the rest of the batch goes on."""


OBJECT_REPR = re.compile(r" ?<[\w.]+ object at 0x[0-9a-fA-F]+>")


def without_reprs(message: str) -> str:
    """`message` without Python's object reprs (`<_io.BytesIO object at 0x7f...>`): an address tells a client nothing."""
    return OBJECT_REPR.sub("", message).strip()


# ---------------------------------------------------------------- models


class Model:
    """A loaded model: call it with a list of input arrays; `placement` says where it runs (see `placement`)."""

    def __init__(self, run: Runner, placement: dict[str, Any]):
        self.run = run
        self.placement = placement

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self.run(arrays)


CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


def gpu_index(device: str | None) -> int | None:
    """The GPU a server gave the worker ("cuda:1" -> 1, "cuda" -> 0), or None for "cpu" / no device."""
    if not device or not str(device).startswith("cuda"):
        return None
    return int(str(device).partition(":")[2] or 0)


def placement(fmt: str, gpu: int | None) -> dict[str, Any]:
    """Where a worker runs its model, decided in this one place for every server: on GPU `gpu` when the server gave
    the worker one (TorchServe's gpu_id, Triton's KIND_GPU instance, the FastAPI app's own choice) and the runtime can
    use it (onnxruntime's CUDAExecutionProvider, with the CPU provider as its fallback; torch with CUDA), else on the
    CPU, with the reason. {"device", "provider", "providers" (onnxruntime's list), "reason" when on the CPU}."""
    provider = CPU_PROVIDER if fmt == "onnx" else "torch (cpu)"
    cpu: dict[str, Any] = {"device": "cpu", "provider": provider, "providers": [CPU_PROVIDER]}
    if gpu is None:
        return {**cpu, "reason": "the worker was given no GPU"}
    device = f"cuda:{gpu}"
    if fmt == "onnx":
        import onnxruntime as ort

        if CUDA_PROVIDER in ort.get_available_providers():
            return {"device": device, "provider": CUDA_PROVIDER, "providers": [(CUDA_PROVIDER, {"device_id": gpu}), CPU_PROVIDER]}
        return {**cpu, "reason": f"onnxruntime {ort.__version__} has no {CUDA_PROVIDER} (install onnxruntime-gpu)"}
    import torch

    if torch.cuda.is_available():
        return {"device": device, "provider": "torch (cuda)", "providers": [CPU_PROVIDER]}
    return {**cpu, "reason": f"torch {torch.__version__} cannot use CUDA here"}


def load_model(
    path: str,
    fmt: str,
    device: str = "cpu",
    threads: int = 0,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> Model:
    """A callable: list of input arrays (batch first, in the build's input order) -> list of output arrays, for every
    format pack builds: model.onnx (onnxruntime), model.pt (TorchScript), model.pt2 (torch.export) or model.aoti.pt2
    (AOTInductor). ONNX inputs are fed by name (`input_names`, else the graph's own order) and outputs returned in
    `output_names` order when given; the torch formats take inputs positionally and return their outputs flattened.
    `device` is what the server gave the worker ("cpu", "cuda:N"); `placement` decides what is used."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown model format {fmt!r} (pack builds {', '.join(FORMATS)})")
    place = placement(fmt, gpu_index(device))
    if fmt == "onnx":
        return _onnx_runner(path, place, threads, input_names, output_names)
    import torch

    try:  # a model calling torchvision's operators (nms, roi_align) loads only once torchvision registered them
        import torchvision  # noqa: F401
    except ImportError:
        pass
    if threads:
        torch.set_num_threads(threads)
    target = place["device"]
    if fmt == "torchscript":
        category, message, where = TORCHSCRIPT_LOAD_DEPRECATION
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=message, category=category, module=where)
            module = torch.jit.load(path, map_location=target).eval()
    elif fmt == "pt2":
        module = torch.export.load(path).module().to(target)
    else:
        module = torch._inductor.aoti_load_package(path)

    def run_torch(arrays: list[np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            out = module(*[torch.from_numpy(np.ascontiguousarray(a)).to(target) for a in arrays])
        return [t.detach().cpu().numpy() for t in flatten(out)]

    return Model(run_torch, place)


def _onnx_runner(
    path: str, place: dict[str, Any], threads: int, input_names: Sequence[str] | None, output_names: Sequence[str] | None
) -> Model:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=place["providers"])
    used = session.get_providers()[0]  # a CUDA provider that failed to start leaves the CPU one first
    if used != place["provider"]:
        place = {**place, "device": "cpu", "provider": used, "reason": f"onnxruntime could not start {place['provider']}"}
    graph_inputs = [i.name for i in session.get_inputs()]
    graph_outputs = [o.name for o in session.get_outputs()]
    order = list(input_names or graph_inputs)
    wanted = list(output_names or graph_outputs)
    picks = [graph_outputs.index(n) if n in graph_outputs else i for i, n in enumerate(wanted)]

    def run_onnx(arrays: list[np.ndarray]) -> list[np.ndarray]:
        results = session.run(None, {n: a for n, a in zip(order, arrays) if n in graph_inputs})  # noqa: B905 - runs in the serving image's Python, which may predate 3.10 (no zip(strict=))
        return [np.asarray(results[i]) for i in picks]

    return Model(run_onnx, place)


def flatten(out: Any) -> list[Any]:
    """A model's outputs as one flat list in order: dict values, tuple and list elements, nested ones too."""
    if isinstance(out, dict):
        return [t for v in out.values() for t in flatten(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in flatten(v)]
    return [out]


def json_text(answer: Any) -> str:
    """`answer` as strict JSON: a NaN or an infinity (a model can answer one) becomes null, never the bare `NaN` /
    `Infinity` tokens that JSON parsers refuse."""
    try:
        return json.dumps(answer, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(finite_or_null(answer), separators=(",", ":"), allow_nan=False)


def finite_or_null(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (dicts, lists and tuples walked)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


# ---------------------------------------------------------------- batching


def run_batched(model: Runner, items: list[list[np.ndarray]], batchable: bool, isolate: bool = False) -> list[Any]:
    """Run every request's inputs, concatenated along axis 0 when their other axes agree (one model call per group).

    With `isolate`, a group whose call fails runs again request by request, and a request that still fails gets its
    exception in its place of the answer list (the others are answered); without it the exception propagates."""
    results: list[Any] = [None] * len(items)
    groups: dict[tuple, list[int]] = {}
    for index, arrays in enumerate(items):
        key = tuple((a.shape[1:], a.dtype.str) for a in arrays) if batchable else (index,)
        groups.setdefault(key, []).append(index)
    for members in groups.values():
        if len(members) > 1:
            try:
                stacked = [np.concatenate([items[m][k] for m in members], axis=0) for k in range(len(items[members[0]]))]
                outputs = model(stacked)
                start = 0
                for m in members:
                    n = items[m][0].shape[0]
                    results[m] = [o[start : start + n] for o in outputs]
                    start += n
                continue
            except Exception:
                if not isolate:
                    raise
        for m in members:
            try:
                results[m] = model(items[m])
            except Exception as exc:
                if not isolate:
                    raise
                results[m] = exc
    return results
