"""An Open Inference Protocol (v2) client as a user writes one with the standard library: JSON tensors in, named numpy
arrays out. Tests send a build's recorded sample to every server with it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import numpy as np

V2_TO_NUMPY = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}


def v2_infer(url: str, inputs: dict[str, np.ndarray], headers: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """POST the arrays to a v2 `/infer` URL; the answer's outputs by name (HTTP errors raise with the body)."""
    from packager.serve.oip import NUMPY_TO_V2

    body = {
        "inputs": [
            {"name": n, "shape": list(a.shape), "datatype": NUMPY_TO_V2[str(a.dtype)], "data": a.reshape(-1).tolist()}
            for n, a in inputs.items()
        ]
    }
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{url} answered {exc.code}: {exc.read()[:2000]!r}") from None
    return {o["name"]: np.asarray(o["data"], dtype=V2_TO_NUMPY[o["datatype"]]).reshape(o["shape"]) for o in answer["outputs"]}
