"""Triton python-backend model written by pack (copied as `<name>_postprocess/<version>/model.py`): the YOLO
ensemble's post-processing, with the shared runtime's YOLO decoding and NMS (pack_images.yolo_decode, copied beside
it; the TorchServe detector handler runs the same function).

Inputs  `raw`  FP32 [1, 4 + classes, anchors]: the detector's head output (cx, cy, w, h in letterboxed pixels, then
               one score per class); `meta` FP32 [5]: ratio, left, top, original width, original height.
Outputs `boxes` FP32 [K, 4] (x1, y1, x2, y2 in original image pixels), `scores` FP32 [K], `classes` INT32 [K], after
        a confidence threshold and class-aware non-maximum suppression.
Parameters (config.pbtxt): pack_conf_threshold, pack_iou_threshold, pack_max_detections. Needs numpy<2.
"""

import json
import os
import sys

# Triton's stub appends the version folder to sys.path after site-packages; put it first, so the runtime files pack
# copied beside this model.py are the ones imported.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import triton_python_backend_utils as pb_utils  # noqa: E402
from pack_images import YoloSteps  # noqa: E402


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
                raw = pb_utils.get_input_tensor_by_name(request, "raw").as_numpy()
                meta = pb_utils.get_input_tensor_by_name(request, "meta").as_numpy()
                boxes, scores, classes = self.steps.detections(raw, meta)
                if self.batched:
                    boxes, scores, classes = boxes[None], scores[None], classes[None]
                tensors = [
                    pb_utils.Tensor("boxes", boxes),
                    pb_utils.Tensor("scores", scores),
                    pb_utils.Tensor("classes", classes),
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")))
        return responses
