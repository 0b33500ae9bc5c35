"""pack's serving runtime, the image part every server shares: decoding, classification transforms (resize, crop,
normalise), letterbox, YOLO decoding and NMS. numpy and Pillow only.

The TorchServe handlers and the Triton ensemble's pre/post-processing models both call these functions, so the two
servers turn the same image into the same pixels and the same head output into the same detections. Box arithmetic
is float32 throughout with the letterbox geometry rounded to float32 (what the Triton ensemble carries between its
steps), so numpy 1 and numpy 2 environments compute the same numbers.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from typing import Any

import numpy as np
from pack_runtime import RequestError, without_reprs

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
        raise RequestError(not_an_image(text.encode("utf-8", "replace"), "text that is not base64")) from None


DEFAULT_MAX_PIXELS = 40_000_000  # the pixel budget of one image (width x height), checked from its header
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # one channel of more than 8 bits


def max_pixels(pre: Any) -> int:
    """The pixel budget of a build's pre-processing settings (`max_pixels`), else DEFAULT_MAX_PIXELS."""
    value = (pre or {}).get("max_pixels") if isinstance(pre, dict) else None
    try:
        return int(value) if value else DEFAULT_MAX_PIXELS
    except (TypeError, ValueError):
        return DEFAULT_MAX_PIXELS


def too_large(width: int, height: int, budget: int) -> str:
    return (
        f"image too large: {width}x{height} is {width * height:,} pixels, over this model's limit of {budget:,}; "
        "send a smaller image (the limit is preprocessing.max_pixels in pack.yaml)"
    )


def open_rgb(data: bytes, budget: int = DEFAULT_MAX_PIXELS) -> Any:
    """The one decoding policy of both servers: an 8-bit RGB PIL image from encoded bytes.

    The pixel budget is checked from the header, before any pixel is decoded (Pillow's own decompression-bomb error
    is the same refusal); the EXIF orientation is applied; 16-bit and 32-bit grey levels are scaled to 8 bits (not
    clipped); palette, grey, CMYK and alpha images become RGB (alpha dropped, as Pillow's convert("RGB") does).
    Anything else is a RequestError (a 400)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # over Pillow's warning size: refused below when over the budget
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise RequestError(f"image too large: {exc}; send a smaller image") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise RequestError(not_an_image(data, str(exc))) from None
    except Exception as exc:  # a plugin of an imported library (ultralytics patches Image.open) failed on the bytes
        raise RequestError(not_an_image(data, f"{type(exc).__name__}: {exc}")) from None
    width, height = image.size
    if width * height > budget:
        raise RequestError(too_large(width, height, budget))
    try:
        image.load()
        return to_rgb(upright(image))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise RequestError(not_an_image(data, str(exc))) from None


def upright(image: Any) -> Any:
    """The image turned as its EXIF orientation tag says (cameras store it sideways and set the tag)."""
    from PIL import ImageOps

    try:
        turned = ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block: the pixels are still an image, shown as stored
        return image
    return turned if turned is not None else image


def to_rgb(image: Any) -> Any:
    """8-bit RGB: more-than-8-bit grey levels divided by 257 (65535 -> 255), palette through RGBA, the rest by Pillow."""
    from PIL import Image

    if image.mode in SIXTEEN_BIT_MODES:
        arr = np.asarray(image)
        if arr.dtype.kind == "f":
            arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        else:
            arr = np.rint(arr.astype(np.float64) / 257.0)
        image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    elif image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def not_an_image(data: bytes, why: str = "") -> str:
    """The one message for a body that does not decode as an image: its first bytes, what the decoder said."""
    head = bytes(data[:24])
    shown = f"first bytes {head!r}" if head else "an empty body"
    why = without_reprs(why)  # Pillow names its file object ("cannot identify image file <_io.BytesIO object ...>")
    detail = f"; {why[:120]}" if why and head else ""
    return f'not an image ({shown}{detail}): send the bytes of a JPEG or PNG file, or JSON {{"image": "<base64>"}}'


def classification_tensor(image: Any, pre: dict[str, Any]) -> np.ndarray:
    """Resize the short side to `resize`, centre-crop `crop`, scale to [0, 1], normalise: (1, 3, H, W) float32.

    The same arithmetic as torchvision's Resize(int) + CenterCrop + ToTensor + Normalize on a PIL image.
    """

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
            image = image.resize(size, _bilinear())
    else:
        image = image.resize((width, height), _bilinear())
    w, h = image.size
    top = int(round((h - crop_h) / 2.0))
    left = int(round((w - crop_w) / 2.0))
    image = image.crop((left, top, left + crop_w, top + crop_h))
    arr = np.array(image, dtype=np.float32)  # one float32 copy, changed in place: the same values, fewer passes
    arr /= np.float32(255.0)
    arr -= np.asarray(pre.get("mean", [0.0, 0.0, 0.0]), dtype=np.float32)
    arr /= np.asarray(pre.get("std", [1.0, 1.0, 1.0]), dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])


def _bilinear() -> Any:
    """PIL's bilinear filter: `Image.Resampling.BILINEAR` (Pillow 9.1 and later), else the older alias of the same
    name on `Image`, which every Pillow a server may have knows."""
    from PIL import Image

    return getattr(Image, "Resampling", Image).BILINEAR


def letterbox(
    image: Any, size: tuple[int, int], pad_value: int = 114, scale: float = 1 / 255.0
) -> tuple[np.ndarray, dict[str, float]]:
    """Resize keeping the aspect ratio and pad to `size` (H, W), centred as Ultralytics does. (1, 3, H, W) float32."""
    from PIL import Image

    height, width = size
    w0, h0 = image.size
    r = min(height / h0, width / w0)
    new_w, new_h = int(round(w0 * r)), int(round(h0 * r))
    if (new_w, new_h) != (w0, h0):
        image = image.resize((new_w, new_h), _bilinear())
    dw, dh = (width - new_w) / 2, (height - new_h) / 2
    left, top = int(round(dw - 0.1)), int(round(dh - 0.1))
    canvas = Image.new("RGB", (width, height), (pad_value,) * 3)
    canvas.paste(image, (left, top))
    arr = np.asarray(canvas, dtype=np.float32) * np.float32(scale)
    tensor = np.ascontiguousarray(arr.transpose(2, 0, 1)[None])
    return tensor, {"ratio": r, "left": left, "top": top, "width": w0, "height": h0}


GEOMETRY = ("ratio", "left", "top", "width", "height")


def geometry_array(geometry: dict[str, float]) -> np.ndarray:
    """The letterbox geometry as the float32 vector the Triton ensemble passes on: ratio, left, top, width, height."""
    return np.asarray([geometry[k] for k in GEOMETRY], dtype=np.float32)


def geometry_of(meta: np.ndarray) -> dict[str, float]:
    """geometry_array's inverse (any leading batch axes are dropped)."""
    values = np.asarray(meta, dtype=np.float32).reshape(-1)[: len(GEOMETRY)]
    return {k: float(v) for k, v in zip(GEOMETRY, values)}  # noqa: B905 - runs in the serving image's Python, which may predate 3.10 (no zip(strict=))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int | None = None) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first (torchvision.ops.nms's rule; ties keep
    their input order on every numpy version). Stops after `limit` boxes: the rest could only be dropped by
    max_detections anyway."""
    order = np.argsort(-scores, kind="stable")
    threshold = np.asarray(iou_threshold, dtype=boxes.dtype)
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep: list[np.intp] = []
    while order.size and (limit is None or len(keep) < limit):
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, np.asarray(1e-9, dtype=boxes.dtype))
        order = rest[iou <= threshold]
    return np.asarray(keep, dtype=np.int64)


def yolo_decode(
    pred: np.ndarray, geometry: dict[str, float], conf_threshold: float, iou_threshold: float, max_detections: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw YOLOv8-format head output for one image, (4 + classes, anchors) (any leading axes of size 1 are dropped):
    cx, cy, w, h in letterboxed pixels, then one score per class. Keeps the best class of each anchor when its score is
    above `conf_threshold`, runs class-aware NMS, maps the boxes back to the original image and clips them.
    Returns boxes float32 (K, 4) x1, y1, x2, y2 in original pixels, scores float32 (K,), classes int32 (K,)."""
    pred = np.asarray(pred, dtype=np.float32)
    pred = pred.reshape(pred.shape[-2], pred.shape[-1])
    boxes_cxcywh, class_scores = pred[:4].T, pred[4:].T
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(class_scores.shape[0]), class_ids]
    mask = scores > np.float32(conf_threshold)
    boxes_cxcywh, scores, class_ids = boxes_cxcywh[mask], scores[mask], class_ids[mask]
    if scores.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32)
    cx, cy, w, h = boxes_cxcywh.T
    half_w, half_h = w / np.float32(2), h / np.float32(2)
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    offset = class_ids[:, None].astype(np.float32) * np.float32(7680)  # class-aware NMS: boxes of other classes never overlap
    keep = nms(boxes + offset, scores, iou_threshold, max(int(max_detections), 1))
    boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
    ratio, left, top, width, height = (np.float32(geometry[k]) for k in GEOMETRY)
    boxes = (boxes - np.asarray([left, top, left, top], dtype=np.float32)) / ratio
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(np.float32(0), width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(np.float32(0), height)
    return boxes.astype(np.float32), scores.astype(np.float32), class_ids.astype(np.int32)


def yolov8_detections(
    pred: np.ndarray,
    geometry: dict[str, float],
    conf_threshold: float,
    iou_threshold: float,
    max_detections: int,
    labels: list[str] | None,
) -> list[dict[str, Any]]:
    """yolo_decode's detections as JSON-ready dicts: label, class_id, score, box (x1, y1, x2, y2, 2 decimals)."""
    boxes, scores, classes = yolo_decode(pred, geometry, conf_threshold, iou_threshold, max_detections)
    out = []
    for box, score, cls in zip(boxes, scores, classes):  # noqa: B905 - runs in the serving image's Python, which may predate 3.10 (no zip(strict=))
        cls = int(cls)
        out.append(
            {
                "label": labels[cls] if labels and cls < len(labels) else str(cls),
                "class_id": cls,
                "score": float(score),
                "box": [round(float(v), 2) for v in box],
            }
        )
    return out


class YoloSteps:
    """The YOLO pre- and post-processing of a Triton model, set from its config.pbtxt parameters (strings):
    pack_image_size "H,W", pack_pad_value, pack_scale, pack_max_pixels; pack_conf_threshold, pack_iou_threshold,
    pack_max_detections. The ensemble's two steps and the one-instance model run these same two methods."""

    def __init__(self, params: dict[str, str]):
        height, width = (int(x) for x in params.get("pack_image_size", "640,640").split(","))
        self.size = (height, width)
        self.pad_value = int(float(params.get("pack_pad_value", "114")))
        self.scale = float(params.get("pack_scale", str(1 / 255.0)))
        self.max_pixels = int(float(params.get("pack_max_pixels", str(DEFAULT_MAX_PIXELS))))
        self.conf = float(params.get("pack_conf_threshold", "0.25"))
        self.iou = float(params.get("pack_iou_threshold", "0.45"))
        self.max_det = int(params.get("pack_max_detections", "300"))

    def pixels(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """An image's encoded bytes (a UINT8 tensor) -> its letterboxed pixels [1, 3, H, W] and geometry [5]; a
        RequestError (the client's) for bytes that are not an image or one over the pixel budget."""
        try:
            image = open_rgb(np.ascontiguousarray(data, dtype=np.uint8).tobytes(), self.max_pixels)
        except RequestError:
            raise
        except Exception as exc:
            raise RequestError(f"cannot decode the image: {type(exc).__name__}: {exc}") from exc
        pixels, geometry = letterbox(image, self.size, self.pad_value, self.scale)
        return pixels, geometry_array(geometry)

    def detections(self, raw: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The head's output and the geometry -> boxes (original pixels), scores and classes after NMS."""
        return yolo_decode(raw, geometry_of(meta), self.conf, self.iou, self.max_det)
