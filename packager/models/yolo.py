"""`yolov8n`: Ultralytics YOLOv8-nano detector, built offline from its architecture file.

The exported graph is the raw head output (N, 84, 8400): 4 box coordinates (cx, cy, w, h in input pixels) and 80
class scores per anchor, without NMS; the handlers letterbox the image before and run NMS after. It is prepared for
export like every ultralytics model (packager/build/families.py).
"""

import os
from typing import Any

from ..registry import OutputSpec, TensorSpec, Tolerance, register_model


def _coco_names() -> list[str]:
    from importlib.resources import files

    import yaml

    data = yaml.safe_load((files("ultralytics") / "cfg" / "datasets" / "coco.yaml").read_text())
    names: dict[int, str] = data["names"]
    return [names[i] for i in sorted(names)]


@register_model(
    "yolov8n",
    inputs=[TensorSpec("images", (1, 3, 640, 640), "float32", (0,), range=(0.0, 1.0))],
    outputs=[OutputSpec("output0")],
    task="object-detection",
    tolerance=Tolerance(atol=1e-3, rtol=1e-3),
    preprocessing={"image_size": [640, 640], "letterbox": True, "pad_value": 114, "scale": 1 / 255.0},
    postprocessing={
        "format": "yolov8",
        "conf_threshold": 0.25,
        "iou_threshold": 0.45,
        "max_detections": 300,
    },
    labels=_coco_names,
    requires=("ultralytics",),
    weights="ultralytics",
)
def yolov8n() -> Any:
    """Ultralytics YOLOv8n object detector, 640x640, 80 COCO classes (3.2M parameters)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")  # ultralytics must never pip-install into pack's environment
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel("yolov8n.yaml", ch=3, nc=80, verbose=False)  # type: ignore[no-untyped-call]  # ultralytics ships no annotations for it
