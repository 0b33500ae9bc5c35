"""`tiny`: a very small image classifier (3x32x32 -> 10 classes) for fast tests and smoke runs."""

from typing import Any

from ..registry import OutputSpec, TensorSpec, Tolerance, register_model


@register_model(
    "tiny",
    inputs=[TensorSpec("input", (1, 3, 32, 32), "float32", (0,))],
    outputs=[OutputSpec("logits")],
    task="image-classification",
    tolerance=Tolerance(atol=1e-5, rtol=1e-4),
    preprocessing={"image_size": [32, 32], "resize": 32, "crop": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    postprocessing={"top_k": 5},
    labels=lambda: [f"class_{i}" for i in range(10)],
)
def tiny() -> Any:
    """A 3x32x32 image classifier with 10 classes and about 1k parameters (tests)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
