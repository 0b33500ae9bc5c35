"""What a model served by an older server is, as facts pack can migrate from (`pack migrate`, packager/migrate/).

A target that can read its own server's model format (a TorchServe `.mar`, a Triton model folder) has the
`Migratable` capability (capabilities.py): it reads a source into a `MigrationSource` without running any of its
code, extracts the files a build needs, and asks a running old endpoint for its answer to one request. The rest of
pack sees only these facts, never the formats themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_CLASSIFICATION = "image-classification"  # pack's task (packager/serve/tasks.py) for a classifier source
GENERIC = "generic"

# The input TorchServe's vision handlers give a model: one RGB image resized to 256, centre-cropped to 224 and
# normalised with ImageNet's statistics (ts/torch_handler/image_classifier.py, image_segmenter.py).
VISION_INPUT = {"name": "input", "shape": [1, 3, 224, 224], "dtype": "float32", "dynamic_axes": [0]}
# TorchServe's object_detector gives a detection model the image as it came (ToTensor: [0, 1], no resize, no
# normalisation), one image a call; the example is 320 x 320, and height and width may change.
DETECTION_INPUT = {"name": "images", "shape": [1, 3, 320, 320], "dtype": "float32", "dynamic_axes": [2, 3], "range": [0, 1]}
# TorchServe's text_classifier gives the model (token ids of one text, offsets [0]) for its EmbeddingBag; the ids'
# range is the vocabulary's size (read from the weights: packager/migrate/source.py `vocabulary`).
TEXT_INPUT = {"name": "text", "shape": [16], "dtype": "int64", "dynamic_axes": ["tokens@0"], "range": [0, 2]}
TEXT_OFFSETS = {"name": "offsets", "shape": [1], "dtype": "int64", "dynamic_axes": [], "fill": "zeros"}
IMAGE_ANSWERS = ("classes", "segments", "boxes")  # answers to an image request


@dataclass
class MigrationSource:
    """A model served by an older server, read as facts.

    `model_file` is Python code (an eager model class, imported only when the user trusts the archive's code);
    without it `serialized_file` is a TorchScript module. `handler` is the old server's handler (a built-in name, a
    file of the archive, or the Triton platform); `answers` says how its endpoint answers a request: "classes" (a
    TorchServe image classifier's {label: probability}), "segments" (an image segmenter's class and probability per
    pixel), "boxes" (an object detector's [{label: box, "score": s}]), "tensors" (the model's outputs), or "custom"
    and "text-classes" (a handler whose requests pack cannot make: only the model can be compared). `inputs` are
    spec entries (pack.yaml's `inputs`), empty when the source does not say (the user passes --input)."""

    path: Path
    sha256: str
    reader: str  # the target that read it (its endpoints are asked with --against)
    kind: str  # what it is, for people: "TorchServe .mar (eager)", "Triton pytorch_libtorch folder"
    model_name: str
    handler: str
    serialized_file: str
    model_file: str | None = None
    model_class: str | None = None  # the one class the model file defines (TorchServe instantiates it)
    task: str = GENERIC
    answers: str = "tensors"
    archive_code: tuple[str, ...] = ()  # the source's Python files a migration imports (its model file)
    labels: list[str] | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    top_k: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # carried over: batch_size, max_batch_delay_ms, workers
    notes: list[str] = field(default_factory=list)  # what is not carried over, and why

    @property
    def torchscript(self) -> bool:
        return self.model_file is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "server": self.reader,
            "kind": self.kind,
            "model_name": self.model_name,
            "handler": self.handler,
            "task": self.task,
            "model_file": self.model_file,
            "serialized_file": self.serialized_file,
            "archive_code": list(self.archive_code),
            "labels": len(self.labels) if self.labels else 0,
            "inputs": self.inputs,
            "settings": self.settings,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Extracted:
    """The source's files a build needs, written under a folder of pack's: the model (a TorchScript file, or an eager
    class's weights beside `model_file`) and, for a custom handler, the handler file (kept for people to read)."""

    model: Path
    model_file: Path | None = None
