"""Model families that need the same preparation wherever the model comes from: a built-in entry, a user's
`file.py:factory`, or a pickled checkpoint. One small entry per family (like optimum's per-architecture configs):
how to recognise it, how to put it in the state its own exporter uses, and its default inputs and task.

    ultralytics   any ultralytics model (detect, segment, pose, obb, classify): fused, heads in export mode, the
                  detection anchor grid rebuilt in the graph; inputs `images` 1x3x640x640 in [0, 1]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..registry import TensorSpec, Tolerance


@dataclass(frozen=True)
class Family:
    name: str
    matches: Callable[[Any], bool]
    prepare: Callable[[Any], Any]
    inputs: Callable[[Any], list[TensorSpec]]
    task: Callable[[Any], str] = lambda model: "generic"
    tolerance: Tolerance | None = None
    postprocessing: Callable[[Any], dict[str, Any]] = lambda model: {}
    preprocessing: dict[str, Any] = field(default_factory=dict)


def _is_ultralytics(model: Any) -> bool:
    return type(model).__module__.startswith("ultralytics.")


def _ultralytics_head(model: Any) -> Any:
    heads = [m for m in model.modules() if type(m).__module__.startswith("ultralytics.nn.modules.head")]
    return heads[-1] if heads else None


def prepare_ultralytics(model: Any) -> Any:
    """What ultralytics' own exporter does: fuse, eval, every head in export mode returning its raw tensors, and the
    detection anchor grid rebuilt from the feature shapes in the graph (`dynamic`) instead of cached behind
    `if self.shape != shape`, a tensor-to-bool branch that a trace would bake in."""
    from ultralytics.nn.modules.head import Detect

    model = model.fuse() if hasattr(model, "fuse") else model
    model = model.float().eval()
    for module in model.modules():
        if type(module).__module__.startswith("ultralytics.nn.modules.head"):
            if hasattr(module, "export"):
                module.export = True
            if hasattr(module, "format"):
                module.format = "onnx"
        if isinstance(module, Detect):
            module.dynamic = True
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _ultralytics_task(model: Any) -> str:
    head = _ultralytics_head(model)
    return "object-detection" if head is not None and type(head).__name__ == "Detect" else "generic"


def _ultralytics_post(model: Any) -> dict[str, Any]:
    if _ultralytics_task(model) != "object-detection":
        return {}
    return {"format": "yolov8", "conf_threshold": 0.25, "iou_threshold": 0.45, "max_detections": 300}


FAMILIES: tuple[Family, ...] = (
    Family(
        "ultralytics",
        matches=_is_ultralytics,
        prepare=prepare_ultralytics,
        inputs=lambda model: [TensorSpec("images", (1, 3, 640, 640), "float32", (0,), range=(0.0, 1.0))],
        task=_ultralytics_task,
        tolerance=Tolerance(atol=1e-3, rtol=1e-3),
        postprocessing=_ultralytics_post,
        preprocessing={"image_size": [640, 640], "letterbox": True, "pad_value": 114, "scale": 1 / 255.0},
    ),
)


def family_of(model: Any) -> Family | None:
    return next((f for f in FAMILIES if f.matches(model)), None)


__all__ = ["FAMILIES", "Family", "family_of", "prepare_ultralytics"]
