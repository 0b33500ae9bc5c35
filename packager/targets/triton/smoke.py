"""Triton smoke tests through tritonclient: the build's sample input against its recorded eager output (the gate's
comparison, packager/report/samples.py), and for detection builds a synthetic JPEG through the ensemble."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DeployFailed, EnvironmentProblem
from ...report.build_report import BuildReport
from ...serve.tasks import sample_image
from .client import TritonHTTP
from .repository import io_names


def _infer_client(url: str, timeout: float) -> Any:
    try:
        import tritonclient.http as httpclient
    except ImportError as exc:
        raise EnvironmentProblem(f"tritonclient[http] is not installed ({exc})", "pip install 'pack-models[triton]'") from None
    host = TritonHTTP(url).hostport
    return httpclient, httpclient.InferenceServerClient(host, connection_timeout=timeout, network_timeout=timeout)


def smoke_test(
    url: str, build_dir: Path, report: BuildReport, backend: str, model: str, version: str, timeout: float, runs: int = 5
) -> dict[str, Any]:
    """Send the build's sample input; compare with its recorded eager output through the gate's comparison
    (packager/report/samples.py)."""
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    from ...report.samples import load_sample, verdict

    sample = load_sample(build_dir, report, serving=True)
    httpclient, client = _infer_client(url, timeout)
    in_names, out_names = io_names(report, backend)
    inputs = []
    for cname, arr in zip(in_names, sample.inputs, strict=True):
        item = httpclient.InferInput(cname, list(arr.shape), np_to_triton_dtype(arr.dtype))
        item.set_data_from_numpy(arr)
        inputs.append(item)
    requested = [httpclient.InferRequestedOutput(n) for n in out_names]
    latencies = []
    try:
        for _ in range(max(runs, 1)):
            t0 = time.perf_counter()
            result = client.infer(model, inputs, model_version=version, outputs=requested)
            latencies.append((time.perf_counter() - t0) * 1000)
    except InferenceServerException as exc:
        return {
            "passed": False,
            "reason": f"inference failed: {exc.message() if callable(getattr(exc, 'message', None)) else exc}",
        }
    except OSError as exc:  # tritonclient's connection errors
        return {"passed": False, "reason": f"no answer to the sample request ({exc})"}
    finally:
        client.close()
    missing = [n for n in out_names if result.as_numpy(n) is None]
    if missing:
        return {"passed": False, "model": model, "reason": f"the answer has no output {missing[0]!r}"}
    return {
        **verdict(sample.check_outputs([result.as_numpy(n) for n in out_names])),
        "model": model,
        "latency_ms": {"first": round(latencies[0], 2), "median": round(statistics.median(latencies[1:] or latencies), 2)},
    }


def detect(url: str, model: str, image: bytes, timeout: float, version: str | None = None) -> dict[str, np.ndarray]:
    """Send encoded image bytes to a detection ensemble; returns boxes, scores, classes (batch axis removed)."""
    from tritonclient.utils import InferenceServerException

    httpclient, client = _infer_client(url, timeout)
    data = np.frombuffer(image, dtype=np.uint8)[None]
    item = httpclient.InferInput("image", list(data.shape), "UINT8")
    item.set_data_from_numpy(data)
    try:
        result = client.infer(
            model,
            [item],
            model_version=version or "",
            outputs=[httpclient.InferRequestedOutput(n) for n in ("boxes", "scores", "classes")],
        )
    except (InferenceServerException, OSError) as exc:
        raise DeployFailed(f"the {model} ensemble failed on an image: {exc}") from None
    finally:
        client.close()
    return {n: result.as_numpy(n)[0] for n in ("boxes", "scores", "classes")}


def ensemble_smoke(url: str, model: str, version: str, timeout: float) -> dict[str, Any]:
    width, height = 640, 480
    t0 = time.perf_counter()
    try:
        out = detect(url, model, sample_image(width, height), timeout, version)
    except DeployFailed as exc:
        return {"passed": False, "model": model, "reason": exc.message}
    ms = (time.perf_counter() - t0) * 1000
    boxes, scores, classes = out["boxes"], out["scores"], out["classes"]
    problems = []
    if boxes.ndim != 2 or boxes.shape[1:] != (4,) or scores.shape != (len(boxes),) or classes.shape != (len(boxes),):
        problems.append(f"shapes boxes {list(boxes.shape)}, scores {list(scores.shape)}, classes {list(classes.shape)}")
    elif len(boxes) and (
        not np.isfinite(boxes).all()
        or boxes[:, [0, 2]].max() > width + 1e-3
        or boxes[:, [1, 3]].max() > height + 1e-3
        or boxes.min() < -1e-3
    ):
        problems.append("boxes outside the image")
    return {
        "passed": not problems,
        "model": model,
        "image": f"{width}x{height} JPEG",
        "detections": int(len(boxes)),
        "latency_ms": round(ms, 2),
        **({"reason": "; ".join(problems)} if problems else {}),
    }
