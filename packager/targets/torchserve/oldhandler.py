"""A migrated archive's handler run in this process as a TorchServe worker runs it: TorchServe's built-in handler
classes, or (the user trusting the archive's code) the archive's own handler class. `answer` runs its steps on one
request's body with the archive's model, or with another model in its place (the migrated build: numpy in, numpy
out), so the old pre- and post-processing can be kept around the new model and the two answers compared.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import EnvironmentProblem, PackError, UsageError, ValidationFailed
from ..migration import Extracted, MigrationSource

BUILTIN_CLASSES = {
    "image_classifier": "ImageClassifier",
    "image_segmenter": "ImageSegmenter",
    "object_detector": "ObjectDetector",
    "text_classifier": "TextClassifier",
}
FAILS_ALIKE = "TorchServe would fail the same way on these files: check the archive (and --sample)"
Model = Callable[[list[np.ndarray]], list[np.ndarray]]
_LOADED: dict[tuple[str, str], Any] = {}


class _NoMetrics:
    """What TorchServe's handlers record their timings into, when they run outside TorchServe."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class _InPlace:
    """Stands in for the handler's model: the handler's tensors to numpy, `run`, and its outputs back to tensors."""

    def __init__(self, run: Model):
        self.run = run

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import torch

        outputs = [torch.from_numpy(np.ascontiguousarray(o)) for o in self.run([a.detach().cpu().numpy() for a in args])]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _handler_class(source: MigrationSource, folder: Path) -> Any:
    if source.handler in BUILTIN_CLASSES:
        return getattr(importlib.import_module(f"ts.torch_handler.{source.handler}"), BUILTIN_CLASSES[source.handler])
    file, _, function = source.handler.partition(":")
    name = Path(file).stem
    if function:
        raise UsageError(
            f"{source.path}: its handler is the function {source.handler}, whose steps cannot be run apart",
            "drop --sample and --against: the model alone is then compared",
        )
    if not (folder / f"{name}.py").is_file():
        raise UsageError(f"{source.path}: its handler {source.handler} is not a Python file of the archive", "check the archive")
    module = importlib.import_module(name)
    classes = [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module.__name__]
    steps = ("preprocess", "inference", "postprocess")
    if len(classes) != 1 or not all(callable(getattr(classes[0], s, None)) for s in steps):
        raise UsageError(
            f"{source.path}: its handler {source.handler} is not one class with preprocess, inference and postprocess",
            "drop --sample and --against: the model alone is then compared",
        )
    return classes[0]


def _handler(source: MigrationSource, found: Extracted) -> Any:
    """The handler, set up once per extracted source (its model loaded by its own `initialize`)."""
    from ts.context import Context, RequestProcessor

    from ...console import captured, on_purpose

    folder = found.model.parent
    key = (str(folder), source.handler)
    if key in _LOADED:
        return _LOADED[key]
    model = {"serializedFile": found.model.name, "handler": source.handler, "modelName": source.model_name}
    if found.model_file is not None:
        model["modelFile"] = found.model_file.name
    context = Context(source.model_name, str(folder), {"model": model}, 1, None, "0.12.0", model_yaml_config={})
    context.request_processor = [RequestProcessor({})]
    context.metrics = _NoMetrics()
    sys.path.insert(0, str(folder))
    try:
        with captured(), on_purpose("torch.jit.load"):  # the handlers print what their optional runtimes lack
            handler = _handler_class(source, folder)()
            handler.initialize(context)
    finally:
        sys.path.remove(str(folder))
    _LOADED[key] = handler
    return handler


def answer(source: MigrationSource, found: Extracted, body: bytes, model: Model | None = None) -> Any:
    """The handler's answer to one request `body`: with the archive's model, or with `model` in its place."""
    from ...console import captured

    try:
        handler = _handler(source, found)
    except ImportError as exc:
        raise EnvironmentProblem(
            f"{source.handler} cannot run in this process ({exc})",
            "install what it imports (pip install 'pack-models[torchserve]')",
        ) from None
    except Exception as exc:
        raise ValidationFailed(f"{source.handler} failed to start on the archive's files: {_first(exc)}", FAILS_ALIKE) from None
    own = handler.model
    if model is not None:
        handler.model = _InPlace(model)
    try:
        with captured():
            return handler.postprocess(handler.inference(handler.preprocess([{"body": body}])))[0]
    except PackError:
        raise
    except Exception as exc:
        raise ValidationFailed(f"{source.handler} failed on a request: {_first(exc)}", FAILS_ALIKE) from None
    finally:
        handler.model = own


def _first(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
