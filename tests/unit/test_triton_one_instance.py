"""The Triton python-backend model with `pack_steps yolo`: the YOLO pre-processing, the model and the
post-processing in one instance answer what the ensemble's three steps answer, and a bad image is the client's 400."""

from __future__ import annotations

import importlib
import io
import json
import sys
import types
from typing import Any

import numpy as np
import pytest


class _Error:
    INVALID_ARG = 3

    def __init__(self, message: str, code: int | None = None):
        self.message, self.code = message, code


class _Tensor:
    def __init__(self, name: str, array: np.ndarray):
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


class _Response:
    def __init__(self, output_tensors: list[_Tensor] | None = None, error: _Error | None = None):
        self.tensors = {t.name: t.array for t in output_tensors or []}
        self.error = error


@pytest.fixture(scope="module")
def handler() -> Any:
    from packager.serve.tasks import runtime_on_path

    runtime_on_path()
    fake = types.ModuleType("triton_python_backend_utils")
    members = {
        "TritonError": _Error,
        "TritonModelException": RuntimeError,
        "Tensor": _Tensor,
        "InferenceResponse": _Response,
        "get_input_tensor_by_name": lambda request, name: request[name],
        "triton_string_to_numpy": lambda name: np.float32 if name == "TYPE_FP32" else np.int32,
    }
    for name, member in members.items():
        setattr(fake, name, member)
    sys.modules["triton_python_backend_utils"] = fake
    try:
        return importlib.import_module("pack_triton_model")
    finally:
        del sys.modules["triton_python_backend_utils"]


# One anchor: a 20x10 box centred at (32, 32) of the 64x64 letterboxed image, class 1 at 0.9.
RAW = np.zeros((1, 6, 2), dtype=np.float32)
RAW[0, :, 0] = [32, 32, 20, 10, 0.1, 0.9]


class _Detector:
    """The export: records what it is fed and answers RAW."""

    placement = {"device": "cpu"}

    def __init__(self, seen: list[Any]):
        self.seen = seen

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        self.seen.append(arrays[0].shape)
        return [RAW]


def _model(handler: Any, monkeypatch: pytest.MonkeyPatch, seen: list[Any]) -> Any:
    def load_model(path: str, fmt: str, device: str, threads: int, inputs: list[str], outputs: list[str]) -> Any:
        seen.append((inputs, outputs))
        return _Detector(seen)

    monkeypatch.setattr(handler, "load_model", load_model)
    params = {"pack_format": "onnx", "pack_steps": "yolo", "pack_image_size": "64,64"}
    config = {
        "input": [{"name": "image", "data_type": "TYPE_UINT8"}],
        "output": [
            {"name": "boxes", "data_type": "TYPE_FP32"},
            {"name": "scores", "data_type": "TYPE_FP32"},
            {"name": "classes", "data_type": "TYPE_INT32"},
        ],
        "parameters": {k: {"string_value": v} for k, v in params.items()},
    }
    model = handler.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": "/r", "model_version": "1"})
    return model


def _png(width: int, height: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buf, format="PNG")
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def test_one_instance_answers_the_ensembles_detections(handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    model = _model(handler, monkeypatch, seen)
    (answer,) = model.execute([{"image": _Tensor("image", _png(128, 64))}])
    assert answer.error is None
    assert seen[0] == (["images"], ["output0"])  # the export's own names, not the client's
    assert seen[1] == (1, 3, 64, 64)  # one letterboxed image in
    # 128x64 letterboxed into 64x64: ratio 0.5, 16 rows of padding on top; the box maps back to the original pixels
    np.testing.assert_allclose(answer.tensors["boxes"], [[44, 22, 84, 42]], atol=1e-4)
    np.testing.assert_allclose(answer.tensors["scores"], [0.9], atol=1e-6)
    assert answer.tensors["classes"].tolist() == [1]


def test_one_instance_refuses_a_bad_image_as_the_clients(handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(handler, monkeypatch, [])
    (answer,) = model.execute([{"image": _Tensor("image", np.frombuffer(b"not an image", dtype=np.uint8))}])
    assert answer.error is not None and answer.error.code == _Error.INVALID_ARG
