"""Triton python-backend model written by pack: detection pre-processing for the ensemble.

Input  `image`  UINT8 [-1]: the bytes of one encoded image (JPEG, PNG, ...).
Output `pixels` FP32 [1, 3, H, W]: RGB, letterboxed to H x W (aspect ratio kept, padded with pack_pad_value), scaled
                by pack_scale; `meta` FP32 [5]: ratio, pad_x, pad_y, original width, original height (what the
                post-processing needs to map boxes back to the original image).
Parameters (config.pbtxt): pack_image_size "H,W", pack_pad_value, pack_scale. Needs numpy<2 and Pillow.
"""

import io
import json

import numpy as np
import triton_python_backend_utils as pb_utils


def letterbox(image, height, width, pad_value):
    w0, h0 = image.size
    ratio = min(height / h0, width / w0)
    new_w, new_h = int(round(w0 * ratio)), int(round(h0 * ratio))
    if (new_w, new_h) != (w0, h0):
        from PIL import Image

        image = image.resize((new_w, new_h), Image.BILINEAR)
    dw, dh = (width - new_w) / 2, (height - new_h) / 2
    left, top = int(round(dw - 0.1)), int(round(dh - 0.1))
    canvas = np.full((height, width, 3), pad_value, dtype=np.uint8)
    canvas[top : top + new_h, left : left + new_w] = np.asarray(image, dtype=np.uint8)
    return canvas, ratio, left, top


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.height, self.width = (int(x) for x in params.get("pack_image_size", "640,640").split(","))
        self.pad_value = int(float(params.get("pack_pad_value", "114")))
        self.scale = float(params.get("pack_scale", str(1 / 255.0)))
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests):
        from PIL import Image

        responses = []
        for request in requests:
            try:
                data = pb_utils.get_input_tensor_by_name(request, "image").as_numpy()
                image = Image.open(io.BytesIO(data.astype(np.uint8).tobytes())).convert("RGB")
                w0, h0 = image.size
                canvas, ratio, left, top = letterbox(image, self.height, self.width, self.pad_value)
                pixels = (canvas.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(self.scale))
                meta = np.array([ratio, left, top, w0, h0], dtype=np.float32)
                if self.batched:
                    meta = meta[None]
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[pb_utils.Tensor("pixels", np.ascontiguousarray(pixels)), pb_utils.Tensor("meta", meta)]
                    )
                )
            except Exception as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"cannot decode the image: {type(exc).__name__}: {exc}")))
        return responses
