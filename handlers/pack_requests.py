"""pack's serving runtime, the request part every handler server shares (TorchServe's handlers, pack's FastAPI app):
generic tensor JSON, Open Inference Protocol v2 tensors, and the bounds of one request: its body size
(MAX_REQUEST_BYTES), its values checked against the declared dtype (a float for an integer input is refused, never
truncated; a string or a bool for a number is refused, never converted), its shapes, its batch (at most what the
build validated) and its per-request counts (`whole_number`). numpy only.

Shipped as a flat module beside the server's entry file, as pack_runtime.py is; a request that breaks a rule is a
RequestError (a 400 with one line naming the input and the rule).
"""

from __future__ import annotations

import base64
import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from pack_runtime import RequestError

if TYPE_CHECKING:
    from typing import TypeGuard  # Python 3.10+; the servers' Python may be older, and annotations are not evaluated


def whole_number(value: Any) -> int:
    """A per-request count (max_detections, top_k) from JSON or a form field: an integer, or the text of one; a
    float (2.5, 1e9) or a bool is refused, never truncated."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(value)
    return int(value)


whole_number.__name__ = "whole number"

# The largest request body pack's handler servers take: TorchServe's max_request_size, which pack writes into every
# config.properties (packager/targets/torchserve/config.py MAX_MESSAGE_BYTES; a test holds the two equal). pack's
# FastAPI app answers 413 past it before reading the rest of the body.
MAX_REQUEST_BYTES = 128 * 1024 * 1024


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
                arr = typed_values(item["data"], dtype, spec["name"])
        except RequestError:
            raise
        except (ValueError, TypeError) as exc:
            raise RequestError(f"input {spec['name']!r}: data does not decode as {spec['dtype']}: {exc}") from None
        if "shape" in item:
            shape = request_shape(item["shape"], spec["name"])
            if math.prod(shape) != arr.size:
                raise RequestError(f"input {spec['name']!r}: {arr.size} values do not fill shape {list(shape)}")
            arr = arr.reshape(shape)
        check_shape(arr, spec)
        arrays.append(np.ascontiguousarray(arr))
    return arrays


# The JSON values each kind of declared dtype takes (numpy's kind of the values as parsed): a float for an integer
# input is refused, never truncated; a string or a bool for a number is refused, never converted.
ACCEPTED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}
KIND_WORDS = {"b": "true or false", "i": "whole numbers", "u": "whole numbers", "f": "numbers"}


def typed_values(data: Any, dtype: np.dtype, name: str) -> np.ndarray:
    """JSON `data` (a number or nested lists of them) as an array of `dtype`, checked against it first: the values
    must be of the dtype's kind (ACCEPTED_KINDS) and, for integers, within its range. Anything else is a RequestError
    naming the input and the first value that does not fit."""
    try:
        raw = np.asarray(data)
    except (ValueError, TypeError):
        raise RequestError(f"input {name!r}: data is not a rectangular list of numbers") from None
    wanted = ACCEPTED_KINDS.get(dtype.kind)
    if wanted is None:
        raise RequestError(f"input {name!r}: dtype {dtype} is not served from JSON data")
    if raw.size and raw.dtype.kind not in wanted:
        misfit = _first_misfit(data, wanted)
        if misfit is not None:
            raise RequestError(f"input {name!r}: {misfit} is not valid {dtype} data (it takes {KIND_WORDS[dtype.kind]})")
        if dtype.kind != "f":  # whole numbers past 64 bits, which numpy keeps as Python objects
            largest = json_repr(max(raw.reshape(-1).tolist(), key=abs))
            raise RequestError(f"input {name!r}: {largest} is out of the range of {dtype}")
        raw = raw.astype(np.float64)
    if raw.size and dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = raw.min(), raw.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise RequestError(f"input {name!r}: {bad} is out of the range of {dtype} ({info.min} to {info.max})")
    if not raw.size or dtype.kind != "f":
        return raw.astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        cast = raw.astype(dtype)
        lost = ~np.isfinite(cast) & np.isfinite(raw.astype(np.float64))  # finite values past the dtype's range
    if lost.any():
        raise RequestError(f"input {name!r}: {raw[lost][0]} is out of the range of {dtype}")
    return cast


def _first_misfit(data: Any, wanted: str) -> str | None:
    """The first value of `data` (as the request sent it, nested lists walked) that is not of the `wanted` kinds, as
    JSON shows it; None when every value is."""
    todo = [data]
    while todo:
        value = todo.pop()
        if isinstance(value, (list, tuple)):
            todo.extend(reversed(value))
            continue
        kind = "b" if isinstance(value, bool) else "iu" if isinstance(value, int) else "f" if isinstance(value, float) else "?"
        if not set(kind) & set(wanted):
            return json_repr(value)
    return None


def request_shape(shape: Any, name: str) -> tuple[int, ...]:
    """A request's `shape`: a list of whole numbers of at least 0 (a float, a string, a bool or -1 is refused)."""
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise RequestError(f"input {name!r}: shape {json_repr(shape)} is not a list of whole numbers of at least 0")
    return tuple(shape)


def json_repr(value: Any) -> str:
    """`value` as short JSON for a message (at most 60 characters)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def check_batch(arrays: list[np.ndarray], specs: list[dict[str, Any]], limit: int | None) -> None:
    """A request's rows on the batch axis at most `limit` (the largest batch size the build validated; None: no
    limit recorded, an archive written before pack recorded it)."""
    if not limit:
        return
    for arr, spec in zip(arrays, specs):  # noqa: B905 - runs in the serving image's Python, which may predate 3.10 (no zip(strict=))
        if 0 in spec.get("dynamic_axes", [0]) and arr.ndim and arr.shape[0] > limit:
            raise RequestError(
                f"input {spec['name']!r}: a batch of {arr.shape[0]} is over this model's limit of {limit} (the largest "
                f"batch size its build validated); send at most {limit} per request, or rebuild with --batch-sizes up to "
                f"{arr.shape[0]}"
            )


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
