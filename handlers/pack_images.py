"""Image helpers of pack's handlers: decode, classification transforms, letterbox, NMS. numpy and Pillow only."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np

from pack_runtime import RequestError

IMAGE_KEYS = ("image", "data", "b64", "instances")


def image_bytes(body: Any, doc: Any) -> bytes:
    """Raw image bytes from a raw/multipart body, or base64 in JSON ({"image": "<base64>"} or a bare string)."""
    if doc is not None:
        value = doc
        if isinstance(doc, dict):
            value = next((doc[k] for k in IMAGE_KEYS if doc.get(k) is not None), None)
            if value is None:
                raise RequestError('JSON requests need "image": "<base64 JPEG/PNG>" (or "inputs": [...] for raw tensors)')
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if not isinstance(value, str):
            raise RequestError('"image" must be a base64 string of a JPEG or PNG file')
        return b64(value)
    if isinstance(body, str):
        return b64(body)
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    raise RequestError(f"cannot read an image from a {type(body).__name__} body")


def b64(text: str) -> bytes:
    if text.startswith("data:") and "," in text:  # data URL
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("the image is not valid base64") from None


def open_rgb(data: bytes) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise RequestError(f"the body is not a readable image (JPEG/PNG): {str(exc)[:120]}") from None
    except Exception as exc:  # a plugin of an imported library (ultralytics patches Image.open) failed on the bytes
        raise RequestError(f"the body is not a readable image (JPEG/PNG): {type(exc).__name__}: {str(exc)[:120]}") from None
    return image.convert("RGB")


def classification_tensor(image: Any, pre: dict[str, Any]) -> np.ndarray:
    """Resize the short side to `resize`, centre-crop `crop`, scale to [0, 1], normalise: (1, 3, H, W) float32.

    The same arithmetic as torchvision's Resize(int) + CenterCrop + ToTensor + Normalize on a PIL image.
    """
    from PIL import Image

    height, width = pre.get("image_size", [224, 224])
    resize = pre.get("resize")
    crop = pre.get("crop") or [height, width]
    crop_h, crop_w = (crop, crop) if isinstance(crop, int) else crop
    if resize:
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = int(resize), int(int(resize) * long / short)
        size = (new_short, new_long) if w <= h else (new_long, new_short)
        if size != (w, h):
            image = image.resize(size, Image.BILINEAR)
    else:
        image = image.resize((width, height), Image.BILINEAR)
    w, h = image.size
    top = int(round((h - crop_h) / 2.0))
    left = int(round((w - crop_w) / 2.0))
    image = image.crop((left, top, left + crop_w, top + crop_h))
    arr = np.asarray(image, dtype=np.float32) / 255.0
    mean = np.asarray(pre.get("mean", [0.0, 0.0, 0.0]), dtype=np.float32)
    std = np.asarray(pre.get("std", [1.0, 1.0, 1.0]), dtype=np.float32)
    arr = (arr - mean) / std
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None].astype(np.float32))


def letterbox(image: Any, size: tuple[int, int], pad_value: int = 114, scale: float = 1 / 255.0) -> tuple[np.ndarray, dict[str, float]]:
    """Resize keeping the aspect ratio and pad to `size` (H, W), centred as Ultralytics does. (1, 3, H, W) float32."""
    from PIL import Image

    height, width = size
    w0, h0 = image.size
    r = min(height / h0, width / w0)
    new_w, new_h = int(round(w0 * r)), int(round(h0 * r))
    if (new_w, new_h) != (w0, h0):
        image = image.resize((new_w, new_h), Image.BILINEAR)
    dw, dh = (width - new_w) / 2, (height - new_h) / 2
    left, top = int(round(dw - 0.1)), int(round(dh - 0.1))
    canvas = Image.new("RGB", (width, height), (pad_value,) * 3)
    canvas.paste(image, (left, top))
    arr = np.asarray(canvas, dtype=np.float32) * np.float32(scale)
    tensor = np.ascontiguousarray(arr.transpose(2, 0, 1)[None])
    return tensor, {"ratio": r, "left": left, "top": top, "width": w0, "height": h0}


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int | None = None) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first (torchvision.ops.nms's rule).

    Stops after `limit` boxes: the rest could only be dropped by max_detections anyway."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep = []
    while order.size and (limit is None or len(keep) < limit):
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def yolov8_detections(
    pred: np.ndarray,
    geometry: dict[str, float],
    conf_threshold: float,
    iou_threshold: float,
    max_detections: int,
    labels: list[str] | None,
) -> list[dict[str, Any]]:
    """Raw YOLOv8 head output for one image, (4 + classes, anchors), -> detections in original image pixels."""
    pred = np.asarray(pred, dtype=np.float32)
    boxes_cxcywh, class_scores = pred[:4].T, pred[4:].T
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(class_scores.shape[0]), class_ids]
    mask = scores > conf_threshold
    boxes_cxcywh, scores, class_ids = boxes_cxcywh[mask], scores[mask], class_ids[mask]
    if scores.size == 0:
        return []
    cx, cy, w, h = boxes_cxcywh.T
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    offset = class_ids[:, None].astype(np.float32) * 7680.0  # class-aware NMS: boxes of different classes never overlap
    keep = nms(boxes + offset, scores, iou_threshold, max_detections)
    boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - geometry["left"]) / geometry["ratio"]
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - geometry["top"]) / geometry["ratio"]
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, geometry["width"])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, geometry["height"])
    out = []
    for box, score, cls in zip(boxes, scores, class_ids):
        cls = int(cls)
        out.append(
            {
                "label": labels[cls] if labels and cls < len(labels) else str(cls),
                "class_id": cls,
                "score": float(score),
                "box": [round(float(v), 2) for v in box],  # x1, y1, x2, y2 in original image pixels
            }
        )
    return out
