"""The storage folder each KServe runtime expects under its storageUri.

- torchserve: `config/config.properties` (inference on 8085, `model_snapshot` naming the archive) and
  `model-store/<name>.mar`, as KServe's TorchServe runtime reads them from /mnt/models.
- triton: a Triton model repository (native onnxruntime backend, as NVIDIA's server images have it; python-backend
  pre/post-processing around it for detection models).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from .manifest import KServeOptions

Log = Callable[[str], None]
MOUNT = "/mnt/models"  # where KServe's storage initializer puts the storageUri contents
TS_PORT = 8085  # TorchServe inside the predictor pod; KServe's wrapper serves 8080 in front of it


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def torchserve_properties(report: dict[str, Any], mar_name: str, settings: Any, protocol: str) -> str:
    from ..torchserve.config import _escape, models_entry

    snapshot = {
        "name": "startup.cfg",
        "modelCount": 1,
        "models": models_entry(report["name"], str(report["version"]), mar_name, settings),
    }
    props = {
        "inference_address": f"http://0.0.0.0:{TS_PORT}",
        "management_address": f"http://0.0.0.0:{TS_PORT}",
        "metrics_address": "http://0.0.0.0:8082",
        "grpc_inference_port": 7070,
        "grpc_management_port": 7071,
        "enable_metrics_api": "true",
        "metrics_mode": "prometheus",
        "enable_envvars_config": "true",
        "install_py_dep_per_model": "false",
        "service_envelope": "kservev2" if protocol == "v2" else "kserve",
        "model_store": f"{MOUNT}/model-store",
        "model_snapshot": json.dumps(snapshot, sort_keys=True, separators=(",", ":")),
        "disable_token_authorization": "true",
        "enable_model_api": "false",
    }
    lines = [
        f"# TorchServe configuration for KServe's TorchServe runtime: {report['name']} v{report['version']}, written by pack.",
        "# Inside the predictor pod TorchServe listens on 0.0.0.0 and KServe's model server in front of it is the only",
        "# client, so token authorization is off here and the model API is off; authentication belongs to the cluster's",
        "# ingress. (pack's local TorchServe keeps token auth on and binds 127.0.0.1.)",
    ]
    lines += [f"{key}={_escape(str(value))}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def write_storage(build_dir: Path, report: dict[str, Any], k: KServeOptions, dest: Path, log: Log) -> dict[str, Any]:
    dest.mkdir(parents=True)
    if k.runtime == "torchserve":
        from ..torchserve.config import settings_from
        from ..torchserve.mar import write_mar

        settings = settings_from(report, k.format)
        mar_name = f"{report['name']}.mar"
        built = build_dir / "torchserve" / mar_name
        recorded = ((report.get("targets") or {}).get("torchserve") or {}).get("settings")
        if built.is_file() and recorded == settings.to_dict():
            _link_or_copy(built, dest / "model-store" / mar_name)
        else:
            log(f"kserve: writing {mar_name} ({settings.format})")
            (dest / "model-store").mkdir()
            write_mar(build_dir, report, settings, dest / "model-store" / mar_name)
        (dest / "config").mkdir()
        (dest / "config" / "config.properties").write_text(torchserve_properties(report, mar_name, settings, k.protocol))
        served = report["name"]
    else:
        from ..triton.check import check_repository, raise_on_errors
        from ..triton.repository import RepoOptions, generate, serving_model

        generate(build_dir, report, RepoOptions(backend="onnxruntime", fmt="onnx", gpu=k.gpus > 0), dest)
        raise_on_errors(check_repository(dest), log)
        served = serving_model(report)
    return {"served_model": served, "digest": _digest(dest)}
