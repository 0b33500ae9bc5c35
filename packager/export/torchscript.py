"""TorchScript export: trace (default) or script, with pack's metadata in the archive's extra files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

EXTRA_FILE = "pack.json"


def trace(model: Any, example: list[Any]) -> tuple[Any, list[str]]:
    """Trace the model; return the traced module and the tracer's warnings (each a sign the trace may be wrong)."""
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            traced = torch.jit.trace(model, tuple(example), strict=False, check_trace=False)
    notes = sorted({str(w.message).splitlines()[0] for w in caught if issubclass(w.category, torch.jit.TracerWarning)})
    return traced, notes


def script(model: Any) -> Any:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.script(model)


def save(module: Any, path: Path, metadata: dict[str, Any]) -> None:
    """Serialise in memory, then write with Python I/O: a full disk raises OSError instead of aborting in C++."""
    import io

    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(module, buffer, _extra_files={EXTRA_FILE: json.dumps(metadata, sort_keys=True)})
    with open(path, "wb") as fh:
        fh.write(buffer.getbuffer())


def load(path: Path, device: str) -> Any:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location=device)
    module.eval()
    return module


def read_metadata(path: Path) -> dict[str, Any]:
    import torch

    extra = {EXTRA_FILE: ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[EXTRA_FILE] or "{}")
