"""Triton python-backend model written by pack (copied as `<name>_preprocess/<version>/model.py`): the YOLO
ensemble's pre-processing, with the shared runtime's decoding and letterbox (pack_images.py, copied beside it; the
TorchServe detector handler runs the same functions).

Input  `image`  UINT8 [-1]: the bytes of one encoded image (JPEG, PNG, ...).
Output `pixels` FP32 [1, 3, H, W]: RGB, letterboxed to H x W (aspect ratio kept, padded with pack_pad_value), scaled
                by pack_scale; `meta` FP32 [5]: ratio, left, top, original width, original height (what the
                post-processing needs to map boxes back to the original image).
Parameters (config.pbtxt): pack_image_size "H,W", pack_pad_value, pack_scale, pack_max_pixels (the
pixel budget of one image: a larger one is refused from its header with INVALID_ARG, HTTP 400). Needs numpy<2 and Pillow.
"""

import json
import os
import sys

# Triton's stub appends the version folder to sys.path after site-packages; put it first, so the runtime files pack
# copied beside this model.py are the ones imported.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import triton_python_backend_utils as pb_utils  # noqa: E402
from pack_images import YoloSteps  # noqa: E402
from pack_runtime import RequestError  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.steps = YoloSteps(params)
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                pixels, meta = self.steps.pixels(pb_utils.get_input_tensor_by_name(request, "image").as_numpy())
                if self.batched:
                    meta = meta[None]
                responses.append(
                    pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("pixels", pixels), pb_utils.Tensor("meta", meta)])
                )
            except RequestError as exc:  # the client's image: a 400
                responses.append(pb_utils.InferenceResponse(error=client_error(str(exc))))
            except Exception as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")))
        return responses


def client_error(message):
    """A TritonError Triton answers with HTTP 400 (INVALID_ARG); a python backend without error codes (before
    23.xx) takes the message alone, and Triton answers 500."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    if code is None:
        return pb_utils.TritonError(message)
    return pb_utils.TritonError(message, code)
