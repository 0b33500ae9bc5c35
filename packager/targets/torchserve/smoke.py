"""The TorchServe smoke test: the build's sample input sent as tensor JSON, the answer compared with the recorded eager
output through the gate's one comparison (packager/report/samples.py). Deploy runs it before a version goes live; health
runs it on what is served."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...report.build_report import BuildReport
from ...serve.http import HttpError
from .connection import Connection


def smoke_test(
    conn: Connection, build_dir: Path, report: BuildReport, version: str, timeout: float, model: str | None = None
) -> dict[str, Any]:
    """Send the build's sample input as generic tensor JSON to `model` (the build's name unless a rollout registered
    it under another) and compare with the recorded eager output (the gate's comparison, packager/report/samples.py)."""
    from ...report.samples import load_sample, verdict

    sample = load_sample(build_dir, report, serving=True)
    inputs = [
        {
            "name": spec.name,
            "shape": list(arr.shape),
            "dtype": str(arr.dtype),
            "encoding": "base64",
            "data": base64.b64encode(arr.astype(arr.dtype.newbyteorder("<")).tobytes()).decode(),
        }
        for spec, arr in zip(report.inputs, sample.inputs, strict=True)
    ]
    body = json.dumps({"inputs": inputs, "output_encoding": "base64"}).encode()
    t0 = time.monotonic()
    try:
        _, data = conn.inference.predict(model or report.name, body, "application/json", version=version, timeout=timeout)
    except HttpError as exc:
        return {"passed": False, "reason": f"the sample request failed: {exc}", "seconds": round(time.monotonic() - t0, 3)}
    seconds = round(time.monotonic() - t0, 3)
    try:
        outputs = json.loads(data)["outputs"]
    except (ValueError, KeyError, TypeError):
        return {"passed": False, "reason": f"the answer is not tensor JSON: {data[:200]!r}", "seconds": seconds}
    arrays = []
    for spec, got in zip(report.outputs, outputs, strict=False):  # a count mismatch fails check_outputs below
        try:
            dtype = np.dtype(got["dtype"])
            if got.get("encoding") == "base64":
                arrays.append(np.frombuffer(base64.b64decode(got["data"]), dtype=dtype.newbyteorder("<")).reshape(got["shape"]))
            else:
                arrays.append(np.asarray(got["data"], dtype=dtype).reshape(got["shape"]))
        except (KeyError, TypeError, ValueError) as exc:
            return {"passed": False, "reason": f"output {spec.name!r} does not decode: {exc}", "seconds": seconds}
    return {**verdict(sample.check_outputs(arrays)), "seconds": seconds, "batch": sample.case.batch}


__all__ = ["smoke_test"]
