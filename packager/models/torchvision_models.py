"""torchvision classifiers, built with `weights=None` (random init unless `--weights` is given)."""

from collections.abc import Callable
from typing import Any

from ..registry import IMAGENET_PREPROCESSING, OutputSpec, TensorSpec, Tolerance, register_model


def _imagenet_labels(weights_enum: str) -> Callable[[], list[str]]:
    def labels() -> list[str]:
        import torchvision.models as tvm

        # The category names ship inside torchvision: reading them downloads nothing.
        return list(getattr(tvm, weights_enum).IMAGENET1K_V1.meta["categories"])

    return labels


def _torchvision(name: str, weights_enum: str, description: str) -> Callable[[], Any]:
    @register_model(
        name,
        inputs=[TensorSpec("input", (1, 3, 224, 224), "float32", (0,))],
        outputs=[OutputSpec("logits")],
        task="image-classification",
        description=description,
        tolerance=Tolerance(atol=1e-4, rtol=1e-3),
        preprocessing=IMAGENET_PREPROCESSING,
        postprocessing={"top_k": 5},
        labels=_imagenet_labels(weights_enum),
    )
    def factory() -> Any:
        import torchvision.models as tvm

        return getattr(tvm, name)(weights=None)

    return factory


_torchvision("resnet18", "ResNet18_Weights", "torchvision ResNet-18, ImageNet classifier (11.7M parameters)")
_torchvision("resnet50", "ResNet50_Weights", "torchvision ResNet-50, ImageNet classifier (25.6M parameters)")
_torchvision(
    "mobilenet_v3_small",
    "MobileNet_V3_Small_Weights",
    "torchvision MobileNetV3-Small, ImageNet classifier (2.5M parameters)",
)
