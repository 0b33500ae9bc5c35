"""TorchServe handler for YOLOv8-style detectors packaged by pack (raw head output (N, 4 + classes, anchors)).

Request: JPEG/PNG bytes (raw body or multipart), or JSON {"image": "<base64>", "conf_threshold": 0.5}.
Steps: letterbox to the model size, run, confidence filter, class-aware NMS, boxes scaled back to the original image.
Answer: {"detections": [{"label", "class_id", "score", "box": [x1, y1, x2, y2]}], "image_size": [w, h]}.
Thresholds come from model-config.yaml (`handler:` conf_threshold, iou_threshold, max_detections) and can be
overridden per request (a JSON field, or a multipart form field beside the image); a request's max_detections is at
most the build's (postprocessing.max_detections, 300 by default): more is a 400, never 8,400 boxes. Generic tensor
JSON returns the raw head output.
Letterbox and decoding are pack_images' functions, the same ones the Triton ensemble runs (pack_triton_yolo_*.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pack_images import image_bytes, letterbox, max_pixels, open_rgb, yolov8_detections
from pack_requests import whole_number
from pack_runtime import RequestError
from pack_torchserve import PackHandler, entry_point, request_param


def _fraction(value: Any) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(number)
    return number


_fraction.__name__ = "number between 0 and 1"


class YoloDetector(PackHandler):
    def setup(self) -> None:
        post = self.settings.get("postprocessing") or {}
        hand = self.settings["handler"]
        self.conf = float(hand.get("conf_threshold", post.get("conf_threshold", 0.25)))
        self.iou = float(hand.get("iou_threshold", post.get("iou_threshold", 0.45)))
        self.max_det = int(hand.get("max_detections", post.get("max_detections", 300)))
        self.labels = self.settings.get("labels")
        pre = self.settings.get("preprocessing") or {}
        self.size = tuple(pre.get("image_size") or self.inputs[0]["shape"][2:4])
        self.pad = int(pre.get("pad_value", 114))
        self.scale = float(pre.get("scale", 1 / 255.0))
        self.max_pixels = max_pixels(pre)

    def preprocess_one(self, request: dict[str, Any], body: Any, doc: Any) -> tuple[list[np.ndarray], Any]:
        options = {
            "conf_threshold": request_param(request, doc, "conf_threshold", _fraction, self.conf),
            "iou_threshold": request_param(request, doc, "iou_threshold", _fraction, self.iou),
            "max_detections": request_param(request, doc, "max_detections", whole_number, self.max_det),
        }
        if not 1 <= options["max_detections"] <= self.max_det:
            raise RequestError(
                f"max_detections={options['max_detections']} is out of range: this model answers 1 to {self.max_det} "
                "detections per image (the build's postprocessing.max_detections); send a value in that range"
            )
        image = open_rgb(image_bytes(body, doc), self.max_pixels)
        tensor, geometry = letterbox(image, self.size, self.pad, self.scale)
        return [tensor], (geometry, options)

    def postprocess_one(self, outputs: list[np.ndarray], state: Any) -> Any:
        geometry, options = state
        detections = yolov8_detections(outputs[0][0], geometry, labels=self.labels, **options)
        return {"detections": detections, "image_size": [int(geometry["width"]), int(geometry["height"])]}


handle = entry_point(YoloDetector)
