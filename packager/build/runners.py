"""The device choice and the eager runner: a module on numpy inputs -> numpy outputs (saved formats load their own
runners through packager.export.runner_for)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Runner = Callable[[list[np.ndarray]], list[np.ndarray]]


def pick_device(requested: str) -> str:
    """auto -> cuda when torch sees a GPU, else cpu; cuda without a GPU is an error."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        from ..errors import EnvironmentProblem

        raise EnvironmentProblem("--device cuda was asked for but torch sees no CUDA GPU", "use --device auto or cpu")
    return requested


def torch_runner(module: Any, device: str) -> Runner:
    """Call `module` (the ExportModule, or anything returning a tensor or a flat tuple of tensors) on numpy inputs."""
    import torch

    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        tensors = [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays]
        with torch.inference_mode():
            out = module(*tensors)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [t.detach().cpu().numpy() for t in out]

    return run
