"""A migration source found, trusted or refused, and turned into a pack.yaml spec pack builds like any other.

The source is read by the target whose server's format it is (the `Migratable` capability: a `.mar` by TorchServe, a
model folder by Triton), without running or unpickling anything. Its files are extracted into
`<store>/.migrations/<digest>/` (a folder renamed into place complete, so a killed migration leaves nothing
half-written there, and an unchanged source is extracted once) beside the spec written for it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..report.names import check_name
from ..report.store import remove_leftovers
from ..targets import MIGRATABLE, capable
from ..targets.migration import Extracted, MigrationSource

FOLDER = ".migrations"
SPEC = "pack.yaml"
LABELS = "labels.txt"


def read(path: Path) -> tuple[MigrationSource, str]:
    """The source's facts and the target that read them; one line naming what pack migrates otherwise."""
    if not path.exists():
        raise UsageError(f"{path} does not exist", "give a .mar file or a Triton model folder")
    readers = capable(MIGRATABLE)
    for name, reader in readers.items():
        found = reader.read_source(path)
        if found is not None:
            return found, name
    raise UsageError(
        f"{path} is not a model pack can migrate",
        "give a .mar made by torch-model-archiver or a Triton model folder with a config.pbtxt",
    )


def require_trust(source: MigrationSource, trusted: bool, steps: bool = False) -> None:
    """Refuse (exit 2) a source whose migration imports the archive's Python code, unless the user trusts it: its
    model file, and its handler file when the handler's own steps are run (`steps`). A TorchScript source and
    TorchServe's own handlers run none of the archive's code."""
    code = [c for c in source.archive_code if c == source.model_file or steps]
    if code and not trusted:
        raise UsageError(
            f"{source.path} needs its own Python code imported to migrate ({', '.join(code)})",
            "read that code, then pass --trust-archive-code to run it",
        )


def model_name(source: MigrationSource, given: str | None) -> str:
    """The build's name: --name, else the old model's (checked like every name)."""
    return check_name(given or source.model_name)


def vocabulary(weights: Path) -> int | None:
    """The rows of the first embedding table in a state dict (a text model's vocabulary size), read weights-only."""
    import torch

    try:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    except Exception:  # the build's loader says what is wrong with the file
        return None
    tables = (
        [v for k, v in state.items() if isinstance(v, torch.Tensor) and v.dim() == 2 and "embed" in k.lower()]
        if isinstance(state, dict)
        else []
    )
    return int(tables[0].shape[0]) if tables else None


def _ranged(item: dict[str, Any], found: Extracted) -> dict[str, Any]:
    """A token-id input's range is the model's vocabulary: an id past it is no text the old server could send."""
    if item.get("name") != "text" or item.get("dtype") != "int64" or found.model_file is None:
        return item
    rows = vocabulary(found.model)
    return {**item, "range": [0, rows]} if rows else item


def spec_for(source: MigrationSource, found: Extracted, name: str, inputs: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The pack.yaml of the migrated build: the model, its inputs and outputs, task, labels and pre-processing."""
    spec: dict[str, Any] = {"name": name}
    if source.torchscript:
        spec["source"] = str(found.model)
    else:
        spec["source"], spec["weights"] = f"{found.model_file}:{source.model_class}", str(found.model)
    if inputs or source.inputs:
        spec["inputs"] = inputs or [_ranged(i, found) for i in source.inputs]
    if source.outputs:
        spec["outputs"] = [{"name": o} for o in source.outputs]
    spec["task"] = source.task
    if source.preprocessing:
        spec["preprocessing"] = dict(source.preprocessing)
    if source.top_k:
        spec["postprocessing"] = {"top_k": source.top_k, "softmax": True}
    if source.labels:
        spec["labels"] = str(found.model.parent / LABELS)
    return spec


def extract(source: MigrationSource, reader: str, store: Path) -> Extracted:
    """The source's files under `<store>/.migrations/<sha256[:16]>/`, extracted once (atomically)."""
    readers = capable(MIGRATABLE)
    root = store / FOLDER
    folder = root / source.sha256[:16]
    if not (folder / ".complete").is_file():
        root.mkdir(parents=True, exist_ok=True)
        remove_leftovers(root, ".tmp-")  # what a killed migration left (store.py: the folder names its pid)
        tmp = root / f".tmp-{source.sha256[:16]}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o700)
        try:
            readers[reader].extract_source(source, tmp)
            if source.labels:
                (tmp / LABELS).write_text("\n".join(source.labels) + "\n")
            (tmp / ".complete").write_text(source.sha256 + "\n")
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    model = folder / ("model.pt" if source.torchscript else "weights.pt")
    return Extracted(model, folder / source.model_file if source.model_file else None)
