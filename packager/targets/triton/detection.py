"""The Triton entries of a detection build (a task with Triton steps, packager/serve/tasks.py; YOLO today) beside
the model's own config, behind one endpoint `<name>_ensemble`: one encoded image in, `boxes`, `scores` and `classes`
out, whatever the backend, so a client never changes with it.

- Where the model runs on a native backend (onnxruntime, pytorch, torch_aoti), the endpoint is an ensemble of three
  entries: `<name>_preprocess` (python: image bytes -> letterboxed pixels), the model, and `<name>_postprocess`
  (python: NMS, boxes in the original image's pixels).
- On the python backend it is one python model that runs the same three steps in one instance
  (handlers/pack_triton_model.py `pack_steps yolo`): one copy of the image in and the detections out, where the
  ensemble's python steps would each copy the letterboxed image through shared memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...report.build_report import BuildReport
from . import config as cfg

OUTPUTS = (("boxes", "TYPE_FP32", [-1, 4]), ("scores", "TYPE_FP32", [-1]), ("classes", "TYPE_INT32", [-1]))
RUNS_THE_MODEL = ("pack_format", "pack_model_file", "pack_threads")  # the model config's parameters the one instance keeps


def one_instance(backend: str) -> bool:
    """Whether a detection build on `backend` is served by one python model (else: the ensemble)."""
    return backend == "python"


def endpoint(name: str) -> str:
    return f"{name}_ensemble"


def _python_model(name: str, max_batch: int, gpu: bool, instances: int) -> Any:
    config = cfg.new_config()
    config.name = name
    config.backend = "python"
    config.max_batch_size = max_batch
    config.version_policy.latest.num_versions = 1
    cfg.instance_group(config, instances, gpu)
    return config


def _tensor(collection: Any, name: str, dtype: str, dims: list[int]) -> None:
    entry = collection.add()
    entry.name = name
    entry.data_type = cfg.dtype_value(dtype)
    entry.dims.extend(dims)


def _endpoint_io(config: Any, report: BuildReport) -> None:
    """The endpoint's tensors and what it says it takes; the build it serves."""
    _tensor(config.input, "image", "TYPE_UINT8", [-1])
    for name, dtype, dims in OUTPUTS:
        _tensor(config.output, name, dtype, dims)
    cfg.set_parameter(config, "pack_build", f"{report.name}:{report.version}")
    cfg.set_parameter(config, "pack_request", ensemble_request(config.max_batch_size > 0))


def _pre_parameters(config: Any, report: BuildReport, height: int, width: int) -> None:
    pre = report.preprocessing
    cfg.set_parameter(config, "pack_image_size", f"{height},{width}")
    cfg.set_parameter(config, "pack_pad_value", pre.get("pad_value", 114))
    cfg.set_parameter(config, "pack_scale", pre.get("scale", 1 / 255.0))
    if pre.get("max_pixels"):
        cfg.set_parameter(config, "pack_max_pixels", int(pre["max_pixels"]))


def _post_parameters(config: Any, report: BuildReport) -> None:
    post = report.postprocessing
    cfg.set_parameter(config, "pack_conf_threshold", post.get("conf_threshold", 0.25))
    cfg.set_parameter(config, "pack_iou_threshold", post.get("iou_threshold", 0.45))
    cfg.set_parameter(config, "pack_max_detections", post.get("max_detections", 300))


def detection_configs(report: BuildReport, detector: Any, backend: str, instances: int) -> dict[str, Any]:
    """The configs around the detector's on `backend`, `instances` of each python model: the one-instance model on
    the python backend, else the ensemble's."""
    eb = 1 if detector.max_batch_size > 0 else 0  # the endpoint takes one image per request
    height, width = (report.preprocessing.get("image_size") or report.inputs[0].shape[-2:])[:2]
    if one_instance(backend):
        gpu = any(g.kind == cfg.pb().ModelInstanceGroup.KIND_GPU for g in detector.instance_group)
        one = _python_model(endpoint(report.name), eb, gpu, instances)
        _endpoint_io(one, report)
        for key in RUNS_THE_MODEL:
            value = cfg.get_parameter(detector, key)
            if value is not None:
                cfg.set_parameter(one, key, value)
        cfg.set_parameter(one, "pack_steps", "yolo")
        cfg.set_parameter(one, "pack_model_input", detector.input[0].name)
        cfg.set_parameter(one, "pack_model_output", detector.output[0].name)
        _pre_parameters(one, report, height, width)
        _post_parameters(one, report)
        return {one.name: one}
    return _ensemble_configs(report, detector, instances, eb, height, width)


def _ensemble_configs(report: BuildReport, detector: Any, instances: int, eb: int, height: int, width: int) -> dict[str, Any]:
    name = report.name
    det_in, det_out = detector.input[0], detector.output[0]
    pre = _python_model(f"{name}_preprocess", eb, False, instances)
    _tensor(pre.input, "image", "TYPE_UINT8", [-1])
    _tensor(pre.output, "pixels", "TYPE_FP32", [3, height, width] if eb else [1, 3, height, width])
    _tensor(pre.output, "meta", "TYPE_FP32", [5])
    cfg.set_parameter(pre, "pack_role", "preprocess")
    _pre_parameters(pre, report, height, width)

    post = _python_model(f"{name}_postprocess", eb, False, instances)
    _tensor(post.input, "raw", cfg.dtype_name(det_out.data_type), list(det_out.dims))
    _tensor(post.input, "meta", "TYPE_FP32", [5])
    for out, dtype, dims in OUTPUTS:
        _tensor(post.output, out, dtype, dims)
    cfg.set_parameter(post, "pack_role", "postprocess")
    _post_parameters(post, report)

    ens = cfg.new_config()
    ens.name = endpoint(name)
    ens.platform = "ensemble"
    ens.max_batch_size = eb
    _endpoint_io(ens, report)
    steps = ens.ensemble_scheduling.step
    s = steps.add()
    s.model_name, s.model_version = pre.name, -1
    s.input_map["image"] = "image"
    s.output_map["pixels"] = "_pixels"
    s.output_map["meta"] = "_meta"
    s = steps.add()
    s.model_name, s.model_version = detector.name, -1
    s.input_map[det_in.name] = "_pixels"
    s.output_map[det_out.name] = "_raw"
    s = steps.add()
    s.model_name, s.model_version = post.name, -1
    s.input_map["raw"] = "_raw"
    s.input_map["meta"] = "_meta"
    for out, _, _ in OUTPUTS:
        s.output_map[out] = out
    return {pre.name: pre, post.name: post, ens.name: ens}


# What a client of the YOLO endpoint sends and gets, in the endpoint's own config (its `parameters`: a protobuf text
# file written from the message has no comments) and in the README.
def ensemble_request(batched: bool) -> str:
    b = "1, " if batched else ""
    return (
        f"input image: UINT8 [{b}N], the N bytes of one JPEG or PNG file; "
        f"outputs boxes: FP32 [{b}K, 4] x1, y1, x2, y2 in the original image's pixels, scores: FP32 [{b}K], "
        f"classes: INT32 [{b}K] class ids (K detections after the confidence threshold and NMS)"
    )


# The layouts a task's Triton steps may name (packager/serve/tasks.py TritonSteps.layout).
ENSEMBLES: dict[str, Callable[[BuildReport, Any, str, int], dict[str, Any]]] = {"yolo": detection_configs}
