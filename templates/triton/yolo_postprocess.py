"""Triton python-backend model written by pack: YOLOv8 post-processing for the ensemble.

Inputs  `raw`  FP32 [1, 4 + classes, anchors]: the detector's head output (cx, cy, w, h in letterboxed pixels, then
               one score per class); `meta` FP32 [5]: ratio, pad_x, pad_y, original width, original height.
Outputs `boxes` FP32 [K, 4] (x1, y1, x2, y2 in original image pixels), `scores` FP32 [K], `classes` INT32 [K], after
        a confidence threshold and class-aware non-maximum suppression.
Parameters (config.pbtxt): pack_conf_threshold, pack_iou_threshold, pack_max_detections. Needs numpy<2.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


def nms(boxes, scores, iou_threshold):
    """Greedy NMS on (N, 4) x1y1x2y2 boxes; returns kept indices, best first."""
    order = np.argsort(-scores, kind="stable")  # stable: ties keep anchor order on every numpy version
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = (xx2 - xx1).clip(0) * (yy2 - yy1).clip(0)
        iou = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def postprocess(raw, meta, conf, iou, max_det):
    pred = raw.reshape(raw.shape[-2], raw.shape[-1]).T  # (anchors, 4 + classes)
    class_scores = pred[:, 4:]
    classes = class_scores.argmax(1)
    scores = class_scores[np.arange(len(pred)), classes]
    mask = scores >= conf
    pred, scores, classes = pred[mask], scores[mask], classes[mask]
    cx, cy, w, h = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    if len(boxes):
        offset = classes[:, None].astype(np.float32) * 7680.0  # class-aware: boxes of different classes never overlap
        keep = nms(boxes + offset, scores, iou)[:max_det]
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    ratio, pad_x, pad_y, width, height = (float(v) for v in meta.reshape(-1)[:5])
    boxes = (boxes - np.array([pad_x, pad_y, pad_x, pad_y], dtype=np.float32)) / ratio
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes.astype(np.float32).reshape(-1, 4), scores.astype(np.float32), classes.astype(np.int32)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.conf = float(params.get("pack_conf_threshold", "0.25"))
        self.iou = float(params.get("pack_iou_threshold", "0.45"))
        self.max_det = int(params.get("pack_max_detections", "300"))
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                raw = pb_utils.get_input_tensor_by_name(request, "raw").as_numpy().astype(np.float32)
                meta = pb_utils.get_input_tensor_by_name(request, "meta").as_numpy()
                boxes, scores, classes = postprocess(raw, meta, self.conf, self.iou, self.max_det)
                if self.batched:
                    boxes, scores, classes = boxes[None], scores[None], classes[None]
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[pb_utils.Tensor("boxes", boxes), pb_utils.Tensor("scores", scores), pb_utils.Tensor("classes", classes)]
                    )
                )
            except Exception as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")))
        return responses
