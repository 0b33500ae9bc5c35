"""What a migration source is, read without running any of its code.

A `.mar`'s manifest names its handler (a TorchServe built-in or a Python file in the archive), its model file (Python
code: an eager model) and its serialized file (a state dict, or a TorchScript module when there is no model file).
Nothing here imports archive code: a source that needs it is refused unless the user trusts the archive's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..archive import open_archive
from ..errors import UsageError, ValidationFailed
from ..safeio import load_json, read_member

MANIFEST = "MAR-INF/MANIFEST.json"
BUILTIN_TASKS = {
    "image_classifier": "classification",
    "object_detector": "detection",
    "image_segmenter": "segmentation",
    "text_classifier": "text-classification",
}


@dataclass(frozen=True)
class MarSource:
    """A `.mar`'s manifest, as facts: which code it would run and what it serves."""

    path: Path
    handler: str
    model_file: str | None
    serialized_file: str
    task: str
    members: tuple[str, ...]

    @property
    def torchscript(self) -> bool:
        return self.model_file is None

    @property
    def archive_code(self) -> list[str]:
        """The archive's Python files that migrating this source would import."""
        code = [self.model_file] if self.model_file else []
        if self.handler not in BUILTIN_TASKS:
            code.append(self.handler)
        return code


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationFailed(f"{where} is not a non-empty string", "rebuild the archive with torch-model-archiver")
    return value


def read_mar(path: Path) -> MarSource:
    """The manifest of a `.mar`, checked against the archive's members; nothing is imported or unpickled."""
    with open_archive(path) as zf:
        members = tuple(info.filename for info in zf.infolist())
        if MANIFEST not in members:
            raise ValidationFailed(f"{path} has no {MANIFEST}", "give a .mar made by torch-model-archiver")
        manifest = load_json(read_member(zf, MANIFEST, f"{path}:{MANIFEST}"), f"{path}:{MANIFEST}")
    model = manifest.get("model") if isinstance(manifest, dict) else None
    if not isinstance(model, dict):
        raise ValidationFailed(f"{path}:{MANIFEST} has no 'model' object", "rebuild the archive with torch-model-archiver")
    where = f"{path}:{MANIFEST} model"
    handler = _text(model.get("handler"), f"{where}.handler")
    serialized = _text(model.get("serializedFile"), f"{where}.serializedFile")
    model_file = model.get("modelFile")
    model_file = _text(model_file, f"{where}.modelFile") if model_file is not None else None
    for name in (serialized, model_file, None if handler in BUILTIN_TASKS else handler):
        if name is not None and name not in members:
            raise ValidationFailed(f"{where} names {name!r}, which the archive lacks", "rebuild the archive")
    task = BUILTIN_TASKS.get(handler, "generic")
    return MarSource(path, handler, model_file, serialized, task, members)


def require_trust(source: MarSource, trusted: bool) -> None:
    """Refuse (exit 2) a source whose migration imports archive code, unless the user trusts it."""
    code = source.archive_code
    if code and not trusted:
        raise UsageError(
            f"{source.path} needs its own Python code imported to migrate ({', '.join(code)})",
            "read that code, then pass --trust-archive-code to run it",
        )
