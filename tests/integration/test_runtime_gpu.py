"""The serving runtime on a real CUDA GPU (skipped where there is none): TorchScript and, with onnxruntime-gpu, ONNX run
where placement says and answer what the CPU answers. (The placement decision itself, with fakes of what onnxruntime
and torch report: tests/unit/test_fastapi.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from packager.console import on_purpose
from packager.serve.tasks import runtime_on_path
from tests.helpers.onnx_build import identity_onnx

runtime_on_path()
import pack_runtime  # noqa: E402  (a flat module of the serving runtime, as on a server)

CUDA = "CUDAExecutionProvider"


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.skipif(
    not _cuda(), reason="no CUDA GPU on this machine: the GPU placement is checked with fakes in tests/unit/test_fastapi.py"
)
def test_on_a_gpu_the_runtime_really_runs_there(tmp_path: Path) -> None:
    import torch

    with on_purpose("torch.jit.trace", "torch.jit.save"):
        module = torch.jit.trace(torch.nn.Linear(2, 3).eval(), torch.zeros(1, 2))
        torch.jit.save(module, str(tmp_path / "model.pt"))
    x = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    on_gpu = pack_runtime.load_model(str(tmp_path / "model.pt"), "torchscript", "cuda:0")
    on_cpu = pack_runtime.load_model(str(tmp_path / "model.pt"), "torchscript", "cpu")
    assert on_gpu.placement["device"] == "cuda:0"
    np.testing.assert_allclose(on_gpu([x])[0], on_cpu([x])[0], rtol=1e-3, atol=1e-4)
    import onnxruntime

    if CUDA in onnxruntime.get_available_providers():  # onnxruntime-gpu installed: the ONNX session runs on CUDA too
        model = pack_runtime.load_model(str(identity_onnx(tmp_path / "m.onnx")), "onnx", "cuda:0")
        assert model.placement["provider"] == CUDA, model.placement
        assert np.array_equal(model([x[:, :2]])[0], x[:, :2])
