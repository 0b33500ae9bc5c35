"""Callables that run one format (eager, TorchScript, ONNX) on numpy inputs and return numpy outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .tensors import flatten_outputs

Runner = Callable[[list[np.ndarray]], list[np.ndarray]]


def pick_device(requested: str) -> str:
    """auto -> cuda when torch sees a GPU, else cpu; cuda without a GPU is an error."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        from .errors import EnvironmentProblem

        raise EnvironmentProblem("--device cuda was asked for but torch sees no CUDA GPU", "use --device auto or cpu")
    return requested


def torch_runner(module: Any, device: str) -> Runner:
    import torch

    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        tensors = [torch.from_numpy(a).to(device) for a in arrays]
        with torch.inference_mode():
            out = module(*tensors)
        return [t.detach().cpu().numpy() for t in flatten_outputs(out)]

    return run


def onnx_providers(device: str) -> list[str]:
    import onnxruntime as ort

    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def onnx_runner(path: Path, device: str) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=onnx_providers(device))
    names = [i.name for i in session.get_inputs()]

    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        return list(session.run(None, dict(zip(names, arrays))))

    run.providers = session.get_providers()  # type: ignore[attr-defined]
    return run
