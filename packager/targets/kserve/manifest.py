"""The InferenceService manifest (serving.kserve.io/v1beta1) for a build, and its validation against the CRD schema."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any

from ...errors import UsageError
from ...report import BuildReport

RUNTIMES = {
    # runtime: (modelFormat name, protocols it speaks, KServe's ClusterServingRuntime name)
    "torchserve": ("pytorch", ("v1", "v2"), "kserve-torchserve"),
    "triton": ("triton", ("v2",), "kserve-tritonserver"),
}
SCHEMA = "kserve-inferenceservice-v1beta1.schema.json"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
HTTP_PORT = 8080  # both KServe runtimes serve HTTP on 8080 in the predictor container


@dataclass
class KServeOptions:
    runtime: str
    storage_uri: str
    protocol: str
    cpu: str = "1"
    memory: str = "2Gi"
    gpus: int = 0
    min_replicas: int = 1
    max_replicas: int = 3
    scale_metric: str = "concurrency"
    scale_target: int = 8
    apply: bool = False
    format: str | None = None

    @classmethod
    def from_deploy(cls, opts: Any, report: BuildReport) -> KServeOptions:
        """From `pack deploy --target kserve` options (packager/targets/kserve/target.py)."""
        runtime = opts.runtime or "torchserve"
        if runtime not in RUNTIMES:
            raise UsageError(f"unknown KServe runtime {runtime!r}", f"use one of {', '.join(RUNTIMES)}")
        uri = opts.storage_uri
        if not uri:
            raise UsageError(
                "--storage-uri is required for --target kserve",
                "pass where the storage folder will be uploaded, e.g. s3://bucket/models/" + report.name,
            )
        if not re.match(r"^(s3|gs|pvc|https?|azure|hdfs|webhdfs|oci)://.+", uri):
            raise UsageError(
                f"--storage-uri {uri!r} has no scheme KServe's storage initializer knows",
                "use s3://, gs://, pvc://, https://, ...",
            )
        protocols = RUNTIMES[runtime][1]
        protocol = opts.protocol or protocols[0]
        if protocol not in protocols:
            raise UsageError(f"the {runtime} runtime does not speak protocol {protocol}", f"use {' or '.join(protocols)}")
        kw = {
            k: getattr(opts, k)
            for k in ("cpu", "memory", "gpus", "min_replicas", "max_replicas", "scale_target")
            if getattr(opts, k) is not None
        }
        out = cls(
            runtime=runtime, storage_uri=uri.rstrip("/"), protocol=protocol, apply=bool(opts.apply), format=opts.format, **kw
        )
        if out.min_replicas < 0 or out.max_replicas < max(out.min_replicas, 1):
            raise UsageError(
                f"replicas {out.min_replicas}..{out.max_replicas} are not a valid range",
                "use --min-replicas <= --max-replicas, max at least 1",
            )
        if out.gpus < 0:
            raise UsageError("--gpus must be 0 or more")
        return out


def service_name(name: str) -> str:
    """A Kubernetes DNS-1035 label from a model name (lowercase; '_' and '.' become '-')."""
    out = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")
    if not out or not out[0].isalpha():
        out = "m-" + out
    return out[:45].rstrip("-")


def _readiness(runtime: str, protocol: str, model: str) -> dict[str, Any]:
    if runtime == "triton":
        path = "/v2/health/ready"
    elif protocol == "v2":
        path = f"/v2/models/{model}/ready"
    else:
        path = f"/v1/models/{model}"
    return {
        "httpGet": {"path": path, "port": HTTP_PORT},
        "initialDelaySeconds": 10,
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 30,
    }


def inference_service(report: BuildReport, k: KServeOptions, storage: dict[str, Any]) -> dict[str, Any]:
    fmt, _, runtime_name = RUNTIMES[k.runtime]
    name = service_name(report.name)
    requests: dict[str, Any] = {"cpu": k.cpu, "memory": k.memory}
    limits: dict[str, Any] = {"cpu": k.cpu, "memory": k.memory}
    if k.gpus:
        requests["nvidia.com/gpu"] = str(k.gpus)
        limits["nvidia.com/gpu"] = str(k.gpus)
    model: dict[str, Any] = {
        "modelFormat": {"name": fmt},
        "runtime": runtime_name,
        "protocolVersion": k.protocol,
        "storageUri": k.storage_uri,
        "resources": {"requests": requests, "limits": limits},
        "readinessProbe": _readiness(k.runtime, k.protocol, storage["served_model"]),
    }
    if k.runtime == "triton":
        model["args"] = ["--strict-model-config=true", "--log-info=true"]
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
                "scaleTarget": k.scale_target,
                "model": model,
            }
        },
    }


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((files("packager") / "schemas" / SCHEMA).read_text())
    return loaded


def validate(manifest: dict[str, Any]) -> list[str]:
    """Problems of a manifest against KServe's InferenceService schema, plus what the schema leaves out (apiVersion,
    kind, a DNS-1035 name). An empty list means valid."""
    import jsonschema

    problems = []
    if manifest.get("apiVersion") != "serving.kserve.io/v1beta1":
        problems.append(f"apiVersion: {manifest.get('apiVersion')!r} is not serving.kserve.io/v1beta1")
    if manifest.get("kind") != "InferenceService":
        problems.append(f"kind: {manifest.get('kind')!r} is not InferenceService")
    name = (manifest.get("metadata") or {}).get("name", "")
    if not DNS_1035.match(str(name)) or len(str(name)) > 63:
        problems.append(f"metadata.name: {name!r} is not a DNS-1035 label")
    validator = jsonschema.Draft7Validator(schema())
    for err in sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path))):
        problems.append(f"{'.'.join(map(str, err.absolute_path)) or '(top)'}: {err.message}")
    return problems
