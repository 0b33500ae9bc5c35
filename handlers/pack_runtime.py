"""pack's serving runtime, the part every server shares: model loading, output flattening, generic tensor JSON and
batching. numpy only at import; onnxruntime or torch when a model of that format is loaded; never captum.

Shipped as a flat module beside the server's entry file: inside every .mar (TorchServe puts the unpacked archive on
sys.path) and in every Triton python-backend version folder pack writes (model.py puts its own folder first on
sys.path). The TorchServe handlers (pack_torchserve.py) and the Triton models (pack_triton_*.py) import it, so both
servers run the same code on the same numbers.
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from typing import TypeGuard  # Python 3.10+; the servers' Python may be older, and annotations are not evaluated

Runner = Callable[[list[np.ndarray]], list[np.ndarray]]
FORMATS = ("onnx", "torchscript", "pt2", "aoti")
# TorchScript is deprecated upstream (torch 2.9+: a FutureWarning on torch.jit.load); the servers load it on purpose.
# Its deprecation warning, and only it, is silenced around the load: pack's rule for deprecated APIs it uses on
# purpose (packager/console.py, ON_PURPOSE["torch.jit.load"]; a test holds the two equal).
TORCHSCRIPT_LOAD_DEPRECATION = (FutureWarning, r"`torch\.jit\.load` is deprecated", r"torch\.jit\.")


class RequestError(ValueError):
    """One request is malformed: answered with a client error and this message; the rest of the batch goes on."""


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


# ---------------------------------------------------------------- generic tensors


def is_tensor_request(doc: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(doc, dict) and isinstance(doc.get("inputs"), list)


def decode_tensors(doc: dict[str, Any], specs: list[dict[str, Any]]) -> list[np.ndarray]:
    """{"inputs": [{"name", "shape", "dtype", "data"}]} -> arrays in the model's input order, checked against specs.

    `data` is a (nested) list of numbers, or a base64 string of the raw little-endian bytes with "encoding": "base64".
    """
    given = doc["inputs"]
    if len(given) != len(specs):
        raise RequestError(f"expected {len(specs)} input(s) ({', '.join(s['name'] for s in specs)}), got {len(given)}")
    by_name = {item.get("name"): item for item in given if isinstance(item, dict)}
    arrays = []
    for position, spec in enumerate(specs):
        item = by_name.get(spec["name"], given[position])
        if not isinstance(item, dict) or "data" not in item:
            raise RequestError(f"input {spec['name']!r}: each input needs name, shape, dtype and data")
        dtype = np.dtype(spec["dtype"])
        if item.get("dtype") not in (None, spec["dtype"]):
            raise RequestError(f"input {spec['name']!r}: dtype {item['dtype']} given, the model takes {spec['dtype']}")
        try:
            if item.get("encoding") == "base64":
                arr = np.frombuffer(base64.b64decode(item["data"], validate=True), dtype=dtype.newbyteorder("<")).astype(dtype)
            else:
                arr = np.asarray(item["data"], dtype=dtype)
        except (ValueError, TypeError) as exc:
            raise RequestError(f"input {spec['name']!r}: data does not decode as {spec['dtype']}: {exc}") from None
        if "shape" in item:
            try:
                shape = tuple(int(d) for d in item["shape"])
                arr = arr.reshape(shape)
            except (ValueError, TypeError):
                raise RequestError(f"input {spec['name']!r}: {arr.size} values do not fill shape {item['shape']}") from None
        check_shape(arr, spec)
        arrays.append(np.ascontiguousarray(arr))
    return arrays


def check_shape(arr: np.ndarray, spec: dict[str, Any]) -> None:
    expected = spec["shape"]
    dynamic = set(spec.get("dynamic_axes", [0]))
    ok = arr.ndim == len(expected) and all(i in dynamic or arr.shape[i] == d for i, d in enumerate(expected))
    if not ok:
        want = ["N" if i in dynamic else d for i, d in enumerate(expected)]
        raise RequestError(f"input {spec['name']!r}: shape {list(arr.shape)} does not fit the model's {want}")


def encode_tensors(names: list[str], arrays: list[np.ndarray], encoding: str | None = None) -> dict[str, Any]:
    outputs = []
    for name, arr in zip(names, arrays):  # noqa: B905 - runs in the serving image's Python, which may predate 3.10 (no zip(strict=))
        item: dict[str, Any] = {"name": name, "shape": list(arr.shape), "dtype": str(arr.dtype)}
        if encoding == "base64":
            item["encoding"] = "base64"
            item["data"] = base64.b64encode(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()).decode(
                "ascii"
            )
        else:
            item["data"] = arr.tolist()
        outputs.append(item)
    return {"outputs": outputs}


def json_text(answer: Any) -> str:
    """`answer` as strict JSON: a NaN or an infinity (a model can answer one) becomes null, never the bare `NaN` /
    `Infinity` tokens that JSON parsers refuse."""
    import json

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


# ---------------------------------------------------------------- Open Inference Protocol (KServe v2) tensors

V2_TO_NUMPY = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}
NUMPY_TO_V2 = {v: k for k, v in V2_TO_NUMPY.items()}


def is_v2_input(item: Any) -> bool:
    """One tensor of an Open Inference Protocol v2 request: {"name", "shape", "datatype", "data"}."""
    return isinstance(item, dict) and "datatype" in item and "shape" in item and "name" in item


def is_v2_request(doc: Any) -> TypeGuard[dict[str, Any]]:
    """A v2 inference request body, {"inputs": [{"name", "shape", "datatype", "data"}]}; pack's own tensor JSON says
    "dtype" where v2 says "datatype"."""
    return is_tensor_request(doc) and bool(doc["inputs"]) and all(is_v2_input(i) for i in doc["inputs"])


def decode_v2(items: list[dict[str, Any]], specs: list[dict[str, Any]]) -> list[np.ndarray]:
    """v2 input tensors (flat or nested row-major `data`) -> arrays in the model's input order, checked against specs."""
    converted = []
    for item in items:
        datatype = str(item.get("datatype"))
        if datatype not in V2_TO_NUMPY:
            raise RequestError(
                f"input {item.get('name')!r}: datatype {datatype} is not supported (use one of {', '.join(V2_TO_NUMPY)})"
            )
        converted.append({"name": item["name"], "shape": item["shape"], "dtype": V2_TO_NUMPY[datatype], "data": item.get("data")})
    for item, spec in zip(converted, specs):  # noqa: B905 - runs in the serving image's Python, which may predate 3.10 (no zip(strict=))
        if item["dtype"] != spec["dtype"] and item["name"] == spec["name"]:
            raise RequestError(
                f"input {spec['name']!r}: datatype {NUMPY_TO_V2.get(item['dtype'], item['dtype'])} given, "
                f"the model takes {NUMPY_TO_V2.get(spec['dtype'], spec['dtype'])}"
            )
    return decode_tensors({"inputs": converted}, specs)


def encode_v2(names: list[str], arrays: list[np.ndarray], wanted: list[str] | None = None) -> list[dict[str, Any]]:
    """v2 output tensors (row-major flat `data`), all of them or the `wanted` names in their order."""
    by_name = dict(zip(names, arrays))  # noqa: B905 - runs in the serving image's Python, which may predate 3.10 (no zip(strict=))
    unknown = [n for n in wanted or [] if n not in by_name]
    if unknown:
        raise RequestError(f"output {unknown[0]!r} is not one of the model's outputs ({', '.join(names)})")
    outputs = []
    for name in wanted or names:
        arr = np.asarray(by_name[name])
        datatype = NUMPY_TO_V2.get(str(arr.dtype))
        if datatype is None:
            raise RequestError(f"output {name!r}: dtype {arr.dtype} has no v2 datatype")
        outputs.append({"name": name, "shape": list(arr.shape), "datatype": datatype, "data": arr.reshape(-1).tolist()})
    return outputs


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
