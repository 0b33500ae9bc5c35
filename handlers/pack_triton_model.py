"""Triton python-backend model written by pack (copied as `<model>/<version>/model.py`): runs this version's export
through the shared runtime's load_model (pack_runtime.py, copied beside it): model.onnx with onnxruntime, model.pt
(TorchScript), model.pt2 (ExportedProgram) or model.aoti.pt2 (AOTInductor package) with torch.

Everything it needs is in config.pbtxt: the inputs and outputs, and the parameters
  pack_format      onnx | torchscript | pt2 | aoti
  pack_model_file  the model file beside this model.py
  pack_threads     onnxruntime intra-op / torch threads (optional; 0: the library's default)
  pack_signature, pack_public_key, pack_signed_name
                   (pack deploy --require-signature) the build's model.sig and the public key beside this model.py, and
                   the model file's name in the signed build: the file is checked before it is loaded, and a file
                   that does not verify is never loaded: initialize raises, so the load fails with the reason (a
                   version loaded before keeps serving; nothing unverified ever does)
  pack_steps       yolo: the YOLO pre- and post-processing run in this same instance (one copy of the image in, the
                   detections out, where the ensemble's python steps each copy the letterboxed image): input `image`
                   (the encoded bytes), outputs `boxes`, `scores`, `classes`, with the pre/post parameters of
                   pack_triton_yolo_pre.py and pack_triton_yolo_post.py (optional; absent: the model alone)
ONNX inputs are fed by name; the torch formats take them by position, in config order. Outputs are returned in config
order, cast to the dtypes the config declares; an output holding NaN or infinity is answered with INVALID_ARG (HTTP
400), never as JSON's bare `NaN`. The requests of a dynamic batch run as one model call per group of
requests whose shapes agree; a request that fails is answered with its own error. The environment needs numpy<2 and
onnxruntime (and torch for the torch formats).
"""

import json
import os
import sys

# Triton's stub appends the version folder to sys.path after site-packages; put it first, so the runtime files pack
# copied beside this model.py are the ones imported.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402
from pack_images import YoloSteps  # noqa: E402
from pack_runtime import FORMATS, RequestError, load_model, run_batched  # noqa: E402
from pack_signature import refusal  # noqa: E402

DEFAULT_FILES = {"onnx": "model.onnx", "torchscript": "model.pt", "pt2": "model.pt2", "aoti": "model.aoti.pt2"}


def _error(exc):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))


def _client_error(message):
    """An error Triton answers with HTTP 400 (INVALID_ARG) where the python backend has error codes."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
    return pb_utils.InferenceResponse(error=error)


def non_finite(name, array):
    """Why an output cannot be answered: Triton's JSON would carry a NaN or an infinity as a bare `NaN` token."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return (
            f"output {name!r} holds NaN or infinity, which JSON cannot carry (the build's gate passed only finite "
            "outputs: check the request's inputs for NaN, infinities or values far outside the model's range)"
        )
    return None


def _log(level, message):
    logger = getattr(pb_utils, "Logger", None)
    if logger is not None:
        getattr(logger, f"log_{level}")(message)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        fmt = params.get("pack_format", "onnx")
        if fmt not in FORMATS:
            raise pb_utils.TritonModelException(f"pack_format {fmt!r} is not one of {', '.join(FORMATS)}")
        folder = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(folder, params.get("pack_model_file") or DEFAULT_FILES[fmt])
        self.steps = params.get("pack_steps", "")
        if self.steps not in ("", "yolo"):
            raise pb_utils.TritonModelException(f"pack_steps {self.steps!r} is not yolo")
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [(o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in config["output"]]
        self.yolo = YoloSteps(params) if self.steps else None
        self.batchable = int(config.get("max_batch_size", 0)) > 0
        gpu = args.get("model_instance_kind") == "GPU"
        device = f"cuda:{int(args.get('model_instance_device_id') or 0)}" if gpu else "cpu"
        threads = int(params.get("pack_threads") or 0)
        names = self.model_io(params) if self.steps else (self.inputs, [name for name, _ in self.outputs])
        signature = params.get("pack_signature") and {
            "file": params["pack_signature"],
            "public_key": params.get("pack_public_key", ""),
            "signed_name": params.get("pack_signed_name", ""),
        }
        refused = refusal(folder, path, signature or None)
        if refused:  # nothing unverified is loaded: the load fails with the reason (a loaded version keeps serving)
            _log("error", f"pack: {args.get('model_name', '')} v{args['model_version']}: {refused}")
            raise pb_utils.TritonModelException(refused)
        self.model = load_model(path, fmt, device, threads, names[0], names[1])
        place = self.model.placement  # where the runtime put it (pack_runtime.placement): said once in the server log
        where = place.get("provider") or place.get("device")
        why = f" ({place['reason']})" if place.get("reason") else ""
        _log("info", f"pack: {args.get('model_name', '')} v{args['model_version']} runs on {where}{why}")

    @staticmethod
    def model_io(params):
        """The export's own input and output names where the steps wrap it (the config names the client's)."""
        return [params.get("pack_model_input", "images")], [params.get("pack_model_output", "output0")]

    def _detect(self, requests):
        responses = []
        for request in requests:
            try:
                pixels, meta = self.yolo.pixels(pb_utils.get_input_tensor_by_name(request, "image").as_numpy())
            except RequestError as exc:
                responses.append(_client_error(str(exc)))
                continue
            try:
                found = self.yolo.detections(np.asarray(self.model([pixels])[0]), meta)
                tensors = [
                    pb_utils.Tensor(name, array[None] if self.batchable else array)
                    for (name, _), array in zip(self.outputs, found)  # noqa: B905 - runs in the serving image's Python, which may predate 3.10 (no zip(strict=))
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:
                responses.append(_error(exc))
        return responses

    def _response(self, results):
        arrays = [
            (name, np.ascontiguousarray(result).astype(dtype, copy=False))
            for (name, dtype), result in zip(self.outputs, results)  # noqa: B905 - runs in the serving image's Python, which may predate 3.10 (no zip(strict=))
        ]
        for name, array in arrays:
            problem = non_finite(name, array)
            if problem:
                return _client_error(problem)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(name, array) for name, array in arrays])

    def execute(self, requests):
        if self.steps:
            return self._detect(requests)
        responses = [None] * len(requests)
        items, positions = [], []
        for i, request in enumerate(requests):
            try:
                items.append([pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs])
                positions.append(i)
            except Exception as exc:
                responses[i] = _error(exc)
        for i, result in zip(positions, run_batched(self.model, items, self.batchable, isolate=True)):  # noqa: B905 - runs in the serving image's Python, which may predate 3.10 (no zip(strict=))
            try:
                responses[i] = _error(result) if isinstance(result, Exception) else self._response(result)
            except Exception as exc:
                responses[i] = _error(exc)
        return responses

    def finalize(self):
        self.model = None
