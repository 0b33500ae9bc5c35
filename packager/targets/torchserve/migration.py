"""A model archive made by torch-model-archiver (a `.mar`, its tgz or its no-archive folder: members.py), as a
migration source (`pack migrate`), read without running its code.

The manifest names the handler (a TorchServe built-in or a Python file of the archive), the model file (Python: an
eager model class, which TorchServe imports and instantiates with no arguments) and the serialized file (that class's
state dict, or a TorchScript module when there is no model file). `model-config.yaml` gives the batching and worker
settings, `index_to_name.json` the labels. Every member is read bounded and written under a name pack chooses.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from ...errors import UsageError, ValidationFailed
from ...registry import IMAGENET_PREPROCESSING
from ...safeio import load_json, load_yaml, utf8
from ..capabilities import Request
from ..migration import (
    DETECTION_INPUT,
    IMAGE_CLASSIFICATION,
    TEXT_INPUT,
    TEXT_OFFSETS,
    VISION_INPUT,
    Extracted,
    MigrationSource,
)
from .members import MANIFEST, Members, digest, form, open_members

LABELS = "index_to_name.json"
FORMS = {"mar": ".mar", "tgz": ".tar.gz model archive", "folder": "model archive folder"}
_PY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\.py$")
_MEMBER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # a top-level file of the archive (never a path)

# TorchServe's built-in handlers: pack's task, how the endpoint answers, what the model is given.
BUILTINS: dict[str, dict[str, Any]] = {
    "image_classifier": {"task": IMAGE_CLASSIFICATION, "answers": "classes", "vision": True, "top_k": 5},
    "image_segmenter": {"answers": "segments", "vision": True},
    "object_detector": {"answers": "boxes", "detection": True},
    "text_classifier": {"answers": "text-classes", "text": True},
}


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationFailed(f"{where} is not a non-empty string", "rebuild the archive with torch-model-archiver")
    return value


def _labels(files: Members) -> list[str] | None:
    """index_to_name.json ({"0": "tench", ...} or {"0": ["n01440764", "tench"]}) as one name per class index."""
    if LABELS not in files.names:
        return None
    where = f"{files.path}:{LABELS}"
    doc = load_json(files.read(LABELS), where)
    if not isinstance(doc, dict) or not all(isinstance(k, str) and k.isdigit() for k in doc):
        raise ValidationFailed(f"{where} is not a mapping of class indexes to names", "fix the labels file and re-archive")
    names = {int(k): v[-1] if isinstance(v, list) and v else v for k, v in doc.items()}
    if sorted(names) != list(range(len(names))) or not all(isinstance(v, str) and v for v in names.values()):
        raise ValidationFailed(f"{where} does not name every class from 0 with a string", "fix the labels file and re-archive")
    return [names[i] for i in range(len(names))]


def _settings(files: Members, config_file: object) -> dict[str, Any]:
    """The serving settings of model-config.yaml that pack's targets have (batch size, delay, workers)."""
    if not isinstance(config_file, str) or config_file not in files.names:
        return {}
    where = f"{files.path}:{config_file}"
    doc = load_yaml(files.read(config_file), where)
    if not isinstance(doc, dict):
        return {}
    out: dict[str, Any] = {}
    for key, name in (("batchSize", "batch_size"), ("maxBatchDelay", "max_batch_delay_ms"), ("minWorkers", "workers")):
        value = doc.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= (0 if key == "maxBatchDelay" else 1):
            out[name] = value
    return out


def _inputs(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """What the built-in handler gives the model (the text classifier's vocabulary size is read from its weights)."""
    if facts.get("vision"):
        return [dict(VISION_INPUT)]
    if facts.get("detection"):
        return [dict(DETECTION_INPUT)]
    if facts.get("text"):
        return [dict(TEXT_INPUT), dict(TEXT_OFFSETS)]
    return []


def read_source(path: Path) -> MigrationSource | None:
    """The facts of a model archive (None for a path that is none of torch-model-archiver's forms)."""
    kind = form(path)
    if kind is None:
        return None
    with open_members(path) as files:
        members = files.names
        if MANIFEST not in members:
            return None
        manifest = load_json(files.read(MANIFEST), f"{path}:{MANIFEST}")
        model = manifest.get("model") if isinstance(manifest, dict) else None
        if not isinstance(model, dict):
            raise ValidationFailed(f"{path}:{MANIFEST} has no 'model' object", "rebuild the archive with torch-model-archiver")
        where = f"{path}:{MANIFEST} model"
        handler = _text(model.get("handler"), f"{where}.handler")
        serialized = _text(model.get("serializedFile"), f"{where}.serializedFile")
        model_file = model.get("modelFile")
        model_file = _text(model_file, f"{where}.modelFile") if model_file is not None else None
        builtin = handler.removesuffix(".py") if handler.removesuffix(".py") in BUILTINS and handler not in members else None
        for name in (serialized, model_file, None if builtin else handler.partition(":")[0]):  # "file.py:function"
            if name is not None and name not in members:
                raise ValidationFailed(f"{where} names {name!r}, which the archive lacks", "rebuild the archive")
        if serialized.endswith(".onnx"):
            raise UsageError(
                f"{path} serves an ONNX file ({serialized}) through onnxruntime: it is in today's format already",
                "build the PyTorch model it came from with `pack build`, or serve the ONNX file as it is",
            )
        labels = _labels(files)
        settings = _settings(files, model.get("configFile"))
        cls = None
        if model_file is not None:
            code_where = f"{path}:{model_file}"
            cls = model_class(utf8(files.read(model_file), code_where), code_where)
        sha256 = digest(path, files)
    facts = BUILTINS.get(builtin or "", {"answers": "custom"})
    code = tuple(
        n for n in (model_file, None if builtin else handler.partition(":")[0]) if n
    )  # a handler file runs only when asked
    source = MigrationSource(
        path=path,
        sha256=sha256,
        reader="torchserve",
        kind=f"TorchServe {FORMS[kind]} ({'TorchScript' if model_file is None else 'eager'}, handler {handler})",
        model_name=_text(model.get("modelName"), f"{where}.modelName"),
        handler=builtin or handler,
        serialized_file=serialized,
        model_file=model_file,
        model_class=cls,
        task=facts.get("task", "generic"),
        answers=facts["answers"],
        archive_code=code,
        labels=labels,
        inputs=_inputs(facts),
        preprocessing=dict(IMAGENET_PREPROCESSING) if facts.get("vision") else {},
        top_k=facts.get("top_k"),
        settings=settings,
    )
    source.notes += _notes(source, handler)
    return source


def _notes(source: MigrationSource, handler: str) -> list[str]:
    """What of the old handler the build does not carry over."""
    if source.answers == "custom":
        return [f"the custom handler {handler} is not carried over: pack's runtime serves the model's tensors"]
    if source.answers == "text-classes":
        return ["text_classifier's tokenizer and vocabulary are not carried over: the build serves token ids"]
    if source.task != IMAGE_CLASSIFICATION:
        return [f"{handler}'s post-processing is not carried over: the build serves the model's outputs"]
    return []


def model_class(code: str, where: str) -> str:
    """The one class a TorchServe model file defines (TorchServe instantiates it; it refuses a file with more)."""
    try:
        tree = ast.parse(code, where)
    except SyntaxError as exc:
        raise ValidationFailed(f"{where} is not valid Python ({exc.msg}, line {exc.lineno})", "fix the model file") from None
    classes = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
    if len(classes) != 1:
        raise ValidationFailed(
            f"{where} defines {len(classes)} classes ({', '.join(classes) or 'none'}); TorchServe needs exactly one",
            "keep the model class alone in the model file",
        )
    return classes[0]


def extract_source(source: MigrationSource, dest: Path) -> Extracted:
    """The serialized file as `model.pt` (TorchScript) or `weights.pt` (a state dict), and for an eager model its
    model file and the archive's other top-level Python files (the model file may import them), under their names."""
    with open_members(source.path) as files:
        model = dest / ("model.pt" if source.torchscript else "weights.pt")
        files.copy(source.serialized_file, model)
        for name in files.names:  # the model file, a handler file, what they import and read: written, not run
            if _MEMBER.match(name) and name != source.serialized_file and name != model.name:
                files.copy(name, dest / name)
        if source.model_file is None:
            return Extracted(model)
    if not _PY_NAME.match(source.model_file):
        raise ValidationFailed(f"{source.path}: model file {source.model_file!r} is not a Python module name", "rename it")
    return Extracted(model, dest / source.model_file)


def ask_old(url: str, model: str, request: Request, token: str | None) -> Any:
    """TorchServe's inference API: POST /predictions/MODEL with what an end user sends; the parsed JSON answer."""
    import json

    from ...errors import EnvironmentProblem
    from ...serve.http import HttpClient, translated

    client = HttpClient(url, token, timeout=120)
    with translated(f"asking {model} at {url}", "check --against and that the old server serves it", EnvironmentProblem):
        answer = client.request("POST", f"/predictions/{model}", body=request.body, content_type=request.content_type)
    try:
        return json.loads(answer.body)
    except ValueError:
        raise ValidationFailed(f"{model} at {url} answered something that is not JSON", "check --against") from None


def run_old(source: MigrationSource, found: Extracted, request: Request, model: Any = None) -> Any:
    """The archive's handler on the request's body in this process: TorchServe's built-in class, or the archive's own
    (imported: the caller checked the user trusts the archive's code), with its model or `model` in its place."""
    from .oldhandler import answer

    return answer(source, found, request.body, model)
