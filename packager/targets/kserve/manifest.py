"""The InferenceService manifest (serving.kserve.io/v1beta1) for a build, and its strict check against the CRD schema
(schemas.py). How KServe runs each serving runtime (its modelFormat, ClusterServingRuntime, protocols, readiness) is
that runtime's own target's word (`StorageLayout.kserve`): the runtimes are the targets that lay out a KServe storage
folder, in the registry's order, the first the default."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import UsageError
from ...report.build_report import BuildReport
from ..capabilities import KServeRuntime
from .schemas import check

# --deployment-mode: KServe's names since v0.16 (Standard: Deployment + HPA; Knative: a Knative Service), and the
# older names it still reads, written as the new ones
DEPLOYMENT_MODES = {"Standard": "Standard", "Knative": "Knative", "RawDeployment": "Standard", "Serverless": "Knative"}
DEFAULT_DEPLOYMENT_MODE = "Standard"  # KServe's own default since v0.16
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
SCALING = {
    # mode: (scaleMetric, default scaleTarget): Knative scales on concurrent requests, the HPA on CPU utilisation (%)
    "Knative": ("concurrency", 8),
    "Standard": ("cpu", 80),
}
STORAGE_SCHEMES = re.compile(r"^(s3|gs|pvc|https?|azure|hdfs|webhdfs|oci)://.+")
HTTP_PORT = 8080  # both KServe runtimes serve HTTP on 8080 in the predictor container


@dataclass
class KServeOptions:
    runtime: str
    kind: KServeRuntime  # how KServe runs that runtime
    storage_uri: str
    protocol: str
    deployment_mode: str = DEFAULT_DEPLOYMENT_MODE
    cpu: str = "1"
    memory: str = "2Gi"
    gpus: int = 0
    min_replicas: int = 1
    max_replicas: int = 3
    scale_target: int | None = None
    apply: bool = False
    format: str | None = None

    @property
    def scale_metric(self) -> str:
        return SCALING[self.deployment_mode][0]

    @property
    def target(self) -> int:
        return SCALING[self.deployment_mode][1] if self.scale_target is None else self.scale_target

    @classmethod
    def from_deploy(cls, opts: Any, report: BuildReport, runtimes: Mapping[str, KServeRuntime]) -> KServeOptions:
        """From `pack deploy --target kserve` options (packager/targets/kserve/target.py), with the runtimes KServe
        can run (the first: the default)."""
        runtime = opts.runtime or next(iter(runtimes))
        if runtime not in runtimes:
            raise UsageError(f"unknown KServe runtime {runtime!r}", f"use one of {', '.join(runtimes)}")
        mode = opts.deployment_mode or DEFAULT_DEPLOYMENT_MODE
        if mode not in DEPLOYMENT_MODES:
            raise UsageError(f"unknown KServe deployment mode {mode!r}", f"use one of {', '.join(DEPLOYMENT_MODES)}")
        protocols = runtimes[runtime].protocols
        protocol = opts.protocol or protocols[0]
        if protocol not in protocols:
            raise UsageError(f"the {runtime} runtime does not speak protocol {protocol}", f"use {' or '.join(protocols)}")
        kw = {
            k: getattr(opts, k)
            for k in ("cpu", "memory", "gpus", "min_replicas", "max_replicas", "scale_target")
            if getattr(opts, k) is not None
        }
        out = cls(
            runtime=runtime,
            kind=runtimes[runtime],
            storage_uri=_storage_uri(opts.storage_uri, report),
            protocol=protocol,
            deployment_mode=DEPLOYMENT_MODES[mode],
            apply=bool(opts.apply),
            format=opts.format,
            **kw,
        )
        out.check_ranges()
        return out

    def check_ranges(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < max(self.min_replicas, 1):
            raise UsageError(
                f"replicas {self.min_replicas}..{self.max_replicas} are not a valid range",
                "use --min-replicas <= --max-replicas, max at least 1",
            )
        if self.min_replicas == 0 and self.deployment_mode == "Standard":
            raise UsageError("--min-replicas 0 needs --deployment-mode Knative", "the Standard mode's HPA cannot scale to zero")
        if self.gpus < 0:
            raise UsageError("--gpus must be 0 or more")
        if self.target < 1:
            raise UsageError("--scale-target must be 1 or more")


def _storage_uri(uri: str | None, report: BuildReport) -> str:
    if not uri:
        raise UsageError(
            "--storage-uri is required for --target kserve",
            "pass where the storage folder will be uploaded, e.g. s3://bucket/models/" + report.name,
        )
    if not STORAGE_SCHEMES.match(uri):
        raise UsageError(
            f"--storage-uri {uri!r} has no scheme KServe's storage initializer knows",
            "use s3://, gs://, pvc://, https://, oci:// (a model-car pack builds and pushes), ...",
        )
    return uri.rstrip("/")


def service_name(name: str) -> str:
    """A Kubernetes DNS-1035 label from a model name (lowercase; '_' and '.' become '-')."""
    out = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")
    if not out or not out[0].isalpha():
        out = "m-" + out
    return out[:45].rstrip("-")


def _readiness(kind: KServeRuntime, protocol: str, model: str) -> dict[str, Any]:
    return {
        "httpGet": {"path": kind.ready[protocol].format(model=model), "port": HTTP_PORT},
        "initialDelaySeconds": 10,
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 30,
    }


def inference_service(report: BuildReport, k: KServeOptions, storage: dict[str, Any]) -> dict[str, Any]:
    name = service_name(report.name)
    requests: dict[str, Any] = {"cpu": k.cpu, "memory": k.memory}
    limits: dict[str, Any] = {"cpu": k.cpu, "memory": k.memory}
    if k.gpus:
        requests["nvidia.com/gpu"] = str(k.gpus)
        limits["nvidia.com/gpu"] = str(k.gpus)
    model: dict[str, Any] = {
        "modelFormat": {"name": k.kind.model_format},
        "runtime": k.kind.runtime,
        "protocolVersion": k.protocol,
        "storageUri": k.storage_uri,
        "resources": {"requests": requests, "limits": limits},
        "readinessProbe": _readiness(k.kind, k.protocol, storage["served_model"]),
    }
    if k.kind.args:
        model["args"] = list(k.kind.args)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/version": report.version,
                "app.kubernetes.io/managed-by": "pack",
            },
            "annotations": {
                DEPLOYMENT_MODE_ANNOTATION: k.deployment_mode,
                "pack/model": report.name,
                "pack/served-model": storage["served_model"],
                "pack/storage-sha256": storage["digest"],
            },
        },
        "spec": {
            "predictor": {
                "minReplicas": k.min_replicas,
                "maxReplicas": k.max_replicas,
                "scaleMetric": k.scale_metric,
                "scaleTarget": k.target,
                "model": model,
            }
        },
    }


def validate(manifest: dict[str, Any]) -> list[str]:
    """Problems of a manifest against KServe's CRD schema, strictly (schemas.check): an empty list means valid."""
    return [f"{path}: {problem}" for path, problem in check(manifest)]
