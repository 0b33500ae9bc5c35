"""The in-process baselines: the model in one Python process, called by `concurrency` threads (like a threaded
FastAPI worker), doing exactly the work a server does for the same request.

* `pipeline(...)`: the TorchServe request path without TorchServe. pack's own handler class (the task's entry
  handler from the serving runtime, packager/serve/tasks.py: the file shipped in the .mar) is instantiated in this process
  with the settings the archive would give it, and its `handle([request])` runs per request: decode the image,
  pre-process, run the model, post-process, serialise the JSON answer. Only the model callable differs: the eager
  PyTorch module, or onnxruntime through the runtime's own `load_model` (what a TorchServe worker runs).
* `tensor_runner(...)`: the model alone on the pre-processed tensor (what Triton's python backend is sent).
* `batch_comparison(...)`: eager vs the ONNX export at one batch size, sequentially.

`python -m packager.bench.inprocess rss BUILD_DIR eager|onnx` loads one of them in a fresh process, serves a few
requests and prints its resident memory (the figure a server's memory is compared with).
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..build.measure import measure
from ..report.build_report import BuildReport
from ..serve.tasks import IMAGE, runtime_on_path, task_for

logger = logging.getLogger(__name__)

Runner = Callable[[list[np.ndarray]], list[np.ndarray]]


# ---------------------------------------------------------------- the request users send


def sample_jpeg(width: int = 640, height: int = 480) -> bytes:
    """The image every image-model row sends: the same synthetic JPEG the Triton ensemble's smoke test uses."""
    from ..serve.tasks import sample_image

    return sample_image(width, height)


def handler_file(report: BuildReport) -> str:
    """The TorchServe entry handler of the build's task (packager/serve/tasks.py)."""
    return task_for(report).handler


def is_image_model(report: BuildReport) -> bool:
    """Whether the build's task takes encoded image bytes (else the build's sample tensors)."""
    return task_for(report).sample == IMAGE


def sample_inputs(build_dir: Path, report: BuildReport) -> list[np.ndarray]:
    """The build's recorded sample inputs, first item of the batch (shape (1, ...))."""
    rels = report.samples.inputs
    return [np.ascontiguousarray(np.load(build_dir / rel)[:1]) for rel in rels]


def request_payload(build_dir: Path, report: BuildReport) -> tuple[bytes, str, str]:
    """(body, content type, description) of the request an end user sends to TorchServe for this model."""
    if is_image_model(report):
        data = sample_jpeg()
        return data, "application/octet-stream", f"640x480 JPEG ({len(data)} bytes)"
    arrays = sample_inputs(build_dir, report)
    doc = {
        "inputs": [
            {
                "name": spec.name,
                "shape": list(a.shape),
                "dtype": str(a.dtype),
                "encoding": "base64",
                "data": base64.b64encode(a.astype(a.dtype.newbyteorder("<")).tobytes()).decode(),
            }
            for spec, a in zip(report.inputs, arrays, strict=True)
        ],
        "output_encoding": "base64",
    }
    body = json.dumps(doc).encode()
    return body, "application/json", f"tensor JSON ({len(body)} bytes)"


# ---------------------------------------------------------------- runtimes


def set_torch_threads(threads: int) -> int:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def eager_module(build_dir: Path, report: BuildReport) -> tuple[Any, str]:
    """(module, what it is): the eager model rebuilt from the registry (built-in models with random weights, checked
    against the build's recorded outputs), else the build's TorchScript export standing in for it."""
    import torch

    source = report.source
    weights = report.weights
    if source.get("kind") == "builtin" and weights.get("random"):
        try:
            from ..build.loader import load_module
            from ..build.modelio import bind, export_module
            from ..build.plan import resolve

            plan = resolve(source["ref"], None, {"device": "cpu", "seed": weights.get("seed", 0)})
            model, _, _ = load_module(plan)
            module = export_module(model.eval(), bind(model, [i.name for i in report.inputs]))
            if _matches_samples(module, build_dir, report):
                return module, "eager PyTorch"
            logger.warning(
                "the rebuilt eager model does not reproduce the build's recorded outputs; TorchScript stands in for it"
            )
        except Exception as exc:  # a missing optional dependency, a changed registry entry
            logger.warning(
                f"cannot rebuild the eager model ({type(exc).__name__}: {str(exc)[:120]}); TorchScript stands in for it"
            )
    else:
        logger.info(
            "the eager model cannot be rebuilt from this build (weights or source file are not in the store); "
            "TorchScript stands in for it"
        )
    from ..console import extension_ops

    path = build_dir / report.artifacts.get("torchscript", "model.pt")
    extension_ops()
    module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]  # torch.jit.load is unannotated
    return module.eval(), "TorchScript (eager not rebuildable)"


def _matches_samples(module: Any, build_dir: Path, report: BuildReport) -> bool:
    """The rebuilt module reproduces the build's recorded sample (the gate's comparison)."""
    from ..build.runners import torch_runner
    from ..report.samples import load_sample
    from ..report.validate import first_failure

    if not report.samples.inputs:
        return True
    return first_failure(load_sample(build_dir, report).check(torch_runner(module, "cpu"))) is None


def eager_runner(module: Any) -> Runner:
    from ..build.runners import torch_runner

    return torch_runner(module, "cpu")


def served_onnx(report: BuildReport) -> str:
    """The build-relative ONNX file the in-process rows run: the one every target serves (`report.formats.served`: a
    kept variant's, else the export)."""
    from ..report.formats import served

    return served(report, "onnx").file


def onnx_runner(build_dir: Path, report: BuildReport, threads: int = 0) -> Runner:
    """onnxruntime through the serving runtime's own loader (pack_runtime.load_model): the session a TorchServe worker
    or a Triton python-backend model builds, on the served ONNX file."""
    runtime = _handler_module("pack_runtime")
    path = build_dir / served_onnx(report)
    run: Runner = runtime.load_model(
        str(path), "onnx", "cpu", threads, [i.name for i in report.inputs], [o.name for o in report.outputs]
    )
    return run


# ---------------------------------------------------------------- pack's handler, in this process


def _handler_module(name: str) -> Any:
    """A module of the serving runtime, imported as a flat module from the runtime's folder (as a server imports it)."""
    runtime_on_path()
    return importlib.import_module(name)


def handler_instance(build_dir: Path, report: BuildReport, runner: Runner, fmt: str) -> Any:
    """pack's TorchServe handler for this build, set up as a worker would set it up (the worker settings every server
    gives it, packager/serve/worker.py), running `runner`."""
    from ..serve.worker import worker_settings

    base = _handler_module("pack_torchserve").PackHandler
    hfile = handler_file(report)
    module = _handler_module(hfile[:-3])
    cls = next(v for v in vars(module).values() if isinstance(v, type) and issubclass(v, base) and v is not base)
    labels = report.labels
    if labels and not (build_dir / labels).is_file():
        labels = None
    meta = worker_settings(report, fmt, Path(labels).name if labels else None)
    meta["labels"] = [line.strip() for line in (build_dir / labels).read_text().splitlines() if line.strip()] if labels else None
    handler = cls()
    handler.settings = meta
    handler.inputs = meta["inputs"]
    handler.output_names = meta["outputs"]
    handler.model = runner
    handler.batchable = all(0 in i.get("dynamic_axes", [0]) for i in handler.inputs)
    handler.max_batch = int(meta["handler"].get("max_batch") or 0)
    handler.setup()
    handler.initialized = True
    return handler


def pipeline(handler: Any, body: bytes) -> Callable[[int], Any]:
    """One request through the handler, as a TorchServe worker handles a batch of one. Raises on an error answer."""

    def call(_: int) -> Any:
        answer = handler.handle([{"body": body}], None)[0]
        if answer.startswith('{"error"'):
            raise RuntimeError(answer[:200])
        return answer

    return call


def preprocessed(handler: Any, body: bytes) -> list[np.ndarray]:
    """The model inputs the handler makes from the request (what a tensor-serving server is sent)."""
    requests = _handler_module("pack_requests")
    doc = _handler_module("pack_torchserve").as_json(body)
    if requests.is_tensor_request(doc):
        decoded: list[np.ndarray] = requests.decode_tensors(doc, handler.inputs)
        return decoded
    arrays, _ = handler.preprocess_one({"body": body}, body, doc)
    return [np.ascontiguousarray(a) for a in arrays]


def tensor_call(runner: Runner, arrays: list[np.ndarray]) -> Callable[[int], Any]:
    def call(_: int) -> Any:
        return runner(arrays)

    return call


# ---------------------------------------------------------------- batch comparison


def batch_comparison(
    eager: Runner, onnx: Runner, arrays: list[np.ndarray], batch: int, iterations: int, time_limit_s: float
) -> dict[str, Any]:
    """Eager vs ONNX (onnxruntime) on one batch of `batch` copies of the tensor, run back to back in one thread."""
    stacked = [np.ascontiguousarray(np.repeat(a, batch, axis=0)) for a in arrays]
    out: dict[str, Any] = {"batch": batch}
    for label, runner in (("eager", eager), ("onnx", onnx)):
        m = measure(runner, stacked, batch, iterations=iterations, warmup=1, time_cap_s=time_limit_s)
        out[label] = {
            "iterations": m["iterations"],
            "p50_ms": m["p50_ms"],
            "mean_ms": m["mean_ms"],
            "items_per_s": m["throughput_per_s"],
        }
    out["onnx_over_eager"] = round(out["onnx"]["items_per_s"] / out["eager"]["items_per_s"], 3)
    return out


# ---------------------------------------------------------------- memory


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def tree_rss_mb(pids: list[int]) -> float | None:
    sizes = [rss_bytes(p) for p in pids]
    known = [s for s in sizes if s]
    return round(sum(known) / 2**20, 1) if known else None


def measure_rss_subprocess(build_dir: Path, fmt: str, timeout: float = 300.0) -> dict[str, Any]:
    """Resident memory of a fresh Python process with the model loaded (eager or onnx) after serving a few requests."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "packager.bench.inprocess", "rss", str(build_dir), fmt],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"rss_mb": None, "error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"rss_mb": None, "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
    figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures


def _rss_main(build_dir: str, fmt: str) -> None:
    from ..build.record import load_report

    folder = Path(build_dir)
    report = load_report(folder)
    body, _, _ = request_payload(folder, report)
    if fmt == "eager":
        module, _ = eager_module(folder, report)
        runner = eager_runner(module)
    else:
        runner = onnx_runner(folder, report)
    handler = handler_instance(folder, report, runner, "onnx" if fmt == "onnx" else "torchscript")
    call = pipeline(handler, body)
    for i in range(3):
        call(i)
    print(json.dumps({"rss_mb": round((rss_bytes(os.getpid()) or 0) / 2**20, 1), "format": fmt}))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "rss":
        _rss_main(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: python -m packager.bench.inprocess rss BUILD_DIR eager|onnx")
