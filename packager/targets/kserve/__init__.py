"""The KServe target: a storage folder laid out as KServe's runtime expects it, and an InferenceService manifest.

    pack deploy MODEL --target kserve [--runtime triton|torchserve] --storage-uri s3://bucket/path [--apply]

Writes `<store>/kserve/<name>/<version>/<runtime>/` with `storage/` (what to upload to --storage-uri) and
`inferenceservice.yaml` (checked strictly against the InferenceService CRD schema first). With
`--storage-uri oci://REGISTRY/REPO[:TAG]` pack also writes `modelcar/` (an OCI image layout holding storage/ under
/models), pushes it, and the manifest pins it by digest. No cluster is needed; `--apply` runs `kubectl apply` when
kubectl and a current context exist, and otherwise prints the commands to run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import EnvironmentProblem, ValidationFailed
from ...report.build_report import BuildReport

if TYPE_CHECKING:
    from ..capabilities import StorageLayout
    from .manifest import KServeOptions

logger = logging.getLogger(__name__)

FOLDER = "kserve"
MANIFEST = "inferenceservice.yaml"
MODELCAR = "modelcar"

__all__ = ["deploy"]


def _upload_command(storage: Path, uri: str) -> str:
    scheme = uri.split("://", 1)[0]
    if scheme == "s3":
        return f"aws s3 cp --recursive {storage} {uri}"
    if scheme == "gs":
        return f"gsutil -m cp -r '{storage}/*' {uri}"
    if scheme == "pvc":
        return f"copy the contents of {storage} into the volume {uri} (e.g. kubectl cp through a pod that mounts it)"
    return f"upload the contents of {storage} to {uri}"


def _kubectl_ready() -> str | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    proc = subprocess.run([kubectl, "config", "current-context"], capture_output=True, text=True, timeout=20)
    return kubectl if proc.returncode == 0 and proc.stdout.strip() else None


def _modelcar(tmp: Path, report: BuildReport, kopts: KServeOptions, storage: dict[str, Any], timeout: float) -> KServeOptions:
    """Build the model-car image of tmp/storage in tmp/modelcar, push it, and pin the storage URI to its digest."""
    from .modelcar import build_image
    from .push import parse_reference, push

    ref = parse_reference(kopts.storage_uri, report.version)
    notes = {"org.opencontainers.image.title": report.name, "org.opencontainers.image.version": report.version}
    image = build_image(tmp / "storage", tmp / MODELCAR, ref.tag, {**notes, "pack.storage-sha256": storage["digest"]})
    logger.info(f"pushing the model-car {image.digest} to {ref.tagged()}")
    digest = push(image, ref, timeout)
    return dataclasses.replace(kopts, storage_uri=ref.pinned(digest))


def _write(tmp: Path, report: BuildReport, kopts: KServeOptions, manifest: dict[str, Any]) -> None:
    import yaml

    from .manifest import validate

    problems = validate(manifest)
    if problems:
        raise ValidationFailed(
            f"the generated InferenceService fails the KServe schema: {problems[0]}", "report this; nothing was written"
        )
    first = (
        "The model-car is pushed" if kopts.storage_uri.startswith("oci://") else f"Upload storage/ to {kopts.storage_uri} first"
    )
    (tmp / MANIFEST).write_text(
        f"# InferenceService for {report.name} v{report.version} ({kopts.runtime}, {kopts.deployment_mode}), written by pack.\n"
        f"# {first}, then: kubectl apply -f {MANIFEST}\n" + yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)
    )


def _replace(tmp: Path, out: Path, name: str) -> None:
    """Move the finished folder into place (the previous one, if any, goes only once the new one is there)."""
    old = None
    if out.exists():
        old = out.parent / f".old-{name}-{os.getpid()}"
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _apply(manifest: Path) -> bool:
    """`kubectl apply` when kubectl has a current context; False (and a note) when it has none."""
    kubectl = _kubectl_ready()
    if kubectl is None:
        logger.warning("kubectl or a current context is missing: not applying; run the commands below")
        return False
    proc = subprocess.run([kubectl, "apply", "-f", str(manifest)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise EnvironmentProblem(
            f"kubectl apply failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1]}",
            "check the cluster context and KServe installation",
        )
    return True


def deploy(build_dir: Path, report: BuildReport, opts: Any, runtimes: Mapping[str, StorageLayout]) -> dict[str, Any]:
    """`pack deploy --target kserve` with the runtimes KServe can run: the targets that lay out its storage folder."""
    from .manifest import KServeOptions, inference_service
    from .storage import write_storage

    started = time.perf_counter()
    if (opts.extra or {}).get("signature"):
        logger.warning(
            "kserve: --require-signature was checked here, before writing; KServe's runtimes do not check it again "
            "when they load the model (the servers pack launches do)"
        )
    kopts = KServeOptions.from_deploy(opts, report, {name: layout.kserve for name, layout in runtimes.items()})
    oci = kopts.storage_uri.startswith("oci://")
    if oci:
        from .push import parse_reference

        parse_reference(kopts.storage_uri, report.version)  # a bad reference is refused before anything is written
    signer = None
    if getattr(opts, "sign_key", None):
        from ...report.signing import load_signing_key

        signer = load_signing_key(opts.sign_key)  # a bad key is refused before anything is written
    out = Path(opts.store) / FOLDER / report.name / report.version / kopts.runtime
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{kopts.runtime}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        storage = write_storage(build_dir, report, kopts, tmp / "storage", runtimes[kopts.runtime], signer)
        if oci:
            kopts = _modelcar(tmp, report, kopts, storage, opts.timeout)
        manifest = inference_service(report, kopts, storage)
        _write(tmp, report, kopts, manifest)
        _replace(tmp, out, kopts.runtime)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in (out.parent, out.parent.parent):  # a failed first deploy of this version leaves no empty folders
            with contextlib.suppress(OSError):
                folder.rmdir()
    return _result(out, report, kopts, manifest, storage, {"write_s": round(time.perf_counter() - started, 3)})


def infer_path(protocol: str, model: str) -> str:
    """The path a client calls on the predictor: the v2 infer endpoint, or v1's predict."""
    return f"/v2/models/{model}/infer" if protocol == "v2" else f"/v1/models/{model}:predict"


def _result(
    out: Path,
    report: BuildReport,
    kopts: KServeOptions,
    manifest: dict[str, Any],
    storage: dict[str, Any],
    timings: dict[str, float],
) -> dict[str, Any]:
    from ..result import deploy_result, server_info

    oci = kopts.storage_uri.startswith("oci://")
    signed = storage.get("signature")
    signature = {**signed, "signature": str(out / "storage" / "model.sig")} if signed else None
    upload = None if oci else _upload_command(out / "storage", kopts.storage_uri)
    apply_cmd = f"kubectl apply -f {out / MANIFEST}"
    applied = kopts.apply and _apply(out / MANIFEST)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    service, path = manifest["metadata"]["name"], infer_path(kopts.protocol, storage["served_model"])
    summary = "\n".join(
        [
            f"wrote {out / MANIFEST} (InferenceService {service}, {kopts.runtime}, protocol {kopts.protocol}, "
            f"{kopts.deployment_mode}; schema-valid, strict); serves {storage['served'].file}",
            f"storage folder: {out / 'storage'} ({len([f for f in files if f.startswith('storage/')])} files)",
            *([f"model-car: pushed as {kopts.storage_uri}"] if oci else []),
            *([f"storage signed: {signature['signature']} ({signature['files']} files)"] if signature else []),
            *(["applied with kubectl"] if applied else ["next:", *(f"  {c}" for c in (upload, apply_cmd) if c)]),
        ]
    )
    return deploy_result(
        "kserve",
        report,
        storage["served"],
        url=None,
        infer_url=None,
        url_reason=(
            f"no server runs here: pack wrote the InferenceService {service} and its storage; once applied, its predictor "
            f"answers in the cluster on http://{service}-predictor.<namespace>.svc.cluster.local{path} "
            "(the namespace kubectl apply uses)"
        ),
        v2_curl=None,
        smoke_test=None,
        timings=timings,
        server=server_info(False),
        summary=summary,
        runtime=kopts.runtime,
        protocol=kopts.protocol,
        service_name=service,
        served_model=storage["served_model"],
        infer_path=path,
        storage_uri=kopts.storage_uri,
        folder=str(out),
        manifest=str(out / MANIFEST),
        storage=str(out / "storage"),
        files=files,
        applied=applied,
        deployment_mode=kopts.deployment_mode,
        modelcar=str(out / MODELCAR) if oci else None,
        carried=storage["carried"],  # a signed build's provenance.json and build.sig, beside the model files
        storage_signature=signature,
        next_steps=[] if applied else [c for c in (upload, apply_cmd) if c],
    )
