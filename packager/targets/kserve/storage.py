"""The storage folder each KServe runtime expects under its storageUri.

- torchserve: `config/config.properties` (inference on 8085, `model_snapshot` naming the archive) and
  `model-store/<name>.mar`, as KServe's TorchServe runtime reads them from /mnt/models.
- triton: a Triton model repository (native onnxruntime backend, as NVIDIA's server images have it; python-backend
  pre/post-processing around it for detection models).
Each layout is written by the runtime's own target (`Target.kserve_storage`); this module only digests it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ...report import BuildReport
from .manifest import KServeOptions


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def write_storage(build_dir: Path, report: BuildReport, k: KServeOptions, dest: Path) -> dict[str, Any]:
    """The runtime's own target lays out its files (it alone knows their formats); pack records what to call."""
    from ..base import get_target

    dest.mkdir(parents=True)
    served = get_target(k.runtime).kserve_storage(build_dir, report, dest, k.protocol, k.format, k.gpus)
    return {"served_model": served, "digest": _digest(dest)}
