"""The Triton entries of a detection build on each backend (one endpoint, `<name>_ensemble`: one python model on the
python backend, the ensemble on a native one), and `--backend auto`'s choice, from a report alone."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from packager.errors import UsageError
from packager.report.build_report import BuildReport
from packager.targets.triton import config as cfg
from packager.targets.triton.repository import (
    RepoOptions,
    auto_backend,
    model_config,
    model_names,
    serving_model,
    triton_version,
)
from tests.helpers.reports import SEQUENCE_MODEL as REPORT
from tests.helpers.reports import make_report


def test_detection_builds_are_served_through_an_ensemble() -> None:
    image = [{"name": "images", "shape": [1, 3, 64, 64], "dtype": "float32", "dynamic_axes": [0]}]
    detection = {**REPORT, "task": "object-detection", "postprocessing": {"format": "yolov8"}, "inputs": image}
    for backend in ("onnxruntime", "pytorch", "torch_aoti"):  # the steps in python around a natively run model
        assert model_names(make_report(**detection), backend) == ["m_preprocess", "m", "m_postprocess", "m_ensemble"]
    assert model_names(make_report(**detection), "python") == ["m", "m_ensemble"]  # the steps and the model in one
    for backend in ("python", "onnxruntime"):  # one endpoint whatever the backend
        assert serving_model(make_report(**detection), backend) == "m_ensemble"
        assert serving_model(make_report(**REPORT), backend) == "m"
    # stand-ins with only the field triton_version reads: a report's schema already refuses these versions
    assert triton_version(cast(BuildReport, SimpleNamespace(version="007"))) == "7"
    with pytest.raises(UsageError, match="must be a positive integer"):
        triton_version(cast(BuildReport, SimpleNamespace(version="v1")))


def test_the_yolo_endpoint_says_what_it_takes_on_either_layout() -> None:
    from packager.targets.triton.detection import detection_configs

    image = [{"name": "images", "shape": [1, 3, 64, 64], "dtype": "float32", "dynamic_axes": [0]}]
    post = {"format": "yolov8", "conf_threshold": 0.4}
    report = make_report(**{**REPORT, "task": "object-detection", "postprocessing": post, "inputs": image})
    for backend in ("python", "onnxruntime"):
        ropts = RepoOptions(backend=backend, gpu=False, threads=2)
        detector, _ = model_config(report, ropts)
        assert cfg.pb().ModelInput.Format.Name(detector.input[0].format) == "FORMAT_NCHW"
        endpoint = detection_configs(report, detector, backend, 1)["m_ensemble"]
        request = cfg.get_parameter(endpoint, "pack_request") or ""
        assert request.startswith("input image: UINT8 [1, N], the N bytes of one JPEG or PNG file"), backend
        assert "boxes: FP32 [1, K, 4]" in request and [o.name for o in endpoint.output] == ["boxes", "scores", "classes"]
    ropts = RepoOptions(gpu=False, threads=2)
    one = detection_configs(report, model_config(report, ropts)[0], "python", 1)
    [entry] = one.values()  # the python backend: one model running the steps and the export, with what each needs
    params = {k: cfg.get_parameter(entry, k) for k in ("pack_steps", "pack_format", "pack_model_file", "pack_threads")}
    assert entry.backend == "python" and params == {
        "pack_steps": "yolo",
        "pack_format": "onnx",
        "pack_model_file": "model.onnx",
        "pack_threads": "2",
    }
    assert (cfg.get_parameter(entry, "pack_model_input"), cfg.get_parameter(entry, "pack_model_output")) == ("images", "logits")
    assert cfg.get_parameter(entry, "pack_conf_threshold") == "0.4" and cfg.get_parameter(entry, "pack_image_size") == "64,64"


def test_auto_backend_is_the_native_one_the_server_has_else_python() -> None:
    both = {
        "artifacts": {"onnx": "model.onnx", "pt2": "model.pt2"},
        "formats": {f: {"status": "passed", "file": f"model.{f}"} for f in ("onnx", "pt2")},
    }
    report = make_report(**both)
    assert auto_backend(report, None, None) == "onnxruntime"  # not known (a server at --url): the native one first
    assert auto_backend(report, None, ["onnxruntime", "python"]) == "onnxruntime"
    assert auto_backend(report, None, ["python"]) == "python"  # the PyPI server
    assert auto_backend(report, None, []) == "python"
    assert auto_backend(report, "pt2", None) == "python"  # an ExportedProgram has no native backend
