"""The storage folder each KServe runtime expects under its storageUri.

- torchserve: `config/config.properties` (inference on 8085, `model_snapshot` naming the archive) and
  `model-store/<name>.mar`, as KServe's TorchServe runtime reads them from /mnt/models.
- triton: a Triton model repository (native onnxruntime backend, as NVIDIA's server images have it; python-backend
  pre/post-processing around it for detection models).
Each layout is written by the runtime's own target (`StorageLayout.kserve_storage`); this module only digests it, and
carries the build's own trust files beside the model files: for a signed build its provenance statement
(`provenance.json`) and its signature (`build.sig`, the OpenSSF model signature of the build folder the storage came
from; not `model.sig`, which model-signing would take for a signature of the storage folder itself), only while that
signature covers every file of the build (a stale one is left behind). With
`--sign-key`, the storage folder is also signed itself (`model.sig` over every file in it, these included), which is
what a load-time check of /mnt/models verifies.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

from ...report.build_report import BuildReport
from ..capabilities import StorageLayout
from .manifest import KServeOptions

logger = logging.getLogger(__name__)
BUILD_SIGNATURE = "build.sig"


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def _carry_trust_files(build_dir: Path, report: BuildReport, dest: Path) -> list[str]:
    """A signed build's provenance and signature, copied beside the model files (files at the top of the storage
    folder: Triton reads only folders there as models, TorchServe only config/ and model-store/). A signature that
    does not cover the build's files (packager/report/trust.py) is never carried, nor signed over."""
    from ...report.provenance import FILE, SIGNATURE
    from ...report.trust import status

    found = status(build_dir, report, hash_files=False)  # the files were checked against the report before deploy
    if found.state != "covers":
        if found.state in ("stale", "broken"):
            logger.warning(f"kserve: not carrying the build's signature: {found.words}")
        return []
    carried = []
    for source, name in ((build_dir / FILE, FILE), (build_dir / SIGNATURE, BUILD_SIGNATURE)):
        if source.is_file() and not source.is_symlink():
            shutil.copyfile(source, dest / name)
            carried.append(name)
    return carried


def write_storage(
    build_dir: Path, report: BuildReport, k: KServeOptions, dest: Path, layout: StorageLayout, signer: Any = None
) -> dict[str, Any]:
    """The runtime's own target (`layout`) lays out its files (it alone knows their formats); pack records what to
    call, carries a signed build's trust files and, with a `signer` (signing.SigningKey), signs the whole storage
    folder."""
    dest.mkdir(parents=True)
    served_model, served = layout.kserve_storage(build_dir, report, dest, k.protocol, k.format, k.gpus)
    out: dict[str, Any] = {
        "served_model": served_model,
        "served": served,
        "carried": _carry_trust_files(build_dir, report, dest),
    }
    if signer is not None:
        from ...report.signing import sign_folder

        logger.info("kserve: signing the storage folder")
        out["signature"] = sign_folder(dest, signer)
    out["digest"] = _digest(dest)
    return out
