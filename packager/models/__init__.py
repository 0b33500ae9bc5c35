"""Built-in model entries. Importing this package registers them; it must not import torch."""

from . import tiny, torchvision_models, yolo  # noqa: F401
