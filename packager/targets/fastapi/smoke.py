"""The FastAPI smoke test: the build's recorded sample sent as an Open Inference Protocol v2 request (the body
packager/serve/oip.py makes for every server), the answer compared with the recorded eager output through the gate's one
comparison (packager/report/samples.py), within the served variant's tolerances when the build serves one. Deploy runs it
before a set goes live; `pack status` runs it on what is served."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ...report.build_report import BuildReport
from ...serve.http import HttpError
from ...serve.oip import NUMPY_TO_V2, sample_request
from .client import FastAPIClient

V2_TO_NUMPY = {v: k for k, v in NUMPY_TO_V2.items()}


def smoke_test(client: FastAPIClient, build_dir: Path, report: BuildReport, timeout: float) -> dict[str, Any]:
    """{"passed", "reason" when not, "seconds", per-output errors}: the sample through /v2/models/<name>/.../infer."""
    from ...report.samples import load_sample, verdict

    sample = load_sample(build_dir, report, serving=True)  # a served int8 variant is held to its own tolerances
    t0 = time.monotonic()
    try:
        answer = client.infer(report.name, report.version, sample_request(build_dir, report), timeout=timeout)
    except HttpError as exc:
        return {"passed": False, "reason": f"the sample request failed: {exc}", "seconds": round(time.monotonic() - t0, 3)}
    seconds = round(time.monotonic() - t0, 3)
    outputs = {o.get("name"): o for o in answer.get("outputs") or [] if isinstance(o, dict)} if isinstance(answer, dict) else {}
    arrays = []
    for spec in report.outputs:
        got = outputs.get(spec.name)
        if got is None:
            return {"passed": False, "reason": f"the answer has no output {spec.name!r}", "seconds": seconds}
        try:
            arrays.append(np.asarray(got["data"], dtype=V2_TO_NUMPY[got["datatype"]]).reshape(got["shape"]))
        except (KeyError, TypeError, ValueError) as exc:
            return {"passed": False, "reason": f"output {spec.name!r} does not decode: {exc}", "seconds": seconds}
    return {**verdict(sample.check_outputs(arrays)), "seconds": seconds, "batch": sample.case.batch}
