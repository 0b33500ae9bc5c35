"""TorchServe handler for image classification models packaged by pack.

Request: JPEG/PNG bytes (raw body or a multipart field), or JSON {"image": "<base64>", "top_k": 3}.
Answer: {"predictions": [{"label", "class_id", "score"}, ...]}, top-k by softmax probability (labels.txt when shipped,
class ids otherwise). Resize/crop/normalisation come from the model's metadata (pack.json); top_k from
model-config.yaml (`handler: top_k`), overridable per request (a JSON field, or a multipart form field beside the image).
Generic tensor JSON ({"inputs": [...]}) skips both steps and returns the raw logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pack_images import classification_tensor, image_bytes, max_pixels, open_rgb
from pack_requests import whole_number
from pack_torchserve import PackHandler, entry_point, request_param


class ImageClassifier(PackHandler):
    def setup(self) -> None:
        post = self.settings.get("postprocessing") or {}
        self.top_k = int(self.settings["handler"].get("top_k") or post.get("top_k") or 5)
        self.softmax = bool(self.settings["handler"].get("softmax", post.get("softmax", True)))
        self.labels = self.settings.get("labels")

    def preprocess_one(self, request: dict[str, Any], body: Any, doc: Any) -> tuple[list[np.ndarray], Any]:
        top_k = request_param(request, doc, "top_k", whole_number, self.top_k)
        pre = self.settings.get("preprocessing") or {}
        image = open_rgb(image_bytes(body, doc), max_pixels(pre))
        return [classification_tensor(image, pre)], top_k

    def postprocess_one(self, outputs: list[np.ndarray], top_k: Any) -> Any:
        logits = np.asarray(outputs[0], dtype=np.float64).reshape(-1)
        if self.softmax:
            e = np.exp(logits - logits.max())
            scores = e / e.sum()
        else:
            scores = logits
        order = np.argsort(-scores, kind="stable")[: max(1, top_k)]
        return {
            "predictions": [
                {
                    "label": self.labels[i] if self.labels and i < len(self.labels) else str(int(i)),
                    "class_id": int(i),
                    "score": float(scores[i]),
                }
                for i in order
            ]
        }


handle = entry_point(ImageClassifier)
